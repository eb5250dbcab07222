//! `stomp://[user[:password]@]host[:port][/vhost]` (or `stomp+ssl://`, `stomps://` for
//! TLS): where the broker listens and whom the gateway logs in as.

use std::fmt;

use bridge_tls::TlsClient;

pub const DEFAULT_PORT: u16 = 61613;
/// ActiveMQ's and RabbitMQ's usual STOMP-over-TLS port.
pub const DEFAULT_TLS_PORT: u16 = 61614;

#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The URI asked for TLS (`stomp+ssl://`, `stomps://`)...
    pub secure: bool,
    /// ...with the service's TLS client, set when the bridge is built.
    pub tls: Option<TlsClient>,
    /// The CONNECT `host` header (the broker's virtual host): the URI's path if it has
    /// one, else the host name.
    pub vhost: String,
    /// The service's credentials; `None` logs in without `login`/`passcode`.
    pub login: Option<(String, String)>,
}

impl Endpoint {
    /// `host:port` for connecting (IPv6 literals in brackets).
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// Never prints the password.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr())
            .field("tls", &self.secure)
            .field("vhost", &self.vhost)
            .field("user", &self.login.as_ref().map(|(u, _)| u))
            .finish()
    }
}

pub fn parse_uri(raw: &str) -> Result<Endpoint, String> {
    let example = "e.g. stomp://user:pass@127.0.0.1:61613";
    let (rest, secure) = if let Some(rest) = raw.strip_prefix("stomp://") {
        (rest, false)
    } else if let Some(rest) = raw
        .strip_prefix("stomp+ssl://")
        .or_else(|| raw.strip_prefix("stomps://"))
    {
        (rest, true)
    } else {
        return Err(format!(
            "a STOMP broker URI starts with stomp:// or, for TLS, stomp+ssl:// ({example})"
        ));
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let login = match userinfo {
        None => None,
        Some(u) => {
            let (user, pass) = u.split_once(':').unwrap_or((u, ""));
            let user = percent_decode(user).ok_or("bad %-escape in the user name")?;
            let pass = percent_decode(pass).ok_or("bad %-escape in the password")?;
            if user.is_empty() {
                return Err(format!("empty user name in the broker URI ({example})"));
            }
            Some((user, pass))
        }
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or("unclosed [ in the broker's address")?;
        (h, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err(format!("the broker URI has no host ({example})"));
    }
    let port = match port {
        None if secure => DEFAULT_TLS_PORT,
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("bad port {p:?} in the broker URI ({example})"))?,
    };
    let path = path.trim_end_matches('/');
    let vhost = if path.is_empty() {
        host.to_string()
    } else {
        percent_decode(path).ok_or("bad %-escape in the virtual host")?
    };
    Ok(Endpoint {
        host: host.to_string(),
        port,
        secure,
        tls: None,
        vhost,
        login,
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_and_minimal_uris() {
        let e = parse_uri("stomp://admin:s%40cret@127.0.0.1:61623").unwrap();
        assert_eq!(e.addr(), "127.0.0.1:61623");
        assert_eq!(e.vhost, "127.0.0.1");
        assert_eq!(e.login, Some(("admin".into(), "s@cret".into())));
        let e = parse_uri("stomp://broker.internal/prod").unwrap();
        assert_eq!(e.port, DEFAULT_PORT);
        assert_eq!(e.vhost, "prod");
        assert_eq!(e.login, None);
        let e = parse_uri("stomp://u@[::1]:1234/").unwrap();
        assert_eq!(e.addr(), "[::1]:1234");
        assert_eq!(e.login, Some(("u".into(), String::new())));
        assert!(!format!("{e:?}").contains("s@cret"));
        assert!(!e.secure);
        for tls in [
            "stomp+ssl://u:p@broker.internal",
            "stomps://u:p@broker.internal",
        ] {
            let e = parse_uri(tls).unwrap();
            assert!(e.secure, "{tls}");
            assert_eq!(e.port, DEFAULT_TLS_PORT);
        }
    }

    #[test]
    fn bad_uris_say_why() {
        assert!(parse_uri("amqp://h").unwrap_err().contains("stomp://"));
        assert!(parse_uri("ssl://h").unwrap_err().contains("stomp+ssl://"));
        assert!(parse_uri("stomp://h:0").unwrap_err().contains("port"));
        assert!(parse_uri("stomp://h:x").unwrap_err().contains("port"));
        assert!(parse_uri("stomp://:1").unwrap_err().contains("no host"));
        assert!(parse_uri("stomp://a%zz:b@h").is_err());
        assert!(parse_uri("stomp://:pw@h").unwrap_err().contains("user"));
    }
}

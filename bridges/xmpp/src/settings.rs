//! The XMPP bridge's settings (`[service.settings]` of a `bridge = "xmpp"` service).

use std::path::PathBuf;
use std::time::Duration;

use bridge_api::SettingsError;
use bridge_tls::{Pins, TlsSettings};
use serde::Deserialize;

use crate::identity::IdentityMode;

/// How the TCP stream to the server is encrypted. There is no plaintext mode: the browser's
/// SASL PLAIN must never cross a network unencrypted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// RFC 6120 STARTTLS on the ordinary client port (SRV `_xmpp-client._tcp`).
    #[default]
    Starttls,
    /// XEP-0368: TLS from the first byte (SRV `_xmpps-client._tcp`).
    Direct,
}

fn open_timeout() -> Duration {
    Duration::from_secs(10)
}
fn connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn tls_timeout() -> Duration {
    Duration::from_secs(10)
}
fn server_keepalive() -> Duration {
    Duration::from_secs(60)
}
fn max_element_bytes() -> usize {
    protocol_xmpp::Limits::default().max_element_bytes
}
fn max_depth() -> usize {
    protocol_xmpp::Limits::default().max_depth
}
fn max_attributes() -> usize {
    protocol_xmpp::Limits::default().max_attributes
}
fn stanza_rate() -> u32 {
    50
}
fn stanza_burst() -> u32 {
    200
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XmppSettings {
    /// `host:port` of the XMPP server; without it the domain's SRV records are used.
    #[serde(default)]
    pub server: Option<String>,
    /// Domains a client may open a stream to (`<open to=…/>`); anything else is
    /// `host-unknown`.
    pub domains: Vec<String>,
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM certificates trusted in addition to the system roots; the server's own
    /// certificate in it is trusted as it is (a self-signed one, CA:TRUE or not).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// SHA-256 of the server certificate's key (or a CA's in its chain), as curl's
    /// `--pinnedpubkey sha256//...`; alone, it is the trust.
    #[serde(default)]
    pub pin_sha256: Pins,
    /// A client certificate for servers that ask for one, and its key.
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// The name the server certificate must carry; defaults to the stream's domain.
    #[serde(default)]
    pub tls_server_name: Option<String>,
    /// Accept any server certificate. For development only; logged loudly.
    #[serde(default)]
    pub insecure: bool,
    /// How a SASL identity must match the user the WebSocket handshake authenticated.
    #[serde(default)]
    pub identity: IdentityMode,
    /// How long a client may take to send its `<open/>`.
    #[serde(with = "humantime_serde", default = "open_timeout")]
    pub open_timeout: Duration,
    /// Per server address tried.
    #[serde(with = "humantime_serde", default = "connect_timeout")]
    pub connect_timeout: Duration,
    /// Stream opening and TLS handshake, from TCP connect to the post-TLS features.
    #[serde(with = "humantime_serde", default = "tls_timeout")]
    pub tls_timeout: Duration,
    /// A whitespace keepalive goes to the server after this much silence towards it.
    #[serde(with = "humantime_serde", default = "server_keepalive")]
    pub server_keepalive: Duration,
    #[serde(default = "max_element_bytes")]
    pub max_element_bytes: usize,
    #[serde(default = "max_depth")]
    pub max_depth: usize,
    #[serde(default = "max_attributes")]
    pub max_attributes: usize,
    /// Elements per second a client may send, sustained.
    #[serde(default = "stanza_rate")]
    pub stanza_rate: u32,
    /// Elements a client may send at once.
    #[serde(default = "stanza_burst")]
    pub stanza_burst: u32,
}

impl XmppSettings {
    /// Checks what serde cannot and normalises domains to lower case.
    pub fn validate(&mut self) -> Result<(), SettingsError> {
        if self.domains.is_empty() {
            return Err(SettingsError::new(
                "domains",
                "at least one domain is required",
            ));
        }
        for domain in &mut self.domains {
            let trimmed = domain.trim().trim_end_matches('.').to_ascii_lowercase();
            if trimmed.is_empty() || trimmed.contains(['/', '@', ':', ' ']) {
                return Err(SettingsError::new(
                    "domains",
                    format!("not a domain: {domain:?}"),
                ));
            }
            *domain = trimmed;
        }
        if let Some(server) = &self.server {
            crate::connect::parse_host_port(server)
                .ok_or_else(|| SettingsError::new("server", "expected host:port"))?;
        }
        if let Some(name) = &self.tls_server_name {
            bridge_tls::server_name(name).map_err(|e| SettingsError::new("tls_server_name", e))?;
        }
        let positive = [
            ("open_timeout", self.open_timeout.is_zero()),
            ("connect_timeout", self.connect_timeout.is_zero()),
            ("tls_timeout", self.tls_timeout.is_zero()),
            ("server_keepalive", self.server_keepalive.is_zero()),
            ("max_element_bytes", self.max_element_bytes == 0),
            ("max_depth", self.max_depth == 0),
            ("max_attributes", self.max_attributes == 0),
            ("stanza_rate", self.stanza_rate == 0),
            ("stanza_burst", self.stanza_burst == 0),
        ];
        if let Some((key, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(SettingsError::new(*key, "must be greater than zero"));
        }
        Ok(())
    }

    /// The TLS client's settings, under this bridge's own key names (kept flat: `tls` is
    /// the STARTTLS/direct choice here).
    pub fn tls_settings(&self) -> TlsSettings {
        TlsSettings {
            ca_file: self.ca_file.clone(),
            pin_sha256: self.pin_sha256.clone(),
            client_cert: self.client_cert.clone(),
            client_key: self.client_key.clone(),
            server_name: self.tls_server_name.clone(),
            insecure: self.insecure,
        }
    }

    pub fn limits(&self) -> protocol_xmpp::Limits {
        protocol_xmpp::Limits {
            max_element_bytes: self.max_element_bytes,
            max_depth: self.max_depth,
            max_attributes: self.max_attributes,
        }
    }

    pub fn allows_domain(&self, domain: &str) -> bool {
        let domain = domain.trim_end_matches('.');
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bridge_api::parse_settings;
    use serde_json::json;

    fn parse(v: serde_json::Value) -> Result<XmppSettings, SettingsError> {
        let mut s: XmppSettings = parse_settings(v)?;
        s.validate()?;
        Ok(s)
    }

    #[test]
    fn defaults_and_durations() {
        let s = parse(json!({"domains": ["Example.ORG."], "open_timeout": "2s"})).unwrap();
        assert_eq!(s.domains, ["example.org"]);
        assert_eq!(s.tls, TlsMode::Starttls);
        assert_eq!(s.identity, IdentityMode::Local);
        assert_eq!(s.open_timeout, Duration::from_secs(2));
        assert_eq!(s.server_keepalive, Duration::from_secs(60));
        assert!(s.allows_domain("EXAMPLE.org"));
        assert!(!s.allows_domain("example.com"));
    }

    #[test]
    fn bad_values_name_their_key() {
        let cases = [
            (json!({"domains": []}), "domains"),
            (json!({"domains": ["a@b"]}), "domains"),
            (json!({"domains": ["x"], "server": "nohost"}), "server"),
            (json!({"domains": ["x"], "tls": "plain"}), "tls"),
            (json!({"domains": ["x"], "identity": "who"}), "identity"),
            (json!({"domains": ["x"], "stanza_burst": 0}), "stanza_burst"),
            (
                json!({"domains": ["x"], "tls_timeout": "0s"}),
                "tls_timeout",
            ),
            (
                json!({"domains": ["x"], "tls_server_name": "bad name!"}),
                "tls_server_name",
            ),
            (json!({"domains": ["x"], "typo": 1}), "typo"),
            (
                json!({"domains": ["x"], "pin_sha256": "sha256//AAAA"}),
                "pin_sha256",
            ),
        ];
        for (value, key) in cases {
            let err = parse(value.clone()).expect_err(&value.to_string());
            assert_eq!(err.path, key, "{value}: {err}");
        }
    }

    #[test]
    fn direct_tls_and_server() {
        let s = parse(json!({"domains": ["x"], "tls": "direct", "server": "[::1]:5223"})).unwrap();
        assert_eq!(s.tls, TlsMode::Direct);
    }
}

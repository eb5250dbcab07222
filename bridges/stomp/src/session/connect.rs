//! CONNECT / STOMP: version negotiation, credentials, heart-beats, CONNECTED.

use std::time::Duration;

use bridge_api::LoginRefused;
use protocol_stomp::{Command, Frame, Version};

use super::{FrameResult, StompError, StompSession};
use crate::backend::OpenRequest;

const SUPPORTED: &str = "1.0,1.1,1.2";

/// The highest version both sides speak; no `accept-version` means 1.0 (STOMP 1.1 §3.1).
fn negotiate(accept: Option<&str>, allowed: &[Version]) -> Option<Version> {
    let offered: Vec<Version> = match accept {
        None => vec![Version::V1_0],
        Some(list) => list
            .split(',')
            .filter_map(|v| Version::parse(v.trim()))
            .collect(),
    };
    offered.into_iter().filter(|v| allowed.contains(v)).max()
}

/// `heart-beat: cx,cy` from the client and ours `[sx, sy]`: the two intervals (STOMP 1.1
/// §Heart-beating): we send every max(sx, cy), expect every max(cx, sy); 0 on either side
/// means never. Ours is `StompSettings::heart_beat()`: by default the floor both ways, so
/// a client gets what it asks for, raised to the floor.
fn heart_beats(header: Option<&str>, ours: [u64; 2]) -> Result<(u64, u64), String> {
    let theirs = match header {
        None => (0, 0),
        Some(h) => protocol_stomp::parse_heart_beat(h).ok_or_else(|| {
            format!("heart-beat header {h:?} is not two numbers like 10000,10000")
        })?,
    };
    Ok(protocol_stomp::negotiate_heart_beats(
        (ours[0], ours[1]),
        theirs,
    ))
}

impl StompSession<'_> {
    pub(super) async fn connect(&mut self, frame: Frame) -> FrameResult {
        let allowed = self.bridge.versions_for(self.info.subprotocol.as_deref());
        let Some(version) = negotiate(frame.headers.get("accept-version"), allowed) else {
            let mut err = StompError::protocol(
                "version",
                "unsupported STOMP version",
                format!(
                    "Supported protocol versions are {}.",
                    allowed
                        .iter()
                        .map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            );
            err.message = format!("{} (supported: {SUPPORTED})", err.message);
            return Err(err);
        };
        self.version = version;
        self.decoder.set_version(version);

        let (out, inc) = heart_beats(
            frame.headers.get("heart-beat"),
            self.bridge.settings.heart_beat(),
        )
        .map_err(|e| StompError::protocol("bad_header", "bad heart-beat header", e))?;
        if version == Version::V1_0 {
            // 1.0 has no heart-beating.
            self.hb_out = None;
            self.hb_in = None;
        } else {
            self.hb_out = (out > 0).then(|| Duration::from_millis(out));
            self.hb_in = (inc > 0).then(|| Duration::from_millis(inc));
        }
        let tick = [self.hb_out.map(|d| d / 2), self.hb_in]
            .into_iter()
            .flatten()
            .min();
        self.hb_tick_period = tick.map(|d| d.max(Duration::from_millis(50)));

        let login = match (frame.headers.get("login"), frame.headers.get("passcode")) {
            (Some(l), p) => Some((l.to_string(), p.unwrap_or("").to_string())),
            (None, _) => None,
        };
        let principal = match (&self.info.principal, &login) {
            (Some(p), _) => Some(p.clone()),
            (None, Some((user, pass))) => {
                match self.bridge.credentials.check_login(user, pass).await {
                    Ok(p) => {
                        // The gateway's session span declared it empty for this moment.
                        tracing::Span::current()
                            .record("principal", tracing::field::display(&p.name));
                        Some(p)
                    }
                    Err(LoginRefused::Invalid) => {
                        return Err(StompError::policy(
                            "login",
                            "login failed",
                            format!("Invalid login or passcode for user {user:?}."),
                        ))
                    }
                    Err(LoginRefused::Busy) => return Err(StompError::login_busy()),
                }
            }
            (None, None) if self.bridge.settings.require_login => {
                return Err(StompError::policy(
                    "login",
                    "login required",
                    "This service requires login and passcode headers on CONNECT.",
                ))
            }
            (None, None) => None,
        };

        let backend = self
            .bridge
            .backend
            .open(OpenRequest {
                session_id: self.info.id,
                inbox: self.inbox.clone(),
                login,
            })
            .await
            .map_err(StompError::from)?;
        self.backend = Some(backend);
        self.acl = self.bridge.acl.grant(principal.as_ref());
        self.bridge.metrics.session_opened(version);

        let mut connected = Frame::new(Command::Connected)
            .header("version", version.as_str())
            .header("server", concat!("gateway/", env!("CARGO_PKG_VERSION")))
            .header("session", format!("session-{}", self.info.id));
        if version > Version::V1_0 {
            connected = connected.header("heart-beat", format!("{out},{inc}"));
        }
        if let Some(p) = &principal {
            connected = connected.header("user-name", p.name.as_str());
        }
        if self.info.principal.is_none() && principal.is_some() && self.bridge.realm_logins {
            // A realm login: the gateway now knows who this is (its admin view, a realm
            // reload's revocation). A broker's own login is the broker's business.
            self.control.set_principal(principal.clone());
        }
        self.principal = principal;
        self.send_frame(connected).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: &[Version] = &[Version::V1_0, Version::V1_1, Version::V1_2];

    #[test]
    fn negotiates_the_highest_common_version() {
        assert_eq!(negotiate(Some("1.0,1.1,1.2"), ALL), Some(Version::V1_2));
        assert_eq!(negotiate(Some("1.1"), ALL), Some(Version::V1_1));
        assert_eq!(negotiate(None, ALL), Some(Version::V1_0));
        assert_eq!(negotiate(Some("2.0"), ALL), None);
        assert_eq!(negotiate(Some("1.2"), &[Version::V1_1]), None);
    }

    #[test]
    fn heart_beat_negotiation() {
        assert_eq!(heart_beats(Some("0,0"), [10_000, 10_000]), Ok((0, 0)));
        assert_eq!(
            heart_beats(Some("4000,20000"), [10_000, 10_000]),
            Ok((20_000, 10_000))
        );
        assert_eq!(heart_beats(None, [10_000, 10_000]), Ok((0, 0)));
        assert_eq!(heart_beats(Some("1000,1000"), [0, 500]), Ok((0, 1000)));
        assert!(heart_beats(Some("x"), [1, 1]).is_err());
    }

    /// What a client asking `header` gets from a service with these settings.
    fn granted(settings: serde_json::Value, header: &str) -> (u64, u64) {
        let s: crate::settings::StompSettings =
            bridge_api::parse_settings(settings).expect("settings parse");
        s.validate().expect("settings are valid");
        heart_beats(Some(header), s.heart_beat()).expect("header parses")
    }

    #[test]
    fn by_default_a_client_gets_what_it_asks_down_to_the_floor() {
        let default = serde_json::json!({});
        assert_eq!(granted(default.clone(), "1000,1000"), (1000, 1000));
        assert_eq!(granted(default.clone(), "200,200"), (1000, 1000));
        assert_eq!(granted(default.clone(), "0,0"), (0, 0));
        assert_eq!(granted(default.clone(), "30000,30000"), (30_000, 30_000));
        // Each direction on its own: cx is what the client sends, cy what it wants.
        assert_eq!(granted(default.clone(), "0,1500"), (1500, 0));
        assert_eq!(granted(default.clone(), "30000,0"), (0, 30_000));
        assert_eq!(granted(default, "500,45000"), (45_000, 1000));
    }

    #[test]
    fn heart_beat_floor_is_configurable() {
        let floor = serde_json::json!({ "heart_beat_floor": 2000 });
        assert_eq!(granted(floor.clone(), "1000,1000"), (2000, 2000));
        assert_eq!(granted(floor.clone(), "3000,2500"), (2500, 3000));
        assert_eq!(granted(floor, "0,0"), (0, 0));
        let low = serde_json::json!({ "heart_beat_floor": 100 });
        assert_eq!(granted(low, "200,200"), (200, 200));
    }

    #[test]
    fn an_explicit_heart_beat_follows_the_spec() {
        let fixed = serde_json::json!({ "heart_beat": [10000, 10000] });
        assert_eq!(granted(fixed.clone(), "1000,1000"), (10_000, 10_000));
        assert_eq!(granted(fixed.clone(), "4000,20000"), (20_000, 10_000));
        assert_eq!(granted(fixed, "0,0"), (0, 0));
        // 0 on our side: we never send (first), or never ask (second).
        let send_only = serde_json::json!({ "heart_beat": [5000, 0] });
        assert_eq!(granted(send_only, "1000,1000"), (5000, 0));
        let off = serde_json::json!({ "heart_beat": [0, 0] });
        assert_eq!(granted(off, "1000,1000"), (0, 0));
        // Below the default floor, with the floor lowered to match.
        let fast = serde_json::json!({ "heart_beat": [500, 500], "heart_beat_floor": 500 });
        assert_eq!(granted(fast.clone(), "500,500"), (500, 500));
        assert_eq!(granted(fast, "100,100"), (500, 500));
    }
}

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use bridge_api::{
    async_trait, Bridge, BridgeError, BridgeFactory, BuildContext, Session, SettingsError,
};
use http::{HeaderMap, HeaderValue, StatusCode};

use super::*;
use crate::auth::{AuthConfig, Authenticator};
use crate::config::{GatewayConfig, LimitsConfig, ServiceConfig};
use crate::reload::CurrentAuth;
use crate::services::ServiceTable;

const SECRET: &str = "a test secret that is at least 32 bytes long";
const PEER: &str = "127.0.0.1:40000";

/// A bridge whose readiness is its one setting.
struct Fake;
struct FakeBridge {
    ready: bool,
}

#[async_trait]
impl Bridge for FakeBridge {
    fn subprotocols(&self) -> &[&'static str] {
        &["v2.fake", "fake"]
    }
    fn is_ready(&self) -> bool {
        self.ready
    }
    async fn serve(&self, _: Session) -> Result<(), BridgeError> {
        Ok(())
    }
}

impl BridgeFactory for Fake {
    fn kind(&self) -> &'static str {
        "fake"
    }
    fn build(
        &self,
        _: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError> {
        let ready = settings["ready"].as_bool().unwrap_or(true);
        Ok(Arc::new(FakeBridge { ready }))
    }
}

fn service(name: &str, path: &str) -> ServiceConfig {
    ServiceConfig {
        name: name.into(),
        path: path.into(),
        bridge: "fake".into(),
        allow_no_subprotocol: false,
        allowed_origins: vec![],
        allow_missing_origin: true,
        require_auth: false,
        require_roles: vec![],
        settings: serde_json::json!({}),
        compression: None,
    }
}

fn down(mut cfg: ServiceConfig) -> ServiceConfig {
    cfg.settings = serde_json::json!({ "ready": false });
    cfg
}

fn state_with(services: &[ServiceConfig], limits: LimitsConfig) -> Arc<AppState> {
    let auth: AuthConfig =
        toml::from_str(&format!("[jwt]\nhs256_secret = \"{SECRET}\"\n")).expect("auth config");
    let auth = Arc::new(Authenticator::from_config(&auth).expect("authenticator"));
    let factories: Vec<Box<dyn BridgeFactory>> = vec![Box::new(Fake)];
    let table = ServiceTable::build(services, &factories, auth.credential_check(), "test")
        .expect("services");
    let config = GatewayConfig {
        limits,
        ..GatewayConfig::default()
    };
    let live = Live::new(config, table, auth, None);
    AppState::new(live, None, CurrentAuth::new(), None)
}

fn state(services: &[ServiceConfig]) -> Arc<AppState> {
    state_with(services, LimitsConfig::default())
}

fn token(roles: &str) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        + 600;
    let claims = serde_json::json!({ "sub": "bob", "exp": exp, "roles": roles });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .expect("token")
}

/// A handshake at `path` offering `fake`, from a client with no Origin header.
struct Req {
    path: &'static str,
    headers: HeaderMap,
    offered: Vec<&'static str>,
}

fn req(path: &'static str) -> Req {
    Req {
        path,
        headers: HeaderMap::new(),
        offered: vec!["fake"],
    }
}

impl Req {
    fn header(mut self, name: &'static str, value: &str) -> Req {
        self.headers
            .insert(name, HeaderValue::from_str(value).expect("header value"));
        self
    }

    fn offering(mut self, offered: &[&'static str]) -> Req {
        self.offered = offered.to_vec();
        self
    }
}

async fn run(state: &AppState, req: &Req, conn: &ConnectionSlot) -> Result<Admitted, Refusal> {
    let request = AdmissionRequest {
        path: req.path,
        headers: &req.headers,
        query: None,
        peer: PEER.parse().expect("peer"),
        offered: &req.offered,
        transport: "test",
    };
    admit(state, &state.live(), request, conn).await
}

fn conn(state: &AppState) -> ConnectionSlot {
    Arc::new(Mutex::new(state.connections.try_open()))
}

async fn admitted(state: &AppState, req: Req) -> Admitted {
    match run(state, &req, &conn(state)).await {
        Ok(a) => a,
        Err(r) => panic!("refused: {r:?}"),
    }
}

async fn refused(state: &AppState, req: Req) -> Refusal {
    match run(state, &req, &conn(state)).await {
        Ok(a) => panic!("admitted to {}", a.service.name),
        Err(r) => r,
    }
}

fn assert_refusal(r: &Refusal, status: StatusCode, result: &str, reason: &str) {
    assert_eq!(
        (r.status, r.result, r.reason.as_str()),
        (status, result, reason),
        "{r:?}"
    );
}

#[tokio::test]
async fn accepted_sessions_get_their_info_and_the_open_slot() {
    let mut cfg = service("s", "/ws");
    cfg.allowed_origins = vec!["*".into()];
    let s = state(&[cfg]);
    let req = req("/ws")
        .offering(&["x", "fake", "v2.fake"])
        .header("origin", "https://anywhere.example");
    let conn = conn(&s);
    let a = run(&s, &req, &conn).await.expect("admitted");
    assert_eq!(a.subprotocol, Some("v2.fake"), "the bridge's order wins");
    assert_eq!(&*a.service.name, "s");
    let info = &a.info;
    assert_eq!(&*info.service, "s");
    assert_eq!(info.peer, PEER.parse::<SocketAddr>().unwrap());
    assert_eq!(info.origin.as_deref(), Some("https://anywhere.example"));
    assert_eq!(info.subprotocol.as_deref(), Some("v2.fake"));
    assert_eq!(info.transport, "test");
    assert!(info.principal.is_none());
    assert!(conn.lock().unwrap().is_none(), "the session holds the slot");
    let next = admitted(&s, req).await;
    assert_ne!(next.info.id, a.info.id);
}

#[tokio::test]
async fn a_refusal_leaves_the_open_slot_with_the_connection() {
    let s = state(&[service("s", "/ws")]);
    let conn = conn(&s);
    assert!(run(&s, &req("/nope"), &conn).await.is_err());
    assert!(conn.lock().unwrap().is_some());
}

#[tokio::test]
async fn unknown_path_and_no_common_subprotocol() {
    let s = state(&[service("s", "/ws")]);
    let r = refused(&s, req("/nope")).await;
    assert_refusal(
        &r,
        StatusCode::NOT_FOUND,
        outcome::NOT_FOUND,
        "no WebSocket service at /nope",
    );
    let r = refused(&s, req("/ws").offering(&["x", "y"])).await;
    assert_refusal(
        &r,
        StatusCode::BAD_REQUEST,
        outcome::NO_SUBPROTOCOL,
        "no supported subprotocol offered (offered: [x, y]; supported here: [v2.fake, fake])",
    );
}

#[tokio::test]
async fn draining_refuses_before_the_origin_is_checked() {
    let mut cfg = service("s", "/ws");
    cfg.allow_missing_origin = false;
    let s = state(&[cfg]);
    s.start_draining();
    let r = refused(&s, req("/ws")).await;
    assert_refusal(
        &r,
        StatusCode::SERVICE_UNAVAILABLE,
        outcome::UNAVAILABLE,
        "server is shutting down",
    );
}

#[tokio::test]
async fn origin_is_checked_before_readiness() {
    let mut cfg = down(service("s", "/ws"));
    cfg.allow_missing_origin = false;
    let s = state(&[cfg]);
    let r = refused(&s, req("/ws")).await;
    assert_refusal(
        &r,
        StatusCode::FORBIDDEN,
        outcome::BAD_ORIGIN,
        "a missing Origin header is not allowed",
    );
    let r = refused(&s, req("/ws").header("origin", "https://evil.example")).await;
    assert_refusal(
        &r,
        StatusCode::FORBIDDEN,
        outcome::BAD_ORIGIN,
        "origin https://evil.example is not allowed",
    );
    let same_origin = req("/ws")
        .header("origin", "https://gw.example")
        .header("host", "gw.example");
    let r = refused(&s, same_origin).await;
    assert_refusal(
        &r,
        StatusCode::SERVICE_UNAVAILABLE,
        outcome::UNAVAILABLE,
        "service s is not ready (its backend is unavailable)",
    );
}

#[tokio::test]
async fn readiness_before_the_per_ip_cap_and_the_cap_before_credentials() {
    let limits = LimitsConfig {
        max_connections_per_ip: 1,
        ..LimitsConfig::default()
    };
    let s = state_with(&[service("s", "/ws"), down(service("d", "/down"))], limits);
    let first = admitted(&s, req("/ws")).await;
    let r = refused(&s, req("/down")).await;
    assert_eq!(r.result, outcome::UNAVAILABLE, "{r:?}");
    let bad_credentials = req("/ws").header("authorization", "Basic Ym9iOnB3");
    let r = refused(&s, bad_credentials).await;
    assert_refusal(
        &r,
        StatusCode::TOO_MANY_REQUESTS,
        outcome::LIMIT,
        "too many connections from 127.0.0.1",
    );
    drop(first);
    admitted(&s, req("/ws")).await;
}

#[tokio::test]
async fn credentials_are_checked_before_roles() {
    let limits = LimitsConfig {
        max_connections_per_ip: 1,
        ..LimitsConfig::default()
    };
    let mut cfg = service("s", "/ws");
    cfg.require_roles = vec!["admin".into()];
    let s = state_with(&[cfg], limits);

    let r = refused(&s, req("/ws").header("authorization", "Basic Ym9iOnB3")).await;
    assert_refusal(
        &r,
        StatusCode::UNAUTHORIZED,
        outcome::UNAUTHENTICATED,
        "basic credentials given but no user realm is configured",
    );
    assert!(r.challenge);
    let r = refused(&s, req("/ws")).await;
    assert_refusal(
        &r,
        StatusCode::UNAUTHORIZED,
        outcome::UNAUTHENTICATED,
        "authentication required",
    );
    assert!(r.challenge);
    let bearer = format!("Bearer {}", token("chat"));
    let r = refused(&s, req("/ws").header("authorization", &bearer)).await;
    assert_refusal(
        &r,
        StatusCode::FORBIDDEN,
        outcome::FORBIDDEN,
        "user bob lacks the role admin",
    );
    assert!(!r.challenge);

    // Each refusal above gave its per-IP place back.
    let bearer = format!("Bearer {}", token("chat admin"));
    let a = admitted(&s, req("/ws").header("authorization", &bearer)).await;
    let principal = a.info.principal.as_ref().expect("principal");
    assert_eq!(principal.name, "bob");
}

#[tokio::test]
async fn handshake_rate_comes_first_and_says_when_to_retry() {
    let limits = LimitsConfig {
        handshakes_per_ip_per_second: 0.5,
        handshake_burst_per_ip: 2,
        ..LimitsConfig::default()
    };
    let s = state_with(&[service("s", "/ws"), down(service("d", "/down"))], limits);
    let _a = admitted(&s, req("/ws")).await;
    // A refusal further on (a service down) still spent a handshake.
    assert_eq!(refused(&s, req("/down")).await.result, outcome::UNAVAILABLE);
    let r = refused(&s, req("/ws").header("authorization", "Basic Ym9iOnB3")).await;
    assert_refusal(
        &r,
        StatusCode::TOO_MANY_REQUESTS,
        outcome::LIMIT,
        "too many handshakes from 127.0.0.1: retry later",
    );
    assert_eq!(r.retry_after, Some(2), "one token at 0.5/s");
    // New limits apply at once; the bucket keeps its (spent) tokens.
    let stricter = LimitsConfig {
        handshakes_per_ip_per_second: 1.0,
        handshake_burst_per_ip: 1,
        ..LimitsConfig::default()
    };
    s.handshake_rate.set_limits(stricter.handshake_rate());
    assert!(refused(&s, req("/ws")).await.retry_after.is_some());
}

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::*;
use crate::state::AppState;

const V1: &str = r#"
[server]
listen = "127.0.0.1:18080"
[limits]
max_connections_per_ip = 5
[[service]]
name = "a"
path = "/a"
bridge = "echo"
[[service]]
name = "b"
path = "/b"
bridge = "echo"
"#;

const V2: &str = r#"
[server]
listen = "127.0.0.1:18081"
[limits]
max_connections_per_ip = 3
[[service]]
name = "a"
path = "/a"
bridge = "echo"
[[service]]
name = "b"
path = "/b"
bridge = "echo"
allowed_origins = ["https://app.example"]
[[service]]
name = "c"
path = "/c"
bridge = "echo"
"#;

fn state_from(path: &Path) -> Arc<AppState> {
    let credentials = CurrentAuth::new();
    let p = crate::run::prepare(Some(path), &credentials).expect("valid configuration");
    p.services.start_new();
    let live = Live::new(p.config, p.services, p.auth, p.tls);
    AppState::new(live, None, credentials, Some(path.to_path_buf()))
}

#[tokio::test]
async fn a_reload_applies_and_reports_and_a_refused_one_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gateway.toml");
    std::fs::write(&path, V1).expect("write");
    let state = state_from(&path);
    let seen = Arc::new(AtomicUsize::new(0));
    let hook_seen = seen.clone();
    state.reload_hooks.add(Box::new(move |cfg| {
        hook_seen.store(cfg.limits.max_connections_per_ip, Ordering::SeqCst);
        Ok(())
    }));
    let a_before = state.live().services.get("a").expect("a").clone();

    std::fs::write(&path, V2).expect("write");
    let report = reload(&state, state.config_path.as_deref())
        .await
        .expect("accepted");
    assert_eq!(report.applied, ["limits.max_connections_per_ip"]);
    assert_eq!(report.restart_required, ["server.listen"]);
    assert_eq!(report.services.unchanged, ["a"]);
    assert_eq!(report.services.updated, ["b"]);
    assert_eq!(report.services.added, ["c"]);
    assert_eq!(report.sessions_revoked, 0);
    let live = state.live();
    assert_eq!(live.limits.max_connections_per_ip, 3);
    assert_eq!(
        live.config.server.listen.port(),
        18080,
        "restart-only keys keep the value in force"
    );
    assert!(Arc::ptr_eq(live.services.get("a").expect("a"), &a_before));
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "the hook saw the new configuration"
    );
    let (status, body) = answer(&Ok(report));
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(body["services"]["added"], serde_json::json!(["c"]));

    let unknown_bridge = V2.replace(
        "path = \"/c\"\nbridge = \"echo\"",
        "path = \"/c\"\nbridge = \"mqtt\"",
    );
    std::fs::write(&path, unknown_bridge).expect("write");
    let err = reload(&state, state.config_path.as_deref())
        .await
        .expect_err("an unknown bridge is refused");
    assert_eq!(err.key.as_deref(), Some("service[2].bridge"));
    assert!(err.message.contains("unknown bridge `mqtt`"), "{err}");
    assert!(
        Arc::ptr_eq(&state.live(), &live),
        "the old configuration stays entirely"
    );
    seen.store(0, Ordering::SeqCst);
    let (status, body) = answer(&Err(err));
    assert_eq!(status, http::StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["key"], "service[2].bridge");
    assert_eq!(seen.load(Ordering::SeqCst), 0);
}

#[test]
fn a_new_authenticator_recognises_the_old_ones_credential_fingerprints() {
    // HTTP fallback sessions compare each request's fingerprint with the one they opened
    // with; after a reload that is another authenticator's.
    let cfg = crate::auth::AuthConfig::default();
    let (a, b) = (
        crate::auth::Authenticator::from_config(&cfg).expect("a"),
        crate::auth::Authenticator::from_config(&cfg).expect("b"),
    );
    let mut h = http::HeaderMap::new();
    h.insert(
        "authorization",
        "Basic YWxpY2U6cHc=".parse().expect("value"),
    );
    assert!(a.fingerprint(&h, None).is_some());
    assert_eq!(a.fingerprint(&h, None), b.fingerprint(&h, None));
}

//! Start-up, serving and shutdown.

use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::auth::Authenticator;
use crate::config::{self, GatewayConfig};
use crate::error::StartupError;
use crate::logging::LogControl;
use crate::registry::builtin_bridges;
use crate::reload::CurrentAuth;
use crate::services::ServiceTable;
use crate::state::{AppState, Live};

/// Everything a configuration needs before anything listens: bridges built, keys read.
/// Start-up, `--check-config` and a reload all go through [`prepare`].
pub(crate) struct Prepared {
    pub config: GatewayConfig,
    pub services: ServiceTable,
    pub auth: Arc<Authenticator>,
    pub tls: Option<TlsAcceptor>,
    pub admin_token: Option<String>,
}

/// `credentials` is what the bridges check protocol-level logins against: the gateway's
/// current authenticator, whichever that is when they do.
pub(crate) fn prepare(
    path: Option<&Path>,
    credentials: &Arc<CurrentAuth>,
) -> Result<Prepared, StartupError> {
    let mut config = config::load(path)?;
    config::resolve_node(&mut config)?;
    config.limits.validate()?;
    config.http_fallback.validate(&config.limits)?;
    let admin_token = config.admin.resolve_token()?;
    let factories = builtin_bridges();
    if config.services.is_empty() {
        config.services = config::default_services(&factories);
    }
    let auth = Arc::new(Authenticator::from_config(&config.auth)?);
    let services = ServiceTable::build(
        &config.services,
        &factories,
        credentials.check(),
        config.node(),
    )?;
    let tls = config
        .server
        .tls
        .as_ref()
        .map(crate::tls::acceptor)
        .transpose()?;
    if let Some(dir) = &config.server.static_dir {
        if !dir.is_dir() {
            return Err(StartupError::StaticDir(dir.clone()));
        }
    }
    Ok(Prepared {
        config,
        services,
        auth,
        admin_token,
        tls,
    })
}

/// `--check-config`: the effective configuration as TOML, or the first error.
pub fn check(path: &Path) -> Result<String, StartupError> {
    // Building is pure (bridges start their work in `Bridge::start`), so no runtime.
    let prepared = prepare(Some(path), &CurrentAuth::new())?;
    Ok(crate::admin::config::redacted_toml(&prepared.config)?)
}

/// Raise the open-file soft limit to the hard limit: every connection is a descriptor.
fn raise_fd_limit(max_connections: usize) {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => {
            // A few descriptors go to listeners, logs and bridges' own sockets.
            let usable = n.saturating_sub(100);
            tracing::info!("open-file limit {n}: room for about {usable} client connections");
            if (max_connections as u64) > usable {
                tracing::warn!(
                    "limits.max_connections = {max_connections} exceeds what the open-file limit allows"
                );
            }
        }
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
}

/// `log` changes the level filter: each reload applies its `log.level` through it.
pub async fn run(path: Option<&Path>, log: LogControl) -> Result<(), StartupError> {
    // Before anything resolves metric handles (services do when built), or they are no-ops.
    let metrics = crate::admin::install_metrics()?;
    crate::reload::init_metrics();
    let credentials = CurrentAuth::new();
    let Prepared {
        config,
        services,
        auth,
        admin_token,
        tls,
    } = prepare(path, &credentials)?;
    tracing::info!(
        "gateway {} starting as node {}",
        env!("CARGO_PKG_VERSION"),
        config.node()
    );
    crate::admin::set_info(config.node());
    raise_fd_limit(config.limits.max_connections);
    crate::background::start(&services);

    let scheme = if tls.is_some() { "https" } else { "http" };
    let fallback = fallback(&config);
    let state = AppState::new(
        Live::new(config.clone(), services, auth, tls),
        fallback,
        credentials,
        path.map(Path::to_path_buf),
    );
    state.reload_hooks.add(Box::new(move |config| {
        log.set_level(config.log.level.as_str())
            .map_err(|e| format!("log.level {e}"))
    }));

    let listener = bind_listener(config.server.listen).map_err(|source| StartupError::Bind {
        key: "server.listen",
        addr: config.server.listen,
        source,
    })?;
    let admin = TcpListener::bind(config.admin.listen)
        .await
        .map_err(|source| StartupError::Bind {
            key: "admin.listen",
            addr: config.admin.listen,
            source,
        })?;
    tracing::info!("listening on {scheme}://{}", config.server.listen);
    let live = state.live();
    for s in live.services.all() {
        tracing::info!(
            "service {} ({}) subprotocols [{}]",
            s.name,
            s.config.path,
            s.bridge.subprotocols().join(", ")
        );
    }
    tracing::info!(
        "handshake authentication: realm {}, JWT {}",
        if live.auth.has_realm() { "on" } else { "off" },
        if live.auth.has_jwt() { "on" } else { "off" }
    );
    drop(live);
    if !config.server.proxy_protocol.is_empty() {
        tracing::info!(
            "PROXY protocol (v1, v2) required from {}",
            list(&config.server.proxy_protocol)
        );
    }
    if config.limits.handshakes_per_ip_per_second > 0.0 {
        tracing::info!(
            "handshake rate per client IP: {}/s, bursts of {}",
            config.limits.handshakes_per_ip_per_second,
            config.limits.handshake_burst_per_ip
        );
    }
    tracing::info!(
        "admin listener: {}",
        crate::admin::describe_listen(config.admin.listen, admin_token.is_some())
    );

    state.live_sessions.start_expiry(state.shutdown.clone());
    let admin_stop = tokio_util::sync::CancellationToken::new();
    let admin_api = crate::admin::AdminApi::new(
        state.clone(),
        metrics,
        admin_token.map(crate::admin::AdminToken::new),
    );
    let admin_task = tokio::spawn(crate::admin::serve(admin, admin_api, admin_stop.clone()));
    let accept_task = tokio::spawn(crate::listener::accept_loop(listener, state.clone()));

    serve_signals(&state).await;
    // Unready first, so a load balancer stops sending; then stop accepting and ask every
    // session to finish; bridges close their clients with 1001 Going Away.
    state.start_draining();
    // As the last reload left it.
    let drain_timeout = state.live().limits.drain_timeout;
    tracing::info!("shutting down: draining sessions for up to {drain_timeout:?}");
    state.shutdown.cancel();
    let _ = accept_task.await;
    state.sessions.close();
    let started = std::time::Instant::now();
    if tokio::time::timeout(drain_timeout, state.sessions.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "drain deadline passed with {} sessions open; exiting",
            state.sessions.len()
        );
    }
    // Then the bridges' own work (broker connections close with a goodbye), in what is
    // left of the drain, but at least a moment for a clean close.
    let left = drain_timeout
        .saturating_sub(started.elapsed())
        .max(std::time::Duration::from_secs(1));
    crate::background::stop(&state.live().services, state.retired(), left).await;
    admin_stop.cancel();
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

fn list(nets: &[ipnet::IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The HTTP fallback transport's settings, if it is enabled.
fn fallback(config: &GatewayConfig) -> Option<Arc<crate::fallback::Fallback>> {
    let fb = &config.http_fallback;
    if !fb.enabled {
        return None;
    }
    let limits = &config.limits;
    tracing::info!("HTTP fallback on every service path P (P/sessions)");
    Some(crate::fallback::Fallback::new(
        crate::fallback::RouteSettings {
            node: config.node().to_string(),
            grace: fb.grace,
            keepalive: fb.keepalive,
            stream_bytes: fb.stream_bytes,
            max_post_bytes: fb.max_post_bytes(limits),
            max_message_size: limits.max_message_size,
        },
        crate::fallback::SessionSettings {
            outgoing_queue: limits.outgoing_queue,
            // As the WebSocket transport's linger (state.rs).
            linger: std::time::Duration::from_secs(2),
            grace: fb.grace,
            replay_bytes: fb.replay_bytes,
        },
        fb.max_sessions(limits),
    ))
}

/// A deep accept backlog: a burst of connecting clients (a reconnect storm after a restart)
/// waits in the kernel instead of being dropped; `TcpListener::bind` only allows 128.
fn bind_listener(addr: std::net::SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// Until SIGTERM, SIGINT or a drain asked for through the admin API: each SIGHUP reloads
/// the configuration from the file it started with.
async fn serve_signals(state: &AppState) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())
        .inspect_err(|e| tracing::warn!("cannot listen for SIGTERM: {e}"))
        .ok();
    let mut int = signal(SignalKind::interrupt()).ok();
    let mut hup = signal(SignalKind::hangup())
        .inspect_err(|e| tracing::warn!("cannot listen for SIGHUP (no reloads by signal): {e}"))
        .ok();
    loop {
        tokio::select! {
            _ = recv(&mut term) => return tracing::info!("SIGTERM received"),
            _ = recv(&mut int) => return tracing::info!("SIGINT received"),
            _ = state.drain_requested.cancelled() => {
                return tracing::info!("drain requested through the admin API")
            }
            _ = recv(&mut hup) => {
                tracing::info!("SIGHUP received: reloading the configuration");
                // Logged and counted inside; the old configuration stays if refused.
                let _ = crate::reload::reload(state, state.config_path.as_deref()).await;
            }
        }
    }
}

/// The next signal of a stream that may have failed to set up (then: never).
async fn recv(s: &mut Option<tokio::signal::unix::Signal>) {
    match s.as_mut() {
        Some(s) => {
            s.recv().await;
        }
        None => std::future::pending().await,
    }
}

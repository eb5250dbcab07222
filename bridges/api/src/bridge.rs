use std::sync::Arc;

use crate::{Background, BridgeError, CredentialCheck, Session, SettingsError};

/// A protocol bridge: serves sessions for the subprotocols it names.
#[async_trait::async_trait]
pub trait Bridge: Send + Sync + 'static {
    /// Subprotocol tokens this bridge serves, in server preference order.
    fn subprotocols(&self) -> &[&'static str];

    /// False while the bridge cannot serve new sessions (e.g. its backend is down);
    /// the gateway's `/readyz` reports it.
    fn is_ready(&self) -> bool {
        true
    }

    /// Whether [`is_ready`](Self::is_ready) counts for the gateway's `/readyz`. A service
    /// that is optional (a default one whose backend may not be installed) says no: its
    /// upgrades are still refused while it is not ready.
    fn gates_readiness(&self) -> bool {
        true
    }

    /// Start the work the bridge runs beside its sessions, once, before the first session.
    /// Spawn it on `bg` and stop it when `bg.shutdown()` fires: the gateway waits for it
    /// when it drains.
    fn start(&self, _bg: Background) {}

    /// Drive one session until either side closes or the session's shutdown fires.
    async fn serve(&self, session: Session) -> Result<(), BridgeError>;
}

/// What the gateway offers a bridge when it is built.
#[derive(Clone)]
pub struct BuildContext {
    /// The service this bridge instance serves; one bridge kind may serve many services.
    pub service: Arc<str>,
    /// The gateway's realm, for protocol-level logins.
    pub credentials: Arc<dyn CredentialCheck>,
    /// This gateway's node name (`server.node`), for naming what the bridge creates on a
    /// broker that other gateways share (queues, connections), so none collide.
    pub node: Arc<str>,
}

/// A service a bridge kind offers in the built-in default configuration.
pub struct DefaultService {
    pub path: &'static str,
    pub settings: serde_json::Value,
    pub allow_no_subprotocol: bool,
}

/// Builds bridges of one kind from their settings. Registered once at start-up.
pub trait BridgeFactory: Send + Sync {
    /// The `bridge = "..."` name in service configuration.
    fn kind(&self) -> &'static str;

    /// Build one instance for one service. Unknown or bad settings are errors naming the key.
    /// Building should be pure: no tasks and no I/O beyond reading files the settings name,
    /// so a configuration check builds every bridge without starting anything; tasks belong
    /// in [`Bridge::start`].
    fn build(
        &self,
        ctx: BuildContext,
        settings: serde_json::Value,
    ) -> Result<Arc<dyn Bridge>, SettingsError>;

    /// The service this kind runs with when the gateway starts with no configuration file.
    /// `None` when the bridge needs settings only an operator can give (e.g. a target host).
    fn default_service(&self) -> Option<DefaultService> {
        None
    }
}

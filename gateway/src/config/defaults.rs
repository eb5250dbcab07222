use bridge_api::BridgeFactory;

use super::{empty_table, ServiceConfig};

/// The services the gateway runs with when the configuration names none: each bridge kind's
/// own default (echo at `/echo`, every protocol bridge at `/ws`, chosen by subprotocol).
pub fn default_services(factories: &[Box<dyn BridgeFactory>]) -> Vec<ServiceConfig> {
    factories
        .iter()
        .filter_map(|f| {
            let d = f.default_service()?;
            Some(ServiceConfig {
                name: f.kind().to_string(),
                path: d.path.to_string(),
                bridge: f.kind().to_string(),
                allow_no_subprotocol: d.allow_no_subprotocol,
                allowed_origins: Vec::new(),
                allow_missing_origin: true,
                require_auth: false,
                require_roles: Vec::new(),
                settings: if d.settings.is_null() {
                    empty_table()
                } else {
                    d.settings
                },
                compression: None,
            })
        })
        .collect()
}

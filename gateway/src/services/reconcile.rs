//! What a reload does to the service table: a bridge whose kind and settings are unchanged
//! is carried into the new table (same instance, same background work, same broker
//! connections), even when the service's gateway-side keys (path, origins, roles) changed;
//! any other bridge in the new table is the freshly built one. Old bridges left out are
//! retired: they take no new sessions and stop once their last session has ended.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::{Retired, Service, ServiceTable};

/// How one service of the new table relates to the old one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServiceState {
    /// The same `[[service]]` table: the same service.
    Unchanged,
    /// Gateway-side keys changed (path, origins, auth): new handshakes see them, the
    /// bridge is the same.
    Updated,
    /// Bridge kind or settings changed: a new bridge for new sessions.
    Rebuilt,
    Added,
}

/// The services by what a reload did to them, by name in configuration order.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceChanges {
    pub unchanged: Vec<String>,
    pub updated: Vec<String>,
    pub rebuilt: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

impl ServiceChanges {
    fn push(&mut self, name: &str, state: ServiceState) {
        let list = match state {
            ServiceState::Unchanged => &mut self.unchanged,
            ServiceState::Updated => &mut self.updated,
            ServiceState::Rebuilt => &mut self.rebuilt,
            ServiceState::Added => &mut self.added,
        };
        list.push(name.to_string());
    }
}

fn same_bridge(a: &Service, b: &Service) -> bool {
    a.config.bridge == b.config.bridge && a.config.settings == b.config.settings
}

fn same_table(a: &Service, b: &Service) -> bool {
    // Through JSON: every key the table can hold, without a PartialEq on the config types.
    serde_json::to_value(&a.config).ok() == serde_json::to_value(&b.config).ok()
}

/// `fresh` with the bridge (and its background work and counters) of `old`.
fn carried(fresh: &Service, old: &Service) -> Service {
    Service {
        name: fresh.name.clone(),
        bridge: old.bridge.clone(),
        allow_no_subprotocol: fresh.allow_no_subprotocol,
        origins: fresh.origins.clone(),
        require_auth: fresh.require_auth,
        require_roles: fresh.require_roles.clone(),
        counters: old.counters.clone(),
        http_counters: old.http_counters.clone(),
        compression: fresh.compression.clone(),
        background: old.background.clone(),
        config: fresh.config.clone(),
        instance: old.instance.clone(),
    }
}

impl ServiceTable {
    /// This freshly built table with every bridge `old` can lend it, how each service
    /// changed, and the old bridges no longer in it (to stop once their sessions end).
    pub fn carry_over(self, old: &ServiceTable) -> (ServiceTable, ServiceChanges, Vec<Retired>) {
        let mut changes = ServiceChanges::default();
        let mut all = Vec::with_capacity(self.all.len());
        for fresh in &self.all {
            let (service, state) = match old.get(&fresh.name) {
                None => (fresh.clone(), ServiceState::Added),
                Some(o) if same_table(o, fresh) => (o.clone(), ServiceState::Unchanged),
                Some(o) if same_bridge(o, fresh) => {
                    (Arc::new(carried(fresh, o)), ServiceState::Updated)
                }
                Some(_) => (fresh.clone(), ServiceState::Rebuilt),
            };
            changes.push(&fresh.name, state);
            all.push(service);
        }
        let mut retired = Vec::new();
        for o in &old.all {
            let kept = all.iter().any(|s| Arc::ptr_eq(&s.instance, &o.instance));
            if !kept {
                retired.push(o.instance.retired());
                if !all.iter().any(|s| s.name == o.name) {
                    changes.removed.push(o.name.to_string());
                }
            }
        }
        let mut by_path: HashMap<String, Vec<Arc<Service>>> = HashMap::new();
        for s in &all {
            by_path
                .entry(s.config.path.clone())
                .or_default()
                .push(s.clone());
        }
        (ServiceTable { by_path, all }, changes, retired)
    }

    /// Start every bridge's background work that is not running yet.
    pub fn start_new(&self) {
        for s in &self.all {
            s.instance.start();
        }
    }
}

#[cfg(test)]
mod tests;

//! What else follows a successful reload outside the gateway's own settings, e.g. the log
//! level filter: each hook is called with the configuration now in force.

use std::sync::Mutex;

use crate::config::GatewayConfig;

pub type Hook = Box<dyn Fn(&GatewayConfig) -> Result<(), String> + Send + Sync>;

#[derive(Default)]
pub struct Hooks(Mutex<Vec<Hook>>);

impl Hooks {
    pub fn add(&self, hook: Hook) {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).push(hook);
    }

    /// A failing hook is logged; the reload itself has happened and stays.
    pub fn run(&self, config: &GatewayConfig) {
        for hook in self.0.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            if let Err(e) = hook(config) {
                tracing::warn!("after the reload: {e}");
            }
        }
    }
}

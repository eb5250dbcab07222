//! One built bridge and its background work. Every `Service` a reload carries the bridge
//! into, and through them every session on it, holds the same `Instance`; when a reload has
//! replaced or removed the bridge, the last of them to go stops its background work (broker
//! connections, feeds), so old sessions finish on the bridge they started on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bridge_api::{Background, Bridge};

pub struct Instance {
    service: Arc<str>,
    bridge: Arc<dyn Bridge>,
    background: Background,
    started: AtomicBool,
}

/// The background work of a bridge a reload retired, so the drain still waits for it.
#[derive(Clone, Debug)]
pub struct Retired {
    pub name: Arc<str>,
    pub background: Background,
}

impl Instance {
    pub fn new(service: &str, bridge: Arc<dyn Bridge>, background: Background) -> Arc<Self> {
        Arc::new(Instance {
            service: service.into(),
            bridge,
            background,
            started: AtomicBool::new(false),
        })
    }

    /// Start the bridge's background work unless it already runs (a bridge a reload kept).
    pub fn start(&self) {
        if !self.started.swap(true, Ordering::AcqRel) {
            self.bridge.start(self.background.clone());
        }
    }

    pub fn retired(&self) -> Retired {
        Retired {
            name: self.service.clone(),
            background: self.background.clone(),
        }
    }
}

impl Retired {
    /// Stopped and every task ended: nothing left for the drain to wait for.
    pub fn is_done(&self) -> bool {
        self.background.shutdown().is_cancelled() && self.background.running() == 0
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Only a started bridge has work to stop; one built by a refused or no-op reload
        // never ran any.
        if self.started.load(Ordering::Acquire) && !self.background.shutdown().is_cancelled() {
            tracing::info!(
                service = %self.service,
                "the last session on a replaced bridge ended: stopping its background work"
            );
            self.background.stop();
        }
    }
}

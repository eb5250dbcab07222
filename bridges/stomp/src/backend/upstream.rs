//! The local side of one shared upstream subscription, the same for RabbitMQ's shared
//! queues and a STOMP broker's shared SUBSCRIBEs: who subscribed here (`Locals`, counted in
//! the service's `gateway_stomp_upstream_local_subscribers` gauge) and whether the broker
//! has confirmed it yet, which the first subscribers wait for.

use metrics::Gauge;
use tokio::sync::watch;

use super::fanout::{LocalSub, Locals};
use super::BackendError;
use crate::inbox::SubKey;

#[derive(Clone)]
pub(crate) enum Phase {
    /// Asked for, not yet confirmed by the broker.
    Pending,
    Live,
    Failed(BackendError),
}

pub(crate) struct Upstream {
    locals: Locals,
    gauge: Gauge,
    phase: watch::Sender<Phase>,
}

impl Upstream {
    pub(crate) fn new(gauge: Gauge) -> Upstream {
        Upstream {
            locals: Locals::default(),
            gauge,
            phase: watch::Sender::new(Phase::Pending),
        }
    }

    /// Add a local subscriber; [`settled`] on the returned receiver says when it is live.
    pub(crate) fn join(&self, sub: LocalSub) -> watch::Receiver<Phase> {
        self.locals.join(sub);
        self.gauge.increment(1.0);
        self.phase.subscribe()
    }

    /// Remove a local subscriber; how many are left, or `None` if it was not here.
    pub(crate) fn leave(&self, session: u64, key: SubKey) -> Option<usize> {
        let left = self.locals.leave(session, key)?;
        self.gauge.decrement(1.0);
        Some(left)
    }

    /// The subscription failed for good: everyone is dropped and told why.
    pub(crate) fn fail(&self, e: BackendError) {
        let n = self.locals.clear();
        self.gauge.decrement(n as f64);
        self.phase.send_replace(Phase::Failed(e));
    }

    pub(crate) fn go_live(&self) {
        self.phase.send_replace(Phase::Live);
    }

    pub(crate) fn locals(&self) -> &Locals {
        &self.locals
    }
}

/// Wait until the upstream subscription is confirmed (or has failed).
pub(crate) async fn settled(mut phase: watch::Receiver<Phase>) -> Result<(), BackendError> {
    let outcome = phase
        .wait_for(|p| !matches!(p, Phase::Pending))
        .await
        .map(|p| p.clone());
    match outcome {
        Ok(Phase::Failed(e)) => Err(e),
        Ok(_) => Ok(()),
        Err(_) => Err(BackendError::unavailable(
            "the shared broker subscription ended before it was confirmed",
        )),
    }
}

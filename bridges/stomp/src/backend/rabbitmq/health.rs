//! A session that lost something it cannot get back (unacknowledged queue messages when the
//! broker went away, or its own pass-through connection) fails: the client is told at once
//! with an ERROR frame naming the outage, and every later operation fails with the same
//! reason, which ends the session.
//!
//! The session learns of it through its inbox (`Inbox::fail`, where the first failure
//! wins) and ends with an ERROR; the backend's own operations check the same record.

use std::sync::Arc;

use crate::backend::BackendError;
use crate::inbox::Inbox;

pub struct Health {
    inbox: Arc<Inbox>,
}

impl Health {
    pub fn new(inbox: Arc<Inbox>) -> Arc<Health> {
        Arc::new(Health { inbox })
    }

    pub fn check(&self) -> Result<(), BackendError> {
        match self.inbox.failure() {
            Some(reason) => Err(BackendError::unavailable(reason)),
            None => Ok(()),
        }
    }

    /// Fail the session with `reason`: the session sends the ERROR and closes.
    pub fn fail(&self, reason: String) {
        if self.inbox.failure().is_none() {
            tracing::info!("STOMP session failed by the RabbitMQ backend: {reason}");
        }
        self.inbox.fail(reason);
    }
}

//! A session that lost something it cannot get back (unacknowledged queue messages when the
//! broker went away, or its own pass-through connection) fails: the client is told at once
//! with an ERROR frame naming the outage, and every later operation fails with the same
//! reason, which ends the session.
//!
//! The session learns of it through its inbox (`Inbox::fail`) and ends with an ERROR.

use std::sync::{Arc, Mutex};

use protocol_stomp::Version;

use crate::backend::BackendError;
use crate::inbox::{Inbox, SubKey};

pub struct Health {
    inbox: Arc<Inbox>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    failure: Option<String>,
    /// Live subscriptions, newest last: where an ERROR can be delivered.
    subs: Vec<(SubKey, Version)>,
}

impl Health {
    pub fn new(inbox: Arc<Inbox>) -> Arc<Health> {
        Arc::new(Health {
            inbox,
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn check(&self) -> Result<(), BackendError> {
        match &self.lock().failure {
            Some(reason) => Err(BackendError::unavailable(reason.clone())),
            None => Ok(()),
        }
    }

    pub fn subscribed(&self, key: SubKey, version: Version) {
        self.lock().subs.push((key, version));
    }

    pub fn unsubscribed(&self, key: SubKey) {
        self.lock().subs.retain(|(k, _)| *k != key);
    }

    /// Fail the session with `reason`: the session sends the ERROR and closes. Only the
    /// first failure is reported.
    pub fn fail(&self, _key: Option<SubKey>, reason: String) {
        {
            let mut st = self.lock();
            if st.failure.is_some() {
                return;
            }
            st.failure = Some(reason.clone());
        }
        tracing::info!("STOMP session failed by the RabbitMQ backend: {reason}");
        self.inbox.fail(reason);
    }
}

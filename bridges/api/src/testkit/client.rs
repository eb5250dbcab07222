use std::sync::Arc;

use tokio::sync::mpsc;

use crate::{End, Message, OutboxReceiver, Outgoing, SessionControl, StopReason};

/// The client end of a test session: what it sends is the session's incoming, what the
/// bridge queues it reads back. Dropping it hangs up and stops reading.
pub struct TestClient {
    input: Option<mpsc::UnboundedSender<Message>>,
    outbox: OutboxReceiver,
    control: Arc<SessionControl>,
}

impl TestClient {
    pub(super) fn new(
        input: mpsc::UnboundedSender<Message>,
        outbox: OutboxReceiver,
        control: Arc<SessionControl>,
    ) -> Self {
        TestClient {
            input: Some(input),
            outbox,
            control,
        }
    }

    /// Send one message to the bridge. A bridge that stopped reading loses it, as it
    /// would from a socket.
    ///
    /// # Panics
    /// After [`hang_up`](Self::hang_up): sending then is a mistake in the test.
    pub fn send(&self, msg: Message) {
        let input = self.input.as_ref().expect("the test client hung up");
        let _ = input.send(msg);
    }

    /// The client leaves: the session's incoming ends once it has what was sent.
    pub fn hang_up(&mut self) {
        self.input = None;
    }

    /// Fire the session's shutdown, as the gateway does when it drains.
    pub fn shutdown(&self) {
        self.control.token().cancel();
    }

    /// End the session on purpose, as an operator's close or a credential's expiry does.
    pub fn stop(&self, reason: StopReason) {
        self.control.stop(reason);
    }

    /// The session's control, as the gateway's registry holds it.
    pub fn control(&self) -> &Arc<SessionControl> {
        &self.control
    }

    /// The transport stops reading: the bridge's sends fail with `Closed` from now on.
    pub fn stop_reading(&mut self) {
        self.outbox.close();
    }

    /// The next item the bridge queued; `None` once the bridge let go of its outbox and
    /// everything was read.
    pub async fn next(&mut self) -> Option<Outgoing> {
        self.outbox.recv().await
    }

    /// Everything queued right now, without waiting.
    pub fn drain(&mut self) -> Vec<Outgoing> {
        std::iter::from_fn(|| self.outbox.try_recv()).collect()
    }

    /// The messages queued right now as text (binary ones decoded lossily); an end the
    /// bridge queued is left out.
    pub fn texts(&mut self) -> Vec<String> {
        self.drain()
            .into_iter()
            .filter_map(|item| match item {
                Outgoing::Message(m) => Some(String::from_utf8_lossy(&m.payload()).into_owned()),
                Outgoing::Close(_) => None,
            })
            .collect()
    }

    /// Skip messages up to the end the bridge queued. `None`: the bridge let go of its
    /// outbox without asking for one. Waits while the bridge runs, so call it once the
    /// bridge is done or is sure to end.
    pub async fn end(&mut self) -> Option<End> {
        loop {
            match self.next().await? {
                Outgoing::Close(end) => return Some(end),
                Outgoing::Message(_) => continue,
            }
        }
    }

    /// `try_send` calls that found the outbox full since the last call.
    pub fn take_full(&self) -> u64 {
        self.outbox.take_full()
    }
}

//! SEND, SUBSCRIBE, UNSUBSCRIBE, ACK, NACK and transactions.

use std::collections::VecDeque;
use std::sync::Arc;

use protocol_stomp::{Frame, Version};

use super::{FrameResult, PendingAck, StompError, StompSession, SubState, TxOp};
use crate::acl::Verb;
use crate::backend::fanout::DirectSub;
use crate::backend::{AckMode, StreamOffset, Subscription};
use crate::destination::Destination;
use crate::stream;

const MAX_OPEN_TRANSACTIONS: usize = 64;

fn missing(header: &str, command: &str) -> StompError {
    StompError::protocol(
        "missing_header",
        format!("missing {header} header"),
        format!("{command} needs a {header} header."),
    )
}

/// The ACK/NACK header naming the message: STOMP 1.2 acks by the MESSAGE's `ack` id.
fn ack_id_header(version: Version) -> &'static str {
    if version == Version::V1_2 {
        "id"
    } else {
        "message-id"
    }
}

fn bad_destination(e: String) -> StompError {
    StompError::protocol("invalid_destination", "invalid destination", e)
}

impl StompSession<'_> {
    /// Refuses a SEND or SUBSCRIBE the service's ACL does not grant this client.
    fn authorize(&self, verb: Verb, dest: &str) -> FrameResult {
        if self.bridge.acl.allows(&self.acl, verb, dest) {
            return Ok(());
        }
        Err(StompError::policy(
            "access_denied",
            "access denied",
            crate::acl::denied(&self.info.service, verb, dest, self.principal.as_ref()),
        ))
    }

    fn backend(&mut self) -> &mut dyn crate::backend::BackendSession {
        self.backend
            .as_deref_mut()
            .expect("frames other than CONNECT are handled only once connected")
    }

    /// A transactional frame is held until COMMIT; `Ok(true)` means it was held.
    fn hold_in_transaction(
        &mut self,
        frame: &Frame,
        op: fn(Frame) -> TxOp,
    ) -> Result<bool, StompError> {
        let Some(tx) = frame.headers.get("transaction") else {
            return Ok(false);
        };
        let limit = self.bridge.settings.max_transaction_frames;
        let Some(ops) = self.transactions.get_mut(tx) else {
            return Err(StompError::protocol(
                "unknown_transaction",
                "unknown transaction",
                format!("Transaction {tx:?} was not begun (or is already committed or aborted)."),
            ));
        };
        if ops.len() >= limit {
            return Err(StompError::policy(
                "transaction_too_large",
                "transaction too large",
                format!("A transaction may hold at most {limit} frames."),
            ));
        }
        let mut held = frame.clone();
        held.headers.remove("transaction");
        held.headers.remove("receipt");
        ops.push(op(held));
        Ok(true)
    }

    pub(super) async fn send(&mut self, mut frame: Frame) -> FrameResult {
        let dest = frame
            .headers
            .get("destination")
            .ok_or_else(|| missing("destination", "SEND"))?
            .to_string();
        // The gateway's own destination, answered here: not subject to the ACL, never
        // held in a transaction, never forwarded.
        if dest == super::TOKEN_DESTINATION {
            return self.refresh_token(&frame).await;
        }
        let destination = Destination::parse(&dest, false).map_err(bad_destination)?;
        // Before a transaction holds it, so the refusal answers this frame's receipt.
        self.authorize(Verb::Send, &dest)?;
        if self.hold_in_transaction(&frame, TxOp::Send)? {
            return Ok(());
        }
        if let Some(name) = frame
            .headers
            .get("reply-to")
            .and_then(|r| r.strip_prefix("/temp-queue/"))
            .map(str::to_owned)
        {
            let address = self.ensure_temp_queue(&name).await?;
            frame.headers.set("reply-to", address);
        }
        self.backend()
            .publish(&destination, &frame.headers, frame.body)
            .await
            .map_err(StompError::from)
    }

    /// Replies to `/temp-queue/NAME` arrive on this session as if it had subscribed with
    /// the id `/temp-queue/NAME` (as RabbitMQ does).
    async fn ensure_temp_queue(&mut self, name: &str) -> Result<String, StompError> {
        if !self.temp_queues.contains_key(name) {
            let destination = Destination::parse(&format!("/temp-queue/{name}"), true)
                .map_err(bad_destination)?;
            let id = destination.to_string();
            self.add_subscription(id, destination, AckMode::Auto, 0, None, None)
                .await?;
            let key = self.subs[&format!("/temp-queue/{name}")].key;
            self.temp_queues.insert(name.to_string(), key);
        }
        Ok(self.backend().temp_queue_address(name))
    }

    async fn add_subscription(
        &mut self,
        id: String,
        destination: Destination,
        ack: AckMode,
        prefetch: usize,
        wants: Option<stream::Request>,
        stream_offset: Option<StreamOffset>,
    ) -> FrameResult {
        if self.subs.contains_key(&id) {
            return Err(StompError::protocol(
                "duplicate_subscription",
                "duplicate subscription id",
                format!("Subscription id {id:?} is already in use on this session."),
            ));
        }
        let max = self.bridge.settings.max_subscriptions;
        if self.subs.len() >= max {
            return Err(StompError::policy(
                "too_many_subscriptions",
                "too many subscriptions",
                format!("A session may hold at most {max} subscriptions."),
            ));
        }
        let key = self.next_key;
        self.next_key += 1;
        let (capacity, policy) = self.bridge.settings.policy_for(&destination.to_string());
        let capacity = if prefetch > 0 {
            capacity.max(prefetch)
        } else {
            capacity
        };
        let stream = match &destination {
            Destination::Topic(pattern) => self.bridge.streams.find(pattern).cloned(),
            _ => None,
        };
        // Room for the snapshot or the missed messages besides the live bound.
        let capacity = match &stream {
            Some(s) => capacity + s.backlog_estimate(&wants.unwrap_or_default()),
            None => capacity,
        };
        let id: Arc<str> = id.into();
        // `ack:auto` topic deliveries need nothing from this session: a lane of the
        // client's outbox takes them straight to the writer. It opens paused and is
        // resumed once the frame's RECEIPT is queued, so that comes first.
        let direct = (ack == AckMode::Auto
            && matches!(
                destination,
                Destination::Topic(_) | Destination::Exchange { .. }
            ))
        .then(|| {
            let lane = self
                .outbox
                .open_lane(capacity, DirectSub::lane_policy(&policy));
            Arc::new(DirectSub::new(
                lane,
                id.clone(),
                self.version,
                policy.clone(),
                self.inbox.clone(),
                key,
            ))
        });
        self.inbox.add(key, capacity, policy);
        let sub = Subscription {
            key,
            destination: destination.clone(),
            ack,
            prefetch,
            version: self.version,
            direct: direct.clone(),
            feed: None,
            stream_offset,
        };
        let stream = match (stream, &destination) {
            (Some(stream), Destination::Topic(pattern)) => {
                let joined = stream.join(
                    pattern,
                    sub.local(self.info.id, &self.inbox),
                    wants.unwrap_or_default(),
                );
                self.receipt_extra
                    .push(("position", joined.position.to_string()));
                match joined.resume {
                    Some(Ok(())) => self.receipt_extra.push(("resume", "ok".into())),
                    Some(Err(why)) => {
                        self.receipt_extra.push(("resume", "reset".into()));
                        self.receipt_extra.push(("resume-reason", why.into()));
                    }
                    None => {}
                }
                Some((stream, pattern.clone()))
            }
            _ => {
                if let Err(e) = self.backend().subscribe(&sub).await {
                    self.inbox.remove(key);
                    if let Some(d) = &direct {
                        d.lane.close();
                    }
                    return Err(e.into());
                }
                if wants.is_some_and(|w| w.resume.is_some()) {
                    self.receipt_extra.push(("resume", "unavailable".into()));
                }
                None
            }
        };
        if let Some(d) = &direct {
            self.paused_lanes.push(d.lane.clone());
        }
        self.by_key.insert(key, id.to_string());
        self.subs.insert(
            id.to_string(),
            SubState {
                key,
                id,
                destination,
                ack,
                outstanding: VecDeque::new(),
                lane: direct.map(|d| d.lane.clone()),
                stream,
            },
        );
        self.bridge.metrics.subscriptions(1.0);
        Ok(())
    }

    pub(super) async fn subscribe(&mut self, frame: Frame) -> FrameResult {
        let dest = frame
            .headers
            .get("destination")
            .ok_or_else(|| missing("destination", "SUBSCRIBE"))?;
        let destination = Destination::parse(dest, true).map_err(bad_destination)?;
        self.authorize(Verb::Subscribe, dest)?;
        let id = match frame.headers.get("id") {
            Some(id) => id.to_string(),
            // STOMP 1.0 made the id optional; the destination then names the subscription.
            None if self.version == Version::V1_0 => dest.to_string(),
            None => return Err(missing("id", "SUBSCRIBE")),
        };
        let ack = AckMode::parse(frame.headers.get("ack"))
            .map_err(|e| StompError::protocol("bad_header", "bad ack header", e))?;
        let prefetch = match frame.headers.get("prefetch-count") {
            None => 0,
            Some(p) => p.parse::<usize>().map_err(|_| {
                StompError::protocol(
                    "bad_header",
                    "bad prefetch-count header",
                    format!("prefetch-count {p:?} is not a number."),
                )
            })?,
        };
        let wants = stream_request(&frame.headers)?;
        let stream_offset = match frame.headers.get("x-stream-offset") {
            None => None,
            Some(raw) => Some(StreamOffset::parse(raw).map_err(|e| {
                StompError::protocol("bad_header", "bad x-stream-offset header", e)
            })?),
        };
        self.add_subscription(id, destination, ack, prefetch, wants, stream_offset)
            .await
    }

    pub(super) async fn unsubscribe(&mut self, frame: Frame) -> FrameResult {
        let id = match (frame.headers.get("id"), frame.headers.get("destination")) {
            (Some(id), _) => id.to_string(),
            (None, Some(dest)) if self.version == Version::V1_0 => dest.to_string(),
            _ => return Err(missing("id", "UNSUBSCRIBE")),
        };
        let Some(sub) = self.subs.remove(&id) else {
            return Err(StompError::protocol(
                "unknown_subscription",
                "unknown subscription",
                format!("No subscription with id {id:?} on this session."),
            ));
        };
        self.by_key.remove(&sub.key);
        self.acks.retain(|_, p| p.key != sub.key);
        self.bridge.metrics.subscriptions(-1.0);
        let result = match &sub.stream {
            Some((stream, pattern)) => {
                stream.leave(pattern, self.info.id, sub.key);
                self.inbox.remove(sub.key);
                Ok(())
            }
            None => self
                .backend()
                .unsubscribe(sub.key)
                .await
                .map_err(StompError::from),
        };
        // After the backend: no fan-out reaches the lane any more, and what it still
        // held is dropped as an unsubscribed topic's messages are.
        if let Some(lane) = &sub.lane {
            self.paused_lanes.retain(|l| l.id() != lane.id());
            lane.close();
        }
        result
    }

    pub(super) async fn ack_or_tx(&mut self, frame: Frame, nack: bool) -> FrameResult {
        let cmd = if nack { "NACK" } else { "ACK" };
        let header = ack_id_header(self.version);
        let id = frame
            .headers
            .get(header)
            .ok_or_else(|| missing(header, cmd))?
            .to_string();
        if !self.acks.contains_key(&id) {
            return Err(StompError::protocol(
                "unknown_ack",
                format!("unknown {header} in {cmd}"),
                format!("{id:?} is not a message awaiting acknowledgement on this session."),
            ));
        }
        let op = if nack { TxOp::Nack } else { TxOp::Ack };
        if self.hold_in_transaction(&frame, op)? {
            return Ok(());
        }
        self.settle(&id, nack).await
    }

    /// ACK or NACK `id`, and for `client` (cumulative) subscriptions every earlier one too.
    async fn settle(&mut self, id: &str, nack: bool) -> FrameResult {
        let Some(pending) = self.acks.get(id) else {
            // Settled meanwhile (e.g. by a cumulative ACK in the same transaction).
            return Ok(());
        };
        let key = pending.key;
        let Some(sub_id) = self.by_key.get(&key).cloned() else {
            self.acks.remove(id);
            return Ok(());
        };
        let sub = self.subs.get_mut(&sub_id).expect("by_key and subs agree");
        let settled: Vec<String> = if sub.ack == AckMode::Client {
            let upto = sub
                .outstanding
                .iter()
                .position(|a| a == id)
                .map_or(0, |p| p + 1);
            sub.outstanding.drain(..upto).collect()
        } else {
            sub.outstanding.retain(|a| a != id);
            vec![id.to_string()]
        };
        for ack_id in settled {
            let Some(PendingAck {
                token: Some(token), ..
            }) = self.acks.remove(&ack_id)
            else {
                continue;
            };
            let backend = self.backend();
            let result = if nack {
                backend.nack(token).await
            } else {
                backend.ack(token).await
            };
            result.map_err(StompError::from)?;
        }
        Ok(())
    }

    pub(super) fn begin(&mut self, frame: &Frame) -> FrameResult {
        let tx = frame
            .headers
            .get("transaction")
            .ok_or_else(|| missing("transaction", "BEGIN"))?;
        if self.transactions.contains_key(tx) {
            return Err(StompError::protocol(
                "duplicate_transaction",
                "transaction already begun",
                format!("Transaction {tx:?} is already open."),
            ));
        }
        if self.transactions.len() >= MAX_OPEN_TRANSACTIONS {
            return Err(StompError::policy(
                "too_many_transactions",
                "too many open transactions",
                format!("A session may hold at most {MAX_OPEN_TRANSACTIONS} open transactions."),
            ));
        }
        self.transactions.insert(tx.to_string(), Vec::new());
        Ok(())
    }

    fn take_transaction(&mut self, frame: &Frame, cmd: &str) -> Result<Vec<TxOp>, StompError> {
        let tx = frame
            .headers
            .get("transaction")
            .ok_or_else(|| missing("transaction", cmd))?;
        self.transactions.remove(tx).ok_or_else(|| {
            StompError::protocol(
                "unknown_transaction",
                "unknown transaction",
                format!("Transaction {tx:?} was not begun (or is already committed or aborted)."),
            )
        })
    }

    pub(super) async fn commit(&mut self, frame: &Frame) -> FrameResult {
        for op in self.take_transaction(frame, "COMMIT")? {
            match op {
                TxOp::Send(f) => self.send(f).await?,
                TxOp::Ack(f) | TxOp::Nack(f) => {
                    let nack = matches!(f.command, protocol_stomp::Command::Nack);
                    let header = ack_id_header(self.version);
                    if let Some(id) = f.headers.get(header).map(str::to_owned) {
                        self.settle(&id, nack).await?;
                    }
                }
            }
        }
        Ok(())
    }

    pub(super) fn abort(&mut self, frame: &Frame) -> FrameResult {
        self.take_transaction(frame, "ABORT").map(drop)
    }
}

/// The SUBSCRIBE headers that ask a stream for a snapshot (`snapshot:true`) or to resume
/// after a position (`resume:<epoch>-<seq>`); `None` when neither is present.
fn stream_request(
    headers: &protocol_stomp::Headers,
) -> Result<Option<stream::Request>, StompError> {
    let snapshot = match headers.get("snapshot") {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(StompError::protocol(
                "bad_header",
                "bad snapshot header",
                format!("snapshot {other:?} must be true or false."),
            ))
        }
    };
    let resume = match headers.get("resume") {
        None => None,
        Some(raw) => Some(
            stream::Position::parse(raw)
                .map_err(|e| StompError::protocol("bad_header", "bad resume header", e))?,
        ),
    };
    Ok((snapshot || resume.is_some()).then_some(stream::Request { snapshot, resume }))
}

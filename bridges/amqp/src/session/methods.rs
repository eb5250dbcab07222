//! A client channel's methods, each checked (ACL, ownership of exclusive queues, what would
//! break the shared connection) and relayed on the channel's pooled lapin channel; the
//! broker's answer goes back in the client's terms.

use futures::{FutureExt, StreamExt};
use protocol_amqp::protocol::{access, basic, channel, confirm, exchange, queue, tx};
use protocol_amqp::{
    AMQPClass, Content, COMMAND_INVALID, NOT_ALLOWED, NOT_IMPLEMENTED, PRECONDITION_FAILED,
    RESOURCE_LOCKED,
};
use rabbitmq_pool::lapin::options::*;
use rabbitmq_pool::lapin::Confirmation;
use rabbitmq_pool::lapin::{self, ExchangeKind};

use super::fault::Fault;
use super::{deliver, AmqpSession, ConsumerItem};
use crate::acl::{Perm, Resource};

/// RabbitMQ's name for the default exchange in permission checks.
const DEFAULT_EXCHANGE: &str = "amq.default";

impl AmqpSession<'_> {
    /// The broker channel behind client channel `ch`, cloned (a handle).
    fn broker_channel(&self, ch: u16) -> Result<lapin::Channel, Fault> {
        match self.channels.get(&ch).and_then(|c| c.chan.as_ref()) {
            Some(c) => Ok((**c).clone()),
            None => Err(Fault::connection(
                protocol_amqp::CHANNEL_ERROR,
                format!("channel {ch} is not open"),
            )),
        }
    }

    /// A broker call, bounded in time, its error in the client's terms.
    async fn rpc<T>(
        &mut self,
        ch: u16,
        fut: impl std::future::Future<Output = lapin::Result<T>>,
    ) -> Result<T, Fault> {
        match tokio::time::timeout(rabbitmq_pool::RPC_TIMEOUT, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Fault::from_lapin(ch, &e, &self.broker)),
            Err(_) => Err(Fault::BrokerGone(format!(
                "no answer within {:?}",
                rabbitmq_pool::RPC_TIMEOUT
            ))),
        }
    }

    /// A method without a reply (ack, nack, reject): lapin queues its frame on the first
    /// poll; waiting for the socket write too would hold up the client's next frame, and a
    /// broker refusal comes back as a channel close anyway.
    async fn queue_frame(
        &mut self,
        ch: u16,
        fut: impl std::future::Future<Output = lapin::Result<()>>,
    ) -> Result<(), Fault> {
        let mut fut = std::pin::pin!(fut);
        match futures::poll!(fut.as_mut()) {
            std::task::Poll::Ready(Err(e)) => Err(Fault::from_lapin(ch, &e, &self.broker)),
            _ => Ok(()),
        }
    }

    /// The tag to send the broker for a client's settle, `None` when there is nothing to
    /// settle; an unknown tag is RabbitMQ's 406.
    fn settle(&mut self, ch: u16, tag: u64, multiple: bool) -> Result<Option<u64>, Fault> {
        match self
            .channels
            .get_mut(&ch)
            .map(|st| st.settle(tag, multiple))
        {
            Some(Ok(sent)) => Ok(sent),
            _ => Err(Fault::channel(
                ch,
                PRECONDITION_FAILED,
                format!("unknown delivery tag {tag}"),
            )),
        }
    }

    fn check(&self, ch: u16, perm: Perm, what: Resource, name: &str) -> Result<(), Fault> {
        if self.grant.allows(perm, name) {
            return Ok(());
        }
        Err(Fault::channel(
            ch,
            protocol_amqp::ACCESS_REFUSED,
            format!(
                "{} access to {} '{name}' refused for user '{}'",
                perm.as_str(),
                what.as_str(),
                self.user
            ),
        ))
    }

    /// A binding writes to its destination (an exchange, or a queue, which may be the
    /// session's own) and reads from its source exchange, as RabbitMQ checks it.
    fn check_binding(
        &self,
        ch: u16,
        kind: Resource,
        destination: &str,
        source: &str,
    ) -> Result<(), Fault> {
        match kind {
            Resource::Queue => self.check_queue(ch, Perm::Write, destination)?,
            Resource::Exchange => self.check(ch, Perm::Write, Resource::Exchange, destination)?,
        }
        self.check(ch, Perm::Read, Resource::Exchange, source)
    }

    /// Exclusive queues of other sessions are off limits, as across RabbitMQ connections.
    fn check_owner(&self, ch: u16, queue: &str) -> Result<(), Fault> {
        if self.b.exclusive.usable_by(queue, self.info.id) {
            return Ok(());
        }
        Err(Fault::channel(
            ch,
            RESOURCE_LOCKED,
            format!("cannot obtain exclusive access to locked queue '{queue}'"),
        ))
    }

    /// Queue access: an owned queue is the session's own whatever the ACL says.
    fn check_queue(&self, ch: u16, perm: Perm, queue: &str) -> Result<(), Fault> {
        self.check_owner(ch, queue)?;
        if self.owned.iter().any(|q| q == queue) {
            return Ok(());
        }
        self.check(ch, perm, Resource::Queue, queue)
    }

    async fn reply(&mut self, ch: u16, nowait: bool, m: AMQPClass) {
        if !nowait {
            self.send_method(ch, m).await;
        }
    }

    pub(super) async fn on_method(&mut self, ch: u16, m: AMQPClass) -> Result<(), Fault> {
        let c = self.broker_channel(ch)?;
        match m {
            AMQPClass::Channel(channel::AMQPMethod::Close(_)) => {
                if let Some(state) = self.channels.remove(&ch) {
                    if let Some(chan) = state.chan {
                        self.b.metrics.channels.decrement(1.0);
                        super::close_broker_channel(chan).await;
                    }
                }
                self.send_method(ch, super::close_ok_channel()).await;
            }
            AMQPClass::Channel(channel::AMQPMethod::Flow(f)) => {
                if !f.active {
                    // RabbitMQ does not stop deliveries on request either; prefetch does.
                    return Err(Fault::connection(NOT_IMPLEMENTED, "active=false"));
                }
                let ok = channel::FlowOk { active: true };
                self.send_method(ch, AMQPClass::Channel(channel::AMQPMethod::FlowOk(ok)))
                    .await;
            }
            AMQPClass::Access(access::AMQPMethod::Request(_)) => {
                let ok = AMQPClass::Access(access::AMQPMethod::RequestOk(access::RequestOk {}));
                self.send_method(ch, ok).await;
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Declare(d)) => {
                let name = d.exchange.as_str();
                if !d.passive {
                    self.check(ch, Perm::Configure, Resource::Exchange, name)?;
                }
                let kind =
                    exchange_kind(d.kind.as_str(), d.passive, &self.b.settings.exchange_types)?;
                let opts = ExchangeDeclareOptions {
                    passive: d.passive,
                    durable: d.durable,
                    auto_delete: d.auto_delete,
                    internal: d.internal,
                    nowait: false,
                };
                self.rpc(
                    ch,
                    c.exchange_declare(d.exchange.clone(), kind, opts, d.arguments),
                )
                .await?;
                let ok = exchange::AMQPMethod::DeclareOk(exchange::DeclareOk {});
                self.reply(ch, d.nowait, AMQPClass::Exchange(ok)).await;
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Delete(d)) => {
                self.check(ch, Perm::Configure, Resource::Exchange, d.exchange.as_str())?;
                let opts = ExchangeDeleteOptions {
                    if_unused: d.if_unused,
                    nowait: false,
                };
                self.rpc(ch, c.exchange_delete(d.exchange, opts)).await?;
                let ok = exchange::AMQPMethod::DeleteOk(exchange::DeleteOk {});
                self.reply(ch, d.nowait, AMQPClass::Exchange(ok)).await;
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Bind(b)) => {
                self.check_binding(
                    ch,
                    Resource::Exchange,
                    b.destination.as_str(),
                    b.source.as_str(),
                )?;
                let f = c.exchange_bind(
                    b.destination,
                    b.source,
                    b.routing_key,
                    ExchangeBindOptions { nowait: false },
                    b.arguments,
                );
                self.rpc(ch, f).await?;
                let ok = exchange::AMQPMethod::BindOk(exchange::BindOk {});
                self.reply(ch, b.nowait, AMQPClass::Exchange(ok)).await;
            }
            AMQPClass::Exchange(exchange::AMQPMethod::Unbind(b)) => {
                self.check_binding(
                    ch,
                    Resource::Exchange,
                    b.destination.as_str(),
                    b.source.as_str(),
                )?;
                let f = c.exchange_unbind(
                    b.destination,
                    b.source,
                    b.routing_key,
                    ExchangeUnbindOptions { nowait: false },
                    b.arguments,
                );
                self.rpc(ch, f).await?;
                let ok = exchange::AMQPMethod::UnbindOk(exchange::UnbindOk {});
                self.reply(ch, b.nowait, AMQPClass::Exchange(ok)).await;
            }
            AMQPClass::Queue(queue::AMQPMethod::Declare(d)) => self.declare_queue(ch, c, d).await?,
            AMQPClass::Queue(queue::AMQPMethod::Bind(b)) => {
                self.check_binding(ch, Resource::Queue, b.queue.as_str(), b.exchange.as_str())?;
                let f = c.queue_bind(
                    b.queue,
                    b.exchange,
                    b.routing_key,
                    QueueBindOptions { nowait: false },
                    b.arguments,
                );
                self.rpc(ch, f).await?;
                let ok = queue::AMQPMethod::BindOk(queue::BindOk {});
                self.reply(ch, b.nowait, AMQPClass::Queue(ok)).await;
            }
            AMQPClass::Queue(queue::AMQPMethod::Unbind(b)) => {
                self.check_binding(ch, Resource::Queue, b.queue.as_str(), b.exchange.as_str())?;
                let f = c.queue_unbind(b.queue, b.exchange, b.routing_key, b.arguments);
                self.rpc(ch, f).await?;
                let ok = queue::AMQPMethod::UnbindOk(queue::UnbindOk {});
                self.send_method(ch, AMQPClass::Queue(ok)).await;
            }
            AMQPClass::Queue(queue::AMQPMethod::Purge(p)) => {
                self.check_queue(ch, Perm::Read, p.queue.as_str())?;
                let n = self
                    .rpc(
                        ch,
                        c.queue_purge(p.queue, QueuePurgeOptions { nowait: false }),
                    )
                    .await?;
                let ok = queue::AMQPMethod::PurgeOk(queue::PurgeOk { message_count: n });
                self.reply(ch, p.nowait, AMQPClass::Queue(ok)).await;
            }
            AMQPClass::Queue(queue::AMQPMethod::Delete(d)) => {
                let name = d.queue.to_string();
                self.check_queue(ch, Perm::Configure, &name)?;
                let opts = QueueDeleteOptions {
                    if_unused: d.if_unused,
                    if_empty: d.if_empty,
                    nowait: false,
                };
                let n = self.rpc(ch, c.queue_delete(d.queue, opts)).await?;
                self.owned.retain(|q| *q != name);
                self.b.exclusive.release(&name, self.info.id);
                let ok = queue::AMQPMethod::DeleteOk(queue::DeleteOk { message_count: n });
                self.reply(ch, d.nowait, AMQPClass::Queue(ok)).await;
            }
            AMQPClass::Basic(basic::AMQPMethod::Qos(q)) => {
                // No limit, or more than the cap, would let a stalled client's consumers
                // pile up deliveries at the gateway.
                let cap = self.b.settings.max_prefetch;
                let count = match q.prefetch_count {
                    0 => cap,
                    n => n.min(cap),
                };
                let opts = BasicQosOptions { global: q.global };
                self.rpc(ch, c.basic_qos(count, opts)).await?;
                if let (Some(state), false) = (self.channels.get_mut(&ch), q.global) {
                    state.prefetch = Some(count);
                }
                let ok = basic::AMQPMethod::QosOk(basic::QosOk {});
                self.send_method(ch, AMQPClass::Basic(ok)).await;
            }
            AMQPClass::Basic(basic::AMQPMethod::Consume(s)) => self.consume(ch, c, s).await?,
            AMQPClass::Basic(basic::AMQPMethod::Cancel(x)) => {
                let known = self
                    .channels
                    .get_mut(&ch)
                    .is_some_and(|st| st.consumers.remove(&x.consumer_tag));
                if known {
                    let f = c
                        .basic_cancel(x.consumer_tag.clone(), BasicCancelOptions { nowait: false });
                    self.rpc(ch, f).await?;
                    // Cancel-Ok follows the deliveries lapin still holds (on_delivery).
                    if let Some(st) = self.channels.get_mut(&ch) {
                        st.cancelling.insert(x.consumer_tag, x.nowait);
                    }
                } else {
                    let ok = basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: x.consumer_tag,
                    });
                    self.reply(ch, x.nowait, AMQPClass::Basic(ok)).await;
                }
            }
            AMQPClass::Basic(basic::AMQPMethod::Get(g)) => {
                self.check_queue(ch, Perm::Read, g.queue.as_str())?;
                let opts = BasicGetOptions { no_ack: g.no_ack };
                match self.rpc(ch, c.basic_get(g.queue, opts)).await? {
                    Some(m) => {
                        if !g.no_ack {
                            if let Some(st) = self.channels.get_mut(&ch) {
                                st.unacked.insert(m.delivery.delivery_tag);
                            }
                        }
                        self.b.metrics.deliveries.increment(1);
                        self.b.metrics.method_out(60);
                        let frames =
                            deliver::get_ok(ch, &m.delivery, m.message_count, self.frame_max);
                        self.send_all(frames).await;
                    }
                    None => {
                        let empty = basic::AMQPMethod::GetEmpty(basic::GetEmpty {});
                        self.send_method(ch, AMQPClass::Basic(empty)).await;
                    }
                }
            }
            AMQPClass::Basic(basic::AMQPMethod::Ack(a)) => {
                let Some(tag) = self.settle(ch, a.delivery_tag, a.multiple)? else {
                    return Ok(());
                };
                self.b.metrics.acks.increment(1);
                let opts = BasicAckOptions {
                    multiple: a.multiple,
                };
                self.queue_frame(ch, c.basic_ack(tag, opts)).await?;
            }
            AMQPClass::Basic(basic::AMQPMethod::Nack(n)) => {
                let Some(tag) = self.settle(ch, n.delivery_tag, n.multiple)? else {
                    return Ok(());
                };
                self.b.metrics.nacks.increment(1);
                let opts = BasicNackOptions {
                    multiple: n.multiple,
                    requeue: n.requeue,
                };
                self.queue_frame(ch, c.basic_nack(tag, opts)).await?;
            }
            AMQPClass::Basic(basic::AMQPMethod::Reject(r)) => {
                let Some(tag) = self.settle(ch, r.delivery_tag, false)? else {
                    return Ok(());
                };
                self.b.metrics.rejects.increment(1);
                let opts = BasicRejectOptions { requeue: r.requeue };
                self.queue_frame(ch, c.basic_reject(tag, opts)).await?;
            }
            AMQPClass::Basic(basic::AMQPMethod::Recover(r)) => {
                if !r.requeue {
                    // RabbitMQ answers this with a connection error, which would close the
                    // pooled connection: this client alone hears it.
                    return Err(Fault::connection(NOT_IMPLEMENTED, "requeue=false"));
                }
                self.rpc(ch, c.basic_recover(BasicRecoverOptions { requeue: true }))
                    .await?;
                // Redelivered under new tags.
                if let Some(st) = self.channels.get_mut(&ch) {
                    st.unacked.clear();
                }
                let ok = basic::AMQPMethod::RecoverOk(basic::RecoverOk {});
                self.send_method(ch, AMQPClass::Basic(ok)).await;
            }
            AMQPClass::Confirm(confirm::AMQPMethod::Select(s)) => {
                let st = self.channels.get(&ch).expect("checked open");
                if st.tx {
                    return Err(Fault::channel(
                        ch,
                        PRECONDITION_FAILED,
                        "cannot switch from tx to confirm mode",
                    ));
                }
                if !st.broker_confirm {
                    let f = c.confirm_select(ConfirmSelectOptions { nowait: false });
                    self.rpc(ch, f).await?;
                }
                let st = self.channels.get_mut(&ch).expect("checked open");
                st.broker_confirm = true;
                if !st.confirm {
                    st.confirm = true;
                    st.published = 0;
                }
                let ok = confirm::AMQPMethod::SelectOk(confirm::SelectOk {});
                self.reply(ch, s.nowait, AMQPClass::Confirm(ok)).await;
            }
            AMQPClass::Tx(tx::AMQPMethod::Select(_)) => {
                if self.channels.get(&ch).is_some_and(|st| st.broker_confirm) {
                    return Err(Fault::channel(
                        ch,
                        PRECONDITION_FAILED,
                        "cannot switch from confirm to tx mode",
                    ));
                }
                self.rpc(ch, c.tx_select()).await?;
                if let Some(st) = self.channels.get_mut(&ch) {
                    st.tx = true;
                }
                let ok = tx::AMQPMethod::SelectOk(tx::SelectOk {});
                self.send_method(ch, AMQPClass::Tx(ok)).await;
            }
            AMQPClass::Tx(tx::AMQPMethod::Commit(_) | tx::AMQPMethod::Rollback(_)) => {
                if !self.channels.get(&ch).is_some_and(|st| st.tx) {
                    return Err(Fault::channel(
                        ch,
                        PRECONDITION_FAILED,
                        "channel is not transactional",
                    ));
                }
                let commit = matches!(m, AMQPClass::Tx(tx::AMQPMethod::Commit(_)));
                if commit {
                    self.rpc(ch, c.tx_commit()).await?;
                    // Unroutable mandatory publishes of the transaction come back at commit,
                    // before Commit-Ok; without confirm mode lapin holds them until asked.
                    let returned = self.rpc(ch, c.wait_for_confirms()).await?;
                    for ret in returned {
                        self.b.metrics.returns.increment(1);
                        self.b.metrics.method_out(60);
                        let frames = deliver::returned(
                            ch,
                            ret.reply_code,
                            &ret.reply_text,
                            &ret.delivery,
                            self.frame_max,
                        );
                        self.send_all(frames).await;
                    }
                    let ok = tx::AMQPMethod::CommitOk(tx::CommitOk {});
                    self.send_method(ch, AMQPClass::Tx(ok)).await;
                } else {
                    self.rpc(ch, c.tx_rollback()).await?;
                    let ok = tx::AMQPMethod::RollbackOk(tx::RollbackOk {});
                    self.send_method(ch, AMQPClass::Tx(ok)).await;
                }
            }
            other => {
                return Err(Fault::connection(
                    NOT_IMPLEMENTED,
                    format!("{} is not served by this gateway", super::name(&other)),
                ))
            }
        }
        Ok(())
    }

    async fn declare_queue(
        &mut self,
        ch: u16,
        c: lapin::Channel,
        d: queue::Declare,
    ) -> Result<(), Fault> {
        let named = !d.queue.as_str().is_empty();
        if named {
            self.check_owner(ch, d.queue.as_str())?;
            let own = self.owned.iter().any(|q| q == d.queue.as_str());
            if !d.passive && !own {
                self.check(ch, Perm::Configure, Resource::Queue, d.queue.as_str())?;
            }
        }
        let opts = QueueDeclareOptions {
            passive: d.passive,
            durable: d.durable,
            exclusive: d.exclusive,
            auto_delete: d.auto_delete,
            nowait: false,
        };
        let q = self
            .rpc(ch, c.queue_declare(d.queue, opts, d.arguments))
            .await?;
        let name = q.name().to_string();
        if (d.exclusive || !named) && !self.owned.contains(&name) {
            if !self.b.exclusive.claim(&name, self.info.id) {
                return Err(Fault::channel(
                    ch,
                    RESOURCE_LOCKED,
                    format!("cannot obtain exclusive access to locked queue '{name}'"),
                ));
            }
            self.owned.push(name);
        }
        let ok = queue::AMQPMethod::DeclareOk(queue::DeclareOk {
            queue: q.name().clone(),
            message_count: q.message_count(),
            consumer_count: q.consumer_count(),
        });
        self.reply(ch, d.nowait, AMQPClass::Queue(ok)).await;
        Ok(())
    }

    async fn consume(
        &mut self,
        ch: u16,
        c: lapin::Channel,
        s: basic::Consume,
    ) -> Result<(), Fault> {
        self.check_queue(ch, Perm::Read, s.queue.as_str())?;
        let st = self.channels.get(&ch).expect("checked open");
        // A reused tag is a connection error at RabbitMQ: it would close the shared
        // connection, so this client alone hears it.
        if !s.consumer_tag.as_str().is_empty() && st.consumers.contains(&s.consumer_tag) {
            return Err(Fault::connection(
                NOT_ALLOWED,
                format!("attempt to reuse consumer tag '{}'", s.consumer_tag),
            ));
        }
        let prefetch = st.prefetch;
        let cap = self.b.settings.max_prefetch;
        if prefetch.is_none() && !s.no_ack {
            self.rpc(ch, c.basic_qos(cap, BasicQosOptions { global: false }))
                .await?;
            if let Some(st) = self.channels.get_mut(&ch) {
                st.prefetch = Some(cap);
            }
        }
        let window = self.b.settings.no_ack_window;
        if s.no_ack {
            // The broker's window bounds what a no-ack consumer holds at the gateway.
            self.rpc(ch, c.basic_qos(window, BasicQosOptions { global: false }))
                .await?;
        }
        let opts = BasicConsumeOptions {
            no_local: s.no_local,
            no_ack: false,
            exclusive: s.exclusive,
            nowait: false,
        };
        let consumed = self
            .rpc(
                ch,
                c.basic_consume(s.queue, s.consumer_tag, opts, s.arguments),
            )
            .await;
        if s.no_ack && consumed.is_ok() {
            let restore = prefetch.unwrap_or(cap);
            self.rpc(ch, c.basic_qos(restore, BasicQosOptions { global: false }))
                .await?;
        }
        let consumer = consumed?;
        let tag = consumer.tag();
        let st = self.channels.get_mut(&ch).expect("checked open");
        let gen = st.gen;
        st.consumers.insert(tag.clone());
        if s.no_ack {
            st.no_ack.insert(tag.clone());
        }
        let end_tag = tag.clone();
        let item_tag = tag.clone();
        let stream = consumer
            .map(move |d| -> ConsumerItem { (ch, gen, item_tag.clone(), Some(d)) })
            .chain(futures::stream::once(
                async move { (ch, gen, end_tag, None) },
            ));
        self.consumers.push(stream.boxed());
        let ok = basic::AMQPMethod::ConsumeOk(basic::ConsumeOk { consumer_tag: tag });
        self.reply(ch, s.nowait, AMQPClass::Basic(ok)).await;
        Ok(())
    }

    pub(super) async fn publish(&mut self, ch: u16, content: Content) -> Result<(), Fault> {
        let AMQPClass::Basic(basic::AMQPMethod::Publish(p)) = content.method else {
            return Err(Fault::connection(
                COMMAND_INVALID,
                "content after a non-publish method",
            ));
        };
        if p.immediate {
            // RabbitMQ closes the connection for this; the pooled one must not be.
            return Err(Fault::connection(NOT_IMPLEMENTED, "immediate=true"));
        }
        let exchange = match p.exchange.as_str() {
            "" => DEFAULT_EXCHANGE,
            e => e,
        };
        self.check(ch, Perm::Write, Resource::Exchange, exchange)?;
        let c = self.broker_channel(ch)?;
        let st = self.channels.get(&ch).expect("checked open");
        // In confirm mode lapin reports what the broker does with each publish: returns of
        // mandatory ones, and the channel closing (a missing exchange is a 404 that would
        // otherwise go unnoticed until the channel's next method).
        if !st.broker_confirm && !st.tx {
            self.rpc(ch, c.confirm_select(ConfirmSelectOptions { nowait: false }))
                .await?;
            self.channels
                .get_mut(&ch)
                .expect("checked open")
                .broker_confirm = true;
        }
        let opts = BasicPublishOptions {
            mandatory: p.mandatory,
            immediate: false,
        };
        let body = content.body;
        let properties = content.properties;
        let mut sent = Box::pin(async move {
            let confirm = c
                .basic_publish(p.exchange, p.routing_key, opts, &body, properties)
                .await?;
            confirm.await
        });
        // lapin queues the frames on the first poll and then waits for its socket write:
        // polled once here (publishes leave in the client's order), the rest of the wait and
        // the broker's confirm are the pipeline's, so the next frame is read at once.
        let done = match futures::poll!(&mut sent) {
            std::task::Poll::Ready(Err(e)) => return Err(Fault::from_lapin(ch, &e, &self.broker)),
            std::task::Poll::Ready(ok) => Some(ok),
            std::task::Poll::Pending => None,
        };
        self.b.metrics.publishes.increment(1);
        let st = self.channels.get_mut(&ch).expect("checked open");
        if st.broker_confirm {
            let tag = if st.confirm {
                st.published += 1;
                st.published
            } else {
                0
            };
            let answer = match done {
                // A finished future must not be polled again.
                Some(r) => futures::future::ready(r).boxed(),
                None => sent,
            };
            let gen = st.gen;
            self.confirms
                .push_back(answer.map(move |r| (ch, gen, tag, r)).boxed());
        }
        Ok(())
    }

    pub(super) async fn on_confirm(
        &mut self,
        (ch, gen, tag, r): super::Confirmed,
    ) -> Result<(), Fault> {
        // A confirm of a channel closed since (its number may be open again) is dropped.
        if self
            .channels
            .get(&ch)
            .is_none_or(|c| c.chan.is_none() || c.gen != gen)
        {
            return Ok(());
        }
        let (ack, returned) = match r {
            Ok(Confirmation::Ack(ret)) => (true, ret),
            Ok(Confirmation::Nack(ret)) => (false, ret),
            Ok(Confirmation::NotRequested) => return Ok(()),
            Err(e) => return Err(Fault::from_lapin(ch, &e, &self.broker)),
        };
        if let Some(ret) = returned {
            self.b.metrics.returns.increment(1);
            self.b.metrics.method_out(60);
            let frames = deliver::returned(
                ch,
                ret.reply_code,
                &ret.reply_text,
                &ret.delivery,
                self.frame_max,
            );
            self.send_all(frames).await;
        }
        if tag == 0 {
            return Ok(());
        }
        let m = if ack {
            self.b.metrics.confirms_ack.increment(1);
            basic::AMQPMethod::Ack(basic::Ack {
                delivery_tag: tag,
                multiple: false,
            })
        } else {
            self.b.metrics.confirms_nack.increment(1);
            basic::AMQPMethod::Nack(basic::Nack {
                delivery_tag: tag,
                multiple: false,
                requeue: false,
            })
        };
        self.send_method(ch, AMQPClass::Basic(m)).await;
        Ok(())
    }

    pub(super) async fn on_delivery(
        &mut self,
        (ch, gen, tag, d): ConsumerItem,
    ) -> Result<(), Fault> {
        let Some(st) = self
            .channels
            .get_mut(&ch)
            .filter(|s| s.chan.is_some() && s.gen == gen)
        else {
            return Ok(());
        };
        let d = match d {
            Some(Ok(d)) => d,
            Some(Err(e)) => return Err(Fault::from_lapin(ch, &e, &self.broker)),
            None => {
                st.no_ack.remove(&tag);
                let m = if let Some(nowait) = st.cancelling.remove(&tag) {
                    (!nowait).then_some(basic::AMQPMethod::CancelOk(basic::CancelOk {
                        consumer_tag: tag,
                    }))
                } else if st.consumers.remove(&tag) {
                    // Not cancelled by the client: the broker cancelled it (queue deleted).
                    Some(basic::AMQPMethod::Cancel(basic::Cancel {
                        consumer_tag: tag,
                        nowait: true,
                    }))
                } else {
                    None
                };
                if let Some(m) = m {
                    self.send_method(ch, AMQPClass::Basic(m)).await;
                }
                return Ok(());
            }
        };
        if !st.no_ack.contains(&tag) {
            st.unacked.insert(d.delivery_tag);
        } else {
            let c = self.broker_channel(ch)?;
            let ack = c.basic_ack(d.delivery_tag, BasicAckOptions { multiple: false });
            self.queue_frame(ch, ack).await?;
        }
        self.b.metrics.deliveries.increment(1);
        self.b.metrics.method_out(60);
        let frames = deliver::deliver(ch, &tag, &d, self.frame_max);
        self.send_all(frames).await;
        Ok(())
    }
}

/// The exchange types RabbitMQ has, and the plugin types the operator listed; anything else
/// would be a connection error at the broker, closing the shared connection.
fn exchange_kind(kind: &str, passive: bool, plugins: &[String]) -> Result<ExchangeKind, Fault> {
    Ok(match kind {
        "direct" | "" => ExchangeKind::Direct,
        "fanout" => ExchangeKind::Fanout,
        "topic" => ExchangeKind::Topic,
        "headers" => ExchangeKind::Headers,
        k if passive || plugins.iter().any(|p| p == k) => ExchangeKind::Custom(k.to_string()),
        k => {
            return Err(Fault::connection(
                COMMAND_INVALID,
                format!("invalid exchange type '{k}'"),
            ))
        }
    })
}

//! Streams: the topic destinations under a configured prefix, whose messages the gateway
//! numbers (`position:<epoch>-<seq>`), remembers (a bounded history for clients that
//! reconnect, the last value per conflation key for snapshots) and fans out to the local
//! subscriptions inside the prefix.
//!
//! A stream is fed by one subscription of its own to the backend (`feed`), whatever the
//! backend: the embedded broker's topic tree, RabbitMQ's shared upstream queue, a STOMP
//! broker's shared subscription. So a snapshot or a catch-up costs the broker nothing, and
//! the numbering is the same for every client of this gateway. Numbering, remembering and
//! fanning out happen under one lock, and a new subscriber is given its snapshot or
//! catch-up and added under the same lock: snapshot (or missed messages), then live, with
//! no gap and no duplicate between them.

mod feed;
mod history;
mod last_values;
mod metrics;
mod position;
#[cfg(test)]
mod tests;

use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use feed::start_feeds;
pub use metrics::describe as describe_metrics;
pub use position::Position;

use crate::backend::embedded::topics::{pattern_matches, TopicTree};
use crate::backend::fanout::{FanOut, LocalSub};
use crate::inbox::SubKey;
use crate::message::SharedMessage;
use crate::metrics::StompMetrics;
use crate::settings::{SnapshotMode, StreamRule};
use history::History;
use last_values::LastValues;
use metrics::StreamMetrics;

/// The service's streams, looked up by destination.
#[derive(Default)]
pub struct Streams {
    list: Vec<Arc<Stream>>,
}

impl Streams {
    pub fn new(rules: &[StreamRule], metrics: &Arc<StompMetrics>) -> Streams {
        Streams {
            list: rules
                .iter()
                .map(|r| Arc::new(Stream::new(r.clone(), metrics)))
                .collect(),
        }
    }

    /// The stream a topic subscription pattern (or destination) lies inside.
    pub fn find(&self, topic_key: &str) -> Option<&Arc<Stream>> {
        self.list
            .iter()
            .find(|s| topic_key.starts_with(s.rule.key_prefix()))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Stream>> {
        self.list.iter()
    }
}

/// What a SUBSCRIBE asked of its stream.
#[derive(Debug, Clone, Copy, Default)]
pub struct Request {
    pub snapshot: bool,
    pub resume: Option<Position>,
}

/// How a subscription joined its stream, for its RECEIPT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Joined {
    /// The stream's position when the subscription started.
    pub position: Position,
    pub resume: Option<Result<(), &'static str>>,
    /// Snapshot or catch-up messages given before live ones.
    pub backlog: usize,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream")
            .field("destination", &self.rule.destination)
            .finish()
    }
}

pub struct Stream {
    rule: StreamRule,
    metrics: Arc<StompMetrics>,
    own: StreamMetrics,
    state: Mutex<State>,
}

struct State {
    epoch: u64,
    seq: u64,
    history: History,
    last: LastValues,
    subs: TopicTree,
}

impl Stream {
    fn new(rule: StreamRule, metrics: &Arc<StompMetrics>) -> Stream {
        Stream {
            own: StreamMetrics::new(metrics.service(), &rule.destination),
            state: Mutex::new(State {
                epoch: position::new_epoch(0),
                seq: 0,
                history: History::new(rule.history, rule.history_age),
                last: LastValues::new(rule.snapshot_keys),
                subs: TopicTree::default(),
            }),
            metrics: metrics.clone(),
            rule,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn rule(&self) -> &StreamRule {
        &self.rule
    }

    /// At most how many messages `join` would give before live ones right now (all kept
    /// values or history, whatever the pattern matches), so the subscriber's queue can
    /// hold them besides its live bound.
    pub fn backlog_estimate(&self, req: &Request) -> usize {
        let st = self.lock();
        let mut n = 0;
        if req.snapshot || req.resume.is_some() || self.rule.snapshot == SnapshotMode::Always {
            n += st.last.len();
        }
        if req.resume.is_some() {
            n += st.history.len();
        }
        n
    }

    #[cfg(test)]
    pub fn position(&self) -> Position {
        let st = self.lock();
        Position {
            epoch: st.epoch,
            seq: st.seq,
        }
    }

    fn conflation_key<'m>(&self, msg: &'m SharedMessage) -> &'m str {
        match self.rule.conflate_key.as_deref() {
            None | Some("destination") => &msg.destination,
            Some(h) => msg.header(h).unwrap_or(&msg.destination),
        }
    }

    /// A message on one of the stream's destinations, from the feed: numbered, kept and
    /// handed to every local subscriber it matches.
    pub fn publish(&self, msg: &Arc<SharedMessage>) {
        let Some(key) = msg.destination.strip_prefix("/topic/") else {
            return;
        };
        if !key.starts_with(self.rule.key_prefix()) {
            return; // `prices.#` also matches `prices` itself
        }
        let mut st = self.lock();
        st.seq += 1;
        let seq = st.seq;
        let position = Position {
            epoch: st.epoch,
            seq,
        };
        let numbered = Arc::new(msg.with_header("position", &position.to_string()));
        let now = Instant::now();
        st.history.push(seq, now, numbered.clone());
        if st.last.put(self.conflation_key(msg), seq, numbered.clone()) {
            self.own.keys_evicted.increment(1);
        }
        let mut fan = FanOut::new(&self.metrics);
        st.subs
            .for_each_match(key, |sub| fan.deliver(&numbered, sub));
        fan.finish();
        self.own.retained(&st.history, &st.last);
    }

    /// Add a local subscriber for `pattern` (a routing-key pattern inside the stream),
    /// first giving it the snapshot or the messages it missed.
    pub fn join(&self, pattern: &str, sub: LocalSub, req: Request) -> Joined {
        let mut st = self.lock();
        let now = Instant::now();
        st.history.expire(now);
        let position = Position {
            epoch: st.epoch,
            seq: st.seq,
        };
        let mut fan = FanOut::new(&self.metrics);
        let mut backlog = 0;
        let mut resume = None;
        let mut snapshot = req.snapshot || self.rule.snapshot == SnapshotMode::Always;
        if let Some(from) = req.resume {
            let caught_up = if from.epoch != st.epoch {
                Err(history::Gap::OtherEpoch)
            } else {
                st.history.after(from.seq, st.seq).map(|missed| {
                    for e in missed {
                        if matches_key(pattern, &e.message.destination) {
                            fan.deliver(e.resumed(), &sub);
                            backlog += 1;
                        }
                    }
                })
            };
            match caught_up {
                Ok(()) => {
                    snapshot = false;
                    resume = Some(Ok(()));
                    self.own.resumes_ok.increment(1);
                }
                Err(gap) => {
                    snapshot = true;
                    resume = Some(Err(gap.reason()));
                    self.own.resumes_reset.increment(1);
                }
            }
        }
        if snapshot {
            for v in st.last.iter() {
                if matches_key(pattern, &v.message.destination) {
                    fan.deliver(v.snapshot(), &sub);
                    backlog += 1;
                }
            }
            self.own.snapshots.increment(1);
        }
        fan.finish();
        st.subs.insert(pattern, sub);
        Joined {
            position,
            resume,
            backlog,
        }
    }

    pub fn leave(&self, pattern: &str, session: u64, key: SubKey) {
        self.lock().subs.remove(pattern, session, key);
    }

    /// The feed lost messages (its upstream subscription went away): positions from before
    /// cannot be resumed from. Last values stay, the best known, re-stamped at the start of
    /// the new epoch so a client resuming from them gets everything after.
    pub fn history_lost(&self) {
        let mut st = self.lock();
        if st.seq == 0 {
            return; // nothing numbered in this epoch, so no position from it can miss anything
        }
        st.epoch = position::new_epoch(st.epoch);
        st.seq = 0;
        st.history.clear();
        let start = Position {
            epoch: st.epoch,
            seq: 0,
        }
        .to_string();
        st.last.restamp(|m| m.with_header("position", &start));
        self.own.epochs.increment(1);
        self.own.retained(&st.history, &st.last);
        tracing::info!(stream = %self.rule.destination, "stream history lost; new epoch {:x}", st.epoch);
    }
}

fn matches_key(pattern: &str, destination: &str) -> bool {
    destination
        .strip_prefix("/topic/")
        .is_some_and(|k| pattern_matches(pattern, k))
}

//! Opening a worker's connections at a bounded rate and concurrency, so the server's accept
//! backlog never overflows and the handshake latencies mean something.
//!
//! The scenario spawns one task per connection (`spawn_conn`); the task calls
//! [`Connected::done`] once its connection is usable (or has failed), which frees a place for
//! the next handshake and counts the outcome. The task then goes on with the scenario.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, MissedTickBehavior};

use crate::spread::Slot;
use crate::stats::{Errors, Latency, LatencyData};
use crate::ws::Failure;

#[derive(Clone, Copy, Debug)]
pub struct Pacing {
    /// New connections per second started by this worker.
    pub rate: f64,
    /// Handshakes in flight at once in this worker.
    pub concurrency: usize,
    /// Give up on the ramp (count the rest as `not_started`) after this long.
    pub limit: Duration,
}

/// A connection task's ticket: report the outcome once, and the slot frees up.
pub struct Connected {
    started: Instant,
    tx: mpsc::UnboundedSender<Result<Duration, Failure>>,
    permit: Option<OwnedSemaphorePermit>,
    reported: bool,
}

impl Connected {
    pub fn done(mut self, outcome: Result<(), Failure>) {
        self.report(outcome);
    }

    fn report(&mut self, outcome: Result<(), Failure>) {
        if !self.reported {
            self.reported = true;
            let _ = self.tx.send(outcome.map(|()| self.started.elapsed()));
        }
        self.permit.take();
    }
}

impl Drop for Connected {
    fn drop(&mut self) {
        self.report(Err(Failure::new(
            "task_ended",
            "connection task ended without reporting",
        )));
    }
}

/// How a worker's ramp went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RampReport {
    pub established: u64,
    pub errors: Errors,
    /// The first message seen for each error kind.
    pub samples: BTreeMap<String, String>,
    /// Time from starting a connection to it being usable (TCP + handshake + first echo).
    pub connect_us: LatencyData,
    pub elapsed_ms: u64,
}

impl RampReport {
    pub fn failed(&self) -> u64 {
        self.errors.total()
    }

    pub fn merge(&mut self, other: &RampReport) {
        self.established += other.established;
        self.errors.merge(&other.errors);
        for (k, v) in &other.samples {
            self.samples.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let mut l = Latency::from_data(&self.connect_us);
        l.merge(&Latency::from_data(&other.connect_us));
        self.connect_us = l.to_data();
        self.elapsed_ms = self.elapsed_ms.max(other.elapsed_ms);
    }
}

struct Tally {
    report: RampReport,
    latency: Latency,
    outstanding: u64,
}

impl Tally {
    fn take(&mut self, outcome: Result<Duration, Failure>) {
        self.outstanding -= 1;
        match outcome {
            Ok(d) => {
                self.report.established += 1;
                self.latency.record(d);
            }
            Err(f) => {
                self.report.errors.add(f.kind, 1);
                self.report
                    .samples
                    .entry(f.kind.to_string())
                    .or_insert(f.detail);
            }
        }
    }
}

/// Open `slots` under `pacing`; `progress(established, failed)` is called about once a second.
pub async fn ramp(
    slots: Vec<Slot>,
    pacing: Pacing,
    mut progress: impl FnMut(u64, u64),
    mut spawn_conn: impl FnMut(Slot, Connected),
) -> RampReport {
    let started = Instant::now();
    let deadline = started + pacing.limit;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let permits = std::sync::Arc::new(Semaphore::new(pacing.concurrency.max(1)));
    let period = Duration::from_secs_f64(1.0 / pacing.rate.max(0.001));
    let mut ticker = tokio::time::interval(period);
    // Catch up after a stall, but never faster than the concurrency allows.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Burst);
    let mut next_progress = started + Duration::from_secs(1);
    let mut tally = Tally {
        report: RampReport::default(),
        latency: Latency::new(),
        outstanding: 0,
    };
    let total = slots.len();
    let mut started_count = 0usize;

    for slot in slots {
        let permit = tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => None,
            p = async {
                ticker.tick().await;
                permits.clone().acquire_owned().await
            } => p.ok(),
        };
        let Some(permit) = permit else { break };
        tally.outstanding += 1;
        started_count += 1;
        spawn_conn(
            slot,
            Connected {
                started: Instant::now(),
                tx: tx.clone(),
                permit: Some(permit),
                reported: false,
            },
        );
        while let Ok(outcome) = rx.try_recv() {
            tally.take(outcome);
        }
        if Instant::now() >= next_progress {
            next_progress += Duration::from_secs(1);
            progress(tally.report.established, tally.report.failed());
        }
    }
    drop(tx);
    tally
        .report
        .errors
        .add("not_started", (total - started_count) as u64);
    // Handshakes still in flight: their tasks have their own timeouts, this is a backstop.
    let backstop = Instant::now().max(deadline) + Duration::from_secs(30);
    while tally.outstanding > 0 {
        match tokio::time::timeout_at(backstop.min(next_progress), rx.recv()).await {
            Ok(Some(outcome)) => tally.take(outcome),
            Ok(None) => break,
            Err(_) if Instant::now() >= backstop => break,
            Err(_) => {
                next_progress += Duration::from_secs(1);
                progress(tally.report.established, tally.report.failed());
            }
        }
    }
    let stuck = tally.outstanding;
    tally.report.errors.add("ramp_timeout", stuck);
    tally.report.connect_us = tally.latency.to_data();
    tally.report.elapsed_ms = started.elapsed().as_millis() as u64;
    progress(tally.report.established, tally.report.failed());
    tally.report
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spread::Plan;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn slots(n: usize) -> Vec<Slot> {
        Plan {
            total: n,
            processes: 1,
            sources: 0,
        }
        .slots(0)
        .collect()
    }

    #[tokio::test]
    async fn counts_successes_failures_and_dropped_tickets() {
        let pacing = Pacing {
            rate: 10_000.0,
            concurrency: 4,
            limit: Duration::from_secs(10),
        };
        let report = ramp(
            slots(30),
            pacing,
            |_, _| {},
            |slot, conn| {
                tokio::spawn(async move {
                    match slot.global % 3 {
                        0 => conn.done(Ok(())),
                        1 => conn.done(Err(Failure::new("handshake", format!("#{}", slot.global)))),
                        _ => drop(conn),
                    }
                });
            },
        )
        .await;
        assert_eq!(report.established, 10);
        assert_eq!(report.errors.0["handshake"], 10);
        assert_eq!(report.errors.0["task_ended"], 10);
        assert_eq!(report.samples["handshake"], "#1");
        assert_eq!(Latency::from_data(&report.connect_us).len(), 10);
    }

    #[tokio::test]
    async fn never_exceeds_the_concurrency() {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let pacing = Pacing {
            rate: 100_000.0,
            concurrency: 3,
            limit: Duration::from_secs(10),
        };
        let (f, p) = (in_flight.clone(), peak.clone());
        let report = ramp(
            slots(40),
            pacing,
            |_, _| {},
            move |_, conn| {
                let (f, p) = (f.clone(), p.clone());
                tokio::spawn(async move {
                    let now = f.fetch_add(1, Ordering::SeqCst) + 1;
                    p.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(2)).await;
                    f.fetch_sub(1, Ordering::SeqCst);
                    conn.done(Ok(()));
                });
            },
        )
        .await;
        assert_eq!(report.established, 40);
        assert!(
            peak.load(Ordering::SeqCst) <= 3,
            "peak {}",
            peak.load(Ordering::SeqCst)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn rate_bounds_the_pace_and_limit_stops_the_ramp() {
        let pacing = Pacing {
            rate: 10.0,
            concurrency: 100,
            limit: Duration::from_millis(1_050),
        };
        let report = ramp(slots(100), pacing, |_, _| {}, |_, conn| conn.done(Ok(()))).await;
        // 10/s for ~1 s: the first tick is immediate, then one per 100 ms.
        assert!((10..=12).contains(&report.established), "{report:?}");
        assert_eq!(report.established + report.errors.0["not_started"], 100);
    }

    #[test]
    fn reports_merge() {
        let mut a = RampReport {
            established: 5,
            elapsed_ms: 10,
            ..Default::default()
        };
        a.errors.add("handshake", 1);
        a.samples.insert("handshake".into(), "first".into());
        let mut b = RampReport {
            established: 7,
            elapsed_ms: 20,
            ..Default::default()
        };
        b.errors.add("handshake", 2);
        b.samples.insert("handshake".into(), "second".into());
        let mut l = Latency::new();
        l.record_micros(100);
        b.connect_us = l.to_data();
        a.merge(&b);
        assert_eq!((a.established, a.failed(), a.elapsed_ms), (12, 3, 20));
        assert_eq!(a.samples["handshake"], "first");
        assert_eq!(Latency::from_data(&a.connect_us).len(), 1);
    }
}

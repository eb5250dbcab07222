//! `idle`: open many connections, prove each is live with one echo, hold them idle, and
//! measure what they cost the server in resident memory.
//!
//! Parent: server RSS before -> workers ramp up -> settle -> RSS -> hold -> RSS -> every
//! connection echoes once more (`check`) -> close -> RSS after close.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;

use crate::cli::{parse_duration, ConnectArgs, ProcessArgs};
use crate::probe::{self, Memory};
use crate::ramp::{ramp, RampReport};
use crate::spread::Slot;
use crate::stats::{kib_per_connection, Latency};
use crate::worker::{self, emit, Workers};
use crate::ws::{self, Failure, Target};

#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub processes: ProcessArgs,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// PID of the server, whose RSS, descriptors and open-file limit are reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Wait after the last connection opens before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Hold the connections idle this long after the first measurement, then measure again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
}

/// Worker -> parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Progress {
        established: u64,
        failed: u64,
    },
    Ready {
        ramp: RampReport,
        nofile: u64,
        connections: usize,
    },
    Checked {
        ok: u64,
        failed: u64,
        lost: u64,
    },
    Closed {
        closed: u64,
        lost: u64,
        failed: u64,
    },
    Fatal {
        error: String,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Hold,
    Check,
    Close,
}

/// Per-worker tallies the connection tasks update.
#[derive(Default)]
struct Tallies {
    check_ok: AtomicU64,
    /// Terminal outcomes: each connection task ends in exactly one of these.
    check_failed: AtomicU64,
    lost: AtomicU64,
    closed: AtomicU64,
}

impl Tallies {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
    fn ended(&self) -> u64 {
        Self::get(&self.check_failed) + Self::get(&self.lost) + Self::get(&self.closed)
    }
}

const ECHO_TIMEOUT: Duration = Duration::from_secs(15);
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

async fn connection(
    target: Arc<Target>,
    slot: Slot,
    conn: crate::ramp::Connected,
    mut phase: watch::Receiver<Phase>,
    tallies: Arc<Tallies>,
    timeout: Duration,
) {
    let hello = format!("hello {}", slot.global);
    let opened = tokio::time::timeout(timeout, async {
        let mut ws = target.open(slot.source).await?;
        ws::round_trip(&mut ws, &hello, timeout).await?;
        Ok::<_, Failure>(ws)
    })
    .await;
    let mut ws = match opened {
        Ok(Ok(ws)) => ws,
        Ok(Err(f)) => return conn.done(Err(f)),
        Err(_) => {
            return conn.done(Err(Failure::new(
                "connect_timeout",
                format!("not connected and echoed within {timeout:?}"),
            )))
        }
    };
    conn.done(Ok(()));
    loop {
        tokio::select! {
            changed = phase.changed() => {
                let now = if changed.is_err() { Phase::Close } else { *phase.borrow_and_update() };
                match now {
                    Phase::Hold => {}
                    Phase::Check => match ws::round_trip(&mut ws, &hello, ECHO_TIMEOUT).await {
                        Ok(()) => { tallies.check_ok.fetch_add(1, Ordering::Relaxed); }
                        Err(_) => { tallies.check_failed.fetch_add(1, Ordering::Relaxed); return; }
                    },
                    Phase::Close => {
                        ws::close(ws, CLOSE_TIMEOUT).await;
                        tallies.closed.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
            msg = ws.next() => match msg {
                // Pings are answered by tungstenite; anything else is unexpected but harmless.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    tallies.lost.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Wait (bounded) until `done()` holds, polling.
async fn wait_until(deadline: Instant, done: impl Fn() -> bool) {
    while !done() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn worker(args: IdleArgs, k: usize) -> Result<(), String> {
    let processes = args.processes.count(args.connections);
    let nofile = probe::raise_own_nofile();
    // Idle connections get small fixed kernel buffers: the client side stays cheap.
    let target = Arc::new(args.connect.target(Some(4096)).await?);
    let plan = args.connect.plan(args.connections, processes, &target);
    let slots: Vec<Slot> = plan.slots(k).collect();
    if slots.len() as u64 + 64 > nofile {
        let error = format!(
            "worker {k} would need {} descriptors but its open-file limit is {nofile}: use more --processes",
            slots.len() + 64
        );
        emit(&Report::Fatal {
            error: error.clone(),
        });
        return Err(error);
    }
    let mut commands = worker::commands();
    let (phase_tx, phase_rx) = watch::channel(Phase::Hold);
    let tallies = Arc::new(Tallies::default());
    let connections = slots.len();
    let timeout = args.connect.connect_timeout;
    let ramp_report = ramp(
        slots,
        args.connect.pacing(processes),
        |established, failed| {
            emit(&Report::Progress {
                established,
                failed,
            })
        },
        |slot, conn| {
            tokio::spawn(connection(
                target.clone(),
                slot,
                conn,
                phase_rx.clone(),
                tallies.clone(),
                timeout,
            ));
        },
    )
    .await;
    let established = ramp_report.established;
    emit(&Report::Ready {
        ramp: ramp_report,
        nofile,
        connections,
    });

    // The parent normally says `check` then `close`; a worker never outlives this.
    let lifetime = Instant::now() + args.settle + args.hold + Duration::from_secs(300);
    loop {
        let command = tokio::time::timeout_at(lifetime, commands.recv()).await;
        match command {
            Ok(Some(c)) if c == "check" => {
                let _ = phase_tx.send(Phase::Check);
                wait_until(
                    Instant::now() + ECHO_TIMEOUT + Duration::from_secs(5),
                    || Tallies::get(&tallies.check_ok) + tallies.ended() >= established,
                )
                .await;
                let _ = phase_tx.send(Phase::Hold);
                emit(&Report::Checked {
                    ok: Tallies::get(&tallies.check_ok),
                    failed: Tallies::get(&tallies.check_failed),
                    lost: Tallies::get(&tallies.lost),
                });
            }
            Ok(Some(c)) if c != "close" => {}
            // `close`, the parent gone, or the lifetime over.
            _ => {
                let _ = phase_tx.send(Phase::Close);
                wait_until(
                    Instant::now() + CLOSE_TIMEOUT + Duration::from_secs(5),
                    || tallies.ended() >= established,
                )
                .await;
                emit(&Report::Closed {
                    closed: Tallies::get(&tallies.closed),
                    lost: Tallies::get(&tallies.lost),
                    failed: Tallies::get(&tallies.check_failed),
                });
                return Ok(());
            }
        }
    }
}

/// The server-side figures at one moment.
#[derive(Clone, Copy, Debug, Serialize)]
struct ServerSample {
    memory: Memory,
    fds: Option<usize>,
}

fn sample(pid: Option<u32>) -> Option<ServerSample> {
    let pid = pid?;
    match probe::memory(pid) {
        Ok(memory) => Some(ServerSample {
            memory,
            fds: probe::open_fds(pid),
        }),
        Err(e) => {
            eprintln!("cannot read the server's memory: {e}");
            None
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub async fn parent(args: IdleArgs) -> Result<(), String> {
    let n = args.connections;
    let processes = args.processes.count(n);
    let target = args.connect.target(None).await?;
    let plan = args.connect.plan(n, processes, &target);
    let per_worker = plan.share(0);
    let own_nofile = probe::raise_own_nofile();
    println!(
        "idle: {n} connections to {} ({}), {processes} worker processes (up to {per_worker} each, open-file limit {own_nofile} each), {}",
        target.url,
        target.server,
        if plan.sources == 0 {
            "default source address".to_string()
        } else {
            format!(
                "{} source addresses from {} (up to {} connections each)",
                plan.sources,
                crate::spread::source_addr(0),
                plan.max_per_source()
            )
        }
    );
    let server_nofile = args.server_pid.and_then(probe::nofile_limit);
    if let Some((soft, hard)) = server_nofile {
        let room = soft.saturating_sub(100);
        println!(
            "server open-file limit: soft {soft}, hard {hard}: room for about {room} connections"
        );
        if n as u64 > room {
            println!("  note: {n} connections exceed that; expect failures past about {room}");
        }
    }
    let before = sample(args.server_pid);
    if let Some(s) = before {
        println!(
            "server RSS before: {} (anon {})",
            mib(s.memory.rss_kib),
            mib(s.memory.rss_anon_kib)
        );
    }

    let overflows_before = probe::listen_overflows();
    let mut workers: Workers<Report> =
        Workers::spawn(processes).map_err(|e| format!("cannot start workers: {e}"))?;
    let ramp_deadline = Instant::now()
        + args.connect.ramp_limit
        + args.connect.connect_timeout
        + Duration::from_secs(60);
    let mut progress = vec![(0u64, 0u64); processes];
    let mut last_print = Instant::now();
    let started = Instant::now();
    let readies = workers
        .collect(ramp_deadline, |k, r| match r {
            Report::Progress {
                established,
                failed,
            } => {
                progress[k] = (established, failed);
                if last_print.elapsed() >= Duration::from_secs(2) {
                    last_print = Instant::now();
                    let (e, f) = progress.iter().fold((0, 0), |a, p| (a.0 + p.0, a.1 + p.1));
                    eprintln!(
                        "  {:>5.1}s  established {e}  failed {f}",
                        started.elapsed().as_secs_f64()
                    );
                }
                None
            }
            Report::Ready { ramp, .. } => Some(ramp),
            Report::Fatal { error } => {
                eprintln!("worker {k}: {error}");
                None
            }
            _ => None,
        })
        .await?;
    let mut ramp_total = RampReport::default();
    readies.iter().for_each(|r| ramp_total.merge(r));
    let connect = Latency::from_data(&ramp_total.connect_us).summary();
    let ramp_secs = ramp_total.elapsed_ms as f64 / 1e3;
    println!(
        "established {} of {n}, failed {} ({}) in {ramp_secs:.1}s ({:.0}/s)",
        ramp_total.established,
        ramp_total.failed(),
        ramp_total.errors.human(),
        ramp_total.established as f64 / ramp_secs.max(0.001),
    );
    for (kind, detail) in &ramp_total.samples {
        println!("  first {kind} error: {detail}");
    }
    println!("connect + handshake + first echo: {}", connect.human());
    let overflows = match (overflows_before, probe::listen_overflows()) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    if let Some(o) = overflows {
        println!("listen backlog overflows during the ramp (kernel, machine-wide): {o}");
    }

    tokio::time::sleep(args.settle).await;
    let settled = sample(args.server_pid);
    tokio::time::sleep(args.hold).await;
    let held = sample(args.server_pid);

    workers.tell_all("check").await;
    let checks = workers
        .collect(
            Instant::now() + ECHO_TIMEOUT + Duration::from_secs(30),
            |_, r| match r {
                Report::Checked { ok, failed, lost } => Some((ok, failed, lost)),
                _ => None,
            },
        )
        .await?;
    let (alive, check_failed, lost) = checks
        .iter()
        .fold((0, 0, 0), |a, c| (a.0 + c.0, a.1 + c.1, a.2 + c.2));
    println!(
        "after the hold: {alive} connections echoed again, {check_failed} failed the echo, {lost} were closed by the server"
    );

    workers.tell_all("close").await;
    let closes = workers
        .collect(
            Instant::now() + CLOSE_TIMEOUT + Duration::from_secs(30),
            |_, r| match r {
                Report::Closed { closed, .. } => Some(closed),
                _ => None,
            },
        )
        .await?;
    workers.finish(Duration::from_secs(10)).await;
    let closed: u64 = closes.iter().sum();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after_close = sample(args.server_pid);

    let established = ramp_total.established;
    let per_conn = |s: Option<ServerSample>, anon: bool| -> Option<f64> {
        let (b, a) = (before?.memory, s?.memory);
        if anon {
            kib_per_connection(b.rss_anon_kib * 1024, a.rss_anon_kib * 1024, established)
        } else {
            kib_per_connection(b.rss_kib * 1024, a.rss_kib * 1024, established)
        }
    };
    if let (Some(b), Some(s), Some(h)) = (before, settled, held) {
        println!(
            "server RSS: before {}, connected+settled {}, after {:?} hold {}, peak {}",
            mib(b.memory.rss_kib),
            mib(s.memory.rss_kib),
            args.hold,
            mib(h.memory.rss_kib),
            mib(h.memory.hwm_kib)
        );
        if let (Some(fb), Some(fs)) = (b.fds, s.fds) {
            println!("server open descriptors: {fb} before, {fs} connected");
        }
        println!(
            "server RSS per connection: {:.2} KiB settled, {:.2} KiB after hold (anonymous memory: {:.2} KiB)",
            per_conn(settled, false).unwrap_or(f64::NAN),
            per_conn(held, false).unwrap_or(f64::NAN),
            per_conn(held, true).unwrap_or(f64::NAN),
        );
    }
    if let Some(c) = after_close {
        println!("server RSS after closing all: {}", mib(c.memory.rss_kib));
    }
    let summary = json!({
        "scenario": "idle",
        "url": target.url,
        "connections": n,
        "processes": processes,
        "sources": plan.sources,
        "established": established,
        "failed": ramp_total.failed(),
        "errors": ramp_total.errors.0,
        "ramp_seconds": ramp_secs,
        "connect_latency_us": connect,
        "listen_overflows": overflows,
        "alive_after_hold": alive,
        "check_failed": check_failed,
        "lost": lost,
        "closed": closed,
        "hold_seconds": args.hold.as_secs_f64(),
        "server_nofile": server_nofile.map(|(s, h)| json!({"soft": s, "hard": h})),
        "server_before": before,
        "server_settled": settled,
        "server_held": held,
        "server_after_close": after_close,
        "rss_kib_per_connection": per_conn(settled, false),
        "rss_kib_per_connection_after_hold": per_conn(held, false),
        "anon_kib_per_connection_after_hold": per_conn(held, true),
    });
    println!("{summary}");
    if established == 0 {
        return Err("no connection was established".into());
    }
    Ok(())
}

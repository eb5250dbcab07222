//! `echo`: closed-loop round trips. Each connection keeps `--pipeline` messages in flight:
//! it sends, and on every echo sends the next, until the run ends. Reports throughput and
//! the round-trip latency distribution over the measured window (after `--warmup`).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use crate::cli::{parse_duration, ConnectArgs, ProcessArgs};
use crate::probe;
use crate::ramp::{ramp, Connected, RampReport};
use crate::spread::Slot;
use crate::stats::{rate, Errors, Latency, LatencyData};
use crate::worker::{self, emit, Workers};
use crate::ws::{self, Failure, Target, Ws};

#[derive(Args, Clone, Debug)]
pub struct EchoArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub processes: ProcessArgs,
    /// Connections, each running its own closed loop.
    #[arg(long, default_value_t = 100)]
    pub connections: usize,
    /// Measured run time (after the warm-up).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Run this long before measuring.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Message payload size in bytes (text).
    #[arg(long, default_value_t = 100)]
    pub size: usize,
    /// Messages each connection keeps in flight.
    #[arg(long, default_value_t = 1)]
    pub pipeline: usize,
    /// An echo not back within this is an error and ends that connection's loop.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// PID of the server, whose CPU use over the measured window is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

/// Worker -> parent.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Report {
    Progress { established: u64, failed: u64 },
    Ready { ramp: RampReport },
    Done(Box<WorkerResult>),
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct WorkerResult {
    /// Echoes received inside the measured window.
    pub received: u64,
    pub sent: u64,
    pub errors: Errors,
    pub rtt_us: LatencyData,
    pub window_ms: u64,
    pub cpu_ms: u64,
}

/// One connection's part of a run.
#[derive(Default)]
struct ConnResult {
    rtt: Latency,
    received: u64,
    sent: u64,
    error: Option<Failure>,
}

/// When the measured window is.
#[derive(Clone, Copy, Debug)]
struct Window {
    measure_from: Instant,
    end: Instant,
}

fn payload(size: usize) -> Utf8Bytes {
    let text: String = (0..size).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    Utf8Bytes::from(text)
}

async fn closed_loop(
    ws: &mut Ws,
    payload: &Utf8Bytes,
    pipeline: usize,
    w: Window,
    timeout: Duration,
) -> ConnResult {
    let mut r = ConnResult::default();
    let mut in_flight: VecDeque<Instant> = VecDeque::with_capacity(pipeline);
    for _ in 0..pipeline.max(1) {
        in_flight.push_back(Instant::now());
        if let Err(e) = ws.feed(Message::Text(payload.clone())).await {
            r.error = Some(Failure::new("send", e));
            return r;
        }
        r.sent += 1;
    }
    if let Err(e) = ws.flush().await {
        r.error = Some(Failure::new("send", e));
        return r;
    }
    while !in_flight.is_empty() {
        let msg = match tokio::time::timeout(timeout, ws.next()).await {
            Ok(m) => m,
            Err(_) => {
                r.error = Some(Failure::new(
                    "echo_timeout",
                    format!("no echo within {timeout:?}"),
                ));
                return r;
            }
        };
        let now = Instant::now();
        match msg {
            Some(Ok(Message::Text(t))) if t.len() == payload.len() => {
                let sent_at = in_flight
                    .pop_front()
                    .expect("an echo answers a sent message");
                if now >= w.measure_from && now <= w.end {
                    r.rtt.record(now - sent_at);
                    r.received += 1;
                }
                if now < w.end {
                    in_flight.push_back(Instant::now());
                    if let Err(e) = ws.send(Message::Text(payload.clone())).await {
                        r.error = Some(Failure::new("send", e));
                        return r;
                    }
                    r.sent += 1;
                }
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
            Some(Ok(other)) => {
                r.error = Some(Failure::new(
                    "echo_mismatch",
                    format!("unexpected {other:?}"),
                ));
                return r;
            }
            Some(Err(e)) => {
                r.error = Some(Failure::new("read", e));
                return r;
            }
            None => {
                r.error = Some(Failure::new("closed", "server closed the connection"));
                return r;
            }
        }
    }
    r
}

async fn connection(
    target: Arc<Target>,
    slot: Slot,
    conn: Connected,
    mut start: watch::Receiver<Option<Window>>,
    args: Arc<EchoArgs>,
    payload: Utf8Bytes,
) -> Option<ConnResult> {
    let timeout = args.connect.connect_timeout;
    let opened = tokio::time::timeout(timeout, async {
        let mut ws = target.open(slot.source).await?;
        ws::round_trip(&mut ws, "hello", timeout).await?;
        Ok::<_, Failure>(ws)
    })
    .await
    .unwrap_or_else(|_| {
        Err(Failure::new(
            "connect_timeout",
            format!("not ready within {timeout:?}"),
        ))
    });
    let mut ws = match opened {
        Ok(ws) => ws,
        Err(f) => {
            conn.done(Err(f));
            return None;
        }
    };
    conn.done(Ok(()));
    // Wait for the parent's start (or give up with the channel).
    let window = loop {
        if let Some(w) = *start.borrow_and_update() {
            break w;
        }
        if start.changed().await.is_err() {
            ws::close(ws, Duration::from_secs(2)).await;
            return None;
        }
    };
    let r = closed_loop(&mut ws, &payload, args.pipeline, window, args.timeout).await;
    ws::close(ws, Duration::from_secs(2)).await;
    Some(r)
}

pub async fn worker(args: EchoArgs, k: usize) -> Result<(), String> {
    let processes = args.processes.count(args.connections);
    probe::raise_own_nofile();
    let target = Arc::new(args.connect.target(None).await?);
    let plan = args.connect.plan(args.connections, processes, &target);
    let slots: Vec<Slot> = plan.slots(k).collect();
    let mut commands = worker::commands();
    let (start_tx, start_rx) = watch::channel(None::<Window>);
    let args = Arc::new(args);
    let payload = payload(args.size);
    let mut tasks: Vec<JoinHandle<Option<ConnResult>>> = Vec::with_capacity(slots.len());
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
            tasks.push(tokio::spawn(connection(
                target.clone(),
                slot,
                conn,
                start_rx.clone(),
                args.clone(),
                payload.clone(),
            )));
        },
    )
    .await;
    emit(&Report::Ready { ramp: ramp_report });

    let give_up = Instant::now() + Duration::from_secs(120);
    if !worker::wait_for(&mut commands, "start", give_up).await {
        return Ok(()); // dropping start_tx ends the connections
    }
    let cpu_before = probe::cpu_time(std::process::id());
    let now = Instant::now();
    let window = Window {
        measure_from: now + args.warmup,
        end: now + args.warmup + args.duration,
    };
    let _ = start_tx.send(Some(window));

    let mut all = Latency::new();
    let mut result = WorkerResult::default();
    let deadline = window.end + args.timeout + Duration::from_secs(10);
    for task in tasks {
        match tokio::time::timeout_at(deadline, task).await {
            Ok(Ok(Some(r))) => {
                all.merge(&r.rtt);
                result.received += r.received;
                result.sent += r.sent;
                if let Some(f) = r.error {
                    result.errors.add(f.kind, 1);
                }
            }
            Ok(Ok(None)) => {} // never connected: counted by the ramp
            Ok(Err(_)) => result.errors.add("task_panicked", 1),
            Err(_) => result.errors.add("stuck", 1),
        }
    }
    result.rtt_us = all.to_data();
    result.window_ms = args.duration.as_millis() as u64;
    let cpu_after = probe::cpu_time(std::process::id());
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        result.cpu_ms = b.saturating_sub(a).as_millis() as u64;
    }
    emit(&Report::Done(Box::new(result)));
    Ok(())
}

pub async fn parent(args: EchoArgs) -> Result<(), String> {
    let n = args.connections;
    let processes = args.processes.count(n);
    let target = args.connect.target(None).await?;
    println!(
        "echo: {n} connections to {} ({}), {processes} worker process(es), {} B text messages, pipeline {}, {:?} measured after {:?} warm-up",
        target.url, target.server, args.size, args.pipeline, args.duration, args.warmup
    );
    let mut workers: Workers<Report> =
        Workers::spawn(processes).map_err(|e| format!("cannot start workers: {e}"))?;
    let ramp_deadline = Instant::now()
        + args.connect.ramp_limit
        + args.connect.connect_timeout
        + Duration::from_secs(60);
    let readies = workers
        .collect(ramp_deadline, |_, r| match r {
            Report::Ready { ramp } => Some(ramp),
            _ => None,
        })
        .await?;
    let mut ramp_total = RampReport::default();
    readies.iter().for_each(|r| ramp_total.merge(r));
    println!(
        "established {} of {n}, failed {} ({})",
        ramp_total.established,
        ramp_total.failed(),
        ramp_total.errors.human()
    );
    for (kind, detail) in &ramp_total.samples {
        println!("  first {kind} error: {detail}");
    }

    workers.tell_all("start").await;
    let started = Instant::now();
    // Server CPU over the measured window only (approximately: sampled from here).
    tokio::time::sleep(args.warmup).await;
    let server_cpu_before = args.server_pid.and_then(probe::cpu_time);
    let machine_before = probe::machine_cpu();
    let measured_from = Instant::now();
    let deadline = started + args.warmup + args.duration + args.timeout + Duration::from_secs(30);
    let mut server_cpu_after = None;
    let mut machine_after = None;
    let mut sampled = false;
    let mut results: Vec<Option<Box<WorkerResult>>> = (0..processes).map(|_| None).collect();
    while results.iter().any(Option::is_none) {
        // Take the server's CPU reading as the window closes, before the tail drains.
        let wake = if sampled {
            deadline
        } else {
            measured_from + args.duration
        };
        match workers.next(wake.min(deadline)).await {
            Some((k, crate::worker::Heard::Report(Report::Done(r)))) => results[k] = Some(r),
            Some((k, crate::worker::Heard::Exited)) if results[k].is_none() => {
                return Err(format!("worker {k} exited early"));
            }
            Some(_) => {}
            None if !sampled => {
                sampled = true;
                server_cpu_after = args.server_pid.and_then(probe::cpu_time);
                machine_after = probe::machine_cpu();
            }
            None => return Err("timed out waiting for the workers' results".into()),
        }
    }
    if !sampled {
        server_cpu_after = args.server_pid.and_then(probe::cpu_time);
        machine_after = probe::machine_cpu();
    }
    workers.finish(Duration::from_secs(10)).await;

    let mut rtt = Latency::new();
    let mut errors = Errors::default();
    let (mut received, mut sent, mut client_cpu_ms) = (0u64, 0u64, 0u64);
    for r in results.into_iter().flatten() {
        rtt.merge(&Latency::from_data(&r.rtt_us));
        errors.merge(&r.errors);
        received += r.received;
        sent += r.sent;
        client_cpu_ms += r.cpu_ms;
    }
    let msgs_per_sec = rate(received, args.duration);
    let summary = rtt.summary();
    let total_window = args.warmup + args.duration;
    println!(
        "throughput: {msgs_per_sec:.0} msgs/s ({:.2} MB/s each way), {received} echoes in {:?}",
        msgs_per_sec * args.size as f64 / 1e6,
        args.duration
    );
    println!("round trip: {}", summary.human());
    println!("errors: {}", errors.human());
    let server_cpu = match (server_cpu_before, server_cpu_after) {
        (Some(a), Some(b)) => {
            Some(b.saturating_sub(a).as_secs_f64() / args.duration.as_secs_f64() * 100.0)
        }
        _ => None,
    };
    let client_cpu = client_cpu_ms as f64 / 1e3 / total_window.as_secs_f64() * 100.0;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let machine_busy = match (machine_before, machine_after) {
        (Some(a), Some(b)) => Some(probe::cpus_busy(a, b, cpus) * 100.0),
        _ => None,
    };
    match server_cpu {
        Some(s) => print!("CPU: server {s:.0}% of one core, load generator {client_cpu:.0}%"),
        None => print!("CPU: load generator {client_cpu:.0}% of one core"),
    }
    match machine_busy {
        Some(m) => println!("; machine busy {m:.0}% of {}% ({cpus} cores)", cpus * 100),
        None => println!(),
    }
    if let (Some(m), Some(s)) = (machine_busy, server_cpu) {
        if m - s - client_cpu > 25.0 {
            println!("  note: other processes used about {:.0}% of a core during the run: figures are low", m - s - client_cpu);
        }
    }
    let json = json!({
        "scenario": "echo",
        "url": target.url,
        "connections": n,
        "established": ramp_total.established,
        "processes": processes,
        "size": args.size,
        "pipeline": args.pipeline,
        "duration_s": args.duration.as_secs_f64(),
        "warmup_s": args.warmup.as_secs_f64(),
        "msgs_per_sec": msgs_per_sec,
        "echoes": received,
        "sent": sent,
        "rtt_us": summary,
        "errors": errors.0,
        "connect_errors": ramp_total.errors.0,
        "server_cpu_percent": server_cpu,
        "client_cpu_percent": client_cpu,
        "machine_busy_percent": machine_busy,
        "cores": cpus,
    });
    println!("{json}");
    if received == 0 {
        return Err("no echo was received".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_asked_size_and_is_text() {
        assert_eq!(payload(100).len(), 100);
        assert_eq!(payload(0).len(), 0);
        assert!(payload(30)
            .as_str()
            .starts_with("abcdefghijklmnopqrstuvwxyza"));
    }

    /// The whole loop against an in-process echo server.
    #[tokio::test]
    async fn closed_loop_counts_and_times_echoes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let mut ws = tokio_tungstenite::accept_async(tcp).await.unwrap();
            while let Some(Ok(m)) = ws.next().await {
                if m.is_text() && ws.send(m).await.is_err() {
                    break;
                }
            }
        });
        let target = Target::resolve(&format!("ws://{addr}/"), None, 1024, None)
            .await
            .unwrap();
        let mut ws = target.open(None).await.unwrap();
        let now = Instant::now();
        let w = Window {
            measure_from: now,
            end: now + Duration::from_millis(300),
        };
        let r = closed_loop(&mut ws, &payload(64), 4, w, Duration::from_secs(5)).await;
        assert!(r.error.is_none(), "{:?}", r.error);
        assert!(r.received > 10, "only {} echoes", r.received);
        assert_eq!(r.rtt.len(), r.received);
        // Every message sent was answered (in the window or during the drain).
        assert!(r.sent >= r.received);
    }
}

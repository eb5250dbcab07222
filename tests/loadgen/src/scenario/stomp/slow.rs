//! `stomp-slow`: does a stalled subscriber hurt the others? One run, same healthy
//! subscribers throughout:
//!
//! 1. baseline: the healthy subscribers only, publishing at `--rate` for `--duration`;
//! 2. `--slow-percent` more subscribers CONNECT and SUBSCRIBE, then never read their socket;
//! 3. the same publishing again, for `--duration`.
//!
//! Reports the healthy subscribers' latency and loss in both phases, and the server's RSS
//! once a second through both: with a bounded per-subscriber queue it levels off.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{Run, Spec, StepResult, StompArgs};
use crate::cli::parse_duration;
use crate::stats::fmt_micros;

#[derive(Args, Clone, Debug)]
pub struct SlowArgs {
    #[command(flatten)]
    pub stomp: StompArgs,
    /// Subscribers in all, stalled ones included.
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Share of the subscribers that stall, in percent.
    #[arg(long, default_value_t = 1.0)]
    pub slow_percent: f64,
    /// Messages per second published.
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Publishing time of each phase.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain: Duration,
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub tick: Duration,
    /// Kernel socket buffer size (SO_RCVBUF/SO_SNDBUF) of the stalled subscribers, so the
    /// server's queues fill rather than the kernel's; 0 = autotuned (a stalled loopback
    /// socket then soaks up megabytes before the server notices).
    #[arg(long, default_value_t = 4096)]
    pub stalled_buffer: u32,
    /// PID of the server: its RSS is sampled every second.
    #[arg(long)]
    pub server_pid: Option<u32>,
}

impl SlowArgs {
    pub fn spec(&self) -> Spec {
        let stalled = ((self.subscribers as f64) * self.slow_percent / 100.0).round() as usize;
        Spec {
            total: self.subscribers,
            stalled: stalled.min(self.subscribers),
            kernel_buffer: None,
            stalled_buffer: (self.stalled_buffer > 0).then_some(self.stalled_buffer),
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn rss_line(r: &StepResult) -> String {
    let rss = r
        .server_rss_kib
        .iter()
        .map(|k| mib(*k))
        .collect::<Vec<_>>()
        .join(" ");
    match r.server_send_queues {
        Some((total, largest, n)) => format!(
            "{rss}\n  server's kernel send queues at the end: {} in all over {n} sockets, largest {}",
            mib(total / 1024) + " MiB",
            if largest >= 1 << 20 { mib(largest / 1024) + " MiB" } else { format!("{:.0} KiB", largest as f64 / 1024.0) }
        ),
        None => rss,
    }
}

pub async fn parent(args: SlowArgs) -> Result<(), String> {
    let spec = args.spec();
    let mut run = Run::start(
        args.stomp.clone(),
        spec,
        args.server_pid.into_iter().collect(),
    )
    .await?;
    if run.established == 0 {
        run.finish().await;
        return Err("no subscriber could subscribe".into());
    }
    let result = drive(&args, &mut run).await;
    run.finish().await;
    result
}

async fn drive(args: &SlowArgs, run: &mut Run) -> Result<(), String> {
    let spec = run.spec;
    println!(
        "{} healthy subscribers, then {} stalled ones ({}%); {:.0} msgs/s × {:?} per phase",
        run.established, spec.stalled, args.slow_percent, args.rate, args.duration
    );
    if !args.warmup.is_zero() {
        let w = run
            .step(args.rate, args.warmup, args.drain, args.tick)
            .await?;
        println!("warm-up   {}", w.human());
    }
    let base = run
        .clean_step(args.rate, args.duration, args.drain, args.tick)
        .await?;
    println!("baseline  {}", base.human());
    println!("  server RSS every second, MiB: {}", rss_line(&base));
    let stalled = run.open_stalled().await?;
    let with = run
        .clean_step(args.rate, args.duration, args.drain, args.tick)
        .await?;
    println!("stalled   {}", with.human());
    println!("  server RSS every second, MiB: {}", rss_line(&with));
    let p99_change = if base.latency_us.p99_us > 0 {
        (with.latency_us.p99_us as f64 / base.latency_us.p99_us as f64 - 1.0) * 100.0
    } else {
        0.0
    };
    // Flatness: growth over the second half of the stalled phase.
    let half = &with.server_rss_kib[with.server_rss_kib.len() / 2..];
    let (first, last) = (half.first().copied(), half.last().copied());
    let peak = with.server_rss_kib.iter().copied().max();
    let start = base.server_rss_kib.first().copied();
    println!(
        "healthy p99: {} baseline, {} with {} stalled ({:+.1}%); loss {:.3}% -> {:.3}%",
        fmt_micros(base.latency_us.p99_us),
        fmt_micros(with.latency_us.p99_us),
        stalled.established,
        p99_change,
        base.loss_percent,
        with.loss_percent
    );
    if let (Some(s), Some(f), Some(l), Some(p)) = (start, first, last, peak) {
        println!(
            "server RSS: {} MiB at the baseline's start, peak {} MiB; second half of the stalled phase {} -> {} MiB ({:+.1} MiB)",
            mib(s),
            mib(p),
            mib(f),
            mib(l),
            (l as f64 - f as f64) / 1024.0
        );
    }
    let summary = json!({
        "scenario": "stomp-slow",
        "url": run.target.url,
        "subscribers": args.subscribers,
        "healthy": run.established,
        "stalled": stalled.established,
        "rate": args.rate,
        "p99_change_percent": p99_change,
        "baseline": base,
        "with_stalled": with,
        "connect_errors": run.ramp.errors.0,
        "stalled_connect_errors": stalled.errors.0,
        "subscriber_errors": run.errors.0,
    });
    println!("{summary}");
    Ok(())
}

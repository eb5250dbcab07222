//! `stomp-idle`: N connected and subscribed STOMP sessions, held idle; the server's RSS per
//! session. Server RSS is read before, after settling and after the hold; then one message
//! is published and every session must receive it (all still live), and the run ends.

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{Run, Spec, StompArgs};
use crate::cli::parse_duration;
use crate::probe::{self, Memory};
use crate::stats::kib_per_connection;

#[derive(Args, Clone, Debug)]
pub struct IdleArgs {
    #[command(flatten)]
    pub stomp: StompArgs,
    /// Sessions to open, subscribe and hold.
    #[arg(long, default_value_t = 1000)]
    pub connections: usize,
    /// PID of the server, whose RSS is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Wait after the last subscription before measuring.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Hold this long after the first measurement, then measure again.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Time allowed for the check message to reach every session.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub check_wait: Duration,
}

impl IdleArgs {
    pub fn spec(&self) -> Spec {
        Spec {
            total: self.connections,
            stalled: 0,
            // Small fixed kernel buffers keep the client side cheap.
            kernel_buffer: Some(4096),
            stalled_buffer: None,
        }
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

pub async fn parent(args: IdleArgs) -> Result<(), String> {
    let pid = args.server_pid;
    if let Some((soft, _)) = pid.and_then(probe::nofile_limit) {
        println!("server open-file limit: {soft}");
    }
    let memory = |p: Option<u32>| -> Option<Memory> { probe::memory(p?).ok() };
    let before = memory(pid);
    if let Some(b) = before {
        println!("server RSS before: {}", mib(b.rss_kib));
    }
    let mut run = Run::start(args.stomp.clone(), args.spec(), pid.into_iter().collect()).await?;
    let n = run.established;
    tokio::time::sleep(args.settle).await;
    let settled = memory(pid);
    tokio::time::sleep(args.hold).await;
    let held = memory(pid);
    let fds = pid.and_then(probe::open_fds);
    // Liveness: one message, which every session must get.
    let check = run
        .step(
            1.0,
            Duration::from_millis(100),
            args.check_wait,
            Duration::from_millis(1),
        )
        .await;
    // After one delivery each: what sessions cost that made per-connection state for it
    // (a dedicated permessage-deflate compressor, say) before it is freed.
    let after_check = memory(pid);
    run.finish().await;
    let check = check?;
    let per = |m: Option<Memory>, anon: bool| -> Option<f64> {
        let (b, a) = (before?, m?);
        if anon {
            kib_per_connection(b.rss_anon_kib * 1024, a.rss_anon_kib * 1024, n)
        } else {
            kib_per_connection(b.rss_kib * 1024, a.rss_kib * 1024, n)
        }
    };
    if let (Some(b), Some(s), Some(h)) = (before, settled, held) {
        println!(
            "server RSS: before {}, subscribed+settled {}, after {:?} hold {} (open descriptors {})",
            mib(b.rss_kib),
            mib(s.rss_kib),
            args.hold,
            mib(h.rss_kib),
            fds.map_or("?".into(), |f| f.to_string())
        );
        println!(
            "server RSS per subscribed session: {:.2} KiB settled, {:.2} KiB after hold (anonymous memory {:.2} KiB)",
            per(settled, false).unwrap_or(f64::NAN),
            per(held, false).unwrap_or(f64::NAN),
            per(held, true).unwrap_or(f64::NAN),
        );
    }
    if after_check.is_some() {
        println!(
            "server RSS per subscribed session after one delivery each: {:.2} KiB",
            per(after_check, false).unwrap_or(f64::NAN)
        );
    }
    println!(
        "check: {} of {} sessions received the check message (sent {}), latency p99 {:.1} ms",
        check.received,
        n,
        check.sent,
        check.latency_us.p99_us as f64 / 1e3
    );
    let summary = json!({
        "scenario": "stomp-idle",
        "url": run_url(&args),
        "connections": args.connections,
        "established": n,
        "server_before": before,
        "server_settled": settled,
        "server_held": held,
        "server_fds": fds,
        "rss_kib_per_connection": per(settled, false),
        "rss_kib_per_connection_after_hold": per(held, false),
        "anon_kib_per_connection_after_hold": per(held, true),
        "rss_kib_per_connection_after_check": per(after_check, false),
        "alive_after_hold": check.received,
        "check_sent": check.sent,
    });
    println!("{summary}");
    if n == 0 {
        return Err("no session was established".into());
    }
    Ok(())
}

fn run_url(args: &IdleArgs) -> &str {
    &args.stomp.url
}

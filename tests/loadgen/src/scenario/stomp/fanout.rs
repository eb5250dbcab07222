//! `stomp-fanout`: N subscribers on one topic, one publisher at a fixed rate; deliveries per
//! second, loss and latency. `--ramp` raises the rate step by step (× `--ramp-factor`) until
//! a step loses messages (or its p99 passes `--give-up-p99`), then narrows in with
//! `--refine` extra steps. It reports the sustainable peak (the best step with no loss and
//! p99 within `--max-p99`) and the lossless peak (the best step with no loss, any latency).

use std::time::Duration;

use clap::Args;
use serde_json::json;

use super::{Run, Spec, StepResult, StompArgs};
use crate::cli::parse_duration;
use crate::stats::fmt_micros;

#[derive(Args, Clone, Debug)]
pub struct FanoutArgs {
    #[command(flatten)]
    pub stomp: StompArgs,
    /// Subscribers (spread over the worker processes and source addresses).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Messages per second published (with --ramp: the first step's rate).
    #[arg(long, default_value_t = 100.0)]
    pub rate: f64,
    /// Measured publishing time (without --ramp).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Publish at the starting rate this long first, not measured.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// After a step's last message, wait this long for deliveries before counting; later
    /// ones count as lost.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub drain: Duration,
    /// The publisher's timer tick; above one message per tick it sends several at once.
    #[arg(long, default_value = "1ms", value_parser = parse_duration)]
    pub tick: Duration,
    /// Raise the rate step by step to find the highest sustainable one.
    #[arg(long)]
    pub ramp: bool,
    /// Rate multiplier from one ramp step to the next.
    #[arg(long, default_value_t = 1.5)]
    pub ramp_factor: f64,
    /// Publishing time of each ramp step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step_duration: Duration,
    /// A step whose p99 latency is above this is not sustainable.
    #[arg(long, default_value = "50ms", value_parser = parse_duration)]
    pub max_p99: Duration,
    /// The ramp goes on past --max-p99 while nothing is lost (to find the lossless peak),
    /// and stops at a step with a p99 above this.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub give_up_p99: Duration,
    /// Most ramp steps before giving up (the ramp also stops past --max-rate).
    #[arg(long, default_value_t = 30)]
    pub max_steps: u32,
    #[arg(long, default_value_t = 1_000_000.0)]
    pub max_rate: f64,
    /// Extra steps between the last good and the first bad rate (geometric midpoints).
    #[arg(long, default_value_t = 2)]
    pub refine: u32,
    /// Pause after a failed step, so backlogs in the broker drain before the next one.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub pause_after_fail: Duration,
    /// PID of the server: its CPU per step (and RSS) is reported. Several (comma-separated
    /// or repeated, e.g. one per gateway behind a --url list) are summed.
    #[arg(long, value_delimiter = ',')]
    pub server_pid: Vec<u32>,
}

impl FanoutArgs {
    pub fn spec(&self) -> Spec {
        Spec {
            total: self.subscribers,
            stalled: 0,
            kernel_buffer: None,
            stalled_buffer: None,
        }
    }
}

/// `None` when a step is sustainable.
type Verdict = Option<(bool, String)>;

/// Why a step is not sustainable: `(lossy, why)`, where `lossy` says messages were lost
/// (or the publisher could not keep its rate), as opposed to only latency over the bar.
fn verdict(r: &StepResult, max_p99: Duration) -> Verdict {
    if r.received < r.expected {
        return Some((true, format!("loss {:.3}%", r.loss_percent)));
    }
    if r.sent_rate < r.rate * 0.97 {
        return Some((
            true,
            format!(
                "publisher held back ({:.0} of {:.0}/s)",
                r.sent_rate, r.rate
            ),
        ));
    }
    if let Some(e) = &r.publisher_error {
        return Some((true, format!("publisher: {e}")));
    }
    if r.closed > 0 {
        return Some((true, format!("{} subscribers closed", r.closed)));
    }
    if r.latency_us.p99_us as u128 > max_p99.as_micros() {
        return Some((
            false,
            format!(
                "p99 {} > {}",
                fmt_micros(r.latency_us.p99_us),
                fmt_micros(max_p99.as_micros() as u64)
            ),
        ));
    }
    None
}

fn label(v: &Verdict) -> &str {
    v.as_ref().map_or("ok", |(_, why)| why.as_str())
}

pub async fn parent(args: FanoutArgs) -> Result<(), String> {
    let mut run = Run::start(args.stomp.clone(), args.spec(), args.server_pid.clone()).await?;
    if run.established == 0 {
        run.finish().await;
        return Err("no subscriber could subscribe".into());
    }
    let result = drive(&args, &mut run).await;
    run.finish().await;
    result
}

async fn drive(args: &FanoutArgs, run: &mut Run) -> Result<(), String> {
    let n = run.established;
    println!(
        "publishing {} B bodies to {} subscribers; drain {:?}; tick {:?}",
        args.stomp.size, n, args.drain, args.tick
    );
    if !args.warmup.is_zero() {
        let w = run
            .step(args.rate, args.warmup, args.drain, args.tick)
            .await?;
        println!("warm-up  {}", w.human());
    }
    let mut steps: Vec<(StepResult, Verdict)> = Vec::new();
    if !args.ramp {
        let r = run
            .clean_step(args.rate, args.duration, args.drain, args.tick)
            .await?;
        let v = verdict(&r, args.max_p99);
        println!("measured {}", r.human());
        if let Some((_, why)) = &v {
            println!("  not sustainable: {why}");
        }
        steps.push((r, v));
    } else {
        // Up by --ramp-factor while nothing is lost and p99 stays under --give-up-p99;
        // a step over --max-p99 but lossless does not stop the ramp, so both the
        // sustainable peak and the lossless peak come out of one run.
        let mut rate = args.rate;
        let (mut good, mut bad) = (None::<f64>, None::<f64>);
        let (mut lossless, mut lossy) = (None::<f64>, None::<f64>);
        for i in 0..args.max_steps {
            let r = run
                .clean_step(rate, args.step_duration, args.drain, args.tick)
                .await?;
            let v = verdict(&r, args.max_p99);
            println!("step {:>2} {}  [{}]", i + 1, r.human(), label(&v));
            let p99 = r.latency_us.p99_us;
            match &v {
                None => good = Some(rate),
                Some((false, _)) => {
                    bad = bad.or(Some(rate));
                    lossless = Some(rate);
                }
                Some((true, _)) => {
                    bad = bad.or(Some(rate));
                    lossy = Some(rate);
                }
            }
            if v.is_none() {
                lossless = Some(rate);
            }
            steps.push((r, v));
            if lossy.is_some() || p99 as u128 > args.give_up_p99.as_micros() {
                break;
            }
            rate *= args.ramp_factor;
            if rate > args.max_rate {
                break;
            }
        }
        // Narrow in on the sustainable peak if the ramp crossed it, else on the lossless one.
        let bounds = match (good, bad, lossless, lossy) {
            (Some(lo), Some(hi), _, _) if hi > lo => Some((lo, hi, false)),
            (_, _, Some(lo), Some(hi)) if hi > lo => Some((lo, hi, true)),
            _ => None,
        };
        if let Some((mut lo, mut hi, loss_only)) = bounds {
            for j in 0..args.refine {
                tokio::time::sleep(args.pause_after_fail).await;
                let mid = (lo * hi).sqrt();
                let r = run
                    .clean_step(mid, args.step_duration, args.drain, args.tick)
                    .await?;
                let v = verdict(&r, args.max_p99);
                println!("refine {} {}  [{}]", j + 1, r.human(), label(&v));
                let failed = if loss_only {
                    matches!(v, Some((true, _)))
                } else {
                    v.is_some()
                };
                if failed {
                    hi = mid;
                } else {
                    lo = mid;
                }
                steps.push((r, v));
            }
        }
    }
    let best_by = |ok: &dyn Fn(&Verdict) -> bool| {
        steps
            .iter()
            .filter(|(_, v)| ok(v))
            .map(|(r, _)| r)
            .max_by(|a, b| a.deliveries_per_sec.total_cmp(&b.deliveries_per_sec))
    };
    let best = best_by(&|v| v.is_none());
    let best_lossless = best_by(&|v| !matches!(v, Some((true, _))));
    if args.ramp {
        match best {
            Some(b) => println!(
                "sustainable peak (no loss, p99 <= {}): {:.0} deliveries/s ({:.1} msgs/s × {} subscribers), p99 {}",
                fmt_micros(args.max_p99.as_micros() as u64),
                b.deliveries_per_sec,
                b.sent_rate,
                b.subscribers,
                fmt_micros(b.latency_us.p99_us)
            ),
            None => println!(
                "sustainable peak (no loss, p99 <= {}): none, no step met it",
                fmt_micros(args.max_p99.as_micros() as u64)
            ),
        }
        if let Some(b) = best_lossless {
            println!(
                "lossless peak (any latency): {:.0} deliveries/s ({:.1} msgs/s × {} subscribers), p50 {} p99 {}",
                b.deliveries_per_sec,
                b.sent_rate,
                b.subscribers,
                fmt_micros(b.latency_us.p50_us),
                fmt_micros(b.latency_us.p99_us)
            );
        }
    }
    let summary = json!({
        "scenario": "stomp-fanout",
        "url": run.target.url,
        "topic": args.stomp.topic,
        "subscribers": args.subscribers,
        "established": run.established,
        "processes": run.processes,
        "size": args.stomp.size,
        "ramp": args.ramp,
        "max_p99_ms": args.max_p99.as_secs_f64() * 1e3,
        "peak_deliveries_per_sec": best.map(|b| b.deliveries_per_sec),
        "peak_rate": best.map(|b| b.rate),
        "peak_p99_us": best.map(|b| b.latency_us.p99_us),
        "lossless_peak_deliveries_per_sec": best_lossless.map(|b| b.deliveries_per_sec),
        "lossless_peak_rate": best_lossless.map(|b| b.rate),
        "lossless_peak_p99_us": best_lossless.map(|b| b.latency_us.p99_us),
        "steps": steps.iter().map(|(r, v)| {
            let mut j = json!(r);
            j["verdict"] = json!(label(v));
            j
        }).collect::<Vec<_>>(),
        "connect_errors": run.ramp.errors.0,
        "subscriber_errors": run.errors.0,
    });
    println!("{summary}");
    Ok(())
}

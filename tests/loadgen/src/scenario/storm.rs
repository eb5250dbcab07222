//! `stomp-storm`: a reconnect storm. N STOMP clients log in (with a few realm accounts)
//! and subscribe; the gateway is then restarted (SIGTERM, wait for exit, start again) and
//! every client reconnects as soon as its session drops, retrying after a failure with a
//! jittered delay that doubles with each failure in a row up to a cap, as well-behaved
//! dashboard clients do (without the doubling, clients told "try again" come back faster
//! than logins can be checked, and the retries alone keep the gateway busy). Reports how long after the new gateway started
//! the last client was subscribed again, and the CPU the gateway and the generator used.
//!
//! The parent starts the gateway itself (the command after `--`), so it can restart it
//! and read the new process's CPU time. Workers report progress as JSON lines.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Args;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::process::{Child, Command};
use tokio::sync::Semaphore;
use tokio::time::Instant;

use crate::cli::{parse_duration, ProcessArgs};
use crate::probe;
use crate::spread::{self, Plan};
use crate::stats::Errors;
use crate::stomp::{now_ns, ReadEnd, StompConn, StompTarget};
use crate::worker::{self, emit, Heard, Workers};
use crate::ws::Failure;

#[derive(Args, Clone, Debug)]
pub struct StormArgs {
    /// STOMP-over-WebSocket URL of the gateway (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Clients.
    #[arg(long, default_value_t = 10_000)]
    pub connections: usize,
    /// Realm accounts as user:password, comma-separated; client i logs in as account
    /// i mod the count.
    #[arg(long, default_value = "alice:alice-pw")]
    pub accounts: String,
    /// Topic every client subscribes to.
    #[arg(long, default_value = "/topic/dashboard")]
    pub topic: String,
    /// STOMP `host` header.
    #[arg(long, default_value = "/")]
    pub host: String,
    /// Handshakes (TCP + upgrade + CONNECT + SUBSCRIBE) in flight at once, over all workers.
    #[arg(long, default_value_t = 2000)]
    pub concurrency: usize,
    /// Delay before retrying after a failure, jittered between half and one and a half,
    /// doubling with each further failure in a row up to --max-retry-delay.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// Cap of the doubling retry delay (stomp.js reconnects every 5 s by default).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub max_retry_delay: Duration,
    /// Give up on one attempt (connect to RECEIPT) after this.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Give up on either phase (first logins, the storm) after this.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub limit: Duration,
    /// Wait between everyone being subscribed and the restart.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Loopback source addresses to spread over (0 = as many as the port range needs).
    #[arg(long, default_value_t = 0)]
    pub sources: usize,
    /// The gateway's Prometheus endpoint, scraped for `gateway_auth_*` after the storm.
    #[arg(long)]
    pub metrics_url: Option<String>,
    /// File the gateway's output is appended to.
    #[arg(long, default_value = "storm-gateway.log")]
    pub server_log: PathBuf,
    /// KEY=VALUE set in the environment of the restarted gateway only (repeatable), e.g.
    /// `GATEWAY__AUTH__LOGIN_CACHE_SIZE=0` to compare storms from the same starting point.
    #[arg(long)]
    pub restart_env: Vec<String>,
    /// Label for the summary (e.g. `cache` / `no-cache`).
    #[arg(long, default_value = "")]
    pub label: String,
    #[command(flatten)]
    pub processes: ProcessArgs,
    /// The gateway command line (after `--`).
    #[arg(last = true, required = true)]
    pub server: Vec<String>,
}

/// Worker -> parent, every 200 ms.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct Progress {
    /// Clients subscribed at least once / at least twice (again after a drop).
    pub first: u64,
    pub again: u64,
    pub attempts: u64,
    pub errors: Errors,
    /// When the last first / second subscription completed (ns since the epoch).
    pub last_first_ns: u64,
    pub last_again_ns: u64,
}

#[derive(Default)]
struct Tally {
    first: AtomicU64,
    again: AtomicU64,
    attempts: AtomicU64,
    last_first_ns: AtomicU64,
    last_again_ns: AtomicU64,
    errors: Mutex<Errors>,
}

impl Tally {
    fn snapshot(&self) -> Progress {
        Progress {
            first: self.first.load(Ordering::Relaxed),
            again: self.again.load(Ordering::Relaxed),
            attempts: self.attempts.load(Ordering::Relaxed),
            errors: self.errors.lock().expect("errors").clone(),
            last_first_ns: self.last_first_ns.load(Ordering::Relaxed),
            last_again_ns: self.last_again_ns.load(Ordering::Relaxed),
        }
    }
}

fn accounts(spec: &str) -> Result<Vec<(String, String)>, String> {
    let list: Vec<(String, String)> = spec
        .split(',')
        .filter(|a| !a.trim().is_empty())
        .map(|a| {
            a.trim()
                .split_once(':')
                .map(|(u, p)| (u.to_owned(), p.to_owned()))
                .ok_or_else(|| format!("--accounts: {a:?} is not user:password"))
        })
        .collect::<Result<_, _>>()?;
    if list.is_empty() {
        return Err("--accounts names no account".into());
    }
    Ok(list)
}

/// A failure's kind, with the STOMP refusals that matter here told apart.
fn kind(f: &Failure) -> &'static str {
    if f.kind == "stomp_error" {
        if f.detail.contains("login busy") {
            return "login_busy";
        }
        if f.detail.contains("login failed") {
            return "login_failed";
        }
    }
    if f.kind == "handshake" && f.detail.contains(" 503") {
        return "http_503";
    }
    f.kind
}

/// A cheap per-client pseudo-random jitter factor in [0.5, 1.5).
fn jitter(seed: &mut u64) -> f64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    0.5 + (*seed % 1000) as f64 / 1000.0
}

/// `base` doubled for each earlier failure in a row, at most `cap`.
fn backoff(base: Duration, cap: Duration, earlier_failures: u32) -> Duration {
    base.saturating_mul(1 << earlier_failures.min(16)).min(cap)
}

async fn client(
    target: Arc<StompTarget>,
    source: Option<std::net::IpAddr>,
    args: Arc<StormArgs>,
    gate: Arc<Semaphore>,
    tally: Arc<Tally>,
    mut seed: u64,
) {
    let mut subscribed = 0u32;
    let mut failures_in_a_row = 0u32;
    loop {
        let attempt = async {
            let _permit = gate.acquire().await.map_err(|e| Failure::new("gate", e))?;
            tally.attempts.fetch_add(1, Ordering::Relaxed);
            let mut c = StompConn::connect(&target, source, args.connect_timeout).await?;
            c.subscribe(&args.topic, "sub", args.connect_timeout)
                .await?;
            Ok::<_, Failure>(c)
        };
        match attempt.await {
            Ok(mut c) => {
                failures_in_a_row = 0;
                subscribed += 1;
                let (count, last) = if subscribed == 1 {
                    (&tally.first, &tally.last_first_ns)
                } else {
                    (&tally.again, &tally.last_again_ns)
                };
                if subscribed <= 2 {
                    count.fetch_add(1, Ordering::Relaxed);
                    last.fetch_max(now_ns(), Ordering::Relaxed);
                }
                while let Ok(ReadEnd::Open) = c.read_batch(|_| {}).await {}
                // Dropped: reconnect at once, give or take a little spread.
                let d = args.retry_delay.mul_f64(jitter(&mut seed) - 0.5);
                tokio::time::sleep(d).await;
            }
            Err(f) => {
                tally.errors.lock().expect("errors").add(kind(&f), 1);
                let d = backoff(args.retry_delay, args.max_retry_delay, failures_in_a_row);
                failures_in_a_row += 1;
                tokio::time::sleep(d.mul_f64(jitter(&mut seed))).await;
            }
        }
    }
}

fn plan(args: &StormArgs, server: &SocketAddr) -> Plan {
    let sources = if !spread::can_spread_sources(server) {
        0
    } else if args.sources > 0 {
        args.sources
    } else {
        spread::auto_sources(args.connections, spread::ephemeral_ports())
    };
    Plan {
        total: args.connections,
        processes: args.processes.count(args.connections),
        sources,
    }
}

pub async fn worker(args: StormArgs, k: usize) -> Result<(), String> {
    probe::raise_own_nofile();
    let accounts = accounts(&args.accounts)?;
    let mut targets = Vec::new();
    for (user, pass) in &accounts {
        let t = StompTarget::resolve(
            &args.url,
            Some(user.clone()),
            Some(pass.clone()),
            args.host.clone(),
            Some(4096),
        )
        .await?;
        targets.push(Arc::new(t));
    }
    let plan = plan(&args, &targets[0].server);
    let gate = Arc::new(Semaphore::new(
        args.concurrency.div_ceil(plan.processes).max(1),
    ));
    let tally = Arc::new(Tally::default());
    let args = Arc::new(args);
    for slot in plan.slots(k) {
        let target = Arc::clone(&targets[slot.global % targets.len()]);
        let seed = (slot.global as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        tokio::spawn(client(
            target,
            slot.source,
            Arc::clone(&args),
            Arc::clone(&gate),
            Arc::clone(&tally),
            seed,
        ));
    }
    let mut commands = worker::commands();
    loop {
        emit(&tally.snapshot());
        match tokio::time::timeout(Duration::from_millis(200), commands.recv()).await {
            Ok(Some(c)) if c == "close" => return Ok(()),
            Ok(None) => return Ok(()),
            _ => {}
        }
    }
}

fn spawn_gateway(args: &StormArgs, env: &[(String, String)]) -> Result<Child, String> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&args.server_log)
        .map_err(|e| format!("cannot open {}: {e}", args.server_log.display()))?;
    let err = log.try_clone().map_err(|e| e.to_string())?;
    Command::new(&args.server[0])
        .args(&args.server[1..])
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", args.server[0]))
}

async fn await_listening(server: SocketAddr, child: &mut Child) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("the gateway exited at start ({status})"));
        }
        if tokio::net::TcpStream::connect(server).await.is_ok() {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Err(format!(
        "the gateway did not listen on {server} within 30 s"
    ))
}

async fn stop_gateway(child: &mut Child) {
    if let Some(pid) = child.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .is_err()
    {
        let _ = child.kill().await;
    }
}

/// Sum of every worker's progress, from the latest report of each.
fn total(latest: &[Progress]) -> Progress {
    let mut t = Progress::default();
    for p in latest {
        t.first += p.first;
        t.again += p.again;
        t.attempts += p.attempts;
        t.errors.merge(&p.errors);
        t.last_first_ns = t.last_first_ns.max(p.last_first_ns);
        t.last_again_ns = t.last_again_ns.max(p.last_again_ns);
    }
    t
}

async fn wait_until(
    workers: &mut Workers<Progress>,
    latest: &mut [Progress],
    limit: Duration,
    done: impl Fn(&Progress) -> bool,
) -> Progress {
    let deadline = Instant::now() + limit;
    let mut shown = Instant::now();
    loop {
        let t = total(latest);
        if done(&t) || Instant::now() >= deadline {
            return t;
        }
        if shown.elapsed() >= Duration::from_secs(2) {
            eprintln!(
                "  subscribed {} (again {}), attempts {}, failures {}",
                t.first,
                t.again,
                t.attempts,
                t.errors.human()
            );
            shown = Instant::now();
        }
        match workers.next(deadline).await {
            Some((k, Heard::Report(p))) => latest[k] = p,
            Some((k, Heard::Exited)) => eprintln!("worker {k} exited"),
            None => {}
        }
    }
}

/// `gateway_auth_*` lines of a Prometheus scrape over plain HTTP.
fn scrape(url: &str) -> Vec<String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return vec![format!("(not an http:// URL: {url})")];
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let body = (|| -> std::io::Result<String> {
        let mut s = TcpStream::connect(authority)?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
        )?;
        let mut text = String::new();
        s.read_to_string(&mut text)?;
        Ok(text)
    })();
    match body {
        Ok(text) => text
            .lines()
            .filter(|l| l.starts_with("gateway_auth_") || l.contains("result=\"auth_busy\""))
            .map(str::to_owned)
            .collect(),
        Err(e) => vec![format!("(scrape of {url} failed: {e})")],
    }
}

fn cpu_of(pids: &[u32]) -> Duration {
    pids.iter().filter_map(|p| probe::cpu_time(*p)).sum()
}

fn secs(ns: u64, since_ns: u64) -> f64 {
    ns.saturating_sub(since_ns) as f64 / 1e9
}

pub async fn parent(args: StormArgs) -> Result<(), String> {
    accounts(&args.accounts)?;
    let restart_env = args
        .restart_env
        .iter()
        .map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .ok_or_else(|| format!("--restart-env: {kv:?} is not KEY=VALUE"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let target = StompTarget::resolve(&args.url, None, None, args.host.clone(), None).await?;
    let server = target.server;
    let n = args.connections as u64;

    let mut gateway = spawn_gateway(&args, &[])?;
    await_listening(server, &mut gateway).await?;
    let mut workers: Workers<Progress> =
        Workers::spawn(args.processes.count(args.connections)).map_err(|e| e.to_string())?;
    let pids = workers.pids();
    let mut latest = vec![Progress::default(); workers.len()];
    println!(
        "[{}] {} clients over {} processes, accounts {}, gateway {:?}",
        args.label,
        n,
        workers.len(),
        accounts(&args.accounts)?.len(),
        args.server
    );

    let t0 = now_ns();
    let cpu0 = gateway.id().and_then(probe::cpu_time).unwrap_or_default();
    let first = wait_until(&mut workers, &mut latest, args.limit, |t| t.first >= n).await;
    let cpu1 = gateway.id().and_then(probe::cpu_time).unwrap_or_default();
    println!(
        "first logins: {} of {} subscribed in {:.2} s, gateway CPU {:.2} s (failures {})",
        first.first,
        n,
        secs(first.last_first_ns, t0),
        (cpu1 - cpu0).as_secs_f64(),
        first.errors.human()
    );
    if first.first < n {
        workers.finish(Duration::from_secs(5)).await;
        stop_gateway(&mut gateway).await;
        return Err("not every client subscribed before the restart".into());
    }
    tokio::time::sleep(args.settle).await;

    // The restart.
    let errors_before = total(&latest).errors;
    let term_ns = now_ns();
    stop_gateway(&mut gateway).await;
    let down_ns = now_ns();
    let mut gateway = spawn_gateway(&args, &restart_env)?;
    let start_ns = now_ns();
    let start = Instant::now();
    let gen_cpu0 = cpu_of(&pids);
    await_listening(server, &mut gateway).await?;
    let listen_ns = now_ns();
    let storm = wait_until(&mut workers, &mut latest, args.limit, |t| t.again >= n).await;
    let wall = start.elapsed();
    let gw_cpu = gateway.id().and_then(probe::cpu_time).unwrap_or_default();
    let gen_cpu = cpu_of(&pids).saturating_sub(gen_cpu0);
    let mut errors = Errors::default();
    for (k, v) in &storm.errors.0 {
        let before = errors_before.0.get(k).copied().unwrap_or(0);
        errors.add(k, v - before);
    }
    let back = secs(storm.last_again_ns, start_ns);
    let all_back = storm.again >= n;
    println!(
        "storm: {} of {} clients subscribed again {:.2} s after the new gateway started ({:.2} s after SIGTERM; old one exited in {:.2} s, new one listening after {:.3} s)",
        storm.again,
        n,
        if all_back { back } else { wall.as_secs_f64() },
        secs(storm.last_again_ns.max(start_ns), term_ns),
        secs(down_ns, term_ns),
        secs(listen_ns, start_ns),
    );
    let span = wall.as_secs_f64().max(1e-3);
    println!(
        "CPU during the storm ({:.2} s): gateway {:.2} s ({:.0}% of one core), load generator {:.2} s ({:.0}%); attempts {}, failures {}",
        span,
        gw_cpu.as_secs_f64(),
        gw_cpu.as_secs_f64() * 100.0 / span,
        gen_cpu.as_secs_f64(),
        gen_cpu.as_secs_f64() * 100.0 / span,
        storm.attempts.saturating_sub(first.attempts),
        errors.human()
    );
    let scraped = args.metrics_url.as_deref().map(scrape).unwrap_or_default();
    for line in &scraped {
        println!("  {line}");
    }
    workers.tell_all("close").await;
    workers.finish(Duration::from_secs(10)).await;
    stop_gateway(&mut gateway).await;
    let summary = json!({
        "scenario": "stomp-storm",
        "label": args.label,
        "connections": n,
        "accounts": accounts(&args.accounts)?.len(),
        "all_back": all_back,
        "resubscribed": storm.again,
        "seconds_to_all_back": if all_back { Some(back) } else { None },
        "storm_wall_seconds": wall.as_secs_f64(),
        "gateway_cpu_seconds": gw_cpu.as_secs_f64(),
        "loadgen_cpu_seconds": gen_cpu.as_secs_f64(),
        "first_login_seconds": secs(first.last_first_ns, t0),
        "failures": errors,
        "metrics": scraped,
    });
    println!("{summary}");
    if !all_back {
        return Err(format!(
            "only {} of {n} clients were back within {:?}",
            storm.again, args.limit
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_parse_and_errors_name_the_bad_one() {
        assert_eq!(
            accounts("a:1, b:two:x").unwrap(),
            vec![("a".into(), "1".into()), ("b".into(), "two:x".into())]
        );
        assert!(accounts("nopass").unwrap_err().contains("nopass"));
        assert!(accounts(" , ").is_err());
    }

    #[test]
    fn refusals_are_told_apart() {
        let busy = Failure::new("stomp_error", "login busy The gateway is checking");
        assert_eq!(kind(&busy), "login_busy");
        let bad = Failure::new("stomp_error", "login failed Invalid login");
        assert_eq!(kind(&bad), "login_failed");
        let http = Failure::new("handshake", "HTTP/1.1 503 Service Unavailable");
        assert_eq!(kind(&http), "http_503");
        assert_eq!(kind(&Failure::new("tcp_connect", "refused")), "tcp_connect");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (base, cap) = (Duration::from_millis(250), Duration::from_secs(5));
        let got: Vec<_> = (0..7).map(|n| backoff(base, cap, n).as_millis()).collect();
        assert_eq!(got, [250, 500, 1000, 2000, 4000, 5000, 5000]);
        assert_eq!(backoff(base, cap, u32::MAX), cap);
    }

    #[test]
    fn jitter_stays_in_range() {
        let mut seed = 12345;
        for _ in 0..1000 {
            let j = jitter(&mut seed);
            assert!((0.5..1.5).contains(&j), "{j}");
        }
    }

    #[test]
    fn totals_add_up_and_keep_the_latest_times() {
        let mut a = Progress {
            first: 2,
            again: 1,
            last_again_ns: 5,
            ..Progress::default()
        };
        a.errors.add("login_busy", 3);
        let b = Progress {
            first: 3,
            again: 3,
            last_again_ns: 9,
            ..Progress::default()
        };
        let t = total(&[a, b]);
        assert_eq!((t.first, t.again, t.last_again_ns), (5, 4, 9));
        assert_eq!(t.errors.total(), 3);
    }
}

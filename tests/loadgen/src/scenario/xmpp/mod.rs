//! `xmpp`: N XMPP-over-WebSocket sessions log in (SASL PLAIN, bind, presence) at a paced
//! rate, the server's RSS is read once they all sit idle, then pairs exchange timed messages
//! (one in flight per pair). Reports login time, message round trip and server KiB per
//! session. Works against the gateway's xmpp bridge and Prosody's mod_websocket alike.
//!
//! One process: N sessions are N sockets here, well under the 20,000 open files.

mod session;
mod wire;

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::cli::{parse_duration, ConnectArgs};
use crate::probe;
use crate::stats::{kib_per_connection, Errors, Latency};
use session::Account;

#[derive(Args, Clone, Debug)]
pub struct XmppArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Sessions to log in (rounded down to an even number: they talk in pairs).
    #[arg(long, default_value_t = 100)]
    pub sessions: usize,
    /// XMPP domain (the `to` of `<open/>`).
    #[arg(long, default_value = "localhost")]
    pub domain: String,
    /// Accounts are PREFIX1, PREFIX2, ... (see --first-user).
    #[arg(long, default_value = "u")]
    pub user_prefix: String,
    #[arg(long, default_value_t = 1)]
    pub first_user: usize,
    /// One password for every account.
    #[arg(long, default_value = "pass")]
    pub password: String,
    /// Messages each pair exchanges (round trips).
    #[arg(long, default_value_t = 20)]
    pub messages: u32,
    /// Pause between one pair's round trips.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub interval: Duration,
    /// A login step or answer not back within this is an error.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Server PID whose RSS per idle logged-in session is reported.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Idle time after the last login before RSS is read.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Name for this run in the report (e.g. gateway, mod_websocket).
    #[arg(long, default_value = "target")]
    pub label: String,
}

pub async fn run(mut args: XmppArgs) -> Result<(), String> {
    probe::raise_own_nofile();
    if args.connect.subprotocol.is_none() {
        args.connect.subprotocol = Some("xmpp".into());
    }
    let sessions = args.sessions / 2 * 2;
    let target = Arc::new(args.connect.target(None).await?);
    let before = args.server_pid.and_then(|p| probe::memory(p).ok());

    // Logins, paced at --rate with at most --concurrency in flight.
    let gate = Arc::new(Semaphore::new(args.connect.concurrency.max(1)));
    let pause = Duration::from_secs_f64(1.0 / args.connect.rate.max(0.001));
    let mut logins = JoinSet::new();
    let ramp_started = Instant::now();
    for i in 0..sessions {
        let account = account(&args, i);
        let (target, gate, timeout) = (target.clone(), gate.clone(), args.timeout);
        let permit = gate.acquire_owned().await.map_err(|e| e.to_string())?;
        logins.spawn(async move {
            let r = session::login(&target, &account, timeout).await;
            drop(permit);
            (i, r)
        });
        tokio::time::sleep(pause).await;
    }
    let mut login_time = Latency::new();
    let mut errors = Errors::default();
    let mut live: Vec<Option<crate::ws::Ws>> = (0..sessions).map(|_| None).collect();
    while let Some(joined) = logins.join_next().await {
        match joined {
            Ok((i, Ok((ws, took)))) => {
                login_time.record(took);
                live[i] = Some(ws);
            }
            Ok((_, Err(f))) => {
                if errors.total() < 5 {
                    eprintln!("login failed: {}: {}", f.kind, f.detail);
                }
                errors.add(f.kind, 1);
            }
            Err(e) => {
                eprintln!("login task failed: {e}");
                errors.add("panic", 1);
            }
        }
    }
    let ramp_secs = ramp_started.elapsed().as_secs_f64();
    let logged_in = live.iter().filter(|s| s.is_some()).count();
    eprintln!("{logged_in}/{sessions} sessions logged in in {ramp_secs:.1} s");

    tokio::time::sleep(args.settle).await;
    let after = args.server_pid.and_then(|p| probe::memory(p).ok());
    let fds = args.server_pid.and_then(probe::open_fds);
    let kib = match (before, after) {
        (Some(b), Some(a)) => {
            kib_per_connection(b.rss_kib * 1024, a.rss_kib * 1024, logged_in as u64)
        }
        _ => None,
    };

    // Pairs (2k, 2k+1) where both logged in: the even one asks, the odd one answers.
    let mut talks = JoinSet::new();
    let talk_deadline =
        Instant::now() + (args.interval + args.timeout) * args.messages.max(1) + args.timeout;
    let pairs = sessions / 2;
    for k in 0..pairs {
        let (a, b) = (2 * k, 2 * k + 1);
        let (Some(mut wa), Some(mut wb)) = (live[a].take(), live[b].take()) else {
            continue;
        };
        let peer = account(&args, b).full_jid();
        let (count, interval, timeout) = (args.messages, args.interval, args.timeout);
        // Spread the pairs' first messages over one interval.
        let offset = interval.mul_f64(k as f64 / pairs.max(1) as f64);
        talks.spawn(async move {
            let answering = async {
                let r = session::answer(&mut wb, count, talk_deadline).await;
                (r, wb)
            };
            let asking = async {
                tokio::time::sleep(offset).await;
                let mut rtt = Latency::new();
                let r = session::ask(&mut wa, &peer, count, interval, timeout, &mut rtt).await;
                (r, rtt, wa)
            };
            let ((ra, wb), (rq, rtt, wa)) = tokio::join!(answering, asking);
            session::logout(wa, Duration::from_secs(2)).await;
            session::logout(wb, Duration::from_secs(2)).await;
            (rq.err().or(ra.err()), rtt)
        });
    }
    let mut rtt = Latency::new();
    while let Some(joined) = talks.join_next().await {
        if let Ok((failure, r)) = joined {
            rtt.merge(&r);
            if let Some(f) = failure {
                errors.add(f.kind, 1);
            }
        }
    }

    let login = login_time.summary();
    let round_trip = rtt.summary();
    println!(
        "xmpp [{}] {} sessions via {}",
        args.label, sessions, args.connect.url
    );
    println!("  logged in   {logged_in}/{sessions} in {ramp_secs:.1} s");
    println!("  login time  {}", login.human());
    println!("  round trip  {}", round_trip.human());
    if let (Some(b), Some(a)) = (before, after) {
        println!(
            "  server RSS  {} -> {} KiB ({} per session){}",
            b.rss_kib,
            a.rss_kib,
            kib.map_or("n/a".into(), |k| format!("{k:.2} KiB")),
            fds.map_or(String::new(), |f| format!(", {f} open fds"))
        );
    }
    if errors.total() > 0 {
        println!("  errors      {}", errors.human());
    }
    println!(
        "{}",
        json!({
            "scenario": "xmpp",
            "label": args.label,
            "url": args.connect.url,
            "sessions": sessions,
            "logged_in": logged_in,
            "ramp_secs": ramp_secs,
            "login": login,
            "round_trip": round_trip,
            "server_rss_before_kib": before.map(|m| m.rss_kib),
            "server_rss_after_kib": after.map(|m| m.rss_kib),
            "server_kib_per_session": kib,
            "server_fds": fds,
            "errors": errors.0,
        })
    );
    Ok(())
}

fn account(args: &XmppArgs, i: usize) -> Account {
    Account {
        user: format!("{}{}", args.user_prefix, args.first_user + i),
        password: args.password.clone(),
        domain: args.domain.clone(),
    }
}

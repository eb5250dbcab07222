//! `loadgen`: load generator for the gateway's benchmarks.
//!
//! ```text
//! loadgen idle --url ws://127.0.0.1:8080/echo --connections 19000 --processes 4 --server-pid PID
//! loadgen echo --url ws://127.0.0.1:8080/echo --connections 100 --duration 10s --size 100
//! loadgen stomp-fanout --url ws://127.0.0.1:8080/ws --subscribers 10000 --processes 2 --ramp
//! loadgen stomp-idle --url ws://127.0.0.1:8080/ws --connections 19000 --server-pid PID
//! loadgen stomp-slow --url ws://127.0.0.1:8080/ws --subscribers 1000 --slow-percent 1 --rate 500
//! loadgen xmpp --url ws://127.0.0.1:8080/ws --sessions 5000 --server-pid PID --label gateway
//! loadgen stomp-storm --connections 10000 --accounts a:pw,b:pw -- target/release/gateway --config gw.toml
//! ```
//!
//! Every scenario runs in worker processes (this binary again, with `--worker K`), because
//! one process may hold only 20,000 open files here. Human-readable lines go to stdout,
//! ending with one JSON summary line; progress goes to stderr.

mod cli;
mod probe;
mod ramp;
mod scenario;
mod spread;
mod stats;
mod stomp;
mod worker;
mod ws;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use scenario::{echo, idle, stomp as st, storm, xmpp};

#[derive(Parser, Debug)]
#[command(version, about = "Load generator for the WebSocket gateway")]
struct Cli {
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// Open many connections, echo once on each, hold them idle; report server RSS per connection.
    Idle(idle::IdleArgs),
    /// Closed-loop echo round trips; report msgs/s and latency percentiles.
    Echo(echo::EchoArgs),
    /// STOMP fan-out: N subscribers on one topic, one publisher at a fixed rate (or --ramp);
    /// deliveries/s, loss and latency. Works against any STOMP-over-WebSocket URL.
    StompFanout(st::fanout::FanoutArgs),
    /// N connected and subscribed STOMP sessions held idle; server RSS per session.
    StompIdle(st::idle::IdleArgs),
    /// Fan-out with a share of stalled subscribers (never read); healthy latency against a
    /// baseline, server RSS every second.
    StompSlow(st::slow::SlowArgs),
    /// XMPP over WebSocket: N sessions log in, pairs exchange timed messages; login time,
    /// round trip and server RSS per session.
    Xmpp(xmpp::XmppArgs),
    /// Reconnect storm: N STOMP clients with realm logins subscribed, the gateway (started
    /// by this command) restarted, time until all are subscribed again and CPU used.
    StompStorm(storm::StormArgs),
}

impl Scenario {
    fn worker_index(&self) -> Option<usize> {
        match self {
            Scenario::Idle(a) => a.processes.worker,
            Scenario::Echo(a) => a.processes.worker,
            Scenario::StompFanout(a) => a.stomp.processes.worker,
            Scenario::StompIdle(a) => a.stomp.processes.worker,
            Scenario::StompSlow(a) => a.stomp.processes.worker,
            Scenario::Xmpp(_) => None,
            Scenario::StompStorm(a) => a.processes.worker,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let worker = cli.scenario.worker_index();
    // Workers share the machine with the server: one thread each keeps them predictable.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build();
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match (cli.scenario, worker) {
            (Scenario::Idle(a), Some(k)) => idle::worker(a, k).await,
            (Scenario::Idle(a), None) => idle::parent(a).await,
            (Scenario::Echo(a), Some(k)) => echo::worker(a, k).await,
            (Scenario::Echo(a), None) => echo::parent(a).await,
            (Scenario::StompFanout(a), Some(k)) => st::run_worker(&a.stomp, a.spec(), k).await,
            (Scenario::StompFanout(a), None) => st::fanout::parent(a).await,
            (Scenario::StompIdle(a), Some(k)) => st::run_worker(&a.stomp, a.spec(), k).await,
            (Scenario::StompIdle(a), None) => st::idle::parent(a).await,
            (Scenario::StompSlow(a), Some(k)) => st::run_worker(&a.stomp, a.spec(), k).await,
            (Scenario::StompSlow(a), None) => st::slow::parent(a).await,
            (Scenario::Xmpp(a), _) => xmpp::run(a).await,
            (Scenario::StompStorm(a), Some(k)) => storm::worker(a, k).await,
            (Scenario::StompStorm(a), None) => storm::parent(a).await,
        }
    });
    // Connection tasks may still be parked; don't wait for them.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn parses_the_documented_commands() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "idle",
            "--url",
            "ws://127.0.0.1:8080/echo",
            "--connections",
            "19000",
            "--processes",
            "4",
            "--server-pid",
            "42",
            "--hold",
            "10s",
            "--subprotocol",
            "echo",
        ])
        .unwrap();
        match cli.scenario {
            Scenario::Idle(a) => {
                assert_eq!(a.connections, 19_000);
                assert_eq!(a.processes.count(a.connections), 4);
                assert_eq!(a.server_pid, Some(42));
                assert_eq!(a.connect.subprotocol.as_deref(), Some("echo"));
                assert_eq!(a.processes.worker, None);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "loadgen",
            "echo",
            "--connections",
            "100",
            "--duration",
            "10s",
            "--size",
            "100",
            "--pipeline",
            "1",
            "--worker",
            "0",
        ])
        .unwrap();
        assert_eq!(cli.scenario.worker_index(), Some(0));
        let cli = Cli::try_parse_from([
            "loadgen",
            "stomp-fanout",
            "--url",
            "ws://127.0.0.1:15674/ws",
            "--subscribers",
            "10000",
            "--processes",
            "2",
            "--rate",
            "50",
            "--duration",
            "10s",
            "--size",
            "100",
            "--login",
            "guest",
            "--passcode",
            "guest",
            "--host",
            "/",
            "--ramp",
        ])
        .unwrap();
        match cli.scenario {
            Scenario::StompFanout(a) => {
                assert_eq!((a.subscribers, a.rate, a.ramp), (10_000, 50.0, true));
                assert_eq!(a.stomp.login.as_deref(), Some("guest"));
                assert_eq!(a.stomp.processes.count(a.subscribers), 2);
            }
            other => panic!("{other:?}"),
        }
        // Several gateways: worker K subscribes through URL K mod N; their CPU is summed.
        let cli = Cli::try_parse_from([
            "loadgen",
            "stomp-fanout",
            "--url",
            "ws://127.0.0.1:8001/ws, ws://127.0.0.1:8002/ws",
            "--server-pid",
            "11,12",
            "--server-pid",
            "13",
        ])
        .unwrap();
        match cli.scenario {
            Scenario::StompFanout(a) => {
                assert_eq!(
                    a.stomp.urls(),
                    ["ws://127.0.0.1:8001/ws", "ws://127.0.0.1:8002/ws"]
                );
                assert_eq!(a.server_pid, [11, 12, 13]);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "loadgen",
            "stomp-slow",
            "--subscribers",
            "1000",
            "--slow-percent",
            "1",
            "--server-pid",
            "7",
        ])
        .unwrap();
        match cli.scenario {
            Scenario::StompSlow(a) => assert_eq!(a.spec().stalled, 10),
            other => panic!("{other:?}"),
        }
    }
}

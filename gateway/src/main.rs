//! `gateway`: one WebSocket port, subprotocol dispatch to pluggable protocol bridges.

mod admin;
mod admission;
mod auth;
mod background;
mod config;
mod error;
mod fallback;
mod forwarded;
mod handshake_rate;
mod http;
mod limits;
mod listener;
mod live;
mod nets;
mod origin;
mod proxy_protocol;
mod registry;
mod reload;
mod response;
mod run;
mod services;
mod sessions;
mod state;
mod static_files;
mod tls;
mod transport;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Many mostly-idle connections each hold a few small allocations; mimalloc keeps the
// per-connection resident memory lower than the system allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    version,
    about = "WebSocket gateway: STOMP, XMPP, TCP and more over one port"
)]
struct Cli {
    /// Configuration file (TOML). Without it the built-in default runs on 127.0.0.1:8080.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Validate a configuration file, print the effective configuration and exit.
    #[arg(long, value_name = "FILE", conflicts_with = "config")]
    check_config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Print an argon2id hash of PASSWORD for a realm file.
    HashPassword { password: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::HashPassword { password }) = cli.command {
        println!("{}", auth::hash_password(&password));
        return ExitCode::SUCCESS;
    }
    if let Some(path) = cli.check_config {
        return match run::check(&path) {
            Ok(effective) => {
                print!("{effective}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(log_spec(std::env::var("RUST_LOG").ok()))
                .unwrap_or_else(|_| log_spec(None).into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run::run(cli.config.as_deref())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The log filter: `RUST_LOG` (default `info`) with lapin's own logging off unless
/// `RUST_LOG` names it. lapin logs every lost broker connection and every refused declare
/// at ERROR level; the STOMP bridge logs those itself, with their context, at the level an
/// expected outage deserves (and a refusal is the client's ERROR frame, not ours).
fn log_spec(rust_log: Option<String>) -> String {
    let spec = rust_log
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "info".into());
    if spec.contains("lapin") {
        spec
    } else {
        format!("{spec},lapin=off")
    }
}

#[cfg(test)]
mod tests {
    use super::log_spec;

    #[test]
    fn lapin_is_quiet_unless_asked_for() {
        assert_eq!(log_spec(None), "info,lapin=off");
        assert_eq!(log_spec(Some(" ".into())), "info,lapin=off");
        assert_eq!(log_spec(Some("debug".into())), "debug,lapin=off");
        assert_eq!(
            log_spec(Some("info,lapin=debug".into())),
            "info,lapin=debug"
        );
        assert!(tracing_subscriber::EnvFilter::try_new(log_spec(Some("warn".into()))).is_ok());
    }
}

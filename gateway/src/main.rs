//! `gateway`: one WebSocket port, subprotocol dispatch to pluggable protocol bridges.

mod admin;
mod admission;
mod auth;
mod background;
mod config;
mod deflate;
mod error;
mod fallback;
mod forwarded;
mod handshake_rate;
mod http;
mod limits;
mod listener;
mod live;
mod logging;
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
    // The configuration first: it says how to log (start-up reads it again, as a reload
    // does). Until the logger is up, stderr is plain.
    let config = match config::load(cli.config.as_deref()) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let log = match logging::init(&config.log) {
        Ok(log) => log,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = log.format() == config::LogFormat::Json;
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
    match runtime.block_on(run::run(cli.config.as_deref(), log)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            // A JSON log stays all JSON; the text log's reader also gets the plain line.
            if !json {
                eprintln!("error: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

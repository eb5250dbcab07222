//! Arguments every scenario shares: where to connect and how, and how to spread the load
//! over worker processes and source addresses.

use std::time::Duration;

use clap::Args;

use crate::ramp::Pacing;
use crate::spread::{self, Plan};
use crate::ws::Target;

/// Parse `10s`, `500ms`, `2m`, `1h` or bare seconds (`10`, `0.5`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 10s, 500ms or 2m"))?;
    let secs = match unit.trim() {
        "" | "s" => n,
        "ms" => n / 1e3,
        "us" | "µs" => n / 1e6,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m or h)"
            ))
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("`{s}` is not a valid duration"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Where to connect and how fast to open connections.
#[derive(Args, Clone, Debug)]
pub struct ConnectArgs {
    /// WebSocket URL of the target (ws:// only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/echo")]
    pub url: String,
    /// Subprotocol to offer (Sec-WebSocket-Protocol); none when absent.
    #[arg(long)]
    pub subprotocol: Option<String>,
    /// New connections per second, over all workers.
    #[arg(long, default_value_t = 2000.0)]
    pub rate: f64,
    /// Handshakes in flight at once, over all workers (kept under the server's listen
    /// backlog, 128 for a tokio listener, so the backlog cannot overflow).
    #[arg(long, default_value_t = 100)]
    pub concurrency: usize,
    /// Give up on one connection's TCP connect + handshake + first echo after this.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Give up on opening connections after this long (the rest count as not_started).
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    pub ramp_limit: Duration,
    /// Loopback source addresses to spread over (127.0.0.2, .3, ...); 0 = as many as the
    /// ephemeral port range needs (none, i.e. no bind, below ~25k connections).
    #[arg(long, default_value_t = 0)]
    pub sources: usize,
    /// Client-side WebSocket read buffer in bytes (tungstenite's read_buffer_size).
    #[arg(long, default_value_t = 1024)]
    pub client_read_buffer: usize,
}

/// How many worker processes to use; `--worker` is set by the parent for its children.
#[derive(Args, Clone, Debug)]
pub struct ProcessArgs {
    /// Worker processes to spread connections over (each has its own open-file limit).
    /// Default: one per 15,000 connections.
    #[arg(long)]
    pub processes: Option<usize>,
    /// Internal: run as worker K of --processes.
    #[arg(long, hide = true)]
    pub worker: Option<usize>,
}

/// Connections one worker process is allowed by default (under the 20,000 open files).
pub const PER_PROCESS_DEFAULT: usize = 15_000;

impl ProcessArgs {
    pub fn count(&self, connections: usize) -> usize {
        self.processes
            .unwrap_or_else(|| connections.div_ceil(PER_PROCESS_DEFAULT))
            .max(1)
    }
}

impl ConnectArgs {
    pub fn plan(&self, total: usize, processes: usize, target: &Target) -> Plan {
        let sources = if !spread::can_spread_sources(&target.server) {
            0
        } else if self.sources > 0 {
            self.sources
        } else {
            spread::auto_sources(total, spread::ephemeral_ports())
        };
        Plan {
            total,
            processes,
            sources,
        }
    }

    /// This worker's share of the rate and concurrency.
    pub fn pacing(&self, processes: usize) -> Pacing {
        let p = processes.max(1);
        Pacing {
            rate: self.rate / p as f64,
            concurrency: self.concurrency.div_ceil(p).max(1),
            limit: self.ramp_limit,
        }
    }

    pub async fn target(&self, kernel_buffer: Option<u32>) -> Result<Target, String> {
        Target::resolve(
            &self.url,
            self.subprotocol.clone(),
            self.client_read_buffer,
            kernel_buffer,
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("ten").is_err());
        assert!(parse_duration("5 parsecs").is_err());
    }

    #[test]
    fn default_processes_keep_each_under_the_file_limit() {
        let p = ProcessArgs {
            processes: None,
            worker: None,
        };
        assert_eq!(p.count(100), 1);
        assert_eq!(p.count(19_000), 2);
        assert_eq!(p.count(60_000), 4);
        assert_eq!(p.count(0), 1);
        let fixed = ProcessArgs {
            processes: Some(4),
            worker: None,
        };
        assert_eq!(fixed.count(10), 4);
    }
}

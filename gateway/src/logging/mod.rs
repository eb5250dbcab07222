//! The gateway's log on stderr: text or JSON lines, a level filter that can be replaced
//! while running (`LogControl`), and the span each session's lines are written in.
//!
//! The format is fixed for the life of the process; only the level is reloadable.

mod filter;
mod json;
mod span;
#[cfg(test)]
mod tests;

use std::io::IsTerminal;
use std::sync::Mutex;

use tracing_subscriber::fmt::format::JsonFields;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Layered, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Layer, Registry};

use crate::config::{LogConfig, LogFormat};

pub use filter::check_level;
pub use span::session_span;

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("`{spec}`: {reason}")]
    Level { spec: String, reason: String },
    #[error("cannot install the logger: {0}")]
    Init(String),
    #[error("cannot change the log level: {0}")]
    Reload(#[from] reload::Error),
}

impl LogError {
    fn level(spec: &str, reason: impl Into<String>) -> Self {
        LogError::Level {
            spec: spec.to_string(),
            reason: reason.into(),
        }
    }
}

type Filter = reload::Layer<EnvFilter, Registry>;
type Output = Box<dyn Layer<Layered<Filter, Registry>> + Send + Sync>;
type Logger = Layered<Output, Layered<Filter, Registry>>;

/// Changes the level filter of the running process (a configuration reload calls
/// `set_level` with the new `log.level`).
pub struct LogControl {
    handle: reload::Handle<EnvFilter, Registry>,
    /// `RUST_LOG` as it was at start-up, when it was set and valid: it outranks the file.
    rust_log: Option<String>,
    format: LogFormat,
    /// The `log.level` in force, so a reload that leaves it alone changes (and says) nothing.
    level: Mutex<String>,
}

impl LogControl {
    /// Apply a new `log.level`, unless `RUST_LOG` is in force (then it is only noted).
    pub fn set_level(&self, spec: &str) -> Result<(), LogError> {
        check_level(spec)?;
        let mut level = self.level.lock().unwrap_or_else(|p| p.into_inner());
        if *level == spec {
            return Ok(());
        }
        if let Some(rust_log) = &self.rust_log {
            tracing::info!("log.level `{spec}` not applied: RUST_LOG=`{rust_log}` takes its place");
        } else {
            self.handle
                .reload(filter::build(&filter::log_spec(None, spec))?)?;
            tracing::info!("log level now `{spec}`");
        }
        *level = spec.to_string();
        Ok(())
    }

    pub fn format(&self) -> LogFormat {
        self.format
    }
}

/// Install the process's logger on stderr, as `config` and `RUST_LOG` say.
pub fn init(config: &LogConfig) -> Result<LogControl, LogError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    // Colour only for a person at a terminal: escape codes in journald or a file are noise.
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let (subscriber, control, ignored) =
        subscriber(config, rust_log.as_deref(), std::io::stderr, ansi)?;
    subscriber
        .try_init()
        .map_err(|e| LogError::Init(e.to_string()))?;
    span::enable_session_spans(config.session_fields());
    if let Some(reason) = ignored {
        tracing::warn!("RUST_LOG ignored, log.level in force: {reason}");
    }
    Ok(control)
}

/// The subscriber for `config`, its control, and why `rust_log` was ignored if it was.
fn subscriber<W>(
    config: &LogConfig,
    rust_log: Option<&str>,
    writer: W,
    ansi: bool,
) -> Result<(Logger, LogControl, Option<String>), LogError>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let configured = config.level.as_str();
    let rust_log = rust_log.filter(|s| !s.trim().is_empty());
    let (env_filter, rust_log, ignored) = match rust_log {
        Some(spec) => match filter::build(&filter::log_spec(Some(spec), configured)) {
            Ok(f) => (f, Some(spec.to_string()), None),
            Err(e) => (
                filter::build(&filter::log_spec(None, configured))?,
                None,
                Some(e.to_string()),
            ),
        },
        None => (
            filter::build(&filter::log_spec(None, configured))?,
            None,
            None,
        ),
    };
    let (filter, handle) = reload::Layer::new(env_filter);
    let output: Output = match config.format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .with_writer(writer)
            .with_ansi(ansi)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(json::JsonLines)
            .with_writer(writer)
            .with_ansi(false)
            .boxed(),
    };
    let subscriber = tracing_subscriber::registry().with(filter).with(output);
    let control = LogControl {
        handle,
        rust_log,
        format: config.format,
        level: Mutex::new(configured.to_string()),
    };
    Ok((subscriber, control, ignored))
}

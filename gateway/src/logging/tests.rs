use std::io;
use std::sync::{Arc, Mutex};

use bridge_api::testkit;
use serde_json::Value;
use tracing_subscriber::fmt::MakeWriter;

use super::*;
use crate::config::{LogConfig, LogFormat, LogLevel};

/// Everything the subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    fn lines(&self) -> Vec<String> {
        let bytes = self.0.lock().unwrap().clone();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

fn config(format: LogFormat, level: &str) -> LogConfig {
    LogConfig {
        format,
        level: LogLevel::try_from(level.to_string()).unwrap(),
        session_fields: None,
    }
}

fn with_logger(
    format: LogFormat,
    level: &str,
    rust_log: Option<&str>,
    body: impl FnOnce(&LogControl),
) -> Vec<String> {
    let out = Captured::default();
    let (subscriber, control, _) =
        subscriber(&config(format, level), rust_log, out.clone(), false).unwrap();
    tracing::subscriber::with_default(subscriber, || body(&control));
    out.lines()
}

fn session() -> bridge_api::SessionInfo {
    let mut info = testkit::info("chat");
    info.id = 42;
    info.subprotocol = Some("v12.stomp".into());
    info.transport = "websocket";
    info
}

fn parse(line: &str) -> serde_json::Map<String, Value> {
    match serde_json::from_str(line) {
        Ok(Value::Object(m)) => m,
        other => panic!("not a JSON object: {line} ({other:?})"),
    }
}

#[test]
fn json_lines_carry_the_session_fields_flattened() {
    super::span::enable_session_spans(true);
    let lines = with_logger(LogFormat::Json, "info", None, |_| {
        tracing::info!(target: "outside", "no session here");
        let span = session_span(&session());
        span.in_scope(|| {
            tracing::info!(frames = 3u64, ok = true, "inside \"quoted\"");
            // As a bridge does once a protocol login names the client.
            tracing::Span::current().record("principal", tracing::field::display("alice"));
            tracing::warn!(level = "shadowed", peer = "event wins", "after login");
        });
    });
    assert_eq!(lines.len(), 3, "{lines:?}");

    let outside = parse(&lines[0]);
    assert_eq!(outside["level"], "INFO");
    assert_eq!(outside["target"], "outside");
    assert_eq!(outside["message"], "no session here");
    assert!(outside["timestamp"].as_str().unwrap().ends_with('Z'));
    assert!(!outside.contains_key("session"));
    let keys: Vec<_> = outside.keys().collect();
    assert_eq!(keys.len(), 4, "{keys:?}");

    let inside = parse(&lines[1]);
    assert_eq!(inside["session"], 42);
    assert_eq!(inside["service"], "chat");
    assert_eq!(inside["peer"], "127.0.0.1:1");
    assert_eq!(inside["transport"], "websocket");
    assert_eq!(inside["subprotocol"], "v12.stomp");
    assert_eq!(inside["message"], "inside \"quoted\"");
    assert_eq!(inside["frames"], 3);
    assert_eq!(inside["ok"], true);
    assert!(!inside.contains_key("principal"), "anonymous: {inside:?}");
    assert!(lines[1].starts_with("{\"timestamp\":"), "{}", lines[1]);

    let after = parse(&lines[2]);
    assert_eq!(after["principal"], "alice");
    assert_eq!(after["level"], "WARN");
    assert_eq!(after["field.level"], "shadowed");
    assert_eq!(after["peer"], "event wins");
    assert_eq!(after["session"], 42);
}

#[test]
fn text_lines_show_the_session_span_in_front() {
    super::span::enable_session_spans(true);
    let lines = with_logger(LogFormat::Text, "info", None, |_| {
        let mut info = session();
        info.principal = Some(testkit::principal("bob", &[]));
        session_span(&info).in_scope(|| tracing::info!("hello"));
    });
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(
            "session{session=42 service=chat principal=bob peer=127.0.0.1:1 \
             transport=websocket subprotocol=v12.stomp}: gateway::logging::tests: hello"
        ),
        "{}",
        lines[0]
    );
    assert!(!lines[0].contains('\u{1b}'), "no colour: {}", lines[0]);
}

#[test]
fn set_level_replaces_the_filter_while_running() {
    let lines = with_logger(LogFormat::Text, "warn", None, |log| {
        tracing::info!("dropped at warn");
        log.set_level("debug").unwrap();
        tracing::debug!("kept at debug");
        let err = log.set_level("debg").unwrap_err().to_string();
        assert!(err.contains("`debg` is not a level"), "{err}");
        tracing::debug!("still debug after a refused level");
        log.set_level("warn,gateway::logging=info").unwrap();
        tracing::debug!("dropped again");
        tracing::info!("kept by the target rule");
    });
    let text = lines.join("\n");
    assert!(!text.contains("dropped"), "{text}");
    for kept in [
        "kept at debug",
        "still debug after a refused level",
        "kept by the target rule",
    ] {
        assert!(text.contains(kept), "{kept} missing: {text}");
    }
}

#[test]
fn rust_log_outranks_the_configured_level_and_its_reloads() {
    let lines = with_logger(LogFormat::Text, "warn", Some("debug"), |log| {
        tracing::debug!("debug from RUST_LOG");
        log.set_level("error").unwrap();
        tracing::warn!("warn still shown");
    });
    let text = lines.join("\n");
    assert!(text.contains("debug from RUST_LOG"), "{text}");
    assert!(text.contains("RUST_LOG=`debug` takes its place"), "{text}");
    assert!(text.contains("warn still shown"), "{text}");
}

#[test]
fn an_unusable_rust_log_falls_back_to_the_configured_level() {
    let out = Captured::default();
    let (subscriber, control, ignored) = subscriber(
        &config(LogFormat::Text, "warn"),
        Some("gateway=loud"),
        out.clone(),
        false,
    )
    .unwrap();
    assert!(ignored.unwrap().contains("gateway=loud"));
    assert!(control.rust_log.is_none());
    tracing::subscriber::with_default(subscriber, || {
        tracing::info!("below warn");
        tracing::warn!("at warn");
    });
    let text = out.lines().join("\n");
    assert!(
        !text.contains("below warn") && text.contains("at warn"),
        "{text}"
    );
}

#[test]
fn a_reload_that_keeps_the_level_changes_nothing() {
    let lines = with_logger(LogFormat::Text, "info", None, |log| {
        log.set_level("info").unwrap();
        log.set_level("debug").unwrap();
        log.set_level("debug").unwrap();
    });
    let now: Vec<_> = lines
        .iter()
        .filter(|l| l.contains("log level now"))
        .collect();
    assert_eq!(now.len(), 1, "{lines:?}");
    assert!(now[0].contains("`debug`"), "{now:?}");
}

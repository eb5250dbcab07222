//! `log.format = "json"`: one object per line. The fields of every span the event sits in
//! (the session's id, service, peer...) are flattened beside the event's own, so a log
//! shipper can filter on `session` or `service` without knowing about spans.

use std::fmt;

use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_log::NormalizeEvent;
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormattedFields};
use tracing_subscriber::registry::LookupSpan;

/// The keys every line starts with; a field of the same name goes under `field.<name>`.
const FIXED: [&str; 3] = ["timestamp", "level", "target"];

pub struct JsonLines;

impl<S> FormatEvent<S, JsonFields> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // Records forwarded from the `log` crate carry their real target in fields.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;

        let mut line = Line::default();
        line.put("timestamp", timestamp.into());
        line.put("level", meta.level().as_str().into());
        line.put("target", meta.target().into());
        line.put("message", Value::Null);
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let ext = span.extensions();
                let Some(fields) = ext.get::<FormattedFields<JsonFields>>() else {
                    continue;
                };
                if let Ok(map) = serde_json::from_str::<Map<String, Value>>(&fields.fields) {
                    for (k, v) in map {
                        line.field(k, v);
                    }
                }
            }
        }
        event.record(&mut Visitor(&mut line));
        line.fields.retain(|(k, v)| k != "message" || !v.is_null());

        // Insertion order: the fixed keys and the message first, so every line reads alike.
        writer.write_char('{')?;
        for (i, (k, v)) in line.fields.iter().enumerate() {
            if i > 0 {
                writer.write_char(',')?;
            }
            write!(writer, "{}:{}", Value::from(k.as_str()), v)?;
        }
        writer.write_str("}\n")
    }
}

/// Later fields replace earlier ones of the same name: an event's own field wins over its
/// span's, an inner span's over an outer one's.
#[derive(Default)]
struct Line {
    fields: Vec<(String, Value)>,
}

impl Line {
    fn put(&mut self, key: &str, value: Value) {
        match self.fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => self.fields.push((key.to_string(), value)),
        }
    }

    fn field(&mut self, key: String, value: Value) {
        if FIXED.contains(&key.as_str()) {
            self.put(&format!("field.{key}"), value);
        } else {
            self.put(&key, value);
        }
    }
}

struct Visitor<'a>(&'a mut Line);

impl Visit for Visitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.field(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.field(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.field(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.field(field.name().into(), value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.field(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.field(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name().starts_with("log.") {
            return; // a `log` record's metadata, already in level and target
        }
        self.0
            .field(field.name().into(), format!("{value:?}").into());
    }
}

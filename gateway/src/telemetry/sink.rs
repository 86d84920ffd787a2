//! The audit sink: a `tracing` layer that writes every event of the `portcullis::audit`
//! target as one JSON object per line, its fields as the object's members. It sits beside
//! the log layer, not behind the log filter, so `PORTCULLIS_LOG` cannot switch the audit
//! trail off, and the log never repeats it.
//!
//! The first member, `"stream":"portcullis::audit"`, tells audit lines from log lines where
//! both go to stderr. Then a field named `a.b` becomes member `b` of object `a`
//! (`outcome.code` → `"outcome":{"code":…}`); members keep the order the event declares
//! them in; a declared field the event leaves empty (an `Option` that is `None`) is `null`.

use std::fmt::Write as _;
use std::io::Write as _;

use serde_json::Value;
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer};

/// The `tracing` target of audit events.
pub const AUDIT_TARGET: &str = "portcullis::audit";

/// Writes audit events to `writer` (stderr in the gateway), one JSON object per line.
#[derive(Debug)]
pub struct AuditLayer<W> {
    writer: W,
}

impl<W> AuditLayer<W> {
    pub fn new(writer: W) -> Self {
        Self { writer }
    }
}

impl<S, W> Layer<S> for AuditLayer<W>
where
    S: Subscriber,
    W: for<'a> MakeWriter<'a> + 'static,
{
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        if event.metadata().target() != AUDIT_TARGET {
            return;
        }
        let mut line = json_object(event);
        line.push('\n');
        // One write per line, so lines from concurrent requests never interleave. A failed
        // write (stderr closed) has nowhere to be reported.
        let _ = self.writer.make_writer().write_all(line.as_bytes());
    }
}

/// The event's fields as one JSON object after the stream's name, in declaration order,
/// `a.b` nested under `a`.
fn json_object(event: &Event<'_>) -> String {
    let mut recorded = Recorded::default();
    event.record(&mut recorded);
    let mut out = format!("{{\"stream\":{}", Value::from(AUDIT_TARGET));
    let mut open_group: Option<&str> = None;
    for field in event.metadata().fields().iter() {
        let name = field.name();
        let value = recorded
            .0
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(&Value::Null, |(_, v)| v);
        let (group, key) = match name.split_once('.') {
            Some((group, key)) => (Some(group), key),
            None => (None, name),
        };
        if open_group.is_some() && open_group != group {
            out.push('}');
        }
        if let Some(g) = group
            && open_group != group
        {
            let _ = write!(out, ",{}:{{", Value::from(g));
        } else {
            out.push(',');
        }
        open_group = group;
        let _ = write!(out, "{}:{value}", Value::from(key));
    }
    if open_group.is_some() {
        out.push('}');
    }
    out.push('}');
    out
}

/// Fields whose text is JSON, written as the value it encodes.
const JSON_FIELDS: &[&str] = &["policy.policies", "arguments"];

/// The values an event recorded, by field name.
#[derive(Default)]
struct Recorded(Vec<(&'static str, Value)>);

impl Visit for Recorded {
    fn record_str(&mut self, field: &Field, value: &str) {
        // A list is handed over as its JSON text (tracing fields are scalars) and written as
        // the list itself.
        let value = if JSON_FIELDS.contains(&field.name()) {
            serde_json::from_str(value).unwrap_or_else(|_| Value::from(value))
        } else {
            Value::from(value)
        };
        self.0.push((field.name(), value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.push((field.name(), Value::from(value)));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .push((field.name(), Value::from(format!("{value:?}"))));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::tests::Buffer;
    use tracing_subscriber::layer::SubscriberExt;

    /// What the layer writes while `f` runs.
    fn written(f: impl FnOnce()) -> String {
        let out = Buffer::default();
        let layer = AuditLayer::new(out.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
        out.text()
    }

    #[test]
    fn fields_become_members_in_order_with_dotted_names_nested() {
        let none: Option<&str> = None;
        let text = written(|| {
            tracing::info!(target: AUDIT_TARGET, first = "a \"quoted\" value", missing = none,
                outcome.status = "error", outcome.code = -32001, last = 2.5);
        });
        assert_eq!(
            text,
            "{\"stream\":\"portcullis::audit\",\"first\":\"a \\\"quoted\\\" value\",\"missing\":null,\"outcome\":{\"status\":\"error\",\"code\":-32001},\"last\":2.5}\n"
        );
    }

    #[test]
    fn other_targets_are_not_written() {
        let text = written(|| {
            tracing::info!(target: "portcullis::targets", "target up");
            tracing::info!("anything else");
        });
        assert_eq!(text, "");
    }
}

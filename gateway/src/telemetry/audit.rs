//! The audit event: who called what, what was decided, how it ended. Never a secret: the
//! fields are identities, names, codes and timings, and arguments are not recorded.

use std::time::{Duration, SystemTime};

use serde::Serialize;

/// The header that carries a request's id: the client's own, or one the HTTP layer assigned
/// (`server::http`), echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id in `headers`, if one is there and is text.
pub fn request_id(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok())
}

/// What the gateway decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Allow,
    Deny,
}

/// How the request ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "status")]
pub enum Outcome {
    /// The target answered with a result (`is_error` = the tool reported a failure).
    Ok { is_error: bool },
    /// The gateway or the target failed; `code` is the JSON-RPC error code returned.
    Error { code: i32, message: String },
}

/// One audit record, written as a JSON line.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    #[serde(with = "time::serde::rfc3339")]
    pub time: time::OffsetDateTime,
    /// The `x-request-id` the response carried (the client's own, or one the gateway
    /// assigned), else the JSON-RPC id; `-` when neither exists.
    pub request_id: String,
    /// The HTTP path of the request (`/mcp`), when it came over HTTP.
    pub path: Option<String>,
    /// The authenticated caller (`user` via `agent`), or `anonymous` when inbound auth is off.
    pub caller: String,
    /// The MCP method (`tools/call`, `tools/list`, …).
    pub method: String,
    pub target: Option<String>,
    pub tool: Option<String>,
    pub decision: Decision,
    pub outcome: Outcome,
    /// Milliseconds from the request's arrival to the decision or answer, to the
    /// microsecond (`3.58`, not `3.5795179999999998`).
    pub latency_ms: f64,
}

impl AuditEvent {
    pub fn new(
        request_id: impl Into<String>,
        caller: impl Into<String>,
        method: impl Into<String>,
    ) -> Self {
        Self {
            time: SystemTime::now().into(),
            request_id: request_id.into(),
            path: None,
            caller: caller.into(),
            method: method.into(),
            target: None,
            tool: None,
            decision: Decision::Allow,
            outcome: Outcome::Ok { is_error: false },
            latency_ms: 0.0,
        }
    }

    pub fn finish(mut self, outcome: Outcome, latency: Duration) -> Self {
        self.outcome = outcome;
        // Rounded to whole microseconds first: one division of an integer gives the f64
        // nearest to the decimal, which prints short (3.58, not 3.5795179999999998).
        let micros = (latency.as_nanos() + 500) / 1000;
        self.latency_ms = micros as f64 / 1000.0;
        self
    }

    /// Write the event to the audit stream.
    pub fn emit(&self) {
        match serde_json::to_string(self) {
            Ok(line) => tracing::info!(target: "portcullis::audit", "{line}"),
            Err(e) => {
                tracing::error!(target: "portcullis::audit", "cannot serialize audit event: {e}")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serializes_as_one_json_object_with_the_documented_fields() {
        let mut e = AuditEvent::new("r1", "alice via cli", "tools/call");
        e.target = Some("demo".into());
        e.tool = Some("echo".into());
        let e = e.finish(
            Outcome::Error {
                code: -32001,
                message: "timed out".into(),
            },
            Duration::from_millis(5),
        );
        let v: serde_json::Value = serde_json::to_value(&e).unwrap();
        for key in [
            "time",
            "request_id",
            "path",
            "caller",
            "method",
            "target",
            "tool",
            "decision",
            "outcome",
            "latency_ms",
        ] {
            assert!(v.get(key).is_some(), "missing {key} in {v}");
        }
        assert_eq!(v["outcome"]["status"], "error");
        assert_eq!(v["decision"], "allow");
        assert_eq!(v["latency_ms"], 5.0);
    }

    #[test]
    fn latency_is_rounded_to_the_microsecond() {
        let e = AuditEvent::new("r", "c", "m").finish(
            Outcome::Ok { is_error: false },
            Duration::from_nanos(3_579_518),
        );
        assert_eq!(
            serde_json::to_string(&e.latency_ms).unwrap(),
            "3.58",
            "no binary noise in the JSON"
        );
    }
}

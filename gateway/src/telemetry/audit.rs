//! The audit event: who called what, what was decided, how it ended. Never a secret: the
//! fields are identities, names, codes and timings; a call's arguments only when its target
//! opts in (`audit_arguments = true`).
//!
//! An event is a `tracing` event of the `portcullis::audit` target with one field per
//! member, which the audit sink (`sink`) writes as one JSON object per line.

use std::time::{Duration, SystemTime};

use time::format_description::well_known::Rfc3339;

use super::sink::AUDIT_TARGET;

/// The header that carries a request's id: the client's own, or one the HTTP layer assigned
/// (`server::http`), echoed in the response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// The request id in `headers`, if one is there and is text.
pub fn request_id(headers: &http::HeaderMap) -> Option<&str> {
    headers.get(REQUEST_ID_HEADER).and_then(|v| v.to_str().ok())
}

/// What the gateway decided about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
}

impl Decision {
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

/// How the request ended: `outcome` in the audit line, `{"status":"ok","is_error":…}` or
/// `{"status":"error","code":…,"message":…}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The target answered with a result (`is_error` = the tool reported a failure).
    Ok { is_error: bool },
    /// The gateway or the target failed; `code` is the JSON-RPC error code returned.
    Error { code: i32, message: String },
}

/// The policies' part of an event: `"policy": {"mode": "log_only", "decision": "deny",
/// "policies": ["own-repos"]}`. In `log_only` mode a `deny` here was allowed (the event's own
/// `decision` says what happened).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyOutcome {
    pub mode: &'static str,
    pub decision: Decision,
    /// The determining policies' ids.
    pub policies: Vec<String>,
}

/// One audit record, written as a JSON line.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// When the request arrived.
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
    /// What the policies decided, when there are policies and the call reached them.
    pub policy: Option<PolicyOutcome>,
    /// The call's arguments as JSON text, only for a target with `audit_arguments = true`.
    pub arguments: Option<String>,
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
            policy: None,
            arguments: None,
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

    /// Write the event to the audit stream. The fields, in this order, are the members of
    /// the JSON line (documented in docs/configuration.md, "Audit events").
    pub fn emit(&self) {
        let time = self.time.format(&Rfc3339).unwrap_or_else(|_| "-".into());
        let time = time.as_str();
        let request_id = self.request_id.as_str();
        let path = self.path.as_deref();
        let caller = self.caller.as_str();
        let method = self.method.as_str();
        let target = self.target.as_deref();
        let tool = self.tool.as_deref();
        let decision = self.decision.as_str();
        let latency_ms = self.latency_ms;
        let arguments = self.arguments.as_deref();
        // One call site per shape, so each line has exactly its members.
        match (&self.outcome, &self.policy) {
            (Outcome::Ok { is_error }, None) => tracing::info!(target: AUDIT_TARGET,
                time, request_id, path, caller, method, target, tool, decision, arguments,
                outcome.status = "ok", outcome.is_error = *is_error, latency_ms),
            (Outcome::Error { code, message }, None) => tracing::info!(target: AUDIT_TARGET,
                time, request_id, path, caller, method, target, tool, decision, arguments,
                outcome.status = "error", outcome.code = *code,
                outcome.message = message.as_str(), latency_ms),
            (Outcome::Ok { is_error }, Some(p)) => {
                let policies = serde_json::to_string(&p.policies).unwrap_or_default();
                tracing::info!(target: AUDIT_TARGET,
                    time, request_id, path, caller, method, target, tool, decision, arguments,
                    policy.mode = p.mode, policy.decision = p.decision.as_str(),
                    policy.policies = policies.as_str(),
                    outcome.status = "ok", outcome.is_error = *is_error, latency_ms)
            }
            (Outcome::Error { code, message }, Some(p)) => {
                let policies = serde_json::to_string(&p.policies).unwrap_or_default();
                tracing::info!(target: AUDIT_TARGET,
                    time, request_id, path, caller, method, target, tool, decision, arguments,
                    policy.mode = p.mode, policy.decision = p.decision.as_str(),
                    policy.policies = policies.as_str(),
                    outcome.status = "error", outcome.code = *code,
                    outcome.message = message.as_str(), latency_ms)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::sink::AuditLayer;
    use crate::telemetry::tests::Buffer;
    use serde_json::Value;
    use tracing_subscriber::layer::SubscriberExt;

    /// The lines `event.emit()` writes to the audit sink.
    fn emitted(event: &AuditEvent) -> Vec<Value> {
        let out = Buffer::default();
        let layer = AuditLayer::new(out.clone());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
            event.emit()
        });
        out.text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    #[test]
    fn an_event_is_one_json_object_with_the_documented_members() {
        let mut e = AuditEvent::new("r1", "alice via cli", "tools/call");
        e.target = Some("demo".into());
        e.tool = Some("demo__echo".into());
        let e = e.finish(
            Outcome::Error {
                code: -32001,
                message: "timed out".into(),
            },
            Duration::from_millis(5),
        );
        let lines = emitted(&e);
        assert_eq!(lines.len(), 1, "{lines:?}");
        let v = &lines[0];
        let Value::Object(members) = v else {
            panic!("not an object: {v}")
        };
        let keys: Vec<&str> = members.keys().map(String::as_str).collect();
        let documented = vec![
            "stream",
            "time",
            "request_id",
            "path",
            "caller",
            "method",
            "target",
            "tool",
            "decision",
            "arguments",
            "outcome",
            "latency_ms",
        ];
        // serde_json keeps a parsed object's order (cedar-policy turns `preserve_order` on).
        assert_eq!(keys, documented);
        assert_eq!(v["stream"], "portcullis::audit");
        assert_eq!(v["path"], Value::Null, "an absent member is null");
        assert_eq!(v["request_id"], "r1");
        assert_eq!(v["target"], "demo");
        assert_eq!(v["decision"], "allow");
        assert_eq!(
            v["outcome"],
            serde_json::json!({"status": "error", "code": -32001, "message": "timed out"})
        );
        assert_eq!(v["latency_ms"], 5.0);
        let time = v["time"].as_str().unwrap();
        assert!(
            time::OffsetDateTime::parse(time, &Rfc3339).is_ok(),
            "RFC 3339: {time}"
        );
    }

    #[test]
    fn a_policy_decision_is_recorded_with_its_mode_and_policies_and_no_arguments() {
        let mut e = AuditEvent::new("r", "bob via ci", "tools/call");
        e.policy = Some(PolicyOutcome {
            mode: "log_only",
            decision: Decision::Deny,
            policies: vec!["own-repos".into(), "ci, read only".into()],
        });
        let v = &emitted(&e)[0];
        assert_eq!(v["decision"], "allow", "shadow mode allowed it");
        assert_eq!(
            v["policy"],
            serde_json::json!({"mode": "log_only", "decision": "deny", "policies": ["own-repos", "ci, read only"]})
        );
        assert_eq!(
            v["arguments"],
            Value::Null,
            "recorded only if the target opts in"
        );
        e.arguments = Some(r#"{"repo":"acme/web"}"#.into());
        let v = &emitted(&e)[0];
        assert_eq!(v["arguments"], serde_json::json!({"repo": "acme/web"}));
    }

    #[test]
    fn a_successful_call_has_only_the_ok_outcome_members() {
        let e = AuditEvent::new("r", "c", "tools/call")
            .finish(Outcome::Ok { is_error: true }, Duration::ZERO);
        let v = &emitted(&e)[0];
        assert_eq!(
            v["outcome"],
            serde_json::json!({"status": "ok", "is_error": true})
        );
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

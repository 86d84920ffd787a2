//! Telemetry: process logs (`tracing`, filtered by `PORTCULLIS_LOG`) and the audit stream.
//!
//! Every decision the gateway makes about a call is one [`AuditEvent`]: a `tracing` event of
//! the `portcullis::audit` target that the audit sink ([`AuditLayer`]) writes as one JSON
//! object per line. The sink is not behind the log filter: no `PORTCULLIS_LOG` value turns
//! the audit off, and the log does not repeat it. Later subsystems (inbound auth, policy,
//! outbound credentials) report through this type rather than logging on their own.
//!
//! The gateway says everything about its upstreams itself, once and in plain words
//! (`targets::mcp::status`). The MCP library's own lines about the same events — an ERROR per
//! failed reconnect, a WARN with a debug dump per error answered — are duplicates without the
//! target's name, so the default filter leaves them out (see [`DEFAULT_FILTER`]); a filter
//! set in `PORTCULLIS_LOG` shows everything it selects.

mod audit;
mod sink;

pub use audit::{AuditEvent, Decision, Outcome, PolicyOutcome, REQUEST_ID_HEADER, request_id};
pub use sink::{AUDIT_TARGET, AuditLayer};

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterExt, Targets, filter_fn};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Filter, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// Environment variable holding the log filter, e.g. `info,portcullis=debug`.
pub const LOG_ENV: &str = "PORTCULLIS_LOG";

/// The filter when `PORTCULLIS_LOG` is not set. rmcp's client-side transport logs (worker,
/// stdio pipes, HTTP client, SSE) repeat, without a target name, failures the gateway reports
/// itself; its server side keeps WARN (rejected Host/Origin headers are worth seeing).
pub const DEFAULT_FILTER: &str = "info,rmcp=warn,rmcp::transport::worker=off,\
rmcp::transport::async_rw=off,rmcp::transport::child_process=off,\
rmcp::transport::streamable_http_client=off,rmcp::transport::common=off";

/// How log lines look.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogFormat {
    /// One JSON object per line (`PORTCULLIS_LOG_FORMAT=json`), else text.
    pub json: bool,
    /// ANSI colours (text only).
    pub ansi: bool,
}

/// Install the global subscriber: logs on stderr as human-readable lines, or JSON lines when
/// `PORTCULLIS_LOG_FORMAT=json`, filtered by `PORTCULLIS_LOG`; and the audit, always, on
/// stderr. Safe to call twice (the second call is a no-op).
pub fn init_logging() {
    let format = LogFormat {
        json: std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|v| v == "json"),
        // Colours only for a person at a terminal who has not asked for none (no-color.org).
        ansi: std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
    };
    let filter = EnvFilter::try_from_env(LOG_ENV).ok();
    let _ = subscriber(format, filter, std::io::stderr, std::io::stderr).try_init();
}

/// The gateway's subscriber: logs to `logs`, filtered by `filter` (what `PORTCULLIS_LOG`
/// sets; `None` for [`DEFAULT_FILTER`]), and audit events to `audit`, whatever the filter.
/// [`init_logging`] installs it; tests give it their own writers.
pub fn subscriber<L, A>(
    format: LogFormat,
    filter: Option<EnvFilter>,
    logs: L,
    audit: A,
) -> impl Subscriber + Send + Sync + 'static
where
    L: for<'a> MakeWriter<'a> + Send + Sync + 'static,
    A: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(logs)
        .with_ansi(format.ansi && !format.json)
        .with_target(true);
    let fmt = if format.json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    tracing_subscriber::registry()
        .with(fmt.with_filter(log_filter(filter)))
        .with(
            AuditLayer::new(audit)
                .with_filter(Targets::new().with_target(AUDIT_TARGET, Level::INFO)),
        )
}

/// The filter `PORTCULLIS_LOG` sets, as it is; else [`DEFAULT_FILTER`] without rmcp's
/// duplicate "response error" lines. Audit events are never logged: the audit sink has them.
fn log_filter<S>(from_env: Option<EnvFilter>) -> impl Filter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let hide_duplicates = from_env.is_none();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    filter.and(filter_fn(move |m| {
        m.target() != AUDIT_TARGET && !(hide_duplicates && is_duplicate_response_error(m))
    }))
}

/// rmcp's `WARN rmcp::service: response error` (fields `id`, `error`): logged for every
/// error a handler returns, as a debug dump. Errors the gateway answers to its clients are
/// already recorded (the audit line of a tool call; the target's state-change line), and
/// errors it answers to upstreams are logged at debug where they arise.
fn is_duplicate_response_error(m: &Metadata<'_>) -> bool {
    m.target() == "rmcp::service"
        && *m.level() == Level::WARN
        && m.fields().field("error").is_some()
        && m.fields().field("id").is_some()
}

/// What `f` logs through a subscriber whose one layer is filtered by `filter`, as text.
#[cfg(test)]
pub(crate) fn captured(
    filter: impl Filter<tracing_subscriber::Registry> + Send + Sync + 'static,
    f: impl FnOnce(),
) -> String {
    let out = tests::Buffer::default();
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(out.clone())
        .with_filter(filter);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    out.text()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::Arc;

    /// Bytes written by the code under test.
    #[derive(Clone, Default)]
    pub(crate) struct Buffer(Arc<parking_lot::Mutex<Vec<u8>>>);

    impl Buffer {
        pub(crate) fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock()).into_owned()
        }
    }

    impl std::io::Write for Buffer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Buffer {
        type Writer = Buffer;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// The gateway's subscriber with `PORTCULLIS_LOG` = `filter`: (log text, audit text).
    fn gateway_output(filter: &str, json: bool, f: impl FnOnce()) -> (String, String) {
        let (logs, audit) = (Buffer::default(), Buffer::default());
        let format = LogFormat { json, ansi: false };
        let sub = subscriber(
            format,
            Some(EnvFilter::new(filter)),
            logs.clone(),
            audit.clone(),
        );
        tracing::subscriber::with_default(sub, f);
        (logs.text(), audit.text())
    }

    fn an_audit_event() -> AuditEvent {
        AuditEvent::new("req-7", "alice via cli", "tools/call").finish(
            Outcome::Error {
                code: -32001,
                message: "target `demo` did not answer within 2 s".into(),
            },
            std::time::Duration::from_millis(2),
        )
    }

    #[test]
    fn no_log_filter_silences_the_audit_and_the_log_never_repeats_it() {
        for (filter, json) in [
            ("warn", false),
            ("error", true),
            ("off", false),
            ("debug", true),
        ] {
            let (logs, audit) = gateway_output(filter, json, || {
                tracing::info!(target: "portcullis::targets", "target `demo` is up");
                an_audit_event().emit();
            });
            let lines: Vec<&str> = audit.lines().collect();
            assert_eq!(lines.len(), 1, "PORTCULLIS_LOG={filter}: {audit:?}");
            let v: serde_json::Value = serde_json::from_str(lines[0])
                .unwrap_or_else(|e| panic!("not one JSON object ({e}): {}", lines[0]));
            assert_eq!(v["request_id"], "req-7");
            assert_eq!(v["outcome"]["code"], -32001);
            assert!(!logs.contains("req-7"), "PORTCULLIS_LOG={filter}: {logs:?}");
            assert_eq!(
                logs.contains("is up"),
                filter == "debug",
                "the log filter still applies to logs: {filter}"
            );
        }
    }

    /// What `log_filter(from_env)` lets through of rmcp's duplicate line and of another
    /// rmcp WARN.
    fn logged(from_env: Option<EnvFilter>) -> String {
        captured(log_filter(from_env), || {
            tracing::warn!(target: "rmcp::service", id = 1, error = "boom", "response error");
            tracing::warn!(target: "rmcp::service", "rejected a request with a foreign Host");
        })
    }

    #[test]
    fn the_default_filter_hides_rmcps_duplicate_response_errors() {
        let text = logged(None);
        assert!(!text.contains("response error"), "{text:?}");
        assert!(text.contains("foreign Host"), "{text:?}");
    }

    #[test]
    fn a_filter_set_by_the_operator_shows_everything_it_selects() {
        let text = logged(Some(EnvFilter::new("debug")));
        assert!(text.contains("response error"), "{text:?}");
    }
}

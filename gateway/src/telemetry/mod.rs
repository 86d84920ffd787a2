//! Telemetry: process logs (`tracing`, filtered by `PORTCULLIS_LOG`) and the audit stream.
//!
//! Every decision the gateway makes about a call is one [`AuditEvent`], written as one JSON
//! line under the `portcullis::audit` tracing target. Later subsystems (inbound auth,
//! policy, outbound credentials) report through this type rather than logging on their own.
//!
//! The gateway says everything about its upstreams itself, once and in plain words
//! (`targets::mcp::status`). The MCP library's own lines about the same events — an ERROR per
//! failed reconnect, a WARN with a debug dump per error answered — are duplicates without the
//! target's name, so the default filter leaves them out (see [`DEFAULT_FILTER`]); a filter
//! set in `PORTCULLIS_LOG` shows everything it selects.

mod audit;

pub use audit::{AuditEvent, Decision, Outcome, REQUEST_ID_HEADER, request_id};

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::filter::{FilterExt, filter_fn};
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

/// Install the global subscriber: human-readable lines on stderr, or JSON lines when
/// `PORTCULLIS_LOG_FORMAT=json`. Safe to call twice (the second call is a no-op).
pub fn init_logging() {
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal who has not asked for none (no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .with_target(true);
    let fmt = if json {
        fmt.json().flatten_event(true).boxed()
    } else {
        fmt.boxed()
    };
    let _ = tracing_subscriber::registry()
        .with(fmt.with_filter(log_filter(EnvFilter::try_from_env(LOG_ENV).ok())))
        .try_init();
}

/// The filter `PORTCULLIS_LOG` sets, as it is; else [`DEFAULT_FILTER`] without rmcp's
/// duplicate "response error" lines.
fn log_filter<S>(from_env: Option<EnvFilter>) -> impl Filter<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let hide_duplicates = from_env.is_none();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(DEFAULT_FILTER));
    filter.and(filter_fn(move |m| {
        !(hide_duplicates && is_duplicate_response_error(m))
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
    use std::sync::{Arc, Mutex};

    struct Sink(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    let out = Arc::new(Mutex::new(Vec::<u8>::new()));
    let sink = out.clone();
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(false)
        .with_writer(move || Sink(sink.clone()))
        .with_filter(filter);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), f);
    let bytes = out.lock().map(|b| b.clone()).unwrap_or_default();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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

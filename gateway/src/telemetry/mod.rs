//! Telemetry: process logs (`tracing`, filtered by `PORTCULLIS_LOG`) and the audit stream.
//!
//! Every decision the gateway makes about a call is one [`AuditEvent`], written as one JSON
//! line under the `portcullis::audit` tracing target. Later subsystems (inbound auth,
//! policy, outbound credentials) report through this type rather than logging on their own.
//!
//! The gateway says everything about its upstreams itself, once and in plain words
//! (`targets::mcp::status`). The MCP library's own lines about the same events — an ERROR per
//! failed reconnect, a WARN with a debug dump per error answered — are duplicates without the
//! target's name, so the default filter leaves them out (see [`DEFAULT_FILTER`]).

mod audit;

pub use audit::{AuditEvent, Decision, Outcome};

use tracing::{Level, Metadata};
use tracing_subscriber::layer::SubscriberExt;
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
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
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
        .with(
            fmt.with_filter(filter)
                .with_filter(tracing_subscriber::filter::filter_fn(|m| {
                    !is_duplicate_response_error(m)
                })),
        )
        .try_init();
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

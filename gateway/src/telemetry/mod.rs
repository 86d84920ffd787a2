//! Telemetry: process logs (`tracing`, filtered by `PORTCULLIS_LOG`) and the audit stream.
//!
//! Every decision the gateway makes about a call is one [`AuditEvent`], written as one JSON
//! line under the `portcullis::audit` tracing target. Later subsystems (inbound auth,
//! policy, outbound credentials) report through this type rather than logging on their own.

mod audit;

pub use audit::{AuditEvent, Decision, Outcome};

use tracing_subscriber::EnvFilter;

/// Environment variable holding the log filter, e.g. `info,portcullis=debug`.
pub const LOG_ENV: &str = "PORTCULLIS_LOG";

/// Install the global subscriber: human-readable lines on stderr, or JSON lines when
/// `PORTCULLIS_LOG_FORMAT=json`. Safe to call twice (the second call is a no-op).
pub fn init_logging() {
    let filter =
        EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn"));
    let json = std::env::var("PORTCULLIS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(true);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}

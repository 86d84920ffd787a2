//! How a target's failures are put into words: `WHAT: CAUSE (FIX)`, with what the
//! configuration knows (the URL without secrets, the command, the registration file, the
//! setting to check) filled in around the [`Cause`] the classifier found.

use super::session::Session;
use crate::cause::{Cause, Registration};
use crate::config::McpTransport;
use crate::config::outbound::AuthSpec;

/// Which step of connecting failed, and why.
pub(super) enum OpenFailure {
    /// The stdio child could not be started.
    Start(Cause),
    /// No MCP session: connection, TLS, HTTP status, handshake.
    Handshake(Cause),
    /// A session, but `tools/list` (or prompts, resources) failed.
    Listing(Cause),
}

impl Session {
    /// The registration file as users know it (`targets/NAME.toml`).
    pub(super) fn file(&self) -> String {
        match self.spec.file.file_name() {
            Some(f) => format!("targets/{}", f.to_string_lossy()),
            None => self.spec.file.display().to_string(),
        }
    }

    /// The setting that names the upstream.
    pub(super) fn key(&self) -> &'static str {
        match self.transport {
            McpTransport::Http { .. } => "mcp.url",
            McpTransport::Stdio { .. } => "mcp.command",
        }
    }

    /// The upstream as messages name it: its URL without credentials or query, or its command.
    pub(super) fn upstream(&self) -> String {
        match &self.transport {
            McpTransport::Http { url } => crate::cause::shown_url(url),
            McpTransport::Stdio { command, .. } => format!("`{}`", command.display()),
        }
    }

    /// `WHAT: CAUSE (FIX)`, with what the configuration knows filled in.
    pub(super) fn explain(&self, what: &str, cause: Cause) -> String {
        let cause = match (cause, &self.transport) {
            (Cause::Dns { host: None }, McpTransport::Http { url }) => Cause::Dns {
                host: url.host_str().map(str::to_string),
            },
            (c, _) => c,
        };
        let at = Registration {
            file: &self.file(),
            key: self.key(),
            has_auth: !matches!(self.spec.auth, AuthSpec::None),
        };
        match cause.fix(at) {
            Some(fix) => format!("{what}: {cause} ({fix})"),
            None => format!("{what}: {cause}"),
        }
    }

    /// Why a connection attempt failed, as callers, `/readyz` and the log read it.
    pub(super) fn connect_problem(&self, failure: OpenFailure) -> (String, Cause) {
        let upstream = self.upstream();
        let (what, cause) = match failure {
            OpenFailure::Start(c) => (format!("cannot start {upstream}"), c),
            OpenFailure::Handshake(c) => match (&self.transport, &c) {
                (McpTransport::Stdio { .. }, _) => {
                    (format!("{upstream} did not complete the MCP handshake"), c)
                }
                (
                    _,
                    Cause::ConnectionRefused
                    | Cause::Dns { .. }
                    | Cause::Tls { .. }
                    | Cause::Reset
                    | Cause::TimedOut { after: None },
                ) => (format!("cannot connect to {upstream}"), c),
                _ => (format!("cannot open an MCP session at {upstream}"), c),
            },
            OpenFailure::Listing(c) => (
                format!("connected to {upstream}, but listing its tools failed"),
                c,
            ),
        };
        let cause = match cause {
            Cause::TimedOut { after: None } => Cause::TimedOut {
                after: Some(self.spec.connect_timeout),
            },
            c => c,
        };
        (self.explain(&what, cause.clone()), cause)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn shown_urls_carry_no_secret() {
        let url = url::Url::parse("https://user:pw@tools.example:8443/mcp?api_key=K#frag").unwrap();
        assert_eq!(
            crate::cause::shown_url(&url),
            "https://tools.example:8443/mcp"
        );
    }
}

//! Why an upstream, a token endpoint or a provider failed, in the words of the person who reads it.
//!
//! rmcp, reqwest, hyper and the OS each wrap the real cause of a failure in their own error
//! type, and their `Display` texts name Rust types ("Transport [rmcp::transport::…] error:
//! Client error: error sending request"). [`classify`] walks the whole chain — following
//! `source()`, and the wrapped errors rmcp keeps in fields `source()` does not expose — and
//! returns the one [`Cause`] that says what actually happened: "connection refused", "DNS
//! lookup failed", "HTTP 401 from the upstream". Every message about an upstream (tool
//! results, JSON-RPC errors, `/readyz`, `portcullis check`, logs) is built from a `Cause`.

use std::error::Error;
use std::fmt;
use std::time::Duration;

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::DynamicTransportError;
use rmcp::transport::streamable_http_client::StreamableHttpError;

/// What went wrong with an upstream, classified. `Display` is the plain-words cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// Nothing listens on the upstream's port.
    ConnectionRefused,
    /// The upstream's host name does not resolve (filled in by the caller when known).
    Dns { host: Option<String> },
    /// The TLS handshake failed; `detail` is what the TLS library said, when it is plain.
    Tls { detail: Option<String> },
    /// No answer in time (`after` when the limit is known).
    TimedOut { after: Option<Duration> },
    /// The upstream closed the connection (or a stdio child closed its stdout).
    Closed,
    /// The upstream reset the connection.
    Reset,
    /// The upstream answered with an HTTP error status.
    Http { status: u16 },
    /// The upstream answered, but not with MCP (an HTML page, a JSON API, …).
    NotMcp { content_type: Option<String> },
    /// The upstream sent something that is not valid MCP.
    Malformed,
    /// The upstream forgot the session (HTTP 404 on a session request).
    SessionExpired,
    /// A stdio command that does not exist.
    CommandNotFound,
    /// A stdio command the gateway may not run.
    PermissionDenied,
    /// A stdio child exited; `status` as the OS reported it.
    Exited { status: Option<ExitStatus> },
    /// The upstream answered with a JSON-RPC error of its own.
    Refused { message: String },
    /// Already plain words (a credential failure, a limit), passed through.
    Plain(String),
}

/// How a stdio child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

impl From<std::process::ExitStatus> for ExitStatus {
    fn from(s: std::process::ExitStatus) -> Self {
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            if let Some(sig) = s.signal() {
                return Self::Signal(sig);
            }
        }
        Self::Code(s.code().unwrap_or(-1))
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::ConnectionRefused => f.write_str("connection refused"),
            Self::Dns { host: Some(h) } => write!(f, "DNS lookup failed for `{h}`"),
            Self::Dns { host: None } => f.write_str("DNS lookup failed"),
            Self::Tls { detail: Some(d) } => write!(f, "TLS handshake failed ({d})"),
            Self::Tls { detail: None } => f.write_str("TLS handshake failed"),
            Self::TimedOut { after: Some(d) } => write!(f, "timed out after {}", duration(*d)),
            Self::TimedOut { after: None } => f.write_str("timed out"),
            Self::Closed => f.write_str("the upstream closed the connection"),
            Self::Reset => f.write_str("the upstream reset the connection"),
            Self::Http { status } => {
                match http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                {
                    Some(r) => write!(f, "HTTP {status} {r} from the upstream"),
                    None => write!(f, "HTTP {status} from the upstream"),
                }
            }
            Self::NotMcp {
                content_type: Some(t),
            } => write!(f, "the upstream answered with `{t}`, not MCP"),
            Self::NotMcp { content_type: None } => {
                f.write_str("the upstream answered with something that is not MCP")
            }
            Self::Malformed => f.write_str("the upstream sent a message that is not valid MCP"),
            Self::SessionExpired => f.write_str("the upstream no longer knows the session"),
            Self::CommandNotFound => f.write_str("command not found"),
            Self::PermissionDenied => f.write_str("permission denied"),
            Self::Exited { status: None } => f.write_str("the process exited"),
            Self::Exited {
                status: Some(ExitStatus::Code(c)),
            } => write!(f, "the process exited with status {c}"),
            Self::Exited {
                status: Some(ExitStatus::Signal(s)),
            } => write!(f, "the process was killed by signal {s}"),
            Self::Refused { message } => {
                write!(f, "the upstream answered with an error: {message}")
            }
            Self::Plain(s) => f.write_str(s),
        }
    }
}

/// What a fix can point at in a target's registration.
#[derive(Debug, Clone, Copy)]
pub struct Registration<'a> {
    /// The registration file as users know it (`targets/NAME.toml`).
    pub file: &'a str,
    /// The setting that names the upstream (`mcp.url`, `mcp.command`).
    pub key: &'a str,
    /// Whether it has an `[auth]` section (a mode other than `none`).
    pub has_auth: bool,
}

impl Cause {
    /// What the operator can do about it, if there is one obvious thing.
    pub fn fix(&self, at: Registration<'_>) -> Option<String> {
        let Registration { file, key, .. } = at;
        Some(match self {
            Self::ConnectionRefused => {
                format!("is the upstream running? check `{key}` in {file}")
            }
            Self::Dns { .. } => format!("check the host name in `{key}` in {file}"),
            Self::Tls { .. } => format!(
                "check that `{key}` in {file} uses the scheme the upstream serves (http or https) and that its certificate is trusted"
            ),
            Self::TimedOut { .. } => format!(
                "is the upstream reachable and healthy? `connect_timeout` in {file} sets the limit"
            ),
            Self::Http { status: 401 | 403 } if at.has_auth => {
                format!("check the credential in the `[auth]` section of {file}")
            }
            Self::Http { status: 401 | 403 } => format!(
                "it wants a credential: add an `[auth]` section to {file}, as docs/outbound.md describes"
            ),
            Self::Http {
                status: 404 | 405 | 406 | 415,
            }
            | Self::NotMcp { .. } => {
                format!("check that `{key}` in {file} is the upstream's MCP endpoint")
            }
            Self::CommandNotFound => format!(
                "check `{key}` in {file}: an absolute path, or a program on the gateway's PATH"
            ),
            Self::PermissionDenied => format!("check that `{key}` in {file} is executable"),
            Self::Exited { .. } => format!(
                "its stderr is in the gateway log; run `{key}` of {file} by hand to see why it stops"
            ),
            _ => return None,
        })
    }
}

/// A URL as messages show it: no user name, password, query or fragment (a query may hold
/// an API key).
pub fn shown_url(url: &url::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    let _ = u.set_password(None);
    let _ = u.set_username("");
    u.to_string()
}

/// [`shown_url`] of a URL given as text; text that is not a URL is not shown.
pub fn shown_url_text(url: &str) -> String {
    url::Url::parse(url).map_or_else(|_| "(an invalid URL)".into(), |u| shown_url(&u))
}

/// Classify any error an upstream session can produce.
pub fn classify(error: &(dyn Error + 'static)) -> Cause {
    let mut link: Option<&(dyn Error + 'static)> = Some(error);
    let mut innermost = error;
    let mut depth = 0;
    while let Some(e) = link {
        if let Some(cause) = known(e) {
            return cause;
        }
        innermost = e;
        link = wrapped(e);
        depth += 1;
        if depth > 32 {
            break; // a cycle would be a bug in some library; never loop forever
        }
    }
    Cause::Plain(plain(&innermost.to_string()))
}

pub fn classify_service(e: &ServiceError) -> Cause {
    classify(e)
}

pub fn classify_init(e: &ClientInitializeError) -> Cause {
    classify(e)
}

type HttpError = StreamableHttpError<reqwest::Error>;

/// The error inside `e`, including the ones rmcp keeps in fields without `#[source]`.
fn wrapped<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a (dyn Error + 'static)> {
    if let Some(d) = e.downcast_ref::<DynamicTransportError>() {
        return Some(&*d.error);
    }
    if let Some(ClientInitializeError::TransportError { error, .. }) =
        e.downcast_ref::<ClientInitializeError>()
    {
        return Some(error);
    }
    if let Some(StreamableHttpError::Client(inner)) = e.downcast_ref::<HttpError>() {
        return Some(inner);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>()
        && let Some(inner) = io.get_ref()
    {
        return Some(inner);
    }
    e.source()
}

/// The cause `e` itself states, if it states one; `None` to look further in.
fn known(e: &(dyn Error + 'static)) -> Option<Cause> {
    if let Some(s) = e.downcast_ref::<ServiceError>() {
        return match s {
            ServiceError::McpError(d) => Some(Cause::Refused {
                message: d.message.to_string(),
            }),
            ServiceError::Timeout { timeout } => Some(Cause::TimedOut {
                after: Some(*timeout),
            }),
            ServiceError::TransportClosed => Some(Cause::Closed),
            ServiceError::UnexpectedResponse => Some(Cause::Malformed),
            ServiceError::Cancelled { .. } => {
                Some(Cause::Plain("the request was cancelled".into()))
            }
            _ => None,
        };
    }
    if let Some(i) = e.downcast_ref::<ClientInitializeError>() {
        return match i {
            ClientInitializeError::ConnectionClosed(_) => Some(Cause::Closed),
            ClientInitializeError::JsonRpcError(d) => Some(Cause::Refused {
                message: d.message.to_string(),
            }),
            ClientInitializeError::ExpectedInitResponse(_)
            | ClientInitializeError::ExpectedInitResult(_)
            | ClientInitializeError::ConflictInitResponseId(..)
            | ClientInitializeError::UncorrelatedErrorResponse { .. } => Some(Cause::Malformed),
            ClientInitializeError::NoCompatibleProtocolVersion { .. } => Some(Cause::Plain(
                "the upstream speaks no MCP protocol version the gateway does".into(),
            )),
            ClientInitializeError::Cancelled => {
                Some(Cause::Plain("the connection attempt was cancelled".into()))
            }
            ClientInitializeError::LegacyFallbackFailed { fallback, .. } => {
                Some(classify(&**fallback))
            }
            _ => None,
        };
    }
    if let Some(h) = e.downcast_ref::<HttpError>() {
        return match h {
            StreamableHttpError::HttpStatus(s) => Some(Cause::Http { status: s.status }),
            StreamableHttpError::AuthRequired(_) => Some(Cause::Http { status: 401 }),
            StreamableHttpError::InsufficientScope(_) => Some(Cause::Http { status: 403 }),
            StreamableHttpError::UnexpectedContentType(t) => Some(Cause::NotMcp {
                content_type: t
                    .as_deref()
                    .map(|t| plain(t.split(';').next().unwrap_or(t))),
            }),
            StreamableHttpError::UnexpectedEndOfStream
            | StreamableHttpError::TransportChannelClosed => Some(Cause::Closed),
            StreamableHttpError::SessionExpired => Some(Cause::SessionExpired),
            StreamableHttpError::Deserialize(_) => Some(Cause::Malformed),
            // rmcp reports an HTTP error without a JSON-RPC body as "HTTP 401 Unauthorized:
            // BODY" here (the body is the upstream's, and may be a whole HTML page); the
            // gateway's own messages (credentials) travel in this variant too.
            StreamableHttpError::UnexpectedServerResponse(m) => Some(
                http_status_prefix(m)
                    .map(|status| Cause::Http { status })
                    .unwrap_or_else(|| Cause::Plain(plain(m))),
            ),
            StreamableHttpError::ResponseBodyTooLarge { max_size } => Some(Cause::Plain(format!(
                "the upstream's answer is larger than {max_size} bytes"
            ))),
            _ => None,
        };
    }
    if let Some(r) = e.downcast_ref::<reqwest::Error>() {
        if let Some(status) = r.status() {
            return Some(Cause::Http {
                status: status.as_u16(),
            });
        }
        // A connect timeout says so only here; the chain below holds no io::Error.
        if r.is_timeout() {
            return Some(Cause::TimedOut { after: None });
        }
        return None;
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        use std::io::ErrorKind as K;
        let by_kind = match io.kind() {
            K::ConnectionRefused => Some(Cause::ConnectionRefused),
            K::ConnectionReset | K::ConnectionAborted => Some(Cause::Reset),
            K::BrokenPipe | K::UnexpectedEof => Some(Cause::Closed),
            K::TimedOut => Some(Cause::TimedOut { after: None }),
            K::NotFound => Some(Cause::CommandNotFound),
            K::PermissionDenied => Some(Cause::PermissionDenied),
            _ => None,
        };
        // An io::Error wrapping a TLS error has kind InvalidData: look inside first.
        if by_kind.is_some() {
            return by_kind;
        }
    }
    // Types that are not public (hyper-util's connect error, rustls errors) say what they
    // are only in their text.
    let text = e.to_string();
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("dns error") || lower.contains("failed to lookup address") {
        return Some(Cause::Dns { host: None });
    }
    if lower.contains("certificate") {
        return Some(Cause::Tls {
            detail: Some("the upstream's certificate is not trusted".into()),
        });
    }
    // hyper's `IncompleteMessage` and `ChannelClosed`: a pooled connection the upstream
    // closed while (or before) a request was sent on it.
    if lower == "connection closed before message completed" || lower == "channel closed" {
        return Some(Cause::Closed);
    }
    if lower.contains("corrupt message") || lower.contains("tls") && lower.contains("handshake") {
        return Some(Cause::Tls {
            detail: Some("is the upstream really serving https?".into()),
        });
    }
    None
}

/// `HTTP 401 …` → 401.
fn http_status_prefix(message: &str) -> Option<u16> {
    let code = message.strip_prefix("HTTP ")?.get(..3)?;
    code.parse().ok().filter(|c| (100..600).contains(c))
}

/// A library's text made fit for a person: no Rust type paths, no debug dumps.
fn plain(text: &str) -> String {
    let text = text.trim();
    if text.is_empty() || text.contains("::") || text.contains('{') {
        return "an unexpected error in the connection to the upstream".into();
    }
    text.chars().take(300).collect()
}

/// Durations in messages are written as everywhere else in the gateway.
pub use crate::words::duration;

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    fn transport(e: impl Error + Send + Sync + 'static) -> ServiceError {
        ServiceError::TransportSend(DynamicTransportError::from_parts(
            "rmcp::transport::worker::WorkerTransport<x::y>",
            std::any::TypeId::of::<()>(),
            Box::new(e),
        ))
    }

    #[test]
    fn io_kinds_through_rmcp_wrappers() {
        let cases = [
            (io::ErrorKind::ConnectionRefused, "connection refused"),
            (
                io::ErrorKind::BrokenPipe,
                "the upstream closed the connection",
            ),
            (
                io::ErrorKind::ConnectionReset,
                "the upstream reset the connection",
            ),
            (io::ErrorKind::NotFound, "command not found"),
        ];
        for (kind, text) in cases {
            let e = transport(HttpError::Io(io::Error::new(kind, "boom")));
            assert_eq!(classify(&e).to_string(), text, "{kind:?}");
        }
    }

    #[test]
    fn hidden_client_error_is_found() {
        // `StreamableHttpError::Client` does not expose its inner error as `source()`.
        #[derive(Debug)]
        struct ConnectError(io::Error);
        impl fmt::Display for ConnectError {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("dns error")
            }
        }
        impl Error for ConnectError {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let dns = ConnectError(io::Error::other("failed to lookup address information"));
        let e = ClientInitializeError::TransportError {
            error: DynamicTransportError::from_parts(
                "T",
                std::any::TypeId::of::<()>(),
                Box::new(dns),
            ),
            context: "send initialize request".into(),
        };
        assert_eq!(classify_init(&e), Cause::Dns { host: None });
    }

    #[tokio::test]
    async fn a_real_refused_connection() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .unwrap()
            .port(); // the listener is dropped: nothing listens there now
        let err = reqwest::get(format!("http://127.0.0.1:{port}/mcp"))
            .await
            .unwrap_err();
        let e = transport(HttpError::Client(err.without_url()));
        assert_eq!(classify_service(&e), Cause::ConnectionRefused);
    }

    #[test]
    fn statuses_and_timeouts_and_exits_read_plainly() {
        let e = transport(HttpError::HttpStatus(
            rmcp::transport::streamable_http_client::HttpStatusError::new(503, None),
        ));
        assert_eq!(
            classify(&e).to_string(),
            "HTTP 503 Service Unavailable from the upstream"
        );
        let e = transport(HttpError::UnexpectedServerResponse(
            "HTTP 401 Unauthorized: <html>{ a page }</html>".into(),
        ));
        assert_eq!(classify(&e), Cause::Http { status: 401 });
        let e = ServiceError::Timeout {
            timeout: Duration::from_secs(30),
        };
        assert_eq!(classify(&e).to_string(), "timed out after 30 s");
        let e = transport(HttpError::UnexpectedContentType(Some(
            "text/html; charset=utf-8".into(),
        )));
        assert_eq!(
            classify(&e).to_string(),
            "the upstream answered with `text/html`, not MCP"
        );
        let exited = Cause::Exited {
            status: Some(ExitStatus::Code(3)),
        };
        assert_eq!(exited.to_string(), "the process exited with status 3");
    }

    #[test]
    fn a_pooled_connection_closed_under_a_request_is_closed() {
        // hyper's error type cannot be built outside hyper; its text is what identifies it.
        #[derive(Debug)]
        struct Hyper(&'static str);
        impl fmt::Display for Hyper {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.0)
            }
        }
        impl Error for Hyper {}
        for text in [
            "connection closed before message completed",
            "channel closed",
        ] {
            let e = transport(HttpError::Io(io::Error::other(Hyper(text))));
            assert_eq!(classify(&e), Cause::Closed, "{text}");
        }
    }

    #[test]
    fn an_upstream_asking_for_credentials_is_told_where_they_go() {
        let mut at = Registration {
            file: "targets/locked.toml",
            key: "mcp.url",
            has_auth: false,
        };
        let fix = Cause::Http { status: 401 }.fix(at).unwrap_or_default();
        assert_eq!(
            fix,
            "it wants a credential: add an `[auth]` section to targets/locked.toml, as docs/outbound.md describes"
        );
        at.has_auth = true;
        let fix = Cause::Http { status: 403 }.fix(at).unwrap_or_default();
        assert_eq!(
            fix,
            "check the credential in the `[auth]` section of targets/locked.toml"
        );
    }

    #[test]
    fn unknown_errors_never_leak_type_paths_or_debug_dumps() {
        let e = transport(HttpError::Io(io::Error::other(
            "weird rmcp::x::Y { field: 1 }",
        )));
        let text = classify(&e).to_string();
        assert!(!text.contains("::") && !text.contains('{'), "{text}");
    }
}

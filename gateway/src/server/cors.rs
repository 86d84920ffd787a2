//! CORS for browser MCP clients (the MCP Inspector in direct mode, web apps): `/mcp`, the
//! OAuth metadata under `/.well-known/` and the development identity provider answer a
//! browser whose `Origin` is in `server.allowed_origins`, and nobody else.
//!
//! The rule: an origin outside the allow-list gets no CORS header at all (its preflight is
//! refused with 403, and `/mcp` still refuses its requests as before). A preflight is
//! answered here, before authentication: it carries no token and asks only what the browser
//! may send. The allowed request headers are the ones MCP clients send (including the
//! 2026-07-28 `Mcp-Param-*` family, matched by prefix); `Mcp-Session-Id` and
//! `WWW-Authenticate` are exposed so a browser client can keep its session and find the
//! authorization server after a 401. No credentials mode: MCP clients send a bearer token,
//! never cookies.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, StatusCode};

/// Request headers a browser MCP client may send cross-origin.
const ALLOWED_HEADERS: &[&str] = &[
    "authorization",
    "content-type",
    "accept",
    "mcp-session-id",
    "mcp-protocol-version",
    "mcp-method",
    "mcp-name",
    "last-event-id",
];
/// 2026-07-28 tool parameters mirrored into headers (`x-mcp-header`): any name.
const PARAM_HEADER_PREFIX: &str = "mcp-param-";
const ALLOWED_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const EXPOSED_HEADERS: &str = "mcp-session-id, www-authenticate";
/// How long a browser may reuse a preflight answer (browsers cap it at 2 hours or less).
const MAX_AGE_SECS: &str = "600";

/// The browser origins served (`server.allowed_origins`, fixed at start like the
/// `/mcp` Origin check that uses the same list).
#[derive(Debug, Clone)]
pub struct CorsPolicy {
    origins: Arc<[AllowedOrigin]>,
}

/// One allow-list entry: `scheme://host[:port]`, the port `*` for any port (as the `/mcp`
/// Origin check reads it), no port for any port too.
#[derive(Debug, PartialEq, Eq)]
struct AllowedOrigin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

/// An `Origin` header value, normalised: scheme and host lower-case, the default port
/// filled in.
#[derive(Debug, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
}

fn parse_origin(value: &str) -> Option<Origin> {
    let uri = http::Uri::try_from(value.trim()).ok()?;
    if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
        return None;
    }
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    let port = authority.port_u16().or(match scheme.as_str() {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    });
    Some(Origin {
        scheme,
        host: authority.host().to_ascii_lowercase(),
        port,
    })
}

impl CorsPolicy {
    /// The policy for these allow-list entries (already validated by the configuration; an
    /// entry that is not an origin allows nothing).
    pub fn new(allowed_origins: &[String]) -> Self {
        let origins = allowed_origins
            .iter()
            .filter_map(|entry| {
                let (base, any_port) = match entry.trim().strip_suffix(":*") {
                    Some(base) => (base, true),
                    None => (entry.trim(), false),
                };
                let uri = http::Uri::try_from(base).ok()?;
                let explicit = uri.authority()?.port_u16();
                let origin = parse_origin(base)?;
                Some(AllowedOrigin {
                    scheme: origin.scheme,
                    host: origin.host,
                    port: if any_port { None } else { explicit },
                })
            })
            .collect();
        Self { origins }
    }

    /// Whether a browser at `origin` (an `Origin` header value) may read our answers.
    pub fn allows(&self, origin: &str) -> bool {
        let Some(o) = parse_origin(origin) else {
            return false;
        };
        self.origins.iter().any(|a| {
            a.scheme == o.scheme && a.host == o.host && a.port.is_none_or(|p| Some(p) == o.port)
        })
    }
}

/// Whether CORS applies to `path`: the MCP endpoint and what a browser client reads to log
/// in (protected resource and authorization server metadata, the development IdP).
fn in_scope(path: &str) -> bool {
    path == "/mcp"
        || path.starts_with("/mcp/")
        || path.starts_with("/.well-known/")
        || path.starts_with("/dev-idp/")
}

/// The middleware: answer preflights, add the CORS headers to answers for allowed origins.
pub async fn cors(State(policy): State<CorsPolicy>, req: Request, next: Next) -> Response {
    if !in_scope(req.uri().path()) {
        return next.run(req).await;
    }
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let allowed = origin.as_deref().filter(|o| policy.allows(o));
    if preflight {
        return match allowed {
            Some(origin) => preflight_answer(origin, req.headers()),
            None => refused_preflight(origin.as_deref()),
        };
    }
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    // The answer depends on the Origin: a cache must not serve one origin's to another.
    h.append(header::VARY, HeaderValue::from_static("origin"));
    if let Some(origin) = allowed {
        allow_origin(h, origin);
        h.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            HeaderValue::from_static(EXPOSED_HEADERS),
        );
    }
    resp
}

fn allow_origin(h: &mut HeaderMap, origin: &str) {
    if let Ok(v) = HeaderValue::from_str(origin) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
    }
}

/// 204 with what the browser may do: the methods, and of the headers it asked for those
/// an MCP client sends (one it may not send is left out, so the browser refuses it).
fn preflight_answer(origin: &str, request: &HeaderMap) -> Response {
    let asked = request
        .get_all(header::ACCESS_CONTROL_REQUEST_HEADERS)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty());
    let granted: Vec<String> = asked
        .filter(|h| {
            ALLOWED_HEADERS.contains(&h.as_str())
                || (h.len() > PARAM_HEADER_PREFIX.len() && h.starts_with(PARAM_HEADER_PREFIX))
        })
        .collect();
    let mut resp = StatusCode::NO_CONTENT.into_response();
    let h = resp.headers_mut();
    allow_origin(h, origin);
    h.append(
        header::VARY,
        HeaderValue::from_static(
            "origin, access-control-request-method, access-control-request-headers",
        ),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(ALLOWED_METHODS),
    );
    if !granted.is_empty() {
        // Lower-case header names from a visible-ASCII header value: always a valid value.
        if let Ok(v) = HeaderValue::from_str(&granted.join(", ")) {
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
    }
    h.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static(MAX_AGE_SECS),
    );
    resp
}

/// A preflight from an origin that is not allowed (or from no origin): 403, no CORS header.
fn refused_preflight(origin: Option<&str>) -> Response {
    let why = match origin {
        Some(o) => format!(
            "the origin {o} is not in this gateway's server.allowed_origins, so browsers there may not call it; an operator can add it to [server] allowed_origins in gateway.toml"
        ),
        None => "a CORS preflight needs an Origin header".to_string(),
    };
    (
        StatusCode::FORBIDDEN,
        axum::Json(serde_json::json!({ "error": "origin_not_allowed", "error_description": why })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_as_the_mcp_origin_check_reads_the_list() {
        let p = CorsPolicy::new(&[
            "https://app.example.com".into(),
            "http://localhost:*".into(),
            "http://127.0.0.1:6274".into(),
        ]);
        for ok in [
            "https://app.example.com",
            "https://APP.example.com:443",
            "http://localhost:5173",
            "http://localhost",
            "http://127.0.0.1:6274",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for refused in [
            "http://app.example.com",
            "https://app.example.com.evil.test",
            "https://evil.test",
            "http://127.0.0.1:6275",
            "http://127.0.0.1",
            "null",
            "",
            "https://app.example.com/path",
        ] {
            assert!(!p.allows(refused), "{refused}");
        }
    }

    #[test]
    fn cors_covers_the_mcp_endpoint_and_login_metadata_only() {
        for path in [
            "/mcp",
            "/.well-known/oauth-protected-resource/mcp",
            "/dev-idp/token",
        ] {
            assert!(in_scope(path), "{path}");
        }
        for path in ["/readyz", "/healthz", "/consent/grants", "/mcpx"] {
            assert!(!in_scope(path), "{path}");
        }
    }
}

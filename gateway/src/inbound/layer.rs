//! The axum middleware in front of `/mcp`: bearer token → [`Caller`] in the request
//! extensions, or the RFC 6750 challenge. It also enforces per-tool scopes on `tools/call`
//! here, at the HTTP layer, because the MCP step-up is an HTTP 403 that a JSON-RPC handler
//! cannot produce, and serves each MCP session to the user who opened it only
//! ([`SessionOwners`]).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method};
use rmcp::transport::streamable_http_server::SessionManager;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use serde_json::json;

use super::sessions::{Owner, Refusal, SessionOwners};
use super::{Authenticator, Rejection};
use crate::catalog::{Catalog, View};
use crate::identity::Caller;
use crate::policy;
use crate::runtime::Live;
use crate::telemetry::{AuditEvent, Decision, Outcome};

#[derive(Debug, Clone)]
pub struct AuthState {
    /// The runtime in force: its authenticator (`None` when `inbound.mode = "none"`) and
    /// catalog are loaded once per request.
    pub live: Arc<Live>,
    pub max_body: usize,
    /// Which user opened each MCP session: a session id is not a credential, so a request
    /// naming another user's session is refused (MCP security best practices).
    pub sessions: Arc<SessionOwners>,
    /// The MCP layer's sessions, to close the ones [`SessionOwners`] forgets to make room.
    pub mcp_sessions: Arc<LocalSessionManager>,
}

const SESSION_HEADER: &str = "mcp-session-id";

pub async fn require_caller(State(state): State<AuthState>, req: Request, next: Next) -> Response {
    let runtime = state.live.load();
    let Some(auth) = runtime.auth.clone() else {
        return next.run(req).await; // inbound.mode = "none": loopback only, said at start
    };
    let seen = Seen::of(&req);
    let session = req
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let req = match admit(&state, &auth, &runtime.catalog, req).await {
        Ok(req) => req,
        Err(rejection) => {
            refused(&rejection, &seen);
            return challenge(&auth, rejection);
        }
    };
    // The owner only: the whole caller (claims and all) stays in the request.
    let Some(owner): Option<Owner> = req
        .extensions()
        .get::<Caller>()
        .map(|c| (c.issuer.clone(), c.user.clone()))
    else {
        return challenge(&auth, Rejection::missing());
    };
    // A session is served only to its owner, and only while the table knows it: anything
    // else (another user's, expired, forgotten) is answered as an unknown session.
    let in_use = match &session {
        Some(id) => match state.sessions.enter(id, &owner) {
            Ok(in_use) => Some(in_use),
            Err(why) => return refuse_session(why, &seen),
        },
        None => None,
    };
    let deleting = req.method() == Method::DELETE;
    let resp = next.run(req).await;
    let opened = resp
        .headers()
        .get(SESSION_HEADER)
        .and_then(|v| v.to_str().ok());
    match (&session, opened) {
        // A new session: remember who opened it, or close it when this user or the gateway
        // has no room for it.
        (None, Some(id)) => match state.sessions.opened(id, owner) {
            Ok(displaced) => close_sessions(&state.mcp_sessions, displaced),
            Err(why) => {
                close_sessions(&state.mcp_sessions, vec![id.to_string()]);
                return refuse_session(why, &seen);
            }
        },
        // Ended by the client, or unknown to the MCP layer (expired): forget it.
        (Some(id), _)
            if (deleting && resp.status().is_success())
                || resp.status() == http::StatusCode::NOT_FOUND =>
        {
            state.sessions.forget(id);
        }
        _ => {}
    }
    match in_use {
        // A response stream (SSE) keeps its session busy until it ends: the session is not
        // idle while the client listens.
        Some(in_use) if is_event_stream(&resp) => resp.map(|body| {
            Body::from_stream(body.into_data_stream().map(move |chunk| {
                let _busy = &in_use;
                chunk
            }))
        }),
        _ => resp,
    }
}

fn is_event_stream(resp: &Response) -> bool {
    resp.headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"))
}

/// A session that cannot be used or opened: audited, and answered in the words of each case.
fn refuse_session(why: Refusal, seen: &Seen) -> Response {
    use super::sessions::PER_USER;
    let (status, error, description) = match why {
        Refusal::NotYours => {
            let r = Rejection::foreign_session();
            (
                r.status,
                "session_not_found",
                r.description.unwrap_or_default(),
            )
        }
        Refusal::UserFull => (
            http::StatusCode::TOO_MANY_REQUESTS,
            "too_many_sessions",
            format!(
                "you already have {PER_USER} MCP sessions, each with a request or stream in progress; end one (HTTP DELETE with its Mcp-Session-Id) or retry when one finishes"
            ),
        ),
        Refusal::GatewayFull => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_sessions",
            "the gateway has too many open MCP sessions; retry later".to_string(),
        ),
    };
    let r = Rejection {
        status,
        error: None,
        description: Some(description.clone()),
        scope: None,
    };
    refused(&r, seen);
    let body = axum::Json(json!({ "error": error, "error_description": description }));
    let mut resp = (status, body).into_response();
    if why != Refusal::NotYours {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    resp
}

/// End sessions the table no longer serves, so the MCP layer frees them now rather than
/// after its idle time.
fn close_sessions(manager: &Arc<LocalSessionManager>, ids: Vec<String>) {
    for id in ids {
        let manager = manager.clone();
        tokio::spawn(async move {
            if manager.close_session(&id.clone().into()).await.is_err() {
                tracing::debug!(target: "portcullis::inbound", session = %id, "the displaced MCP session had already ended");
            }
        });
    }
}

/// What the audit of a refusal names about the request: the request id the response echoes
/// (`x-request-id`, set before this layer runs), the path, and when it arrived.
struct Seen {
    request_id: String,
    path: String,
    at: std::time::Instant,
}

impl Seen {
    fn of(req: &Request) -> Self {
        Self {
            request_id: crate::telemetry::request_id(req.headers())
                .map_or_else(|| "-".to_string(), str::to_string),
            path: req.uri().path().to_string(),
            at: std::time::Instant::now(),
        }
    }
}

/// Every refusal is a decision: logged and audited (never with the token).
fn refused(r: &Rejection, seen: &Seen) {
    let mut e = AuditEvent::new(seen.request_id.clone(), "unauthenticated", "authenticate");
    e.path = Some(seen.path.clone());
    e.decision = Decision::Deny;
    let e = e.finish(
        Outcome::Error {
            code: i32::from(r.status.as_u16()),
            message: r
                .description
                .clone()
                .unwrap_or_else(|| "no bearer token".into()),
        },
        seen.at.elapsed(),
    );
    e.emit();
}

async fn admit(
    state: &AuthState,
    auth: &Authenticator,
    catalog: &Catalog,
    mut req: Request,
) -> Result<Request, Rejection> {
    // Tokens in URLs end up in logs and browser history: refused (MCP, OAuth 2.1 §5.2).
    // Decoded, so `access%5Ftoken` is recognised too.
    let in_query = req.uri().query().is_some_and(|q| {
        url::form_urlencoded::parse(q.as_bytes()).any(|(k, _)| k == "access_token")
    });
    if in_query {
        return Err(Rejection::bad_request(
            "access tokens are not accepted in the URL; send them in the Authorization header",
        ));
    }
    let mut values = req.headers().get_all(AUTHORIZATION).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return match req.headers().get_all(AUTHORIZATION).iter().count() {
            0 => Err(Rejection::missing()),
            _ => Err(Rejection::bad_request(
                "send exactly one Authorization header",
            )),
        };
    };
    let value = value
        .to_str()
        .map_err(|_| Rejection::invalid("the Authorization header is not ASCII"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Err(Rejection::missing());
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Rejection::missing());
    }
    let token = token.trim().to_string();
    let caller = auth.authenticate(&token).await?;

    // Only a POST can call a tool, and only a catalog with per-tool scopes needs the body read
    // here; otherwise it streams on to the MCP layer, which parses it once.
    let view = catalog.view();
    if req.method() == Method::POST && !view.tool_scopes.is_empty() {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, state.max_body)
            .await
            .map_err(|_| Rejection {
                status: http::StatusCode::PAYLOAD_TOO_LARGE,
                error: None,
                description: Some(format!(
                    "the request body is larger than {} bytes, or unreadable",
                    state.max_body
                )),
                scope: None,
            })?;
        check_tool_scopes(auth, &view, &caller, &bytes)?;
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(caller);
    // The token itself travels apart from the identity, sealed: only `outbound/` (token
    // exchange) can read it.
    req.extensions_mut()
        .insert(crate::outbound::CallerToken::new(token));
    Ok(req)
}

/// `tools/call` of a tool whose target requires scopes the token lacks → 403 step-up naming
/// every scope this operation needs.
fn check_tool_scopes(
    auth: &Authenticator,
    view: &View,
    caller: &Caller,
    body: &[u8],
) -> Result<(), Rejection> {
    // Only the method and the tool's name are read; the rest (arguments) is skipped unparsed.
    let batch = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'[');
    let messages = if batch {
        serde_json::from_slice::<Vec<Peek<'_>>>(body)
    } else {
        serde_json::from_slice::<Peek<'_>>(body).map(|m| vec![m])
    };
    let Ok(messages) = messages else {
        return Ok(()); // not JSON-RPC: the MCP layer answers with a parse error
    };
    for m in messages {
        if m.method.as_deref() != Some("tools/call") {
            continue;
        }
        let Some(name) = m.params.and_then(|p| p.name) else {
            continue;
        };
        let name = name.as_ref();
        // The same question the call pipeline's authorize phase asks (`policy`), answered
        // here because the MCP step-up is an HTTP 403 a JSON-RPC handler cannot produce.
        if let Some(policy::Decision::NeedsScopes { needed, .. }) =
            policy::missing_scopes(view, Some(caller), name)
        {
            let mut all = auth.required_scopes();
            all.extend(needed.iter().cloned());
            all.sort();
            all.dedup();
            return Err(Rejection::insufficient_scope(
                &all,
                format!("tool `{name}` needs the scope(s) {}", needed.join(" ")),
            ));
        }
    }
    Ok(())
}

/// What [`check_tool_scopes`] reads of a JSON-RPC message (strings borrowed when unescaped).
#[derive(serde::Deserialize)]
struct Peek<'a> {
    #[serde(borrow)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    params: Option<PeekParams<'a>>,
}

#[derive(serde::Deserialize)]
struct PeekParams<'a> {
    #[serde(borrow)]
    name: Option<std::borrow::Cow<'a, str>>,
}

/// The 401/403/400 response with its `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1).
pub fn challenge(auth: &Authenticator, r: Rejection) -> Response {
    // Header-safe: printable ASCII only, no quotes, bounded.
    let quote = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                    c
                } else {
                    '?'
                }
            })
            .take(300)
            .collect()
    };
    let mut params = vec![format!("resource_metadata=\"{}\"", auth.resource_metadata)];
    if let Some(e) = r.error {
        params.push(format!("error=\"{e}\""));
    }
    if let Some(d) = &r.description {
        params.push(format!("error_description=\"{}\"", quote(d)));
    }
    let scope = r.scope.clone().or_else(|| {
        let required = auth.required_scopes();
        (!required.is_empty() && r.error.is_none()).then(|| required.join(" "))
    });
    if let Some(s) = &scope {
        params.push(format!("scope=\"{}\"", quote(s)));
    }
    let header = format!("Bearer {}", params.join(", "));
    let body = json!({
        "error": r.error.unwrap_or("unauthorized"),
        "error_description": r.description.as_deref().unwrap_or("this endpoint needs an OAuth bearer token; see the resource metadata"),
    });
    let mut resp = (r.status, axum::Json(body)).into_response();
    if r.status == http::StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    if let Ok(v) = HeaderValue::from_str(&header) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    resp
}

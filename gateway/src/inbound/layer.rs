//! The axum middleware in front of `/mcp`: bearer token → [`Caller`] in the request
//! extensions, or the RFC 6750 challenge. It also enforces per-tool scopes on `tools/call`
//! here, at the HTTP layer, because the MCP step-up is an HTTP 403 that a JSON-RPC handler
//! cannot produce.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, Method};
use serde_json::{Value, json};

use super::{Authenticator, Rejection};
use crate::catalog::Catalog;

#[derive(Debug, Clone)]
pub struct AuthState {
    pub auth: Arc<Authenticator>,
    pub catalog: Arc<Catalog>,
    pub max_body: usize,
}

pub async fn require_caller(State(state): State<AuthState>, req: Request, next: Next) -> Response {
    match admit(&state, req).await {
        Ok(req) => next.run(req).await,
        Err(rejection) => challenge(&state.auth, rejection),
    }
}

async fn admit(state: &AuthState, mut req: Request) -> Result<Request, Rejection> {
    // Tokens in URLs end up in logs and browser history: refused (MCP, OAuth 2.1 §5.2).
    let in_query = req.uri().query().is_some_and(|q| {
        q.split('&')
            .any(|kv| kv.split('=').next() == Some("access_token"))
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
    let caller = state.auth.authenticate(token.trim()).await?;

    if req.method() == Method::POST {
        let (parts, body) = req.into_parts();
        let bytes = axum::body::to_bytes(body, state.max_body)
            .await
            .map_err(|_| Rejection::bad_request("the request body is too large or unreadable"))?;
        check_tool_scopes(state, &caller, &bytes)?;
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(caller);
    Ok(req)
}

/// `tools/call` of a tool whose target requires scopes the token lacks → 403 step-up naming
/// every scope this operation needs.
fn check_tool_scopes(
    state: &AuthState,
    caller: &crate::identity::Caller,
    body: &[u8],
) -> Result<(), Rejection> {
    let Ok(message) = serde_json::from_slice::<Value>(body) else {
        return Ok(()); // not JSON: the MCP layer answers with a parse error
    };
    let messages = match &message {
        Value::Array(batch) => batch.iter().collect(),
        one => vec![one],
    };
    let view = state.catalog.view();
    for m in messages {
        if m["method"] != "tools/call" {
            continue;
        }
        let Some(name) = m["params"]["name"].as_str() else {
            continue;
        };
        let Some(needed) = view.tool_scopes.get(name) else {
            continue;
        };
        if needed.iter().any(|s| !caller.scopes.contains(s)) {
            let mut all = state.auth.required_scopes();
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

/// The 401/403/400 response with its `WWW-Authenticate` challenge (RFC 6750 §3, RFC 9728 §5.1).
pub fn challenge(auth: &Authenticator, r: Rejection) -> Response {
    let quote = |s: &str| s.replace(['"', '\\'], "'");
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
    if let Ok(v) = HeaderValue::from_str(&header) {
        resp.headers_mut().insert(WWW_AUTHENTICATE, v);
    }
    resp
}

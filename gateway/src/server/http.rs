//! The HTTP surface: `/mcp` (rmcp streamable HTTP), `/healthz`, `/readyz`.
//!
//! DNS-rebinding protection is on by default: `/mcp` accepts only `Host` values derived from
//! the public URL (plus any configured), and browser `Origin`s from the public URL's origin
//! (plus any configured); everything else gets 403 before it reaches the handler.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

use super::Gateway;
use crate::catalog::Catalog;
use crate::config::ServerSettings;
use crate::inbound::layer::{AuthState, require_caller};
use crate::inbound::{Authenticator, KeyStatus, dev_idp, prm};
use crate::targets::Health;

/// Shared by the HTTP handlers.
#[derive(Debug, Clone)]
struct AppState {
    catalog: Arc<Catalog>,
    auth: Option<Arc<Authenticator>>,
    server: ServerSettings,
}

/// Build the gateway's router. With `auth`, `/mcp` requires a bearer token and the
/// protected resource metadata is served.
pub fn router(
    gateway: Gateway,
    settings: &ServerSettings,
    auth: Option<Arc<Authenticator>>,
    shutdown: CancellationToken,
) -> Router {
    let catalog = gateway.catalog().clone();
    let mcp = StreamableHttpService::new(
        move || Ok(gateway.for_session()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            // 2025-11-25 clients get sessions (needed for server→client relays and
            // list_changed pushes); 2026-07-28 requests are served statelessly regardless.
            .with_legacy_session_mode(true)
            .with_allowed_hosts(settings.allowed_hosts.clone())
            .with_allowed_origins(settings.allowed_origins.clone())
            .with_max_request_body_bytes(settings.max_request_bytes)
            .with_cancellation_token(shutdown),
    );
    let mut mcp_routes = Router::new()
        .nest_service("/mcp", mcp)
        .layer(axum::middleware::from_fn(session_delete_status));
    if let Some(auth) = &auth {
        let state = AuthState {
            auth: auth.clone(),
            catalog: catalog.clone(),
            max_body: settings.max_request_bytes,
            sessions: Default::default(),
        };
        mcp_routes = mcp_routes.layer(axum::middleware::from_fn_with_state(state, require_caller));
    }
    let state = AppState {
        catalog,
        auth,
        server: settings.clone(),
    };
    let request_id = http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/oauth-protected-resource", get(prm_root))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm_mcp))
        .route(
            "/dev-idp/.well-known/openid-configuration",
            get(dev_discovery),
        )
        .route("/dev-idp/jwks", get(dev_jwks))
        .with_state(state)
        .merge(mcp_routes)
        .layer(RequestBodyLimitLayer::new(settings.max_request_bytes))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn prm_root(State(s): State<AppState>) -> Response {
    prm(&s, true)
}

async fn prm_mcp(State(s): State<AppState>) -> Response {
    prm(&s, false)
}

fn prm(s: &AppState, root: bool) -> Response {
    let Some(auth) = &s.auth else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "this gateway does not authenticate callers (inbound.mode = \"none\")"}))).into_response();
    };
    let mut tool_scopes: Vec<String> = s
        .catalog
        .view()
        .tool_scopes
        .values()
        .flatten()
        .cloned()
        .collect();
    tool_scopes.sort();
    tool_scopes.dedup();
    Json(prm::document(auth, &s.server, &tool_scopes, root)).into_response()
}

async fn dev_discovery(State(s): State<AppState>) -> Response {
    match s.auth.as_ref().and_then(|a| a.dev_jwks.as_ref()) {
        Some(_) => Json(dev_idp::discovery(&s.server)).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn dev_jwks(State(s): State<AppState>) -> Response {
    match s.auth.as_ref().and_then(|a| a.dev_jwks.as_ref()) {
        Some(keys) => Json(keys).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

/// rmcp answers a session DELETE with 202; the MCP SDKs expect 200 or 204 ("Session
/// termination failed: 202" in the Python SDK). The session is gone either way: say 204.
async fn session_delete_status(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let delete = req.method() == http::Method::DELETE;
    let mut resp = next.run(req).await;
    if delete && resp.status() == StatusCode::ACCEPTED {
        *resp.status_mut() = StatusCode::NO_CONTENT;
    }
    resp
}

/// The process is up and serving HTTP.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when every required target is connected, every issuer's keys were fetched at least
/// once, and the catalog has no conflicts.
///
/// The details (target names, upstream errors, issuers) go only to clients on this machine;
/// anyone else — a load balancer, the internet — learns ready or not.
async fn readyz(State(s): State<AppState>, req: axum::extract::Request) -> impl IntoResponse {
    let local = req
        .extensions()
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .is_some_and(|c| c.0.ip().is_loopback());
    let catalog = &s.catalog;
    let view = catalog.view();
    let mut ready = view.conflicts.is_empty();
    let targets: Vec<_> = catalog
        .targets()
        .iter()
        .map(|t| {
            let (status, reason) = match t.health() {
                Health::Connected => ("connected", None),
                Health::Down { reason } => ("down", Some(reason)),
            };
            if status != "connected" && !t.spec().optional {
                ready = false;
            }
            json!({ "name": t.name(), "status": status, "optional": t.spec().optional, "reason": reason })
        })
        .collect();
    let conflicts: Vec<_> = view.conflicts.iter().map(|c| c.0.clone()).collect();
    let issuers: Vec<_> = s
        .auth
        .iter()
        .flat_map(|a| a.issuers().iter())
        .map(|i| match i.keys.status() {
            KeyStatus::Ready => json!({ "issuer": i.spec.issuer, "status": "keys loaded" }),
            KeyStatus::NeverReached(why) => {
                ready = false;
                json!({ "issuer": i.spec.issuer, "status": "never reached", "reason": why })
            }
        })
        .collect();
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = if local {
        json!({ "ready": ready, "targets": targets, "issuers": issuers, "conflicts": conflicts })
    } else {
        json!({ "ready": ready })
    };
    (code, Json(body))
}

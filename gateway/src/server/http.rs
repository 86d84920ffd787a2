//! The HTTP surface: `/mcp` (rmcp streamable HTTP), `/healthz`, `/readyz`.
//!
//! DNS-rebinding protection is on by default: `/mcp` accepts only `Host` values derived from
//! the public URL (plus any configured), and browser `Origin`s from the public URL's origin
//! (plus any configured); everything else gets 403 before it reaches the handler.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Json};
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
use crate::targets::Health;

/// Build the gateway's router.
pub fn router(gateway: Gateway, settings: &ServerSettings, shutdown: CancellationToken) -> Router {
    let catalog = gateway.catalog().clone();
    let mcp = StreamableHttpService::new(
        move || Ok(gateway.clone()),
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
    let request_id = http::HeaderName::from_static("x-request-id");
    Router::new()
        .nest_service("/mcp", mcp)
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(catalog)
        .layer(RequestBodyLimitLayer::new(settings.max_request_bytes))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// The process is up and serving HTTP.
async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Ready when every required target is connected and the catalog has no conflicts.
async fn readyz(State(catalog): State<Arc<Catalog>>) -> impl IntoResponse {
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
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        Json(json!({ "ready": ready, "targets": targets, "conflicts": conflicts })),
    )
}

//! The HTTP surface: `/mcp` (rmcp streamable HTTP), `/healthz`, `/readyz`, the protected
//! resource metadata and, with `[dev_idp]`, the development identity provider's endpoints.
//! Only `/mcp` needs a bearer token; any other path is public, and an unknown one is 404.
//!
//! DNS-rebinding protection is on by default: `/mcp` accepts only `Host` values derived from
//! the public URL (plus any configured), and browser `Origin`s from the public URL's origin
//! (plus any configured); everything else gets 403 before it reaches the handler. The same
//! origins get CORS answers, so browser clients work (`server/cors.rs`).

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
use super::cors::{CorsPolicy, cors};
use crate::inbound::layer::{AuthState, require_caller};
use crate::inbound::sessions::SESSION_IDLE;
use crate::inbound::{KeyStatus, dev_idp, prm};
use crate::runtime::{Live, Runtime};
use crate::targets::Health;

/// Shared by the HTTP handlers: each request loads the runtime in force once.
#[derive(Debug, Clone)]
struct AppState {
    live: Arc<Live>,
}

/// Build the gateway's router. When the runtime authenticates callers, `/mcp` requires a
/// bearer token and the protected resource metadata is served. The `[server]` settings
/// (hosts, origins, body limit) are read once here: they take effect at restart.
pub fn router(gateway: Gateway, shutdown: CancellationToken) -> Router {
    let live = gateway.live().clone();
    let runtime = live.load();
    let settings = &runtime.snapshot.server;
    // rmcp's default idle expiry, set explicitly: the session owners (`inbound::sessions`)
    // expire on the same time, so the two forget a session together.
    let mut sessions = LocalSessionManager::default();
    sessions.session_config.keep_alive = Some(SESSION_IDLE);
    let sessions = Arc::new(sessions);
    let mcp = Shared::new(StreamableHttpService::new(
        move || Ok(gateway.for_session()),
        sessions.clone(),
        StreamableHttpServerConfig::default()
            // 2025-11-25 clients get sessions (needed for server→client relays and
            // list_changed pushes); 2026-07-28 requests are served statelessly regardless.
            .with_legacy_session_mode(true)
            // 2026-07-28: a plain JSON answer when the reply is one message (no SSE framing);
            // a stream only when notifications precede it.
            .with_json_response(true)
            .with_allowed_hosts(settings.allowed_hosts.clone())
            .with_allowed_origins(settings.allowed_origins.clone())
            .with_max_request_body_bytes(settings.max_request_bytes)
            .with_cancellation_token(shutdown),
    ));
    // `route_layer`: the layers run only for `/mcp` itself, so an unknown path is a 404
    // whatever the token (a `layer` would also wrap the fallback and answer it 401).
    let auth_state = AuthState {
        live: live.clone(),
        max_body: settings.max_request_bytes,
        sessions: Default::default(),
        mcp_sessions: sessions,
    };
    let mcp_routes = Router::new()
        .route_service("/mcp", mcp.clone())
        .route_service("/mcp/{*rest}", mcp)
        .route_layer(axum::middleware::from_fn(session_delete_status))
        .route_layer(axum::middleware::from_fn_with_state(
            auth_state,
            require_caller,
        ));
    // The dev IdP's state (registrations, logins) lives as long as the process: a reload
    // keeps `[dev_idp]` as it was (see `runtime`).
    let dev_routes = runtime
        .auth
        .as_ref()
        .and_then(|a| a.dev_idp.clone())
        .map(dev_idp::routes)
        .unwrap_or_default();
    let consent_routes = crate::consent::router(live.clone());
    let state = AppState { live };
    let request_id = http::HeaderName::from_static("x-request-id");
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/oauth-protected-resource", get(prm_root))
        .route("/.well-known/oauth-protected-resource/mcp", get(prm_mcp))
        // The dev issuer's metadata wherever MCP clients look for an issuer with a path:
        // RFC 8414 and OIDC path insertion, and OIDC's appended path.
        .route(
            "/.well-known/oauth-authorization-server/dev-idp",
            get(dev_metadata),
        )
        .route(
            "/.well-known/openid-configuration/dev-idp",
            get(dev_metadata),
        )
        .route(
            "/dev-idp/.well-known/openid-configuration",
            get(dev_metadata),
        )
        .route(
            "/dev-idp/.well-known/oauth-authorization-server",
            get(dev_metadata),
        )
        .with_state(state)
        .merge(dev_routes)
        .merge(consent_routes)
        .merge(mcp_routes)
        .fallback(not_found)
        // Outside the routes, so a preflight is answered before authentication and routing.
        .layer(axum::middleware::from_fn_with_state(
            CorsPolicy::new(&settings.allowed_origins),
            cors,
        ))
        .layer(RequestBodyLimitLayer::new(settings.max_request_bytes))
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

/// rmcp's MCP service behind an `Arc`. As a tower service it clones itself for every
/// request, its whole configuration included (the allowed hosts and origins: ~14,000
/// instructions a request in the profile); this hands each request a reference instead.
#[derive(Clone)]
struct Shared(Arc<StreamableHttpService<Gateway, LocalSessionManager>>);

impl Shared {
    fn new(service: StreamableHttpService<Gateway, LocalSessionManager>) -> Self {
        Self(Arc::new(service))
    }
}

impl tower::Service<axum::extract::Request> for Shared {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { Ok(service.handle(req).await.map(axum::body::Body::new)) })
    }
}

async fn prm_root(State(s): State<AppState>) -> Response {
    prm(&s.live.load(), true)
}

async fn prm_mcp(State(s): State<AppState>) -> Response {
    prm(&s.live.load(), false)
}

fn prm(rt: &Runtime, root: bool) -> Response {
    let Some(auth) = &rt.auth else {
        return (StatusCode::NOT_FOUND, Json(json!({"error": "this gateway does not authenticate callers (inbound.mode = \"none\")"}))).into_response();
    };
    Json(prm::document(
        auth,
        &rt.snapshot.server,
        &tool_scopes(rt),
        root,
    ))
    .into_response()
}

/// Every scope some tool requires (advertised to clients, so they ask for them at login).
fn tool_scopes(rt: &Runtime) -> Vec<String> {
    let mut scopes: Vec<String> = rt
        .catalog
        .view()
        .tool_scopes
        .values()
        .flatten()
        .cloned()
        .collect();
    scopes.sort();
    scopes.dedup();
    scopes
}

async fn dev_metadata(State(s): State<AppState>) -> Response {
    let rt = s.live.load();
    let Some(auth) = &rt.auth else {
        return not_found().await;
    };
    let Some(idp) = &auth.dev_idp else {
        return not_found().await;
    };
    let mut scopes = auth.required_scopes();
    scopes.extend(tool_scopes(&rt));
    scopes.sort();
    scopes.dedup();
    Json(dev_idp::metadata::document(idp, &scopes)).into_response()
}

/// Any path the gateway does not serve (or a dev IdP path while `[dev_idp]` is off).
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "error": "not_found", "error_description": "the gateway serves nothing at this path; the MCP endpoint is /mcp" })),
    )
        .into_response()
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
    let rt = s.live.load();
    let catalog = &rt.catalog;
    let view = catalog.view();
    let mut ready = view.conflicts.is_empty();
    let targets: Vec<_> = catalog
        .targets()
        .map(|t| {
            let (status, reason) = match t.health() {
                Health::Connected => ("connected".to_string(), None),
                Health::Down { reason } if t.first_attempt_running().is_some() => {
                    ("connecting".to_string(), Some(reason))
                }
                Health::Down { reason } => ("down".to_string(), Some(reason)),
                // Sessions open on each user's first use: ready with none open.
                Health::PerUser { open } => (format!("per-user sessions: {open} open"), None),
            };
            let serving = matches!(t.health(), Health::Connected | Health::PerUser { .. });
            if !serving && !t.spec().optional {
                ready = false;
            }
            json!({ "name": t.name(), "status": status, "optional": t.spec().optional, "reason": reason })
        })
        .collect();
    let conflicts: Vec<_> = view.conflicts.iter().map(|c| c.0.clone()).collect();
    let issuers: Vec<_> = rt
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
    let vault = match s.live.vault().reachable().await {
        Ok(()) => json!({ "status": "ok", "path": s.live.vault().path() }),
        Err(e) => {
            ready = false;
            json!({ "status": "unreachable", "reason": e.to_string() })
        }
    };
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    // A failed reload leaves the previous configuration serving: still ready, but the
    // operator must hear that the files on disk are not what runs.
    let reloads = s.live.reloads();
    let config = match s.live.failed_reload() {
        Some(problems) => {
            json!({ "status": "reload failed; the previous configuration is serving", "problems": problems, "reloads": reloads })
        }
        None => json!({ "status": "loaded", "reloads": reloads }),
    };
    let body = if local {
        json!({ "ready": ready, "targets": targets, "issuers": issuers, "vault": vault, "conflicts": conflicts, "config": config })
    } else {
        json!({ "ready": ready })
    };
    (code, Json(body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    /// The quickstart's shape: the dev IdP on, no targets.
    async fn app() -> (Router, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("gateway.toml"),
            "[server]\nlisten = \"127.0.0.1:8787\"\n[dev_idp]\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("targets")).unwrap();
        let snapshot = crate::config::load(&dir.path().join("gateway.toml")).unwrap();
        let shutdown = CancellationToken::new();
        let auth = crate::inbound::Authenticator::new(&snapshot, reqwest::Client::new())
            .unwrap()
            .map(Arc::new);
        let token = auth
            .as_ref()
            .unwrap()
            .dev_idp
            .as_ref()
            .unwrap()
            .mint_for_test();
        let live = Live::start(snapshot, auth, reqwest::Client::new(), shutdown.clone())
            .await
            .unwrap();
        let app = router(Gateway::new(live), shutdown);
        (app, token, dir)
    }

    async fn get(app: &Router, path: &str, token: Option<&str>) -> (StatusCode, serde_json::Value) {
        let mut req = axum::extract::Request::get(path).header("host", "127.0.0.1:8787");
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = app
            .clone()
            .oneshot(req.body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    #[tokio::test]
    async fn unknown_paths_are_404_with_or_without_a_token() {
        let (app, token, _dir) = app().await;
        for path in [
            "/.well-known/oauth-authorization-server/nope",
            "/nope",
            "/dev-idp/nope",
        ] {
            assert_eq!(
                get(&app, path, None).await.0,
                StatusCode::NOT_FOUND,
                "{path}"
            );
            assert_eq!(
                get(&app, path, Some(&token)).await.0,
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        // /mcp itself still needs the token.
        assert_eq!(get(&app, "/mcp", None).await.0, StatusCode::UNAUTHORIZED);
    }

    #[tokio::test]
    async fn the_dev_issuer_metadata_is_where_mcp_clients_look() {
        let (app, _, _dir) = app().await;
        for path in [
            "/.well-known/oauth-authorization-server/dev-idp",
            "/.well-known/openid-configuration/dev-idp",
            "/dev-idp/.well-known/openid-configuration",
        ] {
            let (status, doc) = get(&app, path, None).await;
            assert_eq!(status, StatusCode::OK, "{path}");
            assert_eq!(doc["issuer"], "http://127.0.0.1:8787/dev-idp");
            assert_eq!(doc["token_endpoint"], "http://127.0.0.1:8787/dev-idp/token");
            assert_eq!(doc["code_challenge_methods_supported"], json!(["S256"]));
        }
        let (_, prm) = get(&app, "/.well-known/oauth-protected-resource/mcp", None).await;
        assert_eq!(
            prm["authorization_servers"],
            json!(["http://127.0.0.1:8787/dev-idp"])
        );
    }
}

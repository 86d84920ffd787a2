//! `/readyz` tells only local clients the details (target names, upstream errors, issuers).
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use portcullis::runtime::Live;
use portcullis::server::{Gateway, http as gw_http};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

async fn readyz_from(router: axum::Router, peer: &str) -> serde_json::Value {
    let mut req = Request::get("/readyz").body(Body::empty()).unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(peer.parse::<SocketAddr>().unwrap()));
    let resp = router.oneshot(req).await.unwrap();
    let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn details_only_for_local_clients() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[inbound]\nmode = \"none\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    let snapshot = portcullis::config::load(&dir.path().join("gateway.toml")).unwrap();
    let shutdown = CancellationToken::new();
    let live = Live::start(snapshot, None, reqwest::Client::new(), shutdown.clone())
        .await
        .unwrap();
    let router = gw_http::router(Gateway::new(live.clone()), shutdown.clone());

    let local = readyz_from(router.clone(), "127.0.0.1:40000").await;
    assert!(
        local.get("targets").is_some() && local.get("issuers").is_some(),
        "{local}"
    );
    assert_eq!(local["vault"]["status"], "ok", "{local}");
    let remote = readyz_from(router.clone(), "203.0.113.7:40000").await;
    assert_eq!(remote, serde_json::json!({ "ready": true }));

    // A vault that stops answering makes the gateway not ready, and says why.
    live.vault().close().await;
    let local = readyz_from(router.clone(), "127.0.0.1:40000").await;
    assert_eq!(local["ready"], false, "{local}");
    assert_eq!(local["vault"]["status"], "unreachable", "{local}");
    let reason = local["vault"]["reason"].as_str().unwrap();
    assert!(reason.contains("vault was closed"), "{reason}");
    assert_eq!(
        readyz_from(router, "203.0.113.7:40000").await,
        serde_json::json!({ "ready": false })
    );
    shutdown.cancel();
}

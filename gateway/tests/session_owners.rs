//! The table of MCP session owners cannot be exhausted by one user: a client that opens
//! sessions and abandons them displaces only its own oldest ones, and every other user can
//! still open a session. In process: the gateway's router, driven request by request.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use http::{Request, StatusCode};
use portcullis::inbound::Authenticator;
use portcullis::inbound::dev_idp::{DevKey, DevTokenRequest};
use portcullis::inbound::sessions::PER_USER;
use portcullis::runtime::Live;
use portcullis::server::{Gateway, http as gw_http};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

const HOST: &str = "127.0.0.1:18787";

struct Rig {
    router: Router,
    alice: String,
    bob: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

/// A gateway with the development identity provider (nothing listens: requests go straight
/// to the router) and tokens for two users.
async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!("[dev_idp]\n\n[server]\nlisten = \"{HOST}\"\n"),
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    let snapshot = portcullis::config::load(&config).unwrap();
    let (server, dev) = portcullis::config::load_dev_idp(&config).unwrap();
    let key = DevKey::load_or_create(&dev.key_file).unwrap();
    let token = |user: &str| {
        let req = DevTokenRequest {
            user: user.into(),
            agent: "test".into(),
            scopes: vec![],
            ttl: Duration::from_secs(600),
            claims: Default::default(),
        };
        key.mint(&server, &req).unwrap()
    };
    let (alice, bob) = (token("alice"), token("bob"));
    let shutdown = CancellationToken::new();
    let auth = Authenticator::new(&snapshot, reqwest::Client::new())
        .unwrap()
        .map(Arc::new);
    let live = Live::start(snapshot, auth, reqwest::Client::new(), shutdown.clone())
        .await
        .unwrap();
    let router = gw_http::router(Gateway::new(live), shutdown.clone());
    Rig {
        router,
        alice,
        bob,
        shutdown,
        _dir: dir,
    }
}

impl Rig {
    async fn post(&self, token: &str, session: Option<&str>, body: &str) -> http::Response<Body> {
        let mut req = Request::post("/mcp")
            .header("host", HOST)
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-11-25");
        if let Some(id) = session {
            req = req.header("mcp-session-id", id);
        }
        let mut req = req.body(Body::from(body.to_string())).unwrap();
        req.extensions_mut().insert(ConnectInfo(
            "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
        ));
        self.router.clone().oneshot(req).await.unwrap()
    }

    /// Open a legacy (2025-11-25) session; its id.
    async fn open_session(&self, token: &str) -> String {
        let resp = self
            .post(
                token,
                None,
                r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"test","version":"1"}}}"#,
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK, "initialize");
        resp.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_string()
    }

    /// The status of a notification sent on session `id`.
    async fn use_session(&self, token: &str, id: &str) -> StatusCode {
        self.post(
            token,
            Some(id),
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        )
        .await
        .status()
    }
}

#[tokio::test]
async fn one_user_abandoning_a_thousand_sessions_does_not_lock_out_another() {
    let rig = rig().await;
    let mut alices = Vec::new();
    for _ in 0..1_000 {
        alices.push(rig.open_session(&rig.alice).await);
    }

    // Bob is not affected.
    let bobs = rig.open_session(&rig.bob).await;
    assert!(rig.use_session(&rig.bob, &bobs).await.is_success());

    // Alice's newest sessions still work; her oldest were displaced by her own newer ones
    // (the table holds at most PER_USER of hers), and answer as unknown sessions.
    let newest = alices.last().unwrap();
    assert!(rig.use_session(&rig.alice, newest).await.is_success());
    assert_eq!(
        rig.use_session(&rig.alice, &alices[0]).await,
        StatusCode::NOT_FOUND,
        "the oldest of 1,000 abandoned sessions is forgotten"
    );
    let kept = alices[alices.len() - PER_USER + 1..].to_vec();
    for id in &kept {
        assert!(
            rig.use_session(&rig.alice, id).await.is_success(),
            "one of alice's {PER_USER} most recent sessions"
        );
    }
    // Neither can use the other's session.
    assert_eq!(
        rig.use_session(&rig.bob, newest).await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        rig.use_session(&rig.alice, &bobs).await,
        StatusCode::NOT_FOUND
    );
    rig.shutdown.cancel();
}

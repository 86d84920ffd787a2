//! A refused request is audited with the request id its response echoed and the path it
//! asked for, so an operator can match a client's report ("my request abc-123 got 401") to
//! the audit line, whatever the log filter.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use portcullis::inbound::Authenticator;
use portcullis::runtime::Live;
use portcullis::server::{Gateway, http as gw_http};
use portcullis::telemetry::{self, LogFormat};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing_subscriber::EnvFilter;

/// What the code under test writes to one of the gateway's streams.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// Each line, which must be one JSON object.
    fn json_lines(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("not one JSON object per line ({e}): {l}"))
            })
            .collect()
    }
}

#[tokio::test]
async fn refusal_carries_the_echoed_request_id_and_the_path() {
    // The gateway's own subscriber, with the log filter as strict as `PORTCULLIS_LOG=error`:
    // the audit is not behind it.
    let (logs, audit) = (Captured::default(), Captured::default());
    let (l, a) = (logs.clone(), audit.clone());
    let subscriber = telemetry::subscriber(
        LogFormat::default(),
        Some(EnvFilter::new("error")),
        move || l.clone(),
        move || a.clone(),
    );
    let _guard = tracing::subscriber::set_default(subscriber);

    let dir = tempfile::tempdir().unwrap();
    // An issuer that is never reached: a request without a token is refused before any key
    // is needed.
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[[inbound.issuers]]\nissuer = \"http://127.0.0.1:1\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    let snapshot = portcullis::config::load(&dir.path().join("gateway.toml")).unwrap();
    let shutdown = CancellationToken::new();
    let auth = Authenticator::new(&snapshot, reqwest::Client::new())
        .unwrap()
        .map(Arc::new);
    let live = Live::start(snapshot, auth, reqwest::Client::new(), shutdown.clone())
        .await
        .unwrap();
    let router = gw_http::router(Gateway::new(live), shutdown.clone());

    let mut req = Request::post("/mcp")
        .header("host", "127.0.0.1")
        .header("x-request-id", "client-chosen-42")
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    req.extensions_mut().insert(ConnectInfo(
        "127.0.0.1:40000".parse::<SocketAddr>().unwrap(),
    ));
    let resp = router.oneshot(req).await.unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["x-request-id"], "client-chosen-42");

    let lines = audit.json_lines();
    let refusal = lines
        .iter()
        .find(|l| l["decision"] == "deny")
        .unwrap_or_else(|| panic!("no refusal audited: {lines:?}"));
    assert_eq!(refusal["stream"], "portcullis::audit", "{refusal}");
    assert_eq!(refusal["request_id"], "client-chosen-42", "{refusal}");
    assert_eq!(refusal["path"], "/mcp", "{refusal}");
    assert_eq!(refusal["outcome"]["code"], 401, "{refusal}");
    assert!(
        !logs.text().contains("client-chosen-42"),
        "the log does not repeat the audit: {}",
        logs.text()
    );
    shutdown.cancel();
}

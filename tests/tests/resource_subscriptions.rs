//! 2026-07-28 resource subscriptions through the gateway: `subscriptions/listen` with
//! `resourceSubscriptions` subscribes upstream (the conformance fixture, whose
//! `test://watched-resource` changes every second while subscribed), delivers
//! `notifications/resources/updated` to the listener under its subscription id, and
//! unsubscribes upstream only when the last listener that wanted the URI has ended.
//!
//! A recording proxy between the gateway and the fixture shows what reached the upstream.

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt as _;
use http::{HeaderMap, StatusCode};
use portcullis_e2e::{Era, Gateway, MockServer, Proc, connect_as, spawn_until_line};
use rmcp::RoleClient;
use rmcp::model::{ClientConfig, ServerNotification, SubscriptionFilter};
use rmcp::service::{RunningService, ServiceError, Subscription};
use tokio::sync::watch;

const WATCHED: &str = "test://watched-resource";
/// The fixture changes the resource every second; the chain must deliver well within this.
const WITHIN: Duration = Duration::from_secs(20);

/// `(method, uri)` of every `resources/subscribe` and `resources/unsubscribe` the upstream
/// received, in order.
type Seen = watch::Sender<Vec<(String, String)>>;

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    seen: Seen,
}

/// Forward everything to the fixture (streamed: its session stream stays open), noting the
/// subscription requests.
async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    if let Ok(msg) = serde_json::from_slice::<serde_json::Value>(&body) {
        let method = msg["method"].as_str().unwrap_or_default();
        if method == "resources/subscribe" || method == "resources/unsubscribe" {
            let uri = msg["params"]["uri"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            st.seen.send_modify(|s| s.push((method.to_string(), uri)));
        }
    }
    let mut out = st.http.request(parts.method.clone(), &st.upstream);
    for (name, value) in &parts.headers {
        if portcullis_e2e::forwardable(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if portcullis_e2e::forwardable(name) {
            headers.append(name, value.clone());
        }
    }
    let status = resp.status();
    let mut response =
        Body::from_stream(resp.bytes_stream().map_err(std::io::Error::other)).into_response();
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// Fixture, recording proxy, gateway (target `fx`). The gateway drops first.
struct Stack {
    gateway: Gateway,
    seen: watch::Receiver<Vec<(String, String)>>,
    _proxy: MockServer,
    _fixture: Proc,
}

/// The stack with `targets` targets (`fx`, `fy`, …) on the one fixture.
async fn start(targets: usize) -> Stack {
    let (fixture, fixture_url) = spawn_until_line(
        Command::new(env!("CARGO_BIN_EXE_conformance-fixture")),
        "conformance-fixture",
        "http://",
        Duration::from_secs(30),
    )
    .unwrap();
    let (seen, seen_rx) = watch::channel(vec![]);
    let state = ProxyState {
        upstream: fixture_url,
        http: portcullis_e2e::proxy_http_client(),
        seen,
    };
    let proxy = MockServer::start(axum::Router::new().fallback(forward).with_state(state)).await;
    // 2025-11-25 sessions, so the proxy sees resources/subscribe and resources/unsubscribe
    // (a 2026-07-28 upstream is followed on listen streams instead, `targets/mcp/listen.rs`).
    let target = format!(
        "[mcp]\nurl = \"{}\"\nprotocol = \"2025-11-25\"\n",
        proxy.url("/mcp")
    );
    let targets: Vec<_> = ["fx", "fy"][..targets]
        .iter()
        .map(|name| (*name, target.clone()))
        .collect();
    let gateway = tokio::task::spawn_blocking(move || Gateway::start("", &targets).unwrap())
        .await
        .unwrap();
    Stack {
        gateway,
        seen: seen_rx,
        _proxy: proxy,
        _fixture: fixture,
    }
}

impl Stack {
    /// How many times the upstream received `method` for `uri` so far.
    fn count(&self, method: &str, uri: &str) -> usize {
        self.seen
            .borrow()
            .iter()
            .filter(|(m, u)| m == method && u == uri)
            .count()
    }

    /// Wait until the upstream received `method` for `uri` `n` times in all.
    async fn wait_for(&mut self, method: &str, uri: &str, n: usize) {
        let reached = self
            .seen
            .wait_for(|s| s.iter().filter(|(m, u)| m == method && u == uri).count() >= n);
        let reached = tokio::time::timeout(WITHIN, reached).await.is_ok();
        assert!(
            reached,
            "the upstream never received {method} {uri} ({n}x); it saw {:?}",
            self.seen.borrow()
        );
    }
}

async fn client(stack: &Stack) -> RunningService<RoleClient, ClientConfig> {
    connect_as(
        ClientConfig::default(),
        &stack.gateway.url,
        None,
        Era::Modern,
    )
    .await
}

fn watching(uris: &[&str]) -> SubscriptionFilter {
    let mut filter = SubscriptionFilter::builder().tools_list_changed().build();
    filter.resource_subscriptions = Some(uris.iter().map(|u| u.to_string()).collect());
    filter
}

/// The next `notifications/resources/updated` on the subscription (its subscription id
/// checked by rmcp), skipping list changes.
async fn next_update(sub: &mut Subscription) -> String {
    let update = async {
        loop {
            match sub.next().await.unwrap() {
                Some(ServerNotification::ResourceUpdatedNotification(n)) => return n.params.uri,
                Some(ServerNotification::ToolListChangedNotification(_)) => {}
                Some(other) => panic!("unexpected notification: {other:?}"),
                None => panic!("the subscription ended: {:?}", sub.end()),
            }
        }
    };
    tokio::time::timeout(WITHIN, update)
        .await
        .expect("no notifications/resources/updated reached the listener")
}

#[tokio::test(flavor = "multi_thread")]
async fn listeners_share_one_upstream_subscription_released_by_the_last_one() {
    let mut stack = start(1).await;
    let a = client(&stack).await;
    let mut sub_a = a.listen(watching(&[WATCHED])).await.unwrap();
    assert_eq!(
        sub_a.acknowledged().resource_subscriptions,
        Some(vec![WATCHED.to_string()])
    );
    stack.wait_for("resources/subscribe", WATCHED, 1).await;
    assert_eq!(next_update(&mut sub_a).await, WATCHED);

    let b = client(&stack).await;
    let mut sub_b = b.listen(watching(&[WATCHED])).await.unwrap();
    assert_eq!(next_update(&mut sub_b).await, WATCHED);

    // A leaves; B still wants the resource, so the upstream keeps sending updates (it
    // stops its changes the moment it is unsubscribed), and was not told to unsubscribe.
    sub_a.cancel().await.unwrap();
    a.cancel().await.unwrap();
    for _ in 0..2 {
        assert_eq!(next_update(&mut sub_b).await, WATCHED);
    }
    assert_eq!(stack.count("resources/unsubscribe", WATCHED), 0);

    // B leaves too: nobody wants it, the gateway unsubscribes upstream.
    sub_b.cancel().await.unwrap();
    stack.wait_for("resources/unsubscribe", WATCHED, 1).await;
    b.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_uri_no_target_serves_is_left_out_of_the_acknowledgement() {
    // Two targets offer resources: a URI neither lists nor templates belongs to neither.
    let stack = start(2).await;
    let c = client(&stack).await;
    let mut sub = c
        .listen(watching(&[WATCHED, "elsewhere://nobody/serves/this"]))
        .await
        .unwrap();
    assert_eq!(
        sub.acknowledged().resource_subscriptions,
        Some(vec![WATCHED.to_string()])
    );
    assert_eq!(next_update(&mut sub).await, WATCHED);
    sub.cancel().await.unwrap();
    c.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_uri_the_upstream_refuses_ends_the_listener_with_its_error() {
    let mut stack = start(1).await;
    let c = client(&stack).await;
    let mut sub = c
        .listen(watching(&[WATCHED, "test://no-such-resource"]))
        .await
        .unwrap();
    let ended = tokio::time::timeout(WITHIN, async {
        loop {
            match sub.next().await {
                Ok(Some(_)) => {}
                other => return other,
            }
        }
    })
    .await
    .expect("the listener did not end");
    match ended {
        Err(ServiceError::McpError(e)) => {
            assert!(e.message.contains("no-such-resource"), "{e:?}");
        }
        other => panic!(
            "expected the upstream's refusal, got {other:?} ({:?})",
            sub.end()
        ),
    }
    // What it had subscribed is released.
    stack.wait_for("resources/unsubscribe", WATCHED, 1).await;
    c.cancel().await.unwrap();
}

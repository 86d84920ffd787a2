//! `notifications/tools/list_changed` end to end: an upstream (`dynamic-upstream`) adds a tool
//! and announces it; the gateway must refetch that target's tools, publish the new tool under
//! its gateway name, and tell its own clients — on the session stream for 2025-11-25 clients,
//! through `subscriptions/listen` for 2026-07-28 clients.

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use portcullis_e2e::{Era, Gateway, Proc, binary, call_tool, connect_as, spawn_until_line};
use portcullis_e2e::{tool_names, tool_text};
use rmcp::model::{ClientConfig, ProtocolVersion, ServerNotification, SubscriptionFilter};
use rmcp::service::{NotificationContext, RunningService};
use rmcp::{ClientHandler, RoleClient};
use serde_json::json;
use tokio::sync::mpsc;

/// How long the whole upstream -> gateway -> client chain may take to deliver the change.
const NOTIFY_WITHIN: Duration = Duration::from_secs(20);
const ADDED: &str = "fresh";
const ADDED_GATEWAY_NAME: &str = "dyn__fresh";
/// Authentication is not what these tests are about: an open, loopback-only gateway.
const OPEN_GATEWAY: &str = "[inbound]\nmode = \"none\"\n";

/// `dynamic-upstream` and a gateway with it as target `dyn`. Both are killed on drop, the
/// gateway first (fields drop in order), so it does not log the upstream vanishing.
struct Stack {
    gateway: Gateway,
    _upstream: Proc,
}

fn start_stack() -> Stack {
    let bin = binary("portcullis-e2e", "dynamic-upstream");
    let (upstream, url) = spawn_until_line(
        Command::new(bin),
        "dynamic-upstream",
        "http://",
        Duration::from_secs(30),
    )
    .unwrap();
    // dynamic-upstream announces changes on its sessions only (it has no
    // `subscriptions/listen`), so the gateway must reach it the 2025-11-25 way.
    let target = format!("[mcp]\nurl = \"{url}\"\nprotocol = \"2025-11-25\"\n");
    let gateway = Gateway::start(OPEN_GATEWAY, &[("dyn", target)]).unwrap();
    Stack {
        gateway,
        _upstream: upstream,
    }
}

/// A 2025-11-25 client that reports every `notifications/tools/list_changed` on a channel.
#[derive(Clone)]
struct ListChangedSignal(mpsc::UnboundedSender<()>);

impl ClientHandler for ListChangedSignal {
    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        // The test may have finished already; a closed channel is fine then.
        let _ = self.0.send(());
    }
}

async fn lists_tool<S: rmcp::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    name: &str,
) -> bool {
    tool_names(client).await.iter().any(|n| n == name)
}

/// Before the change: only the upstream's initial tool is published.
async fn assert_initial_catalog<S: rmcp::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
) {
    let names = tool_names(client).await;
    assert!(
        names.iter().any(|n| n == "dyn__add_tool"),
        "initial tools: {names:?}"
    );
    assert!(
        !names.iter().any(|n| n == ADDED_GATEWAY_NAME),
        "initial tools: {names:?}"
    );
}

/// Ask the upstream, through the gateway, to add the tool (which makes it announce the change).
async fn add_fresh_tool<S: rmcp::Service<RoleClient>>(client: &RunningService<RoleClient, S>) {
    let added = call_tool(client, "dyn__add_tool", json!({ "name": ADDED }))
        .await
        .unwrap();
    assert!(
        tool_text(&added).contains(ADDED),
        "add_tool answered {added:?}"
    );
}

/// After the change: the new tool is listed and calls reach the upstream's new tool.
async fn assert_fresh_tool_works<S: rmcp::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
) {
    let echoed = call_tool(client, ADDED_GATEWAY_NAME, json!({ "probe": 42 }))
        .await
        .unwrap();
    let echoed: serde_json::Value = serde_json::from_str(&tool_text(&echoed)).unwrap();
    assert_eq!(echoed, json!({ "probe": 42 }));
}

#[tokio::test(flavor = "multi_thread")]
async fn legacy_session_client_is_told_when_an_upstream_adds_a_tool() {
    let stack = start_stack();
    let (tx, mut changed) = mpsc::unbounded_channel();
    let client = connect_as(ListChangedSignal(tx), &stack.gateway.url, None, Era::Legacy).await;
    let negotiated = client.peer_info().map(|info| info.protocol_version.clone());
    assert_eq!(negotiated, Some(ProtocolVersion::V_2025_11_25));

    assert_initial_catalog(&client).await;
    add_fresh_tool(&client).await;

    // Only a notification may trigger the re-list (no polling, no sleeps), and the list is
    // checked after each one, so an unrelated earlier notification cannot fail the test.
    let shown = async {
        while changed.recv().await.is_some() {
            if lists_tool(&client, ADDED_GATEWAY_NAME).await {
                return;
            }
        }
        panic!("client handler dropped");
    };
    tokio::time::timeout(NOTIFY_WITHIN, shown)
        .await
        .expect("no tools/list_changed showing dyn__fresh reached the session client");
    assert_fresh_tool_works(&client).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn subscribed_2026_client_is_told_when_an_upstream_adds_a_tool() {
    let stack = start_stack();
    let client = connect_as(
        ClientConfig::default(),
        &stack.gateway.url,
        None,
        Era::Modern,
    )
    .await;
    let negotiated = client.peer_info().map(|info| info.protocol_version.clone());
    assert_eq!(negotiated, Some(ProtocolVersion::V_2026_07_28));
    let filter = SubscriptionFilter::builder().tools_list_changed().build();
    let mut subscription = client.listen(filter).await.unwrap();
    assert_eq!(subscription.acknowledged().tools_list_changed, Some(true));

    assert_initial_catalog(&client).await;
    add_fresh_tool(&client).await;

    // As above, but the notifications arrive on the subscription, not on a session.
    let shown = async {
        loop {
            match subscription.next().await.unwrap() {
                Some(ServerNotification::ToolListChangedNotification(_)) => {}
                Some(other) => panic!("unexpected notification on the subscription: {other:?}"),
                None => panic!("subscription ended: {:?}", subscription.end()),
            }
            if lists_tool(&client, ADDED_GATEWAY_NAME).await {
                return;
            }
        }
    };
    tokio::time::timeout(NOTIFY_WITHIN, shown)
        .await
        .expect("no tools/list_changed showing dyn__fresh reached the subscription");
    assert_fresh_tool_works(&client).await;
    subscription.cancel().await.unwrap();
    client.cancel().await.unwrap();
}

//! User consent (3LO) end to end on the quickstart's own pieces: the real gateway with its
//! development IdP, the demo provider "Acme Tasks" started beside it (`[demo_provider]`), and
//! a target that acts for each user with that user's consent. A scripted browser (plain HTTP,
//! `portcullis_e2e::web`) plays the user: it opens the link the call answered with, signs in
//! at the development login, approves on the consent page and at the provider, and comes back
//! to the gateway's callback. Each kind of MCP client gets the hand-off it can use: -32042
//! and a completion notification (2025-11-25 with URL elicitation), `input_required` and a
//! retry with `requestState` (2026-07-28), or a text result (no URL elicitation).
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::time::Duration;

use portcullis_e2e::web::Browser;
use portcullis_e2e::{Era, Gateway, connect_as, mcp_error, tool_args, tool_text};
use rmcp::model::*;
use rmcp::service::{NotificationContext, RoleClient, RunningService, ServiceError};
use rmcp::{ClientHandler, ErrorData};
use serde_json::json;
use tokio::sync::mpsc;

const GATEWAY: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n";

/// The quickstart's target file, for a demo provider on `port`.
fn tasks_target(port: u16) -> String {
    let file =
        std::fs::read_to_string(portcullis_e2e::repo_root().join("targets/tasks.toml")).unwrap();
    file.replace("127.0.0.1:8788", &format!("127.0.0.1:{port}"))
}

struct Stack {
    gateway: Gateway,
}

fn start() -> Stack {
    // The demo provider's port must be known before the target file is written.
    let port = portcullis_e2e::port_for_peer_script();
    let toml = format!("{GATEWAY}[demo_provider]\nlisten = \"127.0.0.1:{port}\"\n");
    let gateway = Gateway::start(&toml, &[("tasks", tasks_target(port))]).unwrap();
    Stack { gateway }
}

/// A client that can open URLs for its user (`elicitation.url`) and reports every custom
/// notification it hears (`notifications/elicitation/complete`).
#[derive(Clone)]
struct UrlCapable {
    heard: mpsc::UnboundedSender<CustomNotification>,
}

impl ClientHandler for UrlCapable {
    fn get_info(&self) -> ClientConfig {
        portcullis_e2e::url_elicitation_client("url-capable-test-client")
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.heard.send(notification);
    }
}

fn url_capable() -> (UrlCapable, mpsc::UnboundedReceiver<CustomNotification>) {
    let (heard, rx) = mpsc::unbounded_channel();
    (UrlCapable { heard }, rx)
}

async fn call<S: rmcp::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &str,
    args: serde_json::Value,
) -> Result<CallToolResponse, ServiceError> {
    client
        .peer()
        .call_tool_once(
            CallToolRequestParams::new(tool.to_string()).with_arguments(tool_args(args)),
        )
        .await
}

fn complete(r: CallToolResponse) -> CallToolResult {
    match r {
        CallToolResponse::Complete(r) => r,
        other => panic!("expected a complete result, got {other:?}"),
    }
}

/// The URL and elicitation id of a 2025-11-25 -32042 answer.
fn url_elicitation(e: &ErrorData) -> (String, String) {
    assert_eq!(e.code.0, -32042, "{e:?}");
    let data = e.data.as_ref().unwrap();
    let first = &data["elicitations"][0];
    assert_eq!(first["mode"], "url", "{data}");
    (
        first["url"].as_str().unwrap().to_string(),
        first["elicitationId"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2025_client_gets_32042_then_the_completion_and_its_retry_succeeds() {
    let stack = start();
    let token = stack
        .gateway
        .dev_token(&["--user", "alice", "--agent", "agent-a"]);
    let (handler, mut heard) = url_capable();
    let client = connect_as(handler, &stack.gateway.url, Some(&token), Era::Legacy).await;

    let e = mcp_error(
        call(&client, "tasks__list_tasks", json!({}))
            .await
            .unwrap_err(),
    );
    let (link, elicitation_id) = url_elicitation(&e);
    assert!(
        link.starts_with(&format!("{}/consent/", stack.gateway.base())),
        "{link}"
    );
    assert!(
        e.message.contains("agent-a"),
        "names the agent: {}",
        e.message
    );
    // The link carries only an opaque id: no user, no token.
    assert!(
        !link.contains("alice") && !link.contains("agent-a"),
        "{link}"
    );

    let mut browser = Browser::new();
    let done = browser.consent(&link, "alice", "approve").await.unwrap();
    assert_eq!(done.outcome().as_deref(), Some("done"), "{}", done.text());

    let note = tokio::time::timeout(Duration::from_secs(30), heard.recv())
        .await
        .expect("the completion notification arrives")
        .unwrap();
    assert_eq!(note.method, "notifications/elicitation/complete");
    assert_eq!(
        note.params.as_ref().unwrap()["elicitationId"],
        json!(elicitation_id)
    );

    // add_task needs tasks:write too: its first call asks again, for the union of scopes.
    let e = mcp_error(
        call(&client, "tasks__add_task", json!({"title": "buy milk"}))
            .await
            .unwrap_err(),
    );
    let (link, _) = url_elicitation(&e);
    let done = browser.consent(&link, "alice", "approve").await.unwrap();
    assert_eq!(done.outcome().as_deref(), Some("done"), "{}", done.text());
    let added = complete(
        call(&client, "tasks__add_task", json!({"title": "buy milk"}))
            .await
            .unwrap(),
    );
    assert!(tool_text(&added).contains("buy milk"), "{added:?}");
    let listed = complete(call(&client, "tasks__list_tasks", json!({})).await.unwrap());
    assert!(tool_text(&listed).contains("buy milk"), "{listed:?}");
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2026_client_gets_input_required_and_its_retry_with_the_state_succeeds() {
    let stack = start();
    let alice = stack
        .gateway
        .dev_token(&["--user", "alice", "--agent", "agent-b"]);
    let bob = stack
        .gateway
        .dev_token(&["--user", "bob", "--agent", "agent-b"]);
    let (handler, _heard) = url_capable();
    let client = connect_as(
        handler.clone(),
        &stack.gateway.url,
        Some(&alice),
        Era::Modern,
    )
    .await;
    let bobs = connect_as(handler, &stack.gateway.url, Some(&bob), Era::Modern).await;

    let CallToolResponse::InputRequired(asked) =
        call(&client, "tasks__list_tasks", json!({})).await.unwrap()
    else {
        panic!("expected input_required");
    };
    let state = asked.request_state.clone().expect("a requestState");
    let requests = asked.input_requests.clone().expect("input requests");
    let request = serde_json::to_value(&requests).unwrap();
    let link = request["consent"]["params"]["url"]
        .as_str()
        .unwrap_or_else(|| panic!("a URL elicitation: {request}"))
        .to_string();
    assert_eq!(request["consent"]["params"]["mode"], "url", "{request}");

    let retry = |state: &str, args: serde_json::Value| {
        CallToolRequestParams::new("tasks__list_tasks")
            .with_arguments(tool_args(args))
            .with_request_state(state.to_string())
    };
    // Before consent, the retry is answered with the same link (the consent still waits).
    let CallToolResponse::InputRequired(again) = client
        .peer()
        .call_tool_once(retry(&state, json!({})))
        .await
        .unwrap()
    else {
        panic!("expected input_required before consent");
    };
    let again = serde_json::to_value(again.input_requests.unwrap()).unwrap();
    assert_eq!(again["consent"]["params"]["url"], json!(link));

    // A state is bound to its caller, tool and arguments, and sealed.
    for (who, params) in [
        ("bob replaying alice's state", retry(&state, json!({}))),
        ("other arguments", retry(&state, json!({"x": 1}))),
        ("a tampered state", retry(&format!("{state}A"), json!({}))),
    ] {
        let c = if who.starts_with("bob") {
            &bobs
        } else {
            &client
        };
        let e = mcp_error(c.peer().call_tool_once(params).await.unwrap_err());
        assert_eq!(e.code.0, -32602, "{who}: {e:?}");
        assert!(e.message.contains("requestState"), "{who}: {}", e.message);
    }

    let done = Browser::new()
        .consent(&link, "alice", "approve")
        .await
        .unwrap();
    assert_eq!(done.outcome().as_deref(), Some("done"), "{}", done.text());
    let r = complete(
        client
            .peer()
            .call_tool_once(retry(&state, json!({})))
            .await
            .unwrap(),
    );
    assert!(!r.is_error.unwrap_or(false), "{r:?}");
    client.cancel().await.unwrap();
    bobs.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_client_without_url_elicitation_gets_the_link_as_text() {
    let stack = start();
    let token = stack
        .gateway
        .dev_token(&["--user", "carol", "--agent", "plain"]);
    let client = connect_as(
        ClientConfig::default(),
        &stack.gateway.url,
        Some(&token),
        Era::Legacy,
    )
    .await;
    let r = complete(call(&client, "tasks__list_tasks", json!({})).await.unwrap());
    assert_eq!(r.is_error, Some(true));
    let text = &r.content[0].as_text().unwrap().text;
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/consent/"))
        .unwrap_or_else(|| panic!("a link in: {text}"));
    assert!(text.contains("call the tool again"), "{text}");
    let done = Browser::new()
        .consent(link, "carol", "approve")
        .await
        .unwrap();
    assert_eq!(done.outcome().as_deref(), Some("done"), "{}", done.text());
    let r = complete(call(&client, "tasks__list_tasks", json!({})).await.unwrap());
    assert_ne!(r.is_error, Some(true), "{r:?}");
    client.cancel().await.unwrap();
}

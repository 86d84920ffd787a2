//! How the gateway frames its answers on the wire: a 2026-07-28 request whose reply is one
//! message gets plain JSON (no SSE framing to write and parse); a 2025-11-25 session keeps its
//! SSE answers (the stream that carries relays and notifications).

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use portcullis_e2e::{Gateway, binary};
use serde_json::{Value, json};

const TEXT: &str = "framed-answer";

async fn post(url: &str, headers: &[(&str, &str)], body: Value) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("accept", "application/json, text/event-stream");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.json(&body).send().await.unwrap()
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_2026_call_is_answered_in_plain_json_and_a_2025_session_call_in_sse() {
    // The demo upstream over stdio: what is measured is the gateway's own framing.
    let target = format!(
        "[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    );
    let gw = tokio::task::spawn_blocking(move || Gateway::start("", &[("demo", target)]))
        .await
        .unwrap()
        .unwrap();

    // 2026-07-28: no session; the declaration travels with the request.
    let call = json!({
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {
            "name": "demo__echo", "arguments": {"text": TEXT},
            "_meta": {
                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                "io.modelcontextprotocol/clientInfo": {"name": "answers-test", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            }
        }
    });
    let modern = [
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "demo__echo"),
    ];
    let resp = post(&gw.url, &modern, call).await;
    assert_eq!(resp.status(), 200);
    assert!(
        content_type(&resp).starts_with("application/json"),
        "a one-message 2026 answer is plain JSON, got {}",
        content_type(&resp)
    );
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["id"], 1);
    assert!(answer["result"].to_string().contains(TEXT), "{answer}");

    // 2025-11-25: a session, whose answers stay on SSE.
    let init = json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "answers-test", "version": "1"}}
    });
    let resp = post(&gw.url, &[("mcp-protocol-version", "2025-11-25")], init).await;
    let session = resp.headers()["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    drop(resp.text().await.unwrap());
    let legacy = [
        ("mcp-protocol-version", "2025-11-25"),
        ("mcp-session-id", session.as_str()),
    ];
    let initialized = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
    assert_eq!(post(&gw.url, &legacy, initialized).await.status(), 202);
    let call = json!({
        "jsonrpc": "2.0", "id": 2, "method": "tools/call",
        "params": {"name": "demo__echo", "arguments": {"text": TEXT}}
    });
    let resp = post(&gw.url, &legacy, call).await;
    assert!(
        content_type(&resp).starts_with("text/event-stream"),
        "a 2025 session answers on SSE, got {}",
        content_type(&resp)
    );
    let body = resp.text().await.unwrap();
    assert!(body.contains(TEXT), "{body}");
}

//! Many callers, one shared upstream session: the gateway must not queue their calls behind a
//! small number in flight. `dynamic-upstream`'s `gather {n}` answers only once `n` of its calls
//! are in progress at the same time, so the test passes only if the gateway lets every caller's
//! call reach the upstream together (rmcp's client alone allows 16 per session).

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use portcullis_e2e::{Gateway, binary, call_tool, connect, result_text, spawn_until_line};
use serde_json::json;

/// More callers than rmcp's default of 16 requests in flight per client session.
const CALLERS: usize = 40;

#[tokio::test]
async fn callers_of_one_shared_upstream_session_are_not_queued_behind_each_other() {
    let (_upstream, url) = spawn_until_line(
        Command::new(binary("portcullis-e2e", "dynamic-upstream")),
        "dynamic-upstream",
        "http://",
        Duration::from_secs(30),
    )
    .unwrap();
    let gateway = Gateway::start(
        "[inbound]\nmode = \"none\"\n",
        &[(
            "dyn",
            format!("timeout = \"60s\"\n[mcp]\nurl = \"{url}\"\n"),
        )],
    )
    .unwrap();
    let endpoint = format!("{}/mcp", gateway.base());
    // One client per caller: each client session has its own limit of requests in flight.
    let mut clients = Vec::new();
    for _ in 0..CALLERS {
        clients.push(connect(&endpoint, None).await);
    }
    let calls = clients
        .iter()
        .map(|c| call_tool(c, "dyn__gather", json!({ "n": CALLERS })));
    for result in futures::future::join_all(calls).await {
        let result = result.unwrap();
        assert_eq!(
            result.is_error,
            Some(false),
            "a call did not meet the others at the upstream: {}",
            result_text(&result)
        );
        assert_eq!(result_text(&result), format!("gathered {CALLERS}"));
    }
}

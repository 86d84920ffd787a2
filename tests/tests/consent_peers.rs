//! User consent (3LO) with real peers only: the OpenID provider of `../shared/peers/idp` is
//! both the gateway's inbound issuer (callers' tokens, and the consent pages' sign-in by
//! OpenID Connect) and the third-party authorization server the target's grants come from.
//! The upstream is a second Portcullis that admits only tokens that IdP issued for it, so a
//! call that succeeds proves the user's own grant reached it. Headless Chromium plays the
//! user (signs in at the IdP, approves at the gateway and at the IdP); the MCP clients are
//! the official Python SDK (2025-11-25, URL elicitation) and rmcp (2026-07-28, and a client
//! without URL elicitation).
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::Path;
use std::time::Duration;

use portcullis_e2e::browser::{self, Decision};
use portcullis_e2e::{
    Era, Gateway, Idp, Serve, binary, connect_as, eventually, peers, port_for_peer_script,
    python_client, python_peers, tool_args, write_config,
};
use rmcp::model::*;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

const CLIENT: &str = "confidential-client";
const SECRET: &str = "confidential-client-secret";

/// The upstream: a Portcullis that admits only the IdP's tokens for its own URL, fronting the
/// demo tools; its log (audit lines name each caller) goes to `log`.
fn validating_upstream(issuer: &str, log: &Path) -> Gateway {
    let gw = format!("[[inbound.issuers]]\nissuer = \"{issuer}\"\n");
    let demo = format!(
        "[mcp]\ncommand = \"{}\"\nargs = [\"demo-upstream\"]\n",
        binary("portcullis", "portcullis").display()
    );
    Gateway::serve(
        write_config(&gw, &[("demo", demo)]).unwrap(),
        &Serve {
            env: &[("PORTCULLIS_LOG", "warn")],
            log_file: Some(log.to_path_buf()),
            ..Serve::default()
        },
    )
    .unwrap()
}

/// The front gateway on `port`: the IdP as issuer (with its consent sign-in client) and one
/// target acting for each user with the IdP as authorization server.
fn front(port: u16, idp: &Idp, upstream: &Gateway) -> Gateway {
    let gw = format!(
        "[server]\nlisten = \"127.0.0.1:{port}\"\n\n[[inbound.issuers]]\nissuer = \"{issuer}\"\n\
         [inbound.issuers.consent_login]\nclient_id = \"{CLIENT}\"\nclient_secret = \"env:E2E_CONSENT_SECRET\"\nscopes = [\"openid\", \"profile\"]\n",
        issuer = idp.issuer
    );
    let target = format!(
        "[mcp]\nurl = \"{url}\"\n\n[auth]\nmode = \"oauth2_authorization_code\"\nprovider = \"custom\"\n\
         issuer = \"{issuer}\"\nclient_id = \"{CLIENT}\"\nclient_secret = \"env:E2E_CONSENT_SECRET\"\n\
         scopes = [\"mcp:read\"]\nresource = \"{url}\"\n\n\
         [tools.demo__echo]\ndescription = \"Echo\"\ninput_schema = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }} }} }}\n",
        url = upstream.url,
        issuer = idp.issuer
    );
    Gateway::serve(
        write_config(&gw, &[("up", target)]).unwrap(),
        &Serve {
            env: &[("E2E_CONSENT_SECRET", SECRET)],
            ..Serve::default()
        },
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_whole_loop_with_the_real_idp_chromium_and_the_python_sdk_in_both_eras() {
    let Some(peers) = peers() else { return };
    if python_peers().is_none() {
        return;
    }
    let Some(chromium) = browser::chromium() else {
        return;
    };
    let port = port_for_peer_script();
    let base = format!("http://127.0.0.1:{port}");
    let redirects = format!("{base}/consent/login/callback,{base}/consent/callback");
    let idp = Idp::start_with_env(&peers, &[("IDP_REDIRECT_URIS", &redirects)]).unwrap();
    let logs = tempfile::tempdir().unwrap();
    let upstream_log = logs.path().join("upstream.log");
    let upstream = {
        let issuer = idp.issuer.clone();
        let log = upstream_log.clone();
        tokio::task::spawn_blocking(move || validating_upstream(&issuer, &log))
            .await
            .unwrap()
    };
    let gw = front(port, &idp, &upstream);
    let token = |user: &str| idp.user_token(user, &gw.url).unwrap();

    // 1. The Python SDK, 2025-11-25 with URL elicitation: -32042, then (after alice's
    //    consent in Chromium) the completion notification, and its retry succeeds.
    // The peer's client script installs the SDK's venv on first use (and checks the gateway).
    let info = python_client(&peers, &gw.url, &["--token", &token("alice"), "info"]).unwrap();
    assert_eq!(info["ok"], true, "{info}");
    let venv = std::env::var("PEERS_CACHE").unwrap_or_else(|_| "/tmp/peers-cache".into());
    let py = Path::new(&venv).join("mcp/venv/bin/python");
    let mut child = tokio::process::Command::new(&py)
        .arg(portcullis_e2e::repo_root().join("tests/py/consent_client.py"))
        .arg(&gw.url)
        .arg(token("alice"))
        .arg("up__demo__echo")
        .arg(json!({"text": "hello from alice"}).to_string())
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let asked: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the Python client reported nothing")
            .unwrap()
            .expect("the Python client ended without the consent link"),
    )
    .unwrap();
    let link = asked["url"]
        .as_str()
        .unwrap_or_else(|| panic!("{asked}"))
        .to_string();
    assert!(link.starts_with(&format!("{base}/consent/")), "{link}");
    let seen = chromium
        .complete(&link, "alice", None, Decision::Approve)
        .await;
    assert_eq!(seen.outcome, "done", "{seen:?}");
    // Chromium signed in at the IdP and approved there too.
    assert!(
        seen.hops.iter().any(|h| h.starts_with(&idp.issuer)),
        "{:?}",
        seen.hops
    );
    let report: Value = serde_json::from_str(
        &tokio::time::timeout(Duration::from_secs(90), lines.next_line())
            .await
            .expect("the Python client reported nothing after consent")
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(report["completed"], true, "{report}");
    assert_eq!(report["ok"], true, "{report}");
    assert!(
        report["text"]
            .as_str()
            .unwrap()
            .contains("hello from alice"),
        "{report}"
    );

    // 2. rmcp on 2026-07-28: input_required with a URL and a requestState; bob consents in
    //    Chromium; the retry with the state succeeds.
    let bob = connect_as(
        portcullis_e2e::url_elicitation_client("url-capable-test-client"),
        &gw.url,
        Some(&token("bob")),
        Era::Modern,
    )
    .await;
    let params = CallToolRequestParams::new("up__demo__echo")
        .with_arguments(tool_args(json!({"text": "hello from bob"})));
    let CallToolResponse::InputRequired(asked) =
        bob.peer().call_tool_once(params.clone()).await.unwrap()
    else {
        panic!("expected input_required");
    };
    let requests = serde_json::to_value(asked.input_requests.unwrap()).unwrap();
    let link = requests["consent"]["params"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let seen = chromium
        .complete(&link, "bob", None, Decision::Approve)
        .await;
    assert_eq!(seen.outcome, "done", "{seen:?}");
    let CallToolResponse::Complete(r) = bob
        .peer()
        .call_tool_once(params.with_request_state(asked.request_state.unwrap()))
        .await
        .unwrap()
    else {
        panic!("expected the retried call to complete");
    };
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert!(
        serde_json::to_string(&r)
            .unwrap()
            .contains("hello from bob"),
        "{r:?}"
    );
    bob.cancel().await.unwrap();

    // 3. A client without URL elicitation gets the link as text.
    let carol = connect_as(
        ClientConfig::default(),
        &gw.url,
        Some(&token("carol")),
        Era::Legacy,
    )
    .await;
    let CallToolResponse::Complete(r) = carol
        .peer()
        .call_tool_once(
            CallToolRequestParams::new("up__demo__echo")
                .with_arguments(tool_args(json!({"text": "x"}))),
        )
        .await
        .unwrap()
    else {
        panic!("expected a tool result");
    };
    assert_eq!(r.is_error, Some(true));
    let text = &r.content[0].as_text().unwrap().text;
    assert!(text.contains(&format!("{base}/consent/")), "{text}");
    carol.cancel().await.unwrap();

    // Per-user isolation: the upstream verified each call's token and audited its user;
    // alice's call arrived as alice, bob's as bob, each with the IdP's token for the target.
    let audited = eventually(Duration::from_secs(10), || {
        let log = std::fs::read_to_string(&upstream_log).ok()?;
        let calls: Vec<Value> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["method"] == "tools/call")
            .collect();
        (calls.len() >= 2).then_some(calls)
    })
    .unwrap();
    let callers: Vec<&str> = audited
        .iter()
        .map(|v| v["caller"].as_str().unwrap())
        .collect();
    assert!(
        callers.contains(&"alice via confidential-client"),
        "{callers:?}"
    );
    assert!(
        callers.contains(&"bob via confidential-client"),
        "{callers:?}"
    );
    assert!(
        !callers.iter().any(|c| c.starts_with("carol")),
        "{callers:?}"
    );
}

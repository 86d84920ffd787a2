//! The gateway fronting the reference server (`@modelcontextprotocol/server-everything`) over
//! streamable HTTP and over stdio at once; the official Python SDK client and an rmcp client
//! list and call tools through it in both protocol eras.
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

use portcullis_e2e::{Era, Everything, Gateway, call_tool, connect_as, everything_stdio_command};
use portcullis_e2e::{peers, python_client, python_peers, tool_names, tool_text};
use rmcp::model::{CallToolRequestParams, ClientConfig};

struct Setup {
    gw: Gateway,
    _everything: Everything,
    peers: std::path::PathBuf,
}

/// `python`: the test also runs the Python SDK client.
fn setup(python: bool) -> Option<Setup> {
    let peers = if python { python_peers() } else { peers() }?;
    let everything = Everything::start(&peers).expect("server-everything starts");
    let (node, args) = everything_stdio_command(&peers).expect("server-everything installed");
    let http_target = format!("prefix = \"ev\"\n[mcp]\nurl = \"{}\"\n", everything.url);
    let stdio_target = format!(
        "prefix = \"evs\"\n[mcp]\ncommand = \"{node}\"\nargs = {}\n",
        serde_json::to_string(&args).unwrap()
    );
    // A secret in the gateway's own environment, which no stdio target was granted.
    let gw = Gateway::start_with_env(
        "",
        &[
            ("everything", http_target),
            ("everything_stdio", stdio_target),
        ],
        &[("PORTCULLIS_E2E_GATEWAY_SECRET", "must-not-reach-children")],
    )
    .expect("gateway starts");
    Some(Setup {
        gw,
        _everything: everything,
        peers,
    })
}

#[test]
fn python_sdk_client_lists_and_calls_both_targets_in_both_eras() {
    let Some(s) = setup(true) else { return };
    for mode in ["legacy", "auto"] {
        let listed = python_client(&s.peers, &s.gw.url, &["--mode", mode, "list"]).unwrap();
        assert_eq!(listed["ok"], true, "{mode}: {listed}");
        let names: Vec<&str> = listed["tools"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        for expected in ["ev__get-sum", "evs__get-sum", "ev__echo", "evs__echo"] {
            assert!(
                names.contains(&expected),
                "{mode}: {expected} missing from {names:?}"
            );
        }
        assert!(
            !names.contains(&"get-sum"),
            "upstream names must be prefixed"
        );
        let expected_version = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(listed["protocol_version"], expected_version, "{mode}");

        for tool in ["ev__get-sum", "evs__get-sum"] {
            let called = python_client(
                &s.peers,
                &s.gw.url,
                &["--mode", mode, "call", tool, r#"{"a":2,"b":40}"#],
            )
            .unwrap();
            assert_eq!(called["ok"], true, "{mode} {tool}: {called}");
            let text = called["result"]["content"][0]["text"]
                .as_str()
                .unwrap_or_default();
            assert!(text.contains("42"), "{mode} {tool}: {called}");
        }
    }
}

#[test]
fn python_sdk_client_answers_an_elicitation_relayed_from_the_upstream() {
    let Some(s) = setup(true) else { return };
    let out = python_client(
        &s.peers,
        &s.gw.url,
        &[
            "--elicit",
            "accept",
            "--elicit-content",
            r#"{"name":"Ada"}"#,
            "call",
            "ev__trigger-elicitation-request",
            "{}",
        ],
    )
    .unwrap();
    assert_eq!(out["ok"], true, "{out}");
    let seen = out["elicitations"]
        .as_array()
        .expect("the client saw the upstream's elicitation");
    assert_eq!(seen.len(), 1, "{out}");
    assert_eq!(seen[0]["mode"], "form");
    let text = out["result"]["content"].to_string();
    assert!(
        text.contains("accept"),
        "the upstream received the client's answer: {out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_client_lists_and_calls_in_both_eras() {
    let Some(s) = setup(false) else { return };
    for era in [Era::Legacy, Era::Modern] {
        let client = connect_as(ClientConfig::default(), &s.gw.url, None, era).await;
        let tools = tool_names(&client).await;
        assert!(tools.iter().any(|t| t == "ev__get-sum"), "{era:?}");
        assert!(tools.iter().any(|t| t == "evs__get-sum"), "{era:?}");
        for name in ["ev__get-sum", "evs__get-sum"] {
            let result = call_tool(&client, name, serde_json::json!({"a": 2, "b": 40}))
                .await
                .unwrap();
            assert!(
                tool_text(&result).contains("42"),
                "{era:?} {name}: {result:?}"
            );
        }
        let missing = client
            .peer()
            .call_tool(CallToolRequestParams::new("ev__no_such_tool"))
            .await;
        let err = format!("{:?}", missing.unwrap_err());
        assert!(
            err.contains("unknown tool `ev__no_such_tool`"),
            "{era:?}: {err}"
        );
        client.cancel().await.ok();
    }
}

#[test]
fn stdio_children_get_a_clean_environment() {
    let Some(s) = setup(true) else { return };
    // server-everything's get-env returns its whole environment.
    let out = python_client(&s.peers, &s.gw.url, &["call", "evs__get-env", "{}"]).unwrap();
    assert_eq!(out["ok"], true, "{out}");
    let env = out["result"]["content"].to_string();
    assert!(
        env.contains("PATH"),
        "the allow-listed basics are inherited: {env}"
    );
    assert!(
        !env.contains("must-not-reach-children"),
        "the gateway's own secrets are not: {env}"
    );
}

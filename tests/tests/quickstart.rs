//! The quickstart as a new user meets it: the repository's own `gateway.toml` and `targets/`,
//! copied into an empty directory (no `.data/`, as on a fresh clone), served by the real binary.
//! HTTP must be served while targets are still connecting: a stdio target that never finishes
//! its handshake (a command that only sleeps) must not hold back `/healthz`, the demo target,
//! or a clear answer about itself.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_e2e::{Gateway, Serve, binary, call_tool, connect, readyz, repo_root, tool_names};
use portcullis_e2e::{mcp_error, tool_text};

/// The repository's quickstart configuration (gateway.toml, targets/, policies/) in a fresh
/// directory, listening on port 0 (the gateway prints the port it got), plus `extra` target
/// files.
fn quickstart_copy(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = repo_root();
    let gateway = std::fs::read_to_string(root.join("gateway.toml")).unwrap();
    assert!(
        gateway.contains("listen = \"127.0.0.1:8787\""),
        "the quickstart listens on 127.0.0.1:8787"
    );
    // The demo provider's port is in gateway.toml and in the target that uses it.
    let provider = format!("127.0.0.1:{}", portcullis_e2e::port_for_peer_script());
    let gateway = gateway
        .replace("listen = \"127.0.0.1:8787\"", "listen = \"127.0.0.1:0\"")
        .replace("127.0.0.1:8788", &provider);
    std::fs::write(dir.path().join("gateway.toml"), gateway).unwrap();
    let targets = dir.path().join("targets");
    std::fs::create_dir(&targets).unwrap();
    for entry in std::fs::read_dir(root.join("targets")).unwrap() {
        let entry = entry.unwrap();
        let body = std::fs::read_to_string(entry.path()).unwrap();
        std::fs::write(
            targets.join(entry.file_name()),
            body.replace("127.0.0.1:8788", &provider),
        )
        .unwrap();
    }
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    for entry in std::fs::read_dir(root.join("policies")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), policies.join(entry.file_name())).unwrap();
    }
    for (name, body) in extra {
        std::fs::write(targets.join(format!("{name}.toml")), body).unwrap();
    }
    assert!(!dir.path().join(".data").exists());
    dir
}

/// A stdio target whose command never speaks MCP: it stays "connecting" for the whole test.
const SLEEPER: &str = r#"
description = "a target that takes forever to start"
connect_timeout = "10m"
[mcp]
command = "sleep"
args = ["600"]
"#;

fn target<'a>(readyz: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    readyz["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no target {name} in {readyz}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn http_is_served_while_a_slow_target_is_still_connecting() {
    let dir = quickstart_copy(&[("sleepy", SLEEPER)]);
    let gw = Gateway::serve(
        dir,
        &Serve {
            until_listening: true,
            ..Serve::default()
        },
    )
    .unwrap();
    let listening = Instant::now();
    let base = gw.base();

    // /healthz answers at once: the sleeper has not even begun to speak MCP.
    let health = reqwest::Client::new()
        .get(format!("{base}/healthz"))
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    eprintln!(
        "/healthz answered {} ms after the listener opened",
        listening.elapsed().as_millis()
    );
    assert_eq!(health.status(), 200);

    // /readyz: not ready, and it names the target that is still connecting.
    let (code, body) = readyz(&base).await;
    assert_eq!(code, 503, "{body}");
    let sleepy = target(&body, "sleepy");
    assert_eq!(sleepy["status"], "connecting", "{body}");
    assert!(
        sleepy["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("connecting"),
        "{body}"
    );

    // The demo target (the gateway's own `demo-upstream`) comes up by itself meanwhile.
    let deadline = Instant::now() + Duration::from_secs(60);
    while target(&readyz(&base).await.1, "demo")["status"] != "connected" {
        assert!(Instant::now() < deadline, "the demo target never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ne!(
        target(&readyz(&base).await.1, "sleepy")["status"],
        "connected"
    );

    // A fresh directory got its dev IdP key on first use, and its tokens work.
    let token = gw.dev_token(&["--user", "alice", "--agent", "quickstart"]);
    assert!(gw.dir.path().join(".data").is_dir());
    let client = connect(&gw.url, Some(&token)).await;
    // The merged view follows the target's listing a moment after it connects.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let tools = tool_names(&client).await;
        if tools.iter().any(|t| t == "demo__echo") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "demo__echo never listed: {tools:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let args = serde_json::json!({"text": "hello"});
    let echoed = call_tool(&client, "demo__echo", args.clone())
        .await
        .unwrap();
    assert!(tool_text(&echoed).contains("hello"));

    // A call to the target that is still connecting is answered at once, naming it.
    let err = call_tool(&client, "sleepy__anything", args)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("sleepy") && err.contains("connecting"),
        "{err}"
    );
    client.cancel().await.ok();
}

#[test]
fn the_quickstart_config_checks_clean_from_a_fresh_directory() {
    let dir = quickstart_copy(&[]);
    let out = Command::new(binary("portcullis", "portcullis"))
        .arg("check")
        .arg("--config")
        .arg(dir.path().join("gateway.toml"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for tool in [
        "demo__echo",
        "demo__add",
        "demo__word_count",
        "demo__slow",
        "demo__fail",
        "tasks__list_tasks",
        "tasks__add_task",
    ] {
        assert!(stdout.contains(tool), "{tool} missing from:\n{stdout}");
    }
    assert!(stdout.contains("7 tools from 2 targets."), "{stdout}");
    assert!(Path::new(&dir.path().join("targets/demo.toml")).is_file());
}

/// The example policies the quickstart ships, as README's "Policies" section shows them:
/// a sum over a million is denied naming its policy; the failing tool is for testers; the
/// agent `ci-bot` may not use Acme Tasks (its tools are not read-only), and is told before
/// any consent is asked; `tools/list` hides what a caller may never call.
#[tokio::test(flavor = "multi_thread")]
async fn the_quickstart_policies_deny_what_readme_shows_and_name_the_policy() {
    let gw = Gateway::serve(quickstart_copy(&[]), &Serve::default()).unwrap();
    let alice = connect(
        &gw.url,
        Some(&gw.dev_token(&["--user", "alice", "--agent", "my-laptop"])),
    )
    .await;

    let sum = call_tool(
        &alice,
        "demo__add",
        serde_json::json!({"a": 5000000, "b": 1}),
    )
    .await
    .map_err(mcp_error)
    .unwrap_err();
    assert_eq!(sum.code.0, -32004, "{sum:?}");
    assert!(sum.message.contains("denied by policy"), "{}", sum.message);
    assert!(sum.message.contains("small-sums-only"), "{}", sum.message);
    let small = call_tool(&alice, "demo__add", serde_json::json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert!(tool_text(&small).contains('5'), "{}", tool_text(&small));

    let fail = call_tool(&alice, "demo__fail", serde_json::json!({"message": "x"}))
        .await
        .map_err(mcp_error)
        .unwrap_err();
    assert!(
        fail.message.contains("fail-is-for-testers"),
        "{}",
        fail.message
    );
    assert!(!tool_names(&alice).await.iter().any(|t| t == "demo__fail"));
    let tester = connect(
        &gw.url,
        Some(&gw.dev_token(&[
            "--user",
            "alice",
            "--agent",
            "my-laptop",
            "--group",
            "testers",
        ])),
    )
    .await;
    assert!(tool_names(&tester).await.iter().any(|t| t == "demo__fail"));
    let failed = call_tool(&tester, "demo__fail", serde_json::json!({"message": "x"}))
        .await
        .unwrap();
    assert_eq!(
        failed.is_error,
        Some(true),
        "the tool ran, and failed as it always does"
    );

    let ci = connect(
        &gw.url,
        Some(&gw.dev_token(&["--user", "alice", "--agent", "ci-bot"])),
    )
    .await;
    let tasks = call_tool(&ci, "tasks__list_tasks", serde_json::json!({}))
        .await
        .map_err(mcp_error)
        .unwrap_err();
    assert!(
        tasks.message.contains("ci-bot-reads-only"),
        "{}",
        tasks.message
    );
    let listed = tool_names(&ci).await;
    assert!(listed.iter().any(|t| t == "demo__echo"), "{listed:?}");
    assert!(
        !listed.iter().any(|t| t.starts_with("tasks__")),
        "{listed:?}"
    );
}

//! Hot reload: the real gateway with connected clients of both protocol eras while its target
//! files change on disk (and on SIGHUP). What must hold: a new target's tools are announced
//! (`list_changed`) and callable on the same client sessions; a call-level edit keeps the
//! upstream session (counted at the upstream: one process start); a target removed during a
//! call lets the call finish, then is gone; a broken file changes nothing and is named in
//! `/readyz`.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use portcullis_e2e::tool_text;
use portcullis_e2e::{Era, Gateway, binary, call_tool, connect_as, readyz, tool_args, tool_names};
use rmcp::model::{
    CallToolRequestParams, ClientConfig, NumberOrString, ProgressNotificationParam, ProgressToken,
    ProtocolVersion, RequestMetaObject, ServerNotification, SubscriptionFilter,
};
use rmcp::service::NotificationContext;
use rmcp::{ClientHandler, RoleClient};
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt as _;
use tokio::sync::mpsc;

const WITHIN: Duration = Duration::from_secs(30);

/// A stdio demo target whose every process start appends a line to `starts`.
fn counted_demo(prefix: &str, timeout: &str, starts: &Path) -> String {
    let demo = binary("portcullis-demo", "portcullis-demo");
    format!(
        "prefix = \"{prefix}\"\ntimeout = \"{timeout}\"\n[mcp]\ncommand = \"sh\"\nargs = [\"-c\", \"echo started >> '{}'; exec '{}'\"]\n",
        starts.display(),
        demo.display()
    )
}

fn starts(file: &Path) -> usize {
    std::fs::read_to_string(file)
        .map(|s| s.lines().count())
        .unwrap_or(0)
}

/// A 2025-11-25 client that reports `list_changed` and progress notifications.
#[derive(Clone)]
struct Signals {
    list_changed: mpsc::UnboundedSender<()>,
    progress: mpsc::UnboundedSender<()>,
}

impl ClientHandler for Signals {
    async fn on_tool_list_changed(&self, _ctx: NotificationContext<RoleClient>) {
        let _ = self.list_changed.send(());
    }

    async fn on_progress(
        &self,
        _params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        let _ = self.progress.send(());
    }
}

/// Wait (bounded) until `/readyz` reports more than `after` successful reloads.
async fn reloaded(gw: &Gateway, after: u64) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let r = readyz(&gw.base()).await.1;
        if r["config"]["reloads"].as_u64().unwrap_or(0) > after {
            return r;
        }
        assert!(Instant::now() < deadline, "no reload happened: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn reloads(r: &Value) -> u64 {
    r["config"]["reloads"].as_u64().unwrap()
}

fn write(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join("targets").join(format!("{name}.toml"));
    // Write then rename, as editors do: the watcher must see the final content.
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn file_changes_reload_the_catalog_without_dropping_client_sessions() {
    let counts = tempfile::tempdir().unwrap();
    let demo_starts = counts.path().join("demo");
    let extra_starts = counts.path().join("extra");
    let gw = Gateway::start(
        "[inbound]\nmode = \"none\"\n",
        &[("demo", counted_demo("demo", "30s", &demo_starts))],
    )
    .unwrap();
    let dir = gw.dir.path().to_path_buf();
    assert_eq!(starts(&demo_starts), 1);

    // A 2025-11-25 session client and a 2026-07-28 subscribed client.
    let (list_changed, mut legacy_changed) = mpsc::unbounded_channel();
    let (progress, mut progressed) = mpsc::unbounded_channel();
    let signals = Signals {
        list_changed,
        progress,
    };
    let legacy = connect_as(signals, &gw.url, None, Era::Legacy).await;
    let modern = connect_as(ClientConfig::default(), &gw.url, None, Era::Modern).await;
    assert_eq!(
        modern.peer_info().map(|i| i.protocol_version.clone()),
        Some(ProtocolVersion::V_2026_07_28)
    );
    let mut subscription = modern
        .listen(SubscriptionFilter::builder().tools_list_changed().build())
        .await
        .unwrap();
    let before = reloads(&readyz(&gw.base()).await.1);

    // 1. A new target file: both clients hear list_changed, the tools are callable on the
    //    same sessions.
    write(&dir, "extra", &counted_demo("extra", "30s", &extra_starts));
    tokio::time::timeout(WITHIN, async {
        while legacy_changed.recv().await.is_some() {
            if tool_names(&legacy).await.iter().any(|n| n == "extra__echo") {
                return;
            }
        }
    })
    .await
    .expect("the legacy session heard no list_changed showing extra__echo");
    tokio::time::timeout(WITHIN, async {
        loop {
            match subscription.next().await.unwrap() {
                Some(ServerNotification::ToolListChangedNotification(_)) => {}
                other => panic!("unexpected on the subscription: {other:?}"),
            }
            if tool_names(&modern).await.iter().any(|n| n == "extra__echo") {
                return;
            }
        }
    })
    .await
    .expect("the 2026-07-28 subscription heard no list_changed showing extra__echo");
    let r = call_tool(&legacy, "extra__echo", json!({ "text": "after reload" }))
        .await
        .unwrap();
    assert!(tool_text(&r).contains("after reload"));
    let after_add = reloads(&readyz(&gw.base()).await.1);
    assert!(after_add > before);

    // 2. A call-level edit (the timeout): the session is kept — no second process start —
    //    and the new timeout applies.
    write(&dir, "demo", &counted_demo("demo", "1s", &demo_starts));
    reloaded(&gw, after_add).await;
    assert_eq!(starts(&demo_starts), 1, "the demo upstream was restarted");
    let err = call_tool(&legacy, "demo__slow", json!({ "millis": 3000 }))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("1 s") && err.contains("demo"), "{err}");
    let after_edit = reloads(&readyz(&gw.base()).await.1);

    // 3. Removing a target during a slow call: the call completes, then the target is gone.
    let in_flight = {
        let mut slow = CallToolRequestParams::new("extra__slow")
            .with_arguments(tool_args(json!({ "millis": 1500 })));
        slow.meta = Some(RequestMetaObject::with_progress_token(ProgressToken(
            NumberOrString::Number(7),
        )));
        let peer = legacy.peer().clone();
        tokio::spawn(async move { peer.call_tool(slow).await })
    };
    // The upstream said "started": the call is running before the file goes (a call that had
    // not started would rightly find no target).
    tokio::time::timeout(WITHIN, progressed.recv())
        .await
        .expect("the slow call never started");
    std::fs::remove_file(dir.join("targets/extra.toml")).unwrap();
    reloaded(&gw, after_edit).await;
    let finished = in_flight.await.unwrap().unwrap();
    assert_ne!(finished.is_error, Some(true), "{finished:?}");
    assert!(
        !tool_names(&legacy)
            .await
            .iter()
            .any(|n| n.starts_with("extra__"))
    );
    let gone = call_tool(&legacy, "extra__echo", json!({ "text": "x" }))
        .await
        .unwrap_err()
        .to_string();
    assert!(gone.contains("unknown tool"), "{gone}");
    let after_remove = reloads(&readyz(&gw.base()).await.1);

    // 4. A broken file: nothing changes, /readyz names the file and the line.
    let broken = write(&dir, "broken", "prefix = \"b\"\n[mcp]\ncomand = \"x\"\n");
    let deadline = Instant::now() + WITHIN;
    let status = loop {
        let r = readyz(&gw.base()).await.1;
        if r["config"]["status"] != "loaded" {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "the broken file was not reported: {r}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let problems = status["config"]["problems"].to_string();
    assert!(
        problems.contains("broken.toml:3") && problems.contains("comand"),
        "{status}"
    );
    assert_eq!(reloads(&status), after_remove);
    let r = call_tool(&legacy, "demo__echo", json!({ "text": "still here" }))
        .await
        .unwrap();
    assert!(tool_text(&r).contains("still here"));
    std::fs::remove_file(&broken).unwrap();
    let r = reloaded(&gw, after_remove).await;
    assert_eq!(r["config"]["status"], "loaded", "{r}");
    assert_eq!(starts(&demo_starts), 1);

    subscription.cancel().await.ok();
    legacy.cancel().await.ok();
    modern.cancel().await.ok();
}

#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn sighup_reloads() {
    let gw = Gateway::start("[inbound]\nmode = \"none\"\n", &[]).unwrap();
    let before = reloads(&readyz(&gw.base()).await.1);
    let status = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(gw.proc.pid().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let r = reloaded(&gw, before).await;
    assert_eq!(r["config"]["status"], "loaded", "{r}");
}

/// The client of record for the 2025-11-25 era: the official MCP Python SDK. Its
/// session stays open across the reload, hears `list_changed`, and calls the new tool on the
/// same session.
#[tokio::test(flavor = "multi_thread")]
async fn a_python_sdk_session_hears_list_changed_and_calls_the_new_tool_on_the_same_session() {
    let Some(peers) = portcullis_e2e::python_peers() else {
        return;
    };
    let gw = Gateway::start("[inbound]\nmode = \"none\"\n", &[]).unwrap();
    let dir = gw.dir.path().to_path_buf();
    // Makes the SDK's venv (pinned by the peers) if this is its first use.
    let url = gw.url.clone();
    let info = tokio::task::spawn_blocking({
        let peers = peers.clone();
        move || portcullis_e2e::python_client(&peers, &url, &["info"])
    })
    .await
    .unwrap()
    .unwrap();
    assert_eq!(info["ok"], true, "{info}");

    let cache = std::env::var("PEERS_CACHE").unwrap_or_else(|_| "/tmp/peers-cache".into());
    let python = Path::new(&cache).join("mcp/venv/bin/python");
    let script = portcullis_e2e::repo_root().join("tests/py/reload_listener.py");
    let mut child = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&gw.url)
        .arg("late__echo")
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let ready = tokio::time::timeout(WITHIN, lines.next_line())
        .await
        .expect("the Python session did not come up")
        .unwrap();
    assert_eq!(ready.as_deref(), Some("ready"));

    let starts = tempfile::tempdir().unwrap();
    write(
        &dir,
        "late",
        &counted_demo("late", "30s", &starts.path().join("late")),
    );
    let report = tokio::time::timeout(Duration::from_secs(90), lines.next_line())
        .await
        .expect("the Python session reported nothing")
        .unwrap()
        .expect("the Python session ended without a report");
    let report: Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["notifications"].as_u64().unwrap() >= 1, "{report}");
    assert!(
        report["text"]
            .as_str()
            .unwrap()
            .contains("from the python session"),
        "{report}"
    );
    assert!(child.wait().await.unwrap().success());
}

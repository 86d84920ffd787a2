//! Faults: upstreams that die mid-session or mid-call, time out, or cannot start. The caller
//! always gets a clear JSON-RPC error (never a hang), and the gateway recovers by itself.
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

use std::process::Command;
use std::time::Duration;

use portcullis_e2e::run_portcullis;
use portcullis_e2e::{Era, Gateway, Proc, binary, eventually, spawn_until_line};
use portcullis_e2e::{call_tool, connect, connect_as, tool_args, tool_text, write_config};
use rmcp::RoleClient;
use rmcp::model::{CallToolRequestParams, ClientConfig};
use rmcp::service::ServiceError;

const UNAVAILABLE: i32 = -32003;
const TIMEOUT: i32 = -32001;

/// The demo upstream over streamable HTTP on `127.0.0.1:PORT` (0: any free port) and the
/// URL it printed.
fn demo_http(port: u16) -> (Proc, String) {
    let mut cmd = Command::new(binary("portcullis-demo", "portcullis-demo"));
    cmd.args(["--http", &format!("127.0.0.1:{port}")]);
    let (proc, line) = spawn_until_line(cmd, "portcullis-demo", "http://", Duration::from_secs(30))
        .expect("demo upstream starts");
    (proc, line.trim().to_string())
}

async fn echo<S: rmcp::Service<RoleClient>>(
    c: &rmcp::service::RunningService<RoleClient, S>,
    text: &str,
) -> Result<String, ServiceError> {
    let r = call_tool(c, "demo__echo", serde_json::json!({"text": text})).await?;
    Ok(tool_text(&r))
}

/// The JSON-RPC error message, checked for what a person must never read.
fn plain_message(e: &ServiceError) -> String {
    let ServiceError::McpError(d) = e else {
        panic!("expected a JSON-RPC error, got {e:?}");
    };
    assert!(
        !d.message.contains("::") && !d.message.contains('{'),
        "a type path or debug dump reached the caller: {}",
        d.message
    );
    d.message.to_string()
}

fn code(e: &ServiceError) -> i32 {
    match e {
        ServiceError::McpError(d) => d.code.0,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

/// A client that says when an upstream reports progress: the demo's `slow` reports "started"
/// once the call runs at the upstream, so a test can kill the upstream mid-call, not before.
#[derive(Clone)]
struct Started(tokio::sync::mpsc::UnboundedSender<()>);

impl rmcp::ClientHandler for Started {
    async fn on_progress(
        &self,
        _: rmcp::model::ProgressNotificationParam,
        _: rmcp::service::NotificationContext<RoleClient>,
    ) {
        let _ = self.0.send(());
    }
}

async fn connect_started(
    url: &str,
) -> (
    rmcp::service::RunningService<RoleClient, Started>,
    tokio::sync::mpsc::UnboundedReceiver<()>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    (connect_as(Started(tx), url, None, Era::Legacy).await, rx)
}

/// Wait until the call in flight runs at the upstream.
async fn until_started(started: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    tokio::time::timeout(Duration::from_secs(20), started.recv())
        .await
        .expect("the slow call reaches the upstream")
        .expect("the client is still connected");
}

fn slow(millis: u64) -> CallToolRequestParams {
    CallToolRequestParams::new("demo__slow")
        .with_arguments(tool_args(serde_json::json!({"millis": millis})))
}

#[tokio::test(flavor = "multi_thread")]
async fn http_upstream_killed_mid_call_then_restarted() {
    let (mut upstream, url) = demo_http(0);
    let target = format!("timeout = \"60s\"\n[mcp]\nurl = \"{url}\"\n");
    let gw = Gateway::start("", &[("demo", target)]).unwrap();
    let (c, mut started) = connect_started(&gw.url).await;
    assert!(echo(&c, "before").await.unwrap().contains("before"));

    // A call in flight when the upstream dies fails with a clear error, long before its
    // 60 s timeout.
    let peer = c.peer().clone();
    let in_flight = tokio::spawn(async move { peer.call_tool(slow(30_000)).await });
    until_started(&mut started).await;
    upstream.kill();
    let err = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&err), UNAVAILABLE, "{err:?}");
    plain_message(&err);

    // While it is down: a clear error naming the target, the cause and the fix.
    let err = echo(&c, "while down").await.unwrap_err();
    assert_eq!(code(&err), UNAVAILABLE);
    let message = plain_message(&err);
    assert!(
        message.contains("target `demo` is unavailable")
            && message.contains("connection refused")
            && message.contains("check `mcp.url` in targets/demo.toml"),
        "{message}"
    );

    // Back up on the same port: the next call reconnects, no gateway restart.
    let port = url::Url::parse(&url).unwrap().port().unwrap();
    let _upstream = demo_http(port);
    assert!(echo(&c, "after").await.unwrap().contains("after"));
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = vec![];
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for t in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(t.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_child_killed_mid_call_is_restarted() {
    let demo = binary("portcullis-demo", "portcullis-demo");
    let target = format!(
        "timeout = \"60s\"\n[mcp]\ncommand = \"{}\"\n",
        demo.display()
    );
    let gw = Gateway::start("", &[("demo", target)]).unwrap();
    let (c, mut started) = connect_started(&gw.url).await;
    assert!(echo(&c, "one").await.unwrap().contains("one"));
    let child = *children_of(gw.proc.pid())
        .first()
        .expect("the gateway runs the stdio target as its child");

    let peer = c.peer().clone();
    let in_flight = tokio::spawn(async move { peer.call_tool(slow(30_000)).await });
    until_started(&mut started).await;
    Command::new("kill")
        .args(["-9", &child.to_string()])
        .status()
        .unwrap();
    let err = tokio::time::timeout(Duration::from_secs(20), in_flight)
        .await
        .expect("no hang")
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&err), UNAVAILABLE, "{err:?}");
    assert!(
        plain_message(&err).contains("lost the connection during a call"),
        "{err:?}"
    );

    // The gateway starts a new child for the next call.
    assert!(echo(&c, "two").await.unwrap().contains("two"));
    let new_child = eventually(Duration::from_secs(5), || {
        children_of(gw.proc.pid()).into_iter().find(|p| *p != child)
    })
    .unwrap();
    assert_ne!(new_child, child);
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_target_times_out_with_a_clear_error() {
    let demo = binary("portcullis-demo", "portcullis-demo");
    let target = format!(
        "timeout = \"1s\"\n[mcp]\ncommand = \"{}\"\n",
        demo.display()
    );
    let gw = Gateway::start("", &[("demo", target)]).unwrap();
    let c = connect(&gw.url, None).await;
    let err = c.peer().call_tool(slow(10_000)).await.unwrap_err();
    assert_eq!(code(&err), TIMEOUT, "{err:?}");
    assert_eq!(
        plain_message(&err),
        "target `demo` did not answer within 1 s"
    );
    // The session survives a timeout.
    assert!(echo(&c, "still here").await.unwrap().contains("still here"));
}

#[test]
fn missing_stdio_command_is_named_by_check_and_serve() {
    let target = "[mcp]\ncommand = \"portcullis-no-such-command\"\n".to_string();
    let dir = write_config("", &[("broken", target)]).unwrap();
    for sub in ["check", "serve"] {
        let out = run_portcullis(sub, dir.path(), &[]);
        assert_eq!(out.status.code(), Some(1), "{sub} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("targets/broken.toml"), "{sub}: {stderr}");
        assert!(
            stderr.contains("command `portcullis-no-such-command` was not found"),
            "{sub}: {stderr}"
        );
        assert!(stderr.contains("fix:"), "{sub}: {stderr}");
    }
}

/// A caller that never answers a relayed request (here: sampling) cannot hold its call, or
/// the target's relay slot, beyond the target's timeout.
#[tokio::test(flavor = "multi_thread")]
#[allow(deprecated)] // sampling is deprecated in 2026-07-28, still what this test relays
async fn a_relayed_request_nobody_answers_ends_at_the_target_timeout() {
    use rmcp::model::{CreateMessageRequestParams, CreateMessageResult};
    use rmcp::service::RequestContext;
    use rmcp::{ClientHandler, ErrorData};

    #[derive(Clone)]
    struct Silent;
    impl ClientHandler for Silent {
        fn get_info(&self) -> ClientConfig {
            let mut caps = rmcp::model::ClientCapabilities::default();
            caps.sampling = Some(Default::default());
            ClientConfig::new(caps, rmcp::model::Implementation::new("silent", "0"))
        }
        async fn create_message(
            &self,
            _params: CreateMessageRequestParams,
            _ctx: RequestContext<RoleClient>,
        ) -> Result<CreateMessageResult, ErrorData> {
            std::future::pending().await
        }
    }

    let (_fixture, fixture_url) = spawn_until_line(
        Command::new(env!("CARGO_BIN_EXE_conformance-fixture")),
        "conformance-fixture",
        "http://",
        Duration::from_secs(30),
    )
    .unwrap();
    let target = format!("prefix = \"\"\ntimeout = \"2s\"\n[mcp]\nurl = \"{fixture_url}\"\n");
    let gw = Gateway::start("", &[("fixture", target)]).unwrap();
    let client = connect_as(Silent, &gw.url, None, Era::Legacy).await;
    let call = call_tool(
        &client,
        "test_sampling",
        serde_json::json!({"prompt": "hi"}),
    );
    let err = tokio::time::timeout(Duration::from_secs(20), call)
        .await
        .expect("the gateway ends the call")
        .unwrap_err();
    assert_eq!(code(&err), TIMEOUT, "{err:?}");
}

//! Golden tests for what a person reads when an upstream fails: the tool-call error and the
//! `/readyz` reason, for a stopped upstream, a DNS failure, an upstream that refuses the
//! gateway, one that never answers, one too slow to connect within its limit, a stdio command
//! that exits, and a target still on its first connection attempt. Every message names the target, what failed and the cause in
//! plain words — never a Rust type path or a debug dump.
//!
//! The gateway runs in-process (library API, real HTTP on loopback, a real rmcp client).
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
    InitializeRequestParams, InitializeResult, ListToolsResult, PaginatedRequestParams,
    ServerCapabilities, ServerConfig, Tool,
};
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt};
use tokio_util::sync::CancellationToken;

use portcullis::runtime::Live;
use portcullis::server::{Gateway, http as gw_http};

/// A gateway serving on a loopback port, with its config directory.
struct Running {
    base: String,
    ports: Vec<u16>,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn gateway(targets: &[(&str, String)], ports: &[u16]) -> Running {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[inbound]\nmode = \"none\"\n\n[server]\nlisten = \"127.0.0.1:0\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    for (name, body) in targets {
        std::fs::write(dir.path().join(format!("targets/{name}.toml")), body).unwrap();
    }
    let mut snapshot = portcullis::config::load(&dir.path().join("gateway.toml")).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    snapshot.server.bound_to(addr);
    let shutdown = CancellationToken::new();
    let live = Live::start(snapshot, None, reqwest::Client::new(), shutdown.clone())
        .await
        .unwrap();
    let app = gw_http::router(Gateway::new(live), shutdown.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        axum::serve(
            listener,
            app.into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(async move { stop.cancelled().await })
        .await
    });
    let mut ports = ports.to_vec();
    ports.push(addr.port());
    Running {
        base: format!("http://{addr}"),
        ports,
        shutdown,
        _dir: dir,
    }
}

impl Running {
    async fn client(&self) -> RunningService<RoleClient, ClientConfig> {
        ClientConfig::default()
            .serve(StreamableHttpClientTransport::from_uri(format!(
                "{}/mcp",
                self.base
            )))
            .await
            .unwrap()
    }

    async fn readyz(&self) -> serde_json::Value {
        reqwest::get(format!("{}/readyz", self.base))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// The `/readyz` reason of `target`, once `done` accepts it (bounded wait).
    async fn reason_when(&self, target: &str, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let body = self.readyz().await;
            let reason = body["targets"]
                .as_array()
                .unwrap()
                .iter()
                .find(|t| t["name"] == target)
                .and_then(|t| t["reason"].as_str())
                .unwrap_or("")
                .to_string();
            if done(&reason) {
                return reason;
            }
            assert!(Instant::now() < deadline, "readyz never settled: {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The reason once the first attempt has failed.
    async fn down_reason(&self, target: &str) -> String {
        self.reason_when(target, |r| !r.is_empty() && !r.starts_with("connecting"))
            .await
    }

    /// Ports and elapsed seconds replaced, so the snapshot is stable.
    fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for p in &self.ports {
            out = out.replace(&format!(":{p}"), ":PORT");
        }
        for marker in ["started ", "for "] {
            out = mask_number_after(&out, marker);
        }
        out
    }
}

fn mask_number_after(text: &str, marker: &str) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        let (head, tail) = rest.split_at(i + marker.len());
        out.push_str(head);
        let digits = tail.chars().take_while(char::is_ascii_digit).count();
        if digits > 0 {
            out.push('N');
        }
        rest = &tail[digits..];
    }
    out.push_str(rest);
    out
}

fn error_message(e: &ServiceError) -> (i32, String) {
    match e {
        ServiceError::McpError(d) => (d.code.0, d.message.to_string()),
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

/// What a person must never read.
fn assert_plain(text: &str) {
    assert!(
        !text.contains("::"),
        "a Rust type path reached the user: {text}"
    );
    assert!(!text.contains('{'), "a debug dump reached the user: {text}");
}

async fn call(c: &RunningService<RoleClient, ClientConfig>, tool: &str) -> (i32, String) {
    let err = c
        .peer()
        .call_tool(CallToolRequestParams::new(tool.to_string()))
        .await
        .unwrap_err();
    error_message(&err)
}

fn closed_port() -> u16 {
    // Bound and dropped: nothing listens there now.
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A small MCP upstream in-process: tools `echo` and `slow` (10 s).
#[derive(Clone)]
struct Upstream;

impl ServerHandler for Upstream {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = Arc::new(serde_json::Map::from_iter([(
            "type".to_string(),
            serde_json::json!("object"),
        )]));
        Ok(ListToolsResult::with_all_items(vec![
            Tool::new("echo", "Echo", schema.clone()),
            Tool::new("slow", "Slow", schema),
        ]))
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if req.name == "slow" {
            tokio::time::sleep(Duration::from_secs(10)).await;
        }
        Ok(CallToolResult::success(vec![ContentBlock::text("ok")]).into())
    }
}

/// An upstream that takes `each` to answer the handshake (`server/discover`, which the
/// gateway sends first, or `initialize`) and again to list its tools.
#[derive(Clone)]
struct Sluggish {
    each: Duration,
}

impl ServerHandler for Sluggish {
    fn get_info(&self) -> ServerConfig {
        Upstream.get_info()
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        tokio::time::sleep(self.each).await;
        context.peer.set_peer_info(request.clone());
        self.negotiate_initialize(&request)
    }

    async fn discover(
        &self,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::DiscoverResult, ErrorData> {
        tokio::time::sleep(self.each).await;
        Ok(rmcp::model::DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            self.get_info(),
        ))
    }

    async fn list_tools(
        &self,
        req: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        tokio::time::sleep(self.each).await;
        Upstream.list_tools(req, ctx).await
    }
}

/// Serve [`Upstream`] on a loopback port until `stop` is cancelled.
async fn upstream(stop: CancellationToken) -> u16 {
    serve(Upstream, stop).await
}

/// Serve `handler` on a loopback port until `stop` is cancelled.
async fn serve<H: ServerHandler + Clone + Send + Sync + 'static>(
    handler: H,
    stop: CancellationToken,
) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let service = StreamableHttpService::new(
        move || Ok(handler.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_cancellation_token(stop.clone()),
    );
    let app = axum::Router::new().nest_service("/mcp", service);
    tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await
    });
    port
}

#[tokio::test(flavor = "multi_thread")]
async fn stopped_http_upstream_connection_refused() {
    let stop = CancellationToken::new();
    let port = upstream(stop.clone()).await;
    let gw = gateway(
        &[(
            "demo",
            format!("[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
        )],
        &[port],
    )
    .await;
    gw.reason_when("demo", str::is_empty).await; // connected
    let c = gw.client().await;
    let ok = c
        .peer()
        .call_tool(CallToolRequestParams::new("demo__echo"))
        .await
        .unwrap();
    assert_eq!(ok.is_error, Some(false));

    stop.cancel();
    // Wait until the port is really closed (graceful shutdown ends the listener).
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "the upstream did not stop");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The session may notice the loss during this call (a pooled connection closed under
    // it) or before it (the reconnect is refused): either way the caller reads the target
    // and the cause in the gateway's words, never the HTTP library's.
    let (code, message) = call(&c, "demo__echo").await;
    assert_eq!(code, -32003, "{message}");
    assert_plain(&message);
    let lost = "target `demo` is unavailable: lost the connection during a call: the upstream \
        closed the connection. The gateway keeps reconnecting; retry shortly, or ask the \
        operator to check the target.";
    let refused = "target `demo` is unavailable: cannot connect to http://127.0.0.1:PORT/mcp: \
        connection refused (is the upstream running? check `mcp.url` in targets/demo.toml). The \
        gateway keeps reconnecting; retry shortly, or ask the operator to check the target.";
    let first = gw.mask(&message);
    assert!(first == lost || first == refused, "{first}");
    // Once the gateway knows: the same words on every call and in /readyz.
    let (code, message) = call(&c, "demo__echo").await;
    assert_eq!(code, -32003);
    assert_plain(&message);
    insta::assert_snapshot!("stopped_call", gw.mask(&message));
    let reason = gw.down_reason("demo").await;
    assert_plain(&reason);
    insta::assert_snapshot!("stopped_readyz", gw.mask(&reason));
}

#[tokio::test(flavor = "multi_thread")]
async fn never_reachable_port_is_named_by_calls_and_readyz() {
    let port = closed_port();
    let gw = gateway(
        &[(
            "dead",
            format!("[mcp]\nurl = \"http://127.0.0.1:{port}/mcp?key=SECRET\"\n"),
        )],
        &[port],
    )
    .await;
    let reason = gw.down_reason("dead").await;
    assert_plain(&reason);
    assert!(
        !reason.contains("SECRET"),
        "the query reached /readyz: {reason}"
    );
    insta::assert_snapshot!("refused_readyz", gw.mask(&reason));
    let c = gw.client().await;
    let (code, message) = call(&c, "dead__echo").await;
    assert_eq!(code, -32003, "not an unknown tool: its target is down");
    assert_plain(&message);
    assert!(!message.contains("SECRET"));
    insta::assert_snapshot!("refused_call", gw.mask(&message));
}

#[tokio::test(flavor = "multi_thread")]
async fn dns_failure_names_the_host() {
    let gw = gateway(
        &[(
            "dns",
            "[mcp]\nurl = \"http://portcullis-test.invalid/mcp\"\n".to_string(),
        )],
        &[],
    )
    .await;
    let reason = gw.down_reason("dns").await;
    assert_plain(&reason);
    insta::assert_snapshot!("dns_readyz", reason);
    let (code, message) = call(&gw.client().await, "dns__echo").await;
    assert_eq!(code, -32003);
    assert_plain(&message);
    insta::assert_snapshot!("dns_call", message);
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_that_refuses_the_gateway_with_401() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/mcp",
        axum::routing::any(|| async { (http::StatusCode::UNAUTHORIZED, "no") }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    let gw = gateway(
        &[(
            "locked",
            format!("[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
        )],
        &[port],
    )
    .await;
    let reason = gw.down_reason("locked").await;
    assert_plain(&reason);
    insta::assert_snapshot!("unauthorized_readyz", gw.mask(&reason));
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_that_accepts_but_never_answers_times_out() {
    // The kernel completes the TCP handshake (backlog); nobody ever reads the request.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let gw = gateway(
        &[(
            "silent",
            format!("connect_timeout = \"1s\"\n[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
        )],
        &[port],
    )
    .await;
    let reason = gw.down_reason("silent").await;
    assert_plain(&reason);
    insta::assert_snapshot!("silent_readyz", gw.mask(&reason));
    drop(silent);
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_timeout_bounds_the_whole_attempt() {
    // Each step fits in the limit; both together do not. The limit is for the attempt.
    let stop = CancellationToken::new();
    let each = Duration::from_millis(700);
    let port = serve(Sluggish { each }, stop.clone()).await;
    let gw = gateway(
        &[(
            "sluggish",
            format!("connect_timeout = \"1s\"\n[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
        )],
        &[port],
    )
    .await;
    let reason = gw.down_reason("sluggish").await;
    assert_plain(&reason);
    insta::assert_snapshot!("sluggish_readyz", gw.mask(&reason));
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_tool_times_out_with_the_limit_named() {
    let stop = CancellationToken::new();
    let port = upstream(stop.clone()).await;
    let gw = gateway(
        &[(
            "demo",
            format!("timeout = \"1s\"\n[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n"),
        )],
        &[port],
    )
    .await;
    gw.reason_when("demo", str::is_empty).await;
    let (code, message) = call(&gw.client().await, "demo__slow").await;
    assert_eq!(code, -32001);
    assert_plain(&message);
    insta::assert_snapshot!("timeout_call", message);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread")]
async fn stdio_command_that_exits_says_its_status() {
    let gw = gateway(
        &[(
            "quits",
            "[mcp]\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"echo 'fatal: no API key' >&2; exit 3\"]\n"
                .to_string(),
        )],
        &[],
    )
    .await;
    let reason = gw.down_reason("quits").await;
    assert_plain(&reason);
    assert!(
        !reason.contains("no API key"),
        "the child's stderr is for the log, not for callers"
    );
    insta::assert_snapshot!("exits_readyz", reason);
    let (code, message) = call(&gw.client().await, "quits__echo").await;
    assert_eq!(code, -32003);
    assert_plain(&message);
    insta::assert_snapshot!("exits_call", message);
}

#[tokio::test(flavor = "multi_thread")]
async fn target_still_connecting_says_so() {
    let gw = gateway(
        &[(
            "late",
            "connect_timeout = \"60s\"\n[mcp]\ncommand = \"/bin/sh\"\nargs = [\"-c\", \"sleep 60\"]\n"
                .to_string(),
        )],
        &[],
    )
    .await;
    let reason = gw.reason_when("late", |r| !r.is_empty()).await;
    assert_plain(&reason);
    insta::assert_snapshot!("connecting_readyz", gw.mask(&reason));
    let c = gw.client().await;
    let (code, message) = call(&c, "late__anything").await;
    assert_eq!(code, -32003, "{message}");
    assert_plain(&message);
    insta::assert_snapshot!("connecting_call", gw.mask(&message));
    // A name that is no target's stays an unknown tool.
    let (code, message) = call(&c, "other__x").await;
    assert_eq!(code, -32602, "{message}");
}

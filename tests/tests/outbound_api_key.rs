//! Outbound `api_key` credentials end to end: the real gateway in front of the demo MCP
//! server (streamable HTTP), with a recording reverse proxy between them that sees every HTTP
//! request the gateway sends upstream. The key must be on every one of them (session set-up,
//! listing, calls, notifications), in the configured place, and the caller's own token on none.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use portcullis_e2e::{ClosedPort, Gateway, McpClient, MockServer, Proc, binary};
use portcullis_e2e::{call_tool, connect, spawn_until_line, tool_names, tool_text, write_config};

/// One HTTP request the proxy received from the gateway.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// The raw query string, if any.
    query: Option<String>,
    /// Every header as sent (names lower-case), repeated names kept.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    /// The JSON-RPC method of a POST (`initialize`, `tools/call`, …), or the HTTP method.
    fn rpc(&self) -> String {
        serde_json::from_str::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["method"].as_str().map(str::to_string))
            .unwrap_or_else(|| format!("{} (no JSON-RPC method)", self.method))
    }

    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Decoded query parameters.
    fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    /// The request line's target: path and raw query.
    fn url(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{q}", self.path),
            None => self.path.clone(),
        }
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Seen>>>,
}

/// A reverse proxy on a free loopback port that records each request and forwards it to the
/// upstream, streaming the answer back (SSE included). Stops when dropped.
struct RecordingProxy {
    server: MockServer,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl RecordingProxy {
    /// `upstream`: `http://ADDR` (no path); requests keep their path and query.
    async fn start(upstream: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: portcullis_e2e::proxy_http_client(),
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let server = MockServer::start(app).await;
        Self { server, seen }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .map(|(n, v)| {
            (
                n.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });

    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = st.http.request(
        parts.method.clone(),
        format!("{}{path_and_query}", st.upstream),
    );
    for (name, value) in &parts.headers {
        if portcullis_e2e::forwardable(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if portcullis_e2e::forwardable(name) {
            headers.append(name, value.clone());
        }
    }
    let status = resp.status();
    // Streamed, not buffered: answers may be `text/event-stream` that stay open.
    let mut response =
        Body::from_stream(resp.bytes_stream().map_err(std::io::Error::other)).into_response();
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The demo MCP server over streamable HTTP on a free port: its process and `http://ADDR`.
fn start_demo() -> (Proc, String) {
    let mut cmd = Command::new(binary("portcullis-demo", "portcullis-demo"));
    cmd.args(["--http", "127.0.0.1:0"]).env("RUST_LOG", "warn");
    let (proc, line) =
        spawn_until_line(cmd, "portcullis-demo", "http://", Duration::from_secs(60)).unwrap();
    let base = line.trim().trim_end_matches("/mcp").to_string();
    (proc, base)
}

/// A file holding `key` (with the trailing newline editors add), kept alive by the TempDir.
fn key_file(key: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("upstream.key");
    std::fs::write(&path, format!("{key}\n")).unwrap();
    (dir, path)
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

fn api_key_target(proxy: &RecordingProxy, key_path: &Path, placement: &str) -> String {
    format!(
        "[mcp]\nurl = \"{}/mcp\"\n\n[auth]\nmode = \"api_key\"\nkey = {}\n{placement}",
        proxy.server.base,
        toml_str(&format!("file:{}", key_path.display())),
    )
}

async fn start_gateway(gateway_toml: String, targets: Vec<(&'static str, String)>) -> Gateway {
    tokio::task::spawn_blocking(move || Gateway::start(&gateway_toml, &targets))
        .await
        .unwrap()
        .expect("the gateway starts")
}

/// List the tools (must include `demo__echo`) and call it; returns the result's text.
async fn list_and_echo(client: &McpClient, text: &str) -> String {
    let tools = tool_names(client).await;
    assert!(
        tools.iter().any(|t| t == "demo__echo"),
        "the demo's tools are listed through the gateway: {tools:?}"
    );
    let r = call_tool(client, "demo__echo", serde_json::json!({ "text": text }))
        .await
        .expect("the tool call succeeds through the keyed upstream");
    tool_text(&r)
}

/// The proxy saw the whole session: the handshake (`server/discover`: the demo speaks
/// 2026-07-28), the listing and the call, all on the configured path.
fn assert_full_session(seen: &[Seen]) {
    let methods: Vec<String> = seen.iter().map(Seen::rpc).collect();
    for wanted in ["server/discover", "tools/list", "tools/call"] {
        assert!(
            methods.iter().any(|m| m == wanted),
            "the proxy never saw `{wanted}`; it saw {methods:?}"
        );
    }
    assert!(
        seen.iter().all(|s| s.path == "/mcp"),
        "every request goes to the configured path: {:?}",
        seen.iter().map(Seen::url).collect::<Vec<_>>()
    );
}

/// Start demo + proxy + gateway with `[auth]` placement `placement`, call a tool, and return
/// what the proxy saw.
async fn run_with_placement(key: &str, placement: &str) -> Vec<Seen> {
    let (_demo, demo) = start_demo();
    let proxy = RecordingProxy::start(&demo).await;
    let (_keydir, key_path) = key_file(key);
    let gw = start_gateway(
        String::new(),
        vec![("demo", api_key_target(&proxy, &key_path, placement))],
    )
    .await;
    let client = connect(&gw.url, None).await;
    let text = list_and_echo(&client, "through the proxy").await;
    assert!(text.contains("through the proxy"), "{text}");
    client.cancel().await.ok();
    let seen = proxy.seen();
    assert_full_session(&seen);
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn header_mode_puts_the_key_in_the_named_header_of_every_request() {
    let key = "hdr-key-7f3a9c";
    let seen = run_with_placement(key, "header = \"X-API-Key\"\n").await;
    for s in &seen {
        assert_eq!(
            s.header_values("x-api-key"),
            vec![key],
            "{} {} must carry exactly the key in X-API-Key",
            s.method,
            s.rpc()
        );
        assert!(
            s.header_values("authorization").is_empty(),
            "{}: no Authorization header in header mode",
            s.rpc()
        );
        assert!(
            !s.url().contains(key),
            "{}: the key is not in the URL in header mode: {}",
            s.rpc(),
            s.url()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn query_mode_puts_the_key_in_the_url_of_every_request_and_in_no_header() {
    // Characters that must be percent-encoded in a query: the upstream must decode the exact key.
    let key = "q/k+y=1&z?2 %";
    let seen = run_with_placement(key, "query = \"api_key\"\n").await;
    for s in &seen {
        let keys: Vec<String> = s
            .query_pairs()
            .into_iter()
            .filter(|(n, _)| n == "api_key")
            .map(|(_, v)| v)
            .collect();
        assert_eq!(
            keys,
            vec![key.to_string()],
            "{} {}: exactly one api_key parameter holding the key; URL {}",
            s.method,
            s.rpc(),
            s.url()
        );
        assert_eq!(
            s.query_pairs().len(),
            1,
            "no other query parameters: {}",
            s.url()
        );
        assert!(
            s.header_values("x-api-key").is_empty() && s.header_values("authorization").is_empty(),
            "{}: no credential header in query mode: {:?}",
            s.rpc(),
            s.headers
        );
        assert!(
            s.headers.iter().all(|(_, v)| !v.contains(key)),
            "{}: the key is in no header",
            s.rpc()
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn default_placement_is_an_authorization_bearer_header() {
    let key = "default-key-0d5e";
    let seen = run_with_placement(key, "").await;
    for s in &seen {
        assert_eq!(
            s.header_values("authorization"),
            vec![format!("Bearer {key}").as_str()],
            "{} {}: exactly one Authorization: Bearer <key>",
            s.method,
            s.rpc()
        );
        assert!(s.header_values("x-api-key").is_empty());
        assert!(!s.url().contains(key), "{}", s.url());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_callers_token_never_reaches_the_upstream_only_the_api_key_does() {
    let key = "gateway-own-key-51b2";
    let (_demo, demo) = start_demo();
    let proxy = RecordingProxy::start(&demo).await;
    let (_keydir, key_path) = key_file(key);
    // Default placement (Authorization: Bearer): exactly where a passed-through caller token
    // would also land.
    let gw = start_gateway(
        "[dev_idp]\n".into(),
        vec![("demo", api_key_target(&proxy, &key_path, ""))],
    )
    .await;
    let token = gw.dev_token(&["--user", "alice"]);
    assert!(token.split('.').count() == 3, "a JWT: {token}");

    // Without the token the gateway refuses: the caller is authenticated, so the token is live.
    let refused = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .post(&gw.url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let client = connect(&gw.url, Some(&token)).await;
    let text = list_and_echo(&client, "for alice").await;
    assert!(text.contains("for alice"), "{text}");
    client.cancel().await.ok();

    let seen = proxy.seen();
    assert_full_session(&seen);
    // The whole token and each of its parts (a re-encoded copy would still carry the payload
    // and signature).
    let needles: Vec<&str> = std::iter::once(token.as_str())
        .chain(token.split('.').filter(|p| p.len() >= 16))
        .collect();
    for s in &seen {
        for needle in &needles {
            for (name, value) in &s.headers {
                assert!(
                    !value.contains(needle),
                    "{} {}: the caller's token leaked upstream in header `{name}`",
                    s.method,
                    s.rpc()
                );
            }
            assert!(
                !s.url().contains(needle),
                "{}: the caller's token leaked upstream in the URL",
                s.rpc()
            );
            assert!(
                !s.body.contains(needle),
                "{}: the caller's token leaked upstream in the body",
                s.rpc()
            );
        }
        assert_eq!(
            s.header_values("authorization"),
            vec![format!("Bearer {key}").as_str()],
            "{} {}: the gateway's own key, once, instead",
            s.method,
            s.rpc()
        );
    }
    let call = seen
        .iter()
        .find(|s| s.rpc() == "tools/call")
        .expect("the call went upstream");
    assert!(call.body.contains("for alice"), "{}", call.body);
}

fn check(dir: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(binary("portcullis", "portcullis"))
        .args(["check", "--config"])
        .arg(dir.join("gateway.toml"))
        .env_remove("PORTCULLIS_TEST_UNSET_KEY")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_missing_key_stops_check_naming_the_reference_and_the_file_never_a_value() {
    // A second target whose key does resolve: its value must not be printed either.
    let present = "present-key-value-93c1";
    let (_keydir, key_path) = key_file(present);
    let closed = ClosedPort::reserve();
    let port = closed.port();
    let dir = write_config(
        "",
        &[
            (
                "keyed",
                format!(
                    "[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n\n[auth]\nmode = \"api_key\"\nkey = \"env:PORTCULLIS_TEST_UNSET_KEY\"\nheader = \"X-API-Key\"\n"
                ),
            ),
            (
                "other",
                format!(
                    "[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n\n[auth]\nmode = \"api_key\"\nkey = {}\n",
                    toml_str(&format!("file:{}", key_path.display()))
                ),
            ),
        ],
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir.path());
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("env:PORTCULLIS_TEST_UNSET_KEY"),
        "names the reference: {stderr}"
    );
    let target_file = dir.path().join("targets").join("keyed.toml");
    assert!(
        stderr.contains(&target_file.display().to_string()),
        "names the target file {}: {stderr}",
        target_file.display()
    );
    assert!(
        stderr.contains("auth.key"),
        "names the key in the file: {stderr}"
    );
    for out in [&stdout, &stderr] {
        assert!(!out.contains(present), "a key value was printed: {out}");
    }
}

/// A query-mode target whose upstream is down: nothing listens on `closed`.
fn unreachable_query_target(closed: &ClosedPort, key_path: &Path) -> String {
    let port = closed.port();
    format!(
        "connect_timeout = \"2s\"\n[mcp]\nurl = \"http://127.0.0.1:{port}/mcp\"\n\n[auth]\nmode = \"api_key\"\nkey = {}\nquery = \"api_key\"\n",
        toml_str(&format!("file:{}", key_path.display()))
    )
}

#[test]
fn check_does_not_print_a_query_key_when_the_upstream_is_unreachable() {
    // Transport errors quote the URL they failed on; in query mode that URL holds the key.
    let key = "query-key-in-url-4e8d";
    let (_keydir, key_path) = key_file(key);
    let closed = ClosedPort::reserve();
    let dir = write_config(
        "",
        &[("down", unreachable_query_target(&closed, &key_path))],
    )
    .unwrap();
    let (code, stdout, stderr) = check(dir.path());
    assert_eq!(code, Some(1), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("target `down` is unavailable"),
        "the failing target is named: {stderr}"
    );
    for out in [&stdout, &stderr] {
        assert!(
            !out.contains(key),
            "the key was printed with the upstream URL:\n{out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_does_not_reveal_a_query_key_when_the_upstream_is_unreachable() {
    let key = "query-key-in-readyz-a61f";
    let (_keydir, key_path) = key_file(key);
    let closed = ClosedPort::reserve();
    // Callers must authenticate for /mcp; /readyz is open to anyone who reaches the port.
    let gw = start_gateway(
        "[dev_idp]\n".into(),
        vec![("down", unreachable_query_target(&closed, &key_path))],
    )
    .await;
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/readyz", gw.base()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503, "a required target is down");
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["targets"][0]["status"], "down", "{body}");
    assert!(
        body["targets"][0]["reason"].is_string(),
        "the reason is reported: {body}"
    );
    assert!(
        !body.to_string().contains(key),
        "/readyz reveals the upstream key to anyone: {body}"
    );
}

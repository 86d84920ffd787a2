//! A fast MCP upstream for benchmarks: streamable HTTP on HTTP/1.1 with `TCP_NODELAY`, plain
//! JSON answers (never SSE), both protocol eras on one endpoint — `initialize` opens a
//! 2025-11-25 session, `server/discover` and requests with the 2026-07-28 `_meta` are served
//! without one. Tools: `echo` (returns its `text` argument, so a constant request gets a
//! constant-size result) and `filler_NNNNN` tools up to `--tools`, each with a realistic
//! description and input schema; `tools/list` serialises them on every request, as a real
//! server would.
//!
//! It does the least work a correct MCP server can, so that what a gateway in front of it
//! adds stands out; it is not a server to copy (no Origin check, no session expiry).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const MODERN: &str = "2026-07-28";
const LEGACY: &str = "2025-11-25";

/// What the upstream serves.
#[derive(Debug)]
pub struct Upstream {
    tools: Vec<Value>,
    sessions: AtomicU64,
}

impl Upstream {
    /// `echo` plus `tools - 1` filler tools.
    pub fn new(tools: usize) -> Self {
        let mut list = vec![json!({
            "name": "echo",
            "description": "Echo the text back.",
            "inputSchema": {
                "type": "object",
                "properties": {"text": {"type": "string", "description": "What to echo."}},
                "required": ["text"]
            }
        })];
        list.extend((1..tools.max(1)).map(filler));
        Self {
            tools: list,
            sessions: AtomicU64::new(0),
        }
    }

    /// Serve on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let this = self.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let this = this.clone();
                    async move { Ok::<_, Infallible>(this.answer(req).await) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }

    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        match *req.method() {
            Method::POST => {}
            // Sessions are never expired here; DELETE just says yes.
            Method::DELETE => return status(StatusCode::OK),
            _ => return status(StatusCode::METHOD_NOT_ALLOWED),
        }
        let session = req.headers().get("mcp-session-id").cloned();
        let Ok(body) = req.into_body().collect().await else {
            return status(StatusCode::BAD_REQUEST);
        };
        let Ok(msg) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let Some(id) = msg.get("id").cloned() else {
            return status(StatusCode::ACCEPTED); // a notification or a response
        };
        let method = msg["method"].as_str().unwrap_or_default();
        let params = &msg["params"];
        let modern = session.is_none()
            && params["_meta"]["io.modelcontextprotocol/protocolVersion"].as_str() == Some(MODERN);
        let mut new_session = None;
        let result = match method {
            "initialize" => {
                let asked = params["protocolVersion"].as_str().unwrap_or(LEGACY);
                let version = match asked {
                    "2025-03-26" | "2025-06-18" | LEGACY => asked,
                    _ => LEGACY,
                };
                let n = self.sessions.fetch_add(1, Ordering::Relaxed);
                new_session = Some(format!("bench-session-{n}"));
                json!({
                    "protocolVersion": version,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "bench-upstream", "version": "1"}
                })
            }
            "server/discover" => json!({
                "supportedVersions": [MODERN, LEGACY],
                "capabilities": {"tools": {}},
                "ttlMs": 0,
                "cacheScope": "public",
                "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "bench-upstream", "version": "1"}}
            }),
            "ping" => json!({}),
            "tools/list" => json!({"tools": &self.tools}),
            "tools/call" => match params["name"].as_str() {
                Some("echo") => {
                    let text = params["arguments"]["text"].as_str().unwrap_or_default();
                    json!({"content": [{"type": "text", "text": text}], "isError": false})
                }
                Some(name) if name.starts_with("filler_") => {
                    json!({"content": [{"type": "text", "text": name}], "isError": false})
                }
                _ => return error(id, -32602, "unknown tool"),
            },
            _ => return error(id, -32601, "method not found"),
        };
        let mut result = result;
        if modern || method == "server/discover" {
            result["resultType"] = json!("complete");
            if method == "tools/list" {
                result["ttlMs"] = json!(0);
                result["cacheScope"] = json!("public");
            }
        }
        let body = json!({"jsonrpc": "2.0", "id": id, "result": result});
        let mut res = json_response(StatusCode::OK, &body);
        if let Some(s) = new_session.and_then(|s| s.parse().ok()) {
            res.headers_mut().insert("mcp-session-id", s);
        }
        res
    }
}

/// A realistic listed tool: ~600 bytes of JSON like a generated API operation.
fn filler(i: usize) -> Value {
    json!({
        "name": format!("filler_{i:05}"),
        "description": format!("List the records of collection {i} that match the filters, newest first. Use it to look up items before changing them."),
        "inputSchema": {
            "type": "object",
            "properties": {
                "query": {"type": "string", "description": "Words the records must contain."},
                "limit": {"type": "integer", "minimum": 1, "maximum": 100, "description": "How many records to return."},
                "cursor": {"type": "string", "description": "Where the previous page ended."},
                "include_archived": {"type": "boolean", "description": "Also list archived records."}
            },
            "required": ["query"]
        }
    })
}

fn status(code: StatusCode) -> Response<Full<Bytes>> {
    let mut res = Response::new(Full::new(Bytes::new()));
    *res.status_mut() = code;
    res
}

fn error(id: Value, code: i64, message: &str) -> Response<Full<Bytes>> {
    let body = json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}});
    json_response(StatusCode::OK, &body)
}

fn json_response(code: StatusCode, body: &Value) -> Response<Full<Bytes>> {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut res = Response::new(Full::new(Bytes::from(bytes)));
    *res.status_mut() = code;
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    res
}

/// Bind `addr` and print `bench-upstream listening: http://ADDR/mcp` (the harness waits for it).
pub async fn run(addr: SocketAddr, tools: usize) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).await?;
    println!(
        "bench-upstream listening: http://{}/mcp",
        listener.local_addr()?
    );
    Arc::new(Upstream::new(tools)).serve(listener).await;
    Ok(())
}

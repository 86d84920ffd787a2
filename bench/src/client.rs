//! The load generator's MCP client: raw JSON-RPC over one HTTP/1.1 keep-alive connection per
//! client, in either protocol era, reading plain JSON or SSE answers. Raw rather than an SDK so
//! that the client's own cost is small and the same for every gateway put in front of the
//! upstream.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http::{HeaderValue, Request, header};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpStream;

/// The protocol revision a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then requests on an `Mcp-Session-Id` session.
    Legacy,
    /// 2026-07-28: no session; every request declares the revision in `_meta` and headers.
    Modern,
}

impl Era {
    pub fn version(self) -> &'static str {
        match self {
            Era::Legacy => "2025-11-25",
            Era::Modern => "2026-07-28",
        }
    }
}

/// Where and how a client connects.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub url: url::Url,
    pub token: Option<String>,
    /// The tool name that reaches the upstream's `echo` through this endpoint.
    pub echo: String,
}

/// One MCP client on its own connection.
#[derive(Debug)]
pub struct Client {
    send: SendRequest<Full<Bytes>>,
    host: HeaderValue,
    path: String,
    auth: Option<HeaderValue>,
    session: Option<HeaderValue>,
    era: Era,
    next_id: u64,
}

impl Client {
    /// Connect and, in the 2025-11-25 era, open a session (`initialize` + `initialized`).
    pub async fn connect(endpoint: &Endpoint, era: Era) -> Result<Self> {
        let url = &endpoint.url;
        let addr = format!(
            "{}:{}",
            url.host_str().context("URL without a host")?,
            url.port_or_known_default().context("URL without a port")?
        );
        let stream = TcpStream::connect(&addr)
            .await
            .with_context(|| format!("cannot connect to {addr}"))?;
        stream.set_nodelay(true)?;
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut client = Self {
            send,
            host: HeaderValue::from_str(&addr)?,
            path: match url.query() {
                Some(q) => format!("{}?{q}", url.path()),
                None => url.path().to_string(),
            },
            auth: endpoint
                .token
                .as_ref()
                .map(|t| HeaderValue::from_str(&format!("Bearer {t}")))
                .transpose()?,
            session: None,
            era,
            next_id: 0,
        };
        if era == Era::Legacy {
            client.initialize().await?;
        }
        Ok(client)
    }

    /// Open one more 2025-11-25 session on this connection; the previous one stays open
    /// (idle) on the server.
    pub async fn open_session(&mut self) -> Result<()> {
        self.session = None;
        self.initialize().await
    }

    async fn initialize(&mut self) -> Result<()> {
        let params = json!({
            "protocolVersion": Era::Legacy.version(),
            "capabilities": {},
            "clientInfo": {"name": "portcullis-bench", "version": "1"}
        });
        let (_, session) = self.request("initialize", None, params).await?;
        self.session = session;
        self.notify("notifications/initialized").await
    }

    async fn notify(&mut self, method: &str) -> Result<()> {
        let body = json!({"jsonrpc": "2.0", "method": method});
        let req = self.build(method, None, serde_json::to_vec(&body)?)?;
        self.send.ready().await?;
        let res = self.send.send_request(req).await?;
        let status = res.status();
        res.into_body().collect().await?;
        if !status.is_success() {
            bail!("{method} answered HTTP {status}");
        }
        Ok(())
    }

    /// `tools/call` of `tool` with `{"text": text}`; fails unless the result is a success.
    pub async fn call(&mut self, tool: &str, text: &str) -> Result<()> {
        let (result, _) = self
            .request(
                "tools/call",
                Some(tool),
                json!({"name": tool, "arguments": {"text": text}}),
            )
            .await?;
        if result["isError"] == json!(true) {
            bail!("tools/call {tool} returned an error result: {result}");
        }
        Ok(())
    }

    /// Every page of `tools/list`, following `nextCursor`: (tools listed, pages).
    pub async fn list_all(&mut self) -> Result<(usize, usize)> {
        let mut cursor: Option<String> = None;
        let (mut count, mut pages) = (0, 0);
        loop {
            pages += 1;
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let (result, _) = self.request("tools/list", None, params).await?;
            count += result["tools"].as_array().map_or(0, Vec::len);
            match result["nextCursor"].as_str() {
                Some(c) if !c.is_empty() => cursor = Some(c.to_string()),
                _ => return Ok((count, pages)),
            }
        }
    }

    /// Send one request; its `result` and the session id the answer carried, if any.
    async fn request(
        &mut self,
        method: &str,
        name: Option<&str>,
        mut params: Value,
    ) -> Result<(Value, Option<HeaderValue>)> {
        self.next_id += 1;
        if self.era == Era::Modern {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": Era::Modern.version(),
                "io.modelcontextprotocol/clientInfo": {"name": "portcullis-bench", "version": "1"},
                "io.modelcontextprotocol/clientCapabilities": {}
            });
        }
        let body =
            json!({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params});
        let req = self.build(method, name, serde_json::to_vec(&body)?)?;
        // HTTP/1.1: the connection takes the next request once the last answer is read.
        self.send.ready().await?;
        let res = tokio::time::timeout(Duration::from_secs(60), self.send.send_request(req))
            .await
            .context("no answer within 60 s")??;
        let status = res.status();
        let session = res.headers().get("mcp-session-id").cloned();
        let sse = res
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let bytes = res.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!(
                "{method} answered HTTP {status}: {}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(300)])
            );
        }
        let mut msg = if sse {
            last_sse_message(&bytes, self.next_id)?
        } else {
            serde_json::from_slice::<Value>(&bytes)?
        };
        if let Some(e) = msg.get("error") {
            bail!("{method} answered a JSON-RPC error: {e}");
        }
        Ok((msg["result"].take(), session))
    }

    fn build(
        &self,
        method: &str,
        name: Option<&str>,
        body: Vec<u8>,
    ) -> Result<Request<Full<Bytes>>> {
        let mut req = Request::post(&self.path)
            .header(header::HOST, self.host.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json, text/event-stream")
            .header("mcp-protocol-version", self.era.version());
        if let Some(a) = &self.auth {
            req = req.header(header::AUTHORIZATION, a.clone());
        }
        if let Some(s) = &self.session {
            req = req.header("mcp-session-id", s.clone());
        }
        if self.era == Era::Modern {
            req = req.header("mcp-method", method);
            if let Some(n) = name {
                req = req.header("mcp-name", n);
            }
        }
        Ok(req.body(Full::new(Bytes::from(body)))?)
    }
}

/// The JSON-RPC response with id `id` in an SSE body (other events are notifications).
fn last_sse_message(body: &[u8], id: u64) -> Result<Value> {
    let text = std::str::from_utf8(body)?;
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data:") else {
            continue;
        };
        let Ok(msg) = serde_json::from_str::<Value>(data.trim_start()) else {
            continue;
        };
        if msg["id"] == json!(id) {
            return Ok(msg);
        }
    }
    bail!(
        "the SSE answer holds no response to request {id}: {}",
        &text[..text.len().min(300)]
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::upstream::Upstream;

    /// The benchmark upstream on a free port, in this process.
    async fn upstream(tools: usize) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        tokio::spawn(Arc::new(Upstream::new(tools)).serve(listener));
        Endpoint {
            url: url.parse().unwrap(),
            token: None,
            echo: "echo".into(),
        }
    }

    #[tokio::test]
    async fn both_eras_call_and_list_the_upstream() {
        let ep = upstream(25).await;
        for era in [Era::Legacy, Era::Modern] {
            let mut c = Client::connect(&ep, era).await.unwrap();
            assert_eq!(c.session.is_some(), era == Era::Legacy, "{era:?}");
            c.call("echo", "hello").await.unwrap();
            assert_eq!(c.list_all().await.unwrap(), (25, 1));
            let unknown = c.call("nope", "x").await.unwrap_err().to_string();
            assert!(unknown.contains("JSON-RPC error"), "{unknown}");
        }
    }

    #[tokio::test]
    async fn a_connection_holds_many_sessions() {
        let ep = upstream(1).await;
        let mut c = Client::connect(&ep, Era::Legacy).await.unwrap();
        let first = c.session.clone();
        c.open_session().await.unwrap();
        assert_ne!(c.session, first);
        c.call("echo", "still served").await.unwrap();
    }

    #[test]
    fn an_sse_answer_yields_the_response_to_the_request_not_a_notification() {
        let body = b"event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n\
                     data: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{\"ok\":true}}\n\n";
        assert_eq!(last_sse_message(body, 7).unwrap()["result"]["ok"], true);
        assert!(last_sse_message(body, 8).is_err());
    }
}

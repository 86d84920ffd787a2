//! The quickstart's demo MCP server, built into the gateway binary so that `cargo run -- serve`
//! compiles once and starts at once: `targets/demo.toml` runs it as `portcullis demo-upstream`
//! (a stdio child, like any other stdio target). `examples/demo-upstream` wraps the same code
//! as a standalone `portcullis-demo` binary for the end-to-end tests.
//!
//! - stdio (the default): MCP on stdin/stdout, logs on stderr.
//! - `--http 127.0.0.1:PORT`: streamable HTTP at `/mcp` (PORT 0 picks a free port); prints
//!   `http://ADDR/mcp` on stdout once listening. Loopback only: the demo has no authentication.

pub mod provider;
mod tools;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context as _, bail};
use rmcp::ServiceExt as _;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};

pub use tools::{DemoServer, MAX_SLOW_MILLIS};

/// How the demo serves MCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stdio,
    Http(SocketAddr),
}

impl Mode {
    /// `None` for stdio, or the `--http` address, which must be a loopback one.
    pub fn new(http: Option<SocketAddr>) -> anyhow::Result<Self> {
        match http {
            None => Ok(Self::Stdio),
            Some(addr) if addr.ip().is_loopback() => Ok(Self::Http(addr)),
            Some(addr) => bail!(
                "refusing to serve on {addr}: the demo has no authentication; use a loopback address such as 127.0.0.1:8931"
            ),
        }
    }
}

/// Serve until the client goes away (stdio) or forever (HTTP).
pub async fn serve(mode: Mode) -> anyhow::Result<()> {
    match mode {
        Mode::Stdio => serve_stdio().await,
        Mode::Http(addr) => serve_http(addr).await,
    }
}

async fn serve_stdio() -> anyhow::Result<()> {
    tracing::debug!("demo upstream: serving MCP over stdio");
    let running = DemoServer::new()
        .serve(rmcp::transport::stdio())
        .await
        .context("the MCP handshake over stdio failed")?;
    running.waiting().await?;
    Ok(())
}

async fn serve_http(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    // The default config accepts only loopback Host headers, which matches the loopback bind and
    // keeps DNS-rebinding pages away from the demo.
    let service = StreamableHttpService::new(
        || Ok(DemoServer::new()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().nest_service("/mcp", service);

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}/mcp")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!("demo upstream: serving MCP over streamable HTTP at http://{addr}/mcp");
    // Small SSE writes: without TCP_NODELAY, Nagle and delayed ACKs add ~40 ms per call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_takes_only_loopback_addresses() {
        let local = SocketAddr::from(([127, 0, 0, 1], 8931));
        assert_eq!(Mode::new(Some(local)).ok(), Some(Mode::Http(local)));
        assert!(matches!(
            Mode::new(Some("[::1]:0".parse().unwrap())),
            Ok(Mode::Http(_))
        ));
        assert_eq!(Mode::new(None).ok(), Some(Mode::Stdio));
        for other in ["0.0.0.0:8931", "192.168.1.2:8931"] {
            let err = Mode::new(Some(other.parse().unwrap())).unwrap_err();
            assert!(err.to_string().contains("loopback"), "{err}");
        }
    }
}

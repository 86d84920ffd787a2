//! `portcullis-demo`: the demo MCP upstream of the Portcullis quickstart.
//!
//! - `portcullis-demo` serves MCP over stdio, for a gateway that starts it as a child process.
//! - `portcullis-demo --http 127.0.0.1:PORT` serves streamable HTTP at `/mcp` instead (PORT 0
//!   picks a free port) and prints `http://ADDR/mcp` on stdout once listening. Only loopback
//!   addresses are accepted: the demo has no authentication.
//!
//! Logs go to stderr (RUST_LOG filters them), because in stdio mode stdout is the protocol.

mod tools;

use std::{
    io::{IsTerminal as _, Write as _},
    net::SocketAddr,
    sync::Arc,
};

use anyhow::{Context as _, bail};
use rmcp::{
    ServiceExt as _,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use tools::DemoServer;

const USAGE: &str = "\
usage: portcullis-demo                      serve MCP over stdio
       portcullis-demo --http 127.0.0.1:PORT   serve MCP over streamable HTTP at /mcp";

#[derive(Debug, PartialEq)]
enum Mode {
    Stdio,
    Http(SocketAddr),
    Help,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(mode) => mode,
        Err(err) => {
            // A usage mistake: say what is wrong, without anyhow's backtrace.
            eprintln!("portcullis-demo: {err:#}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    match mode {
        Mode::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Mode::Stdio => serve_stdio().await,
        Mode::Http(addr) => serve_http(addr).await,
    }
}

fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Mode> {
    let mut mode = Mode::Stdio;
    while let Some(arg) = args.next() {
        let addr = match arg.as_str() {
            "-h" | "--help" => return Ok(Mode::Help),
            "--http" => args
                .next()
                .context("--http needs an address such as 127.0.0.1:8931")?,
            other => match other.strip_prefix("--http=") {
                Some(addr) => addr.to_owned(),
                None => bail!("unexpected argument {other:?}\n{USAGE}"),
            },
        };
        let addr: SocketAddr = addr
            .parse()
            .with_context(|| format!("--http wants IP:PORT, got {addr:?}"))?;
        if !addr.ip().is_loopback() {
            bail!(
                "refusing to serve on {addr}: the demo has no authentication, use a loopback address such as 127.0.0.1"
            );
        }
        mode = Mode::Http(addr);
    }
    Ok(mode)
}

async fn serve_stdio() -> anyhow::Result<()> {
    tracing::info!("serving MCP over stdio");
    let running = DemoServer::new()
        .serve(rmcp::transport::stdio())
        .await
        .context("MCP handshake over stdio failed")?;
    running.waiting().await?;
    Ok(())
}

async fn serve_http(addr: SocketAddr) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot bind {addr}"))?;
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
    tracing::info!(%addr, "serving MCP over streamable HTTP at /mcp");
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

    fn parse(args: &[&str]) -> anyhow::Result<Mode> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn stdio_is_the_default() {
        assert_eq!(parse(&[]).ok(), Some(Mode::Stdio));
    }

    #[test]
    fn http_takes_a_loopback_address() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8931));
        assert_eq!(
            parse(&["--http", "127.0.0.1:8931"]).ok(),
            Some(Mode::Http(addr))
        );
        assert_eq!(
            parse(&["--http=127.0.0.1:8931"]).ok(),
            Some(Mode::Http(addr))
        );
        assert!(matches!(parse(&["--http", "[::1]:0"]), Ok(Mode::Http(_))));
    }

    #[test]
    fn http_refuses_other_addresses() {
        assert!(parse(&["--http", "0.0.0.0:8931"]).is_err());
        assert!(parse(&["--http", "192.168.1.2:8931"]).is_err());
        assert!(parse(&["--http", "localhost"]).is_err());
        assert!(parse(&["--http"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
    }
}

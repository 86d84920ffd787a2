//! `portcullis-demo`: the demo MCP upstream of the Portcullis quickstart as a standalone
//! binary (the end-to-end tests start it on its own). The code lives in the gateway crate
//! (`portcullis::demo`), where the quickstart runs it as `portcullis demo-upstream`.
//!
//! - `portcullis-demo` serves MCP over stdio, for a gateway that starts it as a child process.
//! - `portcullis-demo --http 127.0.0.1:PORT` serves streamable HTTP at `/mcp` instead (PORT 0
//!   picks a free port) and prints `http://ADDR/mcp` on stdout once listening.
//!
//! Logs go to stderr (RUST_LOG filters them), because in stdio mode stdout is the protocol.

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::process::ExitCode;

use portcullis::demo::{Mode, serve};

const USAGE: &str = "\
usage: portcullis-demo                         serve MCP over stdio
       portcullis-demo --http 127.0.0.1:PORT   serve MCP over streamable HTTP at /mcp";

#[tokio::main]
async fn main() -> ExitCode {
    let mode = match parse_args(std::env::args().skip(1)) {
        Ok(Some(mode)) => mode,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("portcullis-demo: {err}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .init();
    match serve(mode).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("portcullis-demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// `Ok(None)` asks for the usage text.
fn parse_args(mut args: impl Iterator<Item = String>) -> Result<Option<Mode>, String> {
    let mut http = None;
    while let Some(arg) = args.next() {
        let addr = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--http" => args
                .next()
                .ok_or("--http needs an address such as 127.0.0.1:8931")?,
            other => match other.strip_prefix("--http=") {
                Some(addr) => addr.to_owned(),
                None => return Err(format!("unexpected argument `{other}`")),
            },
        };
        let addr: SocketAddr = addr
            .parse()
            .map_err(|_| format!("--http wants IP:PORT such as 127.0.0.1:8931, got `{addr}`"))?;
        http = Some(addr);
    }
    Mode::new(http).map(Some).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Option<Mode>, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn stdio_is_the_default() {
        assert_eq!(parse(&[]), Ok(Some(Mode::Stdio)));
    }

    #[test]
    fn http_takes_a_loopback_address() {
        let addr = SocketAddr::from(([127, 0, 0, 1], 8931));
        assert_eq!(
            parse(&["--http", "127.0.0.1:8931"]),
            Ok(Some(Mode::Http(addr)))
        );
        assert_eq!(
            parse(&["--http=127.0.0.1:8931"]),
            Ok(Some(Mode::Http(addr)))
        );
    }

    #[test]
    fn everything_else_is_a_usage_error() {
        for args in [
            &["--http", "0.0.0.0:8931"][..],
            &["--http", "localhost"],
            &["--http"],
            &["--verbose"],
        ] {
            assert!(parse(args).is_err(), "{args:?}");
        }
        assert_eq!(parse(&["--help"]), Ok(None));
    }
}

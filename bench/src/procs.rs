//! The processes a run starts: the benchmark upstream (this harness itself, `upstream`
//! subcommand) and Portcullis from a config directory of its own. The harness does not link
//! the gateway: it runs the `portcullis` binary that `cargo build` made (or `PORTCULLIS_BIN`),
//! so it builds and links quickly even with the release profile's LTO.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// A child process, killed when dropped.
#[derive(Debug)]
pub struct Proc(pub Child);

impl Proc {
    pub fn pid(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start `cmd` and wait (at most `within`) for a line of its stdout that starts with
/// `prefix`; the rest of that line. Its stdout keeps being drained afterwards.
pub fn spawn_until(mut cmd: Command, prefix: &str, within: Duration) -> Result<(Proc, String)> {
    let name = cmd.get_program().to_string_lossy().to_string();
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("start {name}"))?;
    let stdout = child.stdout.take().context("stdout")?;
    let proc = Proc(child);
    let (tx, rx) = std::sync::mpsc::channel();
    let wanted = prefix.to_string();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        for line in lines.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.strip_prefix(&wanted) {
                let _ = tx.send(rest.trim().to_string());
                break;
            }
        }
        for _ in lines {}
    });
    match rx.recv_timeout(within) {
        Ok(rest) => Ok((proc, rest)),
        Err(_) => bail!("{name} did not print `{prefix}…` within {within:?}"),
    }
}

/// The benchmark upstream with `tools` tools, on a free loopback port: (process, MCP URL).
pub fn upstream(tools: usize) -> Result<(Proc, String)> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["upstream", "--tools", &tools.to_string()]);
    spawn_until(cmd, "bench-upstream listening: ", Duration::from_secs(30))
}

/// The `portcullis` binary: `PORTCULLIS_BIN`, else the one `cargo build` makes with this
/// harness's profile (release for figures).
pub fn portcullis_bin() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("PORTCULLIS_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args([
        "build",
        "--quiet",
        "--message-format=json",
        "-p",
        "portcullis",
        "--bin",
        "portcullis",
    ]);
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    let out = cmd
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build")?;
    if !out.status.success() {
        bail!("cargo build -p portcullis failed (its output is above)");
    }
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "portcullis")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .context("cargo built no `portcullis` executable")
}

/// `portcullis serve` on a free loopback port from a temporary directory holding
/// `gateway.toml`, `targets/NAME.toml` and, when given, `policies/bench.cedar`.
#[derive(Debug)]
pub struct Gateway {
    pub proc: Proc,
    /// The MCP endpoint, `http://127.0.0.1:PORT/mcp`.
    pub url: String,
    pub dir: tempfile::TempDir,
    bin: PathBuf,
}

impl Gateway {
    pub fn start(
        bin: &Path,
        gateway_toml: &str,
        targets: &[(String, String)],
        policy: Option<&str>,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let config = format!("{gateway_toml}\n[server]\nlisten = \"127.0.0.1:0\"\n");
        std::fs::write(dir.path().join("gateway.toml"), config)?;
        std::fs::create_dir(dir.path().join("targets"))?;
        for (name, body) in targets {
            std::fs::write(dir.path().join(format!("targets/{name}.toml")), body)?;
        }
        if let Some(policy) = policy {
            std::fs::create_dir(dir.path().join("policies"))?;
            std::fs::write(dir.path().join("policies/bench.cedar"), policy)?;
        }
        let mut cmd = Command::new(bin);
        cmd.arg("serve")
            .arg("--config")
            .arg(dir.path().join("gateway.toml"))
            .env("PORTCULLIS_LOG", "warn")
            .envs(env.iter().copied())
            // The log and the audit trail (one line per call, part of the measured work).
            .stderr(std::fs::File::create(dir.path().join("gateway.log"))?);
        let (proc, url) = spawn_until(cmd, "portcullis ready: ", Duration::from_secs(120))
            .with_context(|| format!("log: {}", dir.path().join("gateway.log").display()))?;
        Ok(Self {
            proc,
            url,
            dir,
            bin: bin.to_path_buf(),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn base(&self) -> &str {
        self.url.trim_end_matches("/mcp")
    }

    /// A token from `portcullis dev-token ARGS` for this gateway's dev IdP.
    pub fn dev_token(&self, args: &[&str]) -> Result<String> {
        let addr = self.base().trim_start_matches("http://").to_string();
        let out = Command::new(&self.bin)
            .arg("dev-token")
            .arg("--config")
            .arg(self.dir.path().join("gateway.toml"))
            .arg("--listening-on")
            .arg(addr)
            .args(args)
            .output()
            .context("run portcullis dev-token")?;
        if !out.status.success() {
            bail!(
                "portcullis dev-token failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

//! Headless Chromium as the person at the browser, for the consent (3LO) tests.
//!
//! [`chromium`] finds Debian's `chromium` and the driver (`tests/browser`: `consent.mjs` on
//! pinned `playwright-core`, installed with `npm ci` on first use), or says why a test must
//! skip — and fails it instead under `PORTCULLIS_REQUIRE_PEERS=1`, as [`crate::peers`] does.
//! [`Browser::complete`] opens a consent URL and answers every page on the way (the gateway's
//! login and consent pages, the peer IdP's login and consent forms, the demo provider's
//! sign-in page) until the gateway shows its outcome page, and returns what it showed.
//! `.ci/run` installs both beforehand, so CI never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use serde::Deserialize;

use crate::{peers_required, repo_root};

/// Where Debian's `chromium` package puts the browser; `PORTCULLIS_CHROMIUM` overrides it.
pub const DEFAULT_CHROMIUM: &str = "/usr/bin/chromium";
/// How long one walk from consent URL to outcome page may take, unless
/// [`Browser::with_timeout`] says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);
/// Time for the script to start Chromium and to report after its own deadline passed,
/// before the test stops waiting for it.
const REPORT_GRACE: Duration = Duration::from_secs(20);
/// The oldest Node.js that `playwright-core` runs on.
const MIN_NODE_MAJOR: u32 = 20;

/// What the person does on the gateway's consent page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
}

impl Decision {
    fn as_arg(self) -> &'static str {
        match self {
            Self::Approve => "approve",
            Self::Deny => "deny",
        }
    }
}

/// The page the walk ended on: an element `<main data-outcome="…">`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Outcome {
    /// Its `data-outcome`: `done`, `denied` or `refused` on the gateway's pages.
    pub outcome: String,
    /// The address of that page (for a redirect back to a client: with its query).
    pub final_url: String,
    /// The text of the `main` element, whitespace collapsed.
    pub text: String,
    /// Every document the browser asked for on the way, redirects included, in order.
    pub hops: Vec<String>,
}

/// Headless Chromium and the script that drives it; see [`chromium`].
#[derive(Debug, Clone)]
pub struct Browser {
    node: PathBuf,
    script: PathBuf,
    chromium: PathBuf,
    timeout: Duration,
}

/// The browser, or `None` (after printing `SKIPPED: …` and why) when Chromium, Node.js or the
/// driver's npm packages are missing and cannot be installed here. Under
/// `PORTCULLIS_REQUIRE_PEERS=1` (CI) a missing piece fails the test instead. The check, and
/// the `npm ci` it may run, happen once per test process.
pub fn chromium() -> Option<Browser> {
    static FOUND: OnceLock<Result<Browser, String>> = OnceLock::new();
    match FOUND.get_or_init(find) {
        Ok(browser) => Some(browser.clone()),
        Err(why) if peers_required() => panic!("PORTCULLIS_REQUIRE_PEERS=1 but {why}"),
        Err(why) => {
            eprintln!("SKIPPED: this test needs headless Chromium: {why}");
            None
        }
    }
}

fn find() -> Result<Browser, String> {
    let chromium = std::env::var_os("PORTCULLIS_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CHROMIUM));
    if !chromium.is_file() {
        return Err(format!(
            "{} not found (install Debian's chromium: apt-get install --no-install-recommends \
             chromium, as .ci/run does; or set PORTCULLIS_CHROMIUM to a Chromium binary)",
            chromium.display()
        ));
    }
    let node = PathBuf::from("node");
    check_node(&node)?;
    let dir = repo_root().join("tests/browser");
    install_driver(&dir).map_err(|e| format!("{e:#}"))?;
    Ok(Browser {
        node,
        script: dir.join("consent.mjs"),
        chromium,
        timeout: DEFAULT_TIMEOUT,
    })
}

fn check_node(node: &Path) -> Result<(), String> {
    let out = Command::new(node)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("node is not installed ({e}); the browser driver runs on it"))?;
    let version = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if out.status.success() && m >= MIN_NODE_MAJOR => Ok(()),
        _ => Err(format!(
            "node {version:?} is too old or unusable: the browser driver (playwright-core) needs \
             Node.js {MIN_NODE_MAJOR} or newer"
        )),
    }
}

/// `npm ci` in `dir` unless every dependency of its package.json is already installed at the
/// pinned version (as `.ci/run` leaves it). `flock` keeps concurrent test processes from
/// installing over each other.
fn install_driver(dir: &Path) -> Result<()> {
    if installed(dir)? {
        return Ok(());
    }
    let lock = dir.join("node_modules.lock");
    let out = Command::new("flock")
        .arg("-w")
        .arg("600")
        .arg(&lock)
        .args([
            "npm",
            "ci",
            "--no-audit",
            "--no-fund",
            "--ignore-scripts",
            "--loglevel=error",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .with_context(|| {
            format!(
                "cannot run `flock … npm ci` in {} (are util-linux and npm installed?)",
                dir.display()
            )
        })?;
    if !out.status.success() || !installed(dir)? {
        bail!(
            "`npm ci` in {} failed ({}), so the browser driver is not installed: {}{}",
            dir.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether `dir/node_modules` holds every dependency of `dir/package.json` at its pinned
/// (exact) version.
fn installed(dir: &Path) -> Result<bool> {
    let read = |path: &Path| -> Result<serde_json::Value> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
    };
    let manifest = read(&dir.join("package.json"))?;
    let Some(deps) = manifest["dependencies"].as_object() else {
        bail!(
            "{} lists no dependencies",
            dir.join("package.json").display()
        );
    };
    for (name, pinned) in deps {
        let have = dir.join("node_modules").join(name).join("package.json");
        if !have.is_file() || read(&have)?["version"] != *pinned {
            return Ok(false);
        }
    }
    Ok(true)
}

impl Browser {
    /// The same browser with another bound on one walk.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Open `url` and walk to the gateway's outcome page as `user` (`password` where an
    /// identity provider asks for one; the peer IdP takes any), pressing `decision` on the
    /// consent page. Fails the test, with what the browser was looking at, when the walk
    /// gets stuck or times out; see [`Browser::try_complete`] to inspect that instead.
    pub async fn complete(
        &self,
        url: &str,
        user: &str,
        password: Option<&str>,
        decision: Decision,
    ) -> Outcome {
        self.try_complete(url, user, password, decision)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// [`Browser::complete`], returning the failure (the script's report: the URL it was
    /// stuck at and what that page showed) instead of panicking.
    pub async fn try_complete(
        &self,
        url: &str,
        user: &str,
        password: Option<&str>,
        decision: Decision,
    ) -> Result<Outcome> {
        let mut cmd = tokio::process::Command::new(&self.node);
        cmd.arg(&self.script)
            .args([
                "--url",
                url,
                "--user",
                user,
                "--decision",
                decision.as_arg(),
            ])
            .arg("--timeout-ms")
            .arg(self.timeout.as_millis().to_string())
            .env("PORTCULLIS_CHROMIUM", &self.chromium)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(password) = password {
            cmd.arg("--password").arg(password);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("cannot start node {}", self.script.display()))?;
        let limit = self.timeout + REPORT_GRACE;
        let out = tokio::time::timeout(limit, child.wait_with_output())
            .await
            .map_err(|_| {
                anyhow!(
                    "headless Chromium did not report within {limit:?} while walking from {url} \
                     as {user} (the script's own deadline is {:?}); it was stopped",
                    self.timeout
                )
            })?
            .with_context(|| format!("waiting for node {}", self.script.display()))?;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let report = stdout
            .lines()
            .rev()
            .find(|l| l.trim_start().starts_with('{'));
        let what = format!("headless Chromium walking from {url} as {user}");
        match (out.status.success(), report) {
            (true, Some(line)) => serde_json::from_str(line).with_context(|| {
                format!("{what}: the script printed an unreadable report: {line}")
            }),
            (false, Some(line)) => {
                let error = serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_string))
                    .unwrap_or_else(|| line.to_string());
                bail!("{what} got stuck: {error}")
            }
            (_, None) => bail!(
                "{what}: the script exited ({}) without a report; its output: {}{}",
                out.status,
                stdout.trim(),
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        }
    }
}

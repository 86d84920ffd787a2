//! Real MCP clients from npm against the quickstart's shape (the dev IdP on, the demo target):
//! `mcp-remote` with no token logs in by itself through the dev IdP (the login form driven
//! with plain HTTP, as a person's browser would), and the MCP Inspector CLI lists and calls
//! tools with a `dev-token`.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use portcullis_e2e::{Gateway, NpmClients, binary, eventually, jwt_claims, peers};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

/// The quickstart's shape on `127.0.0.1:PORT`: port 0 picks a free one (the gateway prints
/// it); a restart passes the port it got, since mcp-remote keys its cache by the server URL.
fn quickstart_gateway(port: u16) -> Gateway {
    let demo = format!(
        "[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    );
    let config = format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[dev_idp]\n");
    Gateway::start(&config, &[("demo", demo)]).unwrap()
}

/// Lines of a child's stream, as they come.
fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// `mcp-remote URL` with no token, playing both its user (the browser) and its MCP host
/// (stdio). Killed on drop, also when an assertion fails.
struct McpRemote {
    child: Child,
    stdin: ChildStdin,
    stdout: Receiver<String>,
    http: reqwest::Client,
    _browser: tempfile::TempDir,
}

impl Drop for McpRemote {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl McpRemote {
    /// Start it and wait for the authorization URL it opens in "the browser": a script
    /// (`BROWSER`, which xdg-open honours when there is no desktop) that writes the URL to a
    /// file. That is the URL a person would see; mcp-remote also prints one on stderr, but
    /// with a stale registration it prints a URL before it finds out and registers again.
    fn start(clients: &NpmClients, gw: &Gateway, config_dir: &Path) -> (Self, String) {
        let browser = tempfile::tempdir().unwrap();
        let opened = browser.path().join("opened");
        let script = browser.path().join("browser.sh");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nprintf '%s\\n' \"$1\" >> '{}'\n",
                opened.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut cmd = clients.command("mcp-remote/dist/proxy.js");
        cmd.arg(&gw.url)
            .env("MCP_REMOTE_CONFIG_DIR", config_dir)
            .env("BROWSER", &script)
            .env_remove("DISPLAY")
            .env_remove("WAYLAND_DISPLAY")
            .env_remove("XDG_CURRENT_DESKTOP")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let stderr = lines(child.stderr.take().unwrap());
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let keep = log.clone();
        // Drained so mcp-remote never blocks on a full pipe; kept to explain a failure.
        std::thread::spawn(move || {
            for line in stderr {
                keep.lock().unwrap().push(line);
            }
        });
        let remote = Self {
            stdout: lines(child.stdout.take().unwrap()),
            stdin: child.stdin.take().unwrap(),
            child,
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            _browser: browser,
        };
        // No event to wait on: the script runs in mcp-remote's process tree.
        let prefix = format!("{}/dev-idp/authorize?", gw.base());
        let authorize = eventually(WAIT, || {
            let text = std::fs::read_to_string(&opened).ok()?;
            text.lines()
                .find(|l| l.starts_with(&prefix))
                .map(str::to_string)
        })
        .unwrap_or_else(|_| {
            panic!(
                "mcp-remote opened no authorization URL; its stderr:\n{}",
                log.lock().unwrap().join("\n")
            )
        });
        (remote, authorize)
    }

    /// The browser: the login form, submitted as `user`, then the redirect followed to
    /// mcp-remote's loopback callback, which redeems the code.
    async fn log_in(&self, gw: &Gateway, authorize: &str, user: &str) {
        let page = self.http.get(authorize).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(html.contains("Development only"), "{html}");
        let attribute = |prefix: &str| {
            html.split(prefix)
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_else(|| panic!("no {prefix} in the login page: {html}"))
                .to_string()
        };
        let form_token = attribute("name=\"form_token\" value=\"");
        // The browser posts where the form says: the advertised authorization endpoint.
        let action = attribute("action=\"");
        assert_eq!(action, format!("{}/dev-idp/authorize", gw.base()));
        let submitted = self
            .http
            .post(&action)
            .form(&[
                ("form_token", form_token.as_str()),
                ("user", user),
                ("decision", "allow"),
            ])
            .send()
            .await
            .unwrap();
        assert!(
            submitted.status().is_redirection(),
            "{}",
            submitted.status()
        );
        let callback = url::Url::parse(submitted.headers()["location"].to_str().unwrap()).unwrap();
        let param = |k: &str| {
            callback
                .query_pairs()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.into_owned())
        };
        assert_eq!(param("iss"), Some(format!("{}/dev-idp", gw.base())));
        assert!(
            param("code").is_some() && param("state").is_some(),
            "{callback}"
        );
        // mcp-remote may open the browser before its callback server listens (a person takes
        // longer than this script): retry a refused connection, for a bounded time.
        let deadline = std::time::Instant::now() + WAIT;
        let done = loop {
            match self.http.get(callback.as_str()).send().await {
                Ok(resp) => break resp,
                Err(e) if e.is_connect() && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("mcp-remote's callback {callback} did not answer: {e}"),
            }
        };
        assert!(done.status().is_success(), "{}", done.status());
    }

    fn send(&mut self, message: Value) {
        writeln!(self.stdin, "{message}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// Send a JSON-RPC request on stdio and wait for its answer.
    fn request(&mut self, id: i64, method: &str, params: Value) -> Value {
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        loop {
            let line = self
                .stdout
                .recv_timeout(WAIT)
                .unwrap_or_else(|_| panic!("no answer to {method} from mcp-remote"));
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && v["id"] == id
            {
                return v;
            }
        }
    }

    /// initialize + initialized + tools/list: the tool names.
    fn list_tools(&mut self) -> Vec<String> {
        let init = self.request(
            1,
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "portcullis-e2e", "version": "1"}}),
        );
        assert_eq!(init["result"]["serverInfo"]["name"], "portcullis", "{init}");
        self.send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        let tools = self.request(2, "tools/list", json!({}));
        tools["result"]["tools"]
            .as_array()
            .unwrap_or_else(|| panic!("no tools: {tools}"))
            .iter()
            .filter_map(|t| t["name"].as_str().map(str::to_string))
            .collect()
    }
}

fn client_id(authorize: &str) -> String {
    url::Url::parse(authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_remote_without_a_token_logs_in_through_the_dev_idp_and_lists_tools() {
    let Some(peers) = peers() else { return };
    let clients = NpmClients::install(&peers).unwrap();
    let gw = quickstart_gateway(0);
    let config_dir = tempfile::tempdir().unwrap();

    let (mut remote, authorize) = McpRemote::start(&clients, &gw, config_dir.path());
    remote.log_in(&gw, &authorize, "e2e-user").await;
    let names = remote.list_tools();
    assert!(names.iter().any(|n| n == "demo__echo"), "{names:?}");
    let echoed = remote.request(
        3,
        "tools/call",
        json!({"name": "demo__echo", "arguments": {"text": "through mcp-remote"}}),
    );
    assert!(
        echoed["result"].to_string().contains("through mcp-remote"),
        "{echoed}"
    );

    // The token mcp-remote keeps names the user typed in the form, for this gateway.
    let stored = walk(config_dir.path())
        .into_iter()
        .find(|p| p.to_string_lossy().ends_with("_tokens.json"))
        .expect("mcp-remote stored its tokens");
    let tokens: Value = serde_json::from_slice(&std::fs::read(stored).unwrap()).unwrap();
    let claims = jwt_claims(tokens["access_token"].as_str().unwrap()).unwrap();
    assert_eq!(claims["sub"], "e2e-user");
    assert_eq!(claims["aud"], gw.url);
    assert!(tokens["refresh_token"].is_string(), "{tokens}");
}

/// The dev IdP keeps registrations and refresh tokens in memory. After a restart (here with
/// a new signing key, so the cached access token is refused too) mcp-remote must find its
/// way back by itself: its refresh fails, its cached registration is refused, it registers
/// again and asks for a new login.
#[tokio::test(flavor = "multi_thread")]
async fn mcp_remote_registers_again_after_the_gateway_restarts() {
    let Some(peers) = peers() else { return };
    let clients = NpmClients::install(&peers).unwrap();
    let config_dir = tempfile::tempdir().unwrap();

    let gw = quickstart_gateway(0);
    let port = gw.port();
    let (mut remote, first) = McpRemote::start(&clients, &gw, config_dir.path());
    remote.log_in(&gw, &first, "alice").await;
    // Serving tools: it has stored its tokens.
    assert!(remote.list_tools().iter().any(|n| n == "demo__echo"));
    drop(remote);
    drop(gw);

    let gw = quickstart_gateway(port);
    let (mut remote, second) = McpRemote::start(&clients, &gw, config_dir.path());
    assert_ne!(
        client_id(&first),
        client_id(&second),
        "a new registration after the restart"
    );
    remote.log_in(&gw, &second, "alice").await;
    assert!(remote.list_tools().iter().any(|n| n == "demo__echo"));
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn the_inspector_cli_lists_and_calls_tools_with_a_dev_token() {
    let Some(peers) = peers() else { return };
    let clients = NpmClients::install(&peers).unwrap();
    let gw = quickstart_gateway(0);
    let token = gw.dev_token(&["--user", "alice", "--agent", "inspector"]);
    // The Inspector keeps settings under $HOME: a fresh one per run.
    let home = tempfile::tempdir().unwrap();
    let inspector = |args: &[&str]| -> Value {
        let out = clients
            .command("@modelcontextprotocol/inspector/clients/launcher/build/index.js")
            .args(["--cli", &gw.url, "--transport", "http"])
            .args(args)
            .args(["--header", &format!("Authorization: Bearer {token}")])
            .env("HOME", home.path())
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "inspector {args:?} failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
    };
    let listed = inspector(&["--method", "tools/list"]);
    let names: Vec<&str> = listed["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"demo__echo"), "{names:?}");
    let called = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "demo__echo",
        "--tool-arg",
        "text=hello from the inspector",
    ]);
    assert_eq!(called["isError"], false, "{called}");
    assert_eq!(called["content"][0]["text"], "hello from the inspector");
}

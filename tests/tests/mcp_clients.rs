//! Real MCP clients from npm against the quickstart's shape (the dev IdP on, the demo target):
//! `mcp-remote` with no token logs in by itself through the dev IdP (the login form driven
//! with plain HTTP, as a person's browser would), and the MCP Inspector CLI lists and calls
//! tools with a `dev-token`.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Stdio};
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use portcullis_e2e::{Gateway, NpmClients, binary, dev_token, free_port, jwt_claims, peers};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(60);

fn quickstart_gateway() -> Gateway {
    let demo = format!(
        "[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    );
    // A fixed port: `dev-token` needs it to know the tokens' audience.
    let listen = format!("[server]\nlisten = \"127.0.0.1:{}\"\n", free_port());
    Gateway::start(&format!("{listen}[dev_idp]\n"), &[("demo", demo)]).unwrap()
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

/// The child is killed (and reaped) on drop, also when an assertion fails.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_remote_without_a_token_logs_in_through_the_dev_idp_and_lists_tools() {
    let Some(peers) = peers() else { return };
    let clients = NpmClients::install(&peers).unwrap();
    let gw = quickstart_gateway();
    let config_dir = tempfile::tempdir().unwrap();

    // mcp-remote prints the authorization URL on stderr and tries to open a browser: with
    // no display and BROWSER=true, "opening" it does nothing; we play the browser.
    let mut cmd = clients.command("mcp-remote/dist/proxy.js");
    cmd.arg(&gw.url)
        .env("MCP_REMOTE_CONFIG_DIR", config_dir.path())
        .env("BROWSER", "true")
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("XDG_CURRENT_DESKTOP")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = Killed(cmd.spawn().unwrap());
    let stderr = lines(child.0.stderr.take().unwrap());
    let stdout = lines(child.0.stdout.take().unwrap());
    let mut stdin = child.0.stdin.take().unwrap();

    let mut seen = Vec::new();
    let authorize = loop {
        let line = stderr.recv_timeout(WAIT).unwrap_or_else(|_| {
            panic!(
                "mcp-remote printed no authorization URL:\n{}",
                seen.join("\n")
            )
        });
        if line.starts_with(&format!("{}/dev-idp/authorize?", gw.base())) {
            break line;
        }
        seen.push(line);
    };
    // Keep draining stderr so mcp-remote never blocks on a full pipe.
    std::thread::spawn(move || for _ in stderr {});

    // The browser: the login form, submitted as a user of our choosing.
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let page = http.get(&authorize).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Development only"), "{html}");
    let form_token = html
        .split("name=\"form_token\" value=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap()
        .to_string();
    let submitted = http
        .post(format!("{}/dev-idp/authorize", gw.base()))
        .form(&[
            ("form_token", form_token.as_str()),
            ("user", "e2e-user"),
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
    // Back to mcp-remote's loopback callback, which redeems the code.
    let done = http.get(callback.as_str()).send().await.unwrap();
    assert!(done.status().is_success(), "{}", done.status());

    // MCP over mcp-remote's stdio.
    let mut send = |m: Value| {
        writeln!(stdin, "{m}").unwrap();
        stdin.flush().unwrap();
    };
    let reply = |id: i64| loop {
        let line = stdout
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no answer to request {id} from mcp-remote"));
        if let Ok(v) = serde_json::from_str::<Value>(&line)
            && v["id"] == id
        {
            break v;
        }
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {},
        "clientInfo": {"name": "portcullis-e2e", "version": "1"}}}),
    );
    assert_eq!(reply(1)["result"]["serverInfo"]["name"], "portcullis");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}));
    let tools = reply(2);
    let names: Vec<&str> = tools["result"]["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools: {tools}"))
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(names.contains(&"demo__echo"), "{names:?}");
    send(json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
        "params": {"name": "demo__echo", "arguments": {"text": "through mcp-remote"}}}));
    assert!(
        reply(3)["result"]
            .to_string()
            .contains("through mcp-remote")
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

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
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
    let gw = quickstart_gateway();
    let token = dev_token(gw.dir.path(), &["--user", "alice", "--agent", "inspector"]);
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

//! `portcullis dev-token` for a gateway listening on port 0: the token's audience is the
//! gateway's URL, which only the running gateway knows; `--listening-on` takes the address it
//! printed, and the token is accepted there.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::process::Command;
use std::time::Duration;

use portcullis_e2e::{binary, run_portcullis, spawn_until_line, write_config};

#[tokio::test(flavor = "multi_thread")]
async fn a_token_for_a_gateway_on_port_0_names_the_port_it_printed() {
    let dir = write_config("[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n", &[]).unwrap();

    // Without the address there is no audience to name: refused with the fix.
    let out = run_portcullis("dev-token", dir.path(), &["--user", "alice"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--listening-on"), "{stderr}");

    let mut cmd = Command::new(binary("portcullis", "portcullis"));
    cmd.arg("serve")
        .arg("--config")
        .arg(dir.path().join("gateway.toml"))
        .env("PORTCULLIS_LOG", "warn");
    let (_gw, line) = spawn_until_line(
        cmd,
        "portcullis",
        "portcullis listening: ",
        Duration::from_secs(60),
    )
    .unwrap();
    let url = line.trim_start_matches("portcullis listening: ").trim();
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches("/mcp")
        .to_string();

    let out = run_portcullis(
        "dev-token",
        dir.path(),
        &["--user", "alice", "--listening-on", &addr],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();

    // The gateway accepts it: tools/list answers 200 with the token, 401 without.
    let body = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;
    let post = |bearer: Option<&str>| {
        let mut req = reqwest::Client::new()
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .body(body);
        if let Some(b) = bearer {
            req = req.bearer_auth(b);
        }
        req.send()
    };
    assert_eq!(post(None).await.unwrap().status(), 401);
    assert_eq!(post(Some(&token)).await.unwrap().status(), 200);

    // An address for another gateway is refused, not silently used.
    let out = run_portcullis(
        "dev-token",
        dir.path(),
        &["--user", "alice", "--listening-on", "10.1.2.3:9"],
    );
    assert_eq!(out.status.code(), Some(1));
}

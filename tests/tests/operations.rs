//! Operating the gateway: the catalog's load errors, `portcullis tools`, and what `/readyz`
//! reports for targets and issuers.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use portcullis_e2e::run_portcullis;
use portcullis_e2e::{ClosedPort, Gateway, binary, readyz, write_config};

fn demo_stdio(prefix: &str) -> String {
    format!(
        "prefix = \"{prefix}\"\n[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    )
}

#[test]
fn colliding_tool_names_are_a_load_error_naming_both_sources() {
    // Two targets without prefixes serving the same tool names.
    let dir = write_config("", &[("first", demo_stdio("")), ("second", demo_stdio(""))]).unwrap();
    for sub in ["check", "serve"] {
        let out = run_portcullis(sub, dir.path(), &[]);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{sub} must refuse a colliding catalog"
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("name `echo` is claimed twice")
                && stderr.contains("target `first`")
                && stderr.contains("target `second`"),
            "{sub}: {stderr}"
        );
    }
}

#[test]
fn over_long_names_are_a_load_error() {
    let prefix = "p".repeat(125); // + "__" + "echo" > 128
    let dir = write_config("", &[("long", demo_stdio(&prefix))]).unwrap();
    let out = run_portcullis("check", dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("over the MCP limit of 128") && stderr.contains("target `long`"),
        "{stderr}"
    );
}

#[test]
fn tools_prints_the_catalog_as_json() {
    let dir = write_config(
        "[catalog]\nseparator = \".\"\n",
        &[("demo", demo_stdio("d"))],
    )
    .unwrap();
    let out = run_portcullis("tools", dir.path(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tools: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let echo = tools
        .iter()
        .find(|t| t["name"] == "d.echo")
        .expect("d.echo listed with the configured separator");
    assert_eq!(echo["target"], "demo");
    assert_eq!(echo["upstream_name"], "echo");
    assert_eq!(echo["inputSchema"]["type"], "object");
}

#[tokio::test(flavor = "multi_thread")]
async fn readyz_reflects_required_targets_optional_targets_and_issuers() {
    let closed = ClosedPort::reserve();
    let dead = closed.url("/mcp");
    // A required target that is down: not ready, with the reason.
    let gw = tokio::task::spawn_blocking({
        let dead = dead.clone();
        move || {
            Gateway::start(
                "",
                &[
                    ("demo", demo_stdio("demo")),
                    ("gone", format!("[mcp]\nurl = \"{dead}\"\n")),
                ],
            )
            .unwrap()
        }
    })
    .await
    .unwrap();
    let health = reqwest::get(format!("{}/healthz", gw.base()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200, "the process is up");
    let (status, body) = readyz(&gw.base()).await;
    assert_eq!(status, 503, "{body}");
    let gone = body["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "gone")
        .unwrap()
        .clone();
    assert_eq!(gone["status"], "down");
    let reason = gone["reason"].as_str().unwrap();
    assert_eq!(
        reason,
        format!(
            "cannot connect to {dead}: connection refused (is the upstream running? check `mcp.url` in targets/gone.toml)"
        ),
        "{gone}"
    );
    drop(gw);

    // The same target marked optional: ready.
    let gw = tokio::task::spawn_blocking({
        let dead = dead.clone();
        move || {
            Gateway::start(
                "",
                &[
                    ("demo", demo_stdio("demo")),
                    (
                        "gone",
                        format!("optional = true\n[mcp]\nurl = \"{dead}\"\n"),
                    ),
                ],
            )
            .unwrap()
        }
    })
    .await
    .unwrap();
    let (status, body) = readyz(&gw.base()).await;
    assert_eq!(status, 200, "{body}");
    drop(gw);

    // An issuer never reached: not ready, named.
    let issuer = closed.url("");
    let gw = tokio::task::spawn_blocking({
        let issuer = issuer.clone();
        move || {
            Gateway::start(
                &format!("[[inbound.issuers]]\nissuer = \"{issuer}\"\n"),
                &[("demo", demo_stdio("demo"))],
            )
            .unwrap()
        }
    })
    .await
    .unwrap();
    let (status, body) = readyz(&gw.base()).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["issuers"][0]["issuer"], issuer);
    assert_eq!(body["issuers"][0]["status"], "never reached");
}

//! The MCP conformance suite, run against the gateway fronting a fixture upstream that
//! implements the suite's tools, prompts and resources, with an empty prefix so names are
//! unchanged. Expected failures (none today) live in tests/conformance-expected-failures.yml.

use std::process::Command;
use std::time::Duration;

use portcullis_e2e::{Gateway, peers, repo_root, spawn_until_line};

#[test]
fn conformance_suite_passes_through_the_gateway() {
    let Some(peers) = peers() else { return };
    let (_fixture, fixture_url) = spawn_until_line(
        Command::new(env!("CARGO_BIN_EXE_conformance-fixture")),
        "conformance-fixture",
        "http://",
        Duration::from_secs(30),
    )
    .expect("fixture starts");
    let target = format!("prefix = \"\"\n[mcp]\nurl = \"{fixture_url}\"\n");
    let gw = Gateway::start("", &[("fixture", target)]).expect("gateway starts");
    // The DNS-rebinding scenario needs a `localhost` URL (it swaps the Host header).
    let url = gw.url.replace("127.0.0.1", "localhost");
    let baseline = repo_root().join("tests/conformance-expected-failures.yml");
    let out = Command::new("bash")
        .arg(peers.join("mcp/conformance.sh"))
        .arg(&url)
        .arg("--baseline")
        .arg(&baseline)
        .output()
        .expect("run conformance.sh");
    let report = String::from_utf8_lossy(&out.stdout);
    println!("{report}");
    assert!(
        out.status.success(),
        "conformance failures beyond the baseline:\n{report}"
    );
    // Guard against a suite that ran nothing: the summary must count real passes, including
    // the scenarios that exercise relays through the gateway.
    let total = report
        .lines()
        .find(|l| l.starts_with("Total:"))
        .expect("suite summary");
    let passed: u32 = total
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("passed count");
    assert!(passed >= 40, "{total}");
    for scenario in [
        "tools-call-sampling",
        "tools-call-elicitation",
        "tools-call-with-progress",
        "tools-call-with-logging",
        "dns-rebinding-protection",
    ] {
        assert!(
            report.contains(&format!("✓ {scenario}")),
            "{scenario} did not pass:\n{report}"
        );
    }
}

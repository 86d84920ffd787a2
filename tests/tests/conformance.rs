//! The MCP conformance suite, run against the gateway fronting a fixture upstream that
//! implements the suite's tools, prompts and resources, with an empty prefix so names are
//! unchanged. Both lines of the suite run: 0.1.16 (protocol 2025-11-25; expected failures, none
//! today, in tests/conformance-expected-failures.yml) and 0.2.0-alpha.12 with the scenarios the
//! 2026-07-28 revision requires (tests/conformance-2026-expected-failures.yml; the fixture alone
//! passes them all).
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use portcullis_e2e::{Gateway, Proc, peers, repo_root, spawn_until_line};

/// Which line of the suite to run.
#[derive(Clone, Copy)]
enum Line {
    /// 0.1.16, its active server scenarios (protocol 2025-11-25).
    Sessions,
    /// 0.2.0-alpha.12, exactly the server scenarios the 2026-07-28 revision requires.
    Stateless,
}

/// Run the suite against `url` with an expected-failures file: (exit 0?, report).
fn run_suite(peers: &Path, line: Line, url: &str, baseline: &Path) -> (bool, String) {
    // The DNS-rebinding scenario needs a `localhost` URL (it swaps the Host header).
    let url = url.replace("127.0.0.1", "localhost");
    let mut cmd = Command::new("bash");
    cmd.arg(peers.join("mcp/conformance.sh")).arg(&url);
    if let Line::Stateless = line {
        cmd.env("CONFORMANCE_LINE", "2026")
            .args(["--requirements", "2026-07-28"]);
    }
    let out = cmd
        .arg("--baseline")
        .arg(baseline)
        .output()
        .expect("run conformance.sh");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{report}");
    (out.status.success(), report)
}

/// The number of passed checks in the suite's `Total: N passed, M failed` line.
fn passed_checks(report: &str) -> u32 {
    let total = report
        .lines()
        .find(|l| l.starts_with("Total:"))
        .expect("suite summary");
    total
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("passed count")
}

/// The fixture and the gateway in front of it, with an empty prefix.
fn fixture_behind_gateway() -> (Proc, Gateway) {
    let (fixture, fixture_url) = spawn_until_line(
        Command::new(env!("CARGO_BIN_EXE_conformance-fixture")),
        "conformance-fixture",
        "http://",
        Duration::from_secs(30),
    )
    .expect("fixture starts");
    let target = format!("prefix = \"\"\n[mcp]\nurl = \"{fixture_url}\"\n");
    let gw = Gateway::start("", &[("fixture", target)]).expect("gateway starts");
    (fixture, gw)
}

#[test]
fn conformance_suite_passes_through_the_gateway() {
    let Some(peers) = peers() else { return };
    let (_fixture, gw) = fixture_behind_gateway();
    let baseline = repo_root().join("tests/conformance-expected-failures.yml");
    let (ok, report) = run_suite(&peers, Line::Sessions, &gw.url, &baseline);
    assert!(ok, "conformance failures beyond the baseline:\n{report}");
    // Guard against a suite that ran nothing: the summary must count real passes, including
    // the scenarios that exercise relays through the gateway.
    let passed = passed_checks(&report);
    assert!(passed >= 40, "only {passed} checks passed:\n{report}");
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

/// The suite against the gateway fronting server-everything: nothing may fail that fails
/// against server-everything alone (the peers' recorded baseline), and the gateway must pass
/// dns-rebinding-protection, which server-everything itself fails — so that entry is dropped
/// from our copy of the baseline, and a stale entry would fail the run.
///
/// Two entries are added: tools-call-simple-text and tools-call-error call fixture tools
/// server-everything does not have. server-everything answers an unknown tool with an
/// `isError` result, which these shallow checks score as a pass; the gateway answers with
/// JSON-RPC -32602 as the MCP spec lists for unknown tools. Both scenarios pass for real
/// through the gateway in `conformance_suite_passes_through_the_gateway`.
#[test]
fn gateway_in_front_of_server_everything_matches_its_baseline_and_adds_rebinding_protection() {
    let Some(peers) = peers() else { return };
    let everything = portcullis_e2e::Everything::start(&peers).expect("server-everything starts");
    let target = format!("prefix = \"\"\n[mcp]\nurl = \"{}\"\n", everything.url);
    let gw = Gateway::start("", &[("everything", target)]).expect("gateway starts");
    let recorded =
        std::fs::read_to_string(peers.join("mcp/everything-baseline.yml")).expect("baseline");
    assert!(
        recorded.contains("dns-rebinding-protection"),
        "the recorded baseline changed: {recorded}"
    );
    let mut ours: String = recorded
        .lines()
        .filter(|l| !l.contains("dns-rebinding-protection"))
        .map(|l| format!("{l}\n"))
        .collect();
    ours.push_str("  - tools-call-simple-text\n  - tools-call-error\n");
    let dir = tempfile::tempdir().unwrap();
    let baseline = dir.path().join("baseline.yml");
    std::fs::write(&baseline, ours).unwrap();
    let (ok, report) = run_suite(&peers, Line::Sessions, &gw.url, &baseline);
    assert!(ok, "new failures or stale baseline entries:\n{report}");
    assert!(report.contains("✓ dns-rebinding-protection"), "{report}");
}

/// The fixture alone passes every scenario the 2026-07-28 revision requires (warnings count as
/// failures here), so what fails through the gateway is the gateway's.
#[test]
fn conformance_2026_requirements_all_pass_against_the_fixture_alone() {
    let Some(peers) = peers() else { return };
    let (_fixture, fixture_url) = spawn_until_line(
        Command::new(env!("CARGO_BIN_EXE_conformance-fixture")),
        "conformance-fixture",
        "http://",
        Duration::from_secs(30),
    )
    .expect("fixture starts");
    let dir = tempfile::tempdir().unwrap();
    let nothing = dir.path().join("nothing-expected.yml");
    std::fs::write(&nothing, "server: []\n").unwrap();
    let (ok, report) = run_suite(&peers, Line::Stateless, &fixture_url, &nothing);
    assert!(ok, "the fixture fails a 2026-07-28 requirement:\n{report}");
    let passed = passed_checks(&report);
    assert!(passed >= 140, "only {passed} checks passed:\n{report}");
}

/// The 2026-07-28 line of the suite (0.2.0-alpha.12, exactly the server scenarios that revision
/// requires, run statelessly) through the gateway in front of the same fixture. Run directly
/// against the fixture, every scored scenario passes; what fails through the gateway, and why,
/// is in tests/conformance-2026-expected-failures.yml. The suite fails the run on a failure not
/// listed there and on a listed one that now passes, so the file follows the gateway.
#[test]
fn conformance_2026_requirements_through_the_gateway() {
    let Some(peers) = peers() else { return };
    let (_fixture, gw) = fixture_behind_gateway();
    let baseline = repo_root().join("tests/conformance-2026-expected-failures.yml");
    let (ok, report) = run_suite(&peers, Line::Stateless, &gw.url, &baseline);
    assert!(
        ok,
        "2026-07-28 conformance differs from the expected failures:\n{report}"
    );
    assert!(
        report.contains(" server-stateless: "),
        "not the 2026-07-28 scenarios:\n{report}"
    );
    // Guard against a suite that ran nothing: real passes, stateless scenarios among them.
    let passed = passed_checks(&report);
    assert!(passed >= 150, "only {passed} checks passed:\n{report}");
    // Every scored scenario passes, among them the input_required round trips the gateway
    // passes through from its 2026 upstream session.
    for scenario in [
        "tools-call-with-progress",
        "sep-2164-resource-not-found",
        "caching",
        "completion-complete",
        "dns-rebinding-protection",
        "server-stateless",
        "input-required-result-unsupported-methods",
        "input-required-result-basic-elicitation",
        "input-required-result-basic-sampling",
        "input-required-result-basic-list-roots",
        "input-required-result-multi-round",
        "input-required-result-multiple-input-requests",
        "input-required-result-tampered-state",
        "input-required-result-capability-check",
        "input-required-result-non-tool-request",
        "input-required-result-ignore-extra-params",
    ] {
        assert!(
            report.contains(&format!("✓ {scenario}")),
            "{scenario} did not pass:\n{report}"
        );
    }
}

//! Golden tests of the messages users see for bad configuration: each must name the file,
//! the line, the key and the fix. Snapshots live in tests/snapshots/.
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

use portcullis::config;

/// Load a config made of `gateway.toml` plus target files; return the rendered errors with
/// the temporary directory replaced by `<dir>`.
fn errors_for(gateway: &str, targets: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), with_auth_off(gateway)).unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    for (name, body) in targets {
        std::fs::write(dir.path().join("targets").join(name), body).unwrap();
    }
    let err = config::load(&dir.path().join("gateway.toml")).expect_err("config must be rejected");
    err.to_string()
        .replace(&dir.path().display().to_string(), "<dir>")
}

/// Cases about other sections run without authentication unless they configure it.
fn with_auth_off(gateway: &str) -> String {
    if gateway.contains("[inbound")
        || gateway.contains("[dev_idp]")
        || gateway.contains("NO_AUTO_INBOUND")
    {
        gateway.to_string()
    } else {
        format!("[inbound]\nmode = \"none\"\n{gateway}")
    }
}

const OK_TARGET: &str = "[mcp]\nurl = \"http://127.0.0.1:9/mcp\"\n";

#[test]
fn misspelt_key_in_target_suggests_the_right_one() {
    let e = errors_for("", &[("demo.toml", "[mcp]\ncomand = \"node\"\n")]);
    insta::assert_snapshot!(e);
}

#[test]
fn unknown_key_in_gateway_file() {
    let e = errors_for(
        "[server]\nlisten = \"127.0.0.1:8787\"\nport = 8787\n",
        &[("a.toml", OK_TARGET)],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn target_without_a_kind_and_target_with_both_transports() {
    let e = errors_for(
        "",
        &[
            ("empty.toml", "description = \"nothing here\"\n"),
            (
                "both.toml",
                "[mcp]\nurl = \"http://127.0.0.1:9/mcp\"\ncommand = \"node\"\n",
            ),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn literal_secret_is_refused_without_echoing_it() {
    let e = errors_for(
        "",
        &[(
            "gh.toml",
            "[mcp]\ncommand = \"sh\"\n[mcp.secret_env]\nGITHUB_TOKEN = \"ghp_supersecretvalue\"\n",
        )],
    );
    assert!(!e.contains("ghp_supersecretvalue"), "{e}");
    insta::assert_snapshot!(e);
}

#[test]
fn missing_secret_names_the_reference() {
    let e = errors_for(
        "",
        &[(
            "gh.toml",
            "[mcp]\ncommand = \"sh\"\n[mcp.secret_env]\nGITHUB_TOKEN = \"env:PORTCULLIS_TEST_UNSET_TOKEN\"\n",
        )],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn bad_values_are_all_reported_at_once() {
    let e = errors_for(
        "[server]\npublic_url = \"ftp://example.com\"\nmax_request_bytes = 10\n[catalog]\nseparator = \"::\"\n",
        &[
            (
                "slow.toml",
                "timeout = \"0s\"\nprefix = \"has space\"\n[mcp]\nurl = \"ws://127.0.0.1:9/mcp\"\n",
            ),
            (
                "stdio.toml",
                "[mcp]\ncommand = \"portcullis-surely-missing\"\n",
            ),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn toml_syntax_error_and_wrong_types() {
    let e = errors_for("", &[("broken.toml", "[mcp\nurl = \"http://x\"\n")]);
    insta::assert_snapshot!("syntax", e);
    let e = errors_for(
        "",
        &[(
            "typed.toml",
            "timeout = 30\n[mcp]\nurl = \"http://127.0.0.1:9/mcp\"\n",
        )],
    );
    insta::assert_snapshot!("wrong_type", e);
}

#[test]
fn two_targets_with_the_same_prefix() {
    let e = errors_for(
        "",
        &[
            ("a.toml", &format!("prefix = \"gh\"\n{OK_TARGET}")),
            ("b.toml", &format!("prefix = \"gh\"\n{OK_TARGET}")),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn a_valid_config_compiles_with_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), with_auth_off("")).unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(dir.path().join("targets/demo.toml"), OK_TARGET).unwrap();
    let s = config::load(&dir.path().join("gateway.toml")).unwrap();
    assert_eq!(s.server.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(s.server.mcp_url(), "http://127.0.0.1:8787/mcp");
    assert!(
        s.server
            .allowed_hosts
            .contains(&"localhost:8787".to_string())
    );
    assert!(!s.server.allowed_hosts.iter().any(|h| h.contains("evil")));
    assert_eq!(s.catalog.separator, "__");
    let t = &s.targets[0];
    assert_eq!((t.name.as_str(), t.prefix.as_str()), ("demo", "demo"));
    assert_eq!(t.call_timeout, config::DEFAULT_CALL_TIMEOUT);
}

#[test]
fn secrets_in_stdio_env_are_redacted_in_debug_output() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), with_auth_off("")).unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(dir.path().join("token"), "s3cr3t-value\n").unwrap();
    std::fs::write(
        dir.path().join("targets/gh.toml"),
        "[mcp]\ncommand = \"sh\"\n[mcp.secret_env]\nTOKEN = \"file:../token\"\n",
    )
    .unwrap();
    let s = config::load(&dir.path().join("gateway.toml")).unwrap();
    let debug = format!("{s:?}");
    assert!(!debug.contains("s3cr3t-value"), "{debug}");
    assert!(debug.contains("[redacted]"));
}

#[test]
fn non_loopback_listen_is_refused_while_callers_are_not_authenticated() {
    let e = errors_for(
        "[server]\nlisten = \"0.0.0.0:8787\"\n",
        &[("a.toml", OK_TARGET)],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn no_issuer_configured() {
    let e = errors_for("# NO_AUTO_INBOUND\n", &[("a.toml", OK_TARGET)]);
    insta::assert_snapshot!(e);
}

#[test]
fn unsafe_issuer_settings() {
    let e = errors_for(
        "[[inbound.issuers]]\nissuer = \"http://idp.example.com\"\nalgorithms = [\"HS256\", \"none\"]\n\
         [[inbound.issuers.claims]]\nclaim = \"groups\"\n",
        &[("a.toml", OK_TARGET)],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn auth_off_with_issuers_is_contradictory() {
    let e = errors_for(
        "[inbound]\nmode = \"none\"\n[[inbound.issuers]]\nissuer = \"https://idp.example.com\"\n",
        &[("a.toml", OK_TARGET)],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn issuer_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[[inbound.issuers]]\nissuer = \"https://idp.example.com/\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/demo.toml"),
        format!("{OK_TARGET}[tools.echo]\nscopes = [\"mcp:write\"]\n"),
    )
    .unwrap();
    let s = config::load(&dir.path().join("gateway.toml")).unwrap();
    let config::InboundMode::Jwt { issuers } = &s.inbound.mode else {
        panic!("jwt mode expected")
    };
    let i = &issuers[0];
    assert_eq!(i.issuer, "https://idp.example.com/");
    assert!(
        i.audiences.is_empty(),
        "filled in with the MCP URL at start"
    );
    assert_eq!(i.algorithms, config::DEFAULT_ALGORITHMS);
    assert!(
        !i.algorithms
            .iter()
            .any(|a| format!("{a:?}").starts_with("HS"))
    );
    assert_eq!(i.user_claim, "sub");
    assert_eq!(i.agent_claims, ["azp", "client_id"]);
    assert_eq!(s.targets[0].tool_scopes["echo"], ["mcp:write"]);
}

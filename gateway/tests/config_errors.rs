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
fn a_page_size_of_zero_says_what_to_use() {
    let e = errors_for("[catalog]\npage_size = 0\n", &[("a.toml", OK_TARGET)]);
    insta::assert_snapshot!(e);
    let e = errors_for("[catalog]\npage_size = -5\n", &[("a.toml", OK_TARGET)]);
    assert!(
        e.contains("gateway.toml:4:") && e.contains("catalog.page_size"),
        "{e}"
    );
}

#[test]
fn an_unknown_upstream_protocol_names_the_ones_there_are() {
    let e = errors_for(
        "",
        &[(
            "x.toml",
            "[mcp]\nurl = \"http://127.0.0.1:9/mcp\"\nprotocol = \"2026\"\n",
        )],
    );
    assert!(
        e.contains("targets/x.toml:3:12")
            && e.contains("mcp.protocol")
            && e.contains("auto, 2025-11-25"),
        "{e}"
    );
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
    assert_eq!(s.catalog.page_size, config::DEFAULT_PAGE_SIZE);
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

/// The target file of the issue: several different problems, all reported in one run.
#[test]
fn every_problem_in_a_target_file_is_reported_at_once() {
    let e = errors_for(
        "",
        &[(
            "github.toml",
            "description = \"GitHub\"\n\
             timout = \"10s\"\n\
             optional = \"yes\"\n\
             [mcp]\n\
             url = \"127.0.0.1:1/mcp\"\n\
             command = \"github-mcp-server\"\n\
             prefix = \"gh\"\n\
             [auth]\n\
             mode = \"api_key\"\n\
             key = \"env:PORTCULLIS_TEST_UNSET_KEY\"\n\
             header = \"X API Key\"\n\
             scopes = [\"repo\"]\n",
        )],
    );
    insta::assert_snapshot!(e);
}

/// Problems in gateway.toml and in two target files, all in one report, file by file.
#[test]
fn problems_in_the_gateway_file_and_two_targets_are_reported_together() {
    let e = errors_for(
        "[server]\nlisten = \"localhost:8790\"\nmax_request_bytes = \"4 MiB\"\n[catalog]\nseperator = \"__\"\n",
        &[
            (
                "api.toml",
                "[mcp]\nurl = \"https://api.example.com/mcp\"\ntimeout = \"5s\"\nargs = [\"--verbose\"]\n",
            ),
            (
                "files.toml",
                "connect_timeout = 10\n[mcp]\ncommand = \"sh\"\nargs = \"-c\"\n[mcp.secret_env]\nTOKEN = \"file:tokens/files\"\n",
            ),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn listen_with_a_host_name_says_to_write_the_ip() {
    let e = errors_for(
        "[server]\nlisten = \"localhost:8790\"\n",
        &[("a.toml", OK_TARGET)],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn url_without_a_scheme_gets_the_full_url_as_fix() {
    let e = errors_for(
        "",
        &[
            ("a.toml", "[mcp]\nurl = \"127.0.0.1:1/mcp\"\n"),
            ("b.toml", "[mcp]\nurl = \"localhost:8080/mcp\"\n"),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn missing_gateway_file_names_the_ways_to_point_at_it() {
    let dir = tempfile::tempdir().unwrap();
    let err = config::load(&dir.path().join("gateway.toml")).expect_err("no file");
    let e = err
        .to_string()
        .replace(&dir.path().display().to_string(), "<dir>");
    insta::assert_snapshot!(e);
}

#[test]
fn missing_targets_directory_and_secret_file_say_file_not_found() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        format!("targets_dir = \"tools\"\n{}", with_auth_off("")),
    )
    .unwrap();
    let err = config::load(&dir.path().join("gateway.toml")).expect_err("no dir");
    let no_dir = err
        .to_string()
        .replace(&dir.path().display().to_string(), "<dir>");
    insta::assert_snapshot!("missing_targets_directory", no_dir);

    let e = errors_for(
        "",
        &[(
            "gh.toml",
            "[mcp]\nurl = \"https://api.example.com/mcp\"\n[auth]\nmode = \"api_key\"\nkey = \"file:secrets/github-token\"\n",
        )],
    );
    assert!(!e.contains("entity not found"), "{e}");
    insta::assert_snapshot!("missing_secret_file", e);
}

#[test]
fn top_level_key_written_after_a_table_header_says_where_it_belongs() {
    let e = errors_for(
        "[server]\nlisten = \"127.0.0.1:8787\"\ntargets_dir = \"targets\"\n",
        &[(
            "a.toml",
            "[mcp]\nurl = \"http://127.0.0.1:9/mcp\"\ntimeout = \"5s\"\n",
        )],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn auth_modes_that_mcp_targets_cannot_use_name_the_ones_they_can() {
    let e = errors_for(
        "[dev_idp]\n",
        &[
            (
                "three_lo.toml",
                &format!("{OK_TARGET}[auth]\nmode = \"oauth2_authorization_code\"\n"),
            ),
            (
                "exchange.toml",
                &format!(
                    "{OK_TARGET}[auth]\nmode = \"token_exchange\"\ntoken_url = \"https://idp.example.com/token\"\n"
                ),
            ),
            (
                "typo.toml",
                &format!("{OK_TARGET}[auth]\nmode = \"apikey\"\n"),
            ),
        ],
    );
    assert!(!e.contains("or `token_exchange` for now"), "{e}");
    // Token exchange is accepted: such a target keeps an upstream session per user.
    assert!(!e.contains("exchange.toml"), "{e}");
    insta::assert_snapshot!(e);
}

const EXCHANGE: &str =
    "[auth]\nmode = \"token_exchange\"\ntoken_url = \"https://idp.example.com/token\"\n";

#[test]
fn per_user_targets_are_refused_without_callers_and_their_listing_settings_are_checked() {
    // Inbound authentication off: no call has a caller to exchange a token for.
    let e = errors_for("", &[("exchange.toml", &format!("{OK_TARGET}{EXCHANGE}"))]);
    assert!(e.contains("exchange.toml"), "{e}");
    assert!(e.contains("turn on inbound authentication"), "{e}");

    let e = errors_for(
        "[dev_idp]\n",
        &[
            // A listing credential that itself needs a caller.
            (
                "lister_per_caller.toml",
                &format!(
                    "{OK_TARGET}{EXCHANGE}[listing_auth]\nmode = \"token_exchange\"\ntoken_url = \"https://idp.example.com/token\"\n"
                ),
            ),
            // A listing credential beside a gateway credential: the shared session lists.
            (
                "lister_shared.toml",
                &format!("{OK_TARGET}[listing_auth]\nmode = \"none\"\n"),
            ),
            // Declared tools on a shared target; a declared tool without a schema; a schema
            // that is not an object.
            (
                "declared_shared.toml",
                &format!(
                    "{OK_TARGET}[tools.search]\ndescription = \"Search\"\ninput_schema = {{ type = \"object\" }}\n"
                ),
            ),
            (
                "declared_bad.toml",
                &format!(
                    "{OK_TARGET}{EXCHANGE}[tools.search]\ndescription = \"Search\"\n[tools.get]\ninput_schema = {{ type = \"string\" }}\n"
                ),
            ),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn a_per_user_target_compiles_its_declared_tools_and_listing_credential() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), "[dev_idp]\n").unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/orders.toml"),
        format!(
            "{OK_TARGET}{EXCHANGE}[listing_auth]\nmode = \"none\"\n[tools.search]\ndescription = \"Search orders\"\ninput_schema = {{ type = \"object\", properties = {{ q = {{ type = \"string\" }} }} }}\nscopes = [\"orders:read\"]\n"
        ),
    )
    .unwrap();
    let snapshot = config::load(&dir.path().join("gateway.toml")).unwrap();
    let t = &snapshot.targets[0];
    assert_eq!(t.listing_auth.as_ref().map(|a| a.mode()), Some("none"));
    assert_eq!(t.declared_tools.len(), 1);
    let tool = &t.declared_tools[0];
    assert_eq!(tool.name, "search");
    assert_eq!(tool.description.as_deref(), Some("Search orders"));
    assert_eq!(
        serde_json::Value::Object((*tool.input_schema).clone()),
        serde_json::json!({ "type": "object", "properties": { "q": { "type": "string" } } })
    );
    assert_eq!(t.tool_scopes["search"], ["orders:read"]);
}

/// A 3LO `[auth]` table on the OK target.
fn three_lo(body: &str) -> String {
    format!("{OK_TARGET}[auth]\nmode = \"oauth2_authorization_code\"\nclient_id = \"app\"\n{body}")
}

#[test]
fn user_consent_settings_are_checked_completely() {
    let e = errors_for(
        "[dev_idp]\n",
        &[
            (
                "unknown_provider.toml",
                &three_lo("provider = \"gitlab\"\n"),
            ),
            (
                "microsoft_without_tenant.toml",
                &three_lo("provider = \"microsoft\"\nscopes = [\"User.Read\"]\n"),
            ),
            (
                "custom_without_endpoints.toml",
                &three_lo("provider = \"custom\"\nscopes = [\"read\"]\n"),
            ),
            (
                "reserved_param.toml",
                &three_lo(
                    "provider = \"google\"\nscopes = [\"openid\"]\n[auth.authorize_params]\nredirect_uri = \"https://evil.example/\"\nlogin_hint = \"alice\"\n",
                ),
            ),
            (
                "no_scopes.toml",
                &three_lo(
                    "provider = \"atlassian\"\nscopes = []\n[auth.tool_scopes]\nsearch = []\n",
                ),
            ),
            (
                "insecure_and_sneaky.toml",
                &three_lo(
                    "provider = \"microsoft\"\ntenant = \"..\"\nscopes = [\"User.Read\"]\ntoken_url = \"http://login.example.com/token\"\n[auth.authorize_params]\nState = \"fixed\"\n",
                ),
            ),
            (
                "slack_scope_param.toml",
                &three_lo(
                    "provider = \"slack\"\nscopes = [\"search:read\"]\n[auth.authorize_params]\nuser_scope = \"admin\"\n",
                ),
            ),
            // Declared tools beside a 3LO [auth]: no claim that the target shares a session.
            (
                "declared_three_lo.toml",
                &three_lo(
                    "provider = \"github\"\nscopes = [\"repo\"]\n[tools.search]\ndescription = \"Search\"\ninput_schema = { type = \"object\" }\n",
                ),
            ),
            // Valid in every respect: they load (no error names them).
            (
                "valid_github.toml",
                &three_lo("provider = \"github\"\nscopes = [\"repo\"]\n"),
            ),
            (
                "valid_custom.toml",
                &three_lo(
                    "provider = \"custom\"\nissuer = \"https://login.example.com/\"\nscopes = [\"read\"]\nresource = \"https://api.example.com/\"\n",
                ),
            ),
        ],
    );
    insta::assert_snapshot!(e);
}

#[test]
fn serde_wording_becomes_plain_words() {
    let e = errors_for(
        "[server]\nmax_request_bytes = -1\nallowed_hosts = \"example.com\"\n",
        &[
            (
                "a.toml",
                "optional = \"yes\"\nmcp = \"http://127.0.0.1:9/mcp\"\n",
            ),
            (
                "b.toml",
                &format!(
                    "{OK_TARGET}[auth]\nmode = \"aws_sigv4\"\nregion = \"eu-west-1\"\nservice = 5\n"
                ),
            ),
        ],
    );
    for rust in ["usize", "sequence", "struct", "McpSection", "invalid type"] {
        assert!(!e.contains(rust), "`{rust}` in: {e}");
    }
    insta::assert_snapshot!(e);
}

/// `dev-token` reads only gateway.toml: a target whose secret is not set in this shell
/// does not stop it.
#[test]
fn dev_idp_settings_load_without_the_targets() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[server]\nlisten = \"127.0.0.1:8790\"\n[dev_idp]\ntoken_ttl = \"10m\"\n",
    )
    .unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    std::fs::write(
        dir.path().join("targets/gh.toml"),
        "[mcp]\ncommand = \"sh\"\n[mcp.secret_env]\nTOKEN = \"env:PORTCULLIS_TEST_UNSET_TOKEN\"\n",
    )
    .unwrap();
    let path = dir.path().join("gateway.toml");
    assert!(
        config::load(&path).is_err(),
        "the full load needs the secret"
    );
    let (server, dev) = config::load_dev_idp(&path).unwrap();
    assert_eq!(server.mcp_url(), "http://127.0.0.1:8790/mcp");
    assert_eq!(dev.token_ttl, std::time::Duration::from_secs(600));
    assert_eq!(dev.key_file, dir.path().join(".data/dev-idp-key.der"));
}

#[test]
fn dev_idp_settings_need_a_dev_idp_table() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[[inbound.issuers]]\nissuer = \"https://idp.example.com/\"\n",
    )
    .unwrap();
    let err = config::load_dev_idp(&dir.path().join("gateway.toml")).expect_err("no dev idp");
    let e = err
        .to_string()
        .replace(&dir.path().display().to_string(), "<dir>");
    insta::assert_snapshot!(e);
}

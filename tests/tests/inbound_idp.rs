//! Inbound authentication against a real, certified OpenID provider (`peers/idp`: npm
//! `oidc-provider`): user tokens from the authorization-code + PKCE flow, agent tokens from
//! client credentials, hot key rotation at the IdP, the IdP going down, and tokens minted for
//! another resource. The client side is the official Python MCP SDK or plain HTTP.
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_e2e::{
    Gateway, Idp, Serve, base64url_encode, binary, eventually, jwt_claims, jwt_header, peers,
    python_client, python_peers, write_config,
};
use serde_json::{Value, json};

/// How long a key rotation may take to be picked up (the gateway refetches the JWKS for an
/// unknown `kid` at most once per `jwks_refetch_interval`, 1 s here).
const ROTATION_WITHIN: Duration = Duration::from_secs(15);

/// The gateway in front of the demo upstream, trusting `idp`, with its stderr (process log
/// and audit lines) in a file.
struct Rig {
    gw: Gateway,
    log: PathBuf,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
}

/// What one raw HTTP request to the gateway got back.
#[derive(Debug)]
struct Answer {
    status: u16,
    www_authenticate: String,
    body: String,
}

impl Rig {
    fn start(idp: &Idp) -> Self {
        Self::with_config(&format!(
            "[[inbound.issuers]]\nissuer = \"{}\"\njwks_refetch_interval = \"1s\"\n",
            idp.issuer
        ))
    }

    fn with_config(gateway_toml: &str) -> Self {
        let demo = binary("portcullis-demo", "portcullis-demo");
        let target = format!("[mcp]\ncommand = {:?}\n", demo.display().to_string());
        let (gw, log) = start_gateway_logging(gateway_toml, &[("demo", target)]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap();
        Self { gw, log, rt, http }
    }

    /// POST an MCP `initialize` to `/mcp`, with `Authorization: Bearer TOKEN` when given.
    fn initialize(&self, token: Option<&str>) -> Answer {
        let body = json!({
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "inbound-idp-test", "version": "0"}
            }
        });
        let mut req = self
            .http
            .post(&self.gw.url)
            .header("accept", "application/json, text/event-stream")
            .json(&body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        self.rt.block_on(async {
            let resp = req.send().await.expect("the gateway answers");
            let status = resp.status().as_u16();
            let www_authenticate = resp
                .headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            let body = resp.text().await.unwrap_or_default();
            Answer {
                status,
                www_authenticate,
                body,
            }
        })
    }

    fn get_json(&self, url: &str) -> Value {
        self.rt.block_on(async {
            let resp = self.http.get(url).send().await.unwrap();
            assert_eq!(resp.status(), 200, "GET {url}");
            resp.json().await.unwrap()
        })
    }

    /// The audit events the gateway has written so far.
    fn audit_events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter(|l| l.contains("portcullis::audit"))
            .filter_map(|l| serde_json::from_str(&l[l.find('{')?..]).ok())
            .collect()
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn assert_still_running(&mut self) {
        assert!(
            self.gw.proc.child.try_wait().unwrap().is_none(),
            "the gateway exited; its log:\n{}",
            self.log_text()
        );
    }
}

/// Like [`Gateway::start`], but the gateway's log goes to `gateway.stderr` in its config
/// directory (the harness's own gateway inherits stderr, so a test cannot read the audit).
fn start_gateway_logging(gateway_toml: &str, targets: &[(&str, String)]) -> (Gateway, PathBuf) {
    let dir = write_config(gateway_toml, targets).unwrap();
    let log = dir.path().join("gateway.stderr");
    let how = Serve {
        env: &[("PORTCULLIS_LOG", "warn,portcullis::audit=info")],
        log_file: Some(log.clone()),
        ..Serve::default()
    };
    (Gateway::serve(dir, &how).unwrap(), log)
}

fn start(peers: &Path) -> (Idp, Rig) {
    let idp = Idp::start(peers).unwrap();
    let rig = Rig::start(&idp);
    (idp, rig)
}

fn tool_names(report: &Value) -> Vec<String> {
    report["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {report}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_string))
        .collect()
}

fn assert_accepted(a: &Answer, what: &str) {
    assert_eq!(a.status, 200, "{what} was refused: {a:?}");
    assert!(
        a.body.contains("protocolVersion"),
        "{what}: no initialize result in {a:?}"
    );
}

fn assert_invalid_token(a: &Answer, rig: &Rig, what: &str) {
    assert_eq!(a.status, 401, "{what}: {a:?}");
    assert!(a.www_authenticate.starts_with("Bearer "), "{what}: {a:?}");
    assert!(
        a.www_authenticate.contains(r#"error="invalid_token""#),
        "{what}: {a:?}"
    );
    assert!(
        a.www_authenticate.contains(&format!(
            r#"resource_metadata="{}/.well-known/oauth-protected-resource/mcp""#,
            rig.gw.base()
        )),
        "{what}: {a:?}"
    );
    let body: Value = serde_json::from_str(&a.body).unwrap();
    assert_eq!(body["error"], "invalid_token", "{what}: {a:?}");
}

/// Case 1: A person's token from the authorization-code + PKCE flow admits the official Python
/// SDK client: it lists and calls tools, and the audit names the user and the client.
#[test]
fn user_token_from_authorization_code_flow_is_accepted() {
    let Some(peers) = python_peers() else { return };
    let (idp, rig) = start(&peers);
    let token = idp.user_token("alice", &rig.gw.url).unwrap();
    let claims = jwt_claims(&token).unwrap();
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["client_id"], "public-client");
    assert_eq!(claims["aud"], rig.gw.url.as_str());

    let listed = python_client(&peers, &rig.gw.url, &["--token", &token, "list"]).unwrap();
    assert_eq!(listed["ok"], true, "{listed}");
    assert!(
        tool_names(&listed).contains(&"demo__echo".to_string()),
        "{listed}"
    );

    let called = python_client(
        &peers,
        &rig.gw.url,
        &["--token", &token, "call", "demo__echo", r#"{"text":"hi"}"#],
    )
    .unwrap();
    assert_eq!(called["ok"], true, "{called}");
    assert_eq!(called["result"]["isError"], false, "{called}");
    assert_eq!(called["result"]["content"][0]["text"], "hi", "{called}");

    // The audit line of that call names who made it: the user via the OAuth client.
    let event = eventually(Duration::from_secs(5), || {
        rig.audit_events()
            .into_iter()
            .find(|e| e["method"] == "tools/call" && e["tool"] == "demo__echo")
    })
    .unwrap_or_else(|e| panic!("{e}: no audit event; gateway log:\n{}", rig.log_text()));
    assert_eq!(event["caller"], "alice via public-client", "{event}");
    assert_eq!(event["decision"], "allow", "{event}");
    assert_eq!(event["target"], "demo", "{event}");
    assert_eq!(event["outcome"]["status"], "ok", "{event}");
}

/// Case 2: An agent's token from client credentials is accepted over plain HTTP; without a
/// token the gateway answers 401 with a challenge naming its protected resource metadata,
/// which in turn names the IdP, and the Python SDK client sees exactly that.
#[test]
fn client_credentials_token_is_accepted_and_no_token_gets_the_challenge() {
    let Some(peers) = python_peers() else { return };
    let (idp, rig) = start(&peers);
    let token = idp.client_token(&rig.gw.url).unwrap();
    let claims = jwt_claims(&token).unwrap();
    assert_eq!(claims["sub"], "cc-client");
    assert_eq!(claims["aud"], rig.gw.url.as_str());

    assert_accepted(&rig.initialize(Some(&token)), "a client-credentials token");

    let called = python_client(
        &peers,
        &rig.gw.url,
        &[
            "--token",
            &token,
            "call",
            "demo__echo",
            r#"{"text":"agent"}"#,
        ],
    )
    .unwrap();
    assert_eq!(called["ok"], true, "{called}");
    let event = eventually(Duration::from_secs(5), || {
        rig.audit_events()
            .into_iter()
            .find(|e| e["method"] == "tools/call" && e["tool"] == "demo__echo")
    })
    .unwrap_or_else(|e| panic!("{e}: no audit event; gateway log:\n{}", rig.log_text()));
    assert_eq!(event["caller"], "cc-client via cc-client", "{event}");

    // No token: 401, RFC 6750 challenge without an error code, pointing at the metadata.
    let metadata_url = format!("{}/.well-known/oauth-protected-resource/mcp", rig.gw.base());
    let anonymous = rig.initialize(None);
    assert_eq!(anonymous.status, 401, "{anonymous:?}");
    assert!(
        anonymous
            .www_authenticate
            .contains(&format!(r#"resource_metadata="{metadata_url}""#)),
        "{anonymous:?}"
    );
    assert!(
        !anonymous.www_authenticate.contains("error="),
        "no credentials is not an invalid token (RFC 6750 §3.1): {anonymous:?}"
    );

    // The metadata sends a client to this IdP, for this resource.
    let metadata = rig.get_json(&metadata_url);
    assert_eq!(metadata["resource"], rig.gw.url.as_str(), "{metadata}");
    assert_eq!(
        metadata["authorization_servers"],
        json!([idp.issuer]),
        "{metadata}"
    );

    let report = python_client(&peers, &rig.gw.url, &["list"]).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    let errors = report["http_errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no http_errors in {report}"));
    let first = &errors[0];
    assert_eq!(first["status"], 401, "{report}");
    assert!(
        first["www_authenticate"]
            .as_str()
            .unwrap_or_default()
            .contains(&format!(r#"resource_metadata="{metadata_url}""#)),
        "{report}"
    );
}

/// Case 3: The IdP rotates its signing key; the gateway, never restarted, accepts tokens
/// signed with the new key (refetching the JWKS for the unknown `kid`) and still those signed
/// with the old one.
#[test]
fn key_rotation_at_the_idp_is_picked_up_without_a_restart() {
    let Some(peers) = python_peers() else { return };
    let (idp, mut rig) = start(&peers);
    let before = idp.user_token("alice", &rig.gw.url).unwrap();
    let old_but_unused = idp.user_token("bob", &rig.gw.url).unwrap();
    let old_kid = jwt_header(&before).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_accepted(&rig.initialize(Some(&before)), "a token before rotation");

    // A kid the IdP never published is refused (and spends the refetch allowance, so the
    // rotation below may have to wait out the rate limit).
    let mut forged_header = jwt_header(&before).unwrap();
    forged_header["kid"] = json!("no-such-kid");
    let mut parts: Vec<&str> = before.split('.').collect();
    let forged_header = base64url_encode(forged_header.to_string().as_bytes());
    parts[0] = &forged_header;
    let forged = parts.join(".");
    let refused = rig.initialize(Some(&forged));
    assert_invalid_token(&refused, &rig, "a token naming an unpublished kid");
    assert!(
        refused.www_authenticate.contains("no-such-kid"),
        "{refused:?}"
    );

    let new_kid = idp.rotate_key().unwrap();
    assert_ne!(new_kid, old_kid);
    let after = idp.user_token("alice", &rig.gw.url).unwrap();
    assert_eq!(
        jwt_header(&after).unwrap()["kid"],
        new_kid.as_str(),
        "the IdP signs with the new key after rotation"
    );

    let started = std::time::Instant::now();
    let mut attempts = 0;
    let accepted = eventually(ROTATION_WITHIN, || {
        attempts += 1;
        let a = rig.initialize(Some(&after));
        (a.status == 200).then_some(a)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: a token signed with the rotated key was never accepted; last answer {:?}",
            rig.initialize(Some(&after))
        )
    });
    assert_accepted(&accepted, "a token after rotation");
    eprintln!(
        "rotated key accepted after {attempts} attempt(s), {:?}",
        started.elapsed()
    );

    // The old key is still published, so a token it signed (never seen by the gateway, so not
    // in its verified-token cache) still verifies against the refetched set.
    assert_accepted(
        &rig.initialize(Some(&old_but_unused)),
        "an unused token signed with the previous key",
    );
    let listed = python_client(&peers, &rig.gw.url, &["--token", &after, "list"]).unwrap();
    assert_eq!(listed["ok"], true, "{listed}");
    rig.assert_still_running();
}

/// Case 4: With the IdP down, keys already fetched keep working: a token never presented
/// before is verified offline; a token for another audience is still refused.
#[test]
fn known_keys_keep_working_while_the_idp_is_down() {
    let Some(peers) = python_peers() else { return };
    let (idp, mut rig) = start(&peers);
    let first = idp.user_token("alice", &rig.gw.url).unwrap();
    let second = idp.user_token("alice", &rig.gw.url).unwrap();
    let agent = idp.client_token(&rig.gw.url).unwrap();
    let elsewhere = idp.client_token("http://127.0.0.1:1/mcp").unwrap();
    assert_ne!(first, second);
    assert_accepted(&rig.initialize(Some(&first)), "a token while the IdP is up");

    idp.stop();
    let down = rig.rt.block_on(async {
        rig.http
            .get(format!("{}/jwks", idp.issuer))
            .send()
            .await
            .is_err()
    });
    assert!(down, "the IdP still answers after stop-idp.sh");

    assert_accepted(
        &rig.initialize(Some(&second)),
        "a never-seen token while the IdP is down",
    );
    assert_accepted(
        &rig.initialize(Some(&agent)),
        "a never-seen agent token while the IdP is down",
    );
    let listed = python_client(&peers, &rig.gw.url, &["--token", &second, "list"]).unwrap();
    assert_eq!(listed["ok"], true, "{listed}");

    let refused = rig.initialize(Some(&elsewhere));
    assert_invalid_token(&refused, &rig, "a token for another resource, IdP down");
    assert!(refused.www_authenticate.contains("audience"), "{refused:?}");
    rig.assert_still_running();
}

/// Case 5: A token the same IdP minted for another resource (RFC 8707 audience) is refused.
#[test]
fn token_for_another_resource_is_refused() {
    let Some(peers) = python_peers() else { return };
    let (idp, rig) = start(&peers);
    let token = idp.user_token("alice", "http://127.0.0.1:1/mcp").unwrap();
    assert_eq!(jwt_claims(&token).unwrap()["aud"], "http://127.0.0.1:1/mcp");

    let refused = rig.initialize(Some(&token));
    assert_invalid_token(&refused, &rig, "a token for another resource");
    assert!(refused.www_authenticate.contains("audience"), "{refused:?}");

    // The same token for the right resource is accepted: only the audience differs.
    let right = idp.user_token("alice", &rig.gw.url).unwrap();
    assert_accepted(&rig.initialize(Some(&right)), "the token for this gateway");

    let report = python_client(&peers, &rig.gw.url, &["--token", &token, "list"]).unwrap();
    assert_eq!(report["ok"], false, "{report}");
    let first = &report["http_errors"][0];
    assert_eq!(first["status"], 401, "{report}");
    assert!(
        first["www_authenticate"]
            .as_str()
            .unwrap_or_default()
            .contains(r#"error="invalid_token""#),
        "{report}"
    );
}

/// Several issuers at once (multi-tenant): the IdP and the gateway's dev issuer each admit
/// their own callers, the audit names the issuer's user, and a token from one issuer does
/// not pass as the other's.
#[test]
fn several_issuers_at_once() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let rig = Rig::with_config(&format!(
        "[[inbound.issuers]]\nissuer = \"{}\"\n[dev_idp]\n",
        idp.issuer
    ));
    let from_idp = idp.user_token("erin", &rig.gw.url).unwrap();
    let from_dev = rig.gw.dev_token(&["--user", "frank", "--agent", "cli"]);
    assert_accepted(&rig.initialize(Some(&from_idp)), "the IdP's token");
    assert_accepted(&rig.initialize(Some(&from_dev)), "the dev issuer's token");
    let metadata = rig.get_json(&format!(
        "{}/.well-known/oauth-protected-resource/mcp",
        rig.gw.base()
    ));
    let servers: Vec<&str> = metadata["authorization_servers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        servers.contains(&idp.issuer.as_str()) && servers.iter().any(|s| s.ends_with("/dev-idp")),
        "{metadata}"
    );
    // An unknown issuer is refused by name.
    let forged = format!(
        "{}.{}.sig",
        base64url_encode(br#"{"alg":"RS256","kid":"x"}"#),
        base64url_encode(
            format!(
                r#"{{"iss":"https://evil.example","aud":"{}","sub":"x","exp":9999999999}}"#,
                rig.gw.url
            )
            .as_bytes()
        )
    );
    let a = rig.initialize(Some(&forged));
    assert_invalid_token(&a, &rig, "a token from an untrusted issuer");
    assert!(a.www_authenticate.contains("not trusted"), "{a:?}");
}

//! The headless-Chromium driver (`tests/browser/consent.mjs`, `portcullis_e2e::browser`) walks
//! real sign-in pages the way the consent tests need it to: the gateway's development login
//! page and the peer IdP's (oidc-provider) login and consent forms, ending on an outcome page
//! (`<main data-outcome="done">`) served by a loopback OAuth client; and the demo provider's
//! (Acme Tasks) sign-in and approval page. Each walk is an
//! authorization-code + PKCE login; the test then redeems the code, which proves the browser
//! signed in as the user it was told to.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use portcullis_e2e::browser::{Decision, Outcome, chromium};
use portcullis_e2e::{Gateway, Idp, MockServer, base64url_encode, jwt_claims, peers};
use portcullis_e2e::{binary, call_tool, connect, spawn_until_line, tool_text};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

/// The loopback OAuth client's redirect endpoint: an outcome page the driver stops at.
async fn client_callback() -> MockServer {
    let page = Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Signed in</title>\
         </head><body><main data-outcome=\"done\"><h1>Signed in</h1>\
         <p>The test client received its authorization code.</p></main></body></html>",
    );
    MockServer::start(Router::new().route("/callback", get(move || async move { page }))).await
}

/// An RFC 7636 verifier (43+ unreserved characters, unique per login; it need not be secret
/// in a test) and its S256 challenge.
fn pkce(label: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let verifier = format!("browser-driver-{label}-{}-{nanos:0>40}", std::process::id());
    let challenge = base64url_encode(&Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// The outcome page of the client's callback, with `code`, our `state` and `iss`: the code.
fn code_from(outcome: &Outcome, callback: &str, state: &str, issuer: &str) -> String {
    assert_eq!(outcome.outcome, "done", "{outcome:?}");
    assert!(
        outcome.final_url.starts_with(&format!("{callback}?")),
        "the walk must end at the client's callback: {outcome:?}"
    );
    let url = Url::parse(&outcome.final_url).unwrap();
    let param = |name: &str| {
        url.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
    };
    assert_eq!(param("state").as_deref(), Some(state), "{outcome:?}");
    assert_eq!(param("iss").as_deref(), Some(issuer), "{outcome:?}");
    let code = param("code").unwrap_or_else(|| panic!("no code in {}", outcome.final_url));
    assert!(!code.is_empty());
    code
}

/// Redeem `form` at `token_endpoint`; the token response.
async fn redeem(token_endpoint: &str, form: &[(&str, &str)]) -> Value {
    let resp = http().post(token_endpoint).form(form).send().await.unwrap();
    let status = resp.status();
    let body: Value = resp.json().await.unwrap();
    assert!(status.is_success(), "token endpoint said {status}: {body}");
    body
}

/// The claims of the access token in a token response.
fn access_claims(tokens: &Value) -> Value {
    jwt_claims(tokens["access_token"].as_str().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_at_the_gateway_development_login() {
    let Some(browser) = chromium() else { return };
    let gw = Gateway::start("[dev_idp]\n", &[]).unwrap();
    let callback = client_callback().await;
    let redirect_uri = callback.url("/callback");
    let issuer = format!("{}/dev-idp", gw.base());

    let registered: Value = http()
        .post(format!("{issuer}/register"))
        .json(&json!({ "client_name": "browser-driver-test", "redirect_uris": [redirect_uri] }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let client_id = registered["client_id"].as_str().unwrap();

    // The login page suggests "alice"; bob proves the driver fills in the name it is given.
    for user in ["alice", "bob"] {
        let (verifier, challenge) = pkce(user);
        let state = format!("state-{user}");
        let mut authorize = Url::parse(&format!("{issuer}/authorize")).unwrap();
        authorize
            .query_pairs_mut()
            .append_pair("response_type", "code")
            .append_pair("client_id", client_id)
            .append_pair("redirect_uri", &redirect_uri)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", &state);

        let outcome = browser
            .complete(authorize.as_str(), user, None, Decision::Approve)
            .await;
        assert_eq!(outcome.hops.first(), Some(&authorize.to_string()));
        assert!(
            outcome.text.contains("Signed in"),
            "the outcome page's text: {outcome:?}"
        );
        let code = code_from(&outcome, &redirect_uri, &state, &issuer);

        let tokens = redeem(
            &format!("{issuer}/token"),
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", &redirect_uri),
                ("client_id", client_id),
                ("code_verifier", &verifier),
            ],
        )
        .await;
        let claims = access_claims(&tokens);
        assert_eq!(claims["sub"], user, "{claims}");
        assert_eq!(claims["iss"], issuer);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_and_consents_at_the_peer_idp() {
    let Some(browser) = chromium() else { return };
    let Some(peers) = peers() else { return };
    let callback = client_callback().await;
    let redirect_uri = callback.url("/callback");
    let idp = Idp::start_with_env(&peers, &[("IDP_PUBLIC_REDIRECT_URIS", &redirect_uri)]).unwrap();

    let (verifier, challenge) = pkce("peer");
    let state = "state-peer";
    let mut authorize = Url::parse(&format!("{}/auth", idp.issuer)).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "public-client")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "openid mcp:read")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state)
        .append_pair("nonce", "nonce-peer");

    // The peer's development login takes any non-empty password.
    let outcome = browser
        .complete(
            authorize.as_str(),
            "alice",
            Some("alice-password"),
            Decision::Approve,
        )
        .await;
    let code = code_from(&outcome, &redirect_uri, state, &idp.issuer);
    assert!(
        outcome.hops.iter().any(|h| h.contains("/interaction/")),
        "the walk went through the IdP's login and consent pages: {outcome:?}"
    );

    let tokens = redeem(
        &format!("{}/token", idp.issuer),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("client_id", "public-client"),
            ("code_verifier", &verifier),
        ],
    )
    .await;
    let claims = access_claims(&tokens);
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["iss"], idp.issuer);
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_and_approves_at_the_demo_provider() {
    let Some(browser) = chromium() else { return };
    let callback = client_callback().await;
    let redirect_uri = callback.url("/callback");
    let mut cmd = std::process::Command::new(binary("portcullis", "portcullis"));
    cmd.args(["demo-provider", "--listen", "127.0.0.1:0", "--redirect-uri"])
        .arg(&redirect_uri)
        .env("PORTCULLIS_DEMO_PROVIDER_SECRET", "browser-driver-secret");
    let (_provider, base) = spawn_until_line(
        cmd,
        "portcullis demo-provider",
        "http://",
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    let base = base.trim().to_string();

    let (verifier, challenge) = pkce("demo");
    let state = "state-demo";
    let mut authorize = Url::parse(&format!("{base}/authorize")).unwrap();
    authorize
        .query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", "portcullis-demo")
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("scope", "tasks:read")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", state);

    // The page suggests "alice": bob proves the name given is the one signed in.
    let outcome = browser
        .complete(authorize.as_str(), "bob", None, Decision::Approve)
        .await;
    let code = code_from(&outcome, &redirect_uri, state, &base);
    let tokens = redeem(
        &format!("{base}/token"),
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", &redirect_uri),
            ("client_id", "portcullis-demo"),
            ("client_secret", "browser-driver-secret"),
            ("code_verifier", &verifier),
        ],
    )
    .await;

    // Acme Tasks' own MCP server says whose list the token opens.
    let client = connect(
        &format!("{base}/mcp"),
        Some(tokens["access_token"].as_str().unwrap()),
    )
    .await;
    let listed = call_tool(&client, "list_tasks", json!({})).await.unwrap();
    assert_eq!(tool_text(&listed), "bob has no tasks.");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_walk_that_gets_stuck_names_the_page_and_what_it_showed() {
    let Some(browser) = chromium() else { return };
    let page = Html(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Unexpected</title>\
         </head><body><h1>Nothing to press here</h1></body></html>",
    );
    let server =
        MockServer::start(Router::new().route("/lost", get(move || async move { page }))).await;
    let url = server.url("/lost");

    let err = browser
        .try_complete(&url, "alice", None, Decision::Approve)
        .await
        .unwrap_err()
        .to_string();
    for shown in [
        url.as_str(),
        "got stuck",
        "none that the walk knows",
        "HTTP status 200",
        "Nothing to press here",
    ] {
        assert!(err.contains(shown), "`{shown}` missing from: {err}");
    }
}

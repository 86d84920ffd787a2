//! OAuth2 client credentials (2LO) against the real OpenID provider (`../shared/peers/idp`,
//! its `cc-client`). The upstream is a second Portcullis whose inbound layer verifies the
//! bearer against the IdP's JWKS, so a call succeeding proves the upstream received a valid
//! IdP token for its audience. Token requests are counted by a proxy in front of the IdP's
//! token endpoint.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use axum::extract::State;
use axum::response::IntoResponse;
use portcullis::config::Secret;
use portcullis::config::outbound::{
    ClientAuth, ClientCredentialsSpec, OAuthClientSpec, TokenEndpoint,
};
use portcullis::outbound::ClientCredentials;
use portcullis_e2e::{Gateway, Idp, MockServer, binary, call_tool, connect, peers};

/// A proxy in front of the IdP's token endpoint that counts requests and can misbehave.
#[derive(Clone)]
struct TokenProxy {
    upstream: String,
    count: Arc<AtomicUsize>,
    /// 0 pass through; 1 answer `invalid_client`; 2 hand out a garbage token once, then pass.
    mode: Arc<AtomicU8>,
}

async fn proxy_token(
    State(p): State<TokenProxy>,
    headers: http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    p.count.fetch_add(1, Ordering::SeqCst);
    match p.mode.load(Ordering::SeqCst) {
        1 => {
            return (http::StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "invalid_client", "error_description": "client authentication failed"})))
                .into_response();
        }
        2 => {
            p.mode.store(0, Ordering::SeqCst);
            return axum::Json(serde_json::json!({"access_token": "garbage-token", "token_type": "Bearer", "expires_in": 3600})).into_response();
        }
        _ => {}
    }
    let mut req = reqwest::Client::new()
        .post(format!("{}/token", p.upstream))
        .body(body.to_vec());
    for (k, v) in &headers {
        if k != http::header::HOST && k != http::header::CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let resp = req.send().await.unwrap();
    let status = resp.status();
    let bytes = resp.bytes().await.unwrap();
    (
        status,
        [(http::header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

/// The proxy's token endpoint URL, its state and its server (stopped when dropped).
async fn start_proxy(upstream: &str) -> (String, TokenProxy, MockServer) {
    let state = TokenProxy {
        upstream: upstream.to_string(),
        count: Arc::default(),
        mode: Arc::default(),
    };
    let app = axum::Router::new()
        .route("/token", axum::routing::post(proxy_token))
        .with_state(state.clone());
    let server = MockServer::start(app).await;
    (server.url("/token"), state, server)
}

fn secret_file(dir: &tempfile::TempDir, value: &str) -> String {
    let p = dir.path().join("cc-secret");
    std::fs::write(&p, value).unwrap();
    p.display().to_string()
}

/// An upstream Portcullis that admits only IdP tokens for its own URL, fronting the demo.
fn validating_upstream(issuer: &str) -> Gateway {
    let gw = format!("[[inbound.issuers]]\nissuer = \"{issuer}\"\n");
    let demo = format!(
        "[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    );
    Gateway::start(&gw, &[("demo", demo)]).unwrap()
}

async fn start_upstream(idp: &Idp) -> Gateway {
    let issuer = idp.issuer.clone();
    tokio::task::spawn_blocking(move || validating_upstream(&issuer))
        .await
        .unwrap()
}

fn two_lo_target(upstream: &Gateway, token_url: &str, secret_path: &str, extra: &str) -> String {
    format!(
        "[mcp]\nurl = \"{}\"\n[auth]\nmode = \"oauth2_client_credentials\"\ntoken_url = \"{token_url}\"\nclient_id = \"cc-client\"\nclient_secret = \"file:{secret_path}\"\nscopes = [\"mcp:read\"]\nresource = \"{}\"\n{extra}",
        upstream.url, upstream.url
    )
}

async fn echo(url: &str, tool: &str, text: &str) -> rmcp::model::CallToolResult {
    let client = connect(url, None).await;
    let r = call_tool(&client, tool, serde_json::json!({"text": text}))
        .await
        .unwrap();
    client.cancel().await.ok();
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn upstream_receives_a_valid_idp_token_and_one_token_serves_many_calls() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let upstream = start_upstream(&idp).await;
    let (token_url, proxy, _token_server) = start_proxy(&idp.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "cc-client-secret");
    let target = two_lo_target(&upstream, &token_url, &secret, "");
    let front = tokio::task::spawn_blocking(move || Gateway::start("", &[("up", target)]).unwrap())
        .await
        .unwrap();

    for i in 0..5 {
        let r = echo(&front.url, "up__demo__echo", &format!("call {i}")).await;
        assert_ne!(r.is_error, Some(true), "{r:?}");
        assert!(
            serde_json::to_string(&r.content)
                .unwrap()
                .contains(&format!("call {i}"))
        );
    }
    // Session set-up, listing and five calls through fresh client sessions: one token.
    assert_eq!(proxy.count.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upstream_401_replaces_the_cached_token_once() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let upstream = start_upstream(&idp).await;
    let (token_url, proxy, _token_server) = start_proxy(&idp.issuer).await;
    // The first token handed out is garbage: the upstream answers 401, the gateway drops it,
    // fetches a real one and retries once.
    proxy.mode.store(2, Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "cc-client-secret");
    let target = two_lo_target(&upstream, &token_url, &secret, "");
    let front = tokio::task::spawn_blocking(move || Gateway::start("", &[("up", target)]).unwrap())
        .await
        .unwrap();
    let r = echo(&front.url, "up__demo__echo", "after retry").await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert_eq!(
        proxy.count.load(Ordering::SeqCst),
        2,
        "one garbage token, one real"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn token_endpoint_errors_are_tool_errors_naming_target_and_oauth_code() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let upstream = start_upstream(&idp).await;
    let (token_url, proxy, _token_server) = start_proxy(&idp.issuer).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = secret_file(&dir, "cc-client-secret");
    // A skew as long as the token's life: every call asks for a fresh token, so the next call
    // meets the token endpoint's error.
    let target = two_lo_target(&upstream, &token_url, &secret, "refresh_skew = \"3600s\"\n");
    let front = tokio::task::spawn_blocking(move || Gateway::start("", &[("up", target)]).unwrap())
        .await
        .unwrap();
    assert_ne!(
        echo(&front.url, "up__demo__echo", "ok").await.is_error,
        Some(true)
    );
    proxy.mode.store(1, Ordering::SeqCst);
    let r = echo(&front.url, "up__demo__echo", "refused").await;
    assert_eq!(r.is_error, Some(true), "{r:?}");
    let text = serde_json::to_string(&r.content).unwrap();
    assert!(
        text.contains("target `up`") && text.contains("invalid_client"),
        "{text}"
    );

    // A wrong secret at the real IdP: `check` names the target and the OAuth error.
    proxy.mode.store(0, Ordering::SeqCst);
    let bad = secret_file(&dir, "not-the-secret");
    let dir2 = portcullis_e2e::write_config(
        "",
        &[("bad", two_lo_target(&upstream, &token_url, &bad, ""))],
    )
    .unwrap();
    let out = portcullis_e2e::run_portcullis("check", dir2.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("target `bad`") && stderr.contains("invalid_client"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("not-the-secret"),
        "the secret must never be printed: {stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_thousand_concurrent_callers_cause_one_token_request_and_expiry_one_refresh() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let (token_url, proxy, _token_server) = start_proxy(&idp.issuer).await;
    let now = Arc::new(std::sync::Mutex::new(SystemTime::now()));
    let clock = {
        let now = now.clone();
        Arc::new(move || *now.lock().unwrap())
    };
    let spec = ClientCredentialsSpec {
        endpoint: TokenEndpoint::Url(url::Url::parse(&token_url).unwrap()),
        client: OAuthClientSpec {
            client_id: "cc-client".into(),
            auth: ClientAuth::Basic(Secret::new("cc-client-secret")),
        },
        scopes: vec!["mcp:read".into()],
        audience: None,
        resource: Some("http://127.0.0.1:1/mcp".into()),
        refresh_skew: Duration::from_secs(60),
    };
    let provider = Arc::new(ClientCredentials::new(spec, reqwest::Client::new(), clock));
    let tokens = futures::future::join_all((0..1000).map(|_| {
        let p = provider.clone();
        async move { p.token().await.unwrap().expose().to_string() }
    }))
    .await;
    assert_eq!(proxy.count.load(Ordering::SeqCst), 1, "single flight");
    assert!(tokens.iter().all(|t| t == &tokens[0]));
    // The IdP's token is an at+jwt for the requested resource.
    assert_eq!(tokens[0].split('.').count(), 3);

    // Past expiry minus skew (the IdP's tokens live 3600 s): one refresh for all callers.
    *now.lock().unwrap() += Duration::from_secs(3600 - 30);
    let refreshed = futures::future::join_all((0..100).map(|_| {
        let p = provider.clone();
        async move { p.token().await.unwrap().expose().to_string() }
    }))
    .await;
    assert_eq!(
        proxy.count.load(Ordering::SeqCst),
        2,
        "expiry triggers exactly one refresh"
    );
    assert!(refreshed.iter().all(|t| t == &refreshed[0]));
    assert_eq!(provider.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn client_secret_post_and_a_discovered_token_endpoint() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let spec = ClientCredentialsSpec {
        // No token_url: discovered from the issuer's OpenID configuration.
        endpoint: TokenEndpoint::Issuer(url::Url::parse(&idp.issuer).unwrap()),
        client: OAuthClientSpec {
            client_id: "cc-client-post".into(),
            auth: ClientAuth::Post(Secret::new("cc-client-post-secret")),
        },
        scopes: vec!["mcp:read".into()],
        audience: None,
        resource: Some("http://127.0.0.1:2/mcp".into()),
        refresh_skew: Duration::from_secs(60),
    };
    let provider = ClientCredentials::new(
        spec,
        reqwest::Client::new(),
        portcullis::outbound::system_clock(),
    );
    let token = provider.token().await.unwrap();
    let claims = portcullis_e2e::jwt_claims(token.expose()).unwrap();
    assert_eq!(claims["client_id"], "cc-client-post");
    assert_eq!(
        claims["aud"], "http://127.0.0.1:2/mcp",
        "the RFC 8707 resource reached the IdP"
    );
    assert_eq!(claims["iss"], idp.issuer);
}

/// `private_key_jwt` (RFC 7523) against an authorization server that verifies the client
/// assertion with the client's public key.
#[tokio::test(flavor = "multi_thread")]
async fn private_key_jwt_sends_a_verifiable_client_assertion() {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation};
    let fixtures = portcullis_e2e::repo_root().join("tests/fixtures");
    let private = std::fs::read_to_string(fixtures.join("rsa.pem")).unwrap();
    let public = std::fs::read(fixtures.join("rsa.pub.pem")).unwrap();
    let seen: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let app = axum::Router::new()
        .route(
            "/token",
            axum::routing::post({
                let seen = seen.clone();
                move |axum::extract::Form(form): axum::extract::Form<std::collections::HashMap<String, String>>| {
                    let seen = seen.clone();
                    let public = public.clone();
                    async move {
                        let mut v = Validation::new(Algorithm::RS256);
                        v.validate_aud = false; // the test checks `aud` against the endpoint URL
                        let key = DecodingKey::from_rsa_pem(&public).unwrap();
                        let assertion = form.get("client_assertion").cloned().unwrap_or_default();
                        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
                            && form.get("client_assertion_type").map(String::as_str) == Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
                            && !form.contains_key("client_secret");
                        match (ok, jsonwebtoken::decode::<serde_json::Value>(&assertion, &key, &v)) {
                            (true, Ok(data)) => {
                                seen.lock().unwrap().push(data.claims.to_string());
                                axum::Json(serde_json::json!({"access_token": "pkjwt-token", "token_type": "Bearer", "expires_in": 300})).into_response()
                            }
                            _ => (http::StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"error": "invalid_client"}))).into_response(),
                        }
                    }
                }
            }),
        );
    let server = MockServer::start(app).await;
    let token_url = server.url("/token");
    let spec = ClientCredentialsSpec {
        endpoint: TokenEndpoint::Url(url::Url::parse(&token_url).unwrap()),
        client: OAuthClientSpec {
            client_id: "pk-client".into(),
            auth: ClientAuth::PrivateKeyJwt {
                key_pem: Secret::new(private),
                alg: Algorithm::RS256,
            },
        },
        scopes: vec![],
        audience: Some("https://api.example.com".into()),
        resource: None,
        refresh_skew: Duration::from_secs(60),
    };
    let provider = ClientCredentials::new(
        spec,
        reqwest::Client::new(),
        portcullis::outbound::system_clock(),
    );
    assert_eq!(provider.token().await.unwrap().expose(), "pkjwt-token");
    let claims: serde_json::Value = serde_json::from_str(&seen.lock().unwrap()[0]).unwrap();
    assert_eq!(claims["iss"], "pk-client");
    assert_eq!(claims["sub"], "pk-client");
    assert_eq!(
        claims["aud"], token_url,
        "RFC 7523: the audience is the token endpoint"
    );
    assert!(claims["exp"].as_u64().unwrap() > claims["iat"].as_u64().unwrap());
    assert!(claims["jti"].as_str().is_some_and(|j| !j.is_empty()));
}

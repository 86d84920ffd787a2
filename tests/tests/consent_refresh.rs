//! Refreshing a user's grant (3LO) against the real OpenID provider of `../shared/peers/idp`:
//! the IdP is the gateway's inbound issuer and the target's authorization server, and the
//! upstream is a second Portcullis that admits only that IdP's tokens for its own URL, so a
//! call that succeeds proves a token the IdP really issued reached it.
//!
//! The test process plays the consent that came before: it obtains a user's real tokens from
//! the IdP (authorization code + PKCE as the gateway's confidential client) and stores them in
//! the running gateway's vault as already expired. Between the gateway and the IdP's token
//! endpoint sits a counting proxy that can answer HTTP 500; between the MCP client and the
//! gateway sits a proxy that counts the calls the gateway has accepted, so the refresh can be
//! held until every call is inside the gateway.
//!
//! - 100 concurrent calls of an expired grant: one refresh reaches the IdP, every call
//!   succeeds, the vault holds the rotated refresh token and a new expiry;
//! - the provider answers 500: the caller hears of the provider failure (no consent link) and
//!   the grant is kept (and serves the next call once the provider is back);
//! - the provider answers `invalid_grant`: the grant is deleted and the caller is asked to
//!   consent again (-32042).
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use portcullis::config::{Secret, SecretRef};
use portcullis::vault::{Grant, GrantFilter, GrantKey, Kek, NewGrant, Vault};
use portcullis_e2e::{
    Era, Gateway, Idp, MockServer, Serve, binary, connect_as, eventually, jwt_claims, peers,
    tool_args, write_config,
};
use rmcp::model::*;
use rmcp::service::ServiceError;
use serde_json::{Value, json};
use tokio::sync::watch;

const CLIENT: &str = "confidential-client";
const SECRET: &str = "confidential-client-secret";
/// The confidential client's redirect URI at the IdP. `token.sh` reads the code from the
/// redirect without fetching it, so nothing needs to listen there.
const REDIRECT: &str = "http://127.0.0.1:8787/oauth/callback";
const TARGET: &str = "up";
const TOOL: &str = "up__demo__echo";
/// The scopes the target asks for, and so the scopes of every seeded grant.
const SCOPE: &str = "mcp:read";
const CONCURRENT_CALLS: usize = 100;
/// Bound on every wait for the gateway (a hang fails the test instead of blocking CI).
const WITHIN: Duration = Duration::from_secs(120);

#[tokio::test(flavor = "multi_thread")]
async fn refresh_at_the_real_idp_single_flight_provider_error_and_invalid_grant() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start_with_env(&peers, &[("IDP_REDIRECT_URIS", REDIRECT)]).unwrap();
    let provider = TokenProxy::start(&format!("{}/token", idp.issuer)).await;
    let logs = tempfile::tempdir().unwrap();
    let upstream_log = logs.path().join("upstream.log");
    let upstream = {
        let (issuer, log) = (idp.issuer.clone(), upstream_log.clone());
        tokio::task::spawn_blocking(move || validating_upstream(&issuer, &log))
            .await
            .unwrap()
    };
    let gw = {
        let (issuer, token_url, resource) =
            (idp.issuer.clone(), provider.url(), upstream.url.clone());
        tokio::task::spawn_blocking(move || front(&issuer, &token_url, &resource))
            .await
            .unwrap()
    };
    let door = FrontDoor::start(&gw.base()).await;
    let vault = open_vault(&gw).await;

    // 1. alice: 100 concurrent calls find her grant expired; one refresh reaches the IdP.
    let alice = User::sign_in(&idp, "alice", &gw, &upstream);
    let seeded = alice.seed_expired_grant(&vault, "stale-access-token").await;
    provider.hold_refreshes();
    let client = connect_as(
        portcullis_e2e::url_elicitation_client("url-capable-test-client"),
        &door.url(),
        Some(&alice.caller_token),
        Era::Legacy,
    )
    .await;
    let calls: Vec<_> = (0..CONCURRENT_CALLS)
        .map(|i| {
            let peer = client.peer().clone();
            tokio::spawn(async move {
                peer.call_tool_once(
                    CallToolRequestParams::new(TOOL)
                        .with_arguments(tool_args(json!({ "text": format!("call {i}") }))),
                )
                .await
            })
        })
        .collect();
    // Every call is inside the gateway (it answered each POST with its event stream) while
    // the refresh is still held at the provider.
    door.wait_for_accepted_calls(CONCURRENT_CALLS).await;
    provider.wait_for_refreshes(1).await;
    provider.release_refreshes();
    let answers = tokio::time::timeout(WITHIN, futures::future::join_all(calls))
        .await
        .expect("the gateway did not answer the concurrent calls");
    for (i, call) in answers.into_iter().enumerate() {
        let text = complete_text(call.unwrap().unwrap());
        assert!(text.contains(&format!("call {i}")), "call {i}: {text}");
    }
    let sent = provider.refresh_tokens_sent();
    assert_eq!(
        sent,
        vec![seeded.clone()],
        "exactly one refresh, with alice's refresh token"
    );
    let refreshed = vault.grant(&alice.key).await.unwrap().unwrap();
    let now = unix_now();
    let expires_at = refreshed.expires_at.unwrap();
    assert!(expires_at > now + 60, "new expiry {expires_at}, now {now}");
    // The IdP rotates refresh tokens (the old one is now spent); the vault keeps the new one.
    let rotated = refreshed.refresh_token.as_ref().unwrap().expose();
    assert_ne!(rotated, seeded, "the rotated refresh token was not stored");
    assert!(!rotated.is_empty());
    // The stored access token is the IdP's, for alice, at the upstream.
    let claims = jwt_claims(refreshed.access_token.expose()).unwrap();
    assert_eq!(claims["sub"], "alice", "{claims}");
    assert_eq!(claims["aud"], upstream.url.as_str(), "{claims}");
    assert_eq!(refreshed.scopes, vec![SCOPE.to_string()]);
    // The upstream verified every call's token: the IdP's, for alice through the gateway's
    // client.
    let audited = eventually(Duration::from_secs(10), || {
        let callers = upstream_callers(&upstream_log);
        (callers.len() >= CONCURRENT_CALLS).then_some(callers)
    })
    .unwrap();
    assert!(
        audited.iter().all(|c| c == "alice via confidential-client"),
        "{audited:?}"
    );
    client.cancel().await.unwrap();

    // 2. bob: the provider answers 500. The caller hears of the provider, not of consent, and
    //    the grant stays as it was; once the provider is back, the same grant serves a call.
    let bob = User::sign_in(&idp, "bob", &gw, &upstream);
    let seeded = bob.seed_expired_grant(&vault, "stale-access-token").await;
    let before = vault.grant(&bob.key).await.unwrap().unwrap();
    let client = connect_as(
        portcullis_e2e::url_elicitation_client("url-capable-test-client"),
        &gw.url,
        Some(&bob.caller_token),
        Era::Legacy,
    )
    .await;
    provider.set_failing(true);
    let text = tool_error_text(call(&client, "from bob").await);
    assert!(text.contains("refreshing the user's token"), "{text}");
    assert!(text.contains("token endpoint"), "{text}");
    assert!(text.contains("HTTP 500"), "{text}");
    assert!(!text.contains("/consent/"), "{text}");
    assert!(!text.contains(&seeded), "the refresh token leaked: {text}");
    // One refresh was tried, with bob's refresh token.
    let sent = provider.refresh_tokens_sent();
    assert_eq!((sent.len(), &sent[1]), (2, &seeded));
    let kept = vault.grant(&bob.key).await.unwrap().unwrap();
    assert_same_grant(&kept, &before);
    assert_eq!(vault.list_grants(&bob.filter()).await.unwrap().len(), 1);
    provider.set_failing(false);
    let text = complete_text(call(&client, "bob again").await.unwrap());
    assert!(text.contains("bob again"), "{text}");
    // The kept refresh token was the one that worked.
    assert_eq!(
        provider.refresh_tokens_sent()[1..],
        [seeded.clone(), seeded]
    );
    client.cancel().await.unwrap();

    // 3. carol: the IdP refuses her refresh token (invalid_grant). The grant is deleted and
    //    her client, which can open URLs, is asked to consent again.
    let carol = User::sign_in(&idp, "carol", &gw, &upstream);
    carol.seed_expired_grant(&vault, "stale-access-token").await;
    let garbage = "not-a-refresh-token-the-idp-issued";
    carol.replace_refresh_token(&vault, garbage).await;
    let client = connect_as(
        portcullis_e2e::url_elicitation_client("url-capable-test-client"),
        &gw.url,
        Some(&carol.caller_token),
        Era::Legacy,
    )
    .await;
    let e = match call(&client, "from carol").await {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected -32042 asking carol to consent, got {other:?}"),
    };
    assert_eq!(e.code.0, -32042, "{e:?}");
    let first = &e.data.as_ref().unwrap()["elicitations"][0];
    assert_eq!(first["mode"], "url", "{e:?}");
    let link = first["url"].as_str().unwrap();
    assert!(
        link.starts_with(&format!("{}/consent/", gw.base())),
        "{link}"
    );
    assert_eq!(provider.refresh_tokens_sent()[3..], [garbage.to_string()]);
    assert!(vault.grant(&carol.key).await.unwrap().is_none());
    assert!(vault.list_grants(&carol.filter()).await.unwrap().is_empty());
    client.cancel().await.unwrap();

    // The other users' grants were not touched by carol's.
    assert!(vault.grant(&alice.key).await.unwrap().is_some());
    assert!(vault.grant(&bob.key).await.unwrap().is_some());
    vault.close().await;
}

/// The upstream: a Portcullis that admits only the IdP's tokens for its own URL, fronting the
/// demo tools; its log (audit lines name each caller) goes to `log`.
fn validating_upstream(issuer: &str, log: &Path) -> Gateway {
    let gw = format!("[[inbound.issuers]]\nissuer = \"{issuer}\"\n");
    let demo = format!(
        "[mcp]\ncommand = \"{}\"\nargs = [\"demo-upstream\"]\n",
        binary("portcullis", "portcullis").display()
    );
    Gateway::serve(
        write_config(&gw, &[("demo", demo)]).unwrap(),
        &Serve {
            log_file: Some(log.to_path_buf()),
            ..Serve::default()
        },
    )
    .unwrap()
}

/// The callers of the `tools/call` requests the upstream audited (it verified each token).
fn upstream_callers(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["method"] == "tools/call")
        .filter_map(|v| v["caller"].as_str().map(str::to_string))
        .collect()
}

/// The gateway under test: the IdP as issuer, and target `up` acting for each user with the
/// IdP as authorization server, its token endpoint reached through `token_url`.
fn front(issuer: &str, token_url: &str, resource: &str) -> Gateway {
    let gw = format!(
        "[[inbound.issuers]]\nissuer = \"{issuer}\"\n\
         [inbound.issuers.consent_login]\nclient_id = \"{CLIENT}\"\nclient_secret = \"env:E2E_CONSENT_SECRET\"\nscopes = [\"openid\", \"profile\"]\n"
    );
    let target = format!(
        "[mcp]\nurl = \"{resource}\"\n\n[auth]\nmode = \"oauth2_authorization_code\"\nprovider = \"custom\"\n\
         authorization_url = \"{issuer}/auth\"\ntoken_url = \"{token_url}\"\n\
         client_id = \"{CLIENT}\"\nclient_secret = \"env:E2E_CONSENT_SECRET\"\n\
         scopes = [\"{SCOPE}\"]\nresource = \"{resource}\"\n\n\
         [tools.demo__echo]\ndescription = \"Echo\"\ninput_schema = {{ type = \"object\", properties = {{ text = {{ type = \"string\" }} }} }}\n"
    );
    Gateway::serve(
        write_config(&gw, &[(TARGET, target)]).unwrap(),
        &Serve {
            env: &[("E2E_CONSENT_SECRET", SECRET)],
            ..Serve::default()
        },
    )
    .unwrap()
}

/// The running gateway's vault, opened beside it (SQLite admits a second process).
async fn open_vault(gw: &Gateway) -> Vault {
    let data = gw.dir.path().join(".data");
    let kek = Kek::load(&SecretRef::File(data.join("vault.key")), gw.dir.path()).unwrap();
    Vault::open(&data.join("vault.sqlite3"), kek).await.unwrap()
}

/// A user of the test: their token for calling the gateway, and the tokens the IdP issued
/// to the gateway's client for the upstream (what a consent would have stored).
struct User {
    caller_token: String,
    key: GrantKey,
    upstream_resource: String,
    idp_tokens: Value,
}

impl User {
    fn sign_in(idp: &Idp, name: &str, gw: &Gateway, upstream: &Gateway) -> Self {
        let caller_token = idp.user_token(name, &gw.url).unwrap();
        let claims = jwt_claims(&caller_token).unwrap();
        // Whose grant the gateway looks up: its issuer, the token's user and agent.
        let key = GrantKey {
            issuer: claims["iss"].as_str().unwrap().to_string(),
            user: claims["sub"].as_str().unwrap().to_string(),
            agent: Some(
                claims
                    .get("azp")
                    .unwrap_or(&claims["client_id"])
                    .as_str()
                    .unwrap()
                    .to_string(),
            ),
            target: TARGET.to_string(),
        };
        assert_eq!(key.issuer, idp.issuer);
        let out = idp
            .script(
                "token.sh",
                &[
                    name,
                    CLIENT,
                    SECRET,
                    "--redirect-uri",
                    REDIRECT,
                    "--resource",
                    &upstream.url,
                    "--output",
                    "json",
                ],
            )
            .unwrap();
        let idp_tokens: Value =
            serde_json::from_str(&out).unwrap_or_else(|e| panic!("token.sh printed {out}: {e}"));
        assert!(
            idp_tokens["refresh_token"]
                .as_str()
                .is_some_and(|t| !t.is_empty()),
            "the IdP issued no refresh token: {out}"
        );
        Self {
            caller_token,
            key,
            upstream_resource: upstream.url.clone(),
            idp_tokens,
        }
    }

    /// Store the user's grant with the IdP's real refresh token, expired an hour ago, and
    /// `access_token` (not the IdP's: only a refreshed token can pass the upstream). Returns
    /// the refresh token.
    async fn seed_expired_grant(&self, vault: &Vault, access_token: &str) -> String {
        let refresh = self.idp_tokens["refresh_token"].as_str().unwrap();
        // The IdP issued these for the upstream, as the target asks.
        let claims = jwt_claims(self.idp_tokens["access_token"].as_str().unwrap()).unwrap();
        assert_eq!(claims["aud"], self.upstream_resource.as_str(), "{claims}");
        let grant = NewGrant {
            scopes: vec![SCOPE.into()],
            access_token: Secret::new(access_token),
            refresh_token: Some(Secret::new(refresh)),
            expires_at: Some(unix_now() - 3600),
        };
        vault.store_grant(&self.key, &grant).await.unwrap();
        refresh.to_string()
    }

    /// Store the grant again with `refresh_token` in place of the IdP's.
    async fn replace_refresh_token(&self, vault: &Vault, refresh_token: &str) {
        let g = vault.grant(&self.key).await.unwrap().unwrap();
        let grant = NewGrant {
            scopes: g.scopes,
            access_token: g.access_token,
            refresh_token: Some(Secret::new(refresh_token)),
            expires_at: g.expires_at,
        };
        vault.store_grant(&self.key, &grant).await.unwrap();
    }

    /// The user's grants for the target, as `vault list` selects them.
    fn filter(&self) -> GrantFilter {
        GrantFilter {
            user: self.key.user.clone(),
            target: Some(TARGET.into()),
            ..GrantFilter::default()
        }
    }
}

fn assert_same_grant(now: &Grant, before: &Grant) {
    assert_eq!(now.revision, before.revision, "the grant was rewritten");
    assert_eq!(now.expires_at, before.expires_at);
    assert_eq!(now.access_token.expose(), before.access_token.expose());
    assert_eq!(
        now.refresh_token.as_ref().map(Secret::expose),
        before.refresh_token.as_ref().map(Secret::expose)
    );
    assert_eq!(now.scopes, before.scopes);
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        .try_into()
        .unwrap()
}

async fn call<S: rmcp::Service<rmcp::RoleClient>>(
    client: &rmcp::service::RunningService<rmcp::RoleClient, S>,
    text: &str,
) -> Result<CallToolResponse, ServiceError> {
    let params =
        CallToolRequestParams::new(TOOL).with_arguments(tool_args(json!({ "text": text })));
    tokio::time::timeout(WITHIN, client.peer().call_tool_once(params))
        .await
        .expect("the gateway did not answer the call")
}

/// The text of a successful tool result.
fn complete_text(r: CallToolResponse) -> String {
    let CallToolResponse::Complete(r) = r else {
        panic!("expected a tool result, got {r:?}");
    };
    assert_ne!(r.is_error, Some(true), "{r:?}");
    texts(&r)
}

/// The text of a tool result with `isError: true`.
fn tool_error_text(r: Result<CallToolResponse, ServiceError>) -> String {
    let r = match r {
        Ok(CallToolResponse::Complete(r)) => r,
        other => panic!("expected a tool error, got {other:?}"),
    };
    assert_eq!(r.is_error, Some(true), "{r:?}");
    texts(&r)
}

fn texts(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The proxies.

#[derive(Clone)]
struct TokenProxyState {
    token_url: String,
    http: reqwest::Client,
    /// The refresh token of each refresh request, in arrival order.
    sent: Arc<Mutex<Vec<String>>>,
    failing: Arc<AtomicBool>,
    /// Refreshes wait while this is false.
    open: watch::Receiver<bool>,
    arrived: Arc<watch::Sender<usize>>,
}

/// The target's token endpoint: forwards to the IdP's, records each refresh, can hold
/// refreshes until released, and can answer HTTP 500 instead of asking the IdP.
struct TokenProxy {
    server: MockServer,
    sent: Arc<Mutex<Vec<String>>>,
    failing: Arc<AtomicBool>,
    open: watch::Sender<bool>,
    arrived: Arc<watch::Sender<usize>>,
}

impl TokenProxy {
    async fn start(token_url: &str) -> Self {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let failing = Arc::new(AtomicBool::new(false));
        let (open, open_rx) = watch::channel(true);
        let arrived = Arc::new(watch::Sender::new(0));
        let state = TokenProxyState {
            token_url: token_url.to_string(),
            http: portcullis_e2e::proxy_http_client(),
            sent: sent.clone(),
            failing: failing.clone(),
            open: open_rx,
            arrived: arrived.clone(),
        };
        let app = axum::Router::new()
            .route("/token", axum::routing::post(token))
            .with_state(state);
        Self {
            server: MockServer::start(app).await,
            sent,
            failing,
            open,
            arrived,
        }
    }

    fn url(&self) -> String {
        self.server.url("/token")
    }

    fn refresh_tokens_sent(&self) -> Vec<String> {
        self.sent.lock().unwrap().clone()
    }

    fn set_failing(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    fn hold_refreshes(&self) {
        self.open.send_replace(false);
    }

    fn release_refreshes(&self) {
        self.open.send_replace(true);
    }

    async fn wait_for_refreshes(&self, n: usize) {
        let mut arrived = self.arrived.subscribe();
        tokio::time::timeout(WITHIN, arrived.wait_for(|got| *got >= n))
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} refreshes reached the token endpoint"))
            .unwrap();
    }
}

async fn token(State(st): State<TokenProxyState>, headers: HeaderMap, body: Bytes) -> Response {
    let form: Vec<(String, String)> = url::form_urlencoded::parse(&body).into_owned().collect();
    let field = |name: &str| form.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    if field("grant_type").as_deref() == Some("refresh_token") {
        st.sent
            .lock()
            .unwrap()
            .push(field("refresh_token").unwrap_or_default());
        st.arrived.send_modify(|n| *n += 1);
        let mut open = st.open.clone();
        let _ = open.wait_for(|open| *open).await;
    }
    if st.failing.load(Ordering::SeqCst) {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            "the token service is down for maintenance",
        )
            .into_response();
    }
    let mut out = st.http.post(&st.token_url);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE, header::ACCEPT] {
        if let Some(v) = headers.get(&name) {
            out = out.header(name, v);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let status = resp.status();
    let content_type = resp.headers().get(header::CONTENT_TYPE).cloned();
    let body = resp.bytes().await.unwrap_or_default();
    let mut response = (status, body).into_response();
    if let Some(ct) = content_type {
        response.headers_mut().insert(header::CONTENT_TYPE, ct);
    }
    response
}

#[derive(Clone)]
struct FrontDoorState {
    gateway: String,
    http: reqwest::Client,
    accepted: Arc<watch::Sender<usize>>,
}

/// A reverse proxy in front of the gateway's `/mcp` that counts the `tools/call` requests the
/// gateway accepted: it answers a call's POST with an event stream as soon as the call is
/// handed to the session, long before the result.
struct FrontDoor {
    server: MockServer,
    accepted: Arc<watch::Sender<usize>>,
}

impl FrontDoor {
    async fn start(gateway_base: &str) -> Self {
        let accepted = Arc::new(watch::Sender::new(0));
        let state = FrontDoorState {
            gateway: gateway_base.to_string(),
            http: portcullis_e2e::proxy_http_client(),
            accepted: accepted.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        Self {
            server: MockServer::start(app).await,
            accepted,
        }
    }

    fn url(&self) -> String {
        self.server.url("/mcp")
    }

    async fn wait_for_accepted_calls(&self, n: usize) {
        let mut accepted = self.accepted.subscribe();
        let waited = tokio::time::timeout(WITHIN, accepted.wait_for(|got| *got >= n)).await;
        assert!(
            waited.is_ok(),
            "the gateway accepted {} of {n} concurrent calls",
            *self.accepted.borrow()
        );
    }
}

async fn forward(State(st): State<FrontDoorState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let is_call = serde_json::from_slice::<Value>(&body).is_ok_and(|v| v["method"] == "tools/call");
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = st
        .http
        .request(parts.method.clone(), format!("{}{path}", st.gateway));
    for (name, value) in &parts.headers {
        if portcullis_e2e::forwardable(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    if is_call && resp.status().is_success() {
        st.accepted.send_modify(|n| *n += 1);
    }
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if portcullis_e2e::forwardable(name) {
            headers.append(name, value.clone());
        }
    }
    let status = resp.status();
    // Streamed, not buffered: a call's answer is an event stream that stays open.
    let mut response =
        Body::from_stream(resp.bytes_stream().map_err(std::io::Error::other)).into_response();
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

//! The client's rules, tested against an in-process token endpoint on 127.0.0.1:0 that
//! records what it was sent and answers a canned response.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use super::*;

const NOW: u64 = 1_800_000_000;
const SECRET: &str = "s3cret/with+chars";

fn clock() -> Clock {
    Arc::new(|| UNIX_EPOCH + Duration::from_secs(NOW))
}

fn registration(extra: &[(&str, &str)]) -> ClientRegistration {
    ClientRegistration {
        client_id: "gw client".into(),
        client_secret: Some(Secret::new(SECRET)),
        auth_method: ClientAuthMethod::Basic,
        redirect_uri: Url::parse("https://gw.example/oauth/callback").unwrap(),
        resource: Some("https://api.example/v1".into()),
        scope_param: "scope".into(),
        extra_authorize_params: extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn endpoints(base: &str, revocation: bool) -> ProviderEndpoints {
    ProviderEndpoints::new(
        Url::parse("https://idp.example/authorize?tenant=t1").unwrap(),
        Url::parse(&format!("{base}/token")).unwrap(),
        revocation.then(|| Url::parse(&format!("{base}/revoke")).unwrap()),
    )
    .unwrap()
}

fn client(base: &str, reg: ClientRegistration) -> AuthorizationCodeClient {
    AuthorizationCodeClient::new(
        endpoints(base, true),
        reg,
        crate::outbound::token_http_client().unwrap(),
        clock(),
    )
    .unwrap()
}

fn query(url: &Url) -> HashMap<String, Vec<String>> {
    let mut q: HashMap<String, Vec<String>> = HashMap::new();
    for (k, v) in url.query_pairs() {
        q.entry(k.into_owned()).or_default().push(v.into_owned());
    }
    q
}

fn one<'a>(q: &'a HashMap<String, Vec<String>>, key: &str) -> &'a str {
    match q.get(key).map(Vec::as_slice) {
        Some([v]) => v,
        other => panic!("{key}: expected one value, got {other:?}"),
    }
}

#[test]
fn the_authorization_url_carries_pkce_s256_state_scopes_resource_and_extras() {
    let c = client(
        "http://127.0.0.1:9",
        registration(&[("access_type", "offline"), ("prompt", "consent")]),
    );
    let scopes = vec!["repo".to_string(), "read:org".to_string()];
    let a = c.begin(&scopes);
    assert_eq!(a.url.host_str(), Some("idp.example"));
    assert_eq!(a.url.path(), "/authorize");
    let q = query(&a.url);
    assert_eq!(one(&q, "tenant"), "t1", "the endpoint's own query is kept");
    assert_eq!(one(&q, "response_type"), "code");
    assert_eq!(one(&q, "client_id"), "gw client");
    assert_eq!(one(&q, "redirect_uri"), "https://gw.example/oauth/callback");
    assert_eq!(one(&q, "scope"), "repo read:org");
    assert_eq!(one(&q, "resource"), "https://api.example/v1");
    assert_eq!(one(&q, "access_type"), "offline");
    assert_eq!(one(&q, "prompt"), "consent");
    assert_eq!(one(&q, "code_challenge_method"), "S256");
    assert_eq!(one(&q, "state"), a.state);

    // The challenge is BASE64URL(SHA-256(verifier)) (RFC 7636 §4.2), never the verifier.
    let challenge = one(&q, "code_challenge");
    assert!(challenge.len() >= 43, "{challenge}");
    let verifier = a.pkce_verifier.expose();
    assert!((43..=128).contains(&verifier.len()), "RFC 7636 §4.1");
    assert_eq!(
        challenge,
        URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
    );
    assert_ne!(challenge, verifier);
    assert!(
        !a.url.as_str().contains(verifier),
        "the verifier stays here"
    );

    // ≥ 128 bits of state; fresh every time, as is the verifier.
    let state_bytes = URL_SAFE_NO_PAD.decode(&a.state).unwrap();
    assert!(state_bytes.len() >= 16, "{} bytes", state_bytes.len());
    let b = c.begin(&scopes);
    assert_ne!(a.state, b.state);
    assert_ne!(a.pkce_verifier, b.pkce_verifier);
    assert!(!format!("{a:?}").contains(verifier), "Debug redacts it");
}

#[test]
fn no_scope_parameter_when_no_scopes_are_asked_for() {
    let mut reg = registration(&[]);
    reg.resource = None;
    let a = client("http://127.0.0.1:9", reg).begin(&[]);
    let q = query(&a.url);
    assert!(!q.contains_key("scope"), "{}", a.url);
    assert!(!q.contains_key("resource"), "{}", a.url);
}

#[test]
fn scopes_go_in_the_parameter_the_provider_reads() {
    let mut reg = registration(&[]);
    reg.scope_param = "user_scope".into();
    let c = client("http://127.0.0.1:9", reg.clone());
    let a = c.begin(&scopes(&["chat:write", "users:read"]));
    let q = query(&a.url);
    assert_eq!(one(&q, "user_scope"), "chat:write users:read");
    assert!(!q.contains_key("scope"), "{}", a.url);

    reg.extra_authorize_params = vec![("user_scope".into(), "admin".into())];
    let e = AuthorizationCodeClient::new(
        endpoints("http://127.0.0.1:9", false),
        reg,
        reqwest::Client::new(),
        clock(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("would replace `user_scope`"), "{e}");
}

#[test]
fn extra_parameters_cannot_replace_what_the_gateway_sets() {
    for name in [
        "response_type",
        "client_id",
        "redirect_uri",
        "state",
        "code_challenge",
        "code_challenge_method",
        "scope",
        "resource",
        "Code_Challenge_Method",
    ] {
        let e = AuthorizationCodeClient::new(
            endpoints("http://127.0.0.1:9", false),
            registration(&[(name, "x")]),
            reqwest::Client::new(),
            clock(),
        )
        .unwrap_err();
        let message = e.to_string();
        assert!(
            matches!(e, AuthCodeError::Misconfigured(_)),
            "{name}: {e:?}"
        );
        assert!(
            message.starts_with(&format!("the extra authorization parameter `{name}`")),
            "{message}"
        );
        assert!(message.contains("Remove it"), "{message}");
    }
}

/// One request the token endpoint received.
#[derive(Debug, Clone)]
struct Received {
    path: String,
    authorization: Option<String>,
    form: HashMap<String, String>,
}

/// A token and revocation endpoint on 127.0.0.1:0 answering `reply` to every request.
struct Provider {
    base: String,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Provider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Reply = (StatusCode, &'static str, String);

impl Provider {
    async fn start(status: StatusCode, content_type: &'static str, body: &str) -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let reply: Reply = (status, content_type, body.to_string());
        let record = {
            let received = received.clone();
            move |path: &'static str| {
                let received = received.clone();
                move |State(reply): State<Reply>, headers: HeaderMap, body: String| {
                    let received = received.clone();
                    async move {
                        received.lock().push(Received {
                            path: path.into(),
                            authorization: headers
                                .get("authorization")
                                .and_then(|v| v.to_str().ok())
                                .map(str::to_string),
                            form: url::form_urlencoded::parse(body.as_bytes())
                                .into_owned()
                                .collect(),
                        });
                        let (status, content_type, body) = reply;
                        (status, [("content-type", content_type)], body)
                    }
                }
            }
        };
        let app = axum::Router::new()
            .route("/token", post(record("/token")))
            .route("/revoke", post(record("/revoke")))
            .with_state(reply);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base,
            received,
            task,
        }
    }

    async fn json(status: StatusCode, body: serde_json::Value) -> Self {
        Self::start(status, "application/json", &body.to_string()).await
    }

    fn only_request(&self) -> Received {
        let r = self.received.lock();
        assert_eq!(r.len(), 1, "{r:?}");
        r[0].clone()
    }
}

fn basic(id: &str, secret: &str) -> String {
    let enc = |s: &str| oauth::form_encode(s);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

fn scopes(s: &[&str]) -> Vec<String> {
    s.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn a_code_exchange_sends_the_verifier_and_returns_the_grant() {
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({
            "access_token": "at-1", "token_type": "Bearer", "expires_in": 3600,
            "refresh_token": "rt-1", "scope": "api refresh_token",
            "instance_url": "https://acme.my.salesforce.com"
        }),
    )
    .await;
    let c = client(&p.base, registration(&[]));
    let verifier = Secret::new("v".repeat(43));
    let g = c
        .exchange("the-code", &verifier, &scopes(&["api"]))
        .await
        .unwrap();
    assert_eq!(g.access_token.expose(), "at-1");
    assert_eq!(g.refresh_token.as_ref().map(Secret::expose), Some("rt-1"));
    assert_eq!(
        g.expires_at,
        Some(NOW as i64 + 3600),
        "from the injected clock"
    );
    assert_eq!(g.granted_scopes, scopes(&["api", "refresh_token"]));
    assert_eq!(
        g.instance_url.as_deref(),
        Some("https://acme.my.salesforce.com")
    );
    assert!(!format!("{g:?}").contains("at-1"), "Debug redacts tokens");

    let r = p.only_request();
    assert_eq!(r.path, "/token");
    assert_eq!(r.form["grant_type"], "authorization_code");
    assert_eq!(r.form["code"], "the-code");
    assert_eq!(r.form["code_verifier"], "v".repeat(43));
    assert_eq!(r.form["redirect_uri"], "https://gw.example/oauth/callback");
    assert_eq!(r.form["resource"], "https://api.example/v1");
    assert!(!r.form.contains_key("client_secret"), "Basic, not the body");
    assert_eq!(
        r.authorization.as_deref(),
        Some(basic("gw client", SECRET).as_str())
    );
}

#[tokio::test]
async fn a_refresh_without_scope_or_rotation_reports_the_grants_scopes_and_no_new_refresh_token() {
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({"access_token": "at-2", "token_type": "bearer"}),
    )
    .await;
    let mut reg = registration(&[]);
    reg.auth_method = ClientAuthMethod::Post;
    let c = client(&p.base, reg);
    let g = c
        .refresh(&Secret::new("rt-1"), &scopes(&["a", "b"]))
        .await
        .unwrap();
    assert_eq!(g.access_token.expose(), "at-2");
    assert!(g.refresh_token.is_none(), "the caller keeps the old one");
    assert_eq!(g.expires_at, None);
    assert_eq!(g.granted_scopes, scopes(&["a", "b"]));

    let r = p.only_request();
    assert_eq!(r.form["grant_type"], "refresh_token");
    assert_eq!(r.form["refresh_token"], "rt-1");
    assert_eq!(r.form["client_id"], "gw client");
    assert_eq!(r.form["client_secret"], SECRET);
    assert_eq!(r.authorization, None);
}

#[tokio::test]
async fn a_public_client_names_itself_in_the_body_and_sends_no_secret() {
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({"access_token": "at", "token_type": "Bearer"}),
    )
    .await;
    let mut reg = registration(&[]);
    reg.client_secret = None;
    client(&p.base, reg)
        .refresh(&Secret::new("rt"), &[])
        .await
        .unwrap();
    let r = p.only_request();
    assert_eq!(r.form["client_id"], "gw client");
    assert!(!r.form.contains_key("client_secret"));
    assert_eq!(r.authorization, None);
}

#[tokio::test]
async fn invalid_grant_means_the_grant_is_dead() {
    let p = Provider::json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"error": "invalid_grant", "error_description": "grant request is invalid"}),
    )
    .await;
    let e = client(&p.base, registration(&[]))
        .refresh(&Secret::new("rt-secret-value"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        e,
        AuthCodeError::InvalidGrant {
            description: Some("grant request is invalid".into())
        }
    );
    assert!(e.grant_is_dead());
    assert!(!e.to_string().contains("rt-secret-value"));
}

#[tokio::test]
async fn other_oauth_errors_keep_the_grant() {
    let p = Provider::json(
        StatusCode::UNAUTHORIZED,
        serde_json::json!({"error": "invalid_client"}),
    )
    .await;
    let e = client(&p.base, registration(&[]))
        .refresh(&Secret::new("rt"), &[])
        .await
        .unwrap_err();
    assert_eq!(
        e,
        AuthCodeError::Refused {
            code: "invalid_client".into(),
            description: None
        }
    );
    assert!(!e.grant_is_dead());
}

#[tokio::test]
async fn slacks_user_token_under_authed_user_is_the_grant() {
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({
            "ok": true, "app_id": "A1", "team": {"id": "T1"},
            "authed_user": {"id": "U1", "scope": "search:read,chat:write", "access_token": "xoxp-1",
                            "token_type": "user", "refresh_token": "xoxe-1", "expires_in": 43200}
        }),
    )
    .await;
    let mut reg = registration(&[]);
    reg.scope_param = "user_scope".into();
    let g = client(&p.base, reg)
        .exchange(
            "code",
            &Secret::new("v".repeat(43)),
            &scopes(&["search:read"]),
        )
        .await
        .unwrap();
    assert_eq!(g.access_token.expose(), "xoxp-1");
    assert_eq!(g.refresh_token.as_ref().map(Secret::expose), Some("xoxe-1"));
    assert_eq!(g.expires_at, Some(NOW as i64 + 43200));
    assert_eq!(g.granted_scopes, scopes(&["search:read", "chat:write"]));

    // Slack's errors come with HTTP 200 and `ok: false`: still errors.
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({"ok": false, "error": "invalid_code"}),
    )
    .await;
    let mut reg = registration(&[]);
    reg.scope_param = "user_scope".into();
    let e = client(&p.base, reg)
        .exchange("code", &Secret::new("v".repeat(43)), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, AuthCodeError::InvalidGrant { .. }), "{e:?}");
}

#[tokio::test]
async fn an_error_sent_with_http_200_is_still_an_error() {
    // GitHub's token endpoint answers a dead refresh token this way.
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({"error": "bad_refresh_token", "error_description": "The refresh token passed is incorrect or expired."}),
    )
    .await;
    let e = client(&p.base, registration(&[]))
        .refresh(&Secret::new("rt"), &[])
        .await
        .unwrap_err();
    assert!(e.grant_is_dead(), "{e:?}");
}

#[tokio::test]
async fn a_server_error_is_unreachable_and_keeps_the_grant() {
    let p = Provider::start(
        StatusCode::SERVICE_UNAVAILABLE,
        "text/html",
        "<h1>down</h1>",
    )
    .await;
    let e = client(&p.base, registration(&[]))
        .refresh(&Secret::new("rt"), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, AuthCodeError::Unreachable(_)), "{e:?}");
    assert!(e.to_string().contains("503"), "{e}");
    assert!(!e.grant_is_dead());
}

#[tokio::test]
async fn a_malformed_token_response_is_reported_without_quoting_it() {
    let p = Provider::json(
        StatusCode::OK,
        serde_json::json!({"access_token": 12345678, "token_type": "Bearer"}),
    )
    .await;
    let e = client(&p.base, registration(&[]))
        .exchange("c", &Secret::new("v"), &[])
        .await
        .unwrap_err();
    let message = e.to_string();
    assert!(matches!(e, AuthCodeError::BadResponse(_)), "{e:?}");
    assert!(
        message.contains("`access_token` has the wrong type"),
        "{message}"
    );
    assert!(!message.contains("12345678"), "{message}");
}

#[tokio::test]
async fn an_unreachable_provider_is_unreachable() {
    // Bound, never listening: connections are refused.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let base = format!("http://{}", socket.local_addr().unwrap());
    let e = client(&base, registration(&[]))
        .refresh(&Secret::new("rt"), &[])
        .await
        .unwrap_err();
    assert!(matches!(e, AuthCodeError::Unreachable(_)), "{e:?}");
    let expected = format!("cannot reach the provider: POST {base}/token: connection refused. ");
    assert!(e.to_string().starts_with(&expected), "{e}");
    let e = client(&base, registration(&[]))
        .revoke(&Secret::new("rt"), TokenKind::RefreshToken)
        .await
        .unwrap_err();
    let expected = format!("cannot reach the provider: POST {base}/revoke: connection refused. ");
    assert!(e.to_string().starts_with(&expected), "{e}");
}

#[tokio::test]
async fn revocation_posts_the_token_with_its_hint_and_client_authentication() {
    let p = Provider::start(StatusCode::OK, "text/plain", "").await;
    client(&p.base, registration(&[]))
        .revoke(&Secret::new("rt-9"), TokenKind::RefreshToken)
        .await
        .unwrap();
    let r = p.only_request();
    assert_eq!(r.path, "/revoke");
    assert_eq!(r.form["token"], "rt-9");
    assert_eq!(r.form["token_type_hint"], "refresh_token");
    assert_eq!(
        r.authorization.as_deref(),
        Some(basic("gw client", SECRET).as_str())
    );
}

#[tokio::test]
async fn a_refused_revocation_names_the_oauth_error() {
    let p = Provider::json(
        StatusCode::BAD_REQUEST,
        serde_json::json!({"error": "unsupported_token_type"}),
    )
    .await;
    let e = client(&p.base, registration(&[]))
        .revoke(&Secret::new("at"), TokenKind::AccessToken)
        .await
        .unwrap_err();
    assert!(
        matches!(&e, AuthCodeError::Refused { code, .. } if code == "unsupported_token_type"),
        "{e:?}"
    );
    assert_eq!(p.only_request().form["token_type_hint"], "access_token");
}

#[tokio::test]
async fn without_a_revocation_endpoint_nothing_is_sent() {
    let p = Provider::start(StatusCode::OK, "text/plain", "").await;
    let c = AuthorizationCodeClient::new(
        endpoints(&p.base, false),
        registration(&[]),
        crate::outbound::token_http_client().unwrap(),
        clock(),
    )
    .unwrap();
    let e = c
        .revoke(&Secret::new("rt"), TokenKind::RefreshToken)
        .await
        .unwrap_err();
    assert_eq!(e, AuthCodeError::RevocationUnsupported);
    assert!(p.received.lock().is_empty());
}

#[tokio::test]
async fn discovery_reads_the_endpoints_and_checks_the_issuer_and_s256() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let doc = |issuer: &str, methods: serde_json::Value| {
        serde_json::json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{base}/auth"),
            "token_endpoint": format!("{base}/token"),
            "revocation_endpoint": format!("{base}/token/revocation"),
            "code_challenge_methods_supported": methods,
        })
    };
    let served = Arc::new(Mutex::new(doc(&base, serde_json::json!(["plain", "S256"]))));
    let app = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get({
            let served = served.clone();
            move || async move { axum::Json(served.lock().clone()) }
        }),
    );
    let task = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = crate::outbound::token_http_client().unwrap();

    let e = ProviderEndpoints::discover(&http, &base).await.unwrap();
    assert_eq!(e.authorization_url.as_str(), format!("{base}/auth"));
    assert_eq!(e.token_url.as_str(), format!("{base}/token"));
    assert_eq!(
        e.revocation_url.as_ref().map(Url::as_str),
        Some(format!("{base}/token/revocation").as_str())
    );
    assert_eq!(e.issuer.as_deref(), Some(base.as_str()));

    // Another issuer's document: a mix-up, refused.
    *served.lock() = doc("https://other.example", serde_json::json!(["S256"]));
    let e = ProviderEndpoints::discover(&http, &base).await.unwrap_err();
    assert!(
        e.to_string()
            .contains("names issuer \"https://other.example\""),
        "{e}"
    );

    // PKCE methods listed without S256: refused.
    *served.lock() = doc(&base, serde_json::json!(["plain"]));
    let e = ProviderEndpoints::discover(&http, &base).await.unwrap_err();
    assert!(
        e.to_string().contains("does not offer PKCE with S256"),
        "{e}"
    );

    // None listed: accepted (the gateway sends S256 regardless).
    *served.lock() = doc(&base, serde_json::Value::Null);
    assert!(ProviderEndpoints::discover(&http, &base).await.is_ok());

    // An issuer given with a trailing slash (as a parsed URL prints it) is the same issuer;
    // the endpoints keep the provider's own spelling.
    let e = ProviderEndpoints::discover(&http, &format!("{base}/"))
        .await
        .unwrap();
    assert_eq!(e.issuer.as_deref(), Some(base.as_str()));
    task.abort();
}

fn spec(endpoints: crate::config::outbound::ProviderEndpoints) -> AuthorizationCodeSpec {
    use crate::config::outbound::{OAuthClientSpec, Provider};
    AuthorizationCodeSpec {
        provider: Provider::Custom,
        endpoints,
        revocation_url: Some(Url::parse("https://idp.example/revoke").unwrap()),
        client: OAuthClientSpec {
            client_id: "app".into(),
            auth: ClientAuth::Post(Secret::new(SECRET)),
        },
        scopes: scopes(&["a"]),
        tool_scopes: Default::default(),
        authorize_params: vec![("login_hint".into(), "alice".into())],
        scope_param: "user_scope",
        resource: Some("https://api.example/".into()),
        display_name: None,
    }
}

#[tokio::test]
async fn a_targets_compiled_settings_give_the_endpoints_and_the_registration() {
    use crate::config::outbound::ProviderEndpoints as Configured;
    let s = spec(Configured::Urls {
        authorization_url: Url::parse("https://idp.example/authorize").unwrap(),
        token_url: Url::parse("https://idp.example/token").unwrap(),
    });
    let http = crate::outbound::token_http_client().unwrap();
    let e = ProviderEndpoints::resolve(&http, &s).await.unwrap();
    assert_eq!(
        e.authorization_url.as_str(),
        "https://idp.example/authorize"
    );
    assert_eq!(e.token_url.as_str(), "https://idp.example/token");
    assert_eq!(
        e.revocation_url.as_ref().map(Url::as_str),
        Some("https://idp.example/revoke")
    );

    let callback = Url::parse("https://gw.example/consent/callback").unwrap();
    let r = ClientRegistration::from_spec(&s, callback.clone()).unwrap();
    assert_eq!(r.client_id, "app");
    assert_eq!(r.client_secret.as_ref().map(Secret::expose), Some(SECRET));
    assert_eq!(r.auth_method, ClientAuthMethod::Post);
    assert_eq!(r.redirect_uri, callback);
    assert_eq!(r.scope_param, "user_scope");
    assert_eq!(r.resource.as_deref(), Some("https://api.example/"));
    assert_eq!(
        r.extra_authorize_params,
        vec![("login_hint".to_string(), "alice".to_string())]
    );

    let mut public = s.clone();
    public.client.auth = ClientAuth::None;
    let r = ClientRegistration::from_spec(&public, callback).unwrap();
    assert!(r.client_secret.is_none());

    let mut clear = s;
    clear.revocation_url = Some(Url::parse("http://idp.example/revoke").unwrap());
    let e = ProviderEndpoints::resolve(&http, &clear).await.unwrap_err();
    assert!(matches!(e, AuthCodeError::Misconfigured(_)), "{e:?}");
}

//! The dev IdP's rules, end to end in process: register → authorize (login form) → token →
//! refresh, through its real routes, with the tokens checked by the gateway's verifier.

use std::net::SocketAddr;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use base64::Engine;
use http::{Request, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use crate::inbound::Authenticator;

const HOST: &str = "127.0.0.1:8787";
const REDIRECT: &str = "http://127.0.0.1:43210/oauth/callback";
const VERIFIER: &str = "a-verifier-of-at-least-43-characters-0123456789";

struct Idp {
    app: Router,
    auth: Authenticator,
    _dir: tempfile::TempDir,
}

fn idp() -> Idp {
    idp_with("[server]\nlisten = \"127.0.0.1:8787\"\n[dev_idp]\n")
}

fn idp_with(config: &str) -> Idp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.toml"), config).unwrap();
    std::fs::create_dir(dir.path().join("targets")).unwrap();
    let snapshot = crate::config::load(&dir.path().join("gateway.toml")).unwrap();
    let auth = Authenticator::new(&snapshot, reqwest::Client::new())
        .unwrap()
        .unwrap();
    let app = super::routes(auth.dev_idp.clone().unwrap());
    Idp {
        app,
        auth,
        _dir: dir,
    }
}

fn challenge(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

struct Answer {
    status: StatusCode,
    location: Option<url::Url>,
    body: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
    fn param(&self, k: &str) -> Option<String> {
        self.location
            .as_ref()?
            .query_pairs()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.into_owned())
    }
}

/// A request as a browser or client on `peer` sends it to the gateway's own host name.
fn request(
    method: &str,
    uri: &str,
    content_type: &str,
    body: &str,
    peer: [u8; 4],
) -> Request<Body> {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", HOST)
        .header("content-type", content_type)
        .body(Body::from(body.to_string()))
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from((peer, 50000))));
    req
}

const FORM: &str = "application/x-www-form-urlencoded";

impl Idp {
    async fn send(&self, method: &str, uri: &str, body: &str, peer: [u8; 4]) -> Answer {
        self.run(request(method, uri, FORM, body, peer)).await
    }

    async fn run(&self, req: Request<Body>) -> Answer {
        let resp = self.app.clone().oneshot(req).await.unwrap();
        let status = resp.status();
        let location = resp
            .headers()
            .get("location")
            .map(|l| url::Url::parse(l.to_str().unwrap()).unwrap());
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        Answer {
            status,
            location,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn post(&self, uri: &str, body: &str) -> Answer {
        self.send("POST", uri, body, [127, 0, 0, 1]).await
    }

    async fn register(&self) -> String {
        let body = json!({ "redirect_uris": [REDIRECT], "client_name": "e2e client" });
        let a = self
            .run(request(
                "POST",
                "/dev-idp/register",
                "application/json",
                &body.to_string(),
                [127, 0, 0, 1],
            ))
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.json()["client_id"].as_str().unwrap().to_string()
    }

    fn authorize_url(&self, client: &str, extra: &str) -> String {
        format!(
            "/dev-idp/authorize?response_type=code&client_id={client}&redirect_uri={}&state=st-1&code_challenge={}&code_challenge_method=S256&resource=http%3A%2F%2F127.0.0.1%3A8787%2Fmcp{extra}",
            urlencode(REDIRECT),
            challenge(VERIFIER)
        )
    }

    /// GET the login form, submit it as `user`: the redirect back to the client.
    async fn login(&self, client: &str, user: &str) -> Answer {
        self.login_with(client, user, "").await
    }

    /// The same, with `extra` authorization parameters (`&scope=…`).
    async fn login_with(&self, client: &str, user: &str, extra: &str) -> Answer {
        let page = self
            .send(
                "GET",
                &self.authorize_url(client, extra),
                "",
                [127, 0, 0, 1],
            )
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.body);
        let token = form_token(&page.body);
        self.post(
            "/dev-idp/authorize",
            &format!("form_token={token}&user={user}&decision=allow"),
        )
        .await
    }

    async fn code(&self, client: &str) -> String {
        let back = self.login(client, "alice").await;
        assert_eq!(back.status, StatusCode::SEE_OTHER, "{}", back.body);
        back.param("code").unwrap()
    }

    async fn redeem(&self, client: &str, code: &str, verifier: &str, redirect: &str) -> Answer {
        self.post(
            "/dev-idp/token",
            &format!(
                "grant_type=authorization_code&client_id={client}&code={code}&code_verifier={verifier}&redirect_uri={}",
                urlencode(redirect)
            ),
        )
        .await
    }

    async fn refresh(&self, client: &str, token: &str) -> Answer {
        self.refresh_with(client, token, "").await
    }

    /// A refresh with `extra` parameters (`&scope=…`, `&resource=…`).
    async fn refresh_with(&self, client: &str, token: &str, extra: &str) -> Answer {
        self.post(
            "/dev-idp/token",
            &format!("grant_type=refresh_token&client_id={client}&refresh_token={token}{extra}"),
        )
        .await
    }
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn form_token(html: &str) -> String {
    let start = html.find("name=\"form_token\" value=\"").unwrap() + 25;
    html[start..].split('"').next().unwrap().to_string()
}

#[tokio::test]
async fn login_code_and_refresh_give_tokens_the_gateway_accepts() {
    let idp = idp();
    let client = idp.register().await;
    let back = idp.login(&client, "bob").await;
    assert_eq!(back.status, StatusCode::SEE_OTHER);
    let loc = back.location.as_ref().unwrap();
    assert_eq!(
        format!("{}://{}{}", loc.scheme(), loc.authority(), loc.path()),
        REDIRECT
    );
    assert_eq!(back.param("state").as_deref(), Some("st-1"));
    assert_eq!(
        back.param("iss").as_deref(),
        Some("http://127.0.0.1:8787/dev-idp")
    );

    let code = back.param("code").unwrap();
    let tokens = idp.redeem(&client, &code, VERIFIER, REDIRECT).await;
    assert_eq!(tokens.status, StatusCode::OK, "{}", tokens.body);
    let t = tokens.json();
    let caller = idp
        .auth
        .authenticate(t["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(caller.user, "bob");
    assert_eq!(caller.agent.as_deref(), Some("e2e client"));
    assert!(t.get("scope").is_none(), "no scopes asked, none granted");

    // Rotation: the new refresh token works, the old one is refused...
    let old = t["refresh_token"].as_str().unwrap().to_string();
    let second = idp.refresh(&client, &old).await;
    assert_eq!(second.status, StatusCode::OK, "{}", second.body);
    let new = second.json()["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    let reused = idp.refresh(&client, &old).await;
    assert_eq!(reused.status, StatusCode::BAD_REQUEST);
    assert_eq!(reused.json()["error"], "invalid_grant");
    assert!(
        reused.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    // ...and, as a reuse may be theft, the newest one of that login dies with it.
    let after = idp.refresh(&client, &new).await;
    assert_eq!(after.json()["error"], "invalid_grant", "{}", after.body);
}

#[tokio::test]
async fn a_wrong_pkce_verifier_is_refused() {
    let idp = idp();
    let client = idp.register().await;
    let code = idp.code(&client).await;
    let other = "another-verifier-of-at-least-43-characters-000";
    let a = idp.redeem(&client, &code, other, REDIRECT).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert_eq!(a.json()["error"], "invalid_grant");
    assert!(
        a.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("code_verifier does not match")
    );
    // A refused request does not use the code up: the right verifier still gets tokens.
    let a = idp.redeem(&client, &code, VERIFIER, REDIRECT).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
}

#[tokio::test]
async fn the_plain_pkce_method_and_a_missing_challenge_are_refused() {
    let idp = idp();
    let client = idp.register().await;
    let plain = format!(
        "/dev-idp/authorize?response_type=code&client_id={client}&redirect_uri={}&state=s&code_challenge={VERIFIER}&code_challenge_method=plain",
        urlencode(REDIRECT)
    );
    let a = idp.send("GET", &plain, "", [127, 0, 0, 1]).await;
    assert_eq!(
        a.status,
        StatusCode::SEE_OTHER,
        "errors go back to the client"
    );
    assert_eq!(a.param("error").as_deref(), Some("invalid_request"));
    assert!(a.param("error_description").unwrap().contains("only S256"));
    assert_eq!(a.param("state").as_deref(), Some("s"));
    let none = plain
        .replace("&code_challenge_method=plain", "")
        .replace(&format!("&code_challenge={VERIFIER}"), "");
    let a = idp.send("GET", &none, "", [127, 0, 0, 1]).await;
    assert!(
        a.param("error_description")
            .unwrap()
            .contains("PKCE is required")
    );
}

#[tokio::test]
async fn a_code_works_once_and_its_reuse_revokes_the_login() {
    let idp = idp();
    let client = idp.register().await;
    let code = idp.code(&client).await;
    let first = idp.redeem(&client, &code, VERIFIER, REDIRECT).await;
    assert_eq!(first.status, StatusCode::OK);
    let again = idp.redeem(&client, &code, VERIFIER, REDIRECT).await;
    assert_eq!(again.json()["error"], "invalid_grant");
    assert!(
        again.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("already used")
    );
    let refresh = first.json()["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        idp.refresh(&client, &refresh).await.json()["error"],
        "invalid_grant",
        "tokens issued for a replayed code are revoked"
    );
}

#[tokio::test]
async fn a_wrong_redirect_uri_is_refused_at_both_ends() {
    let idp = idp();
    let client = idp.register().await;
    let url = idp.authorize_url(&client, "").replace(
        &urlencode(REDIRECT),
        &urlencode("http://127.0.0.1:43210/elsewhere"),
    );
    let a = idp.send("GET", &url, "", [127, 0, 0, 1]).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    assert!(
        a.location.is_none(),
        "nothing is sent to an unregistered URI"
    );
    assert!(
        a.body.contains("is not one this client registered"),
        "{}",
        a.body
    );

    let code = idp.code(&client).await;
    let a = idp
        .redeem(&client, &code, VERIFIER, "http://127.0.0.1:43210/elsewhere")
        .await;
    assert_eq!(a.json()["error"], "invalid_grant");
    assert!(
        a.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri")
    );
}

#[tokio::test]
async fn only_loopback_peers_and_own_host_names_reach_the_login() {
    let idp = idp();
    let client = idp.register().await;
    let url = idp.authorize_url(&client, "");
    let a = idp.send("GET", &url, "", [192, 0, 2, 7]).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(
        a.body
            .contains("only browsers on the gateway's own machine"),
        "{}",
        a.body
    );
    let a = idp
        .send(
            "POST",
            "/dev-idp/authorize",
            "form_token=x&user=a",
            [10, 0, 0, 1],
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);

    // A page that rebinds its DNS name to 127.0.0.1 still sends its own Host.
    let mut req = Request::get(url)
        .header("host", "evil.example:8787")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = idp.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn unknown_clients_and_foreign_resources_are_explained() {
    let idp = idp();
    let mut req = Request::get(idp.authorize_url("dev-gone", ""))
        .header("host", HOST)
        .header("accept", "application/json")
        .body(Body::empty())
        .unwrap();
    req.extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 1))));
    let resp = idp.app.clone().oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        v["error"], "invalid_client",
        "mcp-remote re-registers on this"
    );

    let client = idp.register().await;
    let url = idp.authorize_url(&client, "").replace(
        "resource=http%3A%2F%2F127.0.0.1%3A8787%2Fmcp",
        "resource=https%3A%2F%2Fother.example%2Fmcp",
    );
    let a = idp.send("GET", &url, "", [127, 0, 0, 1]).await;
    assert_eq!(a.param("error").as_deref(), Some("invalid_target"));
}

#[tokio::test]
async fn a_login_form_cannot_be_replayed() {
    let idp = idp();
    let client = idp.register().await;
    let page = idp
        .send(
            "GET",
            &idp.authorize_url(&client, "&scope=mcp%3Aread"),
            "",
            [127, 0, 0, 1],
        )
        .await;
    assert!(page.body.contains("Development only"));
    let form = format!(
        "form_token={}&user=carol&decision=allow",
        form_token(&page.body)
    );
    let first = idp.post("/dev-idp/authorize", &form).await;
    assert_eq!(first.status, StatusCode::SEE_OTHER);
    let replay = idp.post("/dev-idp/authorize", &form).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST);
    assert!(replay.location.is_none());
    assert!(replay.body.contains("no longer valid"));
    let code = first.param("code").unwrap();
    let t = idp.redeem(&client, &code, VERIFIER, REDIRECT).await.json();
    assert_eq!(t["scope"], "mcp:read");
}

/// Log in (with `scope`), redeem the code: the client id and the first answer.
async fn tokens(idp: &Idp, scope: &str) -> (String, Value) {
    let client = idp.register().await;
    let back = idp.login_with(&client, "alice", scope).await;
    let code = back.param("code").unwrap();
    let first = idp.redeem(&client, &code, VERIFIER, REDIRECT).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.body);
    (client, first.json())
}

fn refresh_token(answer: &Value) -> String {
    answer["refresh_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn a_refused_refresh_leaves_the_refresh_token_usable() {
    let idp = idp();
    let (client, first) = tokens(&idp, "&scope=mcp%3Aread").await;
    let token = refresh_token(&first);

    let foreign = idp
        .refresh_with(
            &client,
            &token,
            "&resource=https%3A%2F%2Fother.example%2Fmcp",
        )
        .await;
    assert_eq!(
        foreign.json()["error"],
        "invalid_target",
        "{}",
        foreign.body
    );
    let wider = idp
        .refresh_with(&client, &token, "&scope=mcp%3Aread%20mcp%3Aadmin")
        .await;
    assert_eq!(wider.json()["error"], "invalid_scope", "{}", wider.body);

    let retry = idp.refresh(&client, &token).await;
    assert_eq!(
        retry.status,
        StatusCode::OK,
        "the same token still works, and its reuse detection did not fire: {}",
        retry.body
    );
}

#[tokio::test]
async fn a_narrowed_refresh_narrows_that_access_token_only() {
    let idp = idp();
    let (client, first) = tokens(&idp, "&scope=mcp%3Aread%20mcp%3Awrite").await;
    assert_eq!(first["scope"], "mcp:read mcp:write");

    let narrow = idp
        .refresh_with(&client, &refresh_token(&first), "&scope=mcp%3Aread")
        .await
        .json();
    assert_eq!(narrow["scope"], "mcp:read", "{narrow}");
    let caller = idp
        .auth
        .authenticate(narrow["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(caller.scopes.iter().collect::<Vec<_>>(), ["mcp:read"]);

    // No scope: the login's scopes again (RFC 6749 §6); an empty `scope=` means the same.
    let next = idp.refresh(&client, &refresh_token(&narrow)).await.json();
    assert_eq!(next["scope"], "mcp:read mcp:write", "{next}");
    let empty = idp
        .refresh_with(&client, &refresh_token(&next), "&scope=")
        .await
        .json();
    assert_eq!(empty["scope"], "mcp:read mcp:write", "{empty}");
}

#[tokio::test]
async fn a_reused_refresh_token_is_logged_with_its_client_and_user_and_explained() {
    let idp = idp();
    let (client, first) = tokens(&idp, "").await;
    let token = refresh_token(&first);
    assert_eq!(idp.refresh(&client, &token).await.status, StatusCode::OK);

    let log = Capture::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(log.clone())
        .with_ansi(false)
        .finish();
    let reused = {
        let _guard = tracing::subscriber::set_default(subscriber);
        idp.refresh(&client, &token).await
    };
    let description = reused.json()["error_description"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        description.contains("access tokens already issued stay valid until they expire"),
        "the answer does not claim more than is revoked: {description}"
    );
    let text = log.text();
    assert!(
        text.contains("WARN")
            && text.contains("e2e client")
            && text.contains(&client)
            && text.contains("user alice"),
        "the warning names the client and the user: {text}"
    );
}

#[derive(Clone, Default)]
struct Capture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn a_page_cannot_register_clients_with_a_simple_request() {
    let idp = idp();
    let dev_idp = idp.auth.dev_idp.clone().unwrap();
    let body = json!({ "redirect_uris": [REDIRECT] }).to_string();
    let a = idp
        .run(request(
            "POST",
            "/dev-idp/register",
            "text/plain;charset=UTF-8",
            &body,
            [127, 0, 0, 1],
        ))
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(a.json()["error"], "invalid_request", "{}", a.body);
    assert!(
        a.json()["error_description"]
            .as_str()
            .unwrap()
            .contains("Content-Type: application/json"),
        "{}",
        a.body
    );
    assert_eq!(dev_idp.clients.count(), 0, "nothing was registered");
}

#[tokio::test]
async fn logins_and_registrations_through_a_proxy_are_refused() {
    let idp = idp();
    let client = idp.register().await;
    let mut req = request(
        "GET",
        &idp.authorize_url(&client, ""),
        FORM,
        "",
        [127, 0, 0, 1],
    );
    req.headers_mut()
        .insert("x-forwarded-for", "203.0.113.9".parse().unwrap());
    let a = idp.run(req).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert!(a.body.contains("came through a proxy"), "{}", a.body);

    let mut req = request(
        "POST",
        "/dev-idp/authorize",
        FORM,
        "form_token=x&user=a",
        [127, 0, 0, 1],
    );
    req.headers_mut()
        .insert("forwarded", "for=203.0.113.9".parse().unwrap());
    assert_eq!(idp.run(req).await.status, StatusCode::FORBIDDEN);

    let body = json!({ "redirect_uris": [REDIRECT] }).to_string();
    let mut req = request(
        "POST",
        "/dev-idp/register",
        "application/json",
        &body,
        [127, 0, 0, 1],
    );
    req.headers_mut()
        .insert("forwarded", "for=203.0.113.9".parse().unwrap());
    let a = idp.run(req).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    assert_eq!(a.json()["error"], "access_denied", "{}", a.body);
}

#[tokio::test]
async fn the_login_form_posts_to_the_advertised_authorization_endpoint() {
    // A public_url with a path (a gateway behind a path prefix): the form must keep it.
    let idp = idp_with(
        "[server]\nlisten = \"127.0.0.1:8787\"\npublic_url = \"http://127.0.0.1:8787/gw\"\n[dev_idp]\n",
    );
    let dev_idp = idp.auth.dev_idp.clone().unwrap();
    let advertised = super::metadata::document(&dev_idp, &[])["authorization_endpoint"].clone();
    assert_eq!(advertised, "http://127.0.0.1:8787/gw/dev-idp/authorize");
    let client = idp.register().await;
    let url = idp
        .authorize_url(&client, "")
        .replace("&resource=http%3A%2F%2F127.0.0.1%3A8787%2Fmcp", "");
    let page = idp.send("GET", &url, "", [127, 0, 0, 1]).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(
        page.body
            .contains(&format!("action=\"{}\"", advertised.as_str().unwrap())),
        "{}",
        page.body
    );
}

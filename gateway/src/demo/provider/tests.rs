//! The demo provider end to end over HTTP on 127.0.0.1:0: the authorization dance with a
//! plain reqwest client (every rule), then the gateway's own OAuth client and an rmcp client
//! against its MCP server.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use reqwest::header::{LOCATION, WWW_AUTHENTICATE};
use serde_json::Value;
use sha2::{Digest as _, Sha256};
use url::Url;

use super::*;
use crate::inbound::dev_idp::store::random_token;

const CLIENT: &str = "portcullis-demo";
const SECRET: &str = "s3cret&with+chars";
const CALLBACK: &str = "http://127.0.0.1:9/oauth/callback";

fn settings() -> Settings {
    Settings {
        client_id: CLIENT.into(),
        client_secret: Some(Secret::new(SECRET)),
        redirect_uris: vec![Url::parse(CALLBACK).unwrap()],
        token_ttl: Duration::from_secs(600),
    }
}

/// The provider on 127.0.0.1:0; its base URL.
async fn start() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = router(&base, settings());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

struct Pkce {
    verifier: String,
    challenge: String,
}

fn pkce() -> Pkce {
    let verifier = random_token().unwrap();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    Pkce {
        verifier,
        challenge,
    }
}

fn query(url: &Url) -> HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

fn location(resp: &reqwest::Response) -> Url {
    Url::parse(resp.headers()[LOCATION].to_str().unwrap()).unwrap()
}

async fn authorize(base: &str, params: &[(&str, &str)]) -> reqwest::Response {
    let mut url = Url::parse(&format!("{base}/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs(params);
    http().get(url).send().await.unwrap()
}

fn form_token(html: &str) -> String {
    let start = html.find("name=\"form_token\" value=\"").unwrap() + 25;
    html[start..].split('"').next().unwrap().to_string()
}

/// Answer a sign-in page: the redirect back to the client.
async fn answer(base: &str, page: reqwest::Response, user: &str, decision: &str) -> Url {
    assert_eq!(page.status(), StatusCode::OK);
    let token = form_token(&page.text().await.unwrap());
    let resp = http()
        .post(format!("{base}/authorize"))
        .form(&[
            ("form_token", token.as_str()),
            ("user", user),
            ("decision", decision),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    location(&resp)
}

/// Authorize `user` for `scope` and approve: the code.
async fn code_for(base: &str, p: &Pkce, user: &str, scope: &str) -> String {
    let page = authorize(
        base,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", CALLBACK),
            ("state", "st-1"),
            ("scope", scope),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let back = answer(base, page, user, "allow").await;
    let q = query(&back);
    assert_eq!(back.as_str().split('?').next(), Some(CALLBACK));
    assert_eq!(q["state"], "st-1");
    assert_eq!(q["iss"], base);
    q["code"].clone()
}

async fn token(base: &str, form: &[(&str, &str)]) -> (StatusCode, Value) {
    let resp = http()
        .post(format!("{base}/token"))
        .basic_auth(CLIENT, Some(form_encode(SECRET)))
        .form(form)
        .send()
        .await
        .unwrap();
    (resp.status(), resp.json().await.unwrap())
}

fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

async fn exchange(base: &str, code: &str, verifier: &str) -> (StatusCode, Value) {
    token(
        base,
        &[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", CALLBACK),
            ("code_verifier", verifier),
        ],
    )
    .await
}

async fn refresh(base: &str, refresh_token: &str) -> (StatusCode, Value) {
    token(
        base,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ],
    )
    .await
}

/// The MCP endpoint's status for an `initialize` carrying `bearer`: 200 when it is let in.
async fn mcp_status(base: &str, bearer: Option<&str>) -> StatusCode {
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                   "clientInfo": {"name": "t", "version": "0"}}
    });
    let mut req = http()
        .post(format!("{base}/mcp"))
        .header("accept", "application/json, text/event-stream")
        .json(&initialize);
    if let Some(t) = bearer {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap().status()
}

mod authorization;
mod gateway_client;

//! CORS for browser MCP clients (the MCP Inspector's direct mode): a browser at an origin in
//! `server.allowed_origins` gets preflights answered (without a token) and can read the
//! answers of `/mcp` and the OAuth metadata, including `Mcp-Session-Id` and a 401's
//! `WWW-Authenticate`; any other origin gets no CORS header at all.

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use portcullis_e2e::Gateway;
use reqwest::{Method, Response, StatusCode};

/// The MCP Inspector's default address.
const INSPECTOR: &str = "http://localhost:6274";
const STRANGER: &str = "https://evil.example";
const PRM: &str = "/.well-known/oauth-protected-resource/mcp";

fn gateway() -> Gateway {
    Gateway::start(
        &format!(
            "[dev_idp]\n[server]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{INSPECTOR}\"]\n"
        ),
        &[],
    )
    .unwrap()
}

fn http() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().unwrap()
}

fn header<'a>(resp: &'a Response, name: &str) -> Option<&'a str> {
    resp.headers().get(name).map(|v| v.to_str().unwrap())
}

/// Every `access-control-*` header of an answer.
fn cors_headers(resp: &Response) -> Vec<String> {
    resp.headers()
        .keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn preflight(
    gw: &Gateway,
    path: &str,
    origin: &str,
    method: &str,
    headers: &str,
) -> Response {
    http()
        .request(Method::OPTIONS, format!("{}{path}", gw.base()))
        .header("origin", origin)
        .header("access-control-request-method", method)
        .header("access-control-request-headers", headers)
        .send()
        .await
        .unwrap()
}

fn listed(value: Option<&str>) -> Vec<String> {
    value
        .unwrap_or_default()
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_preflight_from_an_allowed_origin_is_answered_without_a_token() {
    let gw = tokio::task::spawn_blocking(gateway).await.unwrap();
    let asked = "authorization, content-type, accept, mcp-session-id, mcp-protocol-version, \
                 mcp-method, mcp-name, last-event-id, mcp-param-region, x-not-mcp";
    let resp = preflight(&gw, "/mcp", INSPECTOR, "POST", asked).await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        Some(INSPECTOR)
    );
    let methods = header(&resp, "access-control-allow-methods").unwrap();
    assert!(
        methods.contains("POST") && methods.contains("GET"),
        "{methods}"
    );
    let granted = listed(header(&resp, "access-control-allow-headers"));
    for h in asked
        .split(',')
        .map(str::trim)
        .filter(|h| *h != "x-not-mcp")
    {
        assert!(
            granted.contains(&h.to_string()),
            "{h} not granted: {granted:?}"
        );
    }
    // Only what MCP clients send: another header is not granted, and no cookies mode.
    assert!(!granted.contains(&"x-not-mcp".to_string()), "{granted:?}");
    assert_eq!(header(&resp, "access-control-allow-credentials"), None);
    assert!(header(&resp, "vary").unwrap().contains("origin"));

    // The metadata a browser client reads to find the authorization server.
    let resp = preflight(&gw, PRM, INSPECTOR, "GET", "mcp-protocol-version").await;
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        Some(INSPECTOR)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_origin_gets_no_cors_header_and_mcp_still_refuses_it() {
    let gw = tokio::task::spawn_blocking(gateway).await.unwrap();
    for path in ["/mcp", PRM] {
        let resp = preflight(&gw, path, STRANGER, "POST", "authorization").await;
        assert_eq!(resp.status(), StatusCode::FORBIDDEN, "{path}");
        assert_eq!(cors_headers(&resp), Vec::<String>::new(), "{path}");
        let body = resp.text().await.unwrap();
        assert!(body.contains("allowed_origins"), "{body}");
    }
    // The metadata itself is public, but a browser elsewhere may not read it.
    let resp = http()
        .get(format!("{}{PRM}", gw.base()))
        .header("origin", STRANGER)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
    // With a valid token, /mcp refuses the origin as before, without CORS headers.
    let token = gw.dev_token(&["--user", "alice"]);
    let resp = initialize(&gw, STRANGER, Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::FORBIDDEN);
    assert_eq!(cors_headers(&resp), Vec::<String>::new());
}

async fn initialize(gw: &Gateway, origin: &str, token: Option<&str>) -> Response {
    let mut req = http()
        .post(&gw.url)
        .header("origin", origin)
        .header("accept", "application/json, text/event-stream")
        .json(&serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": { "name": "browser", "version": "1" }
            }
        }));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_at_an_allowed_origin_reads_the_session_id_and_the_401_challenge() {
    let gw = tokio::task::spawn_blocking(gateway).await.unwrap();
    // Without a token: the 401 and its challenge are readable, so the client can log in.
    let resp = initialize(&gw, INSPECTOR, None).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        Some(INSPECTOR)
    );
    let exposed = listed(header(&resp, "access-control-expose-headers"));
    assert!(
        exposed.contains(&"www-authenticate".to_string()),
        "{exposed:?}"
    );
    assert!(header(&resp, "www-authenticate").unwrap().contains(PRM));

    let resp = http()
        .get(format!("{}{PRM}", gw.base()))
        .header("origin", INSPECTOR)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        Some(INSPECTOR)
    );

    // With a token: the session id is exposed to the page.
    let token = gw.dev_token(&["--user", "alice"]);
    let resp = initialize(&gw, INSPECTOR, Some(&token)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        header(&resp, "access-control-allow-origin"),
        Some(INSPECTOR)
    );
    assert!(header(&resp, "mcp-session-id").is_some());
    let exposed = listed(header(&resp, "access-control-expose-headers"));
    assert!(
        exposed.contains(&"mcp-session-id".to_string()),
        "{exposed:?}"
    );
}

//! The development identity provider: `portcullis dev-token` mints a token the running
//! gateway accepts, the gateway serves the dev issuer's discovery, keys and authorization
//! server metadata, it refuses to run the dev IdP on a non-loopback address unless told
//! it is insecure, and web pages and proxies cannot register clients. (Clients logging in
//! through it: `mcp_clients.rs`.)
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use portcullis_e2e::{Gateway, binary, call_tool, connect, run_portcullis};
use portcullis_e2e::{tool_names, tool_text, write_config};

fn demo_target() -> String {
    format!(
        "[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    )
}

fn claims_of(token: &str) -> (serde_json::Value, serde_json::Value) {
    use base64::Engine;
    let part = |i: usize| {
        let seg = token.split('.').nth(i).unwrap();
        serde_json::from_slice(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(seg)
                .unwrap(),
        )
        .unwrap()
    };
    (part(0), part(1))
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_token_is_accepted_and_the_dev_issuer_is_served() {
    let gw = Gateway::start("[dev_idp]\n", &[("demo", demo_target())]).unwrap();
    let token = gw.dev_token(&[
        "--user",
        "alice",
        "--agent",
        "e2e-agent",
        "--scope",
        "mcp:read",
        "--ttl",
        "5m",
    ]);
    let (header, claims) = claims_of(&token);
    let (_, unscoped) = claims_of(&gw.dev_token(&["--user", "bob"]));
    assert!(
        unscoped.get("scope").is_none(),
        "no scopes: no `scope` claim, not an empty one: {unscoped}"
    );
    assert_eq!(header["alg"], "ES256");
    assert_eq!(claims["aud"], gw.url);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["iss"], format!("{}/dev-idp", gw.base()));

    // The gateway publishes the dev issuer like any OIDC issuer.
    let http = reqwest::Client::new();
    let discovery: serde_json::Value = http
        .get(format!(
            "{}/dev-idp/.well-known/openid-configuration",
            gw.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(discovery["issuer"], claims["iss"]);
    let jwks: serde_json::Value = http
        .get(discovery["jwks_uri"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(jwks["keys"][0]["kid"], header["kid"]);
    assert!(
        jwks["keys"][0].get("d").is_none(),
        "the private key must never be published"
    );

    // It is also an authorization server where MCP clients look for one (RFC 8414 path
    // insertion), and paths nobody serves are 404 whether or not a token comes along.
    let metadata: serde_json::Value = http
        .get(format!(
            "{}/.well-known/oauth-authorization-server/dev-idp",
            gw.base()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metadata["issuer"], claims["iss"]);
    assert_eq!(
        metadata["authorization_endpoint"],
        format!("{}/dev-idp/authorize", gw.base())
    );
    for auth in [None, Some(&token)] {
        let mut req = http.get(format!(
            "{}/.well-known/oauth-authorization-server/nope",
            gw.base()
        ));
        if let Some(t) = auth {
            req = req.bearer_auth(t);
        }
        assert_eq!(
            req.send().await.unwrap().status(),
            404,
            "token: {}",
            auth.is_some()
        );
    }

    // Without a token: 401 and the challenge that points at the resource metadata.
    let resp = http
        .post(&gw.url)
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    let challenge = resp.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(
        challenge,
        format!(
            "Bearer resource_metadata=\"{}/.well-known/oauth-protected-resource/mcp\"",
            gw.base()
        )
    );

    // With it: an MCP client lists and calls tools.
    let client = connect(&gw.url, Some(&token)).await;
    let tools = tool_names(&client).await;
    assert!(tools.iter().any(|t| t == "demo__echo"));
    let r = call_tool(&client, "demo__echo", serde_json::json!({"text": "hello"}))
        .await
        .unwrap();
    assert!(tool_text(&r).contains("hello"));
    client.cancel().await.ok();
}

/// What a web page in a browser can do to the running gateway's registration endpoint: a
/// `text/plain` POST (no preflight) is refused, and the preflight a JSON POST needs is not
/// granted; a real client's JSON registration works. Proxied requests are refused too.
#[tokio::test(flavor = "multi_thread")]
async fn web_pages_and_proxies_cannot_register_clients() {
    let gw = Gateway::start("[dev_idp]\n", &[("demo", demo_target())]).unwrap();
    let http = reqwest::Client::new();
    let register = format!("{}/dev-idp/register", gw.base());
    let metadata = r#"{"redirect_uris": ["http://localhost:33418/callback"]}"#;

    let simple = http
        .post(&register)
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "https://evil.example")
        .body(metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(simple.status(), 415);
    let error: serde_json::Value = simple.json().await.unwrap();
    assert_eq!(error["error"], "invalid_request", "{error}");

    let preflight = http
        .request(reqwest::Method::OPTIONS, &register)
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert!(
        !preflight.status().is_success()
            && !preflight
                .headers()
                .contains_key("access-control-allow-origin"),
        "a preflight must not be granted: {} {:?}",
        preflight.status(),
        preflight.headers()
    );

    let proxied = http
        .post(&register)
        .header("content-type", "application/json")
        .header("x-forwarded-for", "203.0.113.9")
        .body(metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(proxied.status(), 403);

    let client = http
        .post(&register)
        .header("content-type", "application/json")
        .body(metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(client.status(), 201);
}

/// `portcullis serve` on `gateway_toml` (with the demo target) must exit 1; its stderr.
fn serve_refused(gateway_toml: &str) -> String {
    let dir = write_config(gateway_toml, &[("demo", demo_target())]).unwrap();
    let out = run_portcullis("serve", dir.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn dev_idp_on_a_non_loopback_address_is_refused() {
    let stderr = serve_refused("[server]\nlisten = \"0.0.0.0:0\"\n[dev_idp]\n");
    assert!(
        stderr.contains("[dev_idp] is on") && stderr.contains("--i-know-this-is-insecure"),
        "{stderr}"
    );
}

#[test]
fn dev_idp_behind_a_public_url_is_refused() {
    // A reverse proxy on the same machine: every peer the gateway sees is 127.0.0.1, so only
    // the public URL tells that the login page would face the network.
    let stderr = serve_refused(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://mcp.example.com\"\n[dev_idp]\n",
    );
    assert!(
        stderr.contains("`server.public_url` (https://mcp.example.com/) is not a loopback URL")
            && stderr.contains("--i-know-this-is-insecure"),
        "{stderr}"
    );
}

#[test]
fn dev_token_without_a_dev_idp_says_how_to_enable_it() {
    let dir = write_config(
        "[inbound]\nmode = \"none\"\n[server]\nlisten = \"127.0.0.1:8799\"\n",
        &[("demo", demo_target())],
    )
    .unwrap();
    let out = run_portcullis("dev-token", dir.path(), &["--user", "bob"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("there is no [dev_idp] table")
            && stderr.contains("fix: add a line `[dev_idp]`"),
        "{stderr}"
    );
}

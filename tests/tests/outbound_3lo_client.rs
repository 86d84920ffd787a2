//! The gateway's OAuth client for user consent (3LO) against a real, certified provider
//! (`peers/idp`: npm `oidc-provider`), with a scripted browser logging in and consenting as
//! alice: discovery, the authorization request (PKCE S256, state, resource), the code
//! exchange, refresh with rotation, reuse detection, revocation and code reuse.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::HashMap;

use portcullis::config::Secret;
use portcullis::outbound::authorization_code::{
    AuthCodeError, AuthorizationCodeClient, ClientAuthMethod, ClientRegistration,
    ProviderEndpoints, TokenGrant, TokenKind,
};
use portcullis::outbound::{system_clock, token_http_client};
use portcullis_e2e::{Idp, MockServer, jwt_claims, peers};
use url::Url;

const CLIENT_ID: &str = "confidential-client";
const CLIENT_SECRET: &str = "confidential-client-secret";
/// The API the tokens are for (RFC 8707): the IdP makes it their `aud`.
const RESOURCE: &str = "http://127.0.0.1:7000/mcp";

/// One consent: the client's authorization URL, completed by the scripted browser as
/// `user`; the callback's `code`, after checking that `state` and `iss` came back.
fn consent(idp: &Idp, client: &AuthorizationCodeClient, scopes: &[String]) -> (String, Secret) {
    let auth = client.begin(scopes);
    let page = tokio::task::block_in_place(|| idp.browse(auth.url.as_str(), "alice")).unwrap();
    let final_url = page["final_url"].as_str().unwrap_or_default();
    let callback = Url::parse(final_url).unwrap_or_else(|e| panic!("{e}: {page}"));
    assert_eq!(callback.path(), "/callback", "{page}");
    let q: HashMap<String, String> = callback.query_pairs().into_owned().collect();
    assert_eq!(q.get("error"), None, "{page}");
    assert_eq!(q.get("state"), Some(&auth.state), "the state came back");
    assert_eq!(q.get("iss"), Some(&idp.issuer), "RFC 9207 iss");
    let code = q.get("code").cloned().unwrap_or_else(|| panic!("{page}"));
    (code, auth.pkce_verifier)
}

fn claims(grant: &TokenGrant) -> serde_json::Value {
    jwt_claims(grant.access_token.expose()).unwrap()
}

fn dead(result: Result<TokenGrant, AuthCodeError>, why: &str) {
    match result {
        Err(e @ AuthCodeError::InvalidGrant { .. }) => assert!(e.grant_is_dead()),
        other => panic!("{why}: expected invalid_grant, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consent_exchange_refresh_rotation_reuse_and_revocation_against_a_real_provider() {
    let Some(peers) = peers() else { return };
    // The callback the provider redirects the browser to: it only has to answer.
    let callback = MockServer::start(
        axum::Router::new().route("/callback", axum::routing::get(|| async { "consent done" })),
    )
    .await;
    let redirect_uri = callback.url("/callback");
    let idp = tokio::task::block_in_place(|| {
        Idp::start_with_env(&peers, &[("IDP_REDIRECT_URIS", &redirect_uri)])
    })
    .unwrap();

    let http = token_http_client().unwrap();
    let endpoints = ProviderEndpoints::discover(&http, &idp.issuer)
        .await
        .unwrap();
    assert_eq!(endpoints.issuer.as_deref(), Some(idp.issuer.as_str()));
    assert!(endpoints.revocation_url.is_some(), "{endpoints:?}");
    let client = AuthorizationCodeClient::new(
        endpoints,
        ClientRegistration {
            client_id: CLIENT_ID.into(),
            client_secret: Some(Secret::new(CLIENT_SECRET)),
            auth_method: ClientAuthMethod::Basic,
            redirect_uri: Url::parse(&redirect_uri).unwrap(),
            resource: Some(RESOURCE.into()),
            scope_param: "scope".into(),
            // OpenID Core: offline_access is honoured only with prompt=consent.
            extra_authorize_params: vec![("prompt".into(), "consent".into())],
        },
        http,
        system_clock(),
    )
    .unwrap();
    let scopes: Vec<String> = ["openid", "offline_access", "mcp:read"]
        .map(String::from)
        .to_vec();

    // Consent, then the code exchange: a JWT access token for alice, for the resource.
    let (code, verifier) = consent(&idp, &client, &scopes);
    let first = client.exchange(&code, &verifier, &scopes).await.unwrap();
    let c = claims(&first);
    assert_eq!(c["sub"], "alice", "{c}");
    assert_eq!(c["aud"], RESOURCE, "{c}");
    assert_eq!(c["client_id"], CLIENT_ID, "{c}");
    assert_eq!(c["iss"], idp.issuer.as_str(), "{c}");
    assert!(first.expires_at.is_some_and(|t| t > 0), "{first:?}");
    assert!(
        first.granted_scopes.iter().any(|s| s == "mcp:read"),
        "{first:?}"
    );
    let rt1 = first.refresh_token.clone().expect("a refresh token");

    // Refresh: a new access token and a rotated refresh token.
    let second = client.refresh(&rt1, &first.granted_scopes).await.unwrap();
    assert_ne!(second.access_token, first.access_token);
    assert_eq!(claims(&second)["sub"], "alice");
    let rt2 = second
        .refresh_token
        .clone()
        .expect("a rotated refresh token");
    assert_ne!(rt2, rt1);

    // The old refresh token again: reuse, the grant is dead (the IdP revokes it all, so the
    // newest refresh token dies with it).
    dead(client.refresh(&rt1, &scopes).await, "a used refresh token");
    dead(client.refresh(&rt2, &scopes).await, "after reuse detection");

    // A second consent; its refresh token revoked at the provider (RFC 7009) stops working,
    // and the code cannot be exchanged twice.
    let (code, verifier) = consent(&idp, &client, &scopes);
    let grant = client.exchange(&code, &verifier, &scopes).await.unwrap();
    let rt3 = grant.refresh_token.clone().expect("a refresh token");
    client.revoke(&rt3, TokenKind::RefreshToken).await.unwrap();
    dead(
        client.refresh(&rt3, &scopes).await,
        "a revoked refresh token",
    );
    dead(
        client.exchange(&code, &verifier, &scopes).await,
        "a used authorization code",
    );
}

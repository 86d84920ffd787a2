//! Outbound `token_exchange` (RFC 8693) at the provider level, against an in-process
//! authorization server that checks every field of the exchange. The same mode on an MCP
//! target, with its per-user upstream sessions, is tested end to end in
//! `per_user_sessions.rs`.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use axum::http::header;
use portcullis::config::Secret;
use portcullis::config::outbound::{
    ACCESS_TOKEN_TYPE, ClientAuth, OAuthClientSpec, TokenExchangeSpec,
};
use portcullis::identity::Caller;
use portcullis::outbound::{
    Attachment, CallerToken, Clock, CredentialError, CredentialProvider, OutboundRequest,
    Principal, TokenExchange, system_clock,
};
use portcullis_e2e::exchanging_as::{
    AUDIENCE, AuthServer, CLIENT_ID, CLIENT_SECRET, ExpectClient, GRANT, RESOURCE, basic,
    basic_credentials,
};
use url::Url;

fn spec(token_url: Url, auth: ClientAuth) -> TokenExchangeSpec {
    TokenExchangeSpec {
        token_url,
        client: Some(OAuthClientSpec {
            client_id: CLIENT_ID.into(),
            auth,
        }),
        audience: Some(AUDIENCE.into()),
        resource: Some(RESOURCE.into()),
        scopes: vec!["orders:read".into(), "orders:write".into()],
        subject_token_type: ACCESS_TOKEN_TYPE.into(),
        requested_token_type: None,
    }
}

fn caller(token: Option<&str>) -> Principal {
    let caller = Caller {
        issuer: "https://idp.example.test".into(),
        user: "alice".into(),
        agent: Some("e2e-agent".into()),
        scopes: BTreeSet::from(["mcp:read".to_string()]),
        groups: vec![],
        tenant: None,
        claims: serde_json::Map::new(),
        expires_at: SystemTime::now() + Duration::from_secs(600),
    };
    Principal::new(caller, token.map(CallerToken::new))
}

fn target_url() -> Url {
    Url::parse("https://api.example.test/v1/orders").unwrap()
}

async fn attach(
    p: &TokenExchange,
    target: &str,
    principal: Option<&Principal>,
) -> Result<Attachment, CredentialError> {
    let url = target_url();
    let headers = [("content-type".to_string(), "application/json".to_string())];
    p.attach(&OutboundRequest {
        target,
        method: "POST",
        url: &url,
        headers: &headers,
        body: br#"{"q":1}"#,
        principal,
        tool: Some("search_orders"),
    })
    .await
}

/// The one Authorization header of an attachment (checked sensitive), and nothing else.
fn bearer(a: &Attachment) -> String {
    assert_eq!(a.headers.len(), 1, "{a:?}");
    assert!(a.query.is_empty(), "{a:?}");
    let (name, value) = &a.headers[0];
    assert_eq!(name, header::AUTHORIZATION);
    assert!(value.is_sensitive(), "credential headers are sensitive");
    value.to_str().unwrap().to_string()
}

fn no_caller_token_in(a: &Attachment, token: &str) {
    for (_, v) in &a.headers {
        assert!(
            !v.to_str().unwrap().contains(token),
            "the caller's token is attached"
        );
    }
    for (_, v) in &a.query {
        assert!(!v.contains(token), "the caller's token is attached");
    }
}

#[tokio::test]
async fn exchanges_the_callers_token_with_every_rfc8693_field_and_basic_client_auth() {
    let server = AuthServer::start(basic()).await;
    let p = TokenExchange::new(
        spec(
            server.url("/token"),
            ClientAuth::Basic(Secret::new(CLIENT_SECRET)),
        ),
        reqwest::Client::new(),
        system_clock(),
    );
    let alice = caller(Some("caller-token-1"));
    let a = attach(&p, "orders", Some(&alice)).await.unwrap();
    assert_eq!(bearer(&a), "Bearer exchanged-1");
    no_caller_token_in(&a, "caller-token-1");

    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.field("grant_type"), Some(GRANT));
    assert_eq!(r.field("subject_token"), Some("caller-token-1"));
    assert_eq!(r.field("subject_token_type"), Some(ACCESS_TOKEN_TYPE));
    assert_eq!(r.field("audience"), Some(AUDIENCE));
    assert_eq!(r.field("resource"), Some(RESOURCE));
    assert_eq!(r.field("scope"), Some("orders:read orders:write"));
    assert_eq!(r.field("requested_token_type"), None);
    assert_eq!(
        r.field("client_secret"),
        None,
        "the secret is only in the header"
    );
    assert_eq!(
        basic_credentials(r.authorization.as_deref().unwrap()).unwrap(),
        (CLIENT_ID.to_string(), CLIENT_SECRET.to_string())
    );
    assert_eq!(
        r.content_type.as_deref(),
        Some("application/x-www-form-urlencoded")
    );
}

#[tokio::test]
async fn the_exchanged_token_is_cached_per_caller_token_and_target() {
    let server = AuthServer::start(basic()).await;
    let p = TokenExchange::new(
        spec(
            server.url("/token"),
            ClientAuth::Basic(Secret::new(CLIENT_SECRET)),
        ),
        reqwest::Client::new(),
        system_clock(),
    );
    let alice = caller(Some("caller-token-1"));
    let first = bearer(&attach(&p, "orders", Some(&alice)).await.unwrap());
    assert_eq!(first, "Bearer exchanged-1");
    assert_eq!(server.count(), 1);

    // Same caller token, same target: from the cache, no new request.
    let again = bearer(&attach(&p, "orders", Some(&alice)).await.unwrap());
    assert_eq!(again, first);
    assert_eq!(server.count(), 1, "a cached token is reused");

    // Another caller token: its own exchange, its own token.
    let bob = caller(Some("caller-token-2"));
    let other = bearer(&attach(&p, "orders", Some(&bob)).await.unwrap());
    assert_eq!(other, "Bearer exchanged-2");
    assert_eq!(server.count(), 2);
    assert_eq!(
        server.requests()[1].field("subject_token"),
        Some("caller-token-2")
    );
    // Each caller keeps their own cached token.
    assert_eq!(
        bearer(&attach(&p, "orders", Some(&alice)).await.unwrap()),
        first
    );
    assert_eq!(
        bearer(&attach(&p, "orders", Some(&bob)).await.unwrap()),
        other
    );
    assert_eq!(server.count(), 2);

    // Same caller token, another target: a token for one target is not used for another.
    let elsewhere = bearer(&attach(&p, "billing", Some(&alice)).await.unwrap());
    assert_eq!(elsewhere, "Bearer exchanged-3");
    assert_eq!(server.count(), 3);

    // The target refused the token (401): the cache is dropped and the next call exchanges again.
    let used = attach(&p, "orders", Some(&alice)).await.unwrap();
    assert!(p.rejected(&used), "a retry with a fresh token can help");
    let fresh = bearer(&attach(&p, "orders", Some(&alice)).await.unwrap());
    assert_eq!(fresh, "Bearer exchanged-4");
    assert_eq!(server.count(), 4);
}

#[tokio::test]
async fn an_expired_exchanged_token_is_exchanged_again() {
    let server = AuthServer::start(basic()).await;
    let start = SystemTime::now();
    let offset = Arc::new(AtomicU64::new(0));
    let clock: Clock = {
        let offset = offset.clone();
        Arc::new(move || start + Duration::from_secs(offset.load(Ordering::SeqCst)))
    };
    let p = TokenExchange::new(
        spec(
            server.url("/token"),
            ClientAuth::Basic(Secret::new(CLIENT_SECRET)),
        ),
        reqwest::Client::new(),
        clock,
    );
    let alice = caller(Some("caller-token-1"));
    assert_eq!(
        bearer(&attach(&p, "orders", Some(&alice)).await.unwrap()),
        "Bearer exchanged-1"
    );
    // expires_in = 300: still used well before expiry …
    offset.store(200, Ordering::SeqCst);
    assert_eq!(
        bearer(&attach(&p, "orders", Some(&alice)).await.unwrap()),
        "Bearer exchanged-1"
    );
    assert_eq!(server.count(), 1);
    // … and replaced once it has expired.
    offset.store(301, Ordering::SeqCst);
    assert_eq!(
        bearer(&attach(&p, "orders", Some(&alice)).await.unwrap()),
        "Bearer exchanged-2"
    );
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn a_refusal_names_the_oauth_error_and_is_not_cached() {
    let server = AuthServer::start(basic()).await;
    let p = TokenExchange::new(
        spec(
            server.url("/refuse"),
            ClientAuth::Basic(Secret::new(CLIENT_SECRET)),
        ),
        reqwest::Client::new(),
        system_clock(),
    );
    let alice = caller(Some("caller-token-1"));
    let err = attach(&p, "orders", Some(&alice)).await.unwrap_err();
    assert_eq!(
        err,
        CredentialError::Refused {
            code: "invalid_grant".into(),
            description: Some("subject token expired".into()),
        }
    );
    let message = err.to_string();
    assert!(
        message.contains("invalid_grant") && message.contains("subject token expired"),
        "{message}"
    );
    assert!(!message.contains("caller-token-1"), "{message}");
    assert_eq!(server.count(), 1);
    // The exchange really happened (it was refused, not skipped) …
    assert_eq!(
        server.requests()[0].field("subject_token"),
        Some("caller-token-1")
    );
    // … and a refusal is not remembered as a token.
    assert!(attach(&p, "orders", Some(&alice)).await.is_err());
    assert_eq!(server.count(), 2);
}

#[tokio::test]
async fn without_a_caller_token_nothing_is_exchanged() {
    let server = AuthServer::start(basic()).await;
    let p = TokenExchange::new(
        spec(
            server.url("/token"),
            ClientAuth::Basic(Secret::new(CLIENT_SECRET)),
        ),
        reqwest::Client::new(),
        system_clock(),
    );
    // The gateway's own requests (session set-up, listing) have no caller.
    assert_eq!(
        attach(&p, "orders", None).await.unwrap_err(),
        CredentialError::NoCaller("token_exchange")
    );
    // A caller whose token was not kept cannot be exchanged either.
    let anonymous = caller(None);
    assert_eq!(
        attach(&p, "orders", Some(&anonymous)).await.unwrap_err(),
        CredentialError::NoCaller("token_exchange")
    );
    assert_eq!(server.count(), 0, "no request without a subject token");
}

#[tokio::test]
async fn client_secret_post_puts_the_client_credentials_in_the_form() {
    let server = AuthServer::start(ExpectClient::Post {
        id: CLIENT_ID.into(),
        secret: CLIENT_SECRET.into(),
    })
    .await;
    let p = TokenExchange::new(
        spec(
            server.url("/token"),
            ClientAuth::Post(Secret::new(CLIENT_SECRET)),
        ),
        reqwest::Client::new(),
        system_clock(),
    );
    let alice = caller(Some("caller-token-1"));
    let a = attach(&p, "orders", Some(&alice)).await.unwrap();
    assert_eq!(bearer(&a), "Bearer exchanged-1");
    let seen = server.requests();
    assert_eq!(seen.len(), 1);
    let r = &seen[0];
    assert_eq!(r.authorization, None, "no Authorization header");
    assert_eq!(r.field("client_id"), Some(CLIENT_ID));
    assert_eq!(r.field("client_secret"), Some(CLIENT_SECRET));
    assert_eq!(r.field("subject_token"), Some("caller-token-1"));
    assert_eq!(r.field("grant_type"), Some(GRANT));
}

#[tokio::test]
async fn basic_client_auth_form_urlencodes_the_id_and_secret() {
    // Generated secrets often hold `+`, `/` or `=`; a client id may hold `:`. RFC 6749
    // §2.3.1 has both form-urlencoded before they go into HTTP Basic (the `oauth2` crate, used
    // by `oauth2_client_credentials`, does so), and a conforming server decodes them.
    let secret = "s+cr/t=%:x";
    let server = AuthServer::start(ExpectClient::Basic {
        id: CLIENT_ID.into(),
        secret: secret.into(),
    })
    .await;
    let p = TokenExchange::new(
        spec(server.url("/token"), ClientAuth::Basic(Secret::new(secret))),
        reqwest::Client::new(),
        system_clock(),
    );
    let alice = caller(Some("caller-token-1"));
    let a = attach(&p, "orders", Some(&alice)).await;
    assert_eq!(bearer(&a.unwrap()), "Bearer exchanged-1");
}

//! The 3LO credential against a real vault (a temporary SQLite file) and an in-process token
//! endpoint on 127.0.0.1:0 that counts refreshes and answers as told.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;

use super::*;
use crate::config::outbound::Provider as Preset;
use crate::outbound::authorization_code::{
    AuthorizationCodeClient, ClientAuthMethod, ClientRegistration, ProviderEndpoints,
};
use crate::vault::{Kek, NewGrant};

const NOW: u64 = 1_800_000_000;

/// How the token endpoint answers.
const ROTATE: u8 = 0;
const INVALID_GRANT: u8 = 1;
const SERVER_ERROR: u8 = 2;
const INVALID_CLIENT: u8 = 3;

#[derive(Default)]
struct Provider {
    answer: AtomicU8,
    refreshes: AtomicU64,
}

async fn token(State(p): State<Arc<Provider>>, body: String) -> axum::response::Response {
    assert!(body.contains("grant_type=refresh_token"), "{body}");
    let n = p.refreshes.fetch_add(1, Ordering::SeqCst) + 1;
    match p.answer.load(Ordering::SeqCst) {
        // GitHub's way of naming scopes: one comma-separated string.
        ROTATE => axum::Json(serde_json::json!({
            "access_token": format!("access-{n}"),
            "refresh_token": format!("refresh-{n}"),
            "token_type": "Bearer",
            "expires_in": 3600,
            "scope": "tasks:read,gist",
        }))
        .into_response(),
        INVALID_GRANT => (
            StatusCode::BAD_REQUEST,
            axum::Json(serde_json::json!({ "error": "invalid_grant" })),
        )
            .into_response(),
        INVALID_CLIENT => (
            StatusCode::UNAUTHORIZED,
            axum::Json(serde_json::json!({ "error": "invalid_client" })),
        )
            .into_response(),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "down for maintenance").into_response(),
    }
}

struct Rig {
    grants: Arc<UserGrants>,
    vault: Vault,
    provider: Arc<Provider>,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let provider = Arc::new(Provider::default());
    let app = axum::Router::new()
        .route("/token", post(token))
        .with_state(provider.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let clock: Clock = Arc::new(|| UNIX_EPOCH + Duration::from_secs(NOW));
    let client = AuthorizationCodeClient::new(
        ProviderEndpoints::new(
            url::Url::parse("https://provider.example/authorize").unwrap(),
            url::Url::parse(&format!("{base}/token")).unwrap(),
            None,
        )
        .unwrap(),
        ClientRegistration {
            client_id: "gateway".into(),
            client_secret: Some(Secret::new("client-secret")),
            auth_method: ClientAuthMethod::Basic,
            redirect_uri: url::Url::parse("http://127.0.0.1:8787/consent/callback").unwrap(),
            resource: None,
            scope_param: "scope".into(),
            extra_authorize_params: vec![],
        },
        crate::outbound::token_http_client().unwrap(),
        clock.clone(),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let vault = Vault::open(
        &dir.path().join("vault.sqlite3"),
        Kek::from_bytes([3; 32], "test key"),
    )
    .await
    .unwrap();
    let grants = Arc::new(UserGrants::new(
        "tasks",
        Arc::new(LazyClient::ready(Arc::new(client), Preset::Custom)),
        vault.clone(),
        vec!["tasks:read".into()],
        BTreeMap::from([("add_task".to_string(), vec!["tasks:write".to_string()])]),
        clock,
    ));
    Rig {
        grants,
        vault,
        provider,
        _dir: dir,
    }
}

fn caller(user: &str, agent: &str) -> Caller {
    Caller {
        issuer: "https://idp.example.test".into(),
        user: user.into(),
        agent: Some(agent.into()),
        scopes: Default::default(),
        groups: vec![],
        tenant: None,
        claims: Default::default(),
        expires_at: SystemTime::now(),
    }
}

fn key(user: &str, agent: &str) -> GrantKey {
    GrantKey {
        issuer: "https://idp.example.test".into(),
        user: user.into(),
        agent: Some(agent.into()),
        target: "tasks".into(),
    }
}

/// Store a grant for alice via `cli` expiring `expires_in` seconds after NOW.
async fn store(rig: &Rig, scopes: &[&str], expires_in: i64, refresh: bool) {
    let grant = NewGrant {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        access_token: Secret::new("access-0"),
        refresh_token: refresh.then(|| Secret::new("refresh-0")),
        expires_at: Some(NOW as i64 + expires_in),
    };
    rig.vault
        .store_grant(&key("alice", "cli"), &grant)
        .await
        .unwrap();
}

/// Alice's expired grant refreshed while the provider answers `answer`: the error she gets.
async fn refresh_failure(rig: &Rig, answer: u8) -> CredentialError {
    store(rig, &["tasks:read"], -10, true).await;
    rig.provider.answer.store(answer, Ordering::SeqCst);
    rig.grants
        .access_token(&caller("alice", "cli"), None)
        .await
        .expect_err("the refresh fails")
}

fn needs_consent(r: Result<Secret, CredentialError>) -> Vec<String> {
    match r {
        Err(CredentialError::ConsentNeeded { scopes }) => scopes,
        Err(other) => panic!("expected consent, got {other}"),
        Ok(_) => panic!("expected consent, got a token"),
    }
}

#[tokio::test]
async fn a_grant_serves_only_the_user_and_agent_it_was_issued_to() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], 3600, true).await;
    let token = rig
        .grants
        .access_token(&caller("alice", "cli"), Some("list_tasks"))
        .await
        .unwrap();
    assert_eq!(token.expose(), "access-0");
    assert_eq!(
        needs_consent(rig.grants.access_token(&caller("bob", "cli"), None).await),
        ["tasks:read"]
    );
    assert_eq!(
        needs_consent(rig.grants.access_token(&caller("alice", "ide"), None).await),
        ["tasks:read"],
        "another agent of alice's has no grant"
    );
    assert_eq!(rig.provider.refreshes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_tool_that_needs_more_scopes_asks_consent_for_the_union() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], 3600, true).await;
    let scopes = needs_consent(
        rig.grants
            .access_token(&caller("alice", "cli"), Some("add_task"))
            .await,
    );
    assert_eq!(scopes, ["tasks:read", "tasks:write"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn past_expiry_a_hundred_concurrent_calls_make_one_refresh_and_store_the_rotation() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], 30, true).await; // inside the refresh skew
    let calls = (0..100).map(|_| {
        let grants = rig.grants.clone();
        tokio::spawn(async move {
            grants
                .access_token(&caller("alice", "cli"), Some("list_tasks"))
                .await
        })
    });
    for call in futures::future::join_all(calls).await {
        assert_eq!(call.unwrap().unwrap().expose(), "access-1");
    }
    assert_eq!(rig.provider.refreshes.load(Ordering::SeqCst), 1);
    assert_eq!(rig.grants.refreshes(), 1);
    let stored = rig
        .vault
        .grant(&key("alice", "cli"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.access_token.expose(), "access-1");
    assert_eq!(
        stored.refresh_token.unwrap().expose(),
        "refresh-1",
        "the rotated refresh token replaced the old one"
    );
    assert_eq!(stored.expires_at, Some(NOW as i64 + 3600));
    assert_eq!(
        stored.scopes,
        ["tasks:read"],
        "the approved scopes stay, whatever the provider calls them"
    );
    // So the next call is served without asking consent again.
    assert_eq!(
        rig.grants
            .access_token(&caller("alice", "cli"), Some("list_tasks"))
            .await
            .unwrap()
            .expose(),
        "access-1"
    );
}

#[tokio::test]
async fn invalid_grant_deletes_the_grant_and_asks_consent_again() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], -10, true).await;
    rig.provider.answer.store(INVALID_GRANT, Ordering::SeqCst);
    let scopes = needs_consent(rig.grants.access_token(&caller("alice", "cli"), None).await);
    assert_eq!(scopes, ["tasks:read"]);
    assert!(
        rig.vault
            .grant(&key("alice", "cli"))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_provider_failure_is_reported_and_the_grant_kept() {
    let rig = rig().await;
    let err = refresh_failure(&rig, SERVER_ERROR).await;
    assert!(matches!(err, CredentialError::Unreachable(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains("refreshing the user's token: the token endpoint"),
        "{message}"
    );
    assert!(
        !message.contains("refresh-0") && !message.contains("access-0"),
        "{message}"
    );
    let kept = rig
        .vault
        .grant(&key("alice", "cli"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(kept.refresh_token.unwrap().expose(), "refresh-0");
}

#[tokio::test]
async fn an_expired_grant_without_a_refresh_token_asks_consent() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], -10, false).await;
    needs_consent(rig.grants.access_token(&caller("alice", "cli"), None).await);
    assert_eq!(rig.provider.refreshes.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_provider_refusing_the_gateways_client_is_its_oauth_error_not_unreachable() {
    let rig = rig().await;
    let err = refresh_failure(&rig, INVALID_CLIENT).await;
    assert!(
        matches!(&err, CredentialError::Refused { code, .. } if code == "invalid_client"),
        "{err}"
    );
    assert!(
        rig.vault
            .grant(&key("alice", "cli"))
            .await
            .unwrap()
            .is_some()
    );
}

/// What the HTTP layer does with a 401: tell the provider which attachment was refused.
fn refused(token: &str) -> Attachment {
    Attachment::default()
        .header(AUTHORIZATION, &format!("Bearer {token}"))
        .unwrap()
}

#[tokio::test]
async fn a_token_the_upstream_refuses_is_refreshed_on_the_retry() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], 3600, true).await; // not expired
    let alice = caller("alice", "cli");
    let first = rig.grants.access_token(&alice, None).await.unwrap();
    assert_eq!(first.expose(), "access-0");
    // A token the provider never handed out: nothing to retry with.
    assert!(!rig.grants.rejected(&refused("someone-elses-token")));
    assert!(rig.grants.rejected(&refused("access-0")));
    let retry = rig.grants.access_token(&alice, None).await.unwrap();
    assert_eq!(retry.expose(), "access-1", "refreshed although not expired");
    assert_eq!(rig.provider.refreshes.load(Ordering::SeqCst), 1);
    // Only once: the next call uses the new token.
    let next = rig.grants.access_token(&alice, None).await.unwrap();
    assert_eq!(next.expose(), "access-1");
}

#[tokio::test]
async fn a_refused_token_without_a_refresh_token_drops_the_grant_and_asks_consent() {
    let rig = rig().await;
    store(&rig, &["tasks:read"], 3600, false).await;
    let alice = caller("alice", "cli");
    rig.grants.access_token(&alice, None).await.unwrap();
    assert!(rig.grants.rejected(&refused("access-0")));
    needs_consent(rig.grants.access_token(&alice, None).await);
    assert!(
        rig.vault
            .grant(&key("alice", "cli"))
            .await
            .unwrap()
            .is_none()
    );
}

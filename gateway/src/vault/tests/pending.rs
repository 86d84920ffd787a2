//! Pending consents: single use, expiry, and a row moved to another user.

use super::*;

#[tokio::test]
async fn a_pending_consent_is_taken_once() {
    let f = Fixture::new();
    let vault = f.open().await;
    let created = vault
        .create_pending(new_pending("verifier_1", T0 + 600))
        .await
        .unwrap();
    assert_eq!(created.id.len(), 43, "32 random bytes, base64url");
    let other = vault
        .create_pending(new_pending("verifier_2", T0 + 600))
        .await
        .unwrap();
    assert_ne!(created.id, other.id);

    let shown = vault.pending(&created.id).await.unwrap().unwrap();
    assert_eq!(shown.pkce_verifier.expose(), "verifier_1");
    let taken = vault.take_pending(&created.id).await.unwrap().unwrap();
    assert_eq!(taken.pkce_verifier.expose(), "verifier_1");
    assert_eq!(taken.grant_key(), key("alice", "github"));
    assert_eq!(
        (taken.scopes, taken.session_id.as_deref(), taken.created_at),
        (vec!["repo".to_string()], Some("mcp-session-1"), T0)
    );
    assert!(
        vault.take_pending(&created.id).await.unwrap().is_none(),
        "single use"
    );
    assert!(vault.pending(&created.id).await.unwrap().is_none());
    assert!(vault.take_pending("not-an-id").await.unwrap().is_none());
    assert!(vault.take_pending(&other.id).await.unwrap().is_some());
}

#[tokio::test]
async fn an_expired_pending_consent_is_not_returned_and_is_purged() {
    let f = Fixture::new();
    let vault = f.open().await;
    let soon = vault
        .create_pending(new_pending("v_soon", T0 + 60))
        .await
        .unwrap();
    let later = vault
        .create_pending(new_pending("v_later", T0 + 600))
        .await
        .unwrap();
    let last = vault
        .create_pending(new_pending("v_last", T0 + 600))
        .await
        .unwrap();
    f.clock.set(T0 + 60);
    assert!(vault.pending(&soon.id).await.unwrap().is_none());
    assert!(vault.take_pending(&soon.id).await.unwrap().is_none());
    assert_eq!(
        vault.purge_expired().await.unwrap(),
        0,
        "the take removed it"
    );
    f.clock.set(T0 + 600);
    assert!(vault.take_pending(&later.id).await.unwrap().is_none());
    assert_eq!(
        vault.purge_expired().await.unwrap(),
        1,
        "only `last` was left"
    );
    assert!(vault.pending(&last.id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_pending_consent_moved_to_another_user_does_not_open() {
    let f = Fixture::new();
    let vault = f.open().await;
    let created = vault
        .create_pending(new_pending("verifier", T0 + 600))
        .await
        .unwrap();
    raw(&vault, "UPDATE vault_pending SET user_name = 'mallory'").await;
    let err = vault.take_pending(&created.id).await.unwrap_err();
    assert!(err.is_tampered(), "{err:?}");
    assert!(
        err.to_string()
            .contains("PKCE verifier of the pending consent of user `mallory`")
    );
    assert!(
        vault.take_pending(&created.id).await.unwrap().is_none(),
        "and it is gone"
    );
}

#[tokio::test]
async fn an_approved_consent_past_its_expiry_is_neither_shown_nor_given_to_its_callback() {
    let f = Fixture::new();
    let vault = f.open().await;
    let created = vault
        .create_pending(new_pending("verifier", T0 + 60))
        .await
        .unwrap();
    assert!(
        vault
            .authorize_pending(&created.id, "state-1", "browser-1")
            .await
            .unwrap()
    );
    f.clock.set(T0 + 60);
    assert!(vault.pending(&created.id).await.unwrap().is_none());
    assert!(
        !vault
            .authorize_pending(&created.id, "state-2", "browser-1")
            .await
            .unwrap(),
        "an expired consent cannot be approved again"
    );
    assert!(matches!(
        vault
            .take_authorized("state-1", Some("browser-1"))
            .await
            .unwrap(),
        Authorized::Expired
    ));
    // The expired consent was removed by that callback: a replay finds nothing.
    assert!(matches!(
        vault
            .take_authorized("state-1", Some("browser-1"))
            .await
            .unwrap(),
        Authorized::Unknown
    ));
    assert!(vault.take_pending(&created.id).await.unwrap().is_none());
}

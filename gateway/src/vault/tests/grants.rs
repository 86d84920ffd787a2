//! Grants: stored, replaced, refreshed, listed and deleted.

use super::*;

#[tokio::test]
async fn a_grant_round_trips_and_an_absent_one_is_none() {
    let f = Fixture::new();
    let vault = f.open().await;
    let alice = key("alice", "github");
    assert!(vault.grant(&alice).await.unwrap().is_none());
    vault
        .store_grant(&alice, &new_grant("gho_access_A", Some("ghr_refresh_A")))
        .await
        .unwrap();
    let got = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(got.access_token.expose(), "gho_access_A");
    assert_eq!(got.refresh_token.unwrap().expose(), "ghr_refresh_A");
    assert_eq!(got.scopes, ["repo", "read:user"]);
    assert_eq!((got.expires_at, got.created_at), (Some(T0 + 3600), T0));
    assert!(got.revision >= 1);
    // Another agent of the same user has no grant: tokens are not shared between agents.
    let other_agent = GrantKey {
        agent: Some("cursor".into()),
        ..alice.clone()
    };
    assert!(vault.grant(&other_agent).await.unwrap().is_none());
}
#[tokio::test]
async fn storing_again_replaces_the_grant_and_counts_the_revision() {
    let f = Fixture::new();
    let vault = f.open().await;
    let alice = key("alice", "github");
    vault
        .store_grant(&alice, &new_grant("old_access", Some("old_refresh")))
        .await
        .unwrap();
    let first = vault.grant(&alice).await.unwrap().unwrap().revision;
    f.clock.set(T0 + 50);
    let mut again = new_grant("new_access", None);
    again.scopes = vec!["repo".into()];
    vault.store_grant(&alice, &again).await.unwrap();
    let got = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(got.access_token.expose(), "new_access");
    assert!(
        got.refresh_token.is_none(),
        "the old refresh token went with the old grant"
    );
    assert_eq!(
        (got.scopes, got.revision, got.updated_at),
        (vec!["repo".to_string()], first + 1, T0 + 50)
    );
    let listed = vault.list_grants(&filter("alice")).await.unwrap();
    assert_eq!(listed.len(), 1);
}

#[tokio::test]
async fn a_grant_deleted_and_consented_again_does_not_reuse_a_revision_a_stale_writer_holds() {
    let f = Fixture::new();
    let vault = f.open().await;
    let alice = key("alice", "github");
    vault
        .store_grant(&alice, &new_grant("first_access", Some("first_refresh")))
        .await
        .unwrap();
    let stale = vault.grant(&alice).await.unwrap().unwrap().revision;
    // Revoked, then consented again, while a refresh of the first grant is in flight.
    assert!(vault.delete_grant(&alice).await.unwrap());
    vault
        .store_grant(&alice, &new_grant("second_access", Some("second_refresh")))
        .await
        .unwrap();
    let late = RefreshedTokens {
        access_token: Secret::new("from_the_revoked_grant"),
        refresh_token: None,
        expires_at: None,
        scopes: None,
    };
    assert!(
        !vault
            .replace_tokens_after_refresh(&alice, stale, &late)
            .await
            .unwrap()
    );
    assert!(
        !vault
            .delete_grant_if_unchanged(&alice, stale)
            .await
            .unwrap()
    );
    let got = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(got.access_token.expose(), "second_access");
}

#[tokio::test]
async fn a_refresh_replaces_both_tokens_at_once_unless_the_grant_changed() {
    let f = Fixture::new();
    let vault = f.open().await;
    let alice = key("alice", "github");
    vault
        .store_grant(&alice, &new_grant("access_1", Some("refresh_1")))
        .await
        .unwrap();
    let read = vault.grant(&alice).await.unwrap().unwrap();
    let rotated = RefreshedTokens {
        access_token: Secret::new("access_2"),
        refresh_token: Some(Secret::new("refresh_2")),
        expires_at: Some(T0 + 7200),
        scopes: None,
    };
    assert!(
        vault
            .replace_tokens_after_refresh(&alice, read.revision, &rotated)
            .await
            .unwrap()
    );
    let got = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(got.access_token.expose(), "access_2");
    assert_eq!(got.refresh_token.as_ref().unwrap().expose(), "refresh_2");
    assert_eq!(
        (got.expires_at, got.revision),
        (Some(T0 + 7200), read.revision + 1)
    );
    assert_eq!(got.scopes, ["repo", "read:user"]);

    // A second refresher that read the old revision stores nothing and deletes nothing.
    let stale = RefreshedTokens {
        access_token: Secret::new("access_stale"),
        ..rotated.clone()
    };
    assert!(
        !vault
            .replace_tokens_after_refresh(&alice, read.revision, &stale)
            .await
            .unwrap()
    );
    assert!(
        !vault
            .delete_grant_if_unchanged(&alice, read.revision)
            .await
            .unwrap()
    );
    assert_eq!(
        vault
            .grant(&alice)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "access_2"
    );

    // A provider that does not rotate: the stored refresh token stays; new scopes are kept.
    let kept = RefreshedTokens {
        access_token: Secret::new("access_3"),
        refresh_token: None,
        expires_at: None,
        scopes: Some(vec!["repo".into()]),
    };
    assert!(
        vault
            .replace_tokens_after_refresh(&alice, got.revision, &kept)
            .await
            .unwrap()
    );
    let got = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(got.refresh_token.as_ref().unwrap().expose(), "refresh_2");
    assert_eq!(
        (got.access_token.expose(), got.expires_at),
        ("access_3", None)
    );
    assert_eq!(got.scopes, ["repo"]);

    // The provider refused the refresh token: the grant at that revision goes.
    assert!(
        vault
            .delete_grant_if_unchanged(&alice, got.revision)
            .await
            .unwrap()
    );
    // A refresh that finishes after a revocation does not bring the grant back.
    assert!(
        !vault
            .replace_tokens_after_refresh(&alice, got.revision, &kept)
            .await
            .unwrap()
    );
    assert!(vault.grant(&alice).await.unwrap().is_none());
}
#[tokio::test]
async fn listing_shows_no_token_and_deleting_follows_the_filter() {
    let f = Fixture::new();
    let vault = f.open().await;
    for (user, agent, target) in [
        ("alice", Some("claude"), "github"),
        ("alice", Some("claude"), "jira"),
        ("alice", None, "github"),
        ("bob", Some("claude"), "github"),
    ] {
        let key = GrantKey {
            agent: agent.map(str::to_string),
            ..key(user, target)
        };
        let token = format!("tok_{user}_{}_{target}", agent.unwrap_or("any"));
        vault
            .store_grant(&key, &new_grant(&token, Some(&format!("{token}_r"))))
            .await
            .unwrap();
    }
    let listed = vault.list_grants(&filter("alice")).await.unwrap();
    assert_eq!(listed.len(), 3);
    assert!(!format!("{listed:?}").contains("tok_"), "{listed:?}");
    assert!(
        listed
            .iter()
            .all(|g| g.has_refresh_token && !g.key_id.is_empty())
    );
    assert_eq!(listed[0].key.agent, None, "no agent sorts first");

    let jira = GrantFilter {
        target: Some("jira".into()),
        ..filter("alice")
    };
    assert_eq!(vault.list_grants(&jira).await.unwrap().len(), 1);
    let claude = GrantFilter {
        agent: Some("claude".into()),
        ..filter("alice")
    };
    assert_eq!(vault.delete_grants(&claude).await.unwrap(), 2);
    let left = vault.list_grants(&filter("alice")).await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(
        (left[0].key.agent.as_deref(), left[0].key.target.as_str()),
        (None, "github")
    );
    assert_eq!(vault.delete_grants(&filter("alice")).await.unwrap(), 1);
    assert_eq!(vault.list_grants(&filter("bob")).await.unwrap().len(), 1);
    assert!(vault.delete_grant(&key("bob", "github")).await.unwrap());
    assert!(!vault.delete_grant(&key("bob", "github")).await.unwrap());
}

#[tokio::test]
async fn every_write_through_the_vault_is_read_back_at_once_although_reads_are_kept_in_memory() {
    let f = Fixture::new();
    let vault = f.open().await;
    let other = vault.clone(); // a clone shares the memory, as the consent pages' does
    let alice = key("alice", "github");
    vault
        .store_grant(&alice, &new_grant("first", Some("r1")))
        .await
        .unwrap();
    let read = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(read.access_token.expose(), "first");
    // Refreshed: the next read has the new token.
    let tokens = RefreshedTokens {
        access_token: Secret::new("second"),
        refresh_token: None,
        expires_at: Some(T0 + 7200),
        scopes: None,
    };
    assert!(
        other
            .replace_tokens_after_refresh(&alice, read.revision, &tokens)
            .await
            .unwrap()
    );
    let read = vault.grant(&alice).await.unwrap().unwrap();
    assert_eq!(read.access_token.expose(), "second");
    // Consented again: replaced at once.
    other
        .store_grant(&alice, &new_grant("third", None))
        .await
        .unwrap();
    assert_eq!(
        vault
            .grant(&alice)
            .await
            .unwrap()
            .unwrap()
            .access_token
            .expose(),
        "third"
    );
    // Revoked (one grant, or by filter): gone at once.
    assert!(other.delete_grant(&alice).await.unwrap());
    assert!(vault.grant(&alice).await.unwrap().is_none());
    other
        .store_grant(&alice, &new_grant("fourth", None))
        .await
        .unwrap();
    assert!(vault.grant(&alice).await.unwrap().is_some());
    assert_eq!(other.delete_grants(&filter("alice")).await.unwrap(), 1);
    assert!(vault.grant(&alice).await.unwrap().is_none());
}

//! `portcullis vault list|revoke`, as an operator runs them against a gateway's vault: grants
//! are listed without any token, revocation follows the selection and leaves other users'
//! grants intact, and a configuration whose vault was never created is not given one.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::Path;
use std::process::Command;

use portcullis::config::{self, Secret};
use portcullis::vault::{GrantKey, NewGrant, Vault};
use portcullis_e2e::{binary, write_config};

const ISSUER: &str = "https://login.example.test/";

fn vault_cmd(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(binary("portcullis", "portcullis"))
        .arg("vault")
        .arg(args[0])
        .arg("--config")
        .arg(dir.join("gateway.toml"))
        .args(&args[1..])
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn key(user: &str, agent: &str, target: &str) -> GrantKey {
    GrantKey {
        issuer: ISSUER.into(),
        user: user.into(),
        agent: Some(agent.into()),
        target: target.into(),
    }
}

fn grant(token: &str, scopes: &[&str]) -> NewGrant {
    NewGrant {
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        access_token: Secret::new(format!("access-{token}")),
        refresh_token: Some(Secret::new(format!("refresh-{token}"))),
        expires_at: Some(1_900_000_000),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn grants_are_listed_without_tokens_and_revoked_by_selection() {
    let dir = write_config("[dev_idp]\n", &[]).unwrap();
    let settings = config::load_vault(&dir.path().join("gateway.toml")).unwrap();
    let vault = Vault::from_settings(&settings).await.unwrap();
    vault
        .store_grant(
            &key("alice", "cli", "github"),
            &grant("a1", &["repo", "read:user"]),
        )
        .await
        .unwrap();
    vault
        .store_grant(
            &key("alice", "ide", "google"),
            &grant("a2", &["drive.readonly"]),
        )
        .await
        .unwrap();
    vault
        .store_grant(&key("bob", "cli", "github"), &grant("b1", &["repo"]))
        .await
        .unwrap();
    vault.close().await;

    let (ok, out, err) = vault_cmd(dir.path(), &["list", "--user", "alice"]);
    assert!(ok, "{err}");
    assert!(out.starts_with("2 grants for user `alice`:"), "{out}");
    assert!(
        out.contains("target `github`") && out.contains("target `google`"),
        "{out}"
    );
    assert!(out.contains("repo read:user"), "{out}");
    assert!(!out.contains("bob"), "{out}");
    let (ok, json, _) = vault_cmd(dir.path(), &["list", "--user", "alice", "--json"]);
    assert!(ok);
    let rows: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{json}");
    assert_eq!(rows[0]["has_refresh_token"], true);
    for text in [&out, &json, &err] {
        assert!(
            !text.contains("access-") && !text.contains("refresh-a"),
            "{text}"
        );
    }

    // Revoke alice's github grant only.
    let (ok, out, err) = vault_cmd(
        dir.path(),
        &["revoke", "--user", "alice", "--target", "github"],
    );
    assert!(ok, "{err}");
    assert!(
        out.starts_with("revoked 1 grant for user `alice`, target `github`"),
        "{out}"
    );
    let (_, out, _) = vault_cmd(dir.path(), &["list", "--user", "alice"]);
    assert!(out.starts_with("1 grant for user `alice`:"), "{out}");
    assert!(
        out.contains("target `google`") && !out.contains("target `github`"),
        "{out}"
    );
    let (_, out, _) = vault_cmd(dir.path(), &["list", "--user", "bob"]);
    assert!(
        out.contains("target `github`"),
        "bob keeps his grant: {out}"
    );

    // The library sees the same.
    let vault = Vault::from_settings(&settings).await.unwrap();
    assert!(
        vault
            .grant(&key("alice", "cli", "github"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        vault
            .grant(&key("bob", "cli", "github"))
            .await
            .unwrap()
            .is_some()
    );
    vault.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_same_user_name_at_two_issuers_is_revoked_only_with_the_issuer_named() {
    let dir = write_config("[dev_idp]\n", &[]).unwrap();
    let settings = config::load_vault(&dir.path().join("gateway.toml")).unwrap();
    let vault = Vault::from_settings(&settings).await.unwrap();
    let other = GrantKey {
        issuer: "https://other-idp.example.test/".into(),
        ..key("alice", "cli", "github")
    };
    vault
        .store_grant(&key("alice", "cli", "github"), &grant("a1", &["repo"]))
        .await
        .unwrap();
    vault
        .store_grant(&other, &grant("o1", &["repo"]))
        .await
        .unwrap();
    vault.close().await;

    let (ok, _, err) = vault_cmd(dir.path(), &["revoke", "--user", "alice"]);
    assert!(!ok);
    assert!(
        err.contains("nothing was revoked") && err.contains("--issuer"),
        "{err}"
    );
    assert!(err.contains(ISSUER) && err.contains("other-idp"), "{err}");
    let (ok, out, err) = vault_cmd(
        dir.path(),
        &[
            "revoke",
            "--user",
            "alice",
            "--issuer",
            "https://other-idp.example.test/",
        ],
    );
    assert!(ok, "{err}");
    assert!(out.starts_with("revoked 1 grant"), "{out}");
    let (_, out, _) = vault_cmd(dir.path(), &["list", "--user", "alice"]);
    assert!(out.contains(ISSUER) && !out.contains("other-idp"), "{out}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_key_beside_an_existing_vault_is_refused_and_not_replaced() {
    let dir = write_config("[dev_idp]\n", &[]).unwrap();
    let settings = config::load_vault(&dir.path().join("gateway.toml")).unwrap();
    let vault = Vault::from_settings(&settings).await.unwrap();
    vault.close().await;
    let key_file = dir.path().join(".data/vault.key");
    std::fs::remove_file(&key_file).unwrap();
    let (ok, _, err) = vault_cmd(dir.path(), &["list", "--user", "alice"]);
    assert!(!ok);
    assert!(
        err.contains("is missing") && err.contains("restore the key file"),
        "{err}"
    );
    assert!(
        !key_file.exists(),
        "no new key was made beside the old database"
    );
}

#[test]
fn a_vault_that_was_never_created_lists_nothing_and_is_not_created() {
    let dir = write_config("[dev_idp]\n", &[]).unwrap();
    let (ok, out, err) = vault_cmd(dir.path(), &["list", "--user", "alice"]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "no grants for user `alice`");
    let (ok, out, _) = vault_cmd(dir.path(), &["revoke", "--user", "alice"]);
    assert!(ok);
    assert!(out.contains("the vault was never created"), "{out}");
    assert!(
        !dir.path().join(".data").exists(),
        "no vault or key was created"
    );
}

#[test]
fn a_bad_vault_key_reference_is_reported_with_the_file_and_fix() {
    let dir = write_config("[dev_idp]\n[vault]\nkey = \"plain-text-key\"\n", &[]).unwrap();
    let (ok, _, err) = vault_cmd(dir.path(), &["list", "--user", "alice"]);
    assert!(!ok);
    assert!(
        err.contains("gateway.toml") && err.contains("vault.key"),
        "{err}"
    );
    assert!(err.contains("env:NAME"), "{err}");
    assert!(
        !err.contains("plain-text-key"),
        "the value is not echoed: {err}"
    );
}

//! The vault's behaviour through its public methods, on a real SQLite file in a temp dir.
//! Tampering is done the way an attacker with the file would: raw SQL on the rows. Here:
//! tampering, what is at rest, keys and files; `grants` and `pending` test the rest.

mod grants;
mod pending;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use super::*;
use crate::config::SecretRef;

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl TestClock {
    fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

const T0: i64 = 1_700_000_000;

struct Fixture {
    _dir: tempfile::TempDir,
    db: PathBuf,
    key_file: PathBuf,
    clock: Arc<TestClock>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        Self {
            db: dir.path().join("data/vault.sqlite3"),
            key_file: dir.path().join("data/vault.key"),
            _dir: dir,
            clock: Arc::new(TestClock(AtomicI64::new(T0))),
        }
    }

    fn kek(&self) -> Kek {
        Kek::load(&SecretRef::File(self.key_file.clone()), Path::new("/")).unwrap()
    }

    async fn open(&self) -> Vault {
        self.open_with(self.kek()).await.unwrap()
    }

    async fn open_with(&self, kek: Kek) -> Result<Vault, VaultError> {
        Vault::open_with_clock(&self.db, kek, self.clock.clone()).await
    }
}

fn key(user: &str, target: &str) -> GrantKey {
    GrantKey {
        issuer: "https://idp.example".into(),
        user: user.into(),
        agent: Some("claude".into()),
        target: target.into(),
    }
}

fn new_grant(access: &str, refresh: Option<&str>) -> NewGrant {
    NewGrant {
        scopes: vec!["repo".into(), "read:user".into()],
        access_token: Secret::new(access),
        refresh_token: refresh.map(Secret::new),
        expires_at: Some(T0 + 3600),
    }
}

/// Run raw SQL against the vault's file, as someone holding the file would.
async fn raw(vault: &Vault, sql: &'static str) -> u64 {
    sqlx::query(sql)
        .execute(vault.store.pool())
        .await
        .unwrap()
        .rows_affected()
}
fn filter(user: &str) -> GrantFilter {
    GrantFilter {
        user: user.into(),
        ..GrantFilter::default()
    }
}
fn new_pending(verifier: &str, expires_at: i64) -> NewPendingConsent {
    NewPendingConsent {
        issuer: "https://idp.example".into(),
        user: "alice".into(),
        agent: Some("claude".into()),
        target: "github".into(),
        scopes: vec!["repo".into()],
        pkce_verifier: Secret::new(verifier),
        session_id: Some("mcp-session-1".into()),
        expires_at,
    }
}
#[tokio::test]
async fn a_ciphertext_copied_onto_another_row_does_not_open_and_the_source_row_still_does() {
    let f = Fixture::new();
    let vault = f.open().await;
    vault
        .store_grant(&key("alice", "github"), &new_grant("alice_access", None))
        .await
        .unwrap();
    vault
        .store_grant(
            &key("mallory", "github"),
            &new_grant("mallory_access", None),
        )
        .await
        .unwrap();
    let copied = raw(
        &vault,
        "UPDATE vault_grants SET access_token = \
         (SELECT access_token FROM vault_grants WHERE user_name = 'alice') \
         WHERE user_name = 'mallory'",
    )
    .await;
    assert_eq!(copied, 1);
    let err = vault.grant(&key("mallory", "github")).await.unwrap_err();
    assert!(err.is_tampered(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.starts_with(
            "the stored access token of the grant of user `mallory` to agent `claude` for \
             target `github` (issuer `https://idp.example`) does not open"
        ),
        "{message}"
    );
    assert!(
        message.contains("fix: the user consents again"),
        "{message}"
    );
    assert!(!message.contains("alice_access"), "{message}");
    let alice = vault.grant(&key("alice", "github")).await.unwrap().unwrap();
    assert_eq!(alice.access_token.expose(), "alice_access");
    // A fresh consent replaces the unusable row.
    vault
        .store_grant(&key("mallory", "github"), &new_grant("mallory_again", None))
        .await
        .unwrap();
    let mallory = vault
        .grant(&key("mallory", "github"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(mallory.access_token.expose(), "mallory_again");
}

#[tokio::test]
async fn a_row_renamed_to_another_user_or_a_swapped_column_does_not_open() {
    let f = Fixture::new();
    let vault = f.open().await;
    let alice = key("alice", "github");
    vault
        .store_grant(&alice, &new_grant("access_1", Some("refresh_1")))
        .await
        .unwrap();
    raw(
        &vault,
        "UPDATE vault_grants SET refresh_token = access_token WHERE user_name = 'alice'",
    )
    .await;
    let err = vault.grant(&alice).await.unwrap_err();
    assert!(
        matches!(
            err,
            VaultError::Tampered {
                field: "refresh token",
                ..
            }
        ),
        "{err:?}"
    );

    vault
        .store_grant(&alice, &new_grant("access_2", None))
        .await
        .unwrap();
    raw(&vault, "UPDATE vault_grants SET user_name = 'eve'").await;
    assert!(
        vault
            .grant(&key("eve", "github"))
            .await
            .unwrap_err()
            .is_tampered()
    );
    assert!(vault.grant(&alice).await.unwrap().is_none());
}

#[tokio::test]
async fn the_database_file_holds_none_of_the_secrets() {
    let f = Fixture::new();
    let vault = f.open().await;
    let secrets = [
        "gho_SECRET_access_token_123",
        "ghr_SECRET_refresh_token_456",
    ];
    vault
        .store_grant(
            &key("alice", "github"),
            &new_grant(secrets[0], Some(secrets[1])),
        )
        .await
        .unwrap();
    let pending = vault
        .create_pending(new_pending("pkce_SECRET_verifier_789", T0 + 600))
        .await
        .unwrap();
    let mut files = vec![std::fs::read(&f.db).unwrap()];
    // While open, recent writes may sit in the write-ahead log beside the file.
    let wal = PathBuf::from(format!("{}-wal", f.db.display()));
    files.extend(std::fs::read(&wal).ok());
    vault.close().await;
    files.push(std::fs::read(&f.db).unwrap());
    files.extend(std::fs::read(&wal).ok());
    let all: Vec<u8> = files.concat();
    assert!(
        all.windows(5).any(|w| w == b"alice"),
        "the test reads the rows"
    );
    for secret in secrets
        .iter()
        .chain([&"pkce_SECRET_verifier_789", &pending.id.as_str()])
    {
        assert!(
            !all.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} is in the database file"
        );
    }
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_private_and_the_generated_key_opens_the_vault_again() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new();
    let vault = f.open().await;
    vault
        .store_grant(&key("alice", "github"), &new_grant("kept_access", None))
        .await
        .unwrap();
    vault.close().await;
    for file in [&f.db, &f.key_file] {
        let mode = std::fs::metadata(file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{}", file.display());
    }
    let again = f.open().await;
    let grant = again.grant(&key("alice", "github")).await.unwrap().unwrap();
    assert_eq!(grant.access_token.expose(), "kept_access");
}

#[tokio::test]
async fn another_key_encryption_key_is_refused_at_open_with_the_fix() {
    let f = Fixture::new();
    f.open().await.close().await;
    let err = f
        .open_with(Kek::from_bytes([9; 32], "env:OTHER_KEY"))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        format!(
            "the vault database {} was sealed with another key-encryption key than \
             `env:OTHER_KEY`, so none of its tokens can be opened; fix: give the gateway the key \
             this vault was created with; if that key is lost, so are the tokens: move {} away \
             and users will be asked to consent again",
            f.db.display(),
            f.db.display()
        )
    );
    // A lost key file is recreated, and the message says to put the original back.
    std::fs::remove_file(&f.key_file).unwrap();
    let err = f.open_with(f.kek()).await.unwrap_err().to_string();
    assert!(err.contains("put the original key file back"), "{err}");
}

#[tokio::test]
async fn a_database_path_that_cannot_be_created_names_the_path_and_the_fix() {
    let f = Fixture::new();
    let blocker = f.db.parent().unwrap().parent().unwrap().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let db = blocker.join("vault.sqlite3");
    let err = Vault::open(&db, Kek::from_bytes([1; 32], "test"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with(&format!(
            "the vault database {} cannot be opened: ",
            db.display()
        )),
        "{err}"
    );
    assert!(
        err.contains("fix: let the gateway's user create and write the file"),
        "{err}"
    );
    assert!(
        err.contains("a file is in the way where a directory should be"),
        "{err}"
    );
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_with_the_fix() {
    let f = Fixture::new();
    std::fs::create_dir_all(f.db.parent().unwrap()).unwrap();
    std::fs::write(&f.db, vec![b'x'; 8192]).unwrap();
    let err = f.open_with(f.kek()).await.unwrap_err().to_string();
    assert_eq!(
        err,
        format!(
            "the vault database {} cannot be opened: the file is not an SQLite database; fix: \
             point the vault at another file, or move this one away (a new, empty vault is \
             created in its place)",
            f.db.display()
        )
    );
}

#[tokio::test]
async fn a_database_from_a_newer_version_is_refused_with_the_fix() {
    let f = Fixture::new();
    let vault = f.open().await;
    raw(
        &vault,
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99, 'from the future', TRUE, X'00', 0)",
    )
    .await;
    vault.close().await;
    let err = f.open_with(f.kek()).await.unwrap_err();
    assert!(matches!(err, VaultError::Migrate { .. }), "{err:?}");
    let err = err.to_string();
    assert!(err.contains("migration 99"), "{err}");
    assert!(
        err.contains("fix: if a newer Portcullis wrote it, run that version"),
        "{err}"
    );
}

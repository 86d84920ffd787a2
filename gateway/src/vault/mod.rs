//! The token vault: users' consented grants (access and refresh tokens per issuer, user,
//! agent and target) and the consents still waiting for them, with every secret sealed.
//!
//! `Vault` seals and opens (`seal`, under data keys wrapped by the key-encryption key of
//! `kek`); `store` holds the SQL. Each secret's associated data is its row's identity, so a
//! value copied to another row or column does not open, and such a row is reported as
//! [`VaultError::Tampered`] and never used. The backend is SQLite (a file in `data_dir`);
//! the PostgreSQL backend plugs in beside `store::Store` with the same statements and
//! migrations (`gateway/migrations/`), the sealing here shared. docs/vault.md is the user's
//! page.

mod error;
mod files;
mod kek;
mod records;
mod seal;
mod store;
#[cfg(test)]
mod tests;

pub use error::VaultError;
pub use kek::Kek;
pub use records::{
    Authorized, Clock, Grant, GrantFilter, GrantKey, GrantSummary, NewGrant, NewPendingConsent,
    PendingConsent, RefreshedTokens, SystemClock,
};

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use aws_lc_rs::digest::{SHA256, digest};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::config::Secret;
use records::{join_scopes, non_empty, split_scopes};
use seal::{Context, Keyring};
use store::{GrantRow, PendingRow, Store, TokenUpdate};

/// Where a new grant row's revision starts: random (below 2^62, so counting on cannot
/// overflow), so that a grant deleted and consented again never reuses a revision a stale
/// writer may still hold.
fn first_revision() -> Result<i64, VaultError> {
    let mut bytes = [0u8; 8];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| VaultError::Crypto)?;
    Ok((u64::from_be_bytes(bytes) >> 2) as i64 + 1)
}

/// How long an opened grant is served from memory. Every write through this vault (a
/// consent, a refresh, a revocation by the grants page or after `invalid_grant`) updates the
/// memory at once; this bounds only how long a change made by another process (`portcullis
/// vault revoke`, another replica) takes to reach this one. A vault read costs a trip to the
/// database thread and an AES-GCM open, twice per call (the credential phase and the HTTP
/// attach): ~0.35 ms per call on the project's machine (docs/benchmarks.md).
pub const GRANT_MEMORY: std::time::Duration = std::time::Duration::from_secs(5);
/// Opened grants kept in memory at most.
const GRANT_MEMORY_ENTRIES: usize = 10_000;

/// The vault, open. Cloning is cheap and shares the connections.
#[derive(Clone)]
pub struct Vault {
    store: Store,
    keys: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    /// Recently opened grants (see [`GRANT_MEMORY`]).
    opened: Arc<parking_lot::Mutex<HashMap<GrantKey, (std::time::Instant, Grant)>>>,
    /// Grant writes finished through this vault: a read that overlapped one is not kept
    /// (it may have read the row before the write).
    writes: Arc<std::sync::atomic::AtomicU64>,
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vault")
            .field("path", &self.store.path())
            .field("keys", &self.keys)
            .finish()
    }
}

impl Vault {
    /// Open (or create) the SQLite vault at `path` with the key-encryption key `kek`.
    pub async fn open(path: &Path, kek: Kek) -> Result<Self, VaultError> {
        Self::open_with_clock(path, kek, Arc::new(SystemClock)).await
    }

    /// [`Vault::open`] with the clock that dates rows and expires consents.
    pub async fn open_with_clock(
        path: &Path,
        kek: Kek,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, VaultError> {
        let store = Store::open(path).await?;
        let mut stored = store.keys().await?;
        if stored.is_empty() {
            let (key_id, key) = seal::new_data_key()?;
            let wrapped = seal::wrap(&kek, &key_id, &key)?;
            store
                .insert_first_key(&key_id, &wrapped, clock.now())
                .await?;
            stored = store.keys().await?;
        }
        let mut keys = Vec::with_capacity(stored.len());
        for (key_id, wrapped) in stored {
            let key =
                seal::unwrap(&kek, &key_id, &wrapped).ok_or_else(|| VaultError::WrongKek {
                    path: path.display().to_string(),
                    reference: kek.reference.clone(),
                    created: kek.created,
                })?;
            keys.push((key_id, key));
        }
        Ok(Self {
            store,
            keys: Arc::new(Keyring::new(keys)?),
            clock,
            opened: Arc::default(),
            writes: Arc::default(),
        })
    }

    /// Open the vault `[vault]` configures: load (or on first start create) its key, then
    /// open (or create) its database.
    pub async fn from_settings(
        settings: &crate::config::VaultSettings,
    ) -> Result<Self, VaultError> {
        // A key file is made only for a new vault: beside an existing database a new key
        // could open nothing, and would hide that the real one is missing.
        if let crate::config::SecretRef::File(key) = &settings.key {
            let key = settings.key_base.join(key);
            if settings.path.exists() && !key.exists() {
                return Err(VaultError::Kek {
                    reference: settings.key.to_string(),
                    reason: format!(
                        "the key file {} is missing, and the vault database {} exists: it was sealed with that key",
                        key.display(),
                        settings.path.display()
                    ),
                    fix: "restore the key file from your backup; if it is lost, so are the stored tokens: move the database away and users will be asked to consent again".into(),
                });
            }
        }
        let kek = Kek::load(&settings.key, &settings.key_base)?;
        Self::open(&settings.path, kek).await
    }

    /// Whether the database answers, for `/readyz`.
    pub async fn reachable(&self) -> Result<(), VaultError> {
        self.store.ping().await
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Close the connections (SQLite folds its write-ahead log into the file).
    pub async fn close(&self) {
        self.store.close().await;
    }

    /// The grant for `key`, opened. [`VaultError::Tampered`] when its row does not open.
    pub async fn grant(&self, key: &GrantKey) -> Result<Option<Grant>, VaultError> {
        if let Some((at, grant)) = self.opened.lock().get(key)
            && at.elapsed() < GRANT_MEMORY
        {
            return Ok(Some(grant.clone()));
        }
        let read = std::time::Instant::now();
        let writes = self.writes.load(std::sync::atomic::Ordering::SeqCst);
        match self.store.grant(key).await? {
            Some(row) => {
                let grant = self.open_grant(key, row)?;
                let mut opened = self.opened.lock();
                if self.writes.load(std::sync::atomic::Ordering::SeqCst) == writes {
                    if opened.len() >= GRANT_MEMORY_ENTRIES {
                        opened.clear();
                    }
                    opened.insert(key.clone(), (read, grant.clone()));
                }
                Ok(Some(grant))
            }
            None => {
                self.forget(key);
                Ok(None)
            }
        }
    }

    /// Drop `key`'s grant from memory: it was written, or may have been. Called after the
    /// write; the count makes a read that overlapped the write not keep what it read.
    fn forget(&self, key: &GrantKey) {
        let mut opened = self.opened.lock();
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        opened.remove(key);
    }

    /// Store the grant a consent produced, replacing any grant for the same key.
    pub async fn store_grant(&self, key: &GrantKey, grant: &NewGrant) -> Result<(), VaultError> {
        let now = self.clock.now();
        let access = self.seal(&grant_context(key, ACCESS), &grant.access_token)?;
        let refresh = match &grant.refresh_token {
            Some(token) => Some(self.seal(&grant_context(key, REFRESH), token)?),
            None => None,
        };
        let row: GrantRow = (
            key.issuer.clone(),
            key.user.clone(),
            key.agent_column().to_string(),
            key.target.clone(),
            join_scopes(&grant.scopes),
            access,
            refresh,
            grant.expires_at,
            first_revision()?,
            now,
            now,
        );
        let stored = self.store.upsert_grant(&row).await;
        self.forget(key);
        stored
    }

    /// Store what a refresh returned, if the grant is still at `revision` (the one read
    /// before refreshing). Access and refresh token are replaced together, in one statement.
    /// `false`: the grant was revoked, replaced or refreshed meanwhile; nothing was stored.
    pub async fn replace_tokens_after_refresh(
        &self,
        key: &GrantKey,
        revision: i64,
        tokens: &RefreshedTokens,
    ) -> Result<bool, VaultError> {
        let access = self.seal(&grant_context(key, ACCESS), &tokens.access_token)?;
        let refresh = match &tokens.refresh_token {
            Some(token) => Some(self.seal(&grant_context(key, REFRESH), token)?),
            None => None,
        };
        let scopes = tokens.scopes.as_deref().map(join_scopes);
        let update = TokenUpdate {
            access: &access,
            refresh: refresh.as_deref(),
            expires_at: tokens.expires_at,
            scopes: scopes.as_deref(),
            now: self.clock.now(),
        };
        let updated = self.store.update_tokens(key, revision, &update).await;
        self.forget(key);
        updated
    }

    /// Delete the grant for `key`; `true` if there was one.
    pub async fn delete_grant(&self, key: &GrantKey) -> Result<bool, VaultError> {
        let deleted = self.store.delete_grant(key, None).await;
        self.forget(key);
        deleted
    }

    /// Delete the grant for `key` only if it is still at `revision` (after the provider
    /// refused its refresh token, say, while a newer grant may have replaced it).
    pub async fn delete_grant_if_unchanged(
        &self,
        key: &GrantKey,
        revision: i64,
    ) -> Result<bool, VaultError> {
        let deleted = self.store.delete_grant(key, Some(revision)).await;
        self.forget(key);
        deleted
    }

    /// The grants `filter` selects, described without their tokens.
    pub async fn list_grants(&self, filter: &GrantFilter) -> Result<Vec<GrantSummary>, VaultError> {
        let rows = self.store.grants_matching(filter).await?;
        Ok(rows
            .into_iter()
            .map(
                |(
                    issuer,
                    user,
                    agent,
                    target,
                    scopes,
                    access,
                    refresh,
                    expires_at,
                    _,
                    created_at,
                    updated_at,
                )| {
                    GrantSummary {
                        key: GrantKey {
                            issuer,
                            user,
                            agent: non_empty(agent),
                            target,
                        },
                        scopes: split_scopes(&scopes),
                        expires_at,
                        has_refresh_token: refresh.is_some(),
                        key_id: Keyring::key_id_of(&access).unwrap_or_default().to_string(),
                        created_at,
                        updated_at,
                    }
                },
            )
            .collect())
    }

    /// Delete the grants `filter` selects; how many there were.
    pub async fn delete_grants(&self, filter: &GrantFilter) -> Result<u64, VaultError> {
        let deleted = self.store.delete_matching(filter).await;
        let mut opened = self.opened.lock();
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        opened.clear();
        deleted
    }

    /// Store a consent waiting for the user, under a new unguessable id.
    pub async fn create_pending(
        &self,
        new: NewPendingConsent,
    ) -> Result<PendingConsent, VaultError> {
        let mut id = [0u8; 32];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| VaultError::Crypto)?;
        let pending = PendingConsent {
            id: URL_SAFE_NO_PAD.encode(id),
            issuer: new.issuer,
            user: new.user,
            agent: new.agent.and_then(non_empty),
            target: new.target,
            scopes: new.scopes,
            pkce_verifier: new.pkce_verifier,
            session_id: new.session_id.and_then(non_empty),
            created_at: self.clock.now(),
            expires_at: new.expires_at,
        };
        let digest = id_digest(&pending.id);
        let verifier = self.seal(&pending_context(&digest, &pending), &pending.pkce_verifier)?;
        let row: PendingRow = (
            digest,
            pending.issuer.clone(),
            pending.user.clone(),
            pending.agent.clone().unwrap_or_default(),
            pending.target.clone(),
            join_scopes(&pending.scopes),
            verifier,
            pending.session_id.clone(),
            pending.created_at,
            pending.expires_at,
        );
        self.store.insert_pending(&row).await?;
        Ok(pending)
    }

    /// The pending consent `id`, left in place (to show the consent page); `None` if there
    /// is none or it has expired.
    pub async fn pending(&self, id: &str) -> Result<Option<PendingConsent>, VaultError> {
        let now = self.clock.now();
        match self.store.pending(&id_digest(id), now).await? {
            Some(row) => self.open_pending(id, row).map(Some),
            None => Ok(None),
        }
    }

    /// Take the pending consent `id`: it is removed, so a second take gets `None`. An
    /// expired one is removed and not returned.
    pub async fn take_pending(&self, id: &str) -> Result<Option<PendingConsent>, VaultError> {
        let now = self.clock.now();
        match self.store.take_pending(&id_digest(id)).await? {
            Some(row) if row.9 > now => self.open_pending(id, row).map(Some),
            _ => Ok(None),
        }
    }

    /// The user approved pending consent `id` in the browser whose cookie is `browser`, and
    /// is sent to the provider with `state`. Only the digests are kept: the callback must
    /// bring back the same state from the same browser ([`Vault::take_authorized`]). A second
    /// approval replaces the first. False when the consent is gone (expired or used).
    pub async fn authorize_pending(
        &self,
        id: &str,
        state: &str,
        browser: &str,
    ) -> Result<bool, VaultError> {
        self.store
            .authorize_pending(
                &id_digest(id),
                &id_digest(state),
                &id_digest(browser),
                self.clock.now(),
            )
            .await
    }

    /// The provider sent the browser back with `state`: take (once) the pending consent it
    /// was issued for, if this is the browser that approved it.
    pub async fn take_authorized(
        &self,
        state: &str,
        browser: Option<&str>,
    ) -> Result<Authorized, VaultError> {
        let state_digest = id_digest(state);
        if let Some(browser) = browser {
            let row = self
                .store
                .take_authorized(&state_digest, &id_digest(browser))
                .await?;
            if let Some(row) = row {
                if row.9 <= self.clock.now() {
                    return Ok(Authorized::Expired);
                }
                // The id is not known here (only its digest): the row's digest stands in.
                let digest = row.0.clone();
                return self
                    .open_pending(&digest, row)
                    .map(|p| Authorized::Taken(Box::new(p)));
            }
        }
        Ok(if self.store.state_known(&state_digest).await? {
            Authorized::OtherBrowser
        } else {
            Authorized::Unknown
        })
    }

    /// Remove the pending consents that have expired; how many.
    pub async fn purge_expired(&self) -> Result<u64, VaultError> {
        self.store.purge_expired(self.clock.now()).await
    }

    fn seal(&self, context: &Context, secret: &Secret) -> Result<String, VaultError> {
        self.keys.seal(context, secret.expose().as_bytes())
    }

    /// Open a sealed value, or say which row and field did not open.
    fn unseal(
        &self,
        context: &Context,
        sealed: &str,
        row: impl FnOnce() -> String,
        field: &'static str,
    ) -> Result<Secret, VaultError> {
        self.keys
            .open(context, sealed)
            .and_then(|plain| String::from_utf8(plain).ok())
            .map(Secret::new)
            .ok_or_else(|| VaultError::Tampered { row: row(), field })
    }

    fn open_grant(&self, key: &GrantKey, row: GrantRow) -> Result<Grant, VaultError> {
        let (_, _, _, _, scopes, access, refresh, expires_at, revision, created_at, updated_at) =
            row;
        let access_token = self.unseal(
            &grant_context(key, ACCESS),
            &access,
            || key.to_string(),
            "access token",
        )?;
        let refresh_token = match refresh {
            Some(sealed) => Some(self.unseal(
                &grant_context(key, REFRESH),
                &sealed,
                || key.to_string(),
                "refresh token",
            )?),
            None => None,
        };
        Ok(Grant {
            key: key.clone(),
            scopes: split_scopes(&scopes),
            access_token,
            refresh_token,
            expires_at,
            revision,
            key_id: Keyring::key_id_of(&access).unwrap_or_default().to_string(),
            created_at,
            updated_at,
        })
    }

    fn open_pending(&self, id: &str, row: PendingRow) -> Result<PendingConsent, VaultError> {
        let (digest, issuer, user, agent, target, scopes, verifier, session_id, created, expires) =
            row;
        let mut pending = PendingConsent {
            id: id.to_string(),
            issuer,
            user,
            agent: non_empty(agent),
            target,
            scopes: split_scopes(&scopes),
            pkce_verifier: Secret::new(""),
            session_id,
            created_at: created,
            expires_at: expires,
        };
        pending.pkce_verifier = self.unseal(
            &pending_context(&digest, &pending),
            &verifier,
            || format!("the pending consent of user `{}`", pending.user),
            "PKCE verifier",
        )?;
        Ok(pending)
    }
}

const ACCESS: &str = "access";
const REFRESH: &str = "refresh";

/// A grant's token is bound to its column and to the grant's identity.
fn grant_context(key: &GrantKey, field: &str) -> Context {
    Context::new(&[
        "grant",
        field,
        &key.issuer,
        &key.user,
        key.agent_column(),
        &key.target,
    ])
}

/// A pending consent is written once, so its verifier is bound to the whole row: the id,
/// whose consent it is, and the scopes the consent page will show.
fn pending_context(digest: &str, p: &PendingConsent) -> Context {
    Context::new(&[
        "pending",
        "pkce_verifier",
        digest,
        &p.issuer,
        &p.user,
        p.agent.as_deref().unwrap_or(""),
        &p.target,
        &join_scopes(&p.scopes),
        p.session_id.as_deref().unwrap_or(""),
        &p.expires_at.to_string(),
    ])
}

/// How a consent id is stored: its SHA-256, so the file holds no working consent link. Also
/// the consent's public name where the id must not travel (the MCP `elicitationId`).
pub fn consent_digest(id: &str) -> String {
    id_digest(id)
}

fn id_digest(id: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, id.as_bytes()))
}

//! The vault's SQL, and the only code that touches the database. Values arrive here already
//! sealed. Statements keep to what SQLite and PostgreSQL both accept (`$N` binds, `ON
//! CONFLICT`, `DELETE … RETURNING`, TEXT and BIGINT), so the PostgreSQL backend is this file
//! over a `PgPool` with the same statements, and the same migrations shipped beside it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{AssertSqlSafe, FromRow, SqlSafeStr, Sqlite};

use super::VaultError;
use super::error::cause;
use super::files::{create_private_dir, create_private_file, plain_io};
use super::records::{GrantFilter, GrantKey};

/// A grant row: identity, scopes as stored, sealed tokens.
pub(super) type GrantRow = (
    String,         // issuer
    String,         // user_name
    String,         // agent ('' = none)
    String,         // target
    String,         // scopes
    String,         // access_token (sealed)
    Option<String>, // refresh_token (sealed)
    Option<i64>,    // expires_at
    i64,            // revision
    i64,            // created_at
    i64,            // updated_at
);

/// A statement with its binds.
type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

const GRANT_COLUMNS: &str = "issuer, user_name, agent, target, scopes, access_token, \
     refresh_token, expires_at, revision, created_at, updated_at";

/// A pending consent row, its PKCE verifier sealed.
pub(super) type PendingRow = (
    String,         // id_digest
    String,         // issuer
    String,         // user_name
    String,         // agent
    String,         // target
    String,         // scopes
    String,         // pkce_verifier (sealed)
    Option<String>, // session_id
    i64,            // created_at
    i64,            // expires_at
);

/// The migrations, embedded; a new file in `migrations/sqlite/` is added here too.
fn migrator() -> Migrator {
    let migration = |version, name: &str, sql: &'static str| {
        Migration::new(
            version,
            name.to_string().into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(
            1,
            "vault",
            include_str!("../../migrations/sqlite/0001_vault.sql"),
        ),
        migration(
            2,
            "consent browser",
            include_str!("../../migrations/sqlite/0002_consent_browser.sql"),
        ),
    ])
}

/// What a refresh writes into a grant: sealed tokens, stored scopes, dates.
#[derive(Debug)]
pub(super) struct TokenUpdate<'a> {
    pub access: &'a str,
    pub refresh: Option<&'a str>,
    pub expires_at: Option<i64>,
    pub scopes: Option<&'a str>,
    pub now: i64,
}

#[derive(Debug, Clone)]
pub(super) struct Store {
    pool: SqlitePool,
    path: PathBuf,
}

impl Store {
    /// Open the SQLite file at `path`, creating it (mode 0600) and its directory (0700) if
    /// absent, and bring its tables up to date.
    pub(super) async fn open(path: &Path) -> Result<Self, VaultError> {
        let shown = path.display().to_string();
        let file_error = |reason: String| VaultError::DatabaseFile {
            path: shown.clone(),
            reason,
            fix: "let the gateway's user create and write the file and its directory (SQLite \
                  writes journal files beside it), or set `data_dir` to a directory it may \
                  write"
                .into(),
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            create_private_dir(dir).map_err(|e| {
                file_error(format!(
                    "its directory {} cannot be created ({})",
                    dir.display(),
                    plain_io(&e)
                ))
            })?;
        }
        create_private_file(path).map_err(|e| file_error(plain_io(&e)))?;
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(false)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| {
                if not_a_database(&e) {
                    VaultError::DatabaseFile {
                        path: shown.clone(),
                        reason: "the file is not an SQLite database".into(),
                        fix: "point the vault at another file, or move this one away (a new, \
                              empty vault is created in its place)"
                            .into(),
                    }
                } else {
                    file_error(cause(&e))
                }
            })?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| VaultError::Migrate {
                path: shown.clone(),
                cause: e.to_string(),
            })?;
        Ok(Self {
            pool,
            path: path.to_path_buf(),
        })
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// One round trip to the database.
    pub(super) async fn ping(&self) -> Result<(), VaultError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
            .map_err(self.failed("answer a query"))
    }

    /// Close every connection; SQLite folds its write-ahead log into the file.
    pub(super) async fn close(&self) {
        self.pool.close().await;
    }

    #[cfg(test)]
    pub(super) fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    fn failed(&self, action: &'static str) -> impl FnOnce(sqlx::Error) -> VaultError + '_ {
        move |e| VaultError::Database {
            path: self.path.display().to_string(),
            action,
            cause: cause(&e),
        }
    }

    /// Every data key, oldest first: (key_id, wrapped).
    pub(super) async fn keys(&self) -> Result<Vec<(String, String)>, VaultError> {
        sqlx::query_as("SELECT key_id, wrapped FROM vault_keys ORDER BY created_at, key_id")
            .fetch_all(&self.pool)
            .await
            .map_err(self.failed("read its data keys"))
    }

    /// Store the first data key, unless another process stored one first (one statement,
    /// so two gateways opening a new vault at once end up with one key).
    pub(super) async fn insert_first_key(
        &self,
        key_id: &str,
        wrapped: &str,
        now: i64,
    ) -> Result<(), VaultError> {
        sqlx::query(
            "INSERT INTO vault_keys (key_id, wrapped, created_at) SELECT $1, $2, $3 \
             WHERE NOT EXISTS (SELECT 1 FROM vault_keys)",
        )
        .bind(key_id)
        .bind(wrapped)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(self.failed("store its first data key"))?;
        Ok(())
    }

    pub(super) async fn grant(&self, key: &GrantKey) -> Result<Option<GrantRow>, VaultError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM vault_grants \
             WHERE issuer = $1 AND user_name = $2 AND agent = $3 AND target = $4"
        );
        bind_key(sqlx::query(AssertSqlSafe(sql)), key)
            .fetch_optional(&self.pool)
            .await
            .and_then(|row| row.map(|r| GrantRow::from_row(&r)).transpose())
            .map_err(self.failed("read a grant"))
    }

    /// Insert or replace a grant in one statement; a replaced grant's revision goes on
    /// counting, and a new row starts at the row's (random) revision, not at a fixed number:
    /// a writer holding the revision of a grant that was deleted and consented again cannot
    /// overwrite the new grant.
    pub(super) async fn upsert_grant(&self, row: &GrantRow) -> Result<(), VaultError> {
        let (
            issuer,
            user,
            agent,
            target,
            scopes,
            access,
            refresh,
            expires_at,
            first,
            created,
            updated,
        ) = row;
        sqlx::query(
            "INSERT INTO vault_grants (issuer, user_name, agent, target, scopes, access_token, \
             refresh_token, expires_at, revision, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $11, $9, $10) \
             ON CONFLICT (issuer, user_name, agent, target) DO UPDATE SET \
             scopes = excluded.scopes, access_token = excluded.access_token, \
             refresh_token = excluded.refresh_token, expires_at = excluded.expires_at, \
             revision = vault_grants.revision + 1, created_at = excluded.created_at, \
             updated_at = excluded.updated_at",
        )
        .bind(issuer)
        .bind(user)
        .bind(agent)
        .bind(target)
        .bind(scopes)
        .bind(access)
        .bind(refresh)
        .bind(expires_at)
        .bind(created)
        .bind(updated)
        .bind(first)
        .execute(&self.pool)
        .await
        .map_err(self.failed("store a grant"))?;
        Ok(())
    }

    /// Replace the tokens of a grant still at `revision`, in one statement. A `None`
    /// refresh token or scopes keeps the stored one. `false`: the grant changed or is gone.
    pub(super) async fn update_tokens(
        &self,
        key: &GrantKey,
        revision: i64,
        update: &TokenUpdate<'_>,
    ) -> Result<bool, VaultError> {
        let done = bind_key(
            sqlx::query(
                "UPDATE vault_grants SET access_token = $5, \
                 refresh_token = COALESCE($6, refresh_token), expires_at = $7, \
                 scopes = COALESCE($8, scopes), revision = revision + 1, updated_at = $9 \
                 WHERE issuer = $1 AND user_name = $2 AND agent = $3 AND target = $4 \
                 AND revision = $10",
            ),
            key,
        )
        .bind(update.access)
        .bind(update.refresh)
        .bind(update.expires_at)
        .bind(update.scopes)
        .bind(update.now)
        .bind(revision)
        .execute(&self.pool)
        .await
        .map_err(self.failed("store refreshed tokens"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Delete a grant; with `revision`, only if it is still at that revision.
    pub(super) async fn delete_grant(
        &self,
        key: &GrantKey,
        revision: Option<i64>,
    ) -> Result<bool, VaultError> {
        let done = bind_key(
            sqlx::query(
                "DELETE FROM vault_grants \
                 WHERE issuer = $1 AND user_name = $2 AND agent = $3 AND target = $4 \
                 AND ($5 IS NULL OR revision = $5)",
            ),
            key,
        )
        .bind(revision)
        .execute(&self.pool)
        .await
        .map_err(self.failed("delete a grant"))?;
        Ok(done.rows_affected() == 1)
    }

    /// The grants `filter` selects, sealed tokens included (the caller keeps only their
    /// key ids), ordered for display.
    pub(super) async fn grants_matching(
        &self,
        filter: &GrantFilter,
    ) -> Result<Vec<GrantRow>, VaultError> {
        let sql = format!(
            "SELECT {GRANT_COLUMNS} FROM vault_grants WHERE {FILTER} \
             ORDER BY user_name, agent, target, issuer"
        );
        bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
            .fetch_all(&self.pool)
            .await
            .and_then(|rows| rows.iter().map(GrantRow::from_row).collect())
            .map_err(self.failed("list grants"))
    }

    pub(super) async fn delete_matching(&self, filter: &GrantFilter) -> Result<u64, VaultError> {
        let sql = format!("DELETE FROM vault_grants WHERE {FILTER}");
        let done = bind_filter(sqlx::query(AssertSqlSafe(sql)), filter)
            .execute(&self.pool)
            .await
            .map_err(self.failed("delete grants"))?;
        Ok(done.rows_affected())
    }

    pub(super) async fn insert_pending(&self, row: &PendingRow) -> Result<(), VaultError> {
        let (digest, issuer, user, agent, target, scopes, verifier, session, created, expires) =
            row;
        sqlx::query(
            "INSERT INTO vault_pending (id_digest, issuer, user_name, agent, target, scopes, \
             pkce_verifier, session_id, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(digest)
        .bind(issuer)
        .bind(user)
        .bind(agent)
        .bind(target)
        .bind(scopes)
        .bind(verifier)
        .bind(session)
        .bind(created)
        .bind(expires)
        .execute(&self.pool)
        .await
        .map_err(self.failed("store a pending consent"))?;
        Ok(())
    }

    /// A pending consent that has not expired by `now`, left in place.
    pub(super) async fn pending(
        &self,
        digest: &str,
        now: i64,
    ) -> Result<Option<PendingRow>, VaultError> {
        sqlx::query_as(
            "SELECT id_digest, issuer, user_name, agent, target, scopes, pkce_verifier, \
             session_id, created_at, expires_at FROM vault_pending \
             WHERE id_digest = $1 AND expires_at > $2",
        )
        .bind(digest)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("read a pending consent"))
    }

    /// Remove a pending consent and return it, in one statement: of two callers taking the
    /// same id, one gets it. Expired ones are removed too; the caller refuses them.
    pub(super) async fn take_pending(
        &self,
        digest: &str,
    ) -> Result<Option<PendingRow>, VaultError> {
        sqlx::query_as(
            "DELETE FROM vault_pending WHERE id_digest = $1 RETURNING id_digest, issuer, \
             user_name, agent, target, scopes, pkce_verifier, session_id, created_at, expires_at",
        )
        .bind(digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("take a pending consent"))
    }

    /// Record the authorization request of an approved pending consent (digests of its
    /// `state` and of the approving browser's cookie). False when the consent is gone.
    pub(super) async fn authorize_pending(
        &self,
        digest: &str,
        state_digest: &str,
        browser_digest: &str,
        now: i64,
    ) -> Result<bool, VaultError> {
        let done = sqlx::query(
            "UPDATE vault_pending SET state_digest = $1, browser_digest = $2 \
             WHERE id_digest = $3 AND expires_at > $4",
        )
        .bind(state_digest)
        .bind(browser_digest)
        .bind(digest)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(self.failed("record an approved consent"))?;
        Ok(done.rows_affected() == 1)
    }

    /// Take the pending consent whose authorization carried `state_digest`, only if the same
    /// browser approved it (one statement, so a state is used once).
    pub(super) async fn take_authorized(
        &self,
        state_digest: &str,
        browser_digest: &str,
    ) -> Result<Option<PendingRow>, VaultError> {
        sqlx::query_as(
            "DELETE FROM vault_pending WHERE state_digest = $1 AND browser_digest = $2 \
             RETURNING id_digest, issuer, user_name, agent, target, scopes, pkce_verifier, \
             session_id, created_at, expires_at",
        )
        .bind(state_digest)
        .bind(browser_digest)
        .fetch_optional(&self.pool)
        .await
        .map_err(self.failed("take an approved consent"))
    }

    /// Whether some pending consent's authorization carried `state_digest`.
    pub(super) async fn state_known(&self, state_digest: &str) -> Result<bool, VaultError> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT 1 FROM vault_pending WHERE state_digest = $1")
                .bind(state_digest)
                .fetch_optional(&self.pool)
                .await
                .map_err(self.failed("look up a consent's state"))?;
        Ok(row.is_some())
    }

    pub(super) async fn purge_expired(&self, now: i64) -> Result<u64, VaultError> {
        let done = sqlx::query("DELETE FROM vault_pending WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(self.failed("purge expired consents"))?;
        Ok(done.rows_affected())
    }
}

/// SQLite's SQLITE_NOTADB: the file exists but holds something else.
fn not_a_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("26"))
}

/// `$1`–`$4` of a statement that names one grant.
fn bind_key<'q>(query: Query<'q>, key: &GrantKey) -> Query<'q> {
    query
        .bind(&key.issuer)
        .bind(&key.user)
        .bind(key.agent_column())
        .bind(&key.target)
}

/// The condition a [`GrantFilter`] makes: `$1` user, then optional agent, target, issuer.
const FILTER: &str = "user_name = $1 AND ($2 IS NULL OR agent = $2) \
     AND ($3 IS NULL OR target = $3) AND ($4 IS NULL OR issuer = $4)";

fn bind_filter<'q>(query: Query<'q>, filter: &GrantFilter) -> Query<'q> {
    query
        .bind(&filter.user)
        .bind(filter.agent.as_deref())
        .bind(filter.target.as_deref())
        .bind(filter.issuer.as_deref())
}

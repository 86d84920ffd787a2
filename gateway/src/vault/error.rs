//! What can go wrong with the vault, written for the person who runs the gateway: what
//! failed, why, and what to do.

/// A vault failure. [`VaultError::Tampered`] is about one row (the caller treats that grant
/// or consent as absent and asks for consent again); the others are about the whole vault.
#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The key-encryption key cannot be read, or is not a key.
    #[error("the vault key-encryption key `{reference}` cannot be used: {reason}; fix: {fix}")]
    Kek {
        reference: String,
        reason: String,
        fix: String,
    },

    /// The key-encryption key does not open the data keys this vault was sealed with.
    #[error(
        "the vault database {path} was sealed with another key-encryption key than `{reference}`, \
         so none of its tokens can be opened; fix: {}",
        wrong_kek_fix(path, *created)
    )]
    WrongKek {
        path: String,
        reference: String,
        /// The key file was created by this start (it was missing).
        created: bool,
    },

    /// The database file cannot be created or opened.
    #[error("the vault database {path} cannot be opened: {reason}; fix: {fix}")]
    DatabaseFile {
        path: String,
        reason: String,
        fix: String,
    },

    /// The schema cannot be brought to this version's.
    #[error(
        "the vault database {path} cannot be brought up to date: {cause}; fix: if a newer \
         Portcullis wrote it, run that version; otherwise move the file away to start an empty \
         vault (users will be asked to consent again)"
    )]
    Migrate { path: String, cause: String },

    /// A read or write failed.
    #[error(
        "the vault could not {action} in {path}: {cause}; fix: check that the file is writable \
         by the gateway's user, that its disk has free space, and that no other program keeps \
         it locked"
    )]
    Database {
        path: String,
        action: &'static str,
        cause: String,
    },

    /// A sealed value does not open in its row: the row was changed outside Portcullis.
    #[error(
        "the stored {field} of {row} does not open: the row was changed outside Portcullis (for \
         example a value copied from another row or column, or the database restored apart \
         from its keys), so it is not used; fix: the user consents again, which replaces it \
         (or revoke it with `portcullis vault revoke`); if many rows fail, restore the \
         database and its key-encryption key from the same backup"
    )]
    Tampered { row: String, field: &'static str },

    /// The system's random number generator or cipher failed (practically never).
    #[error(
        "the vault's encryption failed: the system's random number generator is unavailable; \
         fix: this is not a configuration problem: retry, and report it if it persists"
    )]
    Crypto,
}

impl VaultError {
    /// The row is unusable (changed outside Portcullis); everything else still works.
    pub fn is_tampered(&self) -> bool {
        matches!(self, Self::Tampered { .. })
    }
}

fn wrong_kek_fix(path: &str, created: bool) -> String {
    if created {
        "the key file was missing and a new key was created just now: put the original key \
         file back in its place (the new one can be deleted)"
            .into()
    } else {
        format!(
            "give the gateway the key this vault was created with; if that key is lost, so are \
             the tokens: move {path} away and users will be asked to consent again"
        )
    }
}

/// A database error in plain words: SQLite's own message, or the I/O cause.
pub(super) fn cause(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_string(),
        sqlx::Error::Io(io) => super::files::plain_io(io),
        sqlx::Error::PoolTimedOut => "no database connection became free in time".into(),
        sqlx::Error::PoolClosed => "the vault was closed".into(),
        sqlx::Error::RowNotFound => "a row was missing".into(),
        sqlx::Error::ColumnNotFound(c) => format!("column `{c}` is missing"),
        sqlx::Error::ColumnDecode { index, .. } => {
            format!("column {index} holds a value of the wrong type")
        }
        other => other.to_string(),
    }
}

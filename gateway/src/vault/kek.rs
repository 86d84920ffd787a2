//! The key-encryption key (KEK): 32 random bytes, written as base64, that wrap the vault's
//! data keys. It comes from `file:PATH` (created, mode 0600, when it does not exist yet) or
//! from `env:NAME`. A key file that other users can read is refused: whoever reads it can
//! open every token in the vault.

use std::fmt;
use std::path::Path;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::alphabet::{self, Alphabet};
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};

use super::VaultError;
use super::files::{create_private_dir, plain_io, write_private};
use crate::config::SecretRef;

pub(super) const KEY_LEN: usize = 32;

/// The key-encryption key. `Debug` names where it came from, never the key.
pub struct Kek {
    pub(super) key: [u8; KEY_LEN],
    /// `file:PATH` or `env:NAME`, for messages.
    pub(super) reference: String,
    /// The key file was created by this load (so an existing vault cannot open with it).
    pub(super) created: bool,
}

impl fmt::Debug for Kek {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kek")
            .field("reference", &self.reference)
            .field("key", &"[redacted]")
            .finish()
    }
}

/// How to make a key by hand, for the `fix:` lines.
const MAKE_ONE: &str = "`openssl rand -base64 32`";

impl Kek {
    /// Read the key that `reference` names. A relative `file:` path is relative to `base`.
    /// A missing key file is created (with its directory) holding a new random key.
    pub fn load(reference: &SecretRef, base: &Path) -> Result<Self, VaultError> {
        match reference {
            SecretRef::Env(name) => {
                let shown = format!("env:{name}");
                let text = std::env::var(name).map_err(|_| VaultError::Kek {
                    reference: shown.clone(),
                    reason: format!("environment variable `{name}` is not set"),
                    fix: format!(
                        "set `{name}` to 32 random bytes written as base64 (make them with {MAKE_ONE}) \
                         in the environment the gateway starts in"
                    ),
                })?;
                Self::from_base64(&text, shown)
            }
            SecretRef::File(path) => load_file(&base.join(path)),
        }
    }

    /// A key given as base64 text (standard or URL-safe alphabet, padding optional).
    pub fn from_base64(text: &str, reference: impl Into<String>) -> Result<Self, VaultError> {
        let reference = reference.into();
        let text = text.trim();
        let decoded = lenient(&alphabet::STANDARD)
            .decode(text)
            .or_else(|_| lenient(&alphabet::URL_SAFE).decode(text));
        let fix = format!(
            "put 32 random bytes written as base64 there (make them with {MAKE_ONE}); \
             if a vault was already sealed with a key, restore that key instead"
        );
        let bytes = decoded.map_err(|_| VaultError::Kek {
            reference: reference.clone(),
            reason: "it is not base64 text".into(),
            fix: fix.clone(),
        })?;
        let key: [u8; KEY_LEN] = bytes.try_into().map_err(|b: Vec<u8>| VaultError::Kek {
            reference: reference.clone(),
            reason: format!("it holds {} bytes, and a key is {KEY_LEN}", b.len()),
            fix,
        })?;
        Ok(Self {
            key,
            reference,
            created: false,
        })
    }

    /// A key from its bytes (tests, and key services that hand over raw bytes).
    pub fn from_bytes(key: [u8; KEY_LEN], reference: impl Into<String>) -> Self {
        Self {
            key,
            reference: reference.into(),
            created: false,
        }
    }

    /// `file:PATH` or `env:NAME`.
    pub fn reference(&self) -> &str {
        &self.reference
    }
}

/// Decoding that accepts the key with or without `=` padding.
fn lenient(alphabet: &Alphabet) -> GeneralPurpose {
    let config = GeneralPurposeConfig::new()
        .with_encode_padding(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(alphabet, config)
}

fn load_file(path: &Path) -> Result<Kek, VaultError> {
    let reference = format!("file:{}", path.display());
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut kek = create_file(path, &reference)?;
            kek.created = true;
            return Ok(kek);
        }
        Err(e) => {
            return Err(VaultError::Kek {
                reference,
                reason: plain_io(&e),
                fix: "let the gateway's user read the key file (and no one else: `chmod 600`), \
                      or correct the path"
                    .into(),
            });
        }
    };
    check_private(path, &reference)?;
    Kek::from_base64(&text, reference)
}

fn create_file(path: &Path, reference: &str) -> Result<Kek, VaultError> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| VaultError::Crypto)?;
    let cannot = |e: std::io::Error, what: &Path| VaultError::Kek {
        reference: reference.to_string(),
        reason: format!(
            "it does not exist and cannot be created ({}: {})",
            what.display(),
            plain_io(&e)
        ),
        fix: "make the directory writable by the gateway's user, or create the key yourself \
              (32 random bytes as base64, mode 0600)"
            .into(),
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        create_private_dir(dir).map_err(|e| cannot(e, dir))?;
    }
    let text = format!("{}\n", STANDARD.encode(key));
    write_private(path, text.as_bytes()).map_err(|e| cannot(e, path))?;
    tracing::info!(
        target: "portcullis::vault",
        "created the vault key-encryption key {}: back it up; without it the vault cannot be opened",
        path.display()
    );
    Ok(Kek::from_bytes(key, reference))
}

/// Refuse a key file that users other than its owner may read or write.
#[cfg(unix)]
fn check_private(path: &Path, reference: &str) -> Result<(), VaultError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| VaultError::Kek {
            reference: reference.to_string(),
            reason: plain_io(&e),
            fix: "correct the path".into(),
        })?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(VaultError::Kek {
            reference: reference.to_string(),
            reason: format!(
                "other users may read or change it (its mode is {:o})",
                mode & 0o777
            ),
            fix: format!("`chmod 600 {}`", path.display()),
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_path: &Path, _reference: &str) -> Result<(), VaultError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file_ref(path: &Path) -> SecretRef {
        SecretRef::File(path.to_path_buf())
    }

    #[cfg(unix)]
    #[test]
    fn a_missing_key_file_is_created_private_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/vault.key");
        let first = Kek::load(&file_ref(&path), dir.path()).unwrap();
        assert!(first.created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Kek::load(&file_ref(&path), dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(first.key, again.key);
        assert!(!format!("{again:?}").contains(&STANDARD.encode(again.key)));
    }

    #[cfg(unix)]
    #[test]
    fn a_key_file_others_can_read_is_refused_with_the_fix() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.key");
        std::fs::write(&path, format!("{}\n", STANDARD.encode([7u8; 32]))).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Kek::load(&file_ref(&path), dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("other users may read or change it (its mode is 644)"),
            "{err}"
        );
        assert!(
            err.contains(&format!("fix: `chmod 600 {}`", path.display())),
            "{err}"
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(
            Kek::load(&file_ref(&path), dir.path()).unwrap().key,
            [7u8; 32]
        );
    }

    #[test]
    fn a_key_of_the_wrong_length_or_not_base64_is_refused() {
        let short = Kek::from_base64(&STANDARD.encode([1u8; 16]), "env:K").unwrap_err();
        let short = short.to_string();
        assert!(
            short.contains("`env:K`") && short.contains("holds 16 bytes"),
            "{short}"
        );
        let junk = Kek::from_base64("not base64 !!", "env:K")
            .unwrap_err()
            .to_string();
        assert!(
            junk.contains("not base64") && junk.contains("openssl rand"),
            "{junk}"
        );
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode([0xfbu8; 32]);
        assert_eq!(
            Kek::from_base64(&url_safe, "env:K").unwrap().key,
            [0xfb; 32]
        );
    }

    #[test]
    fn an_unset_environment_variable_names_itself_and_the_fix() {
        let reference = SecretRef::Env("PORTCULLIS_TEST_VAULT_KEY_SURELY_UNSET".into());
        let err = Kek::load(&reference, Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`PORTCULLIS_TEST_VAULT_KEY_SURELY_UNSET` is not set"),
            "{err}"
        );
        assert!(
            err.contains("fix: set `PORTCULLIS_TEST_VAULT_KEY_SURELY_UNSET`"),
            "{err}"
        );
    }
}

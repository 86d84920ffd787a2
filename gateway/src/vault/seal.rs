//! Sealing: AES-256-GCM from aws-lc-rs, with a random 96-bit nonce per value (drawn by
//! aws-lc-rs itself). Two layers, as envelope encryption goes: the key-encryption key
//! ([`Kek`]) wraps random data keys, stored wrapped in `vault_keys`; data keys seal values.
//!
//! The associated data of every seal is a [`Context`]: what the value is and the identity of
//! the row it belongs to, each part length-prefixed so no two identities encode alike. A
//! sealed value therefore opens only in its own row and column: copied onto another user's
//! row, or from the access column into the refresh column, it fails to open.
//!
//! A sealed value is text, `KEYID.BASE64URL(nonce ‖ ciphertext ‖ tag)`: it names the data key
//! that sealed it, so keys can be rotated while older values still open.

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::aead::{AES_256_GCM, Aad, NONCE_LEN, Nonce, RandomizedNonceKey};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::VaultError;
use super::kek::{KEY_LEN, Kek};

const TAG_LEN: usize = 16;

/// The associated data of one sealed value: length-prefixed parts, the first naming what is
/// sealed (e.g. `grant`, `access`), the rest the identity of its row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Context(Vec<u8>);

impl Context {
    pub(super) fn new(parts: &[&str]) -> Self {
        let mut out = b"portcullis-vault/1".to_vec();
        for part in parts {
            // A part longer than 4 GiB cannot reach here (rows are far smaller); saturate
            // rather than wrap so that even then two encodings cannot collide silently.
            let len = u32::try_from(part.len()).unwrap_or(u32::MAX);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
        Self(out)
    }
}

/// A new data key and its id.
pub(super) fn new_data_key() -> Result<(String, [u8; KEY_LEN]), VaultError> {
    let rng = SystemRandom::new();
    let mut key = [0u8; KEY_LEN];
    let mut id = [0u8; 9];
    rng.fill(&mut key).map_err(|_| VaultError::Crypto)?;
    rng.fill(&mut id).map_err(|_| VaultError::Crypto)?;
    Ok((URL_SAFE_NO_PAD.encode(id), key))
}

fn wrap_context(key_id: &str) -> Context {
    Context::new(&["data-key", key_id])
}

/// Seal a data key under the key-encryption key, bound to its id.
pub(super) fn wrap(
    kek: &Kek,
    key_id: &str,
    data_key: &[u8; KEY_LEN],
) -> Result<String, VaultError> {
    let sealer = aead_key(&kek.key)?;
    seal_with(&sealer, &wrap_context(key_id), data_key)
}

/// Open a wrapped data key; `None` when this key-encryption key did not wrap it.
pub(super) fn unwrap(kek: &Kek, key_id: &str, wrapped: &str) -> Option<[u8; KEY_LEN]> {
    let sealer = aead_key(&kek.key).ok()?;
    open_with(&sealer, &wrap_context(key_id), wrapped)?
        .try_into()
        .ok()
}

/// The unwrapped data keys of one vault. `current` seals new values; any of them opens.
pub(super) struct Keyring {
    keys: HashMap<String, RandomizedNonceKey>,
    current: String,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field("key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("current", &self.current)
            .finish()
    }
}

impl Keyring {
    /// `keys` are (id, key) pairs; the last one is the current key.
    pub(super) fn new(keys: Vec<(String, [u8; KEY_LEN])>) -> Result<Self, VaultError> {
        let current = keys.last().map(|(id, _)| id.clone()).unwrap_or_default();
        let keys = keys
            .into_iter()
            .map(|(id, bytes)| Ok((id, aead_key(&bytes)?)))
            .collect::<Result<HashMap<_, _>, VaultError>>()?;
        if !keys.contains_key(&current) {
            return Err(VaultError::Crypto);
        }
        Ok(Self { keys, current })
    }

    /// Seal `plaintext` under the current data key, bound to `context`.
    pub(super) fn seal(&self, context: &Context, plaintext: &[u8]) -> Result<String, VaultError> {
        let key = self.keys.get(&self.current).ok_or(VaultError::Crypto)?;
        Ok(format!(
            "{}.{}",
            self.current,
            seal_with(key, context, plaintext)?
        ))
    }

    /// Open a sealed value; `None` when it was not sealed by one of these keys for exactly
    /// this `context` (changed, moved to another row or column, or from another vault).
    pub(super) fn open(&self, context: &Context, sealed: &str) -> Option<Vec<u8>> {
        let (key_id, body) = sealed.split_once('.')?;
        open_with(self.keys.get(key_id)?, context, body)
    }

    /// The id of the key that sealed `sealed`, if it names one.
    pub(super) fn key_id_of(sealed: &str) -> Option<&str> {
        sealed.split_once('.').map(|(id, _)| id)
    }
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> Result<RandomizedNonceKey, VaultError> {
    // Only fails for a key of the wrong length, which the type rules out.
    RandomizedNonceKey::new(&AES_256_GCM, bytes).map_err(|_| VaultError::Crypto)
}

fn seal_with(
    key: &RandomizedNonceKey,
    context: &Context,
    plaintext: &[u8],
) -> Result<String, VaultError> {
    let mut in_out = plaintext.to_vec();
    let nonce = key
        .seal_in_place_append_tag(Aad::from(&context.0), &mut in_out)
        .map_err(|_| VaultError::Crypto)?;
    let mut out = Vec::with_capacity(NONCE_LEN + in_out.len());
    out.extend_from_slice(nonce.as_ref());
    out.extend_from_slice(&in_out);
    Ok(URL_SAFE_NO_PAD.encode(out))
}

fn open_with(key: &RandomizedNonceKey, context: &Context, body: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(body).ok()?;
    if bytes.len() < NONCE_LEN + TAG_LEN {
        return None;
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut in_out = sealed.to_vec();
    let plain = key
        .open_in_place(nonce, Aad::from(&context.0), &mut in_out)
        .ok()?;
    Some(plain.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> Keyring {
        let (id, key) = new_data_key().unwrap();
        Keyring::new(vec![(id, key)]).unwrap()
    }

    #[test]
    fn a_value_opens_only_in_its_own_context() {
        let ring = keyring();
        let here = Context::new(&["grant", "access", "iss", "alice", "", "github"]);
        let sealed = ring.seal(&here, b"gho_token").unwrap();
        assert_eq!(ring.open(&here, &sealed).unwrap(), b"gho_token");
        for other in [
            Context::new(&["grant", "refresh", "iss", "alice", "", "github"]),
            Context::new(&["grant", "access", "iss", "mallory", "", "github"]),
            // Moving bytes between parts must not give the same encoding.
            Context::new(&["grant", "access", "iss", "alic", "e", "github"]),
        ] {
            assert_eq!(ring.open(&other, &sealed), None);
        }
        assert_ne!(
            sealed,
            ring.seal(&here, b"gho_token").unwrap(),
            "nonces repeat"
        );
    }

    #[test]
    fn a_changed_or_foreign_value_does_not_open() {
        let ring = keyring();
        let here = Context::new(&["x"]);
        let sealed = ring.seal(&here, b"secret").unwrap();
        let (id, body) = sealed.split_once('.').unwrap();
        let mut bytes = URL_SAFE_NO_PAD.decode(body).unwrap();
        bytes[NONCE_LEN] ^= 1;
        let flipped = format!("{id}.{}", URL_SAFE_NO_PAD.encode(bytes));
        assert_eq!(ring.open(&here, &flipped), None);
        assert_eq!(keyring().open(&here, &sealed), None, "another vault's key");
        assert_eq!(ring.open(&here, "no-dot"), None);
        assert_eq!(ring.open(&here, &format!("{id}.AAAA")), None);
        assert_eq!(Keyring::key_id_of(&sealed), Some(id));
    }

    #[test]
    fn a_data_key_unwraps_only_with_its_kek_and_id() {
        let kek = Kek::from_bytes([1; 32], "test");
        let (id, key) = new_data_key().unwrap();
        let wrapped = wrap(&kek, &id, &key).unwrap();
        assert_eq!(unwrap(&kek, &id, &wrapped), Some(key));
        assert_eq!(unwrap(&kek, "other-id", &wrapped), None);
        assert_eq!(unwrap(&Kek::from_bytes([2; 32], "x"), &id, &wrapped), None);
    }
}

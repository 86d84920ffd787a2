//! The dev IdP's memory: registered clients, pending logins, authorization codes and refresh
//! tokens, each in a bounded map whose entries expire (codes and refresh tokens together
//! under one lock, in `ledger`). Nothing is written to disk, so a restart forgets all of it
//! (clients register again; people log in again).
//!
//! Secrets handed out (codes, refresh tokens, form tokens) are kept only as their SHA-256,
//! so a memory dump does not yield a usable one.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A fresh unguessable token: 256 random bits, base64url.
pub fn random_token() -> Result<String, Unavailable> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| Unavailable)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// The system's random number generator failed (it practically never does).
#[derive(Debug, Clone, Copy)]
pub struct Unavailable;

/// The key under which a secret is stored.
pub fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

/// A map with a capacity and a lifetime per entry. When full, expired entries go first,
/// then the one closest to expiry: memory stays bounded whatever callers do. It has no lock
/// of its own, so several of them can sit under one (see `ledger`); [`Expiring`] is one
/// behind its own lock.
#[derive(Debug)]
pub struct Entries<K, V> {
    entries: HashMap<K, (Instant, V)>,
    capacity: usize,
    ttl: Duration,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Entries<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity,
            ttl,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    pub fn insert(&mut self, key: K, value: V) {
        let now = Instant::now();
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (expires, _)| *expires > now);
        }
        if self.entries.len() >= self.capacity
            && let Some(oldest) = self
                .entries
                .iter()
                .min_by_key(|(_, (e, _))| *e)
                .map(|(k, _)| k.clone())
        {
            self.entries.remove(&oldest);
        }
        self.entries.insert(key, (now + self.ttl, value));
    }

    /// The live entry, left in place.
    pub fn get(&self, key: &K) -> Option<&V> {
        self.entries
            .get(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v)
    }

    /// The live entry, removed.
    pub fn take(&mut self, key: &K) -> Option<V> {
        self.entries
            .remove(key)
            .filter(|(expires, _)| *expires > Instant::now())
            .map(|(_, v)| v)
    }

    /// Remove every live entry `doomed` selects, and return their keys and values.
    pub fn take_where(&mut self, doomed: impl Fn(&V) -> bool) -> Vec<(K, V)> {
        let now = Instant::now();
        let keys: Vec<K> = self
            .entries
            .iter()
            .filter(|(_, (expires, v))| *expires > now && doomed(v))
            .map(|(k, _)| k.clone())
            .collect();
        keys.into_iter()
            .filter_map(|k| self.entries.remove(&k).map(|(_, v)| (k, v)))
            .collect()
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.entries.len()
    }
}

/// [`Entries`] behind a lock of its own: for state whose operations each touch one map.
#[derive(Debug)]
pub struct Expiring<K, V> {
    inner: Mutex<Entries<K, V>>,
}

impl<K: std::hash::Hash + Eq + Clone, V: Clone> Expiring<K, V> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            inner: Mutex::new(Entries::new(capacity, ttl)),
        }
    }

    pub fn ttl(&self) -> Duration {
        self.lock().ttl()
    }

    pub fn insert(&self, key: K, value: V) {
        self.lock().insert(key, value);
    }

    /// The live entry, left in place.
    pub fn get(&self, key: &K) -> Option<V> {
        self.lock().get(key).cloned()
    }

    /// The live entry, removed: whoever takes it first is the only one to get it.
    pub fn take(&self, key: &K) -> Option<V> {
        self.lock().take(key)
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.lock().count()
    }

    /// Each operation on the map is one `HashMap` call that leaves it whole, so a panic
    /// elsewhere while the lock is held cannot corrupt it: the lock does not poison.
    fn lock(&self) -> parking_lot::MutexGuard<'_, Entries<K, V>> {
        self.inner.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacity_is_a_hard_bound() {
        let m = Expiring::new(3, Duration::from_secs(60));
        for i in 0..10 {
            m.insert(i, i);
        }
        assert_eq!(m.count(), 3);
        assert_eq!(m.get(&9), Some(9), "the newest entry is kept");
    }

    #[test]
    fn take_is_single_use_and_expired_entries_are_gone() {
        let m = Expiring::new(10, Duration::from_secs(60));
        m.insert("a", 1);
        assert_eq!(m.take(&"a"), Some(1));
        assert_eq!(m.take(&"a"), None);
        let short = Expiring::new(10, Duration::ZERO);
        short.insert("b", 2);
        assert_eq!(short.get(&"b"), None);
    }

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let a = random_token().unwrap();
        assert_ne!(a, random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_eq!(digest(&a), digest(&a));
    }
}

//! An issuer's signing keys: discovered (`/.well-known/openid-configuration`, else
//! `/.well-known/oauth-authorization-server`), fetched from `jwks_uri`, cached for the
//! `Cache-Control: max-age` the IdP gives (bounded), refetched on an unknown `kid` at most
//! once per `jwks_refetch_interval` (single-flight, so a flood of random kids costs the IdP
//! one request per interval), and kept while the IdP is down: the last good set serves on.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use parking_lot::{Mutex, RwLock};
use url::Url;

use crate::config::IssuerSpec;

const DEFAULT_TTL: Duration = Duration::from_secs(300);
const MIN_TTL: Duration = Duration::from_secs(60);
const MAX_TTL: Duration = Duration::from_secs(3600);
use crate::auth_server::MAX_DOCUMENT_BYTES;

#[derive(Debug)]
pub struct KeySource {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    /// Keys known in-process (the dev IdP).
    Local(JwkSet),
    Remote(Arc<Remote>),
}

#[derive(Debug)]
struct Remote {
    issuer: String,
    jwks_uri: Option<Url>,
    http: reqwest::Client,
    refetch_interval: Duration,
    keys: RwLock<Option<Cached>>,
    fetch: tokio::sync::Mutex<()>,
    last_unknown_kid_fetch: Mutex<Option<Instant>>,
    last_error: Mutex<Option<String>>,
    /// When the last fetch failed: requests queued behind a failing fetch do not each retry
    /// (each could wait for the full HTTP timeout while the IdP is down).
    last_failure: Mutex<Option<Instant>>,
    /// A background TTL refresh is running.
    refreshing: AtomicBool,
}

/// After a failed fetch, further fetches wait this long.
const FAILURE_BACKOFF: Duration = Duration::from_secs(5);

#[derive(Debug, Clone)]
struct Cached {
    set: Arc<JwkSet>,
    fetched: Instant,
    ttl: Duration,
}

/// Why no key could be found for a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    UnknownKid(String),
    NoKid,
    Unavailable(String),
}

/// Whether keys were ever obtained, for `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyStatus {
    Ready,
    NeverReached(String),
}

impl KeySource {
    pub fn local(set: JwkSet) -> Self {
        Self {
            kind: Kind::Local(set),
        }
    }

    pub fn remote(spec: &IssuerSpec, http: reqwest::Client) -> Self {
        Self {
            kind: Kind::Remote(Arc::new(Remote {
                issuer: spec.issuer.clone(),
                jwks_uri: spec.jwks_uri.clone(),
                http,
                refetch_interval: spec.jwks_refetch_interval,
                keys: RwLock::new(None),
                fetch: tokio::sync::Mutex::new(()),
                last_unknown_kid_fetch: Mutex::new(None),
                last_error: Mutex::new(None),
                last_failure: Mutex::new(None),
                refreshing: AtomicBool::new(false),
            })),
        }
    }

    pub fn status(&self) -> KeyStatus {
        match &self.kind {
            Kind::Local(_) => KeyStatus::Ready,
            Kind::Remote(r) => match r.current() {
                Some(_) => KeyStatus::Ready,
                None => KeyStatus::NeverReached(
                    r.last_error
                        .lock()
                        .clone()
                        .unwrap_or_else(|| "not fetched yet".into()),
                ),
            },
        }
    }

    /// Fetch now (startup).
    pub async fn refresh(&self) -> Result<(), String> {
        match &self.kind {
            Kind::Local(_) => Ok(()),
            Kind::Remote(r) => r.fetch_single_flight(None).await.map(|_| ()),
        }
    }

    /// The key that should have signed a token with this header.
    pub async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, KeyError> {
        let remote = match &self.kind {
            Kind::Local(set) => return pick(set, kid, alg),
            Kind::Remote(r) => r,
        };
        let set = match remote.current() {
            Some(c) => {
                // Stale keys keep serving while a background task refreshes them, so no
                // request waits on the IdP (which may be slow or down) for a known key.
                if c.fetched.elapsed() >= c.ttl {
                    refresh_in_background(remote, c.fetched);
                }
                c.set
            }
            None => remote
                .fetch_single_flight(None)
                .await
                .map_err(KeyError::Unavailable)?,
        };
        match pick(&set, kid, alg) {
            Err(KeyError::UnknownKid(k)) if remote.may_refetch_for_unknown_kid() => {
                let seen = remote.current().map(|c| c.fetched);
                let set = remote
                    .fetch_single_flight(seen)
                    .await
                    .map_err(|_| KeyError::UnknownKid(k.clone()))?;
                pick(&set, kid, alg)
            }
            other => other,
        }
    }
}

fn refresh_in_background(remote: &Arc<Remote>, seen: Instant) {
    if remote.refreshing.swap(true, Ordering::AcqRel) {
        return; // one refresh at a time
    }
    let remote = remote.clone();
    tokio::spawn(async move {
        let _ = remote.fetch_single_flight(Some(seen)).await;
        remote.refreshing.store(false, Ordering::Release);
    });
}

/// Find the key by `kid`; without a `kid`, the only key that fits the algorithm.
fn pick(set: &JwkSet, kid: Option<&str>, alg: Algorithm) -> Result<Jwk, KeyError> {
    match kid {
        Some(kid) => set
            .find(kid)
            .cloned()
            .ok_or_else(|| KeyError::UnknownKid(kid.to_string())),
        None => {
            let fits: Vec<&Jwk> = set
                .keys
                .iter()
                .filter(|k| jsonwebtoken::DecodingKey::from_jwk(k).is_ok())
                .filter(|k| {
                    k.common
                        .key_algorithm
                        .is_none_or(|ka| Algorithm::try_from(ka).ok() == Some(alg))
                })
                .collect();
            match fits.as_slice() {
                [only] => Ok((*only).clone()),
                _ => Err(KeyError::NoKid),
            }
        }
    }
}

impl Remote {
    fn current(&self) -> Option<Cached> {
        self.keys.read().clone()
    }

    fn may_refetch_for_unknown_kid(&self) -> bool {
        let mut last = self.last_unknown_kid_fetch.lock();
        let allowed = last.is_none_or(|t| t.elapsed() >= self.refetch_interval);
        if allowed {
            *last = Some(Instant::now());
        }
        allowed
    }

    /// Fetch unless another task fetched since `seen` while we waited for the lock.
    async fn fetch_single_flight(&self, seen: Option<Instant>) -> Result<Arc<JwkSet>, String> {
        let _flight = self.fetch.lock().await;
        if let Some(c) = self.current()
            && seen.is_none_or(|s| c.fetched > s)
        {
            return Ok(c.set);
        }
        let recently_failed = self
            .last_failure
            .lock()
            .is_some_and(|t| t.elapsed() < FAILURE_BACKOFF);
        if recently_failed {
            let why = self.last_error.lock().clone().unwrap_or_default();
            return Err(format!(
                "{why} (not retried for {}s)",
                FAILURE_BACKOFF.as_secs()
            ));
        }
        match self.fetch().await {
            Ok((set, ttl)) => {
                let set = Arc::new(set);
                *self.keys.write() = Some(Cached {
                    set: set.clone(),
                    fetched: Instant::now(),
                    ttl,
                });
                *self.last_error.lock() = None;
                *self.last_failure.lock() = None;
                Ok(set)
            }
            Err(e) => {
                tracing::warn!(target: "portcullis::inbound", issuer = %self.issuer, "cannot fetch signing keys: {e}");
                *self.last_error.lock() = Some(e.clone());
                *self.last_failure.lock() = Some(Instant::now());
                Err(e)
            }
        }
    }

    async fn fetch(&self) -> Result<(JwkSet, Duration), String> {
        let jwks_uri = match &self.jwks_uri {
            Some(u) => u.clone(),
            None => self.discover().await?,
        };
        let (body, ttl) = get(&self.http, jwks_uri.as_str()).await?;
        let set: JwkSet = serde_json::from_slice(&body)
            .map_err(|e| format!("{jwks_uri} is not a JWK set: {e}"))?;
        Ok((set, ttl))
    }

    /// OpenID discovery, then RFC 8414; the document's `issuer` must match exactly.
    /// The `jwks_uri` from the issuer's metadata, whose `issuer` must match exactly.
    async fn discover(&self) -> Result<Url, String> {
        let (url, doc) = crate::auth_server::discover(&self.http, &self.issuer).await?;
        if doc["issuer"].as_str() != Some(self.issuer.as_str()) {
            return Err(format!(
                "{url} names issuer {} but the configured issuer is {}; set `issuer` exactly as the IdP writes it",
                doc["issuer"], self.issuer
            ));
        }
        let jwks = doc["jwks_uri"]
            .as_str()
            .ok_or_else(|| format!("{url} has no jwks_uri"))?;
        Url::parse(jwks).map_err(|e| format!("jwks_uri {jwks}: {e}"))
    }
}

async fn get(http: &reqwest::Client, url: &str) -> Result<(Vec<u8>, Duration), String> {
    let resp = http
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("GET {url}: HTTP {}", resp.status()));
    }
    let ttl = resp
        .headers()
        .get(http::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .and_then(max_age)
        .map_or(DEFAULT_TTL, |t| t.clamp(MIN_TTL, MAX_TTL));
    let body = crate::auth_server::read_limited(resp, MAX_DOCUMENT_BYTES)
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    Ok((body, ttl))
}

fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control
        .split(',')
        .filter_map(|d| d.trim().strip_prefix("max-age="))
        .find_map(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_and_bounded() {
        assert_eq!(
            max_age("public, max-age=120"),
            Some(Duration::from_secs(120))
        );
        assert_eq!(max_age("no-store"), None);
        assert_eq!(Duration::from_secs(5).clamp(MIN_TTL, MAX_TTL), MIN_TTL);
    }
}

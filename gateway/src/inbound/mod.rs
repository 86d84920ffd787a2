//! Inbound authentication: every request to `/mcp` carries a bearer JWT from a trusted
//! issuer, or is refused with the RFC 6750 / MCP challenge that tells the client how to log
//! in (protected resource metadata, RFC 9728).
//!
//! `jwks` keeps each issuer's keys; `verify` checks one token into a [`Caller`]; `layer` is
//! the axum middleware; `prm` serves the metadata; `dev_idp` is the built-in development
//! issuer.

pub mod dev_idp;
mod jwks;
pub mod layer;
pub mod prm;
pub mod sessions;
mod verify;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::SystemTime;

use http::StatusCode;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};

use crate::config::{InboundMode, IssuerSpec, ServerSettings, Snapshot};
use crate::identity::Caller;
pub use jwks::{KeyError, KeySource, KeyStatus};
pub use verify::{Issuer, caller_from};

/// Longest token accepted. Real access tokens are a few KB; larger ones are refused before
/// any parsing, so a 100 KB header cannot cost more than a length check.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
const CACHE_ENTRIES: usize = 10_000;

/// Why a request was refused, shaped as the challenge the client receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    pub status: StatusCode,
    /// RFC 6750 error code; `None` when no credentials were presented at all.
    pub error: Option<&'static str>,
    pub description: Option<String>,
    /// Scopes to ask for (space-separated).
    pub scope: Option<String>,
}

impl Rejection {
    pub fn missing() -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: None,
            description: None,
            scope: None,
        }
    }
    pub fn invalid(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::UNAUTHORIZED,
            error: Some("invalid_token"),
            description: Some(description.into()),
            scope: None,
        }
    }
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            error: Some("invalid_request"),
            description: Some(description.into()),
            scope: None,
        }
    }
    /// Another user's session id: answered as an unknown session (MCP: 404), which also
    /// does not confirm that the session exists.
    pub fn foreign_session() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            error: None,
            description: Some(
                "no such session for this user; start a new session with initialize".into(),
            ),
            scope: None,
        }
    }
    /// The token may be fine but cannot be checked now (the issuer's keys are unreachable).
    pub fn unavailable(description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: None,
            description: Some(description.into()),
            scope: None,
        }
    }
    pub fn insufficient_scope(needed: &[String], description: impl Into<String>) -> Self {
        Self {
            status: StatusCode::FORBIDDEN,
            error: Some("insufficient_scope"),
            description: Some(description.into()),
            scope: Some(needed.join(" ")),
        }
    }
}

/// Everything needed to turn a bearer token into a [`Caller`]; built once per snapshot.
#[derive(Debug)]
pub struct Authenticator {
    issuers: Vec<Arc<Issuer>>,
    /// `{public_url}/.well-known/oauth-protected-resource/mcp`, named in every challenge.
    pub resource_metadata: String,
    /// The canonical MCP URL (RFC 8707 resource).
    pub resource: String,
    /// Verified tokens by SHA-256, until they expire: skips repeated signature checks.
    cache: Mutex<HashMap<[u8; 32], Caller>>,
    /// The development identity provider, when `[dev_idp]` is on: its keys verify tokens
    /// here, and it serves its own endpoints under `/dev-idp/`.
    pub dev_idp: Option<Arc<dev_idp::DevIdp>>,
}

impl Authenticator {
    /// Build from the snapshot; `None` when inbound authentication is off.
    pub fn new(snapshot: &Snapshot, http: reqwest::Client) -> Result<Option<Self>, String> {
        let InboundMode::Jwt { issuers } = &snapshot.inbound.mode else {
            return Ok(None);
        };
        let server = &snapshot.server;
        let mut built: Vec<Arc<Issuer>> = issuers
            .iter()
            .map(|spec| {
                Arc::new(Issuer::new(
                    with_default_audience(spec, server),
                    KeySource::remote(spec, http.clone()),
                ))
            })
            .collect();
        let mut dev = None;
        if let Some(settings) = &snapshot.inbound.dev_idp {
            let key = dev_idp::DevKey::load_or_create(&settings.key_file)?;
            let spec = dev_idp::issuer_spec(server);
            built.push(Arc::new(Issuer::new(spec, KeySource::local(key.jwks()))));
            dev = Some(Arc::new(dev_idp::DevIdp::new(key, server, settings)));
        }
        Ok(Some(Self {
            issuers: built,
            resource_metadata: prm::metadata_url(server),
            resource: server.mcp_url(),
            cache: Mutex::new(HashMap::new()),
            dev_idp: dev,
        }))
    }

    pub fn issuers(&self) -> &[Arc<Issuer>] {
        &self.issuers
    }

    /// The scopes every issuer requires (advertised in the metadata and challenges).
    pub fn required_scopes(&self) -> Vec<String> {
        let mut all: Vec<String> = self
            .issuers
            .iter()
            .flat_map(|i| i.spec.required_scopes.clone())
            .collect();
        all.sort();
        all.dedup();
        all
    }

    /// Fetch every remote issuer's keys now (startup); returns the issuers not reached.
    pub async fn warm_up(&self) -> Vec<(String, String)> {
        let results =
            futures::future::join_all(self.issuers.iter().map(|i| i.keys.refresh())).await;
        self.issuers
            .iter()
            .zip(results)
            .filter_map(|(i, r)| r.err().map(|e| (i.spec.issuer.clone(), e)))
            .collect()
    }

    /// Verify a bearer token.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, Rejection> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Rejection::invalid(format!(
                "token is larger than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        match self.cached(&digest) {
            Some(hit) => Ok(hit),
            None => {
                let caller = verify::verify(&self.issuers, token).await?;
                self.remember(digest, &caller);
                Ok(caller)
            }
        }
    }

    fn cached(&self, digest: &[u8; 32]) -> Option<Caller> {
        self.cache
            .lock()
            .get(digest)
            .filter(|c| c.expires_at > SystemTime::now())
            .cloned()
    }

    fn remember(&self, digest: [u8; 32], caller: &Caller) {
        let mut cache = self.cache.lock();
        if cache.len() >= CACHE_ENTRIES {
            let now = SystemTime::now();
            cache.retain(|_, c| c.expires_at > now);
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(digest, caller.clone());
    }
}

fn with_default_audience(spec: &IssuerSpec, server: &ServerSettings) -> IssuerSpec {
    let mut spec = spec.clone();
    if spec.audiences.is_empty() {
        spec.audiences = vec![server.mcp_url()];
    }
    spec
}

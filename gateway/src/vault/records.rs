//! What the vault stores, as callers see it: grants, their token-free summaries, pending
//! consents, and the clock that dates them.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Secret;

/// Whose grant: the identity of a grant row. A token is handed only to this (user, agent).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantKey {
    /// The inbound issuer that vouched for `user`.
    pub issuer: String,
    pub user: String,
    /// `None`: the grant serves every agent of the user (stored as the empty name, so
    /// `Some("")` is the same grant).
    pub agent: Option<String>,
    /// The gateway target whose provider issued the tokens.
    pub target: String,
}

impl GrantKey {
    pub(super) fn agent_column(&self) -> &str {
        self.agent.as_deref().unwrap_or("")
    }
}

impl fmt::Display for GrantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the grant of user `{}`", self.user)?;
        if let Some(agent) = self.agent.as_deref().filter(|a| !a.is_empty()) {
            write!(f, " to agent `{agent}`")?;
        }
        write!(
            f,
            " for target `{}` (issuer `{}`)",
            self.target, self.issuer
        )
    }
}

/// The tokens a consent (or a re-consent) produced.
#[derive(Debug, Clone)]
pub struct NewGrant {
    pub scopes: Vec<String>,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    /// Unix seconds; `None` when the provider did not say.
    pub expires_at: Option<i64>,
}

/// A stored grant, opened.
#[derive(Debug, Clone)]
pub struct Grant {
    pub key: GrantKey,
    pub scopes: Vec<String>,
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<i64>,
    /// Counts writes to this grant: pass it back to
    /// [`super::Vault::replace_tokens_after_refresh`] and
    /// [`super::Vault::delete_grant_if_unchanged`] so a stale writer cannot undo a newer one.
    pub revision: i64,
    /// The data key that sealed the access token.
    pub key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a refresh returned. A `None` refresh token keeps the stored one (the provider did
/// not rotate it); `None` scopes keep the stored scopes.
#[derive(Debug, Clone)]
pub struct RefreshedTokens {
    pub access_token: Secret,
    pub refresh_token: Option<Secret>,
    pub expires_at: Option<i64>,
    pub scopes: Option<Vec<String>>,
}

/// A grant described without its tokens: what `vault list` shows. It has no token field,
/// so no listing can print one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSummary {
    pub key: GrantKey,
    pub scopes: Vec<String>,
    pub expires_at: Option<i64>,
    pub has_refresh_token: bool,
    pub key_id: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Which grants to list or delete: one user's, narrowed by agent and target when given.
/// An agent of `Some("")` names the grants not bound to an agent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    pub user: String,
    pub agent: Option<String>,
    pub target: Option<String>,
    pub issuer: Option<String>,
}

/// A consent to create: the user is sent to the consent page with its id.
#[derive(Debug, Clone)]
pub struct NewPendingConsent {
    pub issuer: String,
    pub user: String,
    pub agent: Option<String>,
    pub target: String,
    pub scopes: Vec<String>,
    pub pkce_verifier: Secret,
    /// The agent's MCP session, told when the consent completes.
    pub session_id: Option<String>,
    /// Unix seconds.
    pub expires_at: i64,
}

/// A consent waiting for the user.
#[derive(Debug, Clone)]
pub struct PendingConsent {
    /// 32 random bytes, base64url: the unguessable part of the consent link. The vault keeps
    /// only its SHA-256.
    pub id: String,
    pub issuer: String,
    pub user: String,
    pub agent: Option<String>,
    pub target: String,
    pub scopes: Vec<String>,
    pub pkce_verifier: Secret,
    pub session_id: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
}

impl PendingConsent {
    /// The grant this consent will create.
    pub fn grant_key(&self) -> GrantKey {
        GrantKey {
            issuer: self.issuer.clone(),
            user: self.user.clone(),
            agent: self.agent.clone(),
            target: self.target.clone(),
        }
    }
}

/// Scopes as stored: space-separated (a scope never holds a space, RFC 6749 §3.3).
pub(super) fn join_scopes(scopes: &[String]) -> String {
    scopes.join(" ")
}

pub(super) fn split_scopes(stored: &str) -> Vec<String> {
    stored.split_whitespace().map(str::to_string).collect()
}

/// `""` in an agent or session column is `None`.
pub(super) fn non_empty(value: String) -> Option<String> {
    Some(value).filter(|v| !v.is_empty())
}

/// The time, in unix seconds; injected so tests move it without sleeping.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            // Only a clock set before 1970 fails here; such a clock is broken beyond what
            // the vault can mend, and 0 is as good a reading as any.
            .unwrap_or(0)
    }
}

/// What [`super::Vault::take_authorized`] found for a callback's `state`.
#[derive(Debug)]
pub enum Authorized {
    /// The consent, removed from the vault (a second callback finds nothing). Its `id` is
    /// the digest of the consent id ([`super::consent_digest`]): the id itself is not stored.
    Taken(Box<PendingConsent>),
    /// The state is real but another browser (or none) approved it: nothing was taken.
    OtherBrowser,
    /// The consent was approved in this browser but has expired since; it was removed.
    Expired,
    /// No consent waits for this state: used already, replaced by a later approval, or never
    /// issued.
    Unknown,
}

//! The credential of a 3LO target: the calling user's own grant, from the vault, refreshed
//! before it expires. A grant is keyed by (issuer, user, agent, target), so it is only ever
//! used for the user and agent it was issued to. When there is no usable grant — none yet,
//! too few scopes for this tool, expired without a refresh token, refused by the provider
//! (`invalid_grant`), revoked while it was being refreshed, or a vault row that does not open
//! — the answer is [`CredentialError::ConsentNeeded`] with the scopes to ask for. Any other
//! failure (the provider down or refusing the gateway's client, the vault unreadable) is
//! reported as itself and the grant is kept.
//!
//! Built by `outbound::provider` for `mode = "oauth2_authorization_code"`; the consent pages
//! (`consent/`) reach it through [`CredentialProvider::user_grants`] to start and finish a
//! user's authorization with the same client. The scopes a grant covers are the ones the user approved (stored at consent); a refresh never
//! replaces them with the provider's wording of them (GitHub answers `repo,gist`, Google
//! expands aliases), which would make every later call ask for consent again.
//!
//! Refreshes are single-flight per grant: however many calls find the token expired, one
//! refresh reaches the provider and the others use its result. The rotated refresh token is
//! stored with the new access token in one write, only if nobody changed the grant meanwhile.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::AUTHORIZATION;
use parking_lot::Mutex;

use super::authorization_code::{AuthCodeError, LazyClient};
use super::client_credentials::ClockDebug;
use super::{Attachment, Clock, CredentialError, CredentialProvider, OutboundRequest};
use crate::config::Secret;
use crate::identity::Caller;
use crate::vault::{Grant, GrantKey, RefreshedTokens, Vault};

/// Refresh this long before the provider's expiry, so a token does not expire in flight.
pub const REFRESH_SKEW: Duration = Duration::from_secs(60);

/// Per-grant refresh locks kept at most; beyond it idle ones are dropped (a lock in use is
/// held by its callers and survives).
const MAX_FLIGHTS: usize = 10_000;

/// Handed-out tokens remembered at most, to trace an upstream 401 to its grant.
const MAX_HANDED_OUT: usize = 10_000;

#[derive(Debug)]
pub struct UserGrants {
    target: String,
    client: Arc<LazyClient>,
    vault: Vault,
    /// Scopes every grant must hold.
    scopes: Vec<String>,
    /// Extra scopes per upstream tool.
    tool_scopes: BTreeMap<String, Vec<String>>,
    clock: ClockDebug,
    flights: Mutex<HashMap<GrantKey, Arc<tokio::sync::Mutex<()>>>>,
    refreshes: AtomicU64,
    /// The grant each recently handed-out access token came from (by the token's SHA-256),
    /// so a 401 from the upstream can be traced to its grant.
    handed_out: Mutex<HashMap<[u8; 32], GrantKey>>,
    /// Grants whose access token the upstream refused although it had not expired (the user
    /// revoked the app at the provider, or the provider rotated keys): refreshed, or asked
    /// consent for, on their next use.
    refused: Mutex<HashSet<GrantKey>>,
}

impl UserGrants {
    pub fn new(
        target: impl Into<String>,
        client: Arc<LazyClient>,
        vault: Vault,
        scopes: Vec<String>,
        tool_scopes: BTreeMap<String, Vec<String>>,
        clock: Clock,
    ) -> Self {
        Self {
            target: target.into(),
            client,
            vault,
            scopes,
            tool_scopes,
            clock: ClockDebug(clock),
            flights: Mutex::new(HashMap::new()),
            refreshes: AtomicU64::new(0),
            handed_out: Mutex::new(HashMap::new()),
            refused: Mutex::new(HashSet::new()),
        }
    }

    /// The target this provider serves.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The target's OAuth client at its provider.
    pub fn client(&self) -> &Arc<LazyClient> {
        &self.client
    }

    /// Who the account is at, in words ("GitHub"; a custom provider's host).
    pub fn provider_label(&self) -> String {
        self.client.label(&self.target)
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// How many refreshes reached the provider (for metrics and tests).
    pub fn refreshes(&self) -> u64 {
        self.refreshes.load(Ordering::Relaxed)
    }

    /// The scopes a call of `tool` needs: the target's, plus the tool's own.
    pub fn scopes_for(&self, tool: Option<&str>) -> Vec<String> {
        let mut needed = self.scopes.clone();
        for s in tool
            .and_then(|t| self.tool_scopes.get(t))
            .into_iter()
            .flatten()
        {
            if !needed.contains(s) {
                needed.push(s.clone());
            }
        }
        needed
    }

    fn key(&self, caller: &Caller) -> GrantKey {
        GrantKey {
            issuer: caller.issuer.clone(),
            user: caller.user.clone(),
            agent: caller.agent.clone(),
            target: self.target.clone(),
        }
    }

    /// `caller`'s access token for a call of `tool`.
    pub async fn access_token(
        &self,
        caller: &Caller,
        tool: Option<&str>,
    ) -> Result<Secret, CredentialError> {
        let key = self.key(caller);
        let needed = self.scopes_for(tool);
        if let Usable::Fresh(token) = self.usable(&key, &needed).await? {
            return Ok(self.hand_out(&key, token));
        }
        // One refresh per grant at a time; whoever waited finds the refreshed token.
        let flight = self.flight(&key);
        let _turn = flight.lock().await;
        let grant = match self.usable(&key, &needed).await? {
            Usable::Fresh(token) => return Ok(self.hand_out(&key, token)),
            Usable::Expired(latest) => latest,
        };
        let token = self.refresh(&key, grant, &needed).await?;
        Ok(self.hand_out(&key, token))
    }

    /// Remember which grant `token` came from, for [`CredentialProvider::rejected`].
    fn hand_out(&self, key: &GrantKey, token: Secret) -> Secret {
        let mut handed = self.handed_out.lock();
        if handed.len() >= MAX_HANDED_OUT {
            handed.clear(); // bounded memory beats tracing an old token's 401
        }
        handed.insert(digest(&token), key.clone());
        token
    }

    /// The stored grant, if it can serve `needed`: fresh (its token), or expired but
    /// refreshable.
    async fn usable(&self, key: &GrantKey, needed: &[String]) -> Result<Usable, CredentialError> {
        let grant = match self.vault.grant(key).await {
            Ok(Some(g)) => g,
            Ok(None) => return Err(consent(needed.to_vec())),
            Err(e) if e.is_tampered() => {
                tracing::warn!(target: "portcullis::vault", "{e}");
                return Err(consent(needed.to_vec()));
            }
            Err(e) => {
                // The operator's problem (path, disk): in the log; the caller hears it short.
                tracing::error!(target: "portcullis::vault", "{e}");
                return Err(CredentialError::Invalid(
                    "the gateway cannot read its token vault right now (the gateway log says why); try again later".into(),
                ));
            }
        };
        if let Some(missing) = missing(&grant.scopes, needed) {
            // Ask for what the grant has and what this call needs, so one consent serves both.
            let mut union = grant.scopes.clone();
            union.extend(missing);
            return Err(consent(union));
        }
        // Cleared once the grant is renewed or dropped, so the second look (after waiting
        // for the refresh flight) still sees it.
        let refused = self.refused.lock().contains(key);
        let now = (self.clock.0)();
        let fresh = !refused
            && grant.expires_at.is_none_or(|exp| {
                let exp = std::time::UNIX_EPOCH + Duration::from_secs(exp.max(0) as u64);
                now + REFRESH_SKEW < exp
            });
        if fresh {
            return Ok(Usable::Fresh(grant.access_token));
        }
        if grant.refresh_token.is_none() {
            if refused {
                // Its only token is refused and cannot be renewed: the grant is dead.
                self.refused.lock().remove(key);
                if let Err(e) = self
                    .vault
                    .delete_grant_if_unchanged(key, grant.revision)
                    .await
                {
                    tracing::warn!(target: "portcullis::vault", "{key} could not be deleted after the upstream refused its token: {e}");
                }
            }
            return Err(consent(needed.to_vec()));
        }
        Ok(Usable::Expired(Box::new(grant)))
    }

    async fn refresh(
        &self,
        key: &GrantKey,
        grant: Box<Grant>,
        needed: &[String],
    ) -> Result<Secret, CredentialError> {
        let Some(refresh_token) = &grant.refresh_token else {
            return Err(consent(needed.to_vec()));
        };
        let client = self.client.get().await.map_err(|e| match e {
            AuthCodeError::Unreachable(why) => CredentialError::Unreachable(format!(
                "discovering the provider's endpoints to refresh the user's token: {why}"
            )),
            other => CredentialError::Invalid(format!(
                "the OAuth client of this target cannot be set up: {other}"
            )),
        })?;
        self.refreshes.fetch_add(1, Ordering::Relaxed);
        let outcome = client.refresh(refresh_token, &grant.scopes).await;
        if outcome.as_ref().is_ok() || outcome.as_ref().is_err_and(AuthCodeError::grant_is_dead) {
            self.refused.lock().remove(key);
        }
        match outcome {
            Ok(t) => {
                let tokens = RefreshedTokens {
                    access_token: t.access_token.clone(),
                    refresh_token: t.refresh_token,
                    expires_at: t.expires_at,
                    // The approved scopes stay (see the module comment).
                    scopes: None,
                };
                match self
                    .vault
                    .replace_tokens_after_refresh(key, grant.revision, &tokens)
                    .await
                {
                    Ok(true) => Ok(t.access_token),
                    // Changed meanwhile: consented again (use the vault's grant next time,
                    // this token is still the user's) or revoked (then this token must not
                    // be used: the user took the grant back).
                    Ok(false) => match self.vault.grant(key).await {
                        Ok(Some(_)) => Ok(t.access_token),
                        _ => Err(consent(needed.to_vec())),
                    },
                    Err(e) => {
                        tracing::error!(target: "portcullis::vault", "{key}: the refreshed token could not be stored: {e}");
                        Err(CredentialError::Invalid(
                            "the gateway could not store the refreshed token in its vault (the gateway log says why); try again later".into(),
                        ))
                    }
                }
            }
            Err(e) if e.grant_is_dead() => {
                if let Err(e) = self
                    .vault
                    .delete_grant_if_unchanged(key, grant.revision)
                    .await
                {
                    tracing::warn!(target: "portcullis::vault", "{key} could not be deleted after the provider refused it: {e}");
                }
                tracing::info!(
                    target: "portcullis::outbound",
                    "{key}: {e}"
                );
                Err(consent(needed.to_vec()))
            }
            Err(AuthCodeError::Refused { code, description }) => {
                Err(CredentialError::Refused { code, description })
            }
            Err(AuthCodeError::Unreachable(why)) => Err(CredentialError::Unreachable(format!(
                "refreshing the user's token: {why}. The user's grant is kept; try again in a moment"
            ))),
            Err(other) => Err(CredentialError::Invalid(format!(
                "refreshing the user's token failed: {other}"
            ))),
        }
    }

    fn flight(&self, key: &GrantKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut flights = self.flights.lock();
        if flights.len() >= MAX_FLIGHTS {
            flights.retain(|_, f| Arc::strong_count(f) > 1);
        }
        flights.entry(key.clone()).or_default().clone()
    }
}

enum Usable {
    Fresh(Secret),
    Expired(Box<Grant>),
}

fn consent(scopes: Vec<String>) -> CredentialError {
    CredentialError::ConsentNeeded { scopes }
}

/// The scopes of `needed` that `granted` lacks, if any.
fn missing(granted: &[String], needed: &[String]) -> Option<Vec<String>> {
    let missing: Vec<String> = needed
        .iter()
        .filter(|s| !granted.contains(s))
        .cloned()
        .collect();
    (!missing.is_empty()).then_some(missing)
}

impl CredentialProvider for UserGrants {
    fn mode(&self) -> &'static str {
        "oauth2_authorization_code"
    }

    fn user_grants(&self) -> Option<&UserGrants> {
        Some(self)
    }

    fn attach<'a>(
        &'a self,
        req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async move {
            let caller = req
                .caller()
                .ok_or(CredentialError::NoCaller("oauth2_authorization_code"))?;
            let token = self.access_token(caller, req.tool).await?;
            Attachment::default().header(AUTHORIZATION, &format!("Bearer {}", token.expose()))
        })
    }

    /// The upstream answered 401 to a token of ours: its grant is refreshed (or, without a
    /// refresh token, dropped and consent asked) on the retry.
    fn rejected(&self, used: &Attachment) -> bool {
        let tokens = used
            .headers
            .iter()
            .filter_map(|(_, v)| v.to_str().ok()?.strip_prefix("Bearer "));
        let mut any = false;
        for token in tokens {
            if let Some(key) = self.handed_out.lock().remove(&digest(&Secret::new(token))) {
                self.refused.lock().insert(key);
                any = true;
            }
        }
        any
    }
}

fn digest(token: &Secret) -> [u8; 32] {
    use sha2::Digest as _;
    sha2::Sha256::digest(token.expose().as_bytes()).into()
}

#[cfg(test)]
#[path = "user_grants_tests.rs"]
mod tests;

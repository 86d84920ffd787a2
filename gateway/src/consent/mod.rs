//! The user-consent side of 3LO (DESIGN §6): what a call that needs a user's consent hands to
//! the agent ([`Consents::ask`]), and the browser pages that bind the consent to that user
//! (`routes`: sign-in, Approve/Deny, the provider's callback, the user's grants). Grants
//! themselves live in `vault/`; the OAuth client that obtains them in `outbound/`.
//!
//! A consent link carries only an opaque, unguessable id (`{public_url}/consent/{id}`); the
//! vault keeps its digest, the caller it was made for, the target and the scopes. The
//! agent's `elicitationId` is that digest, so the completion notification needs no link.

mod browser;
mod login;
pub mod pages;
mod routes;

use std::time::Duration;

use rmcp::model::JsonObject;

use crate::events::{CatalogEvent, Hub};
use crate::identity::Caller;
use crate::outbound::authorization_code::new_pkce_verifier;
use crate::request_state::{Binding, RequestStates, Resume, STATE_TTL};
use crate::server::call_error::CallError;
use crate::vault::{NewPendingConsent, PendingConsent, Vault, VaultError, consent_digest};
pub use routes::{Pages, router};

/// How long a consent link stays usable: as long as the `requestState` of a 2026 retry.
pub const CONSENT_TTL: Duration = STATE_TTL;

/// The consent hand-off of the call pipeline. One per process; kept across reloads.
#[derive(Debug)]
pub struct Consents {
    vault: Vault,
    states: std::sync::Arc<RequestStates>,
    /// `{public_url}` without a trailing slash.
    base: String,
    hub: Hub,
}

/// A call that needs the user's consent.
#[derive(Debug)]
pub struct Ask<'a> {
    pub caller: &'a Caller,
    /// The gateway tool name, and the arguments, the 2026 `requestState` is bound to.
    pub tool: &'a str,
    pub arguments: Option<&'a JsonObject>,
    pub target: &'a str,
    /// Who the account is at, in words ("GitHub").
    pub provider: &'a str,
    pub scopes: Vec<String>,
    /// The caller's MCP session (2025-11-25), told when the consent completes.
    pub session_id: Option<&'a str>,
    /// The consent a 2026 retry's state named: shown again while it still waits.
    pub earlier: Option<&'a str>,
}

impl Consents {
    pub fn new(
        vault: Vault,
        states: std::sync::Arc<RequestStates>,
        public_url: &url::Url,
        hub: Hub,
    ) -> Result<Self, String> {
        Ok(Self {
            vault,
            states,
            base: public_url.as_str().trim_end_matches('/').to_string(),
            hub,
        })
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The answer to a call that needs consent: a pending consent (the one a retry named, if
    /// it still waits and asks for enough), its link, and the sealed state of a 2026 retry.
    pub async fn ask(&self, ask: Ask<'_>) -> CallError {
        let pending = match self.pending_for(&ask).await {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(target: "portcullis::vault", "a consent for target `{}` could not be stored: {e}", ask.target);
                return CallError::Internal(
                    "the gateway could not record the consent request in its vault (the gateway log says why); try again later".into(),
                );
            }
        };
        let agent = ask.caller.agent.as_deref().unwrap_or("your agent");
        let message = format!(
            "{agent} needs your permission to use {provider} on your behalf (target `{target}`)",
            provider = ask.provider,
            target = ask.target,
        );
        let request_state = self.states.seal(
            Resume::Consent {
                consent: pending.id.clone(),
            },
            &Binding {
                caller: Some(ask.caller),
                tool: ask.tool,
                arguments: ask.arguments,
            },
            None,
        );
        tracing::info!(
            target: "portcullis::consent",
            "{} must consent before target `{}` can be used (scopes: {}); link valid for {}",
            ask.caller.label(),
            ask.target,
            pending.scopes.join(" "),
            crate::words::duration(CONSENT_TTL),
        );
        CallError::ConsentRequired {
            target: ask.target.to_string(),
            url: format!("{}/consent/{}", self.base, pending.id),
            elicitation_id: consent_digest(&pending.id),
            message,
            request_state,
        }
    }

    async fn pending_for(&self, ask: &Ask<'_>) -> Result<PendingConsent, VaultError> {
        if let Some(id) = ask.earlier
            && let Some(p) = self.vault.pending(id).await?
            && p.issuer == ask.caller.issuer
            && p.user == ask.caller.user
            && p.agent == ask.caller.agent
            && p.target == ask.target
            && ask.scopes.iter().all(|s| p.scopes.contains(s))
        {
            return Ok(p);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs() as i64;
        self.vault
            .create_pending(NewPendingConsent {
                issuer: ask.caller.issuer.clone(),
                user: ask.caller.user.clone(),
                agent: ask.caller.agent.clone(),
                target: ask.target.to_string(),
                scopes: ask.scopes.clone(),
                pkce_verifier: new_pkce_verifier(),
                session_id: ask.session_id.map(str::to_string),
                expires_at: now + CONSENT_TTL.as_secs() as i64,
            })
            .await
    }

    /// A consent completed: tell the 2025-11-25 session that asked, if any.
    pub(crate) fn completed(&self, pending: &PendingConsent) {
        if let Some(session) = &pending.session_id {
            self.hub.send(CatalogEvent::ElicitationComplete {
                session: session.clone(),
                // Taken by state, the pending consent's `id` is already the digest.
                elicitation_id: pending.id.clone(),
            });
        }
    }
}

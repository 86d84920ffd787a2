//! The one identity type. Inbound authentication produces a [`Caller`]; everything
//! downstream (routing, policy, credentials, audit) reads it and never a raw JWT.

use std::collections::BTreeSet;
use std::time::SystemTime;

/// Who is calling: the person (`user`) and the software acting for them (`agent`).
#[derive(Debug, Clone, PartialEq)]
pub struct Caller {
    /// The `iss` that vouched for this caller.
    pub issuer: String,
    /// From the issuer's `user_claim` (default `sub`).
    pub user: String,
    /// The OAuth client: `azp`, else `client_id` (or the configured `agent_claim`).
    pub agent: Option<String>,
    pub scopes: BTreeSet<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
    /// All claims of the verified token, for policies. Never contains the token itself.
    pub claims: serde_json::Map<String, serde_json::Value>,
    pub expires_at: SystemTime,
}

impl Caller {
    /// How the caller appears in logs and audit events: `alice via claude-code`.
    pub fn label(&self) -> String {
        match &self.agent {
            Some(agent) => format!("{} via {agent}", self.user),
            None => self.user.clone(),
        }
    }
}

/// The caller of a request, as the HTTP layer recorded it: `None` when inbound
/// authentication is off (`inbound.mode = "none"`).
pub fn caller_of(parts: Option<&http::request::Parts>) -> Option<&Caller> {
    parts.and_then(|p| p.extensions.get::<Caller>())
}

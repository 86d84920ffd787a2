//! Targets: the things tool calls are routed to. One adapter per kind; today MCP upstreams
//! over streamable HTTP and stdio (`mcp`). OpenAPI and Lambda adapters plug in here as more
//! variants of [`Target`] — `targets/` never sees a JWT, only a call and (later) a credential.

pub mod cause;
pub mod mcp;
pub mod relay;

use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{Prompt, Resource, ResourceTemplate, ServerCapabilities, Tool};

pub use mcp::McpTarget;

/// What a target offers, as last fetched from it.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub tools: Vec<Tool>,
    pub prompts: Vec<Prompt>,
    pub resources: Vec<Resource>,
    pub templates: Vec<ResourceTemplate>,
    pub capabilities: ServerCapabilities,
}

/// Health of one target, for `/readyz` and `portcullis check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Connected,
    /// Not connected: still on its first attempt (`reason` starts with "connecting"), or
    /// failed/lost (`reason` names what failed, the cause in plain words, and the fix).
    Down {
        reason: String,
    },
    /// A target whose credential depends on the caller: it keeps one session per user,
    /// opened on that user's first use, so "not connected" is normal and not a fault.
    /// `open`: the user sessions connected now.
    PerUser {
        open: usize,
    },
}

/// Why a call to a target failed. The variants say whose fault it is; `server::errors`
/// maps each to one JSON-RPC error.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    #[error("target `{target}` is unavailable: {reason}")]
    Unavailable { target: String, reason: String },
    #[error("target `{target}` did not answer within {}", crate::words::duration(*after))]
    Timeout { target: String, after: Duration },
    /// The upstream answered with a JSON-RPC error; passed on with its code.
    #[error("target `{target}` returned an error: {}", error.message)]
    Upstream { target: String, error: ErrorData },
    /// No credential for the target could be obtained (token endpoint, STS, …).
    #[error("cannot get a credential for target `{target}`: {error}")]
    Credential {
        target: String,
        error: crate::outbound::CredentialError,
    },
}

//! Targets: the things tool calls are routed to. [`Target`] is the one type the catalog, the
//! call pipeline and reload handle; each kind is a variant with its own adapter: MCP
//! upstreams over streamable HTTP and stdio (`mcp`), and the per-call kinds, which list from
//! their file or specification and keep no session: HTTP APIs (`rest`: `[openapi]` and
//! `[http]`) and AWS Lambda functions (`lambda`).
//! `targets/` never sees a JWT: only a call and, for credentials, an [`outbound::Principal`].

pub mod lambda;
pub mod mcp;
pub mod relay;
pub mod rest;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use rmcp::ErrorData;
use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientRequest, ProgressToken, Prompt, Resource,
    ResourceTemplate, ServerCapabilities, ServerResult, Tool,
};
use tokio_util::sync::CancellationToken;

pub use lambda::LambdaTarget;
pub use mcp::McpTarget;
pub use rest::RestTarget;

use crate::config::{TargetKind, TargetSpec};
use crate::events::Hub;
use crate::outbound::{self, HttpClientError, Principal};
use relay::{InFlight, Registration, RelayReceiver};

/// A target of any kind. Cheap to clone: a handle on the target's shared state.
#[derive(Debug, Clone)]
pub enum Target {
    /// An MCP upstream and its sessions: one shared session, or one per user when the
    /// credential depends on the caller (DESIGN §5).
    Mcp(McpTarget),
    /// An HTTP API (`[openapi]`, `[http]`): one request per call.
    Rest(RestTarget),
    /// An AWS Lambda function: one `Invoke` per call.
    Lambda(LambdaTarget),
}

/// An in-flight call: the pending response, plus the channel on which an MCP upstream asks
/// things of the caller meanwhile (sampling, elicitation, progress), which the caller serves
/// while awaiting the response. A per-call kind has nothing to relay.
pub struct PendingCall<T> {
    pub response: BoxFuture<'static, Result<T, TargetError>>,
    pub relays: RelayReceiver,
    /// Keep the call registered for relays until the caller is done with it.
    _relaying: Option<(Registration, InFlight)>,
}

impl<T> PendingCall<T> {
    /// A call of a per-call kind: nothing is relayed while it runs.
    fn direct(response: BoxFuture<'static, Result<T, TargetError>>) -> Self {
        // The sender is dropped at once: the receiver only ever says "closed".
        let (_, relays) = tokio::sync::mpsc::channel(1);
        Self {
            response,
            relays,
            _relaying: None,
        }
    }

    /// A call whose upstream may relay messages to the caller while it runs.
    fn relayed(
        response: BoxFuture<'static, Result<T, TargetError>>,
        relays: RelayReceiver,
        registration: Registration,
        in_flight: InFlight,
    ) -> Self {
        Self {
            response,
            relays,
            _relaying: Some((registration, in_flight)),
        }
    }
}

#[cfg(test)]
impl<T> PendingCall<T> {
    /// A call with nothing registered, for unit tests of what holds pending calls.
    pub(crate) fn unregistered(
        response: BoxFuture<'static, Result<T, TargetError>>,
        relays: RelayReceiver,
    ) -> Self {
        Self {
            response,
            relays,
            _relaying: None,
        }
    }
}

impl<T> std::fmt::Debug for PendingCall<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").finish_non_exhaustive()
    }
}

/// What a call's caller declared, for an upstream of the 2026-07-28 era, which reads it from
/// each request (`_meta`) instead of from a session: which input the caller can give (so the
/// upstream asks for nothing it cannot) and which log messages it wants. A 2025-11-25
/// upstream session carries the gateway's own declaration and gets none of this.
#[derive(Debug, Clone, Default)]
#[allow(deprecated)] // logging: what 2025-era callers and upstreams still use
pub struct CallerMeta {
    /// The caller's progress token, if it asked for progress.
    pub progress: Option<ProgressToken>,
    pub capabilities: Option<rmcp::model::ClientCapabilities>,
    /// `None`: no log messages (a 2026 caller that asked for none).
    pub log_level: Option<rmcp::model::LoggingLevel>,
}

/// What every target is built with: shared by all targets and kept across reloads.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Where targets report listing changes and events for clients.
    pub hub: Hub,
    /// For the token endpoints of credential providers ([`outbound::token_http_client`]).
    pub token_http: reqwest::Client,
    /// For targets that act with each user's consent; `None` in commands that keep no vault.
    pub consent: Option<outbound::ConsentWiring>,
    pub shutdown: CancellationToken,
}

/// Compile the targets of a configuration: each one's credential provider and adapter. A
/// target of `previous` whose sessions can serve its new settings is taken over (its
/// sessions stay up; see [`Target::serves`]); the others are built and start connecting.
pub fn compile(
    specs: &[TargetSpec],
    previous: Option<&BTreeMap<String, Target>>,
    wiring: &Wiring,
) -> Result<BTreeMap<String, Target>, HttpClientError> {
    specs
        .iter()
        .map(|spec| {
            let kept = previous
                .and_then(|p| p.get(&spec.name))
                .filter(|old| old.serves(spec));
            let target = match kept {
                Some(old) => old.with_spec(spec.clone()),
                None => Target::build(spec, wiring)?,
            };
            Ok((spec.name.clone(), target))
        })
        .collect()
}

impl Target {
    /// A new target for `spec` with a new credential provider.
    fn build(spec: &TargetSpec, wiring: &Wiring) -> Result<Self, HttpClientError> {
        let provider = |auth| {
            outbound::provider(
                &spec.name,
                auth,
                wiring.token_http.clone(),
                wiring.consent.as_ref(),
            )
        };
        let credentials = provider(&spec.auth);
        let listing_credentials = spec.listing_auth.as_ref().map(provider);
        match &spec.kind {
            TargetKind::Mcp(transport, _) => McpTarget::start(
                spec.clone(),
                transport.clone(),
                credentials,
                listing_credentials,
                wiring.hub.clone(),
                wiring.shutdown.clone(),
            )
            .map(Self::Mcp),
            TargetKind::Rest(rest) => RestTarget::start(
                spec.clone(),
                (**rest).clone(),
                credentials,
                wiring.hub.clone(),
                wiring.shutdown.clone(),
            )
            .map(Self::Rest),
            TargetKind::Lambda(lambda) => Ok(Self::Lambda(LambdaTarget::start(
                spec.clone(),
                lambda.clone(),
                credentials,
            ))),
        }
    }

    /// Whether this target's connections can serve `spec` (same kind, upstream, credential
    /// and connect timeout), so a reload keeps them.
    pub fn serves(&self, spec: &TargetSpec) -> bool {
        match self {
            Self::Mcp(t) => t.serves(spec),
            Self::Rest(t) => t.serves(spec),
            Self::Lambda(t) => t.serves(spec),
        }
    }

    /// A handle with new call-level settings on the same connections.
    pub fn with_spec(&self, spec: TargetSpec) -> Self {
        match self {
            Self::Mcp(t) => Self::Mcp(t.with_spec(spec)),
            Self::Rest(t) => Self::Rest(t.with_spec(spec)),
            Self::Lambda(t) => Self::Lambda(t.with_spec(spec)),
        }
    }

    /// Whether two handles share their connections (a reload kept them).
    pub fn same_connections(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Mcp(a), Self::Mcp(b)) => a.same_session(b),
            (Self::Rest(a), Self::Rest(b)) => a.same_api(b),
            (Self::Lambda(a), Self::Lambda(b)) => a.same_function(b),
            _ => false,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Self::Mcp(t) => t.name(),
            Self::Rest(t) => t.name(),
            Self::Lambda(t) => t.name(),
        }
    }

    /// The settings calls read (timeout, prefix, scopes).
    pub fn spec(&self) -> &TargetSpec {
        match self {
            Self::Mcp(t) => t.spec(),
            Self::Rest(t) => t.spec(),
            Self::Lambda(t) => t.spec(),
        }
    }

    /// What the target offers now.
    pub fn listing(&self) -> Arc<Listing> {
        match self {
            Self::Mcp(t) => t.listing(),
            Self::Rest(t) => t.listing(),
            Self::Lambda(t) => t.listing(),
        }
    }

    pub fn health(&self) -> Health {
        match self {
            Self::Mcp(t) => t.health(),
            Self::Rest(t) => t.health(),
            Self::Lambda(t) => t.health(),
        }
    }

    /// How long the first connection attempt has been running; `None` once it ended.
    pub fn first_attempt_running(&self) -> Option<Duration> {
        match self {
            Self::Mcp(t) => t.first_attempt_running(),
            Self::Rest(t) => t.first_attempt_running(),
            Self::Lambda(_) => None,
        }
    }

    /// Whether the target's tools are known.
    pub fn ever_connected(&self) -> bool {
        match self {
            Self::Mcp(t) => t.ever_connected(),
            Self::Rest(t) => t.ever_connected(),
            Self::Lambda(_) => true,
        }
    }

    /// Connect now if the kind keeps a connection; used at startup and by `check`.
    pub async fn ensure_connected(&self) -> Result<(), TargetError> {
        match self {
            Self::Mcp(t) => t.ensure_connected().await,
            Self::Rest(t) => t.ensure_connected().await,
            Self::Lambda(_) => Ok(()),
        }
    }

    /// The users' grants of a target that acts with each user's consent (3LO).
    pub fn user_grants(&self) -> Option<&outbound::user_grants::UserGrants> {
        match self {
            Self::Mcp(t) => t.credentials().user_grants(),
            Self::Rest(t) => t.credentials().user_grants(),
            Self::Lambda(t) => t.credentials().user_grants(),
        }
    }

    /// For a target whose tools come from each user's own session: learn them with
    /// `principal`'s. Returns whether a listing was learned.
    pub async fn learn_listing(&self, principal: Option<&Principal>) -> bool {
        match self {
            Self::Mcp(t) => t.learn_listing(principal).await,
            // Their tools are the same for every caller.
            Self::Rest(_) | Self::Lambda(_) => false,
        }
    }

    /// The credential phase of a call: obtain the credential for `principal` and the upstream
    /// `tool` before anything is sent, so a credential failure reaches the caller as itself.
    pub async fn credential(
        &self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Result<(), TargetError> {
        match self {
            Self::Mcp(t) => t.credential(principal, tool).await,
            Self::Rest(t) => t.credential(principal, tool).await,
            Self::Lambda(t) => t.credential(principal, tool).await,
        }
    }

    /// Start a `tools/call` (`params.name` is the upstream's name). The caller serves the
    /// returned relays while awaiting the response.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        caller: CallerMeta,
        principal: Option<&Principal>,
    ) -> Result<PendingCall<CallToolResponse>, TargetError> {
        match self {
            Self::Mcp(t) => t.call_tool(params, caller, principal).await,
            Self::Rest(t) => t.call_tool(params, principal).await,
            Self::Lambda(t) => t.call_tool(params, principal).await,
        }
    }

    /// Forward an MCP request other than a tool call (prompts, resources, completion).
    pub async fn request(
        &self,
        request: ClientRequest,
        principal: Option<&Principal>,
    ) -> Result<ServerResult, TargetError> {
        match self {
            Self::Mcp(t) => t.request(request, principal).await,
            // They list no prompts or resources, so the catalog routes nothing here.
            Self::Rest(_) | Self::Lambda(_) => Err(TargetError::Unavailable {
                target: self.name().to_string(),
                reason: format!("an [{}] target offers only tools", self.spec().kind.table()),
            }),
        }
    }
}

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
    /// A per-call target refused the call for a reason that retrying will not cure soon (a
    /// function that does not exist, throttling): no connection to wait for.
    #[error("target `{target}` refused the call: {reason}")]
    Refused { target: String, reason: String },
    #[error("target `{target}` did not answer within {}", crate::words::duration(*after))]
    Timeout { target: String, after: Duration },
    /// The upstream answered with a JSON-RPC error; passed on with its code.
    #[error("target `{target}` returned an error: {}", error.message)]
    Upstream { target: String, error: ErrorData },
    /// No credential for the target could be obtained (token endpoint, STS, …).
    #[error("cannot get a credential for target `{target}`: {error}")]
    Credential {
        target: String,
        error: outbound::CredentialError,
    },
}

//! An MCP upstream (streamable HTTP or a stdio child process) as a target: its settings plus
//! its upstream sessions. Which session serves a request follows the credential (DESIGN §5):
//! a gateway credential (none, api_key, client credentials, SigV4) means one shared session
//! for every caller (`session`); a credential that depends on the caller (token exchange)
//! means one session per user, opened on their first use (`users`).

use std::sync::Arc;
use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::*;

mod client;
mod direct;
mod explain;
pub mod http;
mod listen;
mod session;
mod status;
mod stdio;
mod users;

use super::{CallerMeta, Health, Listing, PendingCall, TargetError};
use crate::config::{McpTransport, TargetSpec};
use crate::events::Hub;
use crate::outbound::{CredentialError, CredentialProvider, HttpClientError, Principal};
use http::OutboundContext;
use session::{Session, Upstream};
use tokio_util::sync::CancellationToken;
use users::UserSessions;

/// A handle on a target: its settings plus its upstream sessions. Cheap to clone. A reload
/// that changes only call-level settings (timeout, prefix, scopes, description) makes a new
/// handle on the same sessions ([`McpTarget::with_spec`]); they end when the last handle is
/// dropped, i.e. after the last call that still uses them.
#[derive(Debug, Clone)]
pub struct McpTarget {
    sessions: Sessions,
    /// The credential the sessions were opened with (shared with them).
    credentials: Arc<dyn CredentialProvider>,
    /// The settings calls read (timeout, prefix, scopes); the sessions keep the ones they
    /// were opened with.
    spec: Arc<TargetSpec>,
}

#[derive(Debug, Clone)]
enum Sessions {
    /// A gateway credential: one session, kept up by a supervisor, serves every caller.
    Shared(Arc<Session>),
    /// A credential that depends on the caller: one session per user, opened lazily.
    PerUser(Arc<UserSessions>),
}

impl McpTarget {
    /// Create the target and, for a shared session (or a per-user target's listing session,
    /// with `listing_credentials`), start its supervisor.
    pub fn start(
        spec: TargetSpec,
        transport: McpTransport,
        credentials: Arc<dyn CredentialProvider>,
        listing_credentials: Option<Arc<dyn CredentialProvider>>,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> Result<Self, HttpClientError> {
        let http =
            crate::outbound::target_http_client("upstream MCP servers", spec.connect_timeout)?;
        let per_caller = spec.auth.per_caller();
        let handle_spec = Arc::new(spec.clone());
        let upstream = Upstream {
            spec,
            transport,
            http,
            credentials: credentials.clone(),
            changed: hub.listings,
            events: hub.events,
            shutdown,
        };
        let sessions = if per_caller {
            Sessions::PerUser(UserSessions::start(upstream, listing_credentials))
        } else {
            Sessions::Shared(Session::shared(&upstream))
        };
        Ok(Self {
            sessions,
            credentials,
            spec: handle_spec,
        })
    }

    /// The settings the sessions were opened with.
    fn opened(&self) -> &TargetSpec {
        match &self.sessions {
            Sessions::Shared(s) => &s.spec,
            Sessions::PerUser(p) => p.spec(),
        }
    }

    /// Whether `spec` can be served by this target's sessions: same name, upstream,
    /// credential and connect timeout.
    pub fn serves(&self, spec: &TargetSpec) -> bool {
        let open = self.opened();
        open.name == spec.name
            && open.kind == spec.kind
            && open.auth == spec.auth
            && open.listing_auth == spec.listing_auth
            && open.declared_tools == spec.declared_tools
            && open.connect_timeout == spec.connect_timeout
    }

    /// A handle with new call-level settings on the same sessions (see [`Self::serves`]).
    pub fn with_spec(&self, spec: TargetSpec) -> Self {
        debug_assert!(self.serves(&spec));
        Self {
            sessions: self.sessions.clone(),
            credentials: self.credentials.clone(),
            spec: Arc::new(spec),
        }
    }

    /// The credential provider of the target's sessions.
    pub fn credentials(&self) -> &Arc<dyn CredentialProvider> {
        &self.credentials
    }

    /// Whether two handles share their upstream sessions.
    pub fn same_session(&self, other: &Self) -> bool {
        match (&self.sessions, &other.sessions) {
            (Sessions::Shared(a), Sessions::Shared(b)) => Arc::ptr_eq(a, b),
            (Sessions::PerUser(a), Sessions::PerUser(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }

    pub fn name(&self) -> &str {
        &self.opened().name
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    /// What the target offers. For a per-user target: what its users' sessions listed
    /// (empty until the first one did).
    pub fn listing(&self) -> Arc<Listing> {
        match &self.sessions {
            Sessions::Shared(s) => s.listing.load_full(),
            Sessions::PerUser(p) => p.listing(),
        }
    }

    pub fn health(&self) -> Health {
        match &self.sessions {
            Sessions::Shared(s) if s.is_open() => Health::Connected,
            Sessions::Shared(s) => Health::Down {
                reason: s.status.reason(),
            },
            // A listing session that is down is the target's listing down: say so, as for
            // a shared session.
            Sessions::PerUser(p) => match p.lister() {
                Some(l) if !l.is_open() => Health::Down {
                    reason: format!("its listing session: {}", l.status.reason()),
                },
                _ => Health::PerUser { open: p.open() },
            },
        }
    }

    /// How long the first connection attempt has been running; `None` once it ended (and
    /// for a per-user target without a listing session, which connects on its users' first
    /// calls).
    pub fn first_attempt_running(&self) -> Option<Duration> {
        match &self.sessions {
            Sessions::Shared(s) => s.status.first_attempt_running(),
            Sessions::PerUser(p) => p.lister()?.status.first_attempt_running(),
        }
    }

    /// Whether the target's tools are known (it was connected, a session listed it, or its
    /// file declares them).
    pub fn ever_connected(&self) -> bool {
        match &self.sessions {
            Sessions::Shared(s) => s.status.ever_connected(),
            Sessions::PerUser(p) => p.tools_known(),
        }
    }

    /// Connect now if not connected; used at startup and by `portcullis check`. A per-user
    /// target connects only its listing session, if it has one: user sessions open on their
    /// user's first call.
    pub async fn ensure_connected(&self) -> Result<(), TargetError> {
        match &self.sessions {
            Sessions::Shared(s) => s.peer().await.map(|_| ()),
            Sessions::PerUser(p) => match p.lister() {
                Some(l) => l.peer().await.map(|_| ()),
                None => Ok(()),
            },
        }
    }

    /// For a per-user target whose tools are not known yet: open `caller`'s session, which
    /// lists the upstream. Returns whether a listing was learned. Failures are the caller's
    /// to see on their call; here they are only logged.
    pub async fn learn_listing(&self, principal: Option<&Principal>) -> bool {
        let (Sessions::PerUser(_), Some(principal)) = (&self.sessions, principal) else {
            return false;
        };
        if self.ever_connected() {
            return false;
        }
        let opened = match self.session(Some(principal)) {
            Ok(s) => s.peer().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = opened {
            tracing::info!(target: "portcullis::targets", target_name = %self.name(), "cannot list target `{}` with the session of {}: {e}", self.name(), principal.caller.label());
        }
        self.ever_connected()
    }

    /// The session that serves `caller`.
    fn session(&self, principal: Option<&Principal>) -> Result<Arc<Session>, TargetError> {
        match (&self.sessions, principal) {
            (Sessions::Shared(s), _) => Ok(s.clone()),
            (Sessions::PerUser(p), Some(c)) => p.session_for(c),
            (Sessions::PerUser(_), None) => Err(TargetError::Credential {
                target: self.name().to_string(),
                error: CredentialError::Invalid(format!(
                    "its credential (`{}`) is obtained for each caller, and this request has no caller because inbound authentication is off (inbound.mode = \"none\"); turn on inbound authentication in gateway.toml, or give the target a credential of the gateway's own",
                    self.opened().auth.mode()
                )),
            }),
        }
    }

    /// Start a `tools/call`. The caller polls the returned relays while awaiting the response,
    /// which is a result or (a 2026-07-28 upstream) its own `input_required`.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        caller: CallerMeta,
        principal: Option<&Principal>,
    ) -> Result<PendingCall<CallToolResponse>, TargetError> {
        let session = self.session(principal)?;
        let tool = params.name.to_string();
        let mut request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // In-memory only (never serialized): lets the HTTP layer attach per-call credentials.
        request.extensions_mut().insert(OutboundContext {
            principal: principal.cloned(),
            tool: Some(tool),
        });
        let (response, relays, registration, in_flight) = session
            .start_request(request, caller, self.spec.call_timeout)
            .await?;
        let target = self.name().to_string();
        let response = Box::pin(async move {
            match response.await? {
                ServerResult::CallToolResult(r) => Ok(CallToolResponse::Complete(r)),
                ServerResult::InputRequiredResult(r) => Ok(CallToolResponse::InputRequired(r)),
                ServerResult::EmptyResult(_) => {
                    Ok(CallToolResponse::Complete(CallToolResult::success(vec![])))
                }
                other => Err(unexpected(&target, &other)),
            }
        });
        Ok(PendingCall::relayed(
            response,
            relays,
            registration,
            in_flight,
        ))
    }

    /// The credential phase of a call: obtain the target's credential for `caller` and the
    /// upstream `tool` before anything is sent, so a token-endpoint or STS failure reaches the
    /// caller as itself. The HTTP layer attaches the (then cached) credential to each request
    /// (for a per-user target: the caller's own session's requests).
    pub async fn credential(
        &self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Result<(), TargetError> {
        self.session(principal)?
            .check_credentials(principal, tool)
            .await
    }

    /// A request that needs no relaying (prompts, resources, completion), for `caller`.
    /// Not registered for relays: only tool calls are, so that attribution by "the one call
    /// in flight" can never pick a request whose caller is not listening for relays.
    pub async fn request(
        &self,
        request: ClientRequest,
        principal: Option<&Principal>,
    ) -> Result<ServerResult, TargetError> {
        self.session(principal)?
            .request(request, self.spec.call_timeout)
            .await
    }
}

fn unexpected(target: &str, got: &ServerResult) -> TargetError {
    let message = match got {
        // The gateway never asks for task execution (it declares no tasks capability to
        // upstreams or callers), so a task here is the upstream's own choice.
        ServerResult::CreateTaskResult(_) => "the upstream answered with a task (the MCP tasks extension), which the gateway does not relay: tools called through the gateway must answer in the call; ask the target's owner to run this tool without tasks".to_string(),
        other => format!(
            "the upstream answered with a result kind the gateway does not relay ({})",
            result_kind(other)
        ),
    };
    TargetError::Upstream {
        target: target.to_string(),
        error: ErrorData::internal_error(message, None),
    }
}

/// The kind of an upstream result, for errors (never its content: it may hold upstream
/// state such as an opaque `requestState`).
pub(crate) fn result_kind(r: &ServerResult) -> &'static str {
    match r {
        ServerResult::InputRequiredResult(_) => "input_required",
        ServerResult::CreateTaskResult(_) => "task",
        ServerResult::CallToolResult(_) => "tools/call result",
        ServerResult::GetPromptResult(_) => "prompts/get result",
        ServerResult::ReadResourceResult(_) => "resources/read result",
        ServerResult::CompleteResult(_) => "completion result",
        ServerResult::EmptyResult(_) => "empty result",
        _ => "other",
    }
}

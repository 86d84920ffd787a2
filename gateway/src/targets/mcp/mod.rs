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
mod explain;
pub mod http;
mod session;
mod status;
mod stdio;
mod users;

use super::relay::{InFlight, Registration, RelayReceiver};
use super::{Health, Listing, TargetError};
use crate::config::{McpTransport, TargetSpec};
use crate::events::CatalogEvent;
use crate::identity::Caller;
use crate::outbound::{CredentialError, CredentialProvider, HttpClientError};
use http::OutboundContext;
use session::{Session, Upstream};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;
use users::UserSessions;

/// A handle on a target: its settings plus its upstream sessions. Cheap to clone. A reload
/// that changes only call-level settings (timeout, prefix, scopes, description) makes a new
/// handle on the same sessions ([`McpTarget::with_spec`]); they end when the last handle is
/// dropped, i.e. after the last call that still uses them.
#[derive(Debug, Clone)]
pub struct McpTarget {
    sessions: Sessions,
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

/// An in-flight upstream call: the pending response plus the relay channel the caller
/// must serve until the response arrives.
pub struct PendingCall<'a, T> {
    pub response: futures::future::BoxFuture<'a, Result<T, TargetError>>,
    pub relays: RelayReceiver,
    _registration: Registration,
    _in_flight: InFlight,
}

impl<T> std::fmt::Debug for PendingCall<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").finish_non_exhaustive()
    }
}

impl McpTarget {
    /// Create the target and, for a shared session, start its supervisor. `changed` is
    /// shared by all targets.
    pub fn start(
        spec: TargetSpec,
        transport: McpTransport,
        credentials: Arc<dyn CredentialProvider>,
        changed: watch::Sender<u64>,
        events: broadcast::Sender<CatalogEvent>,
        shutdown: CancellationToken,
    ) -> Result<Self, HttpClientError> {
        let http = reqwest::Client::builder()
            // Never follow redirects to another host with our credentials (SSRF guidance).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(spec.connect_timeout)
            .build()
            .map_err(|e| HttpClientError::new("upstream MCP servers", &e))?;
        let per_caller = spec.auth.per_caller();
        let handle_spec = Arc::new(spec.clone());
        let upstream = Upstream {
            spec,
            transport,
            http,
            credentials,
            changed,
            events,
            shutdown,
        };
        let sessions = if per_caller {
            Sessions::PerUser(UserSessions::start(upstream))
        } else {
            Sessions::Shared(Session::shared(&upstream))
        };
        Ok(Self {
            sessions,
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
            && open.connect_timeout == spec.connect_timeout
    }

    /// A handle with new call-level settings on the same sessions (see [`Self::serves`]).
    pub fn with_spec(&self, spec: TargetSpec) -> Self {
        debug_assert!(self.serves(&spec));
        Self {
            sessions: self.sessions.clone(),
            spec: Arc::new(spec),
        }
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
            Sessions::PerUser(p) => Health::PerUser { open: p.open() },
        }
    }

    /// How long the first connection attempt has been running; `None` once it ended (and
    /// always for a per-user target, which connects on its users' first calls).
    pub fn first_attempt_running(&self) -> Option<Duration> {
        match &self.sessions {
            Sessions::Shared(s) => s.status.first_attempt_running(),
            Sessions::PerUser(_) => None,
        }
    }

    /// Whether the target's tools are known (it was connected, or a user's session listed it).
    pub fn ever_connected(&self) -> bool {
        match &self.sessions {
            Sessions::Shared(s) => s.status.ever_connected(),
            Sessions::PerUser(p) => p.ever_listed(),
        }
    }

    /// Connect now if not connected; used at startup and by `portcullis check`. A per-user
    /// target has nothing to connect before a user calls it.
    pub async fn ensure_connected(&self) -> Result<(), TargetError> {
        match &self.sessions {
            Sessions::Shared(s) => s.peer().await.map(|_| ()),
            Sessions::PerUser(_) => Ok(()),
        }
    }

    /// For a per-user target whose tools are not known yet: open `caller`'s session, which
    /// lists the upstream. Returns whether a listing was learned. Failures are the caller's
    /// to see on their call; here they are only logged.
    pub async fn learn_listing(&self, caller: Option<&Caller>) -> bool {
        let (Sessions::PerUser(_), Some(caller)) = (&self.sessions, caller) else {
            return false;
        };
        if self.ever_connected() {
            return false;
        }
        let opened = match self.session(Some(caller)) {
            Ok(s) => s.peer().await.map(|_| ()),
            Err(e) => Err(e),
        };
        if let Err(e) = opened {
            tracing::info!(target: "portcullis::targets", target_name = %self.name(), "cannot list target `{}` with the session of {}: {e}", self.name(), caller.label());
        }
        self.ever_connected()
    }

    /// The session that serves `caller`.
    fn session(&self, caller: Option<&Caller>) -> Result<Arc<Session>, TargetError> {
        match (&self.sessions, caller) {
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

    /// Start a `tools/call`. The caller polls the returned relays while awaiting the response.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        downstream_progress: Option<ProgressToken>,
        caller: Option<&Caller>,
    ) -> Result<PendingCall<'_, CallToolResult>, TargetError> {
        let session = self.session(caller)?;
        let tool = params.name.to_string();
        let mut request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // In-memory only (never serialized): lets the HTTP layer attach per-call credentials.
        request.extensions_mut().insert(OutboundContext {
            caller: caller.cloned(),
            tool: Some(tool),
        });
        let (response, relays, registration, in_flight) = session
            .start_request(request, downstream_progress, self.spec.call_timeout)
            .await?;
        let target = self.name().to_string();
        Ok(PendingCall {
            response: Box::pin(async move {
                match response.await? {
                    ServerResult::CallToolResult(r) => Ok(r),
                    ServerResult::EmptyResult(_) => Ok(CallToolResult::success(vec![])),
                    other => Err(unexpected(&target, &other)),
                }
            }),
            relays,
            _registration: registration,
            _in_flight: in_flight,
        })
    }

    /// The credential phase of a call: obtain the target's credential for `caller` and the
    /// upstream `tool` before anything is sent, so a token-endpoint or STS failure reaches the
    /// caller as itself. The HTTP layer attaches the (then cached) credential to each request
    /// (for a per-user target: the caller's own session's requests).
    pub async fn credential(&self, caller: Option<&Caller>, tool: &str) -> Result<(), TargetError> {
        self.session(caller)?.check_credentials(caller, tool).await
    }

    /// A request that needs no relaying (prompts, resources, completion), for `caller`.
    /// Not registered for relays: only tool calls are, so that attribution by "the one call
    /// in flight" can never pick a request whose caller is not listening for relays.
    pub async fn request(
        &self,
        request: ClientRequest,
        caller: Option<&Caller>,
    ) -> Result<ServerResult, TargetError> {
        self.session(caller)?
            .request(request, self.spec.call_timeout)
            .await
    }
}

fn unexpected(target: &str, got: &ServerResult) -> TargetError {
    TargetError::Upstream {
        target: target.to_string(),
        error: ErrorData::internal_error(
            format!(
                "the upstream answered with a result kind the gateway does not relay ({})",
                result_kind(got)
            ),
            None,
        ),
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

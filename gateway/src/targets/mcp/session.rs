//! One upstream MCP session (streamable HTTP or a stdio child process) and how it is opened,
//! watched and lost. A target holds one shared [`Session`], or one per user (see `users`).
//!
//! A shared session has a supervisor task that keeps it up: it connects at start, and when
//! the session ends (child exited, transport failed) it reconnects with exponential backoff.
//! A call that finds no live session tries one immediate reconnect before failing, so a call
//! made after the upstream came back succeeds without waiting for the next backoff tick — and
//! a call to a dead upstream fails fast with a clear error instead of hanging. A user's
//! session has no supervisor: it opens on that user's first call and reconnects on their
//! next one. Every failure is explained with a [`Cause`] from `cause.rs`, and every
//! change of state is one log line (`status`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::model::*;
use rmcp::service::{
    ClientLifecycleMode, PeerRequestOptions, ServiceError, serve_client_with_lifecycle_and_ct,
};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, Peer, RoleClient};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;
use url::Url;

use super::client::UpstreamClient;
use super::direct::{self, Line};
use super::explain::OpenFailure;
use super::http::{CredentialedClient, Wire};
use super::status::{self, Connected, Status};
use super::stdio::{self, StderrTail};
use crate::cause::{self, Cause, ExitStatus};
use crate::config::{McpProtocol, McpTransport, TargetKind, TargetSpec};
use crate::events::CatalogEvent;
use crate::outbound::Principal;
use crate::outbound::{CredentialProvider, OutboundRequest};
use crate::targets::relay::{InFlight, Registration, RelayReceiver, Relays};
use crate::targets::{CallerMeta, Listing, TargetError};

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How many requests one upstream HTTP session may have in flight. A shared session carries
/// every caller's calls, so rmcp's default of 16 would queue the 17th caller behind slow tools
/// of the first 16; each call still ends at its target's `timeout`.
const UPSTREAM_CALLS_IN_FLIGHT: usize = 1024;

/// What every session of one target shares: its settings, HTTP client, credential provider
/// and the catalog's channels. Cheap to clone.
#[derive(Debug, Clone)]
pub(super) struct Upstream {
    pub spec: TargetSpec,
    pub transport: McpTransport,
    pub http: reqwest::Client,
    pub credentials: Arc<dyn CredentialProvider>,
    /// Bumped whenever a listing changes; the catalog watches it.
    pub changed: watch::Sender<u64>,
    /// Where resource-updated notifications go (the catalog's event stream).
    pub events: broadcast::Sender<CatalogEvent>,
    pub shutdown: CancellationToken,
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) spec: TargetSpec,
    pub(super) transport: McpTransport,
    credentials: Arc<dyn CredentialProvider>,
    /// The user a per-user session acts for: every request it sends — the handshake, the
    /// listing, the event stream, calls — carries this caller's credential and no other.
    /// Replaced by the same user's newer token on each call (the identity never changes:
    /// the session is keyed by it). `None` for a shared session.
    pub(super) user: Arc<ArcSwapOption<Principal>>,
    live: ArcSwapOption<Live>,
    /// Single-flight: one connection attempt at a time.
    connect_lock: tokio::sync::Mutex<()>,
    pub(super) status: Status,
    /// The last stderr lines of the current stdio child, to explain its death in the log.
    stderr_tail: Arc<StderrTail>,
    /// Shared by every session of a per-user target: they list one upstream.
    pub(super) listing: Arc<ArcSwap<Listing>>,
    pub(super) relays: Arc<Relays>,
    /// What rmcp's client sends on an HTTP session, for the gateway's own tool calls
    /// (`direct.rs`).
    pub(super) wire: Arc<Wire>,
    /// The HTTP client of an HTTP session and its URL, built once for rmcp's transport and
    /// the direct calls.
    line: Option<(CredentialedClient, Arc<Url>)>,
    /// A 2026 upstream's resource subscriptions (`subscriptions/listen` streams).
    resource_streams: super::listen::ResourceStreams,
    changed: watch::Sender<u64>,
    pub(super) events: broadcast::Sender<CatalogEvent>,
    /// Wakes the supervisor: the session ended.
    lost: Arc<Notify>,
    shutdown: CancellationToken,
    generation: AtomicU64,
}

#[derive(Debug)]
struct Live {
    peer: Peer<RoleClient>,
    generation: u64,
    /// Cancelling it ends the session (and kills a stdio child).
    ct: CancellationToken,
    /// A stdio child's exit status, once it exited.
    exit: Option<watch::Receiver<Option<ExitStatus>>>,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.ct.cancel();
    }
}

pub(super) type Started = (
    futures::future::BoxFuture<'static, Result<ServerResult, TargetError>>,
    RelayReceiver,
    Registration,
    InFlight,
);

/// Open upstream sessions in the newest era the upstream speaks: 2026-07-28 when it answers
/// `server/discover`, else the 2025-11-25 `initialize` handshake. The era decides how the
/// upstream asks for input during a call (server→client requests, or `input_required`
/// results); the call pipeline bridges either to either kind of caller (`input.rs`).
/// `[mcp] protocol = "2025-11-25"` keeps an upstream on `initialize`.
fn lifecycle(spec: &TargetSpec) -> ClientLifecycleMode {
    match spec.kind {
        TargetKind::Mcp(_, McpProtocol::Sessions) => ClientLifecycleMode::Initialize,
        // Only MCP targets have sessions; the other kinds never get here.
        _ => ClientLifecycleMode::Auto {
            preferred_versions: vec![ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25],
            legacy_version: Some(ProtocolVersion::V_2025_11_25),
        },
    }
}

/// Whether the upstream reads the client's declaration from each request (2026-07-28), not
/// from the session's `initialize`.
fn speaks_per_request_meta(peer: &Peer<RoleClient>) -> bool {
    peer.peer_info()
        .is_some_and(|i| !i.protocol_version.has_initialize())
}

/// The caller's declaration, replacing the gateway's on one request (rmcp adds these after
/// its own): the upstream asks only for input the caller can give, and logs only if asked.
#[allow(deprecated)] // logging: see `CallerMeta`
fn caller_meta(caller: &CallerMeta) -> RequestMetaObject {
    let mut meta = RequestMetaObject::default();
    meta.set_client_capabilities(caller.capabilities.clone().unwrap_or_default());
    if let Some(level) = caller.log_level {
        meta.set_log_level(level);
    }
    meta
}

/// Tells the upstream a request was abandoned (`notifications/cancelled`) when its response
/// is dropped unanswered: the caller cancelled, or a call held for a 2026 caller's answers
/// expired. Without it the upstream would keep working (and waiting) for nobody.
struct CancelOnDrop(Option<(Peer<RoleClient>, RequestId)>);

impl CancelOnDrop {
    /// The request was answered: nothing to cancel.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some((peer, id)) = self.0.take() else {
            return;
        };
        if peer.is_transport_closed() {
            return;
        }
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let note = CancelledNotificationParam::new(
                    Some(id),
                    Some("the gateway's caller abandoned the call".into()),
                );
                let _ = peer.notify_cancelled(note).await;
            });
        }
    }
}

impl Session {
    /// The target's one shared session, kept up by a supervisor from now on.
    pub(super) fn shared(up: &Upstream) -> Arc<Self> {
        Self::supervised(up, Arc::new(ArcSwap::from_pointee(Listing::default())))
    }

    /// A session of the gateway's own, kept up by a supervisor from now on, that writes what
    /// the upstream lists into `listing`: a target's shared session, or the listing session
    /// of a per-user target (`[listing_auth]`).
    pub(super) fn supervised(up: &Upstream, listing: Arc<ArcSwap<Listing>>) -> Arc<Self> {
        let policy = status::RetryPolicy::Backoff {
            start: BACKOFF_START,
            max: BACKOFF_MAX,
        };
        let session = Arc::new(Self::new(
            up,
            Status::new(&up.spec.name, None, policy),
            listing,
            None,
        ));
        tokio::spawn(supervise(
            Arc::downgrade(&session),
            session.lost.clone(),
            session.shutdown.clone(),
        ));
        session
    }

    /// A session acting for `caller` only; it connects on first use.
    pub(super) fn for_user(
        up: &Upstream,
        principal: &Principal,
        listing: Arc<ArcSwap<Listing>>,
    ) -> Self {
        let status = Status::new(
            &up.spec.name,
            Some(principal.caller.label()),
            status::RetryPolicy::NextCall,
        );
        Self::new(up, status, listing, Some(principal.clone()))
    }

    fn new(
        up: &Upstream,
        status: Status,
        listing: Arc<ArcSwap<Listing>>,
        user: Option<Principal>,
    ) -> Self {
        let user = Arc::new(ArcSwapOption::from_pointee(user));
        let wire = Arc::<Wire>::default();
        let line = match &up.transport {
            McpTransport::Http { url } => Some((
                CredentialedClient {
                    http: up.http.clone(),
                    credentials: up.credentials.clone(),
                    target: Arc::from(up.spec.name.as_str()),
                    user: user.clone(),
                    wire: wire.clone(),
                },
                Arc::new(url.clone()),
            )),
            McpTransport::Stdio { .. } => None,
        };
        Self {
            spec: up.spec.clone(),
            transport: up.transport.clone(),
            credentials: up.credentials.clone(),
            user,
            live: ArcSwapOption::empty(),
            connect_lock: tokio::sync::Mutex::new(()),
            status,
            stderr_tail: Arc::default(),
            listing,
            relays: Arc::default(),
            wire,
            line,
            resource_streams: Default::default(),
            changed: up.changed.clone(),
            events: up.events.clone(),
            lost: Arc::new(Notify::new()),
            shutdown: up.shutdown.child_token(),
            generation: AtomicU64::new(0),
        }
    }

    /// Send a request that needs no relaying and wait for its answer (see
    /// `McpTarget::request`).
    pub(super) async fn request(
        self: &Arc<Self>,
        request: ClientRequest,
        timeout: Duration,
    ) -> Result<ServerResult, TargetError> {
        let (peer, generation) = self.peer().await?;
        // A 2026 upstream has no resources/subscribe: it streams updates on a listen.
        #[allow(deprecated)] // resources/subscribe: what 2025-era callers send
        if speaks_per_request_meta(&peer) {
            match &request {
                ClientRequest::SubscribeRequest(r) => {
                    let ct = self.live_ct().unwrap_or_default();
                    return self
                        .resource_streams
                        .subscribe(&peer, &r.params.uri, self.events.clone(), &ct)
                        .await
                        .map(|()| ServerResult::empty(()))
                        .map_err(|error| TargetError::Upstream {
                            target: self.spec.name.clone(),
                            error,
                        });
                }
                ClientRequest::UnsubscribeRequest(r) => {
                    self.resource_streams.unsubscribe(&r.params.uri);
                    return Ok(ServerResult::empty(()));
                }
                _ => {}
            }
        }
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(timeout);
        let _in_flight = self.relays.begin();
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| self.fail(e, timeout, generation))?;
        handle
            .await_response()
            .await
            .map_err(|e| self.fail(e, timeout, generation))
    }

    /// Whether a live session is open now.
    pub(super) fn is_open(&self) -> bool {
        self.current().is_some()
    }

    /// The current session's cancellation: what it starts ends with it.
    fn live_ct(&self) -> Option<CancellationToken> {
        self.current().map(|l| l.ct.clone())
    }

    fn current(&self) -> Option<Arc<Live>> {
        self.live
            .load_full()
            .filter(|l| !l.peer.is_transport_closed())
    }

    /// A stdio child's exit, if the OS already reported it, as the cause of a lost session.
    fn exited(&self, generation: u64) -> Option<Cause> {
        let live = self.live.load_full()?;
        let status = (*live.exit.as_ref()?.borrow())?;
        (live.generation == generation).then_some(Cause::Exited {
            status: Some(status),
        })
    }

    /// Obtain the call's credential before sending anything, so a token-endpoint or STS
    /// failure reaches the caller as itself (naming the OAuth error), not as a transport error.
    /// The HTTP layer then reuses the cached credential.
    pub(super) async fn check_credentials(
        &self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Result<(), TargetError> {
        let McpTransport::Http { url } = &self.transport else {
            return Ok(());
        };
        // A user's session acts for its user only, whatever the request says.
        let user = self.user.load_full();
        let principal = user.as_deref().or(principal);
        let req = OutboundRequest {
            target: &self.spec.name,
            method: "POST",
            url,
            headers: &[],
            body: b"",
            principal,
            tool: Some(tool),
        };
        self.credentials
            .attach(&req)
            .await
            .map(|_| ())
            .map_err(|error| TargetError::Credential {
                target: self.spec.name.clone(),
                error,
            })
    }

    pub(super) fn unavailable(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Unavailable {
            target: self.spec.name.clone(),
            reason: reason.into(),
        }
    }

    /// The live peer and its session generation, connecting first if needed.
    pub(super) async fn peer(self: &Arc<Self>) -> Result<(Peer<RoleClient>, u64), TargetError> {
        if let Some(live) = self.current() {
            return Ok((live.peer.clone(), live.generation));
        }
        self.connect().await
    }

    pub(super) async fn start_request(
        self: &Arc<Self>,
        request: ClientRequest,
        caller: CallerMeta,
        timeout: Duration,
    ) -> Result<Started, TargetError> {
        let (peer, generation) = self.peer().await?;
        if let Some(line) = self.direct_line(&peer, &request) {
            let declaration = speaks_per_request_meta(&peer).then(|| caller_meta(&caller));
            return direct::start(
                self,
                line,
                request,
                declaration,
                caller.progress,
                peer,
                generation,
                timeout,
            );
        }
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(timeout);
        if speaks_per_request_meta(&peer) {
            options.meta = Some(caller_meta(&caller));
        }
        let downstream_progress = caller.progress;
        let in_flight = self.relays.begin();
        let handle = match peer.send_request_with_option(request, options).await {
            Ok(h) => h,
            Err(e) => return Err(self.fail(e, timeout, generation)),
        };
        let (registration, relays) = self.relays.register(
            handle.id.clone(),
            handle.progress_token.clone(),
            downstream_progress,
        );
        let this = self.clone();
        let mut abandoned = CancelOnDrop(Some((peer, handle.id.clone())));
        let response = Box::pin(async move {
            let answer = handle
                .await_response()
                .await
                .map_err(|e| this.fail(e, timeout, generation));
            abandoned.disarm();
            answer
        });
        Ok((response, relays, registration, in_flight))
    }

    /// Whether `request` goes directly (`direct.rs`): a tool call on an HTTP session whose
    /// headers rmcp has already sent. In the 2026-07-28 era a request's headers also name it:
    /// the gateway writes `Mcp-Method` and a plain `Mcp-Name`, and leaves to rmcp the calls
    /// whose headers take more (a name to encode, arguments mapped to headers).
    fn direct_line(&self, peer: &Peer<RoleClient>, request: &ClientRequest) -> Option<Line> {
        let (client, url) = self.line.as_ref()?;
        let ClientRequest::CallToolRequest(call) = request else {
            return None;
        };
        let named = peer
            .peer_info()
            .is_some_and(|i| i.protocol_version >= ProtocolVersion::STANDARD_HEADERS);
        if named
            && (self.wire.header_params.load(Ordering::Relaxed)
                || !direct::plain_name(&call.params.name))
        {
            return None;
        }
        Some(Line {
            client: client.clone(),
            url: url.clone(),
            sent: self.wire.get()?,
            named,
        })
    }

    /// Classify a failed request; a transport failure also drops the session so the next
    /// call reconnects.
    pub(super) fn fail(
        self: &Arc<Self>,
        e: ServiceError,
        timeout: Duration,
        generation: u64,
    ) -> TargetError {
        let target = self.spec.name.clone();
        match e {
            ServiceError::McpError(error) => TargetError::Upstream { target, error },
            ServiceError::Timeout { .. } => TargetError::Timeout {
                target,
                after: timeout,
            },
            ServiceError::TransportClosed | ServiceError::TransportSend(_) => {
                let cause = self
                    .exited(generation)
                    .unwrap_or_else(|| cause::classify_service(&e));
                self.lost_during_call(cause, generation)
            }
            other => TargetError::Upstream {
                target,
                error: ErrorData::internal_error(
                    format!("the request failed: {}", cause::classify_service(&other)),
                    None,
                ),
            },
        }
    }

    /// A request of session `generation` failed for `cause` below MCP (the connection, HTTP):
    /// the session is dropped so the next call reconnects, and the caller is told why.
    pub(super) fn lost_during_call(&self, cause: Cause, generation: u64) -> TargetError {
        // A call's request that found nothing listening (HTTP opens connections per
        // request) says what a reconnect would: the upstream cannot be reached.
        let what = match (&self.transport, &cause) {
            (
                McpTransport::Http { .. },
                Cause::ConnectionRefused | Cause::Dns { .. } | Cause::Tls { .. },
            ) => format!("cannot connect to {}", self.upstream()),
            _ => "lost the connection during a call".to_string(),
        };
        let reason = self.explain(&what, cause.clone());
        self.drop_session(&reason, &cause, generation);
        TargetError::Unavailable {
            target: self.spec.name.clone(),
            reason,
        }
    }

    /// Forget session `generation` — and only it: a late failure of an old session must not
    /// take down the healthy one that replaced it.
    fn drop_session(&self, reason: &str, cause: &Cause, generation: u64) {
        let current = self.live.load_full();
        if current.as_ref().is_none_or(|l| l.generation != generation) {
            return;
        }
        // What rmcp sent on the lost session is not for the next one.
        self.wire.forget();
        let previous = self.live.compare_and_swap(&current, None);
        if previous
            .as_ref()
            .is_some_and(|p| current.as_ref().is_some_and(|c| Arc::ptr_eq(p, c)))
        {
            let detail = match &self.transport {
                McpTransport::Stdio { .. } => self.stderr_tail.describe(),
                McpTransport::Http { .. } => String::new(),
            };
            self.status.lost(reason, cause, &detail);
            self.changed.send_modify(|n| *n += 1);
            self.lost.notify_one();
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<(Peer<RoleClient>, u64), TargetError> {
        let _flight = self.connect_lock.lock().await;
        if let Some(live) = self.current() {
            return Ok((live.peer.clone(), live.generation)); // someone else connected while we waited
        }
        let started = Instant::now();
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let ct = self.shutdown.child_token();
        let (running, exit) = match self.open(ct.clone()).await {
            Ok(opened) => opened,
            Err(failure) => {
                ct.cancel();
                let detail = match (&failure, &self.transport) {
                    (OpenFailure::Handshake(_), McpTransport::Stdio { .. }) => {
                        self.stderr_tail.describe()
                    }
                    _ => String::new(),
                };
                let (problem, cause) = self.connect_problem(failure);
                self.status.failed(&problem, &cause, &detail);
                self.stderr_tail.set_quiet(true);
                return Err(self.unavailable(problem));
            }
        };
        let peer = running.peer().clone();
        if speaks_per_request_meta(&peer) {
            super::listen::list_changes(Arc::downgrade(self), peer.clone(), ct.clone());
        }
        let live = Arc::new(Live {
            peer: peer.clone(),
            generation,
            ct,
            exit: exit.clone(),
        });
        self.live.store(Some(live));
        let listing = self.listing.load();
        let server = peer.peer_info().and_then(|i| {
            i.server_info
                .as_ref()
                .map(|s| format!("{} {}", s.name, s.version))
        });
        self.stderr_tail.set_quiet(false);
        self.status.connected(Connected {
            server: server.as_deref(),
            tools: listing.tools.len(),
            prompts: listing.prompts.len(),
            resources: listing.resources.len() + listing.templates.len(),
            took: started.elapsed(),
        });
        // Watch the session; when it ends by itself, say why, forget it and wake the
        // supervisor.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let _ = running.waiting().await;
            let Some(this) = weak.upgrade() else { return };
            if this.shutdown.is_cancelled() || !this.is_current(generation) {
                return;
            }
            let cause = match exit {
                Some(mut exit) => match stdio::exit_status(&mut exit, Duration::from_secs(1)).await
                {
                    Some(status) => Cause::Exited {
                        status: Some(status),
                    },
                    None => Cause::Plain("the process closed its stdout".into()),
                },
                None => Cause::Plain("the connection to the upstream ended".into()),
            };
            let reason = this.explain("the session ended", cause.clone());
            this.drop_session(&reason, &cause, generation);
        });
        Ok((peer, generation))
    }

    fn is_current(&self, generation: u64) -> bool {
        self.live
            .load()
            .as_ref()
            .is_some_and(|l| l.generation == generation)
    }

    /// Open a session and fetch the listing, all within one `connect_timeout`: an upstream
    /// that never answers must not hold the connect lock (and every caller) forever, and
    /// "timed out after 10 s" must mean 10 s, however the time was split between the steps.
    async fn open(
        self: &Arc<Self>,
        ct: CancellationToken,
    ) -> Result<(Running, Option<ExitReceiver>), OpenFailure> {
        let limit = self.spec.connect_timeout;
        let deadline = tokio::time::Instant::now() + limit;
        let timed_out = Cause::TimedOut { after: Some(limit) };
        let client = UpstreamClient {
            inner: Arc::downgrade(self),
        };
        let (running, exit) = tokio::time::timeout_at(deadline, self.handshake(client, ct))
            .await
            .map_err(|_| OpenFailure::Handshake(timed_out.clone()))??;
        tokio::time::timeout_at(deadline, self.refresh(running.peer()))
            .await
            .map_err(|_| OpenFailure::Listing(timed_out))?
            .map_err(|RefreshError(c)| OpenFailure::Listing(c))?;
        Ok((running, exit))
    }

    async fn handshake(
        &self,
        client: UpstreamClient,
        ct: CancellationToken,
    ) -> Result<(Running, Option<ExitReceiver>), OpenFailure> {
        match &self.line {
            Some((client_with_credentials, url)) => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str())
                    .max_concurrent_requests(UPSTREAM_CALLS_IN_FLIGHT);
                let client_with_credentials = client_with_credentials.clone();
                let transport =
                    StreamableHttpClientTransport::with_client(client_with_credentials, config);
                let running = serve_client_with_lifecycle_and_ct(
                    client,
                    transport,
                    lifecycle(&self.spec),
                    ct,
                )
                .await
                .map_err(|e| OpenFailure::Handshake(cause::classify_init(&e)))?;
                Ok((running, None))
            }
            None => {
                let child = stdio::spawn(
                    &self.spec.name,
                    &self.transport,
                    ct.clone(),
                    self.stderr_tail.clone(),
                )
                .map_err(OpenFailure::Start)?;
                let mut exit = child.exit;
                match serve_client_with_lifecycle_and_ct(
                    client,
                    (child.stdout, child.stdin),
                    lifecycle(&self.spec),
                    ct,
                )
                .await
                {
                    Ok(running) => Ok((running, Some(exit))),
                    Err(e) => {
                        // A child that dies during the handshake: its exit says more than
                        // the closed pipe does.
                        let cause =
                            match stdio::exit_status(&mut exit, Duration::from_secs(1)).await {
                                Some(status) => Cause::Exited {
                                    status: Some(status),
                                },
                                None => cause::classify_init(&e),
                            };
                        Err(OpenFailure::Handshake(cause))
                    }
                }
            }
        }
    }

    pub(super) async fn refresh(&self, peer: &Peer<RoleClient>) -> Result<(), RefreshError> {
        let _in_flight = self.relays.begin();
        let caps = peer
            .peer_info()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let err = |e: ServiceError| RefreshError(cause::classify_service(&e));
        let tools = if caps.tools.is_some() {
            peer.list_all_tools().await.map_err(err)?
        } else {
            vec![]
        };
        let prompts = if caps.prompts.is_some() {
            peer.list_all_prompts().await.map_err(err)?
        } else {
            vec![]
        };
        let (resources, templates) = if caps.resources.is_some() {
            (
                peer.list_all_resources().await.map_err(err)?,
                peer.list_all_resource_templates().await.map_err(err)?,
            )
        } else {
            (vec![], vec![])
        };
        self.wire.header_params.store(
            tools.iter().any(|t| direct::maps_headers(&t.input_schema)),
            Ordering::Relaxed,
        );
        self.listing.store(Arc::new(Listing {
            tools,
            prompts,
            resources,
            templates,
            capabilities: caps,
        }));
        self.changed.send_modify(|n| *n += 1);
        Ok(())
    }
}

/// Keep a session up: connect, wait for it to end, back off, reconnect.
async fn supervise(inner: Weak<Session>, lost: Arc<Notify>, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_START;
    loop {
        let Some(this) = inner.upgrade() else { return };
        let connected = match this.current() {
            Some(_) => true,
            None => this.connect().await.is_ok(),
        };
        let wait = if connected {
            backoff = BACKOFF_START;
            None
        } else {
            let d = backoff;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            tracing::debug!(target: "portcullis::targets", target_name = %this.spec.name, "target `{}`: next connection attempt in {}", this.spec.name, crate::words::duration(d));
            Some(d)
        };
        let session_ended = lost.notified();
        drop(this);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = session_ended, if wait.is_none() => {}
            _ = tokio::time::sleep(wait.unwrap_or_default()), if wait.is_some() => {}
        }
    }
}

type Running = rmcp::service::RunningService<RoleClient, UpstreamClient>;
type ExitReceiver = watch::Receiver<Option<ExitStatus>>;

/// Fetching the listing failed.
#[derive(Debug)]
pub(crate) struct RefreshError(pub Cause);

impl std::fmt::Display for RefreshError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "listing its tools failed: {}", self.0)
    }
}

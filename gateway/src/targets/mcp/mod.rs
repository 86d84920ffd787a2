//! An MCP upstream (streamable HTTP or a stdio child process) behind one long-lived session.
//!
//! A supervisor task keeps the session up: it connects at start, and when the session ends
//! (child exited, transport failed) it reconnects with exponential backoff. A call that finds
//! no live session tries one immediate reconnect before failing, so a call made after the
//! upstream came back succeeds without waiting for the next backoff tick — and a call to a
//! dead upstream fails fast with a clear error instead of hanging. Every failure is explained
//! with a [`Cause`] from `targets::cause`, and every change of state is one log line
//! (`status`).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::model::*;
use rmcp::service::{PeerRequestOptions, ServiceError};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::{ErrorData, Peer, RoleClient, ServiceExt};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

mod client;
mod explain;
pub mod http;
mod status;
mod stdio;

use super::cause::{self, Cause, ExitStatus};
use super::relay::{InFlight, Registration, RelayReceiver, Relays};
use super::{Health, Listing, TargetError};
use crate::config::{McpTransport, TargetSpec};
use crate::events::CatalogEvent;
use crate::identity::Caller;
use crate::outbound::{CredentialProvider, OutboundRequest};
use client::UpstreamClient;
use explain::OpenFailure;
use http::{CredentialedClient, OutboundContext};
use status::{Connected, Status};
use stdio::StderrTail;

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// A handle on a target: its settings plus its upstream session. Cheap to clone. A reload
/// that changes only call-level settings (timeout, prefix, scopes, description) makes a new
/// handle on the same session ([`McpTarget::with_spec`]); the session ends when the last
/// handle is dropped, i.e. after the last call that still uses it.
#[derive(Debug, Clone)]
pub struct McpTarget {
    inner: Arc<Inner>,
    /// The settings calls read (timeout, prefix, scopes); the session keeps the ones it was
    /// opened with.
    spec: Arc<TargetSpec>,
}

#[derive(Debug)]
struct Inner {
    spec: TargetSpec,
    transport: McpTransport,
    http: reqwest::Client,
    credentials: Arc<dyn CredentialProvider>,
    live: ArcSwapOption<Live>,
    /// Single-flight: one connection attempt at a time.
    connect_lock: tokio::sync::Mutex<()>,
    status: Status,
    /// The last stderr lines of the current stdio child, to explain its death in the log.
    stderr_tail: Arc<StderrTail>,
    listing: ArcSwap<Listing>,
    relays: Relays,
    /// Bumped whenever the listing changes; the catalog watches it.
    changed: watch::Sender<u64>,
    /// Where resource-updated notifications go (the catalog's event stream).
    events: broadcast::Sender<CatalogEvent>,
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

/// An in-flight upstream call: the pending response plus the relay channel the caller
/// must serve until the response arrives.
pub struct PendingCall<'a, T> {
    pub response: futures::future::BoxFuture<'a, Result<T, TargetError>>,
    pub relays: RelayReceiver,
    _registration: Registration<'a>,
    _in_flight: InFlight<'a>,
}

impl<T> std::fmt::Debug for PendingCall<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingCall").finish_non_exhaustive()
    }
}

impl McpTarget {
    /// Create the target and start its supervisor. `changed` is shared by all targets.
    pub fn start(
        spec: TargetSpec,
        transport: McpTransport,
        credentials: Arc<dyn CredentialProvider>,
        changed: watch::Sender<u64>,
        events: broadcast::Sender<CatalogEvent>,
        shutdown: CancellationToken,
    ) -> Self {
        let http = reqwest::Client::builder()
            // Never follow redirects to another host with our credentials (SSRF guidance).
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(spec.connect_timeout)
            .build()
            .unwrap_or_default();
        let policy = status::RetryPolicy {
            start: BACKOFF_START,
            max: BACKOFF_MAX,
        };
        let status = Status::new(&spec.name, policy);
        let handle_spec = Arc::new(spec.clone());
        let inner = Arc::new(Inner {
            spec,
            transport,
            http,
            credentials,
            live: ArcSwapOption::empty(),
            connect_lock: tokio::sync::Mutex::new(()),
            status,
            stderr_tail: Arc::default(),
            listing: ArcSwap::from_pointee(Listing::default()),
            relays: Relays::default(),
            changed,
            events,
            lost: Arc::new(Notify::new()),
            shutdown,
            generation: AtomicU64::new(0),
        });
        tokio::spawn(supervise(
            Arc::downgrade(&inner),
            inner.lost.clone(),
            inner.shutdown.clone(),
        ));
        Self {
            inner,
            spec: handle_spec,
        }
    }

    /// Whether `spec` can be served by this target's session: same name, upstream,
    /// credential and connect timeout.
    pub fn serves(&self, spec: &TargetSpec) -> bool {
        let open = &self.inner.spec;
        open.name == spec.name
            && open.kind == spec.kind
            && open.auth == spec.auth
            && open.connect_timeout == spec.connect_timeout
    }

    /// A handle with new call-level settings on the same session (see [`Self::serves`]).
    pub fn with_spec(&self, spec: TargetSpec) -> Self {
        debug_assert!(self.serves(&spec));
        Self {
            inner: self.inner.clone(),
            spec: Arc::new(spec),
        }
    }

    /// Whether two handles share one upstream session.
    pub fn same_session(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    pub fn listing(&self) -> Arc<Listing> {
        self.inner.listing.load_full()
    }

    pub fn health(&self) -> Health {
        match self.inner.current() {
            Some(_) => Health::Connected,
            None => Health::Down {
                reason: self.inner.status.reason(),
            },
        }
    }

    /// How long the first connection attempt has been running; `None` once it ended.
    pub fn first_attempt_running(&self) -> Option<Duration> {
        self.inner.status.first_attempt_running()
    }

    /// Whether the target was ever connected (so its tools are known).
    pub fn ever_connected(&self) -> bool {
        self.inner.status.ever_connected()
    }

    /// Connect now if not connected; used at startup and by `portcullis check`.
    pub async fn ensure_connected(&self) -> Result<(), TargetError> {
        self.inner.peer().await.map(|_| ())
    }

    /// Start a `tools/call`. The caller polls the returned relays while awaiting the response.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        downstream_progress: Option<ProgressToken>,
        caller: Option<&Caller>,
    ) -> Result<PendingCall<'_, CallToolResult>, TargetError> {
        let tool = params.name.to_string();
        let mut request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // In-memory only (never serialized): lets the HTTP layer attach per-call credentials.
        request.extensions_mut().insert(OutboundContext {
            caller: caller.cloned(),
            tool: Some(tool),
        });
        let pending = self
            .inner
            .start_request(request, downstream_progress, self.spec.call_timeout)
            .await?;
        let target = self.name().to_string();
        Ok(PendingCall {
            response: Box::pin(async move {
                match pending.0.await? {
                    ServerResult::CallToolResult(r) => Ok(r),
                    ServerResult::EmptyResult(_) => Ok(CallToolResult::success(vec![])),
                    other => Err(unexpected(&target, &other)),
                }
            }),
            relays: pending.1,
            _registration: pending.2,
            _in_flight: pending.3,
        })
    }

    /// The credential phase of a call: obtain the target's credential for `caller` and the
    /// upstream `tool` before anything is sent, so a token-endpoint or STS failure reaches the
    /// caller as itself. The HTTP layer attaches the (then cached) credential to each request.
    pub async fn credential(&self, caller: Option<&Caller>, tool: &str) -> Result<(), TargetError> {
        self.inner.check_credentials(caller, tool).await
    }

    /// A request that needs no relaying (prompts, resources, completion).
    /// Not registered for relays: only tool calls are, so that attribution by "the one call
    /// in flight" can never pick a request whose caller is not listening for relays.
    pub async fn request(&self, request: ClientRequest) -> Result<ServerResult, TargetError> {
        let inner = &self.inner;
        let (peer, generation) = inner.peer().await?;
        let timeout = self.spec.call_timeout;
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(timeout);
        let _in_flight = inner.relays.begin();
        let handle = peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| inner.fail(e, timeout, generation))?;
        handle
            .await_response()
            .await
            .map_err(|e| inner.fail(e, timeout, generation))
    }

    /// Refetch the listing (after `list_changed`, or on demand).
    pub async fn refresh(&self) -> Result<(), TargetError> {
        let (peer, _) = self.inner.peer().await?;
        self.inner
            .refresh(&peer)
            .await
            .map_err(|e| self.inner.unavailable(e.to_string()))
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

type Started<'a> = (
    futures::future::BoxFuture<'a, Result<ServerResult, TargetError>>,
    RelayReceiver,
    Registration<'a>,
    InFlight<'a>,
);

impl Inner {
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
    async fn check_credentials(
        &self,
        caller: Option<&Caller>,
        tool: &str,
    ) -> Result<(), TargetError> {
        let McpTransport::Http { url } = &self.transport else {
            return Ok(());
        };
        let req = OutboundRequest {
            target: &self.spec.name,
            method: "POST",
            url,
            headers: &[],
            body: b"",
            caller,
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

    fn unavailable(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Unavailable {
            target: self.spec.name.clone(),
            reason: reason.into(),
        }
    }

    /// The live peer, connecting first if needed.
    /// The live peer and its session generation, connecting first if needed.
    async fn peer(self: &Arc<Self>) -> Result<(Peer<RoleClient>, u64), TargetError> {
        if let Some(live) = self.current() {
            return Ok((live.peer.clone(), live.generation));
        }
        self.connect().await
    }

    async fn start_request(
        self: &Arc<Self>,
        request: ClientRequest,
        downstream_progress: Option<ProgressToken>,
        timeout: Duration,
    ) -> Result<Started<'_>, TargetError> {
        let (peer, generation) = self.peer().await?;
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(timeout);
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
        let response = Box::pin(async move {
            handle
                .await_response()
                .await
                .map_err(|e| this.fail(e, timeout, generation))
        });
        Ok((response, relays, registration, in_flight))
    }

    /// Classify a failed request; a transport failure also drops the session so the next
    /// call reconnects.
    fn fail(self: &Arc<Self>, e: ServiceError, timeout: Duration, generation: u64) -> TargetError {
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
                TargetError::Unavailable { target, reason }
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

    /// Forget session `generation` — and only it: a late failure of an old session must not
    /// take down the healthy one that replaced it.
    fn drop_session(&self, reason: &str, cause: &Cause, generation: u64) {
        let current = self.live.load_full();
        if current.as_ref().is_none_or(|l| l.generation != generation) {
            return;
        }
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
        match &self.transport {
            McpTransport::Http { url } => {
                let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
                let client_with_credentials = CredentialedClient {
                    http: self.http.clone(),
                    credentials: self.credentials.clone(),
                    target: Arc::from(self.spec.name.as_str()),
                };
                let transport =
                    StreamableHttpClientTransport::with_client(client_with_credentials, config);
                let running = client
                    .serve_with_ct(transport, ct)
                    .await
                    .map_err(|e| OpenFailure::Handshake(cause::classify_init(&e)))?;
                Ok((running, None))
            }
            McpTransport::Stdio { .. } => {
                let child = stdio::spawn(
                    &self.spec.name,
                    &self.transport,
                    ct.clone(),
                    self.stderr_tail.clone(),
                )
                .map_err(OpenFailure::Start)?;
                let mut exit = child.exit;
                match client.serve_with_ct((child.stdout, child.stdin), ct).await {
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

    async fn refresh(&self, peer: &Peer<RoleClient>) -> Result<(), RefreshError> {
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
async fn supervise(inner: Weak<Inner>, lost: Arc<Notify>, shutdown: CancellationToken) {
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

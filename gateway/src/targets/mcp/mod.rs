//! An MCP upstream (streamable HTTP or a stdio child process) behind one long-lived session.
//!
//! A supervisor task keeps the session up: it connects at start, and when the session ends
//! (child exited, transport failed) it reconnects with exponential backoff. A call that finds
//! no live session tries one immediate reconnect before failing, so a call made after the
//! upstream came back succeeds without waiting for the next backoff tick — and a call to a
//! dead upstream fails fast with a clear error instead of hanging.

use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use rmcp::model::*;
use rmcp::service::{PeerRequestOptions, ServiceError};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::{StreamableHttpClientTransport, TokioChildProcess};
use rmcp::{ErrorData, Peer, RoleClient, ServiceExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::{Notify, broadcast, watch};
use tokio_util::sync::CancellationToken;

mod client;
pub mod http;

use super::relay::{InFlight, Registration, RelayReceiver, Relays};
use super::{Health, Listing, TargetError};
use crate::catalog::CatalogEvent;
use crate::config::{McpTransport, TargetSpec};
use crate::identity::Caller;
use crate::outbound::{CredentialProvider, OutboundRequest};
use client::UpstreamClient;
use http::{CredentialedClient, OutboundContext};

const BACKOFF_START: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

#[derive(Debug, Clone)]
pub struct McpTarget {
    inner: Arc<Inner>,
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
    last_error: Mutex<Option<String>>,
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
        let inner = Arc::new(Inner {
            spec,
            transport,
            http,
            credentials,
            live: ArcSwapOption::empty(),
            connect_lock: tokio::sync::Mutex::new(()),
            last_error: Mutex::new(Some("not connected yet".into())),
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
        Self { inner }
    }

    pub fn name(&self) -> &str {
        &self.inner.spec.name
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.inner.spec
    }

    pub fn listing(&self) -> Arc<Listing> {
        self.inner.listing.load_full()
    }

    pub fn health(&self) -> Health {
        match self.inner.current() {
            Some(_) => Health::Connected,
            None => Health::Down {
                reason: self
                    .inner
                    .last_error()
                    .unwrap_or_else(|| "not connected".into()),
            },
        }
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
        self.inner.check_credentials(caller, &tool).await?;
        let mut request = ClientRequest::CallToolRequest(CallToolRequest::new(params));
        // In-memory only (never serialized): lets the HTTP layer attach per-call credentials.
        request.extensions_mut().insert(OutboundContext {
            caller: caller.cloned(),
            tool: Some(tool),
        });
        let pending = self
            .inner
            .start_request(request, downstream_progress)
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

    /// A request that needs no relaying (prompts, resources, completion).
    /// Not registered for relays: only tool calls are, so that attribution by "the one call
    /// in flight" can never pick a request whose caller is not listening for relays.
    pub async fn request(&self, request: ClientRequest) -> Result<ServerResult, TargetError> {
        let inner = &self.inner;
        let (peer, generation) = inner.peer().await?;
        let timeout = inner.spec.call_timeout;
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
        self.inner.refresh(&peer).await
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

    fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    fn set_error(&self, e: impl Into<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = Some(e.into());
        }
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
    ) -> Result<Started<'_>, TargetError> {
        let (peer, generation) = self.peer().await?;
        let timeout = self.spec.call_timeout;
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
                let reason = format!("connection lost ({e})");
                self.drop_session(&reason, generation);
                TargetError::Unavailable { target, reason }
            }
            other => TargetError::Upstream {
                target,
                error: ErrorData::internal_error(other.to_string(), None),
            },
        }
    }

    /// Forget session `generation` — and only it: a late failure of an old session must not
    /// take down the healthy one that replaced it.
    fn drop_session(&self, reason: &str, generation: u64) {
        let current = self.live.load_full();
        if current.as_ref().is_none_or(|l| l.generation != generation) {
            return;
        }
        let previous = self.live.compare_and_swap(&current, None);
        if previous
            .as_ref()
            .is_some_and(|p| current.as_ref().is_some_and(|c| Arc::ptr_eq(p, c)))
        {
            tracing::warn!(target: "portcullis::targets", target_name = %self.spec.name, "session lost: {reason}");
            self.set_error(reason);
            self.changed.send_modify(|n| *n += 1);
            self.lost.notify_one();
        }
    }

    async fn connect(self: &Arc<Self>) -> Result<(Peer<RoleClient>, u64), TargetError> {
        let _flight = self.connect_lock.lock().await;
        if let Some(live) = self.current() {
            return Ok((live.peer.clone(), live.generation)); // someone else connected while we waited
        }
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        let ct = self.shutdown.child_token();
        let client = UpstreamClient {
            inner: Arc::downgrade(self),
        };
        let attempt =
            tokio::time::timeout(self.spec.connect_timeout, self.open(client, ct.clone()));
        let running = match attempt.await {
            Ok(Ok(r)) => r,
            Ok(Err(reason)) => {
                self.set_error(reason.clone());
                return Err(self.unavailable(reason));
            }
            Err(_) => {
                let reason = format!(
                    "no handshake within {}",
                    humantime::format_duration(self.spec.connect_timeout)
                );
                self.set_error(reason.clone());
                ct.cancel();
                return Err(self.unavailable(reason));
            }
        };
        let peer = running.peer().clone();
        // The listing is part of connecting: an upstream that never answers tools/list must
        // not hold the connect lock (and every caller) forever.
        let listed = tokio::time::timeout(self.spec.connect_timeout, self.refresh(&peer))
            .await
            .unwrap_or_else(|_| {
                Err(self.unavailable("no answer to tools/list within the connect timeout"))
            });
        if let Err(e) = listed {
            ct.cancel();
            self.set_error(e.to_string());
            return Err(e);
        }
        let live = Arc::new(Live {
            peer: peer.clone(),
            generation,
            ct,
        });
        self.live.store(Some(live));
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = None;
        }
        let info = peer.peer_info().and_then(|i| {
            i.server_info
                .as_ref()
                .map(|s| format!("{} {}", s.name, s.version))
        });
        tracing::info!(target: "portcullis::targets", target_name = %self.spec.name, server = info.as_deref().unwrap_or("?"), "connected");
        // Watch the session; when it ends, forget it and wake the supervisor.
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let quit = running.waiting().await;
            if let Some(this) = weak.upgrade() {
                let still_current = this
                    .live
                    .load()
                    .as_ref()
                    .is_some_and(|l| l.generation == generation);
                if still_current {
                    this.drop_session(&format!("session ended ({quit:?})"), generation);
                }
            }
        });
        Ok((peer, generation))
    }

    async fn open(
        &self,
        client: UpstreamClient,
        ct: CancellationToken,
    ) -> Result<rmcp::service::RunningService<RoleClient, UpstreamClient>, String> {
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
                client
                    .serve_with_ct(transport, ct)
                    .await
                    .map_err(|e| format!("cannot open a session at {url}: {e}"))
            }
            McpTransport::Stdio {
                command,
                args,
                env,
                inherit,
                cwd,
            } => {
                let mut cmd = tokio::process::Command::new(command);
                // A clean environment: the child sees only what its registration grants, not
                // other targets' secrets or the gateway's cloud credentials.
                cmd.args(args).kill_on_drop(true).env_clear();
                for name in inherit {
                    if let Some(value) = std::env::var_os(name) {
                        cmd.env(name, value);
                    }
                }
                for (k, v) in env {
                    cmd.env(k, v.expose());
                }
                if let Some(dir) = cwd {
                    cmd.current_dir(dir);
                }
                let (proc, stderr) = TokioChildProcess::builder(cmd)
                    .stderr(Stdio::piped())
                    .spawn()
                    .map_err(|e| format!("cannot start `{}`: {e}", command.display()))?;
                if let Some(stderr) = stderr {
                    tokio::spawn(forward_stderr(self.spec.name.clone(), stderr));
                }
                client.serve_with_ct(proc, ct).await.map_err(|e| {
                    format!(
                        "`{}` did not complete the MCP handshake: {e}",
                        command.display()
                    )
                })
            }
        }
    }

    async fn refresh(&self, peer: &Peer<RoleClient>) -> Result<(), TargetError> {
        let _in_flight = self.relays.begin();
        let caps = peer
            .peer_info()
            .map(|i| i.capabilities.clone())
            .unwrap_or_default();
        let err = |e: ServiceError| self.unavailable(format!("cannot list its offerings: {e}"));
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
            tracing::debug!(target: "portcullis::targets", target_name = %this.spec.name, "reconnecting in {}", humantime::format_duration(d));
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

async fn forward_stderr(target: String, stderr: tokio::process::ChildStderr) {
    let mut lines = BufReader::new(stderr).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        tracing::info!(target: "portcullis::upstream_stderr", target_name = %target, "{line}");
    }
}

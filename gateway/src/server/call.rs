//! The call pipeline for `tools/call`, read top to bottom in [`call_tool`]:
//!
//! 1. authenticate — done before the MCP layer (`inbound/layer.rs`); the caller is read here;
//! 2. resolve — the gateway tool name to (target, upstream name), from one catalog view;
//! 3. authorize — `policy::tool_call` on that view;
//! 4. credential — the target's credential for this caller, before anything is sent;
//! 5. call — the upstream call, relaying what the upstream asks of the caller, until the
//!    target's deadline or the client's cancellation;
//! 6. audit — one event per call, whatever the outcome.
//!
//! Every phase reads the one [`CallContext`]; every failure is a [`CallError`], turned into
//! the caller's answer in one place (`call_error.rs`).

use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, ClientCapabilities, InputRequests,
    InputRequiredResult, ProtocolVersion, ResultType, ServerNotification,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer};

use super::call_error::{CallError, ClientKind, Era, URL_ELICITATION_REQUIRED};
use super::{Gateway, strip_meta};
use crate::catalog::Catalog;
use crate::catalog::search_tool::SEARCH_TOOL;
use crate::consent::Ask;
use crate::identity::Caller;
use crate::input::{self, Answered, Asked, Need, Waiting};
use crate::outbound::CredentialError;
use crate::outbound::Principal;
use crate::policy::{self, Decision};
use crate::request_state::{Binding, Resume, STATE_TTL, StateRefused};
use crate::runtime::Live;
use crate::runtime::Runtime;
use crate::targets::relay::Relay;
use crate::targets::{CallerMeta, Health, PendingCall, Target, TargetError};
use crate::telemetry::{AuditEvent, Decision as AuditDecision, Outcome, PolicyOutcome};

/// What every phase of one call knows. Built from the request before the first phase.
#[derive(Debug)]
pub struct CallContext {
    /// The caller and the token they presented (which only the credential phase's
    /// `outbound/` code can read); `None` when inbound authentication is off.
    pub principal: Option<Principal>,
    /// The `x-request-id` the HTTP layer assigned (or the client sent), else the JSON-RPC id.
    pub request_id: String,
    /// The HTTP path as the client sent it (`/mcp`).
    pub path: Option<String>,
    /// The gateway tool name the caller asked for.
    pub tool: String,
    /// Set by resolve.
    pub target: Option<String>,
    /// Set by resolve: when the call must have ended (the target's `timeout`).
    pub deadline: Option<tokio::time::Instant>,
    /// The client's era and whether it can open URLs for its user (consent hand-off).
    pub client: ClientKind,
    pub started: Instant,
    /// Set by authorize: what the policies decided, for the audit event.
    pub policy: Option<policy::Record>,
    /// Set by resolve, for a target with `audit_arguments = true`: the arguments as JSON.
    pub arguments: Option<String>,
}

impl CallContext {
    fn of(req: &CallToolRequestParams, ctx: &RequestContext<RoleServer>) -> Self {
        let parts = ctx.extensions.get::<http::request::Parts>();
        Self {
            principal: Principal::of_request(parts),
            request_id: request_id(ctx),
            path: request_path(ctx),
            tool: req.name.to_string(),
            target: None,
            deadline: None,
            policy: None,
            arguments: None,
            client: ClientKind {
                era: if ctx.protocol_version() == Some(ProtocolVersion::V_2026_07_28) {
                    Era::Stateless
                } else {
                    Era::Sessions
                },
                // Read only when a consent hand-off needs it (see `call_tool`).
                url_elicitation: false,
            },
            started: Instant::now(),
        }
    }

    pub fn caller(&self) -> Option<&Caller> {
        self.principal.as_ref().map(|p| &p.caller)
    }
}

pub(super) async fn call_tool(
    gw: &Gateway,
    req: CallToolRequestParams,
    ctx: RequestContext<RoleServer>,
) -> Result<CallToolResponse, ErrorData> {
    // 1. Authenticate: the HTTP layer verified the token; the context carries the caller.
    let mut call = CallContext::of(&req, &ctx);
    // One runtime for the whole call, even if a reload swaps it meanwhile.
    let runtime = gw.live().load();
    let outcome = tokio::select! {
        r = phases(&runtime, gw.live(), &mut call, req, &ctx) => r,
        _ = ctx.ct.cancelled() => Err(CallError::Cancelled),
    };
    // Whether the client can open URLs for its user matters only to a consent hand-off: its
    // capabilities are read then, not on every call.
    if matches!(outcome, Err(CallError::ConsentRequired { .. })) {
        call.client.url_elicitation =
            Need::UrlElicitation.declared_by(ctx.client_capabilities().as_ref());
    }
    // 6. Audit, then answer.
    audit(&call, outcome)
}

/// The `x-request-id` the HTTP layer assigned (or the client sent), else the JSON-RPC id.
pub(super) fn request_id(ctx: &RequestContext<RoleServer>) -> String {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| crate::telemetry::request_id(&p.headers))
        .map_or_else(|| ctx.id.to_string(), str::to_string)
}

/// The HTTP path as the client sent it (as the router saw it, before any nesting).
pub(super) fn request_path(ctx: &RequestContext<RoleServer>) -> Option<String> {
    ctx.extensions.get::<http::request::Parts>().map(|p| {
        p.extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| p.uri.path().to_string(), |u| u.path().to_string())
    })
}

/// Phases 2–5.
async fn phases(
    runtime: &Runtime,
    live: &Live,
    call: &mut CallContext,
    mut req: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResponse, CallError> {
    // A 2026-07-28 retry echoes the state it was given with `input_required`: it must have
    // been sealed for this caller, tool and arguments, and not have expired.
    let resumed = match req.request_state.take() {
        Some(state) => Some(open_state(live, call, &state, req.arguments.as_ref())?),
        None => None,
    };
    // The answers belong to what the state resumes (or, without one, to the upstream).
    let answers = req.input_responses.take();

    // 2. Resolve. A name not in the view may still be served: a target that just connected
    //    has its listing merged by a background task a moment later (merge it now), and a
    //    per-user target learns its tools from a user's own session (open this caller's).
    let catalog = &runtime.catalog;
    let mut view = catalog.view();
    if !view.tool_routes.contains_key(&call.tool) && catalog.is_behind() {
        catalog.rebuild();
        view = catalog.view();
    }
    if !view.tool_routes.contains_key(&call.tool)
        && catalog.learn_user_listings(call.principal.as_ref()).await
    {
        view = catalog.view();
    }
    if catalog.search_tool() && call.tool == SEARCH_TOOL {
        let caller = call.caller();
        let lister = policy::Lister::new(runtime.policies.as_deref(), &view, caller);
        let found = super::search::answer(&view, &lister, req.arguments.as_ref());
        return Ok(CallToolResponse::Complete(found));
    }
    let (target, upstream_name) = resolve(catalog, &view, call)?;
    call.target = Some(target.name().to_string());
    if target.spec().audit_arguments {
        call.arguments = Some(req.arguments.as_ref().map_or_else(
            || "{}".into(),
            |a| serde_json::Value::Object(a.clone()).to_string(),
        ));
    }
    call.deadline = Some(tokio::time::Instant::now() + target.spec().call_timeout);

    // 3. Authorize, on the view the call is routed by (the HTTP step-up asked the same
    //    question a moment earlier; a tool that appeared in between is still checked).
    //    The policies decide with the actual arguments; their verdict is audited.
    let verdict = policy::tool_call(
        runtime.policies.as_deref(),
        &view,
        call.caller(),
        &call.tool,
        req.arguments.as_ref(),
    );
    call.policy = verdict.record;
    match verdict.decision {
        Decision::Allow => {}
        Decision::NeedsScopes { missing, .. } => {
            return Err(CallError::Forbidden {
                tool: call.tool.clone(),
                missing,
            });
        }
        Decision::Denied(denial) => {
            return Err(CallError::Denied {
                tool: call.tool.clone(),
                denial,
            });
        }
    }

    // 3a. Resume what the state names: a held call goes on with the answers (its credential
    //     was attached when it started); a 2026 upstream gets its own state back.
    let mut earlier_consent = None;
    match resumed {
        Some(Resume::Held { call: id }) => {
            let waiting = live
                .held()
                .take(&id)
                .filter(|w| w.target == target.name())
                .ok_or(CallError::StateRefused(StateRefused::Used))?;
            req.name = upstream_name.into();
            strip_meta(&mut req.meta);
            return match waiting.answer(answers).map_err(CallError::BadAnswer)? {
                Answered::All(pending) => drive(&target, req, pending, ctx, call, live).await,
                Answered::Partly(waiting) => Ok(hold(live, call, &req, waiting, &target)),
            };
        }
        Some(Resume::Upstream {
            target: sealed_for,
            state,
        }) => {
            if sealed_for != target.name() {
                return Err(CallError::StateRefused(StateRefused::NotIssuedForThisCall));
            }
            req.request_state = state;
            req.input_responses = answers;
        }
        // Answers to the gateway's own consent link: nothing for the upstream.
        Some(Resume::Consent { consent }) => earlier_consent = Some(consent),
        // Answers without a state are for a stateless upstream to read, or ignore.
        None => req.input_responses = answers,
    }

    // 4. Credential. A target acting with the user's consent may need it first: the caller
    //    gets a link to give it (how depends on the client, see `call_error.rs`).
    match target
        .credential(call.principal.as_ref(), &upstream_name)
        .await
    {
        Ok(()) => {}
        Err(TargetError::Credential {
            error: CredentialError::ConsentNeeded { scopes },
            ..
        }) => {
            let caller = call.caller().ok_or_else(|| {
                CallError::Internal("a consent is needed for a call without a caller".into())
            })?;
            return Err(live
                .consents()
                .ask(Ask {
                    caller,
                    tool: &call.tool,
                    arguments: req.arguments.as_ref(),
                    target: target.name(),
                    provider: &target
                        .user_grants()
                        .map_or_else(|| target.name().to_string(), |g| g.provider_label()),
                    scopes,
                    // The 2025-11-25 session to tell when the consent completes; read only here.
                    session_id: ctx
                        .extensions
                        .get::<http::request::Parts>()
                        .and_then(|p| p.headers.get("mcp-session-id"))
                        .and_then(|v| v.to_str().ok()),
                    earlier: earlier_consent.as_deref(),
                })
                .await);
        }
        Err(e) => return Err(e.into()),
    }

    // 5. Call upstream.
    req.name = upstream_name.into();
    strip_meta(&mut req.meta);
    let pending = target
        .call_tool(req.clone(), caller_meta(ctx, call), call.principal.as_ref())
        .await?;
    drive(&target, req, pending, ctx, call, live).await
}

/// What the caller declared, for a 2026-07-28 upstream (see [`CallerMeta`]). A 2025-11-25
/// caller set its log level on its session, which the gateway does not forward (upstream
/// sessions are shared): it gets every level, as from a 2025 upstream.
#[allow(deprecated)] // logging: what 2025-era callers and upstreams still use
fn caller_meta(ctx: &RequestContext<RoleServer>, call: &CallContext) -> CallerMeta {
    CallerMeta {
        progress: ctx.meta.get_progress_token(),
        capabilities: ctx.client_capabilities(),
        log_level: match call.client.era {
            Era::Stateless => ctx.meta.log_level(),
            Era::Sessions => Some(rmcp::model::LoggingLevel::Debug),
        },
    }
}

/// What a 2026 retry's `requestState` resumes. A refused state is logged with its reason;
/// the caller hears one message for every reason (the spec asks not to help a forger).
fn open_state(
    live: &Live,
    call: &CallContext,
    state: &str,
    arguments: Option<&rmcp::model::JsonObject>,
) -> Result<Resume, CallError> {
    live.states()
        .open(state, &binding(call, arguments))
        .map_err(|why| {
            let who = call
                .caller()
                .map_or_else(|| "an anonymous caller".to_string(), Caller::label);
            tracing::warn!(
                target: "portcullis::calls",
                "refused the requestState of {who}'s retry of `{}`: {why}",
                call.tool
            );
            CallError::StateRefused(why)
        })
}

fn binding<'a>(
    call: &'a CallContext,
    arguments: Option<&'a rmcp::model::JsonObject>,
) -> Binding<'a> {
    Binding {
        caller: call.caller(),
        tool: &call.tool,
        arguments,
    }
}

/// The gateway name to its target and upstream name. A name whose target has not connected
/// yet is not "unknown": the error says which target and why.
fn resolve(
    catalog: &Catalog,
    view: &crate::catalog::View,
    call: &mut CallContext,
) -> Result<(Target, String), CallError> {
    if let Some(route) = view.tool_routes.get(&call.tool) {
        let target = catalog
            .target(&route.target)
            .cloned()
            .ok_or_else(|| CallError::Internal("the catalog routes to a missing target".into()))?;
        return Ok((target, route.upstream_name.clone()));
    }
    if let Some(t) = catalog.pending_owner(&call.tool) {
        call.target = Some(t.name().to_string());
        return Err(CallError::NotConnected {
            target: t.name().to_string(),
            connecting_for: t.first_attempt_running(),
            reason: match t.health() {
                Health::Down { reason } => reason,
                Health::Connected => "its tools are being listed".into(),
                Health::PerUser { .. } => "its tools come from each user's own session, and yours could not list them (the gateway log says why)".into(),
            },
        });
    }
    Err(CallError::UnknownTool {
        name: call.tool.clone(),
        pending: catalog
            .pending_unprefixed()
            .into_iter()
            .map(str::to_string)
            .collect(),
    })
}

/// Phase 5 from a started upstream call to the caller's answer: the relays it sends are
/// delivered; what it asks of the caller goes by era (`input.rs`): a 2025 caller is asked
/// at once, a 2026 caller gets `input_required` while the call is held; a 2026 upstream's own
/// `input_required` is passed through to a 2026 caller, or asked of a 2025 caller and the
/// upstream called again with the answers (at most [`MAX_ROUNDS`] times).
async fn drive(
    target: &Target,
    mut req: CallToolRequestParams,
    mut pending: PendingCall<CallToolResponse>,
    ctx: &RequestContext<RoleServer>,
    call: &CallContext,
    live: &Live,
) -> Result<CallToolResponse, CallError> {
    let mut caps = Capabilities::new(ctx);
    for _round in 0..MAX_ROUNDS {
        let step = match run(target, pending, ctx, call, &mut caps).await {
            // A 2025 upstream's "open this URL first" error (-32042) does not exist in
            // 2026-07-28: a 2026 caller gets the same URLs as `input_required`.
            Err(CallError::Target(TargetError::Upstream { error, .. }))
                if error.code == URL_ELICITATION_REQUIRED && call.client.era == Era::Stateless =>
            {
                let urls = input::url_elicitations(error.data.as_ref());
                if urls.is_empty() {
                    return Err(CallError::Target(TargetError::Upstream {
                        target: target.name().to_string(),
                        error,
                    }));
                }
                caps.require(Need::UrlElicitation, call)?;
                let asked = InputRequiredResult::new(Some(urls), None);
                return Ok(pass_through(live, call, &req, target, asked));
            }
            other => other?,
        };
        match step {
            Step::Done(CallToolResponse::InputRequired(asked)) => {
                let requests = asked.input_requests.clone().unwrap_or_default();
                for r in requests.values() {
                    caps.require(Need::of(r), call)?;
                }
                if call.client.era == Era::Stateless {
                    return Ok(pass_through(live, call, &req, target, asked));
                }
                // A 2025 caller: ask it each question, then call the upstream again.
                let mut answers = BTreeMap::new();
                for (key, request) in requests {
                    let answer = ask_now(ctx, call, request).await?;
                    answers.insert(key, answer);
                }
                req.input_responses = Some(input::as_input_responses(answers));
                req.request_state = asked.request_state;
                pending = target
                    .call_tool(req.clone(), caller_meta(ctx, call), call.principal.as_ref())
                    .await?;
            }
            Step::Done(response) => return Ok(response),
            Step::Ask(waiting) => return Ok(hold(live, call, &req, waiting, target)),
        }
    }
    Err(CallError::Target(TargetError::Upstream {
        target: target.name().to_string(),
        error: ErrorData::internal_error(
            format!(
                "the upstream asked for input {MAX_ROUNDS} times in one call; the gateway stopped asking"
            ),
            None,
        ),
    }))
}

/// How many times one call may ask its 2025 caller for input (rmcp's default).
const MAX_ROUNDS: usize = rmcp::model::DEFAULT_MRTR_MAX_ROUNDS;

/// A 2026 upstream's `input_required`, handed to a 2026 caller: its questions unchanged, its
/// state sealed inside ours, so it returns to this target for this caller, tool and arguments
/// only.
fn pass_through(
    live: &Live,
    call: &CallContext,
    req: &CallToolRequestParams,
    target: &Target,
    asked: InputRequiredResult,
) -> CallToolResponse {
    let state = live.states().seal(
        Resume::Upstream {
            target: target.name().to_string(),
            state: asked.request_state,
        },
        &binding(call, req.arguments.as_ref()),
        Some(STATE_TTL),
    );
    CallToolResponse::InputRequired(InputRequiredResult::new(asked.input_requests, Some(state)))
}

/// Hold a call whose upstream asked a 2026 caller something, and answer `input_required`.
fn hold(
    live: &Live,
    call: &CallContext,
    req: &CallToolRequestParams,
    waiting: Waiting,
    target: &Target,
) -> CallToolResponse {
    let requests: InputRequests = waiting.input_requests();
    let owner = call
        .caller()
        .map_or_else(|| "an anonymous caller".to_string(), Caller::label);
    // Each round of questions gets the target's timeout to be answered.
    let ttl = target.spec().call_timeout;
    let id = live.held().hold(&owner, waiting, ttl);
    let state = live.states().seal(
        Resume::Held { call: id },
        &binding(call, req.arguments.as_ref()),
        Some(ttl),
    );
    CallToolResponse::InputRequired(InputRequiredResult::new(Some(requests), Some(state)))
}

/// Ask a 2025 caller one question of a 2026 upstream, as a server→client request.
async fn ask_now(
    ctx: &RequestContext<RoleServer>,
    call: &CallContext,
    request: rmcp::model::InputRequest,
) -> Result<rmcp::model::ClientResult, CallError> {
    let deadline = call
        .deadline
        .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(60));
    let target = || call.target.clone().unwrap_or_default();
    match tokio::time::timeout_at(deadline, input::ask_now(&ctx.peer, request)).await {
        Ok(Ok(result)) => Ok(result),
        Ok(Err(error)) => Err(CallError::Target(TargetError::Upstream {
            target: target(),
            error,
        })),
        // The target's own timeout: the whole call had that long.
        Err(_) => Err(CallError::Target(TargetError::Timeout {
            target: target(),
            after: deadline.into_std().saturating_duration_since(call.started),
        })),
    }
}

/// The caller's declared capabilities, read once and only when the upstream asks for
/// something (most calls never do).
struct Capabilities<'a> {
    ctx: &'a RequestContext<RoleServer>,
    read: Option<Option<ClientCapabilities>>,
}

impl<'a> Capabilities<'a> {
    fn new(ctx: &'a RequestContext<RoleServer>) -> Self {
        Self { ctx, read: None }
    }

    /// Refuse the call, rather than ask a caller something it cannot answer.
    fn require(&mut self, need: Need, call: &CallContext) -> Result<(), CallError> {
        let caps = self
            .read
            .get_or_insert_with(|| self.ctx.client_capabilities());
        if need.declared_by(caps.as_ref()) {
            return Ok(());
        }
        tracing::info!(
            target: "portcullis::calls",
            "`{}` asked its caller {}, which the caller's client did not declare; the call was ended",
            call.tool,
            need.asked()
        );
        Err(CallError::MissingCapability {
            tool: call.tool.clone(),
            target: call.target.clone().unwrap_or_default(),
            need,
        })
    }
}

/// Where one stretch of an upstream call ended.
enum Step {
    /// The upstream answered (a result, or its own `input_required`).
    Done(CallToolResponse),
    /// A 2025 upstream asked a 2026 caller something: the call waits for the retry.
    Ask(Waiting),
}

/// Await the upstream's answer, delivering its relays to the caller meanwhile, until the
/// target's deadline.
async fn run(
    target: &Target,
    mut pending: PendingCall<CallToolResponse>,
    ctx: &RequestContext<RoleServer>,
    call: &CallContext,
    caps: &mut Capabilities<'_>,
) -> Result<Step, CallError> {
    // The whole call, relays included, ends by the target's deadline: a client that never
    // answers a relayed request must not hold the call (and the relay slot) forever.
    let timeout = target.spec().call_timeout;
    let deadline = call
        .deadline
        .unwrap_or_else(|| tokio::time::Instant::now() + timeout);
    let timed_out = || TargetError::Timeout {
        target: target.name().to_string(),
        after: timeout,
    };
    let mut saw_progress = false;
    let mut asked = Vec::new();
    let result = loop {
        tokio::select! {
            // Relays first: a log line or progress sent just before the result must reach the
            // caller before the result does.
            biased;
            Some(relay) = pending.relays.recv() => {
                saw_progress |= relay.is_progress();
                let relay = match relay {
                    // A 2025 caller is asked at once, on this call's response stream.
                    Relay::Request { request, reply } if call.client.era == Era::Sessions => {
                        match question(request, reply, call, caps, 0)? {
                            Some(q) => match input::as_server_request(q.request) {
                                Some(request) => Relay::Request { request, reply: q.reply },
                                None => continue,
                            },
                            None => continue,
                        }
                    }
                    Relay::Request { request, reply } => {
                        match question(request, reply, call, caps, asked.len())? {
                            Some(q) => {
                                asked.push(q);
                                // Any more questions already sent go in the same round.
                                while let Ok(Relay::Request { request, reply }) = pending.relays.try_recv() {
                                    if let Some(q) = question(request, reply, call, caps, asked.len())? {
                                        asked.push(q);
                                    }
                                }
                                return Ok(Step::Ask(Waiting {
                                    pending,
                                    asked,
                                    target: target.name().to_string(),
                                }));
                            }
                            None => continue,
                        }
                    }
                    notification => notification,
                };
                if tokio::time::timeout_at(deadline, deliver(&ctx.peer, relay)).await.is_err() {
                    break Err(timed_out());
                }
            }
            r = &mut pending.response => break r,
            _ = tokio::time::sleep_until(deadline + Duration::from_secs(1)) => break Err(timed_out()),
        }
    };
    // rmcp hands upstream notifications to their handlers on separate tasks, so one sent
    // right before the result may still be on its way into the relay channel: give those
    // tasks a turn, then deliver whatever arrived. When the upstream has been reporting
    // progress during this call, its last report may still be in flight: wait a little for it
    // (on a busy machine a turn is not always enough). Every other call pays nothing: rmcp
    // clients put a progress token on every request, so "the caller asked" would be all calls.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    loop {
        // Not `timeout(ZERO, …)` for the common case: a tokio timer fires on the next
        // millisecond tick, which cost every call ~1.5 ms (found by the overhead benchmark).
        let next = if saw_progress {
            tokio::time::timeout(STRAGGLER_GRACE, pending.relays.recv())
                .await
                .ok()
                .flatten()
        } else {
            pending.relays.try_recv().ok()
        };
        let Some(relay) = next else { break };
        let _ = tokio::time::timeout(Duration::from_secs(1), deliver(&ctx.peer, relay)).await;
    }
    let mut r = result?;
    if let CallToolResponse::Complete(r) = &mut r {
        r.result_type.get_or_insert(ResultType::COMPLETE);
    }
    Ok(Step::Done(r))
}

/// An upstream's server→client request during a call, as a question for the caller; `None`
/// when it is not one a caller can be asked (refused to the upstream here). A caller without
/// the capability is never asked: the upstream is refused and the call ends.
fn question(
    request: rmcp::model::ServerRequest,
    reply: tokio::sync::oneshot::Sender<Result<rmcp::model::ClientResult, ErrorData>>,
    call: &CallContext,
    caps: &mut Capabilities<'_>,
    n: usize,
) -> Result<Option<Asked>, CallError> {
    let Some(request) = input::as_input_request(request) else {
        let _ = reply.send(Err(ErrorData::invalid_request(
            "the gateway relays only sampling, elicitation and roots requests to its callers",
            None,
        )));
        return Ok(None);
    };
    if let Err(e) = caps.require(Need::of(&request), call) {
        let _ = reply.send(Err(ErrorData::invalid_request(
            format!(
                "the gateway's caller does not support {}",
                Need::of(&request).capability()
            ),
            None,
        )));
        return Err(e);
    }
    Ok(Some(Asked {
        key: input::key_for(n + 1, &request),
        request,
        reply,
    }))
}

/// How long a call that relayed progress waits, after the result, for the last report.
const STRAGGLER_GRACE: Duration = Duration::from_millis(10);

/// Record the call and turn its outcome into the caller's answer.
fn audit(
    call: &CallContext,
    outcome: Result<CallToolResponse, CallError>,
) -> Result<CallToolResponse, ErrorData> {
    let caller = call
        .caller()
        .map_or_else(|| "anonymous".to_string(), Caller::label);
    let mut event = AuditEvent::new(call.request_id.clone(), caller, "tools/call");
    event.tool = Some(call.tool.clone());
    event.target = call.target.clone();
    event.path = call.path.clone();
    event.arguments = call.arguments.clone();
    event.policy = call.policy.as_ref().map(|r| PolicyOutcome {
        mode: r.mode.as_str(),
        decision: if r.allowed {
            AuditDecision::Allow
        } else {
            AuditDecision::Deny
        },
        policies: r.policies.clone(),
    });
    let answer = match outcome {
        Ok(r) => Ok(r),
        Err(e) => {
            if e.is_refusal() {
                event.decision = AuditDecision::Deny;
            }
            e.respond(call.client)
        }
    };
    let result = match &answer {
        Ok(CallToolResponse::Complete(r)) => Outcome::Ok {
            is_error: r.is_error.unwrap_or(false),
        },
        Ok(_) => Outcome::Ok { is_error: false },
        Err(e) => Outcome::Error {
            code: e.code.0,
            message: e.message.to_string(),
        },
    };
    event.finish(result, call.started.elapsed()).emit();
    answer
}

/// Hand a relayed message to the downstream caller. This runs inside the caller's request
/// task, which is how rmcp knows to put it on that request's response stream.
async fn deliver(peer: &Peer<RoleServer>, relay: Relay) {
    match relay {
        Relay::Request { request, reply } => {
            let answer = peer.send_request(request).await.map_err(|e| match e {
                rmcp::service::ServiceError::McpError(e) => e,
                rmcp::service::ServiceError::Timeout { .. } => {
                    ErrorData::internal_error("the gateway's caller did not answer in time", None)
                }
                _ => ErrorData::internal_error(
                    "the gateway's caller could not answer: its connection ended",
                    None,
                ),
            });
            let _ = reply.send(answer);
        }
        Relay::Notification(n) => {
            let kind = notification_kind(&n);
            if let Err(e) = peer.send_notification(n).await {
                tracing::debug!("{kind} not delivered to the caller: {e}");
            }
        }
    }
}

fn notification_kind(n: &ServerNotification) -> &'static str {
    match n {
        ServerNotification::ProgressNotification(_) => "progress",
        ServerNotification::LoggingMessageNotification(_) => "log message",
        _ => "notification",
    }
}

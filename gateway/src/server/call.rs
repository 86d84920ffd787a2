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

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ProtocolVersion, ResultType,
    ServerNotification,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer};

use super::call_error::{CallError, ClientKind, Era};
use super::{Gateway, strip_meta};
use crate::catalog::Catalog;
use crate::consent::{Ask, Binding, Consents, StateRefused};
use crate::identity::Caller;
use crate::outbound::CredentialError;
use crate::outbound::Principal;
use crate::policy::{self, Decision};
use crate::runtime::Runtime;
use crate::targets::relay::Relay;
use crate::targets::{Health, Target, TargetError};
use crate::telemetry::{AuditEvent, Decision as AuditDecision, Outcome};

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
}

impl CallContext {
    fn of(req: &CallToolRequestParams, ctx: &RequestContext<RoleServer>) -> Self {
        let parts = ctx.extensions.get::<http::request::Parts>();
        Self {
            principal: Principal::of_request(parts),
            request_id: parts
                .and_then(|p| crate::telemetry::request_id(&p.headers))
                .map_or_else(|| ctx.id.to_string(), str::to_string),
            // The MCP service is nested, so its own URI lacks the `/mcp` prefix.
            path: parts.map(|p| {
                p.extensions
                    .get::<axum::extract::OriginalUri>()
                    .map_or_else(|| p.uri.path().to_string(), |u| u.path().to_string())
            }),
            tool: req.name.to_string(),
            target: None,
            deadline: None,
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
    let consents = gw.live().consents();
    let outcome = tokio::select! {
        r = phases(&runtime, consents, &mut call, req, &ctx) => r,
        _ = ctx.ct.cancelled() => Err(CallError::Cancelled),
    };
    // Whether the client can open URLs for its user matters only to a consent hand-off: its
    // capabilities are read then, not on every call.
    if matches!(outcome, Err(CallError::ConsentRequired { .. })) {
        call.client.url_elicitation = ctx
            .client_capabilities()
            .and_then(|c| c.elicitation)
            .is_some_and(|e| e.url.is_some());
    }
    // 6. Audit, then answer.
    audit(&call, outcome)
}

/// Phases 2–5.
async fn phases(
    runtime: &Runtime,
    consents: &Consents,
    call: &mut CallContext,
    mut req: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResult, CallError> {
    // A 2026-07-28 retry after a consent hand-off echoes the state it was given: it must
    // have been sealed for this caller, tool and arguments, and not have expired.
    let earlier = match req.request_state.take() {
        Some(state) => Some(resume(consents, call, &state, req.arguments.as_ref())?),
        None => None,
    };
    // Answers to the gateway's own input requests; nothing the upstream asked for.
    req.input_responses = None;

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
    let (target, upstream_name) = resolve(catalog, &view, call)?;
    call.target = Some(target.name().to_string());
    call.deadline = Some(tokio::time::Instant::now() + target.spec().call_timeout);

    // 3. Authorize, on the view the call is routed by (the HTTP step-up asked the same
    //    question a moment earlier; a tool that appeared in between is still checked).
    if let Decision::NeedsScopes { missing, .. } =
        policy::tool_call(&view, call.caller(), &call.tool)
    {
        return Err(CallError::Forbidden {
            tool: call.tool.clone(),
            missing,
        });
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
            return Err(consents
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
                    earlier: earlier.as_deref(),
                })
                .await);
        }
        Err(e) => return Err(e.into()),
    }

    // 5. Call upstream.
    req.name = upstream_name.into();
    strip_meta(&mut req.meta);
    call_upstream(&target, req, ctx, call).await
}

/// The consent a 2026 retry's `requestState` names. A refused state is logged with its reason;
/// the caller hears one message for every reason (the spec asks not to help a forger).
fn resume(
    consents: &Consents,
    call: &CallContext,
    state: &str,
    arguments: Option<&rmcp::model::JsonObject>,
) -> Result<String, CallError> {
    let Some(caller) = call.caller() else {
        return Err(CallError::StateRefused(StateRefused::NotIssuedForThisCall));
    };
    consents
        .resume(
            state,
            &Binding {
                caller,
                tool: &call.tool,
                arguments,
            },
        )
        .map_err(|why| {
            tracing::warn!(
                target: "portcullis::consent",
                "refused the requestState of {}'s retry of `{}`: {why}",
                caller.label(),
                call.tool
            );
            CallError::StateRefused(why)
        })
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

async fn call_upstream(
    target: &Target,
    req: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
    call: &CallContext,
) -> Result<CallToolResult, CallError> {
    let progress = ctx.meta.get_progress_token();
    let mut pending = target
        .call_tool(req, progress, call.principal.as_ref())
        .await?;
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
    let result = loop {
        tokio::select! {
            // Relays first: a log line or progress sent just before the result must reach the
            // caller before the result does.
            biased;
            Some(relay) = pending.relays.recv() => {
                saw_progress |= relay.is_progress();
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
    r.result_type.get_or_insert(ResultType::COMPLETE);
    Ok(r)
}

/// How long a call that relayed progress waits, after the result, for the last report.
const STRAGGLER_GRACE: Duration = Duration::from_millis(10);

/// Record the call and turn its outcome into the caller's answer.
fn audit(
    call: &CallContext,
    outcome: Result<CallToolResult, CallError>,
) -> Result<CallToolResponse, ErrorData> {
    let caller = call
        .caller()
        .map_or_else(|| "anonymous".to_string(), Caller::label);
    let mut event = AuditEvent::new(call.request_id.clone(), caller, "tools/call");
    event.tool = Some(call.tool.clone());
    event.target = call.target.clone();
    event.path = call.path.clone();
    let answer = match outcome {
        Ok(r) => Ok(CallToolResponse::Complete(r)),
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

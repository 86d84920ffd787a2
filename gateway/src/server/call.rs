//! The call path for `tools/call`, one phase per step:
//! resolve the gateway name → call the owning target (serving its relayed requests) → audit.
//! Authorization (policy) and outbound credentials slot in between resolve and call.

use std::time::Instant;

use rmcp::model::{CallToolRequestParams, CallToolResult, ServerNotification};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, Peer, RoleServer};

use super::{Gateway, complete, errors, strip_meta};
use crate::targets::Health;
use crate::targets::relay::Relay;
use crate::telemetry::{AuditEvent, Decision, Outcome};

pub(super) async fn call_tool(
    gw: &Gateway,
    mut req: CallToolRequestParams,
    ctx: RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let started = Instant::now();
    let parts = ctx.extensions.get::<http::request::Parts>();
    let caller =
        crate::identity::caller_of(parts).map_or_else(|| "anonymous".to_string(), |c| c.label());
    let mut audit = AuditEvent::new(request_id(&ctx), caller, "tools/call");
    audit.tool = Some(req.name.to_string());
    // The path as the client sent it (`/mcp`): the MCP service is nested, so its own URI
    // lacks the prefix.
    audit.path = parts.map(|p| {
        p.extensions
            .get::<axum::extract::OriginalUri>()
            .map_or_else(|| p.uri.path().to_string(), |u| u.path().to_string())
    });

    // Resolve: gateway name → (target, upstream tool name), from one catalog view.
    let catalog = gw.catalog();
    let mut view = catalog.view();
    // A per-user target learns its tools from a user's own session: a name not known yet
    // may be one of them, so open this caller's session on such targets first.
    if !view.tool_routes.contains_key(req.name.as_ref())
        && catalog
            .learn_user_listings(crate::identity::caller_of(parts))
            .await
    {
        view = catalog.view();
    }
    let Some(route) = view.tool_routes.get(req.name.as_ref()) else {
        // Not "unknown" when its target has not connected yet: say so, and why.
        if let Some(t) = catalog.pending_owner(&req.name) {
            let reason = match t.health() {
                Health::Down { reason } => reason,
                Health::Connected => "its tools are being listed".into(),
                Health::PerUser { .. } => "its tools come from each user's own session, and yours could not list them (the gateway log says why)".into(),
            };
            let e = errors::tools_not_known(t.name(), t.first_attempt_running(), &reason);
            audit.target = Some(t.name().to_string());
            return Err(failed(audit, e, started));
        }
        let pending = catalog.pending_unprefixed();
        return Err(deny(
            audit,
            errors::unknown_tool(&req.name, &pending),
            started,
        ));
    };
    let target = super::target_of(&catalog, &route.target)?;
    audit.target = Some(target.name().to_string());

    // Authorize: the HTTP layer answers a missing tool scope with the 403 step-up; this
    // repeats the check on the view the call is routed by, so a tool that appeared between
    // the two reads is never called without its scope.
    if let (Some(needed), Some(caller)) = (
        view.tool_scopes.get(req.name.as_ref()),
        crate::identity::caller_of(parts),
    ) && let Some(missing) = needed.iter().find(|s| !caller.scopes.contains(*s))
    {
        let e = ErrorData::invalid_request(
            format!(
                "insufficient_scope: tool `{}` needs the scope `{missing}`",
                req.name
            ),
            None,
        );
        return Err(deny(audit, e, started));
    }
    req.name = route.upstream_name.clone().into();
    strip_meta(&mut req.meta);

    // Call upstream: wait for the response while relaying what the upstream asks of us.
    let outcome = tokio::select! {
        r = call_upstream(&target, req, &ctx) => r,
        _ = ctx.ct.cancelled() => Err(ErrorData::internal_error("the client cancelled the call", None)),
    };

    // Audit.
    let result = match &outcome {
        Ok(r) => Outcome::Ok {
            is_error: r.is_error.unwrap_or(false),
        },
        Err(e) => Outcome::Error {
            code: e.code.0,
            message: e.message.to_string(),
        },
    };
    audit.finish(result, started.elapsed()).emit();
    outcome
}

async fn call_upstream(
    target: &crate::targets::McpTarget,
    req: CallToolRequestParams,
    ctx: &RequestContext<RoleServer>,
) -> Result<CallToolResult, ErrorData> {
    let progress = ctx.meta.get_progress_token();
    let caller = crate::identity::caller_of(ctx.extensions.get::<http::request::Parts>());
    let mut pending = match target.call_tool(req, progress, caller).await {
        Ok(p) => p,
        // A credential problem is the tool's failure as the user sees it: say which target
        // and what the authorization server answered, as a tool error the client shows.
        Err(e @ crate::targets::TargetError::Credential { .. }) => {
            let mut r = CallToolResult::error(vec![rmcp::model::ContentBlock::text(e.to_string())]);
            complete(&mut r.result_type);
            return Ok(r);
        }
        Err(e) => return Err(errors::from_target(&e)),
    };
    // The whole call, relays included, ends by the target's timeout: a client that never
    // answers a relayed request must not hold the call (and the relay slot) forever.
    let timeout = target.spec().call_timeout;
    let deadline = tokio::time::Instant::now() + timeout;
    let timed_out = || crate::targets::TargetError::Timeout {
        target: target.name().to_string(),
        after: timeout,
    };
    let result = loop {
        tokio::select! {
            // Relays first: a log line or progress sent just before the result must reach the
            // caller before the result does.
            biased;
            Some(relay) = pending.relays.recv() => {
                if tokio::time::timeout_at(deadline, deliver(&ctx.peer, relay)).await.is_err() {
                    break Err(timed_out());
                }
            }
            r = &mut pending.response => break r,
            _ = tokio::time::sleep_until(deadline + std::time::Duration::from_secs(1)) => break Err(timed_out()),
        }
    };
    // rmcp hands upstream notifications to their handlers on separate tasks, so one sent
    // right before the result may still be on its way into the relay channel: give those
    // tasks a turn, then deliver whatever arrived.
    for _ in 0..4 {
        tokio::task::yield_now().await;
    }
    while let Ok(relay) = pending.relays.try_recv() {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), deliver(&ctx.peer, relay))
            .await;
    }
    let mut r = result.map_err(|e| errors::from_target(&e))?;
    complete(&mut r.result_type);
    Ok(r)
}

/// Record a refused call and return its error.
fn deny(mut audit: AuditEvent, e: ErrorData, started: Instant) -> ErrorData {
    audit.decision = Decision::Deny;
    failed(audit, e, started)
}

/// Record a call that ended in an error before reaching the upstream.
fn failed(audit: AuditEvent, e: ErrorData, started: Instant) -> ErrorData {
    audit
        .finish(
            Outcome::Error {
                code: e.code.0,
                message: e.message.to_string(),
            },
            started.elapsed(),
        )
        .emit();
    e
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

/// The `x-request-id` the HTTP layer assigned, else the JSON-RPC id.
fn request_id(ctx: &RequestContext<RoleServer>) -> String {
    ctx.extensions
        .get::<http::request::Parts>()
        .and_then(|p| crate::telemetry::request_id(&p.headers))
        .map(str::to_string)
        .unwrap_or_else(|| ctx.id.to_string())
}

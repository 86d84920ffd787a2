//! The gateway's client side of an upstream session (rmcp `ClientHandler`).

use rmcp::model::*;
use rmcp::service::{InboundStreamOrigin, NotificationContext, RequestContext};
use rmcp::{ClientHandler, ErrorData, Peer, RoleClient};
use std::sync::Weak;

use super::session::Session;
use crate::events::CatalogEvent;
use crate::targets::relay::RelayError;

/// The gateway's client side of an upstream session: relays what the upstream asks of "its
/// client" to the downstream caller, and refreshes the listing when the upstream says so.
#[derive(Debug, Clone)]
pub(super) struct UpstreamClient {
    pub(super) inner: Weak<Session>,
}

impl UpstreamClient {
    /// Hand an upstream's request to the caller whose call caused it. `what` names it for
    /// the log.
    async fn relay(
        &self,
        what: &str,
        request: ServerRequest,
        ctx: &RequestContext<RoleClient>,
    ) -> Result<ClientResult, RelayError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(RelayError::CallFinished); // the target is shutting down
        };
        let origin = ctx.extensions.get::<InboundStreamOrigin>();
        let answer = inner.relays.request(request, origin).await;
        let name = &inner.spec.name;
        match &answer {
            // Outside any call — server-everything asks for roots right after connecting.
            // The session is shared by every caller, so the gateway has no roots of its own
            // to offer: "none" is the true answer, and not an error.
            Err(RelayError::NoCall) if what == "roots/list" => {
                tracing::debug!(target: "portcullis::targets", target_name = %name, "target `{name}` asked for roots/list outside any tool call; answered with no roots (its session is shared by all callers, so no caller's roots apply)");
            }
            Err(
                e @ (RelayError::NoCall
                | RelayError::Unattributable
                | RelayError::Internal
                | RelayError::CallFinished),
            ) => {
                tracing::debug!(target: "portcullis::targets", target_name = %name, "target `{name}` sent {what} that no single caller can answer; refused: {e}");
            }
            _ => {}
        }
        answer
    }

    /// Refetch through the notifying session itself: during the first connect the session is
    /// not published yet, and a change announced then must not be lost.
    async fn refresh(&self, peer: &Peer<RoleClient>) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        if let Err(e) = inner.refresh(peer).await {
            tracing::warn!(target: "portcullis::targets", target_name = %inner.spec.name, "refresh after list_changed failed: {e}");
        }
    }

    fn unattributed(&self, note: ServerNotification) {
        if let Some(inner) = self.inner.upgrade()
            && !inner.relays.unattributed(note)
        {
            tracing::debug!(target: "portcullis::targets", target_name = %inner.spec.name, "target `{}` sent a log message outside any single call; dropped (no one caller can be told)", inner.spec.name);
        }
    }
}

// Sampling, roots and logging are deprecated in 2026-07-28 but are what 2025-11-25 servers,
// most of those deployed, still send; the gateway relays them.
#[allow(deprecated)]
impl ClientHandler for UpstreamClient {
    fn get_info(&self) -> ClientConfig {
        let mut caps = ClientCapabilities::default();
        caps.sampling = Some(Default::default());
        caps.elicitation = Some(
            ElicitationCapability::new()
                .with_form(Default::default())
                .with_url(Default::default()),
        );
        caps.roots = Some(Default::default());
        // The era is negotiated when the session opens (`session.rs` `lifecycle`): a 2025-11-25
        // upstream asks with server→client requests, relayed here; a 2026-07-28 one answers
        // `input_required`, which the call pipeline handles.
        ClientConfig::new(
            caps,
            Implementation::new("portcullis", env!("CARGO_PKG_VERSION")),
        )
    }

    async fn create_message(
        &self,
        mut params: CreateMessageRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        // The upstream's _meta (its progress token for this request) means nothing downstream.
        params.meta = None;
        let req = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.relay("a sampling request", req, &ctx).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(wrong_kind("sampling/createMessage")),
        }
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let req = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.relay("an elicitation request", req, &ctx).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(wrong_kind("elicitation/create")),
        }
    }

    async fn list_roots(
        &self,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let req = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        roots(self.relay("roots/list", req, &ctx).await)
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        if let Some(inner) = self.inner.upgrade() {
            inner.relays.progress(params);
        }
    }

    async fn on_logging_message(
        &self,
        params: LoggingMessageNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        self.unattributed(ServerNotification::LoggingMessageNotification(
            LoggingMessageNotification::new(params),
        ));
    }

    async fn on_resource_updated(
        &self,
        params: ResourceUpdatedNotificationParam,
        _ctx: NotificationContext<RoleClient>,
    ) {
        if let Some(inner) = self.inner.upgrade() {
            let _ = inner.events.send(CatalogEvent::ResourceUpdated(params.uri));
        }
    }

    async fn on_tool_list_changed(&self, ctx: NotificationContext<RoleClient>) {
        self.refresh(&ctx.peer).await;
    }

    async fn on_prompt_list_changed(&self, ctx: NotificationContext<RoleClient>) {
        self.refresh(&ctx.peer).await;
    }

    async fn on_resource_list_changed(&self, ctx: NotificationContext<RoleClient>) {
        self.refresh(&ctx.peer).await;
    }
}

/// The answer to an upstream's `roots/list`: the caller's roots, or none when no tool call
/// is in flight (true: the shared session has no roots of its own). Every other failure —
/// several calls it could belong to, among them — stays an error: "no roots" would be a
/// guess on some caller's behalf.
#[allow(deprecated)] // roots: see the note on the `ClientHandler` impl
fn roots(answer: Result<ClientResult, RelayError>) -> Result<ListRootsResult, ErrorData> {
    match answer {
        Ok(ClientResult::ListRootsResult(r)) => Ok(r),
        Ok(_) => Err(wrong_kind("roots/list")),
        Err(RelayError::NoCall) => Ok(ListRootsResult::default()),
        Err(e) => Err(e.into()),
    }
}

fn wrong_kind(method: &str) -> ErrorData {
    ErrorData::internal_error(
        format!("the client answered {method} with a result of another kind"),
        None,
    )
}

#[cfg(test)]
#[allow(deprecated)]
mod tests {
    use super::*;
    use crate::targets::relay::Relays;
    use std::sync::Arc;

    fn list_roots() -> ServerRequest {
        ServerRequest::ListRootsRequest(ListRootsRequest::default())
    }

    fn token(s: &str) -> ProgressToken {
        ProgressToken(NumberOrString::String(Arc::from(s)))
    }

    #[tokio::test]
    async fn roots_outside_any_call_are_none() {
        let relays = Arc::new(Relays::default());
        let answer = roots(relays.request(list_roots(), None).await);
        assert_eq!(answer.map(|r| r.roots.len()), Ok(0));
    }

    #[tokio::test]
    async fn roots_asked_while_two_calls_are_in_flight_are_not_answered_with_none() {
        let relays = Arc::new(Relays::default());
        let (_a, _b) = (relays.begin(), relays.begin());
        let _alice = relays.register(RequestId::Number(1), token("u1"), None);
        let _bob = relays.register(RequestId::Number(2), token("u2"), None);
        let err = roots(relays.request(list_roots(), None).await).unwrap_err();
        assert_eq!(err.code, ErrorCode::INVALID_REQUEST);
        assert!(
            err.message.contains("several calls are in flight"),
            "{err:?}"
        );
        assert!(!err.message.contains("::"), "{err:?}");
    }
}

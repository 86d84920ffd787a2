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
    pub(super) fn of(session: &std::sync::Arc<Session>) -> Self {
        Self {
            inner: std::sync::Arc::downgrade(session),
        }
    }

    /// An upstream's request that came on the response stream of one of the gateway's own
    /// tool calls (`direct.rs`), answered as the `ClientHandler` below answers those rmcp
    /// receives: relayed to that call's caller (sampling, elicitation, roots), or answered
    /// here (ping).
    #[allow(deprecated)] // sampling and roots: see the note on the `ClientHandler` impl
    pub(super) async fn answer(
        &self,
        request: ServerRequest,
        call: RequestId,
    ) -> Result<ClientResult, ErrorData> {
        let origin = InboundStreamOrigin::OutboundRequest(call);
        let origin = Some(&origin);
        match request {
            ServerRequest::PingRequest(_) => Ok(ClientResult::empty(())),
            ServerRequest::CreateMessageRequest(r) => {
                let r = self.create_message_from(r.params, origin).await?;
                Ok(ClientResult::CreateMessageResult(Box::new(r)))
            }
            ServerRequest::ElicitRequest(r) => {
                let r = self.elicit_from(r.params, origin).await?;
                Ok(ClientResult::ElicitResult(r))
            }
            ServerRequest::ListRootsRequest(_) => Ok(ClientResult::ListRootsResult(
                self.list_roots_from(origin).await?,
            )),
            ServerRequest::CustomRequest(r) => Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                format!("the gateway does not answer `{}`", r.method),
                None,
            )),
            _ => Err(ErrorData::new(
                ErrorCode::METHOD_NOT_FOUND,
                "the gateway does not answer this request",
                None,
            )),
        }
    }

    /// An upstream's notification on the response stream of one of the gateway's own tool
    /// calls (`direct.rs`): a log line goes to that call's caller; anything else is handled
    /// as the `ClientHandler` below handles it.
    #[allow(deprecated)] // logging: see the note on the `ClientHandler` impl
    pub(super) async fn notified(
        &self,
        note: ServerNotification,
        call: &RequestId,
        peer: &Peer<RoleClient>,
    ) {
        let Some(inner) = self.inner.upgrade() else {
            return;
        };
        match note {
            ServerNotification::ProgressNotification(n) => {
                inner.relays.progress(n.params);
            }
            note @ ServerNotification::LoggingMessageNotification(_) => {
                inner.relays.notify(call, note);
            }
            ServerNotification::ResourceUpdatedNotification(n) => {
                let _ = inner
                    .events
                    .send(CatalogEvent::ResourceUpdated(n.params.uri));
            }
            ServerNotification::ToolListChangedNotification(_)
            | ServerNotification::PromptListChangedNotification(_)
            | ServerNotification::ResourceListChangedNotification(_) => self.refresh(peer).await,
            _ => {}
        }
    }

    #[allow(deprecated)] // sampling: see the note on the `ClientHandler` impl
    async fn create_message_from(
        &self,
        mut params: CreateMessageRequestParams,
        origin: Option<&InboundStreamOrigin>,
    ) -> Result<CreateMessageResult, ErrorData> {
        // The upstream's _meta (its progress token for this request) means nothing downstream.
        params.meta = None;
        let req = ServerRequest::CreateMessageRequest(CreateMessageRequest::new(params));
        match self.relay("a sampling request", req, origin).await? {
            ClientResult::CreateMessageResult(r) => Ok(*r),
            _ => Err(wrong_kind("sampling/createMessage")),
        }
    }

    async fn elicit_from(
        &self,
        params: ElicitRequestParams,
        origin: Option<&InboundStreamOrigin>,
    ) -> Result<ElicitResult, ErrorData> {
        let req = ServerRequest::ElicitRequest(ElicitRequest::new(params));
        match self.relay("an elicitation request", req, origin).await? {
            ClientResult::ElicitResult(r) => Ok(r),
            _ => Err(wrong_kind("elicitation/create")),
        }
    }

    #[allow(deprecated)] // roots: see the note on the `ClientHandler` impl
    async fn list_roots_from(
        &self,
        origin: Option<&InboundStreamOrigin>,
    ) -> Result<ListRootsResult, ErrorData> {
        let req = ServerRequest::ListRootsRequest(ListRootsRequest::default());
        roots(self.relay("roots/list", req, origin).await)
    }

    /// Hand an upstream's request to the caller whose call caused it. `what` names it for
    /// the log.
    async fn relay(
        &self,
        what: &str,
        request: ServerRequest,
        origin: Option<&InboundStreamOrigin>,
    ) -> Result<ClientResult, RelayError> {
        let Some(inner) = self.inner.upgrade() else {
            return Err(RelayError::CallFinished); // the target is shutting down
        };
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
        params: CreateMessageRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        let origin = ctx.extensions.get::<InboundStreamOrigin>();
        self.create_message_from(params, origin).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let origin = ctx.extensions.get::<InboundStreamOrigin>();
        self.elicit_from(params, origin).await
    }

    async fn list_roots(
        &self,
        ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        let origin = ctx.extensions.get::<InboundStreamOrigin>();
        self.list_roots_from(origin).await
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

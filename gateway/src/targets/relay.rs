//! Routing of upstream-initiated messages to the downstream call that caused them.
//!
//! One upstream session serves many downstream callers, so when an upstream sends a
//! `sampling/createMessage`, `elicitation/create`, progress or log message in the middle of a
//! tool call, the gateway must hand it to the right caller and to nobody else:
//! - requests on a streamable-HTTP upstream arrive on the SSE stream of the POST that carried
//!   our call; rmcp records that as [`InboundStreamOrigin`], which names our request id;
//! - progress notifications carry the progress token rmcp put on our request;
//! - anything else (stdio upstreams, log messages) is delivered only when exactly one call is
//!   in flight on that target, so it cannot be attributed to the wrong caller. Otherwise it is
//!   dropped (logged at debug) and a request is refused: [`RelayError::NoCall`] when no tool
//!   call is in flight at all (the upstream client answers a `roots/list` then with "no
//!   roots", which is true), [`RelayError::Unattributable`] when it could be one of several.
//!
//! Delivery happens inside the downstream handler's task (see `server::call`), which is what
//! lets rmcp put the relayed message on that caller's own response stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rmcp::ErrorData;
use rmcp::model::{
    ClientResult, ErrorCode, ProgressToken, RequestId, ServerNotification, ServerRequest,
};
use rmcp::service::InboundStreamOrigin;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::{mpsc, oneshot};

/// A message for the downstream caller of one in-flight call.
#[derive(Debug)]
pub enum Relay {
    Request {
        request: ServerRequest,
        reply: oneshot::Sender<Result<ClientResult, ErrorData>>,
    },
    Notification(ServerNotification),
}

impl Relay {
    /// A progress report (the only relay that can trail a call's result).
    pub fn is_progress(&self) -> bool {
        matches!(
            self,
            Self::Notification(ServerNotification::ProgressNotification(_))
        )
    }
}

/// The receiving end, held by the downstream handler while its call is in flight.
pub type RelayReceiver = mpsc::Receiver<Relay>;

/// Why an upstream's request was not answered by a caller.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Not sent during any caller's tool call: none is in flight, or it came on the stream of
    /// a request that is not one (the gateway's own listing, a prompt, a resource).
    #[error(
        "no tool call is in flight that this request could belong to, so there is no caller to ask; the gateway relays requests only during a tool call"
    )]
    NoCall,
    /// It could belong to any of several calls in flight, and nothing says which.
    #[error(
        "several calls are in flight and nothing says which one this request belongs to, so the gateway cannot tell which caller to ask; send it on the response stream of its call"
    )]
    Unattributable,
    /// The routing table is unusable (a panic while it was held): nothing is routed, rather
    /// than possibly to the wrong caller.
    #[error("the gateway could not route this request because of an internal error")]
    Internal,
    #[error("the originating call has already finished")]
    CallFinished,
    #[error("the originating call ended before the client answered")]
    NoAnswer,
    /// The caller answered with an error; passed back unchanged.
    #[error("{}", .0.message)]
    Client(ErrorData),
}

impl From<RelayError> for ErrorData {
    fn from(e: RelayError) -> Self {
        match e {
            RelayError::Client(d) => d,
            RelayError::NoAnswer | RelayError::Internal => {
                ErrorData::new(ErrorCode::INTERNAL_ERROR, e.to_string(), None)
            }
            other => ErrorData::new(ErrorCode::INVALID_REQUEST, other.to_string(), None),
        }
    }
}

#[derive(Debug, Default)]
pub struct Relays {
    inner: Mutex<Table>,
    /// Every request forwarded to the target and not yet answered — tool calls, prompts,
    /// resources, the gateway's own listing — so "the only call in flight" really is.
    in_flight: AtomicUsize,
}

/// Counts one forwarded request as in flight until dropped. Take it *before* sending.
/// Guards own their table, so a call can outlive the handle it was started from (a user's
/// session is looked up per call).
#[derive(Debug)]
pub struct InFlight(Arc<Relays>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[derive(Debug, Default)]
struct Table {
    by_request: HashMap<RequestId, Entry>,
}

#[derive(Debug)]
struct Entry {
    tx: mpsc::Sender<Relay>,
    upstream_progress: ProgressToken,
    /// The caller's own progress token, if it asked for progress.
    downstream_progress: Option<ProgressToken>,
}

/// Removes the registration when the call ends, however it ends.
#[derive(Debug)]
pub struct Registration {
    relays: Arc<Relays>,
    id: RequestId,
}

impl Drop for Registration {
    fn drop(&mut self) {
        if let Ok(mut t) = self.relays.inner.lock() {
            t.by_request.remove(&self.id);
        }
    }
}

impl Relays {
    pub fn begin(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Register an in-flight upstream request. Returns the guard and the receiver the
    /// downstream handler must poll until the call completes.
    pub fn register(
        self: &Arc<Self>,
        id: RequestId,
        upstream_progress: ProgressToken,
        downstream_progress: Option<ProgressToken>,
    ) -> (Registration, RelayReceiver) {
        let (tx, rx) = mpsc::channel(16);
        if let Ok(mut t) = self.inner.lock() {
            t.by_request.insert(
                id.clone(),
                Entry {
                    tx,
                    upstream_progress,
                    downstream_progress,
                },
            );
        }
        (
            Registration {
                relays: self.clone(),
                id,
            },
            rx,
        )
    }

    fn sender_for(
        &self,
        origin: Option<&InboundStreamOrigin>,
    ) -> Result<mpsc::Sender<Relay>, RelayError> {
        let t = self.inner.lock().map_err(|_| RelayError::Internal)?;
        match origin {
            // On the stream of one of our requests: that call's, or none if it is not a
            // tool call.
            Some(InboundStreamOrigin::OutboundRequest(id)) => t
                .by_request
                .get(id)
                .map(|e| e.tx.clone())
                .ok_or(RelayError::NoCall),
            _ if t.by_request.is_empty() => Err(RelayError::NoCall),
            Some(InboundStreamOrigin::Unassociated) => Err(RelayError::Unattributable),
            None => self.sole(&t).ok_or(RelayError::Unattributable),
        }
    }

    /// Relay an upstream request to the caller it belongs to and wait for the answer.
    pub async fn request(
        &self,
        request: ServerRequest,
        origin: Option<&InboundStreamOrigin>,
    ) -> Result<ClientResult, RelayError> {
        let tx = self.sender_for(origin)?;
        let (reply, answer) = oneshot::channel();
        tx.send(Relay::Request { request, reply })
            .await
            .map_err(|_| RelayError::CallFinished)?;
        answer
            .await
            .map_err(|_| RelayError::NoAnswer)?
            .map_err(RelayError::Client)
    }

    /// Relay a progress notification, translating the token back to the caller's own.
    /// Returns false when no caller asked for it.
    pub fn progress(&self, mut note: rmcp::model::ProgressNotificationParam) -> bool {
        let target = self.inner.lock().ok().and_then(|t| {
            t.by_request
                .values()
                .find(|e| e.upstream_progress == note.progress_token)
                .and_then(|e| e.downstream_progress.clone().map(|d| (e.tx.clone(), d)))
        });
        let Some((tx, token)) = target else {
            return false;
        };
        note.progress_token = token;
        let n =
            ServerNotification::ProgressNotification(rmcp::model::ProgressNotification::new(note));
        tx.try_send(Relay::Notification(n)).is_ok()
    }

    /// Relay a notification to the call of request `id` (it came on that call's response
    /// stream). Returns false when that call is no longer listening.
    pub fn notify(&self, id: &RequestId, note: ServerNotification) -> bool {
        let tx = self
            .inner
            .lock()
            .ok()
            .and_then(|t| t.by_request.get(id).map(|e| e.tx.clone()));
        tx.is_some_and(|tx| tx.try_send(Relay::Notification(note)).is_ok())
    }

    /// Relay a notification that names no request: only with exactly one call in flight.
    pub fn unattributed(&self, note: ServerNotification) -> bool {
        let tx = self.inner.lock().ok().and_then(|t| self.sole(&t));
        match tx {
            Some(tx) => tx.try_send(Relay::Notification(note)).is_ok(),
            None => false,
        }
    }
}

impl Relays {
    /// The one tool call that can be the source of an unattributed message: only when it is
    /// the only request of any kind in flight to this target.
    fn sole(&self, t: &Table) -> Option<mpsc::Sender<Relay>> {
        if self.in_flight.load(Ordering::Acquire) != 1 {
            return None;
        }
        let mut it = t.by_request.values();
        match (it.next(), it.next()) {
            (Some(only), None) => Some(only.tx.clone()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{NumberOrString, PingRequest, ProgressNotificationParam};
    use std::sync::Arc;

    fn token(s: &str) -> ProgressToken {
        ProgressToken(NumberOrString::String(Arc::from(s)))
    }

    #[tokio::test]
    async fn requests_follow_their_stream_and_never_cross_callers() {
        let relays = Arc::new(Relays::default());
        let (_a, mut rx_a) = relays.register(RequestId::Number(1), token("u1"), None);
        let (_b, mut rx_b) = relays.register(RequestId::Number(2), token("u2"), None);
        let origin = InboundStreamOrigin::OutboundRequest(RequestId::Number(2));
        let ask = relays.request(
            ServerRequest::PingRequest(PingRequest::default()),
            Some(&origin),
        );
        let answer = async {
            match rx_b.recv().await {
                Some(Relay::Request { reply, .. }) => reply.send(Ok(ClientResult::empty(()))).ok(),
                other => panic!("expected a request, got {other:?}"),
            }
        };
        let (res, _) = tokio::join!(ask, answer);
        assert!(res.is_ok());
        assert!(
            rx_a.try_recv().is_err(),
            "caller 1 must not see caller 2's request"
        );

        // Two calls in flight and no stream origin: nobody can be sure, so nobody gets it —
        // and the upstream is told it was ambiguous, not that there was no call.
        let err = relays
            .request(ServerRequest::PingRequest(PingRequest::default()), None)
            .await;
        assert!(matches!(err, Err(RelayError::Unattributable)), "{err:?}");
    }

    #[tokio::test]
    async fn progress_is_translated_to_the_callers_token() {
        let relays = Arc::new(Relays::default());
        let (_g, mut rx) =
            relays.register(RequestId::Number(7), token("up-7"), Some(token("mine")));
        assert!(relays.progress(ProgressNotificationParam::new(token("up-7"), 1.0)));
        match rx.recv().await {
            Some(Relay::Notification(ServerNotification::ProgressNotification(n))) => {
                assert_eq!(n.params.progress_token, token("mine"));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(!relays.progress(ProgressNotificationParam::new(token("unknown"), 1.0)));
    }

    #[test]
    fn registration_is_removed_when_the_call_ends() {
        let relays = Arc::new(Relays::default());
        {
            let _in_flight = relays.begin();
            let _g = relays.register(RequestId::Number(1), token("u"), None);
            assert!(relays.sender_for(None).is_ok());
        }
        assert!(matches!(relays.sender_for(None), Err(RelayError::NoCall)));
    }

    #[test]
    fn another_callers_request_in_flight_blocks_unattributed_delivery() {
        let relays = Arc::new(Relays::default());
        let _alice = relays.begin();
        let _g = relays.register(RequestId::Number(1), token("u"), None);
        assert!(relays.sender_for(None).is_ok(), "alone: attributable");
        // Bob's prompts/get is in flight too (not a tool call, never registered): an
        // unattributed message could be his, so it goes to nobody.
        let bob = relays.begin();
        assert!(matches!(
            relays.sender_for(None),
            Err(RelayError::Unattributable)
        ));
        drop(bob);
        assert!(relays.sender_for(None).is_ok());
    }

    #[tokio::test]
    async fn without_a_tool_call_in_flight_there_is_no_call_to_ask() {
        let relays = Arc::new(Relays::default());
        let ping = || ServerRequest::PingRequest(PingRequest::default());
        let err = relays.request(ping(), None).await;
        assert!(matches!(err, Err(RelayError::NoCall)), "{err:?}");
        // The gateway's own listing in flight is not a caller's call.
        let _listing = relays.begin();
        let err = relays.request(ping(), None).await;
        assert!(matches!(err, Err(RelayError::NoCall)), "{err:?}");
        let on_listing = InboundStreamOrigin::OutboundRequest(RequestId::Number(9));
        let err = relays.request(ping(), Some(&on_listing)).await;
        assert!(matches!(err, Err(RelayError::NoCall)), "{err:?}");
    }
}

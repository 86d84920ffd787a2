//! Resource subscriptions of 2026-07-28 listeners (`subscriptions/listen` with
//! `resourceSubscriptions`), sharing the upstream subscriptions of 2025-11-25 sessions
//! (`resources/subscribe`).
//!
//! The rule: the gateway holds one upstream subscription per resource URI for all its
//! clients. It subscribes when a client asks, and unsubscribes when no client wants the URI
//! any more: a legacy session that sent `resources/unsubscribe`, or a listener that ended.
//! [`ResourceWatch`] is the listener's hold on its URIs; dropping it releases them, so the
//! release happens on every path a listener ends by (the client closed it, the gateway shut
//! down, an upstream refused one of its URIs).

#![allow(deprecated)] // resources/subscribe is the upstream's method in both eras.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use rmcp::model::{
    ClientRequest, SubscribeRequest, SubscribeRequestParams, SubscriptionFilter,
    UnsubscribeRequest, UnsubscribeRequestParams,
};
use rmcp::service::RequestContext;
use rmcp::{ErrorData, RoleServer};

use super::{Gateway, Inner, forward_as, resource_target};
use crate::catalog::Catalog;
use crate::outbound::Principal;
use crate::targets::Target;

impl Inner {
    /// Whether any client still wants updates of `uri`: a live legacy session subscribed to
    /// it, or a listener watching it.
    pub(super) fn wanted(&self, uri: &str) -> bool {
        let by_session = self
            .sessions
            .lock()
            .values()
            .any(|s| !s.peer.is_transport_closed() && s.resources.contains(uri));
        by_session
            || self
                .listeners
                .lock()
                .values()
                .any(|uris| uris.contains(uri))
    }
}

/// The URIs of `requested` a listener may watch: those a target serves that takes
/// subscriptions. Any other is left out of the acknowledged filter (the client sees which).
pub(super) fn watchable(catalog: &Catalog, requested: &SubscriptionFilter) -> Option<Vec<String>> {
    let uris = requested.resource_subscriptions.as_ref()?;
    let view = catalog.view();
    Some(
        uris.iter()
            .filter(|uri| {
                catalog.resource_target(&view, uri).is_some_and(|t| {
                    t.listing()
                        .capabilities
                        .resources
                        .as_ref()
                        .is_some_and(|r| r.subscribe == Some(true))
                })
            })
            .cloned()
            .collect(),
    )
}

/// A listener's hold on the upstream subscriptions of its URIs; released on drop.
#[derive(Debug)]
pub(super) struct ResourceWatch {
    inner: Arc<Inner>,
    id: u64,
    /// The URIs subscribed upstream for this listener, with the target that took each.
    subscribed: Vec<(String, Target)>,
    /// Whom the subscriptions were made for (a per-user target subscribes in that user's
    /// session, and is unsubscribed there).
    principal: Option<Principal>,
}

impl Gateway {
    /// Subscribe upstream to `uris` for the listener of `ctx`. Fails (releasing what was
    /// subscribed) when an upstream refuses one.
    pub(super) async fn watch_resources(
        &self,
        uris: &[String],
        ctx: &RequestContext<RoleServer>,
    ) -> Result<ResourceWatch, ErrorData> {
        let id = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        // Registered before subscribing: a session unsubscribing meanwhile must see that
        // this listener wants the URI.
        self.inner
            .listeners
            .lock()
            .insert(id, uris.iter().cloned().collect::<HashSet<_>>());
        let mut watch = ResourceWatch {
            inner: self.inner.clone(),
            id,
            subscribed: Vec::with_capacity(uris.len()),
            principal: Principal::of_request(ctx.extensions.get::<::http::request::Parts>()),
        };
        let catalog = self.catalog();
        for uri in uris {
            let target = resource_target(&catalog, uri)?;
            let subscribe = ClientRequest::SubscribeRequest(SubscribeRequest::new(
                SubscribeRequestParams::new(uri.clone()),
            ));
            forward_as(&target, subscribe, watch.principal.as_ref()).await?;
            watch.subscribed.push((uri.clone(), target));
        }
        Ok(watch)
    }
}

impl Drop for ResourceWatch {
    fn drop(&mut self) {
        self.inner.listeners.lock().remove(&self.id);
        let released: Vec<_> = self
            .subscribed
            .drain(..)
            .filter(|(uri, _)| !self.inner.wanted(uri))
            .collect();
        if released.is_empty() {
            return;
        }
        // Outside a runtime the process is ending, and the upstream sessions with it.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let principal = self.principal.take();
        runtime.spawn(async move {
            for (uri, target) in released {
                let unsubscribe = ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(
                    UnsubscribeRequestParams::new(uri.clone()),
                ));
                if let Err(e) = forward_as(&target, unsubscribe, principal.as_ref()).await {
                    // The upstream keeps sending updates nobody receives; harmless.
                    tracing::debug!(
                        "ending the upstream subscription to {uri} of target `{}` failed: {}",
                        target.name(),
                        e.message
                    );
                }
            }
        });
    }
}

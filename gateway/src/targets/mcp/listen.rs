//! Notifications from a 2026-07-28 upstream. Such an upstream sends nothing unasked: list
//! changes and resource updates come only on a `subscriptions/listen` stream the client opens.
//! So for a 2026 session the gateway opens one stream for list changes when the session
//! opens (the listing is then refreshed as with a 2025 session's notifications), and one per
//! subscribed resource while some caller wants it (a caller's legacy `resources/subscribe`,
//! or a URI of its own `subscriptions/listen`).

use std::collections::HashMap;
use std::sync::Weak;

use parking_lot::Mutex;
use rmcp::model::{ServerNotification, SubscriptionFilter};
use rmcp::{ErrorData, Peer, RoleClient};
use tokio_util::sync::CancellationToken;

use super::session::Session;
use crate::events::CatalogEvent;

/// Follow the upstream's list changes for as long as the session lives (`ct`).
pub(super) fn list_changes(session: Weak<Session>, peer: Peer<RoleClient>, ct: CancellationToken) {
    let caps = peer.peer_info().map(|i| i.capabilities.clone());
    let declared = |f: fn(&rmcp::model::ServerCapabilities) -> bool| caps.as_ref().is_some_and(f);
    let mut filter = SubscriptionFilter::new();
    if declared(|c| {
        c.tools
            .as_ref()
            .is_some_and(|t| t.list_changed == Some(true))
    }) {
        filter.tools_list_changed = Some(true);
    }
    if declared(|c| {
        c.prompts
            .as_ref()
            .is_some_and(|p| p.list_changed == Some(true))
    }) {
        filter.prompts_list_changed = Some(true);
    }
    if declared(|c| {
        c.resources
            .as_ref()
            .is_some_and(|r| r.list_changed == Some(true))
    }) {
        filter.resources_list_changed = Some(true);
    }
    if filter == SubscriptionFilter::new() {
        return; // it announces no changes: its listing is read when the session opens
    }
    tokio::spawn(async move {
        let mut sub = tokio::select! {
            s = peer.listen(filter) => match s {
                Ok(s) => s,
                Err(e) => {
                    if let Some(session) = session.upgrade() {
                        tracing::warn!(target: "portcullis::targets", target_name = %session.spec.name, "target `{}` refused the gateway's subscription to its list changes ({e}); its listing is refreshed only when the session reconnects", session.spec.name);
                    }
                    return;
                }
            },
            _ = ct.cancelled() => return,
        };
        loop {
            let note = tokio::select! {
                n = sub.next() => n,
                _ = ct.cancelled() => return,
            };
            let Ok(Some(note)) = note else { return };
            let changed = matches!(
                note,
                ServerNotification::ToolListChangedNotification(_)
                    | ServerNotification::PromptListChangedNotification(_)
                    | ServerNotification::ResourceListChangedNotification(_)
            );
            if !changed {
                continue;
            }
            let Some(session) = session.upgrade() else {
                return;
            };
            if let Err(e) = session.refresh(&peer).await {
                tracing::warn!(target: "portcullis::targets", target_name = %session.spec.name, "refresh after list_changed failed: {e}");
            }
        }
    });
}

/// The resource subscriptions open on one 2026 session: one `subscriptions/listen` stream
/// per URI, ended when the last caller leaves it.
#[derive(Debug, Default)]
pub(super) struct ResourceStreams {
    open: Mutex<HashMap<String, CancellationToken>>,
}

impl ResourceStreams {
    /// Open the stream for `uri` (once), delivering its updates to the catalog's events.
    pub(super) async fn subscribe(
        &self,
        peer: &Peer<RoleClient>,
        uri: &str,
        events: tokio::sync::broadcast::Sender<CatalogEvent>,
        session_ct: &CancellationToken,
    ) -> Result<(), ErrorData> {
        if self.open.lock().contains_key(uri) {
            return Ok(());
        }
        let mut filter = SubscriptionFilter::new();
        filter.resource_subscriptions = Some(vec![uri.to_string()]);
        let mut sub = peer.listen(filter).await.map_err(|e| match e {
            rmcp::service::ServiceError::McpError(e) => e,
            other => ErrorData::internal_error(
                format!("the upstream did not open the subscription: {other}"),
                None,
            ),
        })?;
        if !sub
            .acknowledged()
            .resource_subscriptions
            .as_ref()
            .is_some_and(|u| u.iter().any(|u| u == uri))
        {
            return Err(ErrorData::invalid_params(
                format!("the upstream does not offer updates of `{uri}`"),
                None,
            ));
        }
        let ct = session_ct.child_token();
        self.open.lock().insert(uri.to_string(), ct.clone());
        tokio::spawn(async move {
            loop {
                let note = tokio::select! {
                    n = sub.next() => n,
                    _ = ct.cancelled() => return, // dropping `sub` cancels the stream upstream
                };
                match note {
                    Ok(Some(ServerNotification::ResourceUpdatedNotification(n))) => {
                        let _ = events.send(CatalogEvent::ResourceUpdated(n.params.uri));
                    }
                    Ok(Some(_)) => {}
                    _ => return,
                }
            }
        });
        Ok(())
    }

    pub(super) fn unsubscribe(&self, uri: &str) {
        if let Some(ct) = self.open.lock().remove(uri) {
            ct.cancel();
        }
    }
}

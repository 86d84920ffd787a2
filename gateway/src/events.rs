//! What changed in the catalog, told by targets (an upstream's `list_changed`, a resource
//! update) and by reloads — and consents completed in a browser — heard by the front door,
//! which tells its clients. It lives
//! here, beside neither side, so that `targets` and `catalog` need not import each other.

use tokio::sync::{broadcast, watch};

/// A change clients should hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    ToolsChanged,
    PromptsChanged,
    ResourcesChanged,
    /// An upstream said this resource changed (`notifications/resources/updated`).
    ResourceUpdated(String),
    /// A user completed the consent a call of MCP session `session` asked for
    /// (`notifications/elicitation/complete`, 2025-11-25 sessions only).
    ElicitationComplete {
        session: String,
        elicitation_id: String,
    },
}

/// The channels shared by every target and every catalog for the life of the process, so
/// that a reload (a new catalog reusing some targets) keeps one stream of events.
#[derive(Debug, Clone)]
pub struct Hub {
    /// Bumped by a target whose listing changed: the catalog view must be rebuilt.
    pub listings: watch::Sender<u64>,
    /// What the front door forwards to clients.
    pub events: broadcast::Sender<CatalogEvent>,
}

impl Hub {
    pub fn new() -> Self {
        Self {
            listings: watch::channel(0).0,
            events: broadcast::channel(256).0,
        }
    }

    /// A target's listing changed.
    pub fn listing_changed(&self) {
        self.listings.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn send(&self, event: CatalogEvent) {
        // No receiver (nobody connected yet) is not an error.
        let _ = self.events.send(event);
    }
}

impl Default for Hub {
    fn default() -> Self {
        Self::new()
    }
}

//! The aggregated catalog: every target's tools, prompts and resources under gateway names.
//!
//! Tool and prompt names are `{prefix}{separator}{name}` (or just `name` for an empty prefix).
//! The view is rebuilt whenever a target's listing changes; a name that collides or breaks the
//! MCP naming rules is left out and reported as a [`Conflict`] naming both sources, which
//! `portcullis check` and startup treat as a load error.

mod naming;
pub mod search;
pub mod search_tool;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use naming::{MAX_NAME_LEN, valid_name};

use crate::config::Snapshot;
pub use crate::events::CatalogEvent;
use crate::events::Hub;
use crate::outbound::{self, Principal};
use crate::targets::{self, Target, Wiring};

/// A name the catalog could not publish, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict(pub String);

/// Where a gateway tool or prompt comes from: the target by name (looked up in the same
/// catalog the view belongs to) and the upstream's own name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub target: String,
    pub upstream_name: String,
}

/// One immutable merged view; requests read one view from start to end.
#[derive(Debug, Default)]
pub struct View {
    pub tools: Vec<Tool>,
    pub tool_routes: HashMap<String, Route>,
    /// Scopes a caller needs per gateway tool name (from the targets' `[tools.NAME]`).
    pub tool_scopes: HashMap<String, Vec<String>>,
    pub prompts: Vec<Prompt>,
    pub prompt_routes: HashMap<String, Route>,
    pub resources: Vec<Resource>,
    /// Resource URI → the name of the target that listed it first.
    pub resource_owner: HashMap<String, String>,
    /// Resource templates with the name of the target that offers each, by URI template
    /// then target.
    pub templates: Vec<(String, ResourceTemplate)>,
    pub conflicts: Vec<Conflict>,
    /// `[tools.NAME]` settings naming a tool the target does not list (a typo would leave
    /// the real tool without its scope requirement).
    pub unknown_tool_settings: Vec<String>,
    /// The ranking index of `tools` for the search tool, built on its first search.
    search: std::sync::OnceLock<search::SearchIndex>,
}

impl View {
    /// The search index over `tools` (document `i` is `tools[i]`), built on first use: a
    /// view lives until the next listing change, so it is built once per change.
    pub fn search_index(&self) -> &search::SearchIndex {
        self.search.get_or_init(|| {
            search::SearchIndex::build(self.tools.iter().map(|t| search::Doc {
                name: &t.name,
                title: t.title.as_deref(),
                description: t.description.as_deref(),
                input_schema: &t.input_schema,
            }))
        })
    }

    /// A tool by its gateway name (the tools are sorted by name).
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools
            .binary_search_by(|t| t.name.as_ref().cmp(name))
            .ok()
            .map(|i| &self.tools[i])
    }
}

/// The targets of one configuration and their merged view. A reload compiles new targets
/// that reuse the sessions of unchanged ones ([`targets::compile`]) into a new catalog.
#[derive(Debug)]
pub struct Catalog {
    /// By name; the order (by name) is the order listings are merged in.
    targets: BTreeMap<String, Target>,
    separator: String,
    /// `[catalog] search_tool`: the gateway's tool search is listed with the tools.
    search_tool: bool,
    view: ArcSwap<View>,
    hub: Hub,
    /// The hub's listing-change count the current view was merged at.
    merged_at: std::sync::atomic::AtomicU64,
}

impl Catalog {
    /// A catalog of its own, for `check`, `tools` and tests: its targets are compiled and
    /// start connecting, and a task keeps the merged view current until `shutdown`.
    pub fn start(
        snapshot: &Snapshot,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, outbound::HttpClientError> {
        let wiring = Wiring {
            hub: Hub::new(),
            token_http: outbound::token_http_client()?,
            consent: None,
            shutdown: shutdown.clone(),
        };
        let targets = targets::compile(&snapshot.targets, None, &wiring)?;
        let catalog = Arc::new(Self::new(snapshot, targets, &wiring.hub, None));
        let weak = Arc::downgrade(&catalog);
        follow_listings(&wiring.hub, shutdown, move || match weak.upgrade() {
            Some(c) => {
                c.rebuild();
                true
            }
            None => false,
        });
        Ok(catalog)
    }

    /// The catalog of `snapshot` over its compiled `targets` ([`targets::compile`]). The view
    /// starts as `previous`'s, so the first [`rebuild`](Self::rebuild) announces exactly what
    /// changed.
    pub fn new(
        snapshot: &Snapshot,
        targets: BTreeMap<String, Target>,
        hub: &Hub,
        previous: Option<&Catalog>,
    ) -> Self {
        let view = previous.map_or_else(|| Arc::new(View::default()), Catalog::view);
        Self {
            targets,
            separator: snapshot.catalog.separator.clone(),
            search_tool: snapshot.catalog.search_tool,
            view: ArcSwap::new(view),
            hub: hub.clone(),
            merged_at: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }

    /// Whether the gateway's tool search is listed (`[catalog] search_tool`).
    pub fn search_tool(&self) -> bool {
        self.search_tool
    }

    /// The targets by name, for compiling the next configuration's.
    pub fn by_name(&self) -> &BTreeMap<String, Target> {
        &self.targets
    }

    /// Every target, in name order.
    pub fn targets(&self) -> impl ExactSizeIterator<Item = &Target> {
        self.targets.values()
    }

    pub fn target(&self, name: &str) -> Option<&Target> {
        self.targets.get(name)
    }

    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.hub.events.subscribe()
    }

    /// The target a tool name belongs to by its prefix, when that target has never connected
    /// (so its tools are not known yet). The longest matching prefix wins.
    pub fn pending_owner(&self, tool: &str) -> Option<&Target> {
        self.targets()
            .filter(|t| !t.spec().prefix.is_empty() && !t.ever_connected())
            .filter(|t| {
                tool.strip_prefix(t.spec().prefix.as_str())
                    .and_then(|rest| rest.strip_prefix(self.separator.as_str()))
                    .is_some_and(|rest| !rest.is_empty())
            })
            .max_by_key(|t| t.spec().prefix.len())
    }

    /// Targets without a prefix that have never connected: any unknown name may be theirs.
    pub fn pending_unprefixed(&self) -> Vec<&str> {
        self.targets()
            .filter(|t| t.spec().prefix.is_empty() && !t.ever_connected())
            .map(Target::name)
            .collect()
    }

    /// Connect every target now (in parallel), then publish the view. Returns each target's
    /// connection error, if any.
    pub async fn connect_all(&self) -> Vec<(String, targets::TargetError)> {
        let results = futures::future::join_all(self.targets().map(|t| t.ensure_connected())).await;
        self.rebuild();
        self.targets()
            .zip(results)
            .filter_map(|(t, r)| r.err().map(|e| (t.name().to_string(), e)))
            .collect()
    }

    /// Open `caller`'s session on every per-user target whose tools are not known yet, so
    /// its listing is learned (DESIGN §5). A no-op once they are all listed, or without a
    /// caller. Returns whether a listing was learned (and the view rebuilt).
    pub async fn learn_user_listings(&self, principal: Option<&Principal>) -> bool {
        let learned =
            futures::future::join_all(self.targets().map(|t| t.learn_listing(principal))).await;
        let any = learned.into_iter().any(|l| l);
        if any {
            self.rebuild();
        }
        any
    }

    /// Merge the targets' current listings into a new view and announce what changed.
    pub fn rebuild(&self) {
        let changes = self.refresh_view();
        self.announce(changes);
    }

    /// Merge the targets' current listings into a new view; returns what changed, for
    /// [`announce`](Self::announce).
    pub fn refresh_view(&self) -> Vec<CatalogEvent> {
        // Read before the listings: a change that lands during the merge leaves us "behind".
        let generation = *self.hub.listings.borrow();
        let listings: Vec<_> = self.targets().map(|t| t.listing()).collect();
        let mut view = View::default();
        let mut tool_sources: BTreeMap<String, String> = BTreeMap::new();
        if self.search_tool {
            // First, so a target tool of the same name is the one left out, naming both.
            let name = search_tool::SEARCH_TOOL;
            tool_sources.insert(
                name.to_string(),
                "the gateway's tool search (`search_tool` in [catalog] of gateway.toml)".into(),
            );
            view.tools.push(search_tool::tool());
        }
        let mut prompt_sources: BTreeMap<String, String> = BTreeMap::new();
        for (target, listing) in self.targets().zip(&listings) {
            let owner = target.name();
            let prefix = &target.spec().prefix;
            let source = |n: &str| {
                format!(
                    "tool `{n}` of target `{}` ({})",
                    target.name(),
                    target.spec().file.display()
                )
            };
            for tool in &listing.tools {
                let name = naming::gateway_name(prefix, &self.separator, &tool.name);
                match naming::check(&name, &source(&tool.name), &tool_sources) {
                    Ok(()) => {
                        tool_sources.insert(name.clone(), source(&tool.name));
                        let mut t = tool.clone();
                        t.name = name.clone().into();
                        view.tools.push(t);
                        if let Some(scopes) = target.spec().tool_scopes.get(tool.name.as_ref()) {
                            view.tool_scopes.insert(name.clone(), scopes.clone());
                        }
                        view.tool_routes.insert(
                            name,
                            Route {
                                target: owner.to_string(),
                                upstream_name: tool.name.to_string(),
                            },
                        );
                    }
                    Err(c) => view.conflicts.push(c),
                }
            }
            for prompt in &listing.prompts {
                let name = naming::gateway_name(prefix, &self.separator, &prompt.name);
                let src = format!("prompt `{}` of target `{}`", prompt.name, target.name());
                match naming::check(&name, &src, &prompt_sources) {
                    Ok(()) => {
                        prompt_sources.insert(name.clone(), src);
                        let mut p = prompt.clone();
                        p.name = name.clone();
                        view.prompts.push(p);
                        view.prompt_routes.insert(
                            name,
                            Route {
                                target: owner.to_string(),
                                upstream_name: prompt.name.clone(),
                            },
                        );
                    }
                    Err(c) => view.conflicts.push(c),
                }
            }
            for r in &listing.resources {
                // Resource URIs are global; the first target that lists one owns it.
                if let std::collections::hash_map::Entry::Vacant(slot) =
                    view.resource_owner.entry(r.uri.clone())
                {
                    slot.insert(owner.to_string());
                    view.resources.push(r.clone());
                }
            }
            view.templates.extend(
                listing
                    .templates
                    .iter()
                    .cloned()
                    .map(|t| (owner.to_string(), t)),
            );
            if !listing.tools.is_empty() {
                for name in target.spec().tool_scopes.keys() {
                    if !listing.tools.iter().any(|t| t.name == name.as_str()) {
                        view.unknown_tool_settings.push(format!(
                            "{}: `[tools.{name}]` names no tool of target `{}`; its scopes protect nothing. Fix: use one of the upstream tool names `portcullis tools` lists (without the prefix)",
                            target.spec().file.display(),
                            target.name()
                        ));
                    }
                }
            }
        }
        // Deterministic order (the spec asks for it; clients cache by it), and the order
        // listings are paged in: a cursor is the key of the last item served
        // (`server/pages.rs`).
        view.tools.sort_by(|a, b| a.name.cmp(&b.name));
        view.prompts.sort_by(|a, b| a.name.cmp(&b.name));
        view.resources.sort_by(|a, b| a.uri.cmp(&b.uri));
        view.templates.sort_by(|(a_owner, a), (b_owner, b)| {
            (&a.uri_template, a_owner).cmp(&(&b.uri_template, b_owner))
        });
        let old = self.view.load();
        for c in view.conflicts.iter().filter(|c| !old.conflicts.contains(c)) {
            tracing::error!(target: "portcullis::catalog", "{}", c.0);
        }
        for w in view
            .unknown_tool_settings
            .iter()
            .filter(|w| !old.unknown_tool_settings.contains(w))
        {
            tracing::warn!(target: "portcullis::catalog", "{w}");
        }
        drop(old);
        let old = self.view.swap(Arc::new(view));
        self.merged_at
            .store(generation, std::sync::atomic::Ordering::Relaxed);
        let new = self.view.load();
        let mut changes = Vec::new();
        if old.tools != new.tools {
            changes.push(CatalogEvent::ToolsChanged);
        }
        if old.prompts != new.prompts {
            changes.push(CatalogEvent::PromptsChanged);
        }
        if old.resources != new.resources || old.templates != new.templates {
            changes.push(CatalogEvent::ResourcesChanged);
        }
        changes
    }

    /// Whether a target's listing changed since the view was merged (the background merge
    /// has not run yet).
    pub fn is_behind(&self) -> bool {
        *self.hub.listings.borrow() != self.merged_at.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Tell clients (through the hub) what [`refresh_view`](Self::refresh_view) changed.
    pub fn announce(&self, changes: Vec<CatalogEvent>) {
        for change in changes {
            self.hub.send(change);
        }
    }

    /// The target that serves a resource URI: the one that listed it, else the first (by
    /// name) whose template matches it, else the only target offering resources.
    pub fn resource_target(&self, view: &View, uri: &str) -> Option<&Target> {
        if let Some(owner) = view.resource_owner.get(uri) {
            return self.target(owner);
        }
        if let Some((owner, _)) = view
            .templates
            .iter()
            .filter(|(_, t)| naming::template_matches(&t.uri_template, uri))
            .min_by(|(a, _), (b, _)| a.cmp(b))
        {
            return self.target(owner);
        }
        let mut with_resources = self
            .targets()
            .filter(|t| t.listing().capabilities.resources.is_some());
        match (with_resources.next(), with_resources.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

/// Call `rebuild` each time a target's listing changes, until it returns `false` or
/// `shutdown`. Several changes in a burst may be served by one call.
pub fn follow_listings(
    hub: &Hub,
    shutdown: CancellationToken,
    rebuild: impl Fn() -> bool + Send + 'static,
) {
    let mut changes = hub.listings.subscribe();
    // A target may have reported its listing before this subscription existed (a stdio
    // target connects in milliseconds): that change is already "seen", so merge once now.
    changes.mark_changed();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                r = changes.changed() => if r.is_err() { return },
            }
            if !rebuild() {
                return;
            }
        }
    });
}

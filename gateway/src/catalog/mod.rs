//! The aggregated catalog: every target's tools, prompts and resources under gateway names.
//!
//! Tool and prompt names are `{prefix}{separator}{name}` (or just `name` for an empty prefix).
//! The view is rebuilt whenever a target's listing changes; a name that collides or breaks the
//! MCP naming rules is left out and reported as a [`Conflict`] naming both sources, which
//! `portcullis check` and startup treat as a load error.

mod naming;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rmcp::model::{Prompt, Resource, ResourceTemplate, Tool};
use tokio::sync::{broadcast, watch};
use tokio_util::sync::CancellationToken;

pub use naming::{MAX_NAME_LEN, valid_name};

use crate::config::{Snapshot, TargetKind};
use crate::outbound;
use crate::targets::McpTarget;

/// What changed, for the front door to tell its clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogEvent {
    ToolsChanged,
    PromptsChanged,
    ResourcesChanged,
    /// An upstream said this resource changed (`notifications/resources/updated`).
    ResourceUpdated(String),
}

/// A name the catalog could not publish, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict(pub String);

/// Where a gateway tool or prompt comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub target: usize,
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
    pub resource_owner: HashMap<String, usize>,
    pub templates: Vec<(usize, ResourceTemplate)>,
    pub conflicts: Vec<Conflict>,
    /// `[tools.NAME]` settings naming a tool the target does not list (a typo would leave
    /// the real tool without its scope requirement).
    pub unknown_tool_settings: Vec<String>,
}

#[derive(Debug)]
pub struct Catalog {
    targets: Vec<McpTarget>,
    separator: String,
    view: ArcSwap<View>,
    events: broadcast::Sender<CatalogEvent>,
}

impl Catalog {
    /// Start one target per spec and a task that keeps the merged view current.
    pub fn start(snapshot: &Snapshot, shutdown: CancellationToken) -> Arc<Self> {
        let (changed, mut on_change) = watch::channel(0u64);
        let (events, _) = broadcast::channel(256);
        let token_http = outbound::token_http_client();
        let targets = snapshot
            .targets
            .iter()
            .map(|spec| match &spec.kind {
                TargetKind::Mcp(t) => McpTarget::start(
                    spec.clone(),
                    t.clone(),
                    outbound::provider(&spec.auth, token_http.clone()),
                    changed.clone(),
                    events.clone(),
                    shutdown.clone(),
                ),
            })
            .collect();
        let catalog = Arc::new(Self {
            targets,
            separator: snapshot.catalog.separator.clone(),
            view: ArcSwap::from_pointee(View::default()),
            events,
        });
        let weak = Arc::downgrade(&catalog);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    r = on_change.changed() => if r.is_err() { return },
                }
                match weak.upgrade() {
                    Some(c) => c.rebuild(),
                    None => return,
                }
            }
        });
        catalog
    }

    pub fn targets(&self) -> &[McpTarget] {
        &self.targets
    }

    pub fn view(&self) -> Arc<View> {
        self.view.load_full()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.events.subscribe()
    }

    /// The target a tool name belongs to by its prefix, when that target has never connected
    /// (so its tools are not known yet). The longest matching prefix wins.
    pub fn pending_owner(&self, tool: &str) -> Option<&McpTarget> {
        self.targets
            .iter()
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
        self.targets
            .iter()
            .filter(|t| t.spec().prefix.is_empty() && !t.ever_connected())
            .map(McpTarget::name)
            .collect()
    }

    /// Connect every target now (in parallel), then publish the view. Returns each target's
    /// connection error, if any.
    pub async fn connect_all(&self) -> Vec<(String, crate::targets::TargetError)> {
        let results =
            futures::future::join_all(self.targets.iter().map(|t| t.ensure_connected())).await;
        self.rebuild();
        self.targets
            .iter()
            .zip(results)
            .filter_map(|(t, r)| r.err().map(|e| (t.name().to_string(), e)))
            .collect()
    }

    /// Merge the targets' current listings into a new view and announce what changed.
    pub fn rebuild(&self) {
        let listings: Vec<_> = self.targets.iter().map(|t| t.listing()).collect();
        let mut view = View::default();
        let mut tool_sources: BTreeMap<String, String> = BTreeMap::new();
        let mut prompt_sources: BTreeMap<String, String> = BTreeMap::new();
        for (i, (target, listing)) in self.targets.iter().zip(&listings).enumerate() {
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
                                target: i,
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
                                target: i,
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
                    slot.insert(i);
                    view.resources.push(r.clone());
                }
            }
            view.templates
                .extend(listing.templates.iter().cloned().map(|t| (i, t)));
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
        // Deterministic order (the spec asks for it; clients cache by it).
        view.tools.sort_by(|a, b| a.name.cmp(&b.name));
        view.prompts.sort_by(|a, b| a.name.cmp(&b.name));
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
        let new = self.view.load();
        if old.tools != new.tools {
            let _ = self.events.send(CatalogEvent::ToolsChanged);
        }
        if old.prompts != new.prompts {
            let _ = self.events.send(CatalogEvent::PromptsChanged);
        }
        if old.resources != new.resources || old.templates != new.templates {
            let _ = self.events.send(CatalogEvent::ResourcesChanged);
        }
    }

    /// The target that serves a resource URI: the one that listed it, else the first whose
    /// template matches it, else the only target offering resources.
    pub fn resource_target(&self, view: &View, uri: &str) -> Option<&McpTarget> {
        if let Some(i) = view.resource_owner.get(uri) {
            return self.targets.get(*i);
        }
        if let Some((i, _)) = view
            .templates
            .iter()
            .find(|(_, t)| naming::template_matches(&t.uri_template, uri))
        {
            return self.targets.get(*i);
        }
        let mut with_resources = self
            .targets
            .iter()
            .filter(|t| t.listing().capabilities.resources.is_some());
        match (with_resources.next(), with_resources.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }
}

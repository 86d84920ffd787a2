//! The MCP front door: an rmcp `ServerHandler` over streamable HTTP that serves the merged
//! catalog and routes each request to the target that owns it. It serves 2025-11-25 clients
//! (initialize + `Mcp-Session-Id`) and 2026-07-28 stateless clients on the same endpoint.
//! It never sees a secret: targets hold their own credentials.

mod call;
pub mod call_error;
mod cors;
pub mod errors;
pub mod http;
mod pages;
mod search;
mod subscriptions;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use rmcp::model::*;
use rmcp::service::{RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};

use crate::catalog::Catalog;
use crate::events::CatalogEvent;
use crate::input;
use crate::policy::Item;
use crate::runtime::Live;
use crate::targets::Target;
use pages::Listing;
use serde_json::json;

/// The handler for one session (2025-11-25) or one request (2026-07-28). The factory makes
/// one per session with [`Gateway::for_session`]; all share [`Inner`].
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
    session: u64,
}

#[derive(Debug)]
struct Inner {
    /// The runtime in force; loaded per request, so a reload never drops a session.
    live: Arc<Live>,
    /// Live 2025-11-25 sessions, told about list changes and resource updates through their
    /// session stream.
    sessions: Mutex<HashMap<u64, Session>>,
    /// Live 2026-07-28 listeners' watched resource URIs, by listener.
    listeners: Mutex<HashMap<u64, HashSet<String>>>,
    /// Numbers sessions and listeners.
    next_session: AtomicU64,
}

#[derive(Debug)]
struct Session {
    peer: Peer<RoleServer>,
    /// Resource URIs this session subscribed to.
    resources: HashSet<String>,
    /// The `Mcp-Session-Id` the client uses, to tell it of its completed consents.
    mcp_id: Option<String>,
}

impl Gateway {
    pub fn new(live: Arc<Live>) -> Self {
        let events = live.subscribe();
        let inner = Arc::new(Inner {
            live,
            sessions: Mutex::new(HashMap::new()),
            listeners: Mutex::new(HashMap::new()),
            next_session: AtomicU64::new(1),
        });
        tokio::spawn(announce_changes(Arc::downgrade(&inner), events));
        Self { inner, session: 0 }
    }

    /// A handler for a new session (or stateless request).
    pub fn for_session(&self) -> Self {
        let session = self.inner.next_session.fetch_add(1, Ordering::Relaxed);
        Self {
            inner: self.inner.clone(),
            session,
        }
    }

    pub fn live(&self) -> &Arc<Live> {
        &self.inner.live
    }

    /// The catalog of the runtime in force. Read the view and the targets of one request
    /// from the one catalog this returns.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.inner.live.load().catalog.clone()
    }
}

/// The target a route names, from the catalog the route was read from.
fn target_of(catalog: &Catalog, name: &str) -> Result<Target, ErrorData> {
    catalog
        .target(name)
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("catalog route names no target", None))
}

/// The target that serves a resource URI, or the "not found" error naming it.
fn resource_target(catalog: &Catalog, uri: &str) -> Result<Target, ErrorData> {
    catalog
        .resource_target(&catalog.view(), uri)
        .cloned()
        .ok_or_else(|| errors::unknown_resource(uri))
}

/// What a listing shows `ctx`'s caller, by the policies of `runtime`.
fn lister<'a>(
    runtime: &'a crate::runtime::Runtime,
    view: &'a crate::catalog::View,
    ctx: &RequestContext<RoleServer>,
) -> crate::policy::Lister<'a> {
    let caller = crate::identity::caller_of(ctx.extensions.get::<::http::request::Parts>());
    crate::policy::Lister::new(runtime.policies.as_deref(), view, caller)
}

impl Gateway {
    /// The runtime for a listing request, after `ctx`'s caller opened their session on any
    /// per-user target whose tools are not known yet (its tools come from its users' own
    /// sessions).
    ///
    /// One runtime for the whole listing: its catalog and the policies that filter it.
    async fn listed(&self, ctx: &RequestContext<RoleServer>) -> Arc<crate::runtime::Runtime> {
        let runtime = self.live().load();
        let catalog = &runtime.catalog;
        // A listing merged by the background task a moment from now is served now.
        if catalog.is_behind() {
            catalog.rebuild();
        }
        let principal =
            crate::outbound::Principal::of_request(ctx.extensions.get::<::http::request::Parts>());
        catalog.learn_user_listings(principal.as_ref()).await;
        runtime
    }

    /// The policies' decision on a prompt or resource (allowed unless a policy names its
    /// action and denies it).
    /// When the policies govern the item, their decision is an audit event (`tool` names the
    /// prompt or the resource URI).
    fn authorize(
        &self,
        ctx: &RequestContext<RoleServer>,
        item: Item<'_>,
        what: &str,
        data: serde_json::Value,
    ) -> Result<(), ErrorData> {
        let started = std::time::Instant::now();
        let parts = ctx.extensions.get::<::http::request::Parts>();
        let caller = crate::identity::caller_of(parts);
        let verdict = crate::policy::item(self.live().load().policies.as_deref(), caller, item);
        let answer = match verdict.decision {
            crate::policy::Decision::Denied(denial) => {
                Err(errors::denied_by_policy(what, data, &denial))
            }
            _ => Ok(()),
        };
        if let Some(record) = verdict.record {
            use crate::telemetry::{AuditEvent, Decision, Outcome, PolicyOutcome};
            let (method, target, name) = match item {
                Item::Prompt { name, target } => ("prompts/get", target, name),
                Item::Resource { uri, target } => ("resources/read", target, uri),
            };
            let who =
                caller.map_or_else(|| "anonymous".to_string(), crate::identity::Caller::label);
            let mut event = AuditEvent::new(call::request_id(ctx), who, method);
            event.path = call::request_path(ctx);
            event.target = Some(target.to_string());
            event.tool = Some(name.to_string());
            event.decision = if answer.is_ok() {
                Decision::Allow
            } else {
                Decision::Deny
            };
            event.policy = Some(PolicyOutcome {
                mode: record.mode.as_str(),
                decision: if record.allowed {
                    Decision::Allow
                } else {
                    Decision::Deny
                },
                policies: record.policies,
            });
            let outcome = match &answer {
                Ok(()) => Outcome::Ok { is_error: false },
                Err(e) => Outcome::Error {
                    code: e.code.0,
                    message: e.message.to_string(),
                },
            };
            event.finish(outcome, started.elapsed()).emit();
        }
        answer
    }

    /// Items per page of a listing, from the configuration in force (a reload may change it).
    fn page_size(&self) -> usize {
        self.inner.live.load().snapshot.catalog.page_size
    }

    fn track_subscription(&self, uri: &str, subscribed: bool) {
        if let Some(s) = self.inner.sessions.lock().get_mut(&self.session) {
            if subscribed {
                s.resources.insert(uri.to_string());
            } else {
                s.resources.remove(uri);
            }
        }
    }
}

/// Forward catalog changes to every live legacy session, and resource updates to the sessions
/// subscribed to that resource (2026-07-28 clients get list changes through
/// `subscriptions/listen`, see [`Gateway::listen`]).
async fn announce_changes(
    inner: std::sync::Weak<Inner>,
    mut events: tokio::sync::broadcast::Receiver<CatalogEvent>,
) {
    loop {
        let event = match events.recv().await {
            Ok(e) => e,
            // Missed events: tell sessions the lists may all have changed.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => CatalogEvent::ToolsChanged,
            Err(_) => return,
        };
        let Some(inner) = inner.upgrade() else { return };
        let peers: Vec<_> = {
            let mut s = inner.sessions.lock();
            s.retain(|_, s| !s.peer.is_transport_closed());
            s.values()
                .filter(|s| match &event {
                    CatalogEvent::ResourceUpdated(uri) => s.resources.contains(uri),
                    CatalogEvent::ElicitationComplete { session, .. } => {
                        s.mcp_id.as_deref() == Some(session.as_str())
                    }
                    _ => true,
                })
                .map(|s| s.peer.clone())
                .collect()
        };
        for peer in peers {
            let sent = match &event {
                CatalogEvent::ToolsChanged => peer.notify_tool_list_changed().await,
                CatalogEvent::PromptsChanged => peer.notify_prompt_list_changed().await,
                CatalogEvent::ResourcesChanged => peer.notify_resource_list_changed().await,
                CatalogEvent::ResourceUpdated(uri) => {
                    peer.notify_resource_updated(ResourceUpdatedNotificationParam::new(uri.clone()))
                        .await
                }
                // No typed API in rmcp for this 2025-11-25 notification.
                CatalogEvent::ElicitationComplete { elicitation_id, .. } => {
                    peer.send_notification(ServerNotification::CustomNotification(
                        CustomNotification::new(
                            "notifications/elicitation/complete",
                            Some(serde_json::json!({ "elicitationId": elicitation_id })),
                        ),
                    ))
                    .await
                }
            };
            if let Err(e) = sent {
                tracing::debug!("notification not delivered to a session: {e}");
            }
        }
    }
}

/// The cursor a listing request continues from, if any.
fn cursor(req: &Option<PaginatedRequestParams>) -> Option<&str> {
    req.as_ref().and_then(|r| r.cursor.as_deref())
}

/// Results from a 2025-11-25 upstream carry no `resultType`; 2026-07-28 clients require it
/// (rmcp strips it again for legacy clients).
fn complete(result_type: &mut Option<ResultType>) {
    result_type.get_or_insert(ResultType::COMPLETE);
}

fn strip_meta<T>(meta: &mut Option<T>) {
    // The downstream's _meta (its protocol version, capabilities, progress token) describes
    // the downstream session, not ours; rmcp sets our own on the upstream request.
    *meta = None;
}

#[allow(deprecated)] // logging/setLevel and resources/subscribe are 2025-11-25 methods we serve.
impl ServerHandler for Gateway {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_resources()
            .enable_tools()
            .enable_prompts_list_changed()
            .enable_resources_list_changed()
            .enable_resources_subscribe()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(caps)
            .with_server_info(Implementation::new("portcullis", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Portcullis MCP gateway: the tools of several targets, each name prefixed with its target's.",
            )
    }

    async fn on_initialized(&self, ctx: rmcp::service::NotificationContext<RoleServer>) {
        let mcp_id = ctx
            .extensions
            .get::<::http::request::Parts>()
            .and_then(|p| p.headers.get("mcp-session-id"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let mut s = self.inner.sessions.lock();
        s.retain(|_, s| !s.peer.is_transport_closed());
        s.insert(
            self.session,
            Session {
                peer: ctx.peer,
                resources: HashSet::new(),
                mcp_id,
            },
        );
    }

    async fn list_tools(
        &self,
        req: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // The same authorizer as calls: a caller sees the tools it may call (or step up to).
        let runtime = self.listed(&ctx).await;
        let view = runtime.catalog.view();
        let lister = lister(&runtime, &view, &ctx);
        let (tools, next) = pages::page(
            Listing::Tools,
            &view.tools,
            |t| (&t.name, ""),
            cursor(&req),
            self.page_size(),
            |t| lister.shows(&t.name),
        )?;
        let mut result = ListToolsResult::with_all_items(tools);
        result.next_cursor = next;
        Ok(result)
    }

    /// rmcp asks this on every 2026-07-28 `tools/call` (to check the request's headers
    /// against the tool's schema): a lookup in the sorted view, not a scan of every tool.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.catalog().view().tool(name).cloned()
    }

    async fn call_tool(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        call::call_tool(self, req, ctx).await
    }

    async fn list_prompts(
        &self,
        req: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let runtime = self.listed(&ctx).await;
        let view = runtime.catalog.view();
        let lister = lister(&runtime, &view, &ctx);
        let (prompts, next) = pages::page(
            Listing::Prompts,
            &view.prompts,
            |p| (&p.name, ""),
            cursor(&req),
            self.page_size(),
            |p| {
                view.prompt_routes.get(&p.name).is_none_or(|r| {
                    lister.shows_item(Item::Prompt {
                        name: &p.name,
                        target: &r.target,
                    })
                })
            },
        )?;
        let mut result = ListPromptsResult::with_all_items(prompts);
        result.next_cursor = next;
        Ok(result)
    }

    async fn get_prompt(
        &self,
        mut req: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let catalog = self.catalog();
        let view = catalog.view();
        let route = view
            .prompt_routes
            .get(&req.name)
            .ok_or_else(|| errors::unknown_prompt(&req.name))?;
        self.authorize(
            &ctx,
            Item::Prompt {
                name: &req.name,
                target: &route.target,
            },
            &format!("prompt `{}`", req.name),
            json!({ "prompt": req.name }),
        )?;
        let target = target_of(&catalog, &route.target)?;
        let what = format!("prompts/get {}", req.name);
        let arguments = req.arguments.clone();
        req.name = route.upstream_name.clone();
        strip_meta(&mut req.meta);
        let earlier = (req.request_state.take(), req.input_responses.take());
        let answered = self
            .forward_with_input(
                &target,
                &what,
                arguments.as_ref(),
                &ctx,
                |state, answers| {
                    let mut req = req.clone();
                    req.request_state = state;
                    req.input_responses = answers;
                    ClientRequest::GetPromptRequest(GetPromptRequest::new(req))
                },
                earlier,
            )
            .await?;
        match answered {
            Answered::Asked(r) => Ok(GetPromptResponse::InputRequired(r)),
            Answered::Done(done) => match *done {
                ServerResult::GetPromptResult(mut r) => {
                    complete(&mut r.result_type);
                    Ok(r.into())
                }
                other => Err(unexpected(other)),
            },
        }
    }

    async fn list_resources(
        &self,
        req: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let runtime = self.listed(&ctx).await;
        let view = runtime.catalog.view();
        let lister = lister(&runtime, &view, &ctx);
        let (resources, next) = pages::page(
            Listing::Resources,
            &view.resources,
            |r| (&r.uri, ""),
            cursor(&req),
            self.page_size(),
            |r| {
                view.resource_owner.get(&r.uri).is_none_or(|owner| {
                    lister.shows_item(Item::Resource {
                        uri: &r.uri,
                        target: owner,
                    })
                })
            },
        )?;
        let mut result = ListResourcesResult::with_all_items(resources);
        result.next_cursor = next;
        Ok(result)
    }

    async fn list_resource_templates(
        &self,
        req: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let view = self.listed(&ctx).await.catalog.view();
        let (templates, next) = pages::page(
            Listing::Templates,
            &view.templates,
            |(owner, t)| (&t.uri_template, owner),
            cursor(&req),
            self.page_size(),
            |_| true,
        )?;
        let mut result = ListResourceTemplatesResult::with_all_items(
            templates.into_iter().map(|(_, t)| t).collect(),
        );
        result.next_cursor = next;
        Ok(result)
    }

    async fn read_resource(
        &self,
        mut req: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let target = resource_target(&self.catalog(), &req.uri)?;
        self.authorize(
            &ctx,
            Item::Resource {
                uri: &req.uri,
                target: target.name(),
            },
            &format!("reading resource `{}`", req.uri),
            json!({ "uri": req.uri }),
        )?;
        strip_meta(&mut req.meta);
        let what = format!("resources/read {}", req.uri);
        let earlier = (req.request_state.take(), req.input_responses.take());
        let answered = self
            .forward_with_input(
                &target,
                &what,
                None,
                &ctx,
                |state, answers| {
                    let mut req = req.clone();
                    req.request_state = state;
                    req.input_responses = answers;
                    ClientRequest::ReadResourceRequest(ReadResourceRequest::new(req))
                },
                earlier,
            )
            .await?;
        match answered {
            Answered::Asked(r) => Ok(ReadResourceResponse::InputRequired(r)),
            Answered::Done(done) => match *done {
                ServerResult::ReadResourceResult(mut r) => {
                    complete(&mut r.result_type);
                    Ok(r.into())
                }
                other => Err(unexpected(other)),
            },
        }
    }

    async fn subscribe(
        &self,
        mut req: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let target = resource_target(&self.catalog(), &req.uri)?;
        strip_meta(&mut req.meta);
        let uri = req.uri.clone();
        forward(
            &target,
            ClientRequest::SubscribeRequest(SubscribeRequest::new(req)),
            &ctx,
        )
        .await?;
        self.track_subscription(&uri, true);
        Ok(())
    }

    async fn unsubscribe(
        &self,
        mut req: UnsubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let target = resource_target(&self.catalog(), &req.uri)?;
        strip_meta(&mut req.meta);
        self.track_subscription(&req.uri, false);
        // The upstream subscription is shared by every client: keep it while anyone wants it
        // (`subscriptions.rs`).
        if self.inner.wanted(&req.uri) {
            return Ok(());
        }
        forward(
            &target,
            ClientRequest::UnsubscribeRequest(UnsubscribeRequest::new(req)),
            &ctx,
        )
        .await
        .map(|_| ())
    }

    async fn complete(
        &self,
        mut req: CompleteRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let catalog = self.catalog();
        let view = catalog.view();
        let target = match &mut req.r#ref {
            Reference::Prompt(p) => {
                let route = view
                    .prompt_routes
                    .get(&p.name)
                    .ok_or_else(|| errors::unknown_prompt(&p.name))?;
                p.name = route.upstream_name.clone();
                target_of(&catalog, &route.target)?
            }
            Reference::Resource(r) => resource_target(&catalog, &r.uri)?,
            _ => {
                return Err(ErrorData::invalid_params(
                    "unsupported completion reference type",
                    None,
                ));
            }
        };
        strip_meta(&mut req.meta);
        match forward(
            &target,
            ClientRequest::CompleteRequest(CompleteRequest::new(req)),
            &ctx,
        )
        .await?
        {
            ServerResult::CompleteResult(mut r) => {
                complete(&mut r.result_type);
                Ok(r)
            }
            other => Err(unexpected(other)),
        }
    }

    async fn set_level(
        &self,
        _req: SetLevelRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Upstream sessions are shared between callers, so one caller's level is not pushed
        // upstream; log messages attributable to a caller's call are relayed to that caller.
        Ok(())
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let mut accepted = requested.clone();
        accepted.resource_subscriptions = subscriptions::watchable(&self.catalog(), requested);
        Some(accepted)
    }

    async fn listen(&self, ctx: SubscriptionContext) -> Result<(), ErrorData> {
        use rmcp::service::SubscriptionSendError;
        // Before subscribing upstream, so the first update is not missed.
        let mut events = self.inner.live.subscribe();
        let uris = ctx
            .accepted()
            .resource_subscriptions
            .clone()
            .unwrap_or_default();
        // Held until this listener ends, however it ends; then released upstream.
        let _watch = if uris.is_empty() {
            None
        } else {
            Some(self.watch_resources(&uris, ctx.request_context()).await?)
        };
        loop {
            let batch = tokio::select! {
                _ = ctx.cancelled() => return Ok(()),
                e = events.recv() => match e {
                    Ok(e) => vec![e],
                    // Missed events: announce every kind and every watched resource, the
                    // client re-reads what it follows.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let lists = [CatalogEvent::ToolsChanged, CatalogEvent::PromptsChanged, CatalogEvent::ResourcesChanged];
                        lists.into_iter().chain(uris.iter().cloned().map(CatalogEvent::ResourceUpdated)).collect()
                    }
                    Err(_) => return Ok(()),
                },
            };
            let sink = ctx.sink();
            for event in batch {
                let sent = match event {
                    CatalogEvent::ToolsChanged => sink.notify_tool_list_changed().await,
                    CatalogEvent::PromptsChanged => sink.notify_prompt_list_changed().await,
                    CatalogEvent::ResourcesChanged => sink.notify_resource_list_changed().await,
                    // The sink drops URIs this listener does not watch.
                    CatalogEvent::ResourceUpdated(uri) => sink.notify_resource_updated(uri).await,
                    // A completed consent is told to 2025-11-25 sessions only (a 2026 client
                    // retries with its `requestState`).
                    CatalogEvent::ElicitationComplete { .. } => Ok(()),
                };
                match sent {
                    // A kind this client did not subscribe to: not for it, keep listening.
                    Ok(()) | Err(SubscriptionSendError::NotificationNotAccepted(_)) => {}
                    Err(_) => return Ok(()),
                }
            }
        }
    }
}

/// Send `request` to `target` on behalf of the request's caller (a per-user target answers
/// from that caller's own session).
/// The answer to a `prompts/get` or `resources/read`: the upstream's result, or (a 2026
/// caller) the 2026 upstream's questions.
enum Answered {
    Done(Box<ServerResult>),
    Asked(InputRequiredResult),
}

impl Gateway {
    /// Forward a `prompts/get` or `resources/read`, whose 2026 upstream may answer
    /// `input_required`: passed through to a 2026 caller (the upstream's `requestState`
    /// sealed inside the gateway's, bound to the caller, `what` and `arguments`), or asked of
    /// a 2025 caller and the upstream asked again with the answers, as for tool calls
    /// (`call.rs`). `earlier`: the retry's echoed state and answers.
    async fn forward_with_input(
        &self,
        target: &Target,
        what: &str,
        arguments: Option<&JsonObject>,
        ctx: &RequestContext<RoleServer>,
        make: impl Fn(Option<String>, Option<InputResponses>) -> ClientRequest,
        earlier: (Option<String>, Option<InputResponses>),
    ) -> Result<Answered, ErrorData> {
        let principal =
            crate::outbound::Principal::of_request(ctx.extensions.get::<::http::request::Parts>());
        let binding = crate::request_state::Binding {
            caller: principal.as_ref().map(|p| &p.caller),
            tool: what,
            arguments,
        };
        let states = self.inner.live.states();
        // Answers without a state are for a stateless upstream to read, or ignore.
        let (mut state, mut answers) = (None, earlier.1);
        if let Some(sealed) = earlier.0 {
            let given = answers.take();
            match states.open(&sealed, &binding) {
                Ok(crate::request_state::Resume::Upstream {
                    target: t,
                    state: s,
                }) if t == target.name() => {
                    (state, answers) = (s, given);
                }
                _ => {
                    return Err(ErrorData::invalid_params(
                        "the requestState of this retry was not issued for this caller and request, or has expired; send the request again without requestState to start over",
                        None,
                    ));
                }
            }
        }
        let stateless = ctx.protocol_version() == Some(ProtocolVersion::V_2026_07_28);
        for _ in 0..DEFAULT_MRTR_MAX_ROUNDS {
            let asked = match forward_as(
                target,
                make(state.take(), answers.take()),
                principal.as_ref(),
            )
            .await?
            {
                ServerResult::InputRequiredResult(asked) => asked,
                done => return Ok(Answered::Done(Box::new(done))),
            };
            if stateless {
                let sealed = states.seal(
                    crate::request_state::Resume::Upstream {
                        target: target.name().to_string(),
                        state: asked.request_state,
                    },
                    &binding,
                    None,
                );
                return Ok(Answered::Asked(InputRequiredResult::new(
                    asked.input_requests,
                    Some(sealed),
                )));
            }
            let mut given = std::collections::BTreeMap::new();
            for (key, request) in asked.input_requests.unwrap_or_default() {
                given.insert(key, input::ask_now(&ctx.peer, request).await?);
            }
            answers = Some(input::as_input_responses(given));
            state = asked.request_state;
        }
        Err(ErrorData::internal_error(
            format!(
                "target `{}` asked for input too many times in one request; the gateway stopped asking",
                target.name()
            ),
            None,
        ))
    }
}

async fn forward(
    target: &Target,
    request: ClientRequest,
    ctx: &RequestContext<RoleServer>,
) -> Result<ServerResult, ErrorData> {
    let principal =
        crate::outbound::Principal::of_request(ctx.extensions.get::<::http::request::Parts>());
    forward_as(target, request, principal.as_ref()).await
}

/// Send `request` to `target` on behalf of `principal`.
async fn forward_as(
    target: &Target,
    request: ClientRequest,
    principal: Option<&crate::outbound::Principal>,
) -> Result<ServerResult, ErrorData> {
    target
        .request(request, principal)
        .await
        .map_err(|e| errors::from_target(&e))
}

fn unexpected(got: ServerResult) -> ErrorData {
    ErrorData::internal_error(
        format!(
            "the upstream answered with a result kind the gateway does not relay ({})",
            crate::targets::mcp::result_kind(&got)
        ),
        None,
    )
}

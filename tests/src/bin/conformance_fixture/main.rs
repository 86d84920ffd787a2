//! `conformance-fixture`: an MCP server over streamable HTTP that implements every fixture the MCP
//! conformance suite (npm `@modelcontextprotocol/conformance`, server mode) calls: the `test_*`
//! tools, prompts and `test://` resources, completion, logging and subscriptions.
//!
//! It serves both protocol eras on one endpoint, as the suite's two lines test them:
//! - 2025-11-25 (suite 0.1.16): `initialize` opens a session; sampling, elicitation and roots are
//!   server-to-client requests; `logging/setLevel`, `resources/subscribe`;
//! - 2026-07-28 (suite 0.2.0-alpha.12, `--requirements 2026-07-28`): stateless requests with
//!   `_meta`; the same tools ask for input with `input_required` results and a sealed
//!   `requestState` (`rounds.rs`, `asking.rs`); per-request `logLevel`; `subscriptions/listen`;
//!   the diagnostics `test_missing_capability`, `test_logging_tool`, `test_streaming_elicitation`,
//!   `test_trigger_tool_change` and `test_trigger_prompt_change` (which announce to 2025-11-25
//!   sessions too, so a gateway in front can pass the change on). The tasks extension (SEP-2663)
//!   is not implemented.
//!
//! The end-to-end tests put it behind the gateway and run the suite through the gateway. Run
//! directly, every scored scenario passes, so a scenario that fails through the gateway points at
//! the gateway.
//!
//! Usage: `conformance-fixture [--port N]`. It binds 127.0.0.1 (port 0 = ephemeral), prints one
//! line `http://127.0.0.1:PORT/mcp` on stdout once listening, and logs to stderr.

// The 2025-11-25 suite exercises logging, sampling and resources/subscribe, which rmcp marks
// deprecated because SEP-2577 drops them from 2026-07-28. Serving them is this fixture's purpose.
#![allow(deprecated)]

mod asking;
mod rounds;

use std::{
    borrow::Cow,
    collections::{HashMap, hash_map::Entry},
    io::{IsTerminal as _, Write as _},
    net::Ipv4Addr,
    sync::{
        Arc,
        atomic::{AtomicU8, AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::{Context as _, bail};
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    model::*,
    service::{NotificationContext, RequestContext, SubscriptionContext, SubscriptionSink},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};
use tokio::{sync::Mutex, task::AbortHandle};

use rounds::{Resume, Rounds, is_stateless};

const USAGE: &str = "usage: conformance-fixture [--port N]   (N = 0 picks a free port)";

/// A 1x1 red PNG.
const PNG_BASE64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR42mP4z8AAAAMBAQD3A0FDAAAAAElFTkSuQmCC";
/// Eight samples of 16-bit mono silence at 8 kHz.
const WAV_BASE64: &str =
    "UklGRjQAAABXQVZFZm10IBAAAAABAAEAQB8AAIA+AAACABAAZGF0YRAAAAAAAAAAAAAAAAAAAAAAAAAA";

const TRIGGER_TOOL: &str =
    "Changes the tool list and announces it to every listen stream and session";
/// A prompt whose description changes with each `test_trigger_prompt_change`.
const CHANGES_PROMPT: &str = "test_prompt_changes";
const STATIC_TEXT_URI: &str = "test://static-text";
const STATIC_BINARY_URI: &str = "test://static-binary";
const WATCHED_URI: &str = "test://watched-resource";
const TEMPLATE_URI: &str = "test://template/{id}/data";
/// How often a subscribed `test://watched-resource` changes. Short, so tests that wait for
/// `notifications/resources/updated` stay fast.
const WATCH_PERIOD: Duration = Duration::from_secs(1);
/// Pause between the log and progress notifications, as the suite asks, so clients see them
/// arrive one by one during the call.
const STEP_DELAY: Duration = Duration::from_millis(50);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = match parse_args(std::env::args().skip(1)) {
        Ok(Some(port)) => port,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(err) => {
            // A usage mistake: say what is wrong, without anyhow's backtrace.
            eprintln!("conformance-fixture: {err:#}");
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .with_context(|| format!("cannot bind 127.0.0.1:{port}"))?;
    let addr = listener.local_addr()?;
    // Legacy sessions give 2025-11-25 clients an Mcp-Session-Id, which server-to-client requests
    // (sampling, elicitation) need; 2026-07-28 requests are served statelessly whatever this says.
    // Only loopback Host headers pass: that is the DNS-rebinding protection the suite checks, and
    // the gateway reaches the fixture through 127.0.0.1.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_allowed_hosts(["localhost", "127.0.0.1"]);
    let shared = Arc::new(Shared::new());
    let service = StreamableHttpService::new(
        move || Ok(Fixture::new(shared.clone())),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}/mcp")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "conformance fixture listening");
    axum::serve(listener, app).await?;
    Ok(())
}

/// Parses `[--port N]` (or `--port=N`). `None` means help was asked for.
fn parse_args(mut args: impl Iterator<Item = String>) -> anyhow::Result<Option<u16>> {
    let mut port = 0;
    while let Some(arg) = args.next() {
        let value = match arg.as_str() {
            "-h" | "--help" => return Ok(None),
            "--port" => args.next().context("--port needs a value")?,
            other => match other.strip_prefix("--port=") {
                Some(value) => value.to_owned(),
                None => bail!("unexpected argument {other:?}\n{USAGE}"),
            },
        };
        port = value
            .parse()
            .with_context(|| format!("invalid port {value:?}"))?;
    }
    Ok(Some(port))
}

/// The handler of one MCP session (2025-11-25) or one request (2026-07-28). The service factory
/// builds a fresh one for each, so a log level or a subscription never leaks between the suite's
/// many connections; what requests share is in [`Shared`].
#[derive(Clone)]
struct Fixture {
    session: Arc<Session>,
    shared: Arc<Shared>,
    /// How many tool and prompt changes there had been when this request's listen stream was
    /// accepted, before rmcp acknowledged it (see `listen`).
    changes_when_accepted: Arc<std::sync::Mutex<Option<(u64, u64)>>>,
}

impl Fixture {
    fn new(shared: Arc<Shared>) -> Self {
        Self {
            session: Arc::default(),
            shared,
            changes_when_accepted: Arc::default(),
        }
    }
}

/// What outlives a request: the `requestState` seal, the open `subscriptions/listen` streams and
/// 2025-11-25 sessions (a `test_trigger_*_change` call must reach them all) and what they watch.
struct Shared {
    rounds: Rounds,
    listeners: std::sync::Mutex<HashMap<u64, SubscriptionSink>>,
    next_listener: AtomicU64,
    /// Initialized 2025-11-25 sessions; dropped once a notification to them fails.
    sessions: std::sync::Mutex<Vec<Peer<RoleServer>>>,
    /// How often each `test_trigger_*_change` ran: the lists show it, so each run changes them.
    tool_changes: AtomicU64,
    prompt_changes: AtomicU64,
    /// `test://watched-resource` as 2026-07-28 requests see it (sessions have their own).
    watched_revision: Arc<AtomicU64>,
}

impl Shared {
    fn new() -> Self {
        Self {
            rounds: Rounds::with_fresh_key(),
            listeners: std::sync::Mutex::default(),
            next_listener: AtomicU64::new(0),
            sessions: std::sync::Mutex::default(),
            tool_changes: AtomicU64::new(0),
            prompt_changes: AtomicU64::new(0),
            watched_revision: Arc::default(),
        }
    }

    fn listener_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, SubscriptionSink>> {
        // A poisoned lock only means a panic elsewhere; the map itself is still whole.
        self.listeners.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Announces a list change on every listen stream that asked for it and in every 2025-11-25
    /// session; the answer says how many were told.
    async fn announce(&self, change: ListChange) -> String {
        self.counter(change).fetch_add(1, Ordering::Relaxed);
        let listeners: Vec<_> = self.listener_map().values().cloned().collect();
        let mut streams = 0;
        for listener in &listeners {
            // A stream that did not ask for this kind of change refuses it: not an error.
            let sent = match change {
                ListChange::Tools => listener.notify_tool_list_changed().await,
                ListChange::Prompts => listener.notify_prompt_list_changed().await,
            };
            streams += usize::from(sent.is_ok());
        }
        let sessions = std::mem::take(&mut *self.session_list());
        let mut open = Vec::with_capacity(sessions.len());
        for peer in sessions {
            let sent = match change {
                ListChange::Tools => peer.notify_tool_list_changed().await,
                ListChange::Prompts => peer.notify_prompt_list_changed().await,
            };
            if sent.is_ok() {
                open.push(peer);
            }
        }
        let told = format!(
            "Announced a {change:?} list change to {streams} of {} listen streams and {} sessions",
            listeners.len(),
            open.len()
        );
        self.session_list().extend(open);
        told
    }

    fn counter(&self, change: ListChange) -> &AtomicU64 {
        match change {
            ListChange::Tools => &self.tool_changes,
            ListChange::Prompts => &self.prompt_changes,
        }
    }

    fn changes(&self, change: ListChange) -> u64 {
        self.counter(change).load(Ordering::Relaxed)
    }

    fn session_list(&self) -> std::sync::MutexGuard<'_, Vec<Peer<RoleServer>>> {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone, Copy)]
enum ListChange {
    Tools,
    Prompts,
}

#[derive(Default)]
struct Session {
    /// Least severe level (see [`severity`]) still sent as `notifications/message`.
    min_severity: AtomicU8,
    /// Subscribed URIs, with the ticker task that changes the resource, if it changes.
    subscriptions: Mutex<HashMap<String, Option<AbortHandle>>>,
    /// Bumped by the ticker on every change of `test://watched-resource`.
    watched_revision: Arc<AtomicU64>,
}

impl Drop for Session {
    fn drop(&mut self) {
        // Tickers only hold the peer; stop them with the session they belong to.
        for ticker in self.subscriptions.get_mut().values().flatten() {
            ticker.abort();
        }
    }
}

impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_logging()
            .enable_completions()
            .enable_prompts()
            .enable_prompts_list_changed()
            .enable_resources()
            .enable_resources_subscribe()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "portcullis-conformance-fixture",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Fixtures for the MCP conformance suite (server scenarios).")
    }

    /// Both eras: `initialize` negotiates up to 2025-11-25, `_meta` may ask for 2026-07-28.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2026_07_28))
    }

    /// A 2025-11-25 session is open: list changes are announced to it from now on.
    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.shared.session_list().push(context.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        // The trigger's description counts the changes, so a change is a real one: a gateway
        // that announces only real changes passes it on.
        let changes = self.shared.changes(ListChange::Tools);
        let mut all = tools();
        for tool in all
            .iter_mut()
            .filter(|t| t.name == "test_trigger_tool_change")
        {
            tool.description = Some(format!("{TRIGGER_TOOL} (changes so far: {changes})").into());
        }
        Ok(ListToolsResult::with_all_items(all))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        tools().into_iter().find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let resume = Resume {
            answers: request.input_responses,
            request_state: request.request_state,
        };
        let rounds = &self.shared.rounds;
        if let Some(response) = asking::call(rounds, &ctx, &request.name, &args, resume).await {
            return response;
        }
        self.call(&request.name, &args, &ctx).await.map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let mut all = prompts();
        all.extend(asking::prompts());
        let changes = self.shared.changes(ListChange::Prompts);
        let description = format!("Says how often test_trigger_prompt_change ran: {changes}");
        all.push(Prompt::new(CHANGES_PROMPT, Some(description), None));
        Ok(ListPromptsResult::with_all_items(all))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        if request.name == asking::PROMPT {
            let resume = Resume {
                answers: request.input_responses,
                request_state: request.request_state,
            };
            return asking::get_prompt(&self.shared.rounds, &ctx, resume).await;
        }
        if request.name == CHANGES_PROMPT {
            let changes = self.shared.changes(ListChange::Prompts);
            let text = format!("The prompt list has changed {changes} times.");
            let message = PromptMessage::new(Role::User, ContentBlock::text(text));
            return Ok(GetPromptResult::new(vec![message]).into());
        }
        let args = request.arguments.unwrap_or_default();
        get_prompt(&request.name, &args).map(Into::into)
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, ErrorData> {
        let candidates = completion_candidates(&request.r#ref, &request.argument.name)?;
        let values = candidates
            .iter()
            .filter(|value| value.starts_with(request.argument.value.as_str()))
            .map(|value| (*value).to_owned())
            .collect();
        let info = CompletionInfo::with_all_values(values)
            .map_err(|err| ErrorData::internal_error(err, None))?;
        Ok(CompleteResult::new(info))
    }

    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // 2026-07-28 removed the method: the level travels in each request's `_meta`.
        if is_stateless(&ctx) {
            return Err(ErrorData::method_not_found::<SetLevelRequestMethod>());
        }
        let severity = severity(request.level);
        self.session.min_severity.store(severity, Ordering::Relaxed);
        Ok(())
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(resources()))
    }

    async fn list_resource_templates(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let template = ResourceTemplate::new(TEMPLATE_URI, "template-data")
            .with_title("Templated resource")
            .with_description("JSON data for any {id}; the id is echoed into the content")
            .with_mime_type("application/json");
        Ok(ListResourceTemplatesResult::with_all_items(vec![template]))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let watched = if is_stateless(&ctx) {
            &self.shared.watched_revision
        } else {
            &self.session.watched_revision
        };
        let revision = watched.load(Ordering::Relaxed);
        let contents = read_resource(&request.uri, revision)?;
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Refuse URIs that do not name a resource, as a real server would.
        read_resource(&request.uri, 0)?;
        let mut subscriptions = self.session.subscriptions.lock().await;
        if let Entry::Vacant(entry) = subscriptions.entry(request.uri) {
            let ticker = (entry.key() == WATCHED_URI)
                .then(|| spawn_ticker(ctx.peer.clone(), self.session.watched_revision.clone()));
            entry.insert(ticker);
        }
        Ok(())
    }

    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        // Unsubscribing from something never subscribed is a harmless no-op.
        let removed = self.session.subscriptions.lock().await.remove(&request.uri);
        if let Some(Some(ticker)) = removed {
            ticker.abort();
        }
        Ok(())
    }

    /// 2026-07-28 `subscriptions/listen`: whatever of the request the capabilities cover.
    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        let changes = (
            self.shared.changes(ListChange::Tools),
            self.shared.changes(ListChange::Prompts),
        );
        *self
            .changes_when_accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(changes);
        Some(requested.supported_by(&self.get_info().capabilities))
    }

    /// Keeps the stream where `test_trigger_tool_change` finds it, and changes
    /// `test://watched-resource` on it while it is subscribed, until the client goes away.
    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let key = self.shared.next_listener.fetch_add(1, Ordering::Relaxed);
        let sink = context.sink().clone();
        let watched = sink
            .accepted()
            .resource_subscriptions
            .as_ref()
            .is_some_and(|uris| uris.iter().any(|uri| uri == WATCHED_URI));
        let revision = self.shared.watched_revision.clone();
        let ticker = watched.then(|| spawn_listen_ticker(sink.clone(), revision));
        self.shared.listener_map().insert(key, sink.clone());
        // rmcp acknowledges the stream before it calls this, so a client may change a list in
        // between, before the stream is in the map: tell it of any such change now.
        let accepted = *self
            .changes_when_accepted
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some((tools, prompts)) = accepted {
            if self.shared.changes(ListChange::Tools) > tools {
                let _ = sink.notify_tool_list_changed().await;
            }
            if self.shared.changes(ListChange::Prompts) > prompts {
                let _ = sink.notify_prompt_list_changed().await;
            }
        }
        context.cancelled().await;
        self.shared.listener_map().remove(&key);
        if let Some(ticker) = ticker {
            ticker.abort();
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------------------------

/// Every tool, with the names, arguments and schemas the suite expects.
fn tools() -> Vec<Tool> {
    let mut all = answering_tools();
    all.extend(asking::tools());
    all
}

/// The tools that answer without asking the client for anything.
fn answering_tools() -> Vec<Tool> {
    let no_args = || json!({ "type": "object", "properties": {} });
    let tool = |name: &'static str, description: &'static str, schema: Value| {
        Tool::new(name, description, object(schema))
    };
    vec![
        tool("test_simple_text", "Returns one text block", no_args()),
        tool("test_image_content", "Returns a 1x1 PNG image", no_args()),
        tool("test_audio_content", "Returns a short WAV clip", no_args()),
        tool(
            "test_embedded_resource",
            "Returns an embedded text resource",
            no_args(),
        ),
        tool(
            "test_multiple_content_types",
            "Returns text, an image and an embedded resource",
            no_args(),
        ),
        tool(
            "test_tool_with_logging",
            "Sends three info log notifications while it runs",
            no_args(),
        ),
        tool(
            "test_tool_with_progress",
            "Reports progress 0, 50 and 100 of 100 to the caller's progressToken",
            no_args(),
        ),
        tool(
            "test_error_handling",
            "Always fails with an isError result",
            no_args(),
        ),
        tool(
            "test_reconnection",
            "Answers after a short pause (the SSE polling scenario, SEP-1699)",
            no_args(),
        ),
        tool(
            "json_schema_2020_12_tool",
            "Tool with JSON Schema 2020-12 features",
            json_schema_2020_12(),
        ),
        tool(
            "test_custom_header",
            "Echoes its value, which 2026-07-28 clients also send as the Mcp-Param-Value header",
            json!({
                "type": "object",
                "properties": { "value": { "type": "string", "x-mcp-header": "Value" } },
                "required": ["value"]
            }),
        ),
        tool(
            "test_missing_capability",
            "Needs the sampling capability: without it in the request, -32021",
            no_args(),
        ),
        tool(
            "test_logging_tool",
            "Logs one info message, only if the request asked for a log level",
            no_args(),
        ),
        tool("test_trigger_tool_change", TRIGGER_TOOL, no_args()),
        tool(
            "test_trigger_prompt_change",
            "Changes the prompt list and announces it to every listen stream and session",
            no_args(),
        ),
    ]
}

impl Fixture {
    async fn call(
        &self,
        name: &str,
        args: &JsonObject,
        ctx: &RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let result = match name {
            "test_simple_text" => ok(vec![ContentBlock::text(
                "This is a simple text response for testing.",
            )]),
            "test_image_content" => ok(vec![ContentBlock::image(PNG_BASE64, "image/png")]),
            "test_audio_content" => ok(vec![ContentBlock::audio(WAV_BASE64, "audio/wav")]),
            "test_embedded_resource" => ok(vec![ContentBlock::resource(ResourceContents::text(
                "This is an embedded resource content.",
                "test://embedded-resource",
            ))]),
            "test_multiple_content_types" => ok(vec![
                ContentBlock::text("Multiple content types test:"),
                ContentBlock::image(PNG_BASE64, "image/png"),
                ContentBlock::resource(
                    ResourceContents::text(
                        r#"{"test":"data","value":123}"#,
                        "test://mixed-content-resource",
                    )
                    .with_mime_type("application/json"),
                ),
            ]),
            "test_tool_with_logging" => self.with_logging(ctx).await,
            "test_tool_with_progress" => with_progress(ctx).await,
            "test_error_handling" => CallToolResult::error(vec![ContentBlock::text(
                "This tool intentionally returns an error for testing",
            )]),
            // The SSE polling scenario would like the POST stream closed mid-call and the answer
            // replayed after reconnection; rmcp offers no way to close it, so it answers in line.
            "test_reconnection" => {
                tokio::time::sleep(STEP_DELAY).await;
                ok_text("Reconnection test completed")
            }
            "json_schema_2020_12_tool" => {
                let name = args.get("name").and_then(Value::as_str).unwrap_or("world");
                ok_text(format!("Hello, {name}!"))
            }
            // rmcp checks the Mcp-Param-Value header against the argument before this runs.
            "test_custom_header" => ok_text(format!("Value: {}", str_arg(args, "value")?)),
            "test_missing_capability" => {
                let declared = ctx.client_capabilities().unwrap_or_default();
                if declared.sampling.is_none() {
                    let needed = ClientCapabilities::builder().enable_sampling().build();
                    return Err(ErrorData::missing_required_client_capability(needed));
                }
                ok_text("The client declared sampling")
            }
            "test_logging_tool" => {
                self.log(ctx, LoggingLevel::Info, "logLevel was requested")
                    .await;
                ok_text("Logging tool completed")
            }
            "test_trigger_tool_change" => ok_text(self.shared.announce(ListChange::Tools).await),
            "test_trigger_prompt_change" => {
                ok_text(self.shared.announce(ListChange::Prompts).await)
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}"),
                    None,
                ));
            }
        };
        Ok(result)
    }

    async fn with_logging(&self, ctx: &RequestContext<RoleServer>) -> CallToolResult {
        let steps = [
            "Tool execution started",
            "Tool processing data",
            "Tool execution completed",
        ];
        for (i, message) in steps.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(STEP_DELAY).await;
            }
            self.log(ctx, LoggingLevel::Info, message).await;
        }
        ok_text("Tool with logging executed successfully")
    }

    /// Sends a `notifications/message` if the client asked for this level or a less severe one:
    /// with `logging/setLevel` in a 2025-11-25 session (everything until it does), with
    /// `_meta.logLevel` in a 2026-07-28 request (nothing without it).
    async fn log(&self, ctx: &RequestContext<RoleServer>, level: LoggingLevel, message: &str) {
        let least = if is_stateless(ctx) {
            match ctx.meta.log_level() {
                Some(requested) => severity(requested),
                None => return,
            }
        } else {
            self.session.min_severity.load(Ordering::Relaxed)
        };
        if severity(level) < least {
            return;
        }
        let param = LoggingMessageNotificationParam::new(level, json!(message))
            .with_logger("conformance-fixture");
        if let Err(err) = ctx.peer.notify_logging_message(param).await {
            tracing::debug!(%err, "log notification not delivered");
        }
    }
}

async fn with_progress(ctx: &RequestContext<RoleServer>) -> CallToolResult {
    // Without a progressToken the tool still takes the same time, it just reports nothing.
    let token = ctx.meta.get_progress_token();
    for (i, (progress, message)) in [(0.0, "Started"), (50.0, "Halfway"), (100.0, "Done")]
        .into_iter()
        .enumerate()
    {
        if i > 0 {
            tokio::time::sleep(STEP_DELAY).await;
        }
        let Some(token) = &token else { continue };
        let param = ProgressNotificationParam::new(token.clone(), progress)
            .with_total(100.0)
            .with_message(message);
        if let Err(err) = ctx.peer.notify_progress(param).await {
            tracing::debug!(%err, "progress notification not delivered");
        }
    }
    ok_text("Tool with progress executed successfully")
}

/// SEP-1613 and SEP-2106: keywords a gateway must pass through untouched (`$defs` with `$anchor`,
/// composition, conditionals).
fn json_schema_2020_12() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "$defs": {
            "address": {
                "$anchor": "address",
                "type": "object",
                "properties": { "street": { "type": "string" }, "city": { "type": "string" } }
            }
        },
        "properties": {
            "name": { "type": "string" },
            "address": { "$ref": "#/$defs/address" }
        },
        "allOf": [{ "anyOf": [{ "required": ["name"] }, { "required": ["address"] }] }],
        "if": { "properties": { "name": { "const": "admin" } }, "required": ["name"] },
        "then": { "required": ["address"] },
        "else": true,
        "additionalProperties": false
    })
}

// ---------------------------------------------------------------------------------------------
// Prompts and completion
// ---------------------------------------------------------------------------------------------

fn prompts() -> Vec<Prompt> {
    let arg = |name: &str, description: &str| {
        PromptArgument::new(name)
            .with_description(description)
            .with_required(true)
    };
    vec![
        Prompt::new(
            "test_simple_prompt",
            Some("A simple prompt without arguments"),
            None,
        ),
        Prompt::new(
            "test_prompt_with_arguments",
            Some("A prompt with required arguments"),
            Some(vec![
                arg("arg1", "First test argument"),
                arg("arg2", "Second test argument"),
            ]),
        ),
        Prompt::new(
            "test_prompt_with_embedded_resource",
            Some("A prompt that includes an embedded resource"),
            Some(vec![arg("resourceUri", "URI of the resource to embed")]),
        ),
        Prompt::new(
            "test_prompt_with_image",
            Some("A prompt that includes image content"),
            None,
        ),
    ]
}

fn get_prompt(name: &str, args: &JsonObject) -> Result<GetPromptResult, ErrorData> {
    let user = |content: ContentBlock| PromptMessage::new(Role::User, content);
    let messages = match name {
        "test_simple_prompt" => vec![user(ContentBlock::text(
            "This is a simple prompt for testing.",
        ))],
        "test_prompt_with_arguments" => {
            let (arg1, arg2) = (str_arg(args, "arg1")?, str_arg(args, "arg2")?);
            vec![user(ContentBlock::text(format!(
                "Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"
            )))]
        }
        "test_prompt_with_embedded_resource" => vec![
            user(ContentBlock::resource(ResourceContents::text(
                "Embedded resource content for testing.",
                str_arg(args, "resourceUri")?,
            ))),
            user(ContentBlock::text(
                "Please process the embedded resource above.",
            )),
        ],
        "test_prompt_with_image" => vec![
            user(ContentBlock::image(PNG_BASE64, "image/png")),
            user(ContentBlock::text("Please analyze the image above.")),
        ],
        other => {
            return Err(ErrorData::invalid_params(
                format!("unknown prompt {other:?}"),
                None,
            ));
        }
    };
    Ok(GetPromptResult::new(messages))
}

/// Values offered by `completion/complete`, before filtering by the typed prefix.
fn completion_candidates(
    reference: &Reference,
    argument: &str,
) -> Result<&'static [&'static str], ErrorData> {
    match (reference, argument) {
        (Reference::Prompt(prompt), "arg1" | "arg2")
            if prompt.name == "test_prompt_with_arguments" =>
        {
            Ok(&["hello", "help", "test", "testing", "world"])
        }
        (Reference::Resource(template), "id") if template.uri == TEMPLATE_URI => {
            Ok(&["1", "2", "3", "123"])
        }
        _ => Err(ErrorData::invalid_params(
            format!("nothing to complete for argument {argument:?} of this reference"),
            None,
        )),
    }
}

// ---------------------------------------------------------------------------------------------
// Resources
// ---------------------------------------------------------------------------------------------

fn resources() -> Vec<Resource> {
    vec![
        Resource::new(STATIC_TEXT_URI, "static-text")
            .with_title("Static text")
            .with_description("A static text resource for testing")
            .with_mime_type("text/plain"),
        Resource::new(STATIC_BINARY_URI, "static-binary")
            .with_title("Static binary")
            .with_description("A static binary resource (a PNG image) for testing")
            .with_mime_type("image/png"),
        Resource::new(WATCHED_URI, "watched-resource")
            .with_title("Watched resource")
            .with_description("Changes every second while subscribed (resources/subscribe)")
            .with_mime_type("text/plain"),
    ]
}

/// Contents of `uri`; `revision` is the watched resource's current revision.
fn read_resource(uri: &str, revision: u64) -> Result<ResourceContents, ErrorData> {
    let contents = match uri {
        STATIC_TEXT_URI => {
            ResourceContents::text("This is the content of the static text resource.", uri)
        }
        STATIC_BINARY_URI => ResourceContents::blob(PNG_BASE64, uri).with_mime_type("image/png"),
        WATCHED_URI => {
            ResourceContents::text(format!("Watched resource, revision {revision}"), uri)
        }
        _ => {
            let Some(id) = template_id(uri) else {
                return Err(ErrorData::resource_not_found(
                    format!("no resource {uri:?}"),
                    Some(json!({ "uri": uri })),
                ));
            };
            let data =
                json!({ "id": id, "templateTest": true, "data": format!("Data for ID: {id}") });
            ResourceContents::text(data.to_string(), uri).with_mime_type("application/json")
        }
    };
    Ok(contents)
}

/// The `{id}` of a URI matching `test://template/{id}/data`.
fn template_id(uri: &str) -> Option<&str> {
    let id = uri
        .strip_prefix("test://template/")?
        .strip_suffix("/data")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

/// Changes `test://watched-resource` every [`WATCH_PERIOD`] and tells the subscriber.
fn spawn_ticker(peer: Peer<RoleServer>, revision: Arc<AtomicU64>) -> AbortHandle {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(WATCH_PERIOD);
        ticks.tick().await; // The first tick completes at once.
        loop {
            ticks.tick().await;
            revision.fetch_add(1, Ordering::Relaxed);
            let update = ResourceUpdatedNotificationParam::new(WATCHED_URI);
            if peer.notify_resource_updated(update).await.is_err() {
                break; // The session is gone.
            }
        }
    });
    task.abort_handle()
}

/// The same for a 2026-07-28 `subscriptions/listen` stream: the revision is the one stateless
/// reads see.
fn spawn_listen_ticker(sink: SubscriptionSink, revision: Arc<AtomicU64>) -> AbortHandle {
    let task = tokio::spawn(async move {
        let mut ticks = tokio::time::interval(WATCH_PERIOD);
        ticks.tick().await; // The first tick completes at once.
        loop {
            ticks.tick().await;
            revision.fetch_add(1, Ordering::Relaxed);
            let update = ResourceUpdatedNotification::new(ResourceUpdatedNotificationParam::new(
                WATCHED_URI,
            ));
            let update = ServerNotification::ResourceUpdatedNotification(update);
            if sink.send(update).await.is_err() {
                break; // The stream is closed.
            }
        }
    });
    task.abort_handle()
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// MCP log levels, least severe first.
fn severity(level: LoggingLevel) -> u8 {
    match level {
        LoggingLevel::Debug => 0,
        LoggingLevel::Info => 1,
        LoggingLevel::Notice => 2,
        LoggingLevel::Warning => 3,
        LoggingLevel::Error => 4,
        LoggingLevel::Critical => 5,
        LoggingLevel::Alert => 6,
        LoggingLevel::Emergency => 7,
    }
}

fn str_arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, ErrorData> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing string argument {name:?}"), None))
}

/// The schemas here are literals, always objects; anything else would become `{}`, which the unit
/// tests below rule out.
fn object(value: Value) -> JsonObject {
    match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    }
}

fn ok(content: Vec<ContentBlock>) -> CallToolResult {
    CallToolResult::success(content)
}

fn ok_text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn err_text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn args_parse() {
        let parse = |args: &[&str]| parse_args(args.iter().map(|s| (*s).to_owned()));
        assert_eq!(parse(&[]).ok(), Some(Some(0)));
        assert_eq!(parse(&["--port", "8123"]).ok(), Some(Some(8123)));
        assert_eq!(parse(&["--port=9"]).ok(), Some(Some(9)));
        assert_eq!(parse(&["--help"]).ok(), Some(None));
        assert!(parse(&["--port"]).is_err());
        assert!(parse(&["--port", "70000"]).is_err());
        assert!(parse(&["--verbose"]).is_err());
    }

    #[test]
    fn every_tool_has_an_object_schema() {
        for tool in tools() {
            assert_eq!(tool.input_schema.get("type"), Some(&json!("object")));
        }
    }

    #[test]
    fn tool_names_are_unique() {
        let mut names: Vec<_> = tools().into_iter().map(|tool| tool.name).collect();
        let count = names.len();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), count);
    }

    #[test]
    fn template_ids() {
        assert_eq!(template_id("test://template/123/data"), Some("123"));
        assert_eq!(template_id("test://template//data"), None);
        assert_eq!(template_id("test://template/a/b/data"), None);
        assert!(read_resource("test://nope", 0).is_err());
    }
}

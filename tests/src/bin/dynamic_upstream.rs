//! `dynamic-upstream`: an MCP server over streamable HTTP whose tool list changes at runtime, for
//! the end-to-end tests of `notifications/tools/list_changed` through the gateway.
//!
//! It starts with two tools. `add_tool {name}` registers a tool of that name (which echoes its
//! arguments back as JSON text) and sends `notifications/tools/list_changed` to every connected
//! session. The tool list is shared by all sessions, so a tool added through one session is
//! listed by every other. `calls` answers, as text, how many `tools/call` requests (of any
//! other tool, known or not) the process has received so far, so a test can prove that nothing
//! it sent reached the upstream. `gather {n}` answers once `n` calls of `gather` have
//! arrived while all of them were still waiting (a call gives up after 15 s with a tool error
//! saying how many it saw), so a test can prove that a gateway lets that many calls reach the
//! upstream at once. The count is the process's: one gathering per upstream process.
//!
//! Usage: `dynamic-upstream` (no arguments). It binds 127.0.0.1 on a free port, prints one line
//! `http://127.0.0.1:PORT/mcp` on stdout once listening, and logs to stderr.

use std::{
    borrow::Cow,
    io::{IsTerminal as _, Write as _},
    net::Ipv4Addr,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use anyhow::Context as _;
use rmcp::{
    ErrorData, Peer, RoleServer, ServerHandler,
    model::*,
    service::{NotificationContext, RequestContext},
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::json;

const ADD_TOOL: &str = "add_tool";
const CALLS: &str = "calls";
const GATHER: &str = "gather";
/// How long `gather` waits for the others before it gives up.
const GATHER_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// The MCP spec's limit on tool names (2025-11-25, "Tool names").
const MAX_NAME_LEN: usize = 64;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    if std::env::args().len() > 1 {
        eprintln!("usage: dynamic-upstream   (takes no arguments)");
        std::process::exit(2);
    }
    init_logging();

    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .context("cannot bind 127.0.0.1")?;
    let addr = listener.local_addr()?;
    // Legacy sessions: the gateway opens one long-lived session per upstream, and
    // list_changed travels on that session's standalone stream.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(true)
        .with_allowed_hosts(["localhost", "127.0.0.1"]);
    // One registry for all sessions, so every session sees the tools another one added.
    let registry = Arc::new(Registry::default());
    let service = StreamableHttpService::new(
        move || {
            Ok(DynamicUpstream {
                registry: registry.clone(),
            })
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);

    // The harness waits for this line; print it only once the socket accepts connections.
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}/mcp")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "dynamic upstream listening");
    axum::serve(listener, app).await?;
    Ok(())
}

fn init_logging() {
    // Quiet by default: tests inherit this stderr, and rmcp logs every message at info.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_env_filter(filter)
        .init();
}

/// State shared by every session.
#[derive(Debug, Default)]
struct Registry {
    /// Tools added with `add_tool`, in the order they were added.
    added: Mutex<Vec<Tool>>,
    /// Every session that completed its handshake, to tell about list changes.
    peers: Mutex<Vec<Peer<RoleServer>>>,
    /// `tools/call` requests received, except those of `calls` itself.
    calls: AtomicU64,
    /// How many `gather` calls are in progress; every change is published.
    gathered: tokio::sync::watch::Sender<u64>,
}

impl Registry {
    fn tools(&self) -> Vec<Tool> {
        let mut tools = vec![add_tool(), calls_tool(), gather_tool()];
        tools.extend(lock(&self.added).iter().cloned());
        tools
    }

    /// Register an echo tool named `name`; fails if the name is invalid or taken.
    fn add(&self, name: &str) -> Result<(), ErrorData> {
        validate_name(name)?;
        let mut added = lock(&self.added);
        if [ADD_TOOL, CALLS, GATHER].contains(&name) || added.iter().any(|tool| tool.name == name) {
            return Err(ErrorData::invalid_params(
                format!("a tool named `{name}` already exists"),
                None,
            ));
        }
        added.push(echo_tool(name));
        Ok(())
    }

    /// Send `notifications/tools/list_changed` to every live session.
    async fn announce(&self) {
        let peers = {
            let mut peers = lock(&self.peers);
            peers.retain(|peer| !peer.is_transport_closed());
            peers.clone()
        };
        for peer in peers {
            // One gone session must not keep the others from hearing about the change.
            if let Err(err) = peer.notify_tool_list_changed().await {
                tracing::warn!("tools/list_changed not delivered to a session: {err}");
            }
        }
    }
}

/// Lock a mutex, recovering the data if a panicking thread poisoned it: every update here is a
/// single push, so the data is consistent either way.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The per-session handler; all state lives in the shared [`Registry`].
#[derive(Debug, Clone)]
struct DynamicUpstream {
    registry: Arc<Registry>,
}

impl ServerHandler for DynamicUpstream {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "portcullis-dynamic-upstream",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("Call add_tool to add an echo tool; the tool list then changes.")
    }

    /// Session-based versions only: list_changed is pushed to sessions kept from
    /// `on_initialized`, which 2026-07-28 stateless clients never have.
    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Borrowed(ProtocolVersion::known_up_to(&ProtocolVersion::V_2025_11_25))
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        lock(&self.registry.peers).push(ctx.peer);
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(self.registry.tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.registry
            .tools()
            .into_iter()
            .find(|tool| tool.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        if request.name == CALLS {
            let calls = self.registry.calls.load(Ordering::SeqCst);
            return Ok(CallToolResult::success(vec![ContentBlock::text(calls.to_string())]).into());
        }
        self.registry.calls.fetch_add(1, Ordering::SeqCst);
        let args = request.arguments.unwrap_or_default();
        let result = if request.name == ADD_TOOL {
            self.add_tool(&args).await?
        } else if request.name == GATHER {
            self.gather(&args).await?
        } else if self.get_tool(&request.name).is_some() {
            echo(&args)
        } else {
            return Err(ErrorData::invalid_params(
                format!("unknown tool `{}`", request.name),
                None,
            ));
        };
        Ok(result.into())
    }
}

impl DynamicUpstream {
    /// Wait until `n` calls of `gather` are in progress at once.
    async fn gather(&self, args: &JsonObject) -> Result<CallToolResult, ErrorData> {
        let n = args
            .get("n")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| ErrorData::invalid_params("`n` must be a whole number", None))?;
        let gathered = &self.registry.gathered;
        gathered.send_modify(|k| *k += 1);
        let mut seen = gathered.subscribe();
        let met = tokio::time::timeout(GATHER_WAIT, seen.wait_for(|k| *k >= n))
            .await
            .is_ok();
        let most = *seen.borrow();
        // Leave the count up once met: the calls still waiting must see it reached.
        if !met {
            gathered.send_modify(|k| *k -= 1);
        }
        Ok(if met {
            CallToolResult::success(vec![ContentBlock::text(format!("gathered {n}"))])
        } else {
            CallToolResult::error(vec![ContentBlock::text(format!(
                "only {most} of {n} calls were in progress at once after {} s",
                GATHER_WAIT.as_secs()
            ))])
        })
    }

    async fn add_tool(&self, args: &JsonObject) -> Result<CallToolResult, ErrorData> {
        let name = args
            .get("name")
            .and_then(|name| name.as_str())
            .ok_or_else(|| ErrorData::invalid_params("`name` must be a string", None))?;
        self.registry.add(name)?;
        // Announce before answering, so a client that sees the result can rely on the
        // notification being on its way already.
        self.registry.announce().await;
        Ok(CallToolResult::success(vec![ContentBlock::text(format!(
            "added tool `{name}`"
        ))]))
    }
}

/// Tool names as MCP allows them: 1 to 64 of `A-Z a-z 0-9 _ - .`.
fn validate_name(name: &str) -> Result<(), ErrorData> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
    if name.is_empty() || name.len() > MAX_NAME_LEN || !name.chars().all(allowed) {
        return Err(ErrorData::invalid_params(
            format!("invalid tool name {name:?}: use 1 to {MAX_NAME_LEN} of A-Z a-z 0-9 _ - ."),
            None,
        ));
    }
    Ok(())
}

fn echo(args: &JsonObject) -> CallToolResult {
    let text = serde_json::Value::Object(args.clone()).to_string();
    CallToolResult::success(vec![ContentBlock::text(text)])
}

fn add_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "Name of the echo tool to add" }
        },
        "required": ["name"]
    });
    Tool::new(
        ADD_TOOL,
        "Adds an echo tool with this name and announces tools/list_changed",
        object(schema),
    )
}

fn calls_tool() -> Tool {
    Tool::new(
        CALLS,
        "How many tools/call requests this upstream received so far, not counting `calls`",
        object(json!({ "type": "object" })),
    )
}

fn gather_tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": { "n": { "type": "integer", "description": "How many calls to wait for" } },
        "required": ["n"]
    });
    Tool::new(
        GATHER,
        "Answers once n calls of gather are in progress at the same time",
        object(schema),
    )
}

fn echo_tool(name: &str) -> Tool {
    // Any arguments are accepted and echoed back.
    let schema = json!({ "type": "object" });
    Tool::new(
        name.to_owned(),
        "Echoes its arguments as JSON text",
        object(schema),
    )
}

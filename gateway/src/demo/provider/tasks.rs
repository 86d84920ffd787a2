//! The demo provider's API: an MCP server at `/mcp` (streamable HTTP) with `list_tasks`
//! (`tasks:read`) and `add_task` (`tasks:write`) on the task list of the user who approved
//! the grant. Every request must carry `Authorization: Bearer <an access token issued here>`;
//! without one it is refused with 401 before MCP sees it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::{IntoResponse, Response};
use http::{StatusCode, header};
use parking_lot::Mutex;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{
    RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{CallToolResult, ContentBlock, Implementation, ServerCapabilities, ServerConfig},
    schemars::{self, JsonSchema},
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::Deserialize;
use serde_json::json;

use super::Provider;
use super::ledger::Grant;

const MAX_USERS: usize = 1_000;
const MAX_TASKS_PER_USER: usize = 100;
const MAX_TITLE_CHARS: usize = 200;

/// Every user's tasks, in memory, bounded.
#[derive(Debug, Default)]
pub struct TaskBook {
    lists: Mutex<HashMap<String, Vec<String>>>,
}

impl TaskBook {
    fn list(&self, user: &str) -> Vec<String> {
        self.lists.lock().get(user).cloned().unwrap_or_default()
    }

    fn add(&self, user: &str, title: String) -> Result<usize, String> {
        let mut lists = self.lists.lock();
        if !lists.contains_key(user) && lists.len() >= MAX_USERS {
            return Err(format!(
                "the demo keeps at most {MAX_USERS} users' lists; restart it to start afresh"
            ));
        }
        let list = lists.entry(user.to_string()).or_default();
        if list.len() >= MAX_TASKS_PER_USER {
            return Err(format!(
                "a list holds at most {MAX_TASKS_PER_USER} tasks in this demo"
            ));
        }
        list.push(title);
        Ok(list.len())
    }
}

pub fn routes(provider: Arc<Provider>) -> Router {
    let for_service = provider.clone();
    let service = StreamableHttpService::new(
        move || Ok(TasksServer::new(for_service.clone())),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    Router::new()
        .nest_service("/mcp", service)
        .layer(from_fn_with_state(provider, require_bearer))
}

/// Let a request through only with a live access token of ours; it then carries the grant.
async fn require_bearer(State(p): State<Arc<Provider>>, mut req: Request, next: Next) -> Response {
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token);
    let Some(token) = token else {
        return unauthorized(
            "Bearer realm=\"Acme Tasks\"",
            "Acme Tasks needs an access token: send Authorization: Bearer <token>.\n",
        );
    };
    let Some(grant) = p.ledger.access(token.trim()) else {
        return unauthorized(
            "Bearer realm=\"Acme Tasks\", error=\"invalid_token\"",
            "The access token is unknown, expired or revoked: refresh it or authorize again.\n",
        );
    };
    req.extensions_mut().insert(grant);
    next.run(req).await
}

fn unauthorized(challenge: &'static str, message: &'static str) -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, challenge)],
        message,
    )
        .into_response()
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddTaskArgs {
    /// What to do.
    pub title: String,
}

/// The MCP server of Acme Tasks.
#[derive(Debug, Clone)]
pub struct TasksServer {
    provider: Arc<Provider>,
    tool_router: ToolRouter<Self>,
}

#[tool_router]
impl TasksServer {
    fn new(provider: Arc<Provider>) -> Self {
        Self {
            provider,
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        title = "List tasks",
        description = "Lists your Acme Tasks (needs the tasks:read scope).",
        annotations(read_only_hint = true, open_world_hint = false)
    )]
    fn list_tasks(&self, ctx: RequestContext<RoleServer>) -> CallToolResult {
        let user = match caller(&ctx, "tasks:read") {
            Ok(u) => u,
            Err(e) => return e,
        };
        let tasks = self.provider.tasks.list(&user);
        let text = if tasks.is_empty() {
            format!("{user} has no tasks.")
        } else {
            tasks
                .iter()
                .enumerate()
                .map(|(i, t)| format!("{}. {t}", i + 1))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
        result.structured_content = Some(json!({ "user": user, "tasks": tasks }));
        result
    }

    #[tool(
        title = "Add task",
        description = "Adds a task to your Acme Tasks list (needs the tasks:write scope).",
        annotations(read_only_hint = false, open_world_hint = false)
    )]
    fn add_task(
        &self,
        Parameters(args): Parameters<AddTaskArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let user = match caller(&ctx, "tasks:write") {
            Ok(u) => u,
            Err(e) => return e,
        };
        let title = args.title.trim().to_string();
        if title.is_empty() || title.chars().count() > MAX_TITLE_CHARS {
            return error_text(format!(
                "a task title has 1 to {MAX_TITLE_CHARS} characters"
            ));
        }
        match self.provider.tasks.add(&user, title.clone()) {
            Ok(n) => CallToolResult::success(vec![ContentBlock::text(format!(
                "Added task {n} for {user}: {title}"
            ))]),
            Err(why) => error_text(why),
        }
    }
}

/// The user the request's token speaks for, if it holds `scope`; else the tool error.
fn caller(ctx: &RequestContext<RoleServer>, scope: &str) -> Result<String, CallToolResult> {
    let grant = ctx
        .extensions
        .get::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Grant>());
    match grant {
        None => Err(error_text(
            "this request carries no Acme Tasks access token; send Authorization: Bearer <token>",
        )),
        Some(g) if !g.scopes.iter().any(|s| s == scope) => Err(error_text(format!(
            "the access token lacks the scope `{scope}`; authorize again asking for {scope}"
        ))),
        Some(g) => Ok(g.user.clone()),
    }
}

fn error_text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for TasksServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new(
                "acme-tasks-demo",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Acme Tasks (a Portcullis demo provider): list_tasks and add_task on your own list.",
            )
    }
}

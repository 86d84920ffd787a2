//! Cedar policies end to end: the real gateway with the demo target (`portcullis demo-upstream`,
//! every tool annotated read-only) and `ops`, an upstream served by this test (a destructive
//! `deploy {service, replicas: integer}`, a read-only `status`, an unannotated `restart`).
//! One policy file and one decision table ([`TABLE`]) drive four checks: the gateway's answers
//! in both protocol eras and its listings, `portcullis policy explain`, shadow mode
//! (`log_only`) and its audit lines. Then: policies that do not check are refused by
//! `portcullis check` with file and line, and a reload keeps the previous set serving; an
//! argument of the wrong type is denied, never passed through.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use portcullis_e2e::{
    Era, Gateway, MockServer, Serve, binary, call_tool, connect_as, eventually, mcp_error, readyz,
    result_text, tool_names, write_config,
};
use rmcp::model::*;
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler};
use serde_json::{Value, json};

const WITHIN: Duration = Duration::from_secs(30);

/// The JSON-RPC error code of a call the policies deny.
const DENIED: i32 = -32004;

// ---------------------------------------------------------------------------------------------
// The policies and the decision table.

/// `policies/main.cedar` of every gateway in this file (except where a test writes its own).
const POLICIES: &str = r#"// Everyone signed in may use the demo tools.
@id("demo-for-everyone")
permit(principal, action in Action::"CallTool", resource in Target::"demo");

// Group membership: the tool that always fails is for testers only.
@id("fail-is-for-testers")
forbid(principal, action == Action::"demo__fail", resource)
unless { principal.groups.contains("testers") };

// A number argument: the demo adds numbers up to a thousand.
@id("small-sums-only")
forbid(principal, action == Action::"demo__add", resource)
when {
  context.input.a.greaterThan(decimal("1000.0")) ||
  context.input.b.greaterThan(decimal("1000.0"))
};

// A string argument: no secrets through echo.
@id("no-secrets-in-echo")
forbid(principal, action == Action::"demo__echo", resource)
when { context.input.text like "*secret*" };

// Group membership: the ops team runs the ops tools.
@id("ops-team-runs-ops")
permit(principal, action in Action::"CallTool", resource in Target::"ops")
when { principal.groups.contains("ops") };

// A permit that reads the arguments: anyone may deploy the documentation sites.
@id("docs-deploys-for-everyone")
permit(principal, action == Action::"ops__deploy", resource)
when { context.input.service like "docs-*" };

// Scopes: a deploy needs a token granted the `deploy` scope.
@id("deploy-needs-the-deploy-scope")
forbid(principal, action == Action::"ops__deploy", resource)
unless { context.scopes.contains("deploy") };

// An integer argument (optional in the tool's schema: tested with `has` first).
@id("at-most-ten-replicas")
forbid(principal, action == Action::"ops__deploy", resource)
when { context.input has replicas && context.input.replicas > 10 };

// A string argument on a required field: no restarts of production services.
@id("no-prod-restarts")
forbid(principal, action == Action::"ops__restart", resource)
when { context.input.service like "prod-*" };

// An agent restriction: the agent `ci-bot` may use read-only tools only.
@id("ci-bot-reads-only")
forbid(principal, action in Action::"CallTool", resource)
when { context.agent == Agent::"ci-bot" && !resource.read_only };

// One user, suspended from everything.
@id("mallory-is-suspended")
forbid(principal == User::"mallory", action in Action::"CallTool", resource);
"#;

/// Who calls: the token's user, agent (`azp`), groups (the `groups` claim) and scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Who {
    user: &'static str,
    agent: &'static str,
    groups: &'static [&'static str],
    scopes: &'static [&'static str],
}

#[rustfmt::skip]
mod callers {
    use super::Who;
    pub const ALICE: Who = Who { user: "alice", agent: "laptop", groups: &["eng"], scopes: &[] };
    pub const ALICE_DEPLOYER: Who = Who { user: "alice", agent: "laptop", groups: &["eng"], scopes: &["deploy"] };
    pub const TESS: Who = Who { user: "tess", agent: "laptop", groups: &["testers"], scopes: &[] };
    pub const OLGA: Who = Who { user: "olga", agent: "laptop", groups: &["ops"], scopes: &["deploy"] };
    pub const OSCAR: Who = Who { user: "oscar", agent: "laptop", groups: &["ops"], scopes: &[] };
    pub const CI: Who = Who { user: "ci", agent: "ci-bot", groups: &["ops"], scopes: &["deploy"] };
    pub const OLGA_VIA_CI_BOT: Who = Who { user: "olga", agent: "ci-bot", groups: &["ops"], scopes: &["deploy"] };
    pub const MALLORY: Who = Who { user: "mallory", agent: "laptop", groups: &["ops", "testers"], scopes: &["deploy"] };
}
use callers::*;

/// The policies' answer and its determining policies: the permits that matched for an
/// allow, the forbids that matched (none when no permit did) for a deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Allow(&'static [&'static str]),
    Deny(&'static [&'static str]),
}
use Expect::{Allow, Deny};

impl Expect {
    fn allowed(self) -> bool {
        matches!(self, Allow(_))
    }
    /// Sorted: the gateway names the determining policies in no stable order (Cedar gives
    /// them as a set), so the table's ids are compared as a set.
    fn policies(self) -> Vec<String> {
        let (Allow(ids) | Deny(ids)) = self;
        sorted(ids.iter().map(|s| s.to_string()).collect())
    }
}

/// One call and what must come of it.
#[derive(Debug)]
struct Row {
    why: &'static str,
    who: Who,
    tool: &'static str,
    /// The arguments, as JSON.
    args: &'static str,
    expect: Expect,
    /// Text in the tool's result when the call is let through (in `log_only` mode, every row).
    returns: &'static str,
}

/// A string that appears only in one row's arguments: the audit must never contain it.
const SECRET_MARKER: &str = "zebra-7731";

#[rustfmt::skip]
const TABLE: &[Row] = &[
    Row { why: "a permit: everyone may use the demo",
          who: ALICE, tool: "demo__echo", args: r#"{"text": "hello"}"#,
          expect: Allow(&["demo-for-everyone"]), returns: "hello" },
    Row { why: "a string condition (`like`): the forbid overrides the permit",
          who: ALICE, tool: "demo__echo", args: r#"{"text": "the secret is zebra-7731"}"#,
          expect: Deny(&["no-secrets-in-echo"]), returns: "the secret is zebra-7731" },
    Row { why: "a number condition, under the limit",
          who: ALICE, tool: "demo__add", args: r#"{"a": 2, "b": 3}"#,
          expect: Allow(&["demo-for-everyone"]), returns: "5" },
    Row { why: "a number condition, over the limit",
          who: ALICE, tool: "demo__add", args: r#"{"a": 2000, "b": 1}"#,
          expect: Deny(&["small-sums-only"]), returns: "2001" },
    Row { why: "a group: not a tester",
          who: ALICE, tool: "demo__fail", args: r#"{"message": "boom"}"#,
          expect: Deny(&["fail-is-for-testers"]), returns: "boom" },
    Row { why: "a group: a tester",
          who: TESS, tool: "demo__fail", args: r#"{"message": "boom"}"#,
          expect: Allow(&["demo-for-everyone"]), returns: "boom" },
    Row { why: "default deny: no permit matches, so no policy is named",
          who: ALICE, tool: "ops__status", args: r#"{"service": "web"}"#,
          expect: Deny(&[]), returns: "status web" },
    Row { why: "a group permit",
          who: OLGA, tool: "ops__status", args: r#"{"service": "web"}"#,
          expect: Allow(&["ops-team-runs-ops"]), returns: "status web" },
    Row { why: "a destructive tool, in every limit",
          who: OLGA, tool: "ops__deploy", args: r#"{"service": "web", "replicas": 3}"#,
          expect: Allow(&["ops-team-runs-ops"]), returns: "deploy web" },
    Row { why: "an integer condition, over the limit",
          who: OLGA, tool: "ops__deploy", args: r#"{"service": "web", "replicas": 50}"#,
          expect: Deny(&["at-most-ten-replicas"]), returns: "deploy web" },
    Row { why: "scopes: the token lacks `deploy`",
          who: OSCAR, tool: "ops__deploy", args: r#"{"service": "web", "replicas": 1}"#,
          expect: Deny(&["deploy-needs-the-deploy-scope"]), returns: "deploy web" },
    Row { why: "a permit that reads the arguments, matched",
          who: ALICE_DEPLOYER, tool: "ops__deploy", args: r#"{"service": "docs-site"}"#,
          expect: Allow(&["docs-deploys-for-everyone"]), returns: "deploy docs-site" },
    Row { why: "a permit that reads the arguments, not matched: default deny",
          who: ALICE_DEPLOYER, tool: "ops__deploy", args: r#"{"service": "web"}"#,
          expect: Deny(&[]), returns: "deploy web" },
    Row { why: "scopes: a forbid overrides the argument permit",
          who: ALICE, tool: "ops__deploy", args: r#"{"service": "docs-site"}"#,
          expect: Deny(&["deploy-needs-the-deploy-scope"]), returns: "deploy docs-site" },
    Row { why: "an agent restriction: ci-bot may read",
          who: CI, tool: "ops__status", args: r#"{"service": "web"}"#,
          expect: Allow(&["ops-team-runs-ops"]), returns: "status web" },
    Row { why: "an agent restriction: ci-bot may not deploy",
          who: CI, tool: "ops__deploy", args: r#"{"service": "web", "replicas": 1}"#,
          expect: Deny(&["ci-bot-reads-only"]), returns: "deploy web" },
    Row { why: "an agent restriction: a tool without annotations is not read-only",
          who: CI, tool: "ops__restart", args: r#"{"service": "web"}"#,
          expect: Deny(&["ci-bot-reads-only"]), returns: "restart web" },
    Row { why: "an agent restriction binds every user acting through that agent",
          who: OLGA_VIA_CI_BOT, tool: "ops__restart", args: r#"{"service": "web"}"#,
          expect: Deny(&["ci-bot-reads-only"]), returns: "restart web" },
    Row { why: "an agent restriction: ci-bot may use a read-only demo tool",
          who: CI, tool: "demo__word_count", args: r#"{"text": "one two three"}"#,
          expect: Allow(&["demo-for-everyone"]), returns: "3" },
    Row { why: "the same tool through a person's own agent",
          who: OLGA, tool: "ops__restart", args: r#"{"service": "web"}"#,
          expect: Allow(&["ops-team-runs-ops"]), returns: "restart web" },
    Row { why: "a string condition on a required argument",
          who: OLGA, tool: "ops__restart", args: r#"{"service": "prod-db"}"#,
          expect: Deny(&["no-prod-restarts"]), returns: "restart prod-db" },
    Row { why: "a forbid that cannot be evaluated (a required argument missing) denies",
          who: OLGA, tool: "ops__restart", args: r#"{}"#,
          expect: Deny(&["no-prod-restarts"]), returns: "restart -" },
    Row { why: "a forbid on the principal overrides every permit",
          who: MALLORY, tool: "demo__echo", args: r#"{"text": "hello"}"#,
          expect: Deny(&["mallory-is-suspended"]), returns: "hello" },
    Row { why: "two forbids match: both are named",
          who: MALLORY, tool: "ops__deploy", args: r#"{"service": "web", "replicas": 50}"#,
          expect: Deny(&["at-most-ten-replicas", "mallory-is-suspended"]), returns: "deploy web" },
];

/// What `tools/list` shows each caller in enforce mode: a tool is hidden when a forbid that
/// does not read the arguments matches, or when no permit can match; a permit that reads the
/// arguments keeps it shown.
#[rustfmt::skip]
const LISTINGS: &[(Who, &[&str])] = &[
    // fail: `fail-is-for-testers`; ops: no permit; deploy also `deploy-needs-the-deploy-scope`.
    (ALICE, &["demo__add", "demo__echo", "demo__slow", "demo__word_count"]),
    // deploy: no permit without the arguments, but `docs-deploys-for-everyone` reads them.
    (ALICE_DEPLOYER, &["demo__add", "demo__echo", "demo__slow", "demo__word_count", "ops__deploy"]),
    (TESS, &["demo__add", "demo__echo", "demo__fail", "demo__slow", "demo__word_count"]),
    (OLGA, &["demo__add", "demo__echo", "demo__slow", "demo__word_count", "ops__deploy", "ops__restart", "ops__status"]),
    // deploy: `deploy-needs-the-deploy-scope` reads no argument.
    (OSCAR, &["demo__add", "demo__echo", "demo__slow", "demo__word_count", "ops__restart", "ops__status"]),
    // deploy, restart: `ci-bot-reads-only`.
    (CI, &["demo__add", "demo__echo", "demo__slow", "demo__word_count", "ops__status"]),
    (MALLORY, &[]),
];

/// Every tool of both targets.
const ALL_TOOLS: &[&str] = &[
    "demo__add",
    "demo__echo",
    "demo__fail",
    "demo__slow",
    "demo__word_count",
    "ops__deploy",
    "ops__restart",
    "ops__status",
];

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn args_of(row: &Row) -> Value {
    serde_json::from_str(row.args).unwrap_or_else(|e| panic!("row `{}`: bad args: {e}", row.why))
}

/// The 1-based line of `text` holding `needle` (the first).
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is not in the text"))
        + 1
}

// ---------------------------------------------------------------------------------------------
// The `ops` upstream, served by this test.

/// An MCP server with three tools; each call answers `TOOL SERVICE` (`-` without a service)
/// and is recorded, so a test can tell what reached the upstream.
#[derive(Clone, Default)]
struct Ops {
    calls: Arc<Mutex<Vec<(String, JsonObject)>>>,
}

fn ops_tool(name: &'static str, description: &'static str, properties: Value) -> Tool {
    let schema = json!({"type": "object", "properties": properties, "required": ["service"]});
    Tool::new(
        name,
        description,
        Arc::new(schema.as_object().unwrap().clone()),
    )
}

fn ops_tools() -> Vec<Tool> {
    let service = json!({"type": "string"});
    vec![
        ops_tool(
            "deploy",
            "Deploys a service",
            json!({"service": service, "replicas": {"type": "integer"}}),
        )
        .with_annotations(ToolAnnotations::new().read_only(false).destructive(true)),
        ops_tool(
            "status",
            "Reports a service's status",
            json!({"service": service}),
        )
        .with_annotations(ToolAnnotations::new().read_only(true)),
        // No annotations: MCP's defaults (not read-only, destructive) apply.
        ops_tool("restart", "Restarts a service", json!({"service": service})),
    ]
}

impl ServerHandler for Ops {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .build();
        ServerConfig::new(caps)
    }

    async fn list_prompts(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        Ok(ListPromptsResult::with_all_items(vec![Prompt::new(
            "runbook",
            Some("The on-call runbook"),
            None,
        )]))
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, ErrorData> {
        let text = format!("prompt {}", request.name);
        let message = PromptMessage::new(Role::User, ContentBlock::text(text));
        Ok(GetPromptResult::new(vec![message]).into())
    }

    async fn list_resources(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        Ok(ListResourcesResult::with_all_items(
            OPS_RESOURCES
                .iter()
                .map(|uri| Resource::new(*uri, *uri))
                .collect(),
        ))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, ErrorData> {
        let contents = ResourceContents::text(format!("contents of {}", request.uri), request.uri);
        Ok(ReadResourceResult::new(vec![contents]).into())
    }

    async fn list_tools(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(ops_tools()))
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        ops_tools().into_iter().find(|t| t.name == name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let args = request.arguments.unwrap_or_default();
        let service = args.get("service").and_then(Value::as_str).unwrap_or("-");
        let text = format!("{} {service}", request.name);
        self.calls
            .lock()
            .unwrap()
            .push((request.name.to_string(), args.clone()));
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// The resources `ops` serves.
const OPS_RESOURCES: &[&str] = &["ops://services/web", "ops://secrets/db"];

// ---------------------------------------------------------------------------------------------
// The gateway in front of both targets.

struct Stack {
    gateway: Gateway,
    /// The gateway's stderr: its log and its audit lines.
    log: PathBuf,
    ops: Ops,
    _upstream: MockServer,
}

/// `[dev_idp]`, the policies shown to denied callers, in `mode`.
fn gateway_toml(mode: &str) -> String {
    format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n[policies]\nmode = \"{mode}\"\nshow_policy_ids = true\n"
    )
}

fn demo_target() -> String {
    format!(
        "[mcp]\ncommand = \"{}\"\nargs = [\"demo-upstream\"]\n",
        binary("portcullis", "portcullis").display()
    )
}

/// The `ops` upstream, and a config directory with `gateway_toml`, the demo and ops targets
/// and `policies/main.cedar` = `policies`.
async fn configure(gateway_toml: &str, policies: &str) -> (tempfile::TempDir, Ops, MockServer) {
    let ops = Ops::default();
    let service = StreamableHttpService::new(
        {
            let ops = ops.clone();
            move || Ok(ops.clone())
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(true)
            .with_allowed_hosts(["localhost", "127.0.0.1"]),
    );
    let upstream = MockServer::start(axum::Router::new().nest_service("/mcp", service)).await;
    let ops_target = format!("[mcp]\nurl = \"{}\"\n", upstream.url("/mcp"));
    let toml = gateway_toml.to_string();
    let dir = tokio::task::spawn_blocking(move || {
        write_config(&toml, &[("demo", demo_target()), ("ops", ops_target)]).unwrap()
    })
    .await
    .unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/main.cedar"), policies).unwrap();
    (dir, ops, upstream)
}

impl Stack {
    async fn start(mode: &str, policies: &str) -> Self {
        Self::start_with(mode, policies, "").await
    }

    /// [`Stack::start`] with `ops_settings` (top-level keys) at the head of `targets/ops.toml`.
    async fn start_with(mode: &str, policies: &str, ops_settings: &str) -> Self {
        let (dir, ops, upstream) = configure(&gateway_toml(mode), policies).await;
        let ops_file = dir.path().join("targets/ops.toml");
        let body = std::fs::read_to_string(&ops_file).unwrap();
        std::fs::write(&ops_file, format!("{ops_settings}{body}")).unwrap();
        let log = dir.path().join("gateway.stderr");
        let log_file = log.clone();
        let gateway = tokio::task::spawn_blocking(move || {
            Gateway::serve(
                dir,
                &Serve {
                    env: &[("PORTCULLIS_LOG", "warn")],
                    log_file: Some(log_file),
                    ..Serve::default()
                },
            )
        })
        .await
        .unwrap()
        .unwrap();
        Self {
            gateway,
            log,
            ops,
            _upstream: upstream,
        }
    }

    fn dir(&self) -> &Path {
        self.gateway.dir.path()
    }

    /// A dev IdP token for `who`.
    async fn token(&self, who: Who) -> String {
        let (dir, url) = (self.dir().to_path_buf(), self.gateway.url.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec!["--user", who.user, "--agent", who.agent];
            for g in who.groups {
                args.extend(["--group", g]);
            }
            for s in who.scopes {
                args.extend(["--scope", s]);
            }
            portcullis_e2e::dev_token(&dir, &url, &args)
        })
        .await
        .unwrap()
    }

    async fn client(&self, who: Who, era: Era) -> RunningService<RoleClient, ClientConfig> {
        let token = self.token(who).await;
        connect_as(
            ClientConfig::default(),
            &self.gateway.url,
            Some(&token),
            era,
        )
        .await
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The audit events of `tools/call` written so far.
    fn call_audits(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"stream\":\"portcullis::audit\""))
            .filter_map(|l| serde_json::from_str::<Value>(&l[l.find('{')?..]).ok())
            .filter(|e| e["method"] == "tools/call")
            .collect()
    }

    /// The `n`-th (0-based) `tools/call` audit event, once written.
    fn call_audit(&self, n: usize) -> Value {
        eventually(WITHIN, || self.call_audits().into_iter().nth(n)).unwrap_or_else(|_| {
            panic!(
                "no audit event #{n} of tools/call; the log:\n{}",
                self.log_text()
            )
        })
    }

    /// Call the row's tool as the row's caller on `client` and check the answer against the
    /// table (`enforce` mode): the result for an allow, -32004 naming the policies for a deny.
    /// Returns the determining policies the gateway recorded (its audit line).
    async fn check_enforced(
        &self,
        client: &RunningService<RoleClient, ClientConfig>,
        row: &Row,
        era: Era,
    ) -> Observed {
        let audits_before = self.call_audits().len();
        let answer = call_tool(client, row.tool, args_of(row)).await;
        let at = format!(
            "row `{}` ({era:?}, {} → {})",
            row.why, row.who.user, row.tool
        );
        let observed = match (row.expect, answer) {
            (Allow(_), Ok(result)) => {
                let text = result_text(&result);
                assert!(
                    text.contains(row.returns),
                    "{at}: allowed, but the result is not the tool's: {result:?}"
                );
                Observed {
                    allowed: true,
                    policies: vec![],
                }
            }
            (Deny(ids), Err(ServiceError::McpError(e))) => {
                assert_eq!(e.code.0, DENIED, "{at}: {e:?}");
                assert!(
                    e.message.contains(&format!(
                        "the call to tool `{}` was denied by policy",
                        row.tool
                    )),
                    "{at}: {}",
                    e.message
                );
                let data = e.data.clone().unwrap_or_default();
                assert_eq!(data["tool"], row.tool, "{at}: {data}");
                assert_eq!(data["reason"], "policy", "{at}: {data}");
                let named = named_in_message(&e.message);
                let in_data: Vec<String> = data
                    .get("policies")
                    .map(|p| serde_json::from_value(p.clone()).unwrap())
                    .unwrap_or_default();
                let expected = row.expect.policies();
                assert_eq!(sorted(named), expected, "{at}: the message: {}", e.message);
                assert_eq!(sorted(in_data.clone()), expected, "{at}: data: {data}");
                if ids.is_empty() {
                    assert!(data.get("policies").is_none(), "{at}: data: {data}");
                }
                Observed {
                    allowed: false,
                    policies: in_data,
                }
            }
            (Allow(_), Err(e)) => panic!("{at}: expected the result, got {e:?}"),
            (Deny(_), Ok(result)) => panic!("{at}: expected a denial, got {result:?}"),
            (_, Err(e)) => panic!("{at}: expected a JSON-RPC error -32004, got {e:?}"),
        };
        // The audit line records the policies' decision and the determining policies (the
        // permits of an allow, which the caller is never told).
        let audit = self.call_audit(audits_before);
        assert_eq!(audit["tool"], row.tool, "{at}: {audit}");
        let decision = if row.expect.allowed() {
            "allow"
        } else {
            "deny"
        };
        assert_eq!(audit["decision"], decision, "{at}: {audit}");
        assert_eq!(audit["policy"]["mode"], "enforce", "{at}: {audit}");
        assert_eq!(audit["policy"]["decision"], decision, "{at}: {audit}");
        let audited = policies_of(&audit);
        assert_eq!(
            sorted(audited.clone()),
            row.expect.policies(),
            "{at}: {audit}"
        );
        Observed {
            policies: audited,
            ..observed
        }
    }
}

/// The gateway's decision for one call: allowed or not, and the determining policies.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Observed {
    allowed: bool,
    policies: Vec<String>,
}

fn policies_of(audit: &Value) -> Vec<String> {
    serde_json::from_value(audit["policy"]["policies"].clone())
        .unwrap_or_else(|e| panic!("no policy.policies list in the audit line ({e}): {audit}"))
}

/// The ids a denial message names: `… (determining policies: a, b); …`.
fn named_in_message(message: &str) -> Vec<String> {
    const LEAD: &str = "(determining policies: ";
    let Some(start) = message.find(LEAD) else {
        return vec![];
    };
    let rest = &message[start + LEAD.len()..];
    rest[..rest.find(')').expect("a closing parenthesis")]
        .split(", ")
        .map(str::to_string)
        .collect()
}

/// The distinct callers of the table and of the listings, in order of first appearance.
fn callers() -> Vec<Who> {
    let mut all: Vec<Who> = vec![];
    for who in TABLE
        .iter()
        .map(|r| r.who)
        .chain(LISTINGS.iter().map(|l| l.0))
    {
        if !all.contains(&who) {
            all.push(who);
        }
    }
    all
}

/// `portcullis policy explain` of `row` against the configuration in `dir`, as JSON.
async fn explain(dir: &Path, row: &Row) -> Value {
    let mut cmd = Command::new(binary("portcullis", "portcullis"));
    cmd.args(["policy", "explain", "--config"])
        .arg(dir.join("gateway.toml"))
        .args(["--user", row.who.user, "--agent", row.who.agent]);
    for g in row.who.groups {
        cmd.args(["--group", g]);
    }
    for s in row.who.scopes {
        cmd.args(["--scope", s]);
    }
    cmd.args(["--tool", row.tool, "--args", row.args, "--json"]);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "row `{}`: explain failed ({}): {stdout}{}",
        row.why,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("row `{}`: explain printed no JSON ({e}): {stdout}", row.why))
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_table_through_the_gateway_in_both_eras() {
    assert!(TABLE.len() >= 20);
    let stack = Stack::start("enforce", POLICIES).await;
    for era in [Era::Legacy, Era::Modern] {
        for who in callers() {
            let client = stack.client(who, era).await;
            if let Some((_, expected)) = LISTINGS.iter().find(|(w, _)| *w == who) {
                assert_eq!(
                    sorted(tool_names(&client).await),
                    sorted(expected.iter().map(|s| s.to_string()).collect()),
                    "tools/list for {who:?} ({era:?})"
                );
            }
            for row in TABLE.iter().filter(|r| r.who == who) {
                stack.check_enforced(&client, row, era).await;
            }
            client.cancel().await.ok();
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn explain_agrees_with_the_gateway_on_every_row() {
    let stack = Stack::start("enforce", POLICIES).await;
    let file = stack.dir().join("policies/main.cedar");
    for who in callers() {
        let client = stack.client(who, Era::Legacy).await;
        for row in TABLE.iter().filter(|r| r.who == who) {
            let gateway = stack.check_enforced(&client, row, Era::Legacy).await;
            let explained = explain(stack.dir(), row).await;
            let at = format!("row `{}`: {explained}", row.why);
            let decision = if gateway.allowed { "allow" } else { "deny" };
            assert_eq!(explained["decision"], decision, "{at}");
            assert_eq!(explained["mode"], "enforce", "{at}");
            assert_eq!(explained["policies_allow"], gateway.allowed, "{at}");
            assert_eq!(explained["tool"], row.tool, "{at}");
            let ids: Vec<String> = serde_json::from_value(explained["policies"].clone()).unwrap();
            assert_eq!(
                sorted(ids.clone()),
                sorted(gateway.policies.clone()),
                "{at}"
            );
            // Each determining policy with the place it is written: its `@id` line.
            let determining: Vec<String> =
                serde_json::from_value(explained["determining_policies"].clone()).unwrap();
            let expected: Vec<String> = ids
                .iter()
                .map(|id| {
                    let line = line_of(POLICIES, &format!("@id(\"{id}\")"));
                    format!("{id} ({}:{line})", file.display())
                })
                .collect();
            assert_eq!(sorted(determining), sorted(expected), "{at}");
        }
        client.cancel().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn shadow_mode_allows_and_records_each_would_be_denial() {
    let stack = Stack::start("log_only", POLICIES).await;
    for who in callers() {
        let client = stack.client(who, Era::Legacy).await;
        // Nothing is hidden in shadow mode.
        assert_eq!(
            sorted(tool_names(&client).await),
            sorted(ALL_TOOLS.iter().map(|s| s.to_string()).collect()),
            "tools/list for {who:?} in log_only mode"
        );
        for row in TABLE.iter().filter(|r| r.who == who) {
            let at = format!("row `{}` ({} → {})", row.why, row.who.user, row.tool);
            let before = stack.call_audits().len();
            let result = call_tool(&client, row.tool, args_of(row))
                .await
                .unwrap_or_else(|e| panic!("{at}: log_only mode refused the call: {e:?}"));
            assert!(
                result_text(&result).contains(row.returns),
                "{at}: not the tool's result: {result:?}"
            );
            let audit = stack.call_audit(before);
            assert_eq!(audit["tool"], row.tool, "{at}: {audit}");
            assert_eq!(audit["decision"], "allow", "{at}: {audit}");
            assert_eq!(audit["outcome"]["status"], "ok", "{at}: {audit}");
            let would = if row.expect.allowed() {
                "allow"
            } else {
                "deny"
            };
            assert_eq!(audit["policy"]["mode"], "log_only", "{at}: {audit}");
            assert_eq!(audit["policy"]["decision"], would, "{at}: {audit}");
            assert_eq!(
                sorted(policies_of(&audit)),
                row.expect.policies(),
                "{at}: {audit}"
            );
        }
        client.cancel().await.ok();
    }
    // Every would-be denial reached its upstream: the ops rows, allowed or not, each arrived.
    let ops_rows = TABLE.iter().filter(|r| r.tool.starts_with("ops__")).count();
    assert_eq!(stack.ops.calls.lock().unwrap().len(), ops_rows);
    // The arguments are never audited (nor logged): the row carrying the marker was called.
    assert!(TABLE.iter().any(|r| r.args.contains(SECRET_MARKER)));
    let log = stack.log_text();
    assert!(
        stack.call_audits().len() >= TABLE.len(),
        "audit lines are missing: {log}"
    );
    assert!(
        !log.contains(SECRET_MARKER),
        "an argument's value is in the gateway's log or audit:\n{log}"
    );
}

/// A policy file whose last policy is broken at the line holding `marker`.
struct Broken {
    what: &'static str,
    text: &'static str,
    marker: &'static str,
    /// Words the error must say.
    says: &'static [&'static str],
}

const VALID_PREFIX: &str = r#"@id("demo-for-everyone")
permit(principal, action in Action::"CallTool", resource in Target::"demo");

@id("fail-is-for-testers")
forbid(principal, action == Action::"demo__fail", resource)
unless { principal.groups.contains("testers") };
"#;

/// The valid start of `bad.cedar`, before its broken policy.
const BAD_PREFIX: &str = r#"// Policies added by a second team.
@id("word-count-for-eng")
permit(principal, action == Action::"demo__word_count", resource)
when { principal.groups.contains("eng") };
"#;

#[rustfmt::skip]
const BROKEN: &[Broken] = &[
    Broken { what: "a syntax error",
             text: "@id(\"broken\")\nforbid(principal, action, resource)\nwhen { principal.groups.contains(\"x\") &&  };\n",
             marker: "&&  }", says: &["unexpected token"] },
    Broken { what: "an unknown attribute",
             text: "@id(\"broken\")\nforbid(principal, action, resource)\nwhen {\n  principal.departmnt == \"sales\"\n};\n",
             marker: "departmnt", says: &["departmnt"] },
    Broken { what: "a type error in an argument (a number compared as a string)",
             text: "@id(\"broken\")\nforbid(principal, action == Action::\"demo__add\", resource)\nwhen {\n  context.input.a like \"1*\"\n};\n",
             marker: "like", says: &["expected String but saw decimal"] },
    Broken { what: "a type error in a principal attribute",
             text: "@id(\"broken\")\nforbid(principal, action, resource)\nwhen {\n  principal.groups == 3\n};\n",
             marker: "== 3", says: &["Long and Set<String>"] },
];

#[tokio::test(flavor = "multi_thread")]
async fn invalid_policies_fail_check_with_file_and_line_and_a_reload_keeps_the_old_set() {
    // `portcullis check` refuses each broken file, naming its file and line.
    for broken in BROKEN {
        let text = format!("{BAD_PREFIX}\n{}", broken.text);
        let line = line_of(&text, broken.marker);
        let (dir, _ops, _upstream) = configure(&gateway_toml("enforce"), VALID_PREFIX).await;
        std::fs::write(dir.path().join("policies/bad.cedar"), &text).unwrap();
        let config = dir.path().to_path_buf();
        let out = tokio::task::spawn_blocking(move || {
            portcullis_e2e::run_portcullis("check", &config, &[])
        })
        .await
        .unwrap();
        let printed = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() && printed.contains("NOT usable"),
            "check accepted {}:\n{printed}",
            broken.what
        );
        assert!(
            printed.contains(&format!("bad.cedar:{line}:")),
            "check did not place {} at bad.cedar:{line}:\n{printed}",
            broken.what
        );
        for word in broken.says {
            assert!(
                printed.contains(word),
                "{}: `{word}` not said:\n{printed}",
                broken.what
            );
        }
        // The valid file is not blamed.
        assert!(
            !printed.contains("main.cedar:"),
            "{}: the valid file is blamed:\n{printed}",
            broken.what
        );
    }

    // A running gateway keeps its policies when the new ones do not check.
    let stack = Stack::start("enforce", VALID_PREFIX).await;
    let client = stack.client(ALICE, Era::Legacy).await;
    let echo = || call_tool(&client, "demo__echo", json!({"text": "hi"}));
    let fail = || call_tool(&client, "demo__fail", json!({"message": "boom"}));
    assert_eq!(result_text(&echo().await.unwrap()), "hi");
    assert_denied_by(fail().await, &["fail-is-for-testers"]);
    let reloads = readyz(&stack.gateway.base()).await.1["config"]["reloads"]
        .as_u64()
        .unwrap();

    // The new set would deny echo and allow fail, if any of it were used.
    let invalid = r#"@id("demo-for-everyone")
permit(principal, action in Action::"CallTool", resource in Target::"demo");

@id("no-echo")
forbid(principal, action == Action::"demo__echo", resource);

@id("by-department")
forbid(principal, action in Action::"CallTool", resource)
when { principal.departmnt == "sales" };
"#;
    replace_policies(stack.dir(), invalid);
    let status = until_readyz(&stack, |r| r["config"]["status"] != "loaded").await;
    let problems = status["config"]["problems"].to_string();
    let line = line_of(invalid, "departmnt");
    assert!(
        problems.contains(&format!("main.cedar:{line}:")) && problems.contains("departmnt"),
        "/readyz does not name main.cedar:{line}: {status}"
    );
    assert_eq!(status["config"]["reloads"], reloads, "{status}");
    assert_eq!(
        result_text(&echo().await.unwrap()),
        "hi",
        "the old set no longer applies"
    );
    assert_denied_by(fail().await, &["fail-is-for-testers"]);

    // A valid new set is used as soon as it is written.
    let valid = r#"@id("demo-for-everyone")
permit(principal, action in Action::"CallTool", resource in Target::"demo");

@id("no-echo-for-eng")
forbid(principal, action == Action::"demo__echo", resource)
when { principal.groups.contains("eng") };
"#;
    replace_policies(stack.dir(), valid);
    let status = until_readyz(&stack, |r| {
        r["config"]["status"] == "loaded" && r["config"]["reloads"].as_u64() > Some(reloads)
    })
    .await;
    assert!(status["config"].get("problems").is_none(), "{status}");
    assert_denied_by(echo().await, &["no-echo-for-eng"]);
    let failed = fail().await.unwrap();
    assert_eq!(failed.is_error, Some(true), "{failed:?}");
    assert!(result_text(&failed).contains("boom"), "{failed:?}");
    let listed = tool_names(&client).await;
    assert!(
        listed.contains(&"demo__fail".to_string()) && !listed.contains(&"demo__echo".to_string()),
        "{listed:?}"
    );
    client.cancel().await.ok();
}

/// Write `policies/main.cedar` as editors do (a new file renamed over the old one).
fn replace_policies(dir: &Path, text: &str) {
    let tmp = dir.join("policies/.main.cedar.tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, dir.join("policies/main.cedar")).unwrap();
}

/// `/readyz` once `done` holds of it (bounded).
async fn until_readyz(stack: &Stack, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WITHIN;
    loop {
        let r = readyz(&stack.gateway.base()).await.1;
        if done(&r) {
            return r;
        }
        assert!(Instant::now() < deadline, "/readyz never changed: {r}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_denied_by(answer: Result<CallToolResult, ServiceError>, ids: &[&str]) {
    let e = match answer {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a denial by {ids:?}, got {other:?}"),
    };
    assert_eq!(e.code.0, DENIED, "{e:?}");
    assert_eq!(
        sorted(named_in_message(&e.message)),
        sorted(ids.iter().map(|s| s.to_string()).collect()),
        "{}",
        e.message
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mistyped_argument_is_denied_not_passed_through() {
    let stack = Stack::start("enforce", POLICIES).await;
    let olga = stack.client(OLGA, Era::Legacy).await;
    let deploys = || {
        stack
            .ops
            .calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(tool, _)| tool == "deploy")
            .count()
    };

    // As an integer, 50 replicas are forbidden by `at-most-ten-replicas`; as the string "50"
    // the forbid cannot compare it, and the call must not slip past it to the upstream.
    let denied = call_tool(
        &olga,
        "ops__deploy",
        json!({"service": "web", "replicas": "50"}),
    )
    .await;
    let Err(ServiceError::McpError(e)) = denied else {
        panic!("a string for the integer `replicas` was not denied: {denied:?}");
    };
    assert_eq!(e.code.0, DENIED, "{e:?}");
    assert!(
        e.message.contains("denied by policy")
            && e.message.contains("`replicas`")
            && e.message.contains("integer"),
        "the denial does not name the argument and its type: {}",
        e.message
    );
    assert_eq!(e.data.as_ref().unwrap()["reason"], "policy", "{e:?}");
    assert_eq!(deploys(), 0, "the mistyped call reached the upstream");

    // A number argument given as a string, on a demo tool.
    let alice = stack.client(ALICE, Era::Legacy).await;
    let denied = call_tool(&alice, "demo__add", json!({"a": "2000", "b": 1})).await;
    let Err(ServiceError::McpError(e)) = denied else {
        panic!("a string for the number `a` was not denied: {denied:?}");
    };
    assert_eq!(e.code.0, DENIED, "{e:?}");
    assert!(
        e.message.contains("`a`") && e.message.contains("number"),
        "{}",
        e.message
    );

    // The same call correctly typed goes through (the denial was about the type).
    let ok = call_tool(
        &olga,
        "ops__deploy",
        json!({"service": "web", "replicas": 5}),
    )
    .await
    .unwrap();
    assert_eq!(result_text(&ok), "deploy web");
    assert_eq!(deploys(), 1);
    olga.cancel().await.ok();
    alice.cancel().await.ok();
}

/// Policies that name `GetPrompt` and `ReadResource` govern prompts and resources: listed
/// and read only as they allow, in both eras; without such a policy (the file above) every
/// caller lists and reads them all.
#[tokio::test(flavor = "multi_thread")]
async fn prompts_and_resources_are_filtered_and_guarded_once_a_policy_names_them() {
    const ITEMS: &str = r#"
// Prompts: the ops team's runbooks.
@id("runbooks-for-ops")
permit(principal, action == Action::"GetPrompt", resource in Target::"ops")
when { principal.groups.contains("ops") };

// Resources: anyone reads service pages, nobody reads secrets.
@id("resources-for-everyone")
permit(principal, action == Action::"ReadResource", resource);

@id("no-secrets")
forbid(principal, action == Action::"ReadResource", resource)
when { resource.uri like "ops://secrets/*" };
"#;
    let ungoverned = Stack::start("enforce", POLICIES).await;
    let alice = ungoverned.client(ALICE, Era::Legacy).await;
    assert_eq!(prompt_names(&alice).await, vec!["ops__runbook"]);
    assert_eq!(resource_uris(&alice).await.len(), OPS_RESOURCES.len());
    alice
        .peer()
        .get_prompt(GetPromptRequestParams::new("ops__runbook"))
        .await
        .unwrap();
    alice
        .peer()
        .read_resource(ReadResourceRequestParams::new("ops://secrets/db"))
        .await
        .unwrap();
    drop(alice);
    drop(ungoverned);

    let stack = Stack::start("enforce", &format!("{POLICIES}{ITEMS}")).await;
    for era in [Era::Legacy, Era::Modern] {
        let olga = stack.client(OLGA, era).await;
        assert_eq!(prompt_names(&olga).await, vec!["ops__runbook"], "{era:?}");
        let got = olga
            .peer()
            .get_prompt(GetPromptRequestParams::new("ops__runbook"))
            .await
            .unwrap();
        assert_eq!(got.messages.len(), 1, "{era:?}");

        let alice = stack.client(ALICE, era).await;
        assert!(
            prompt_names(&alice).await.is_empty(),
            "{era:?}: alice is not in ops"
        );
        let e = mcp_error(
            alice
                .peer()
                .get_prompt(GetPromptRequestParams::new("ops__runbook"))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code.0, DENIED, "{era:?}: {e:?}");
        assert!(
            e.message
                .contains("prompt `ops__runbook` was denied by policy: no policy permits it"),
            "{}",
            e.message
        );

        assert_eq!(
            resource_uris(&alice).await,
            vec!["ops://services/web"],
            "{era:?}"
        );
        let read = alice
            .peer()
            .read_resource(ReadResourceRequestParams::new("ops://services/web"))
            .await
            .unwrap();
        assert_eq!(read.contents.len(), 1);
        let e = mcp_error(
            alice
                .peer()
                .read_resource(ReadResourceRequestParams::new("ops://secrets/db"))
                .await
                .unwrap_err(),
        );
        assert_eq!(e.code.0, DENIED, "{era:?}: {e:?}");
        assert_eq!(
            e.data.as_ref().unwrap()["policies"],
            json!(["no-secrets"]),
            "{e:?}"
        );
        assert_eq!(
            e.data.as_ref().unwrap()["uri"],
            json!("ops://secrets/db"),
            "{e:?}"
        );
    }
    // Each governed decision is an audit event, allowed or denied.
    let audits = |method: &str| -> Vec<Value> {
        stack
            .log_text()
            .lines()
            .filter(|l| l.contains("\"stream\":\"portcullis::audit\""))
            .filter_map(|l| serde_json::from_str::<Value>(&l[l.find('{')?..]).ok())
            .filter(|e| e["method"] == method)
            .collect()
    };
    let prompts = eventually(WITHIN, || {
        Some(audits("prompts/get")).filter(|a| a.len() == 4)
    })
    .unwrap();
    let denied: Vec<&Value> = prompts.iter().filter(|e| e["decision"] == "deny").collect();
    assert_eq!(denied.len(), 2, "alice, in each era: {prompts:#?}");
    assert_eq!(denied[0]["tool"], "ops__runbook");
    assert_eq!(denied[0]["target"], "ops");
    assert_eq!(
        denied[0]["policy"],
        json!({"mode": "enforce", "decision": "deny", "policies": []})
    );
    let reads = eventually(WITHIN, || {
        Some(audits("resources/read")).filter(|a| a.len() == 4)
    })
    .unwrap();
    let secret = reads.iter().find(|e| e["decision"] == "deny").unwrap();
    assert_eq!(secret["tool"], "ops://secrets/db");
    assert_eq!(secret["policy"]["policies"], json!(["no-secrets"]));
    assert_eq!(secret["outcome"]["code"], DENIED);
}

async fn prompt_names(client: &RunningService<RoleClient, ClientConfig>) -> Vec<String> {
    let listed = client.peer().list_prompts(None).await.unwrap();
    listed.prompts.into_iter().map(|p| p.name).collect()
}

async fn resource_uris(client: &RunningService<RoleClient, ClientConfig>) -> Vec<String> {
    let listed = client.peer().list_resources(None).await.unwrap();
    listed
        .resources
        .into_iter()
        .map(|r| r.uri.clone())
        .collect()
}

/// Arguments reach the audit trail only from a target that opts in (`audit_arguments`):
/// `ops` does here, `demo` does not.
#[tokio::test(flavor = "multi_thread")]
async fn only_a_target_that_opts_in_has_its_arguments_audited() {
    let stack = Stack::start_with("enforce", POLICIES, "audit_arguments = true\n").await;
    let olga = stack.client(OLGA, Era::Legacy).await;
    call_tool(&olga, "ops__status", json!({"service": "web-7731"}))
        .await
        .unwrap();
    call_tool(&olga, "demo__echo", json!({"text": "quokka-7731"}))
        .await
        .unwrap();
    let ops = stack.call_audit(0);
    assert_eq!(ops["tool"], "ops__status", "{ops}");
    assert_eq!(ops["arguments"], json!({"service": "web-7731"}), "{ops}");
    let demo = stack.call_audit(1);
    assert_eq!(demo["tool"], "demo__echo", "{demo}");
    assert_eq!(demo["arguments"], Value::Null, "{demo}");
    assert!(!stack.log_text().contains("quokka-7731"));
}

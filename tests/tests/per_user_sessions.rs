//! `token_exchange` on an MCP target, end to end: the real gateway (dev IdP callers alice and
//! bob) in front of an in-process upstream MCP server that records the bearer of every HTTP
//! request it receives, with the in-process exchanging authorization server between them.
//! Such a target keeps one upstream session per user: each session — its handshake, listing,
//! event stream and calls — carries only its user's exchanged token.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use portcullis_e2e::exchanging_as::{
    AUDIENCE, AuthServer, CLIENT_ID, CLIENT_SECRET, RESOURCE, TokenRequest, basic,
};
use portcullis_e2e::{Gateway, readyz};
use rmcp::model::*;
use rmcp::service::RequestContext;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::streamable_http_server::{
    StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
};
use rmcp::{ErrorData, RoleServer, ServerHandler, ServiceExt};

const SECRET_ENV: &str = "PORTCULLIS_E2E_EXCHANGE_SECRET";
const LISTING_KEY_ENV: &str = "PORTCULLIS_E2E_LISTING_KEY";
const LISTING_KEY: &str = "listing-key-of-the-gateway";

/// One HTTP request the upstream received.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The JSON-RPC method of a POST, if any.
    rpc: Option<String>,
    authorization: Option<String>,
    /// The MCP session the request belongs to: its `mcp-session-id`, or for `initialize` the
    /// one the answer assigned.
    session: Option<String>,
    body: String,
}

impl Seen {
    fn what(&self) -> String {
        format!(
            "{} {}",
            self.method,
            self.rpc.as_deref().unwrap_or("(no method)")
        )
    }
}

/// An MCP server over streamable HTTP (legacy sessions) with one tool, `whoami`, that answers
/// with the Authorization header its own request carried. Records every request. Stops on drop.
struct RecordingUpstream {
    base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for RecordingUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RecordingUpstream {
    async fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let config = StreamableHttpServerConfig::default()
            .with_legacy_session_mode(true)
            .with_allowed_hosts(["localhost", "127.0.0.1"]);
        let service = StreamableHttpService::new(
            || Ok(Whoami),
            Arc::new(LocalSessionManager::default()),
            config,
        );
        let app = axum::Router::new()
            .nest_service("/mcp", service)
            .layer(axum::middleware::from_fn_with_state(seen.clone(), record));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { base, seen, task }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn record(State(seen): State<Arc<Mutex<Vec<Seen>>>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let header = |h: &str| {
        parts
            .headers
            .get(h)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    };
    let text = String::from_utf8_lossy(&body).into_owned();
    let rpc = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| v["method"].as_str().map(str::to_string));
    let mut entry = Seen {
        method: parts.method.to_string(),
        rpc,
        authorization: header("authorization"),
        session: header("mcp-session-id"),
        body: text,
    };
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    if entry.session.is_none() {
        entry.session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    seen.lock().unwrap().push(entry);
    response
}

#[derive(Debug, Clone)]
struct Whoami;

impl ServerHandler for Whoami {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("whoami-upstream", "1.0.0"))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = serde_json::json!({ "type": "object" });
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "whoami",
            "Answers with the Authorization header of its own request",
            schema.as_object().cloned().unwrap(),
        )]))
    }

    async fn call_tool(
        &self,
        _request: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let bearer = ctx
            .extensions
            .get::<http::request::Parts>()
            .and_then(|p| p.headers.get("authorization"))
            .map_or_else(
                || "none".to_string(),
                |v| String::from_utf8_lossy(v.as_bytes()).into_owned(),
            );
        Ok(CallToolResult::success(vec![ContentBlock::text(bearer)]).into())
    }
}

fn target_toml(upstream: &RecordingUpstream, auth: &AuthServer) -> String {
    format!(
        r#"[mcp]
url = "{}/mcp"

[auth]
mode = "token_exchange"
token_url = "{}"
client_id = "{CLIENT_ID}"
client_secret = "env:{SECRET_ENV}"
audience = "{AUDIENCE}"
resource = "{RESOURCE}"
scopes = ["orders:read", "orders:write"]
"#,
        upstream.base,
        auth.url("/token"),
    )
}

/// A dev-IdP token for `user`, for the gateway at the address it printed.
fn token_for(gw: &Gateway, user: &str) -> String {
    gw.dev_token(&["--user", user])
}

type Client = rmcp::service::RunningService<rmcp::RoleClient, ClientConfig>;

async fn connect(url: &str, token: &str) -> Client {
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .auth_header(token.to_string());
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .expect("an MCP client connects to the gateway")
}

/// Call `orders__whoami` with a marker in its arguments; returns the bearer the upstream saw.
async fn whoami(client: &Client, marker: &str) -> String {
    let args = serde_json::json!({ "marker": marker })
        .as_object()
        .cloned()
        .unwrap();
    let r = client
        .peer()
        .call_tool(CallToolRequestParams::new("orders__whoami").with_arguments(args))
        .await
        .expect("the call succeeds");
    assert_ne!(r.is_error, Some(true), "{r:?}");
    r.content
        .first()
        .and_then(|c| c.as_text())
        .map(|t| t.text.clone())
        .expect("a text answer")
}

/// The issued token → the caller token it was exchanged for.
fn exchanges(requests: &[TokenRequest]) -> BTreeMap<String, String> {
    requests
        .iter()
        .map(|r| {
            (
                r.issued.clone().expect("every exchange succeeded"),
                r.field("subject_token").unwrap().to_string(),
            )
        })
        .collect()
}

/// The gateway (dev IdP) with one `token_exchange` target `orders` in front of `upstream`.
async fn start_gateway(upstream: &RecordingUpstream, auth: &AuthServer) -> Gateway {
    start_gateway_with(upstream, auth, "").await
}

/// [`start_gateway`] with the upstream kept on 2025-11-25 sessions (`[mcp] protocol`).
async fn start_gateway_pinned(upstream: &RecordingUpstream, auth: &AuthServer) -> Gateway {
    let target =
        target_toml(upstream, auth).replacen("[mcp]\n", "[mcp]\nprotocol = \"2025-11-25\"\n", 1);
    start_gateway_from(target).await
}

/// The same, with `extra` appended to the target file.
async fn start_gateway_with(
    upstream: &RecordingUpstream,
    auth: &AuthServer,
    extra: &str,
) -> Gateway {
    start_gateway_from(format!("{}{extra}", target_toml(upstream, auth))).await
}

/// The gateway with `target` as the target file `orders.toml`.
async fn start_gateway_from(target: String) -> Gateway {
    // Port 0: the gateway prints the address it got, and tokens are minted for it.
    let gateway_toml = "[dev_idp]\n".to_string();
    tokio::task::spawn_blocking(move || {
        Gateway::start_with_env(
            &gateway_toml,
            &[("orders", target)],
            &[(SECRET_ENV, CLIENT_SECRET), (LISTING_KEY_ENV, LISTING_KEY)],
        )
    })
    .await
    .unwrap()
    .expect("the gateway starts with a token_exchange MCP target")
}

#[tokio::test(flavor = "multi_thread")]
async fn each_user_gets_an_upstream_session_carrying_only_their_own_exchanged_token() {
    let auth = AuthServer::start(basic()).await;
    let upstream = RecordingUpstream::start().await;
    // 2025-11-25 sessions, so the test can check that no upstream session carries two users'
    // tokens (against a 2026-07-28 upstream there are none; each request's token is checked).
    let gw = start_gateway_pinned(&upstream, &auth).await;

    // Before any user: nothing opened, nothing exchanged, and the gateway is ready.
    let (status, body) = readyz(&gw.base()).await;
    assert_eq!(status, 200, "a per-user target is not 'down': {body}");
    assert_eq!(
        body["targets"][0]["status"], "per-user sessions: 0 open",
        "{body}"
    );
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert_eq!(auth.count(), 0);

    let alice_token = token_for(&gw, "alice");
    let bob_token = token_for(&gw, "bob");
    assert_ne!(alice_token, bob_token);

    // Alice lists (opening her session, which lists the upstream) and calls twice.
    let alice = connect(&gw.url, &alice_token).await;
    let tools = alice.peer().list_all_tools().await.unwrap();
    assert!(
        tools.iter().any(|t| t.name == "orders__whoami"),
        "the tools come from alice's session: {:?}",
        tools.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    let alice_saw = whoami(&alice, "call by alice").await;
    assert_eq!(whoami(&alice, "again by alice").await, alice_saw);

    // Bob lists (the tools are known now) and calls: his own session opens.
    let bob = connect(&gw.url, &bob_token).await;
    let tools = bob.peer().list_all_tools().await.unwrap();
    assert!(tools.iter().any(|t| t.name == "orders__whoami"));
    let bob_saw = whoami(&bob, "call by bob").await;
    // Alice again, after bob: still her own token.
    assert_eq!(whoami(&alice, "alice after bob").await, alice_saw);

    // The authorization server saw exactly one exchange per user, of that user's own token.
    let issued = exchanges(&auth.requests());
    assert_eq!(
        auth.count(),
        2,
        "one exchange per user: {:?}",
        auth.requests()
    );
    let subjects: BTreeSet<&String> = issued.values().collect();
    assert_eq!(subjects, BTreeSet::from([&alice_token, &bob_token]));
    let token_of = |caller: &str| -> String {
        let (t, _) = issued.iter().find(|(_, s)| *s == caller).unwrap();
        format!("Bearer {t}")
    };
    let (alice_bearer, bob_bearer) = (token_of(&alice_token), token_of(&bob_token));
    assert_eq!(alice_saw, alice_bearer, "alice's call carried her token");
    assert_eq!(bob_saw, bob_bearer, "bob's call carried his token");

    // Every request the upstream received carried one user's exchanged token — never a
    // caller's own token, never none — and each upstream session only ever one user's.
    let seen = upstream.seen();
    let mut bearer_of_session: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in &seen {
        let bearer = s.authorization.clone().unwrap_or_default();
        assert!(
            bearer == alice_bearer || bearer == bob_bearer,
            "{}: carried {bearer:?}, not an exchanged token",
            s.what()
        );
        for raw in [&alice_token, &bob_token] {
            assert!(!bearer.contains(raw.as_str()) && !s.body.contains(raw.as_str()));
        }
        let session = s
            .session
            .clone()
            .unwrap_or_else(|| panic!("{}: no MCP session", s.what()));
        bearer_of_session.entry(session).or_default().insert(bearer);
    }
    assert_eq!(
        bearer_of_session.len(),
        2,
        "one upstream session per user: {bearer_of_session:?}"
    );
    for (session, bearers) in &bearer_of_session {
        assert_eq!(
            bearers.len(),
            1,
            "session {session} mixed users: {bearers:?}"
        );
    }
    let initializes: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.rpc.as_deref() == Some("initialize"))
        .collect();
    assert_eq!(initializes.len(), 2, "{seen:?}");
    // The calls by content: bob's carries bob's token and never alice's.
    for s in seen
        .iter()
        .filter(|s| s.rpc.as_deref() == Some("tools/call"))
    {
        let want = if s.body.contains("by bob") {
            &bob_bearer
        } else {
            &alice_bearer
        };
        assert_eq!(s.authorization.as_ref(), Some(want), "{}", s.body);
    }
    let bob_session = seen
        .iter()
        .find(|s| s.body.contains("call by bob"))
        .and_then(|s| s.session.clone())
        .unwrap();
    for s in seen
        .iter()
        .filter(|s| s.session.as_ref() == Some(&bob_session))
    {
        assert_ne!(
            s.authorization.as_ref(),
            Some(&alice_bearer),
            "{} in bob's session carried alice's token",
            s.what()
        );
    }

    let (status, body) = readyz(&gw.base()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["targets"][0]["status"], "per-user sessions: 2 open",
        "{body}"
    );
    alice.cancel().await.ok();
    bob.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_first_call_without_listing_opens_the_callers_session_and_succeeds() {
    let auth = AuthServer::start(basic()).await;
    let upstream = RecordingUpstream::start().await;
    let gw = start_gateway(&upstream, &auth).await;
    let carol_token = token_for(&gw, "carol");
    let carol = connect(&gw.url, &carol_token).await;
    // No tools/list: the tool is not known yet, and carol's session learns it.
    let saw = whoami(&carol, "first call by carol").await;
    let issued = exchanges(&auth.requests());
    assert_eq!(issued.len(), 1, "{:?}", auth.requests());
    let (token, subject) = issued.iter().next().unwrap();
    assert_eq!(subject, &carol_token);
    assert_eq!(saw, format!("Bearer {token}"));
    assert!(
        upstream
            .seen()
            .iter()
            .all(|s| s.authorization.as_deref() == Some(saw.as_str())),
        "{:?}",
        upstream.seen()
    );
    carol.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn declared_tools_are_listed_before_any_user_session_and_calls_still_use_the_callers() {
    let auth = AuthServer::start(basic()).await;
    let upstream = RecordingUpstream::start().await;
    let declared = r#"
[tools.whoami]
description = "Declared: who the upstream thinks you are"
input_schema = { type = "object", properties = { marker = { type = "string" } } }
"#;
    let gw = start_gateway_with(&upstream, &auth, declared).await;
    let alice_token = token_for(&gw, "alice");
    let alice = connect(&gw.url, &alice_token).await;

    // Listing opens no user session: the declared tool is what callers see.
    let tools = alice.peer().list_all_tools().await.unwrap();
    let whoami_tool = tools
        .iter()
        .find(|t| t.name == "orders__whoami")
        .expect("the declared tool is listed");
    assert_eq!(
        whoami_tool.description.as_deref(),
        Some("Declared: who the upstream thinks you are")
    );
    assert!(upstream.seen().is_empty(), "{:?}", upstream.seen());
    assert_eq!(auth.count(), 0, "listing exchanged no token");

    // A call opens alice's own session, with her exchanged token.
    let saw = whoami(&alice, "call by alice").await;
    let issued = exchanges(&auth.requests());
    assert_eq!(issued.len(), 1);
    let (token, subject) = issued.iter().next().unwrap();
    assert_eq!(subject, &alice_token);
    assert_eq!(saw, format!("Bearer {token}"));
    alice.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_listing_session_lists_with_the_gateways_own_credential_and_never_serves_a_call() {
    let auth = AuthServer::start(basic()).await;
    let upstream = RecordingUpstream::start().await;
    let lister = format!(
        "\n[listing_auth]\nmode = \"api_key\"\nkey = \"env:{LISTING_KEY_ENV}\"\nheader = \"authorization\"\n"
    );
    let gw = start_gateway_with(&upstream, &auth, &lister).await;
    let listing_bearer = format!("Bearer {LISTING_KEY}");

    // Ready means the listing session connected and listed, with the gateway's key, before
    // any user came.
    let seen = upstream.seen();
    assert!(
        seen.iter().any(|s| s.rpc.as_deref() == Some("tools/list")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|s| s.authorization.as_deref() == Some(listing_bearer.as_str())),
        "{seen:?}"
    );
    assert_eq!(auth.count(), 0);

    let bob_token = token_for(&gw, "bob");
    let bob = connect(&gw.url, &bob_token).await;
    let tools = bob.peer().list_all_tools().await.unwrap();
    assert!(
        tools.iter().any(|t| t.name == "orders__whoami"),
        "{tools:?}"
    );
    assert_eq!(auth.count(), 0, "listing exchanged no token");

    // The call goes through bob's own session with his exchanged token, never the key.
    let saw = whoami(&bob, "call by bob").await;
    let issued = exchanges(&auth.requests());
    let (token, subject) = issued.iter().next().unwrap();
    assert_eq!(subject, &bob_token);
    assert_eq!(saw, format!("Bearer {token}"));
    for s in upstream
        .seen()
        .iter()
        .filter(|s| s.rpc.as_deref() == Some("tools/call"))
    {
        assert_eq!(s.authorization.as_deref(), Some(saw.as_str()), "{}", s.body);
    }
    bob.cancel().await.ok();
}

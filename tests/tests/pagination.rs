//! Listings served in pages, end to end: an upstream with 10,000 tools behind the gateway,
//! paged through by an rmcp client in each protocol era and by the official MCP Python SDK;
//! prompts, resources and templates paged with a small page size; a cursor the gateway did
//! not issue refused with -32602.

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use portcullis_e2e::{Era, Gateway, MockServer, connect_as, python_peers};
use rmcp::model::*;
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ErrorData, RoleClient, RoleServer, ServerHandler};

const TOOLS: usize = 10_000;
/// The default `[catalog] page_size`.
const DEFAULT_PAGE: usize = 500;
/// Prompts, resources and templates of the upstream.
const OTHERS: usize = 20;

/// An upstream with `tools` tools and [`OTHERS`] prompts, resources and templates, listed
/// in one page each (the gateway merges, then pages itself).
#[derive(Clone)]
struct ManyThings {
    tools: usize,
}

fn upstream_name(i: usize) -> String {
    format!("tool_{i:05}")
}

impl ServerHandler for ManyThings {
    fn get_info(&self) -> ServerConfig {
        let caps = ServerCapabilities::builder()
            .enable_tools()
            .enable_prompts()
            .enable_resources()
            .build();
        ServerConfig::new(caps)
    }

    async fn list_tools(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = Arc::new(JsonObject::from_iter([(
            "type".to_string(),
            serde_json::json!("object"),
        )]));
        let tools = (0..self.tools)
            .map(|i| Tool::new(upstream_name(i), "one of many", schema.clone()))
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn list_prompts(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, ErrorData> {
        let prompts = (0..OTHERS)
            .map(|i| Prompt::new(format!("prompt_{i:02}"), Some("one of many"), None))
            .collect();
        Ok(ListPromptsResult::with_all_items(prompts))
    }

    async fn list_resources(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, ErrorData> {
        let resources = (0..OTHERS)
            .map(|i| Resource::new(format!("many://resource/{i:02}"), format!("r{i}")))
            .collect();
        Ok(ListResourcesResult::with_all_items(resources))
    }

    async fn list_resource_templates(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let templates = (0..OTHERS)
            .map(|i| {
                ResourceTemplate::new(format!("many://template/{i:02}/{{id}}"), format!("t{i}"))
            })
            .collect();
        Ok(ListResourceTemplatesResult::with_all_items(templates))
    }
}

/// The upstream (in this process) and a gateway in front of it as target `many`.
struct Stack {
    gateway: Gateway,
    _upstream: MockServer,
}

async fn start(tools: usize, gateway_toml: &str) -> Stack {
    let service = StreamableHttpService::new(
        move || Ok(ManyThings { tools }),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default()
            .with_legacy_session_mode(true)
            .with_allowed_hosts(["localhost", "127.0.0.1"]),
    );
    let upstream = MockServer::start(axum::Router::new().nest_service("/mcp", service)).await;
    let target = format!("[mcp]\nurl = \"{}\"\n", upstream.url("/mcp"));
    let toml = gateway_toml.to_string();
    let gateway = tokio::task::spawn_blocking(move || Gateway::start(&toml, &[("many", target)]))
        .await
        .unwrap()
        .unwrap();
    Stack {
        gateway,
        _upstream: upstream,
    }
}

fn params(cursor: Option<String>) -> Option<PaginatedRequestParams> {
    Some(PaginatedRequestParams::default().with_cursor(cursor))
}

/// Every page of a listing in turn, from the first, as the names of its items.
async fn pages<F, Fut>(mut list: F) -> Vec<Vec<String>>
where
    F: FnMut(Option<String>) -> Fut,
    Fut: Future<Output = (Vec<String>, Option<String>)>,
{
    let mut pages = vec![];
    let mut cursor = None;
    loop {
        let (names, next) = list(cursor.take()).await;
        pages.push(names);
        match next {
            Some(next) => cursor = Some(next),
            None => return pages,
        }
        assert!(pages.len() <= TOOLS, "the listing never ends");
    }
}

async fn tool_pages(client: &RunningService<RoleClient, ClientConfig>) -> Vec<Vec<String>> {
    pages(|cursor| async move {
        let r = client.peer().list_tools(params(cursor)).await.unwrap();
        let names = r.tools.into_iter().map(|t| t.name.into_owned()).collect();
        (names, r.next_cursor)
    })
    .await
}

/// `pages` hold every expected name exactly once, in order, on more than one page.
fn assert_complete(pages: &[Vec<String>], expected: &[String], page_size: usize) {
    assert!(pages.len() > 1, "one page only");
    assert_eq!(pages.len(), expected.len().div_ceil(page_size));
    assert!(
        pages[..pages.len() - 1]
            .iter()
            .all(|p| p.len() == page_size),
        "short page before the last: {:?}",
        pages.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let all = pages.concat();
    let unique: HashSet<_> = all.iter().collect();
    assert_eq!(unique.len(), all.len(), "an item was served twice");
    assert_eq!(all, expected, "an item is missing or out of order");
}

fn gateway_tools() -> Vec<String> {
    (0..TOOLS)
        .map(|i| format!("many__{}", upstream_name(i)))
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn rmcp_clients_of_both_eras_page_through_ten_thousand_tools() {
    let stack = start(TOOLS, "").await;
    for era in [Era::Legacy, Era::Modern] {
        let client = connect_as(ClientConfig::default(), &stack.gateway.url, None, era).await;
        let pages = tool_pages(&client).await;
        assert_complete(&pages, &gateway_tools(), DEFAULT_PAGE);
        client.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn prompts_resources_and_templates_are_paged_too() {
    let page = 7;
    let stack = start(3, &format!("[catalog]\npage_size = {page}\n")).await;
    let client = connect_as(
        ClientConfig::default(),
        &stack.gateway.url,
        None,
        Era::Modern,
    )
    .await;
    let peer = client.peer();

    let prompts = pages(|cursor| async move {
        let r = peer.list_prompts(params(cursor)).await.unwrap();
        (
            r.prompts.into_iter().map(|p| p.name).collect(),
            r.next_cursor,
        )
    })
    .await;
    let expected: Vec<_> = (0..OTHERS)
        .map(|i| format!("many__prompt_{i:02}"))
        .collect();
    assert_complete(&prompts, &expected, page);

    let resources = pages(|cursor| async move {
        let r = peer.list_resources(params(cursor)).await.unwrap();
        (
            r.resources.into_iter().map(|r| r.uri).collect(),
            r.next_cursor,
        )
    })
    .await;
    let expected: Vec<_> = (0..OTHERS)
        .map(|i| format!("many://resource/{i:02}"))
        .collect();
    assert_complete(&resources, &expected, page);

    let templates = pages(|cursor| async move {
        let r = peer.list_resource_templates(params(cursor)).await.unwrap();
        let uris = r.resource_templates.into_iter().map(|t| t.uri_template);
        (uris.collect(), r.next_cursor)
    })
    .await;
    let expected: Vec<_> = (0..OTHERS)
        .map(|i| format!("many://template/{i:02}/{{id}}"))
        .collect();
    assert_complete(&templates, &expected, page);

    // The three tools fit in one page: no cursor.
    let tools = peer.list_tools(None).await.unwrap();
    assert_eq!(tools.tools.len(), 3);
    assert_eq!(tools.next_cursor, None);
    client.cancel().await.unwrap();
}

/// The JSON-RPC error a listing answered, or a panic if it answered a page.
fn refusal<T: std::fmt::Debug>(answer: Result<T, ServiceError>) -> ErrorData {
    match answer {
        Err(ServiceError::McpError(e)) => e,
        other => panic!("expected a JSON-RPC error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cursor_the_gateway_did_not_issue_for_this_listing_is_refused_with_32602() {
    let stack = start(30, "[catalog]\npage_size = 10\n").await;
    for era in [Era::Legacy, Era::Modern] {
        let client = connect_as(ClientConfig::default(), &stack.gateway.url, None, era).await;
        let peer = client.peer();
        let first = peer.list_tools(None).await.unwrap();
        let good = first.next_cursor.expect("30 tools take three pages");
        // Changed in its middle (still base64), cut short, made up, and a tools cursor sent
        // to prompts/list.
        let mid = good.len() / 2;
        let flipped = if &good[mid..=mid] == "A" { "B" } else { "A" };
        let altered = format!("{}{flipped}{}", &good[..mid], &good[mid + 1..]);
        for bad in [altered.as_str(), &good[..good.len() - 3], "garbage!", "e30"] {
            let e = refusal(peer.list_tools(params(Some(bad.to_string()))).await);
            assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{era:?} {bad}: {e:?}");
            assert!(
                e.message.contains("list again without a cursor"),
                "{}",
                e.message
            );
        }
        let e = refusal(peer.list_prompts(params(Some(good.clone()))).await);
        assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{era:?}: {e:?}");
        // The genuine cursor still works.
        let second = peer.list_tools(params(Some(good))).await.unwrap();
        assert_eq!(second.tools[0].name, "many__tool_00010");
        client.cancel().await.unwrap();
    }
}

/// The official MCP Python SDK pages through the 10,000 tools in both eras: its legacy
/// mode (2025-11-25) and its automatic mode (which picks 2026-07-28).
#[tokio::test(flavor = "multi_thread")]
async fn the_python_sdk_pages_through_ten_thousand_tools() {
    let Some(peers) = python_peers() else {
        return;
    };
    let stack = start(TOOLS, "").await;
    // The peers' client script makes the SDK's venv on its first use.
    let url = stack.gateway.url.clone();
    let info =
        tokio::task::spawn_blocking(move || portcullis_e2e::python_client(&peers, &url, &["info"]))
            .await
            .unwrap()
            .unwrap();
    assert_eq!(info["ok"], true, "{info}");
    let cache = std::env::var("PEERS_CACHE").unwrap_or_else(|_| "/tmp/peers-cache".into());
    let python = Path::new(&cache).join("mcp/venv/bin/python");
    let script = portcullis_e2e::repo_root().join("tests/py/list_pages.py");
    for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let out = tokio::process::Command::new(&python)
            .arg(&script)
            .arg(&stack.gateway.url)
            .arg(mode)
            .stderr(std::process::Stdio::inherit())
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", python.display()));
        let text = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = text
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).unwrap())
            .unwrap_or_else(|| panic!("no report from list_pages.py ({mode}): {text}"));
        assert_eq!(report["ok"], true, "{mode}: {report}");
        let pages: Vec<Vec<String>> = serde_json::from_value(report["pages"].clone()).unwrap();
        assert_eq!(report["protocol_version"], version, "{mode}");
        assert_complete(&pages, &gateway_tools(), DEFAULT_PAGE);
    }
}

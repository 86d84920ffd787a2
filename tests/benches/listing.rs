//! Listing a large catalog through the real gateway: 100 `[openapi]` targets of 100 operations
//! each (10,000 tools, plus the gateway's `search_tools`), generated as specification files so
//! that the startup also covers the OpenAPI loader. Three configurations of the same catalog:
//! no inbound authentication; the dev IdP's JWTs; the dev IdP's JWTs and a small Cedar policy
//! set, which hides some tools from the caller and so decides every tool of every listing.
//!
//! For each it measures the time from starting the process to `portcullis ready:`, the
//! gateway's resident memory (`VmRSS`) after that and at the end, full `tools/list` walks
//! (every page, following `nextCursor`) in both protocol eras, each page on its own, and calls
//! of `search_tools`. The targets' `base_url` is a closed loopback port: listing and searching
//! never call an API.
//!
//! It prints the figures and asserts nothing about them. It does assert that every walk
//! returns each tool the caller may see exactly once, and that a search returns only such
//! tools: a fast listing that is wrong measures nothing.
//!
//! Run: `cargo bench -p portcullis-e2e --bench listing` (release build; loopback only). Quick
//! mode, for CI (5 targets × 20 tools, 2 walks, any build): `PORTCULLIS_BENCH_QUICK=1` or
//! `-- --quick`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on setup failures

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use portcullis_e2e::{ClosedPort, Era, Gateway, Serve, call_tool, connect_as, write_config};
use rmcp::model::{ClientConfig, PaginatedRequestParams};
use rmcp::service::{ClientCacheConfig, RoleClient, RunningService};
use serde_json::{Value, json};

/// How much is generated and how often each thing is timed.
struct Size {
    targets: usize,
    /// Per target; a multiple of 5 (each resource has five operations).
    tools: usize,
    /// Timed full walks per protocol era, after one untimed walk.
    walks: usize,
    /// Timed `search_tools` calls per protocol era, after the first one.
    searches: usize,
    /// `[catalog] page_size`: the default in the full run; small in quick mode, so that the
    /// check covers following cursors.
    page_size: usize,
}

const FULL: Size = Size {
    targets: 100,
    tools: 100,
    walks: 20,
    searches: 100,
    page_size: 500,
};

/// Quick mode only proves that the benchmark runs and that the listing is right.
const QUICK: Size = Size {
    targets: 5,
    tools: 20,
    walks: 2,
    searches: 3,
    page_size: 30,
};

/// The target the policy set hides from the benchmark's caller (present in both sizes).
const HIDDEN_TARGET: &str = "t003";

/// The policy set of the third configuration. The caller (user `bench`, group `staff`, agent
/// `bench-agent`) sees every tool but the deletes and target t003; the other rules match
/// other callers, or read the arguments (which never hides a tool), but are weighed all the
/// same.
const POLICIES: &str = r#"
@id("staff")
permit(principal, action in Action::"CallTool", resource)
when { principal.groups.contains("staff") };

@id("ops-on-t001")
permit(principal, action in Action::"CallTool", resource in Target::"t001")
when { principal.groups.contains("ops") };

@id("agents-never-delete")
forbid(principal, action in Action::"CallTool", resource)
when { context.agent == Agent::"bench-agent" && resource.name like "delete_*" };

@id("t003-admins-only")
forbid(principal, action in Action::"CallTool", resource in Target::"t003")
unless { principal.groups.contains("admins") };

@id("ci-read-only")
forbid(principal, action in Action::"CallTool", resource)
when { context.agent == Agent::"ci-bot" && !resource.read_only };

@id("small-pages-on-t000")
forbid(principal, action == Action::"t000__list_widgets", resource)
when { context.input has limit && context.input.limit > 50 };

@id("no-foreign-issuer")
forbid(principal, action in Action::"CallTool", resource)
when { principal.issuer == "https://login.example.com/" };
"#;

/// Resources an API may hold (singular, plural); target `i` takes `tools / 5` of them.
const RESOURCES: [(&str, &str); 40] = [
    ("widget", "widgets"),
    ("order", "orders"),
    ("invoice", "invoices"),
    ("customer", "customers"),
    ("shipment", "shipments"),
    ("ticket", "tickets"),
    ("project", "projects"),
    ("repository", "repositories"),
    ("build", "builds"),
    ("deployment", "deployments"),
    ("user", "users"),
    ("team", "teams"),
    ("payment", "payments"),
    ("refund", "refunds"),
    ("subscription", "subscriptions"),
    ("product", "products"),
    ("warehouse", "warehouses"),
    ("supplier", "suppliers"),
    ("contract", "contracts"),
    ("document", "documents"),
    ("report", "reports"),
    ("alert", "alerts"),
    ("incident", "incidents"),
    ("runbook", "runbooks"),
    ("dashboard", "dashboards"),
    ("metric", "metrics"),
    ("campaign", "campaigns"),
    ("lead", "leads"),
    ("contact", "contacts"),
    ("meeting", "meetings"),
    ("calendar", "calendars"),
    ("task", "tasks"),
    ("comment", "comments"),
    ("label", "labels"),
    ("release", "releases"),
    ("artifact", "artifacts"),
    ("secret", "secrets"),
    ("webhook", "webhooks"),
    ("invitation", "invitations"),
    ("note", "notes"),
];

const DOMAINS: [&str; 20] = [
    "billing",
    "inventory",
    "sales",
    "support",
    "engineering",
    "operations",
    "marketing",
    "finance",
    "logistics",
    "security",
    "analytics",
    "procurement",
    "legal",
    "people",
    "facilities",
    "compliance",
    "design",
    "research",
    "partners",
    "training",
];

const QUERIES: [&str; 10] = [
    "refund a payment to a customer",
    "list open incidents",
    "create a deployment of a release",
    "delete a webhook",
    "update the status of a shipment",
    "find invoices for a customer",
    "archive a project",
    "add a comment to a ticket",
    "show dashboard metrics",
    "invite a user to a team",
];

/// One generated target: its name, its specification and the tools it makes.
struct Api {
    name: String,
    spec: String,
    /// Upstream tool names (the operationIds).
    tools: Vec<String>,
}

fn capitalised(word: &str) -> String {
    let mut chars = word.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Target `i`'s OpenAPI 3.0 specification (JSON): per resource a list (query parameters and
/// a header), a get (path parameter, an array query parameter), a create and an update (JSON
/// bodies by `$ref`) and a delete.
fn api(i: usize, size: &Size) -> Api {
    assert!(
        size.tools.is_multiple_of(5),
        "tools per target must be a multiple of 5"
    );
    let domain = DOMAINS[i % DOMAINS.len()];
    let mut paths = serde_json::Map::new();
    let mut schemas = serde_json::Map::new();
    let mut tools = Vec::new();
    schemas.insert(
        "Owner".into(),
        json!({
            "type": "object",
            "description": "The person or team responsible.",
            "properties": {
                "id": {"type": "string", "description": "The owner's id."},
                "email": {"type": "string", "format": "email"}
            },
            "required": ["id"]
        }),
    );
    for k in 0..size.tools / 5 {
        let (one, many) = RESOURCES[(i * 7 + k) % RESOURCES.len()];
        let kind = capitalised(one);
        schemas.insert(
            format!("{kind}Input"),
            json!({
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 200, "description": format!("The {one}'s display name.")},
                    "description": {"type": "string", "description": "Free text, Markdown allowed."},
                    "status": {"type": "string", "enum": ["active", "archived", "draft"]},
                    "quantity": {"type": "integer", "minimum": 0},
                    "price": {"type": "number", "description": "In the account's currency."},
                    "tags": {"type": "array", "items": {"type": "string"}},
                    "owner": {"$ref": "#/components/schemas/Owner"},
                    "metadata": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "required": ["name"]
            }),
        );
        schemas.insert(
            kind.clone(),
            json!({
                "allOf": [
                    {"$ref": format!("#/components/schemas/{kind}Input")},
                    {"type": "object", "properties": {
                        "id": {"type": "string"},
                        "created_at": {"type": "string", "format": "date-time"}
                    }}
                ]
            }),
        );
        let one_ref = json!({"$ref": format!("#/components/schemas/{kind}")});
        let body = json!({
            "required": true,
            "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{kind}Input")}}}
        });
        let id = json!({
            "name": "id", "in": "path", "required": true,
            "description": format!("The {one}'s id."),
            "schema": {"type": "string"}
        });
        let ok = |schema: Value| json!({"200": {"description": "OK", "content": {"application/json": {"schema": schema}}}});
        paths.insert(
            format!("/{many}"),
            json!({
                "get": {
                    "operationId": format!("list_{many}"),
                    "tags": [many],
                    "summary": format!("List {many}"),
                    "description": format!("Returns the {many} of the {domain} service, newest first, a page at a time. Filter by status or by a free-text query."),
                    "parameters": [
                        {"name": "limit", "in": "query", "description": "Items per page.", "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}},
                        {"name": "cursor", "in": "query", "description": "From the previous page's `next`.", "schema": {"type": "string"}},
                        {"name": "status", "in": "query", "schema": {"type": "string", "enum": ["active", "archived", "draft"]}},
                        {"name": "q", "in": "query", "description": "Words to look for.", "schema": {"type": "string"}},
                        {"name": "X-Request-Id", "in": "header", "schema": {"type": "string"}}
                    ],
                    "responses": ok(json!({"type": "array", "items": one_ref}))
                },
                "post": {
                    "operationId": format!("create_{one}"),
                    "tags": [many],
                    "summary": format!("Create a {one}"),
                    "description": format!("Adds a {one} to the {domain} service and returns it with its id."),
                    "requestBody": body,
                    "responses": ok(one_ref.clone())
                }
            }),
        );
        paths.insert(
            format!("/{many}/{{id}}"),
            json!({
                "get": {
                    "operationId": format!("get_{one}"),
                    "tags": [many],
                    "summary": format!("Get a {one}"),
                    "description": format!("One {one} of the {domain} service by its id."),
                    "parameters": [
                        id,
                        {"name": "expand", "in": "query", "style": "form", "explode": false,
                         "description": "Related records to include.",
                         "schema": {"type": "array", "items": {"type": "string", "enum": ["owner", "history"]}}}
                    ],
                    "responses": ok(one_ref.clone())
                },
                "patch": {
                    "operationId": format!("update_{one}"),
                    "tags": [many],
                    "summary": format!("Update a {one}"),
                    "description": format!("Changes the given fields of a {one}; the others keep their values."),
                    "parameters": [id],
                    "requestBody": body,
                    "responses": ok(one_ref)
                },
                "delete": {
                    "operationId": format!("delete_{one}"),
                    "tags": [many],
                    "summary": format!("Delete a {one}"),
                    "description": format!("Removes a {one} for good. Archive it instead to keep its history."),
                    "parameters": [
                        id,
                        {"name": "force", "in": "query", "description": "Delete even if other records refer to it.", "schema": {"type": "boolean"}}
                    ],
                    "responses": {"204": {"description": "Deleted"}}
                }
            }),
        );
        tools.extend([
            format!("list_{many}"),
            format!("create_{one}"),
            format!("get_{one}"),
            format!("update_{one}"),
            format!("delete_{one}"),
        ]);
    }
    let spec = json!({
        "openapi": "3.0.3",
        "info": {
            "title": format!("Acme {} API {i}", capitalised(domain)),
            "version": "1.4.0",
            "description": format!("The {domain} service's records.")
        },
        "servers": [{"url": "https://api.example.com/v1"}],
        "paths": paths,
        "components": {"schemas": schemas}
    });
    Api {
        name: format!("t{i:03}"),
        spec: serde_json::to_string_pretty(&spec).unwrap(),
        tools,
    }
}

/// One configuration of the same catalog.
struct Setup {
    label: &'static str,
    /// How `gateway.toml` says who may call.
    inbound: &'static str,
    /// `dev-token` arguments, for a gateway that authenticates.
    token: Option<&'static [&'static str]>,
    policies: bool,
}

const SETUPS: [Setup; 3] = [
    Setup {
        label: "no auth, no policies",
        inbound: "[inbound]\nmode = \"none\"\n",
        token: None,
        policies: false,
    },
    Setup {
        label: "dev JWT, no policies",
        inbound: "[dev_idp]\n",
        token: Some(&[
            "--user",
            "bench",
            "--agent",
            "bench-agent",
            "--group",
            "staff",
        ]),
        policies: false,
    },
    Setup {
        label: "dev JWT + 7 Cedar policies",
        inbound: "[dev_idp]\n",
        token: Some(&[
            "--user",
            "bench",
            "--agent",
            "bench-agent",
            "--group",
            "staff",
        ]),
        policies: true,
    },
];

/// The tools the caller of `setup` may see: every one, or for the policy set all but the
/// deletes and the hidden target's; and the search tool.
fn visible(apis: &[Api], setup: &Setup) -> Vec<String> {
    let mut names: Vec<String> = apis
        .iter()
        .filter(|a| !(setup.policies && a.name == HIDDEN_TARGET))
        .flat_map(|a| {
            a.tools
                .iter()
                .filter(|t| !(setup.policies && t.starts_with("delete_")))
                .map(|t| format!("{}__{t}", a.name))
        })
        .chain(["search_tools".to_string()])
        .collect();
    names.sort();
    names
}

/// The gateway's resident memory in MiB, from `/proc/PID/status` (Linux only).
fn rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}

type Client = RunningService<RoleClient, ClientConfig>;

/// A client whose response cache is off, so that every walk is answered by the gateway.
async fn client(url: &str, token: Option<&str>, era: Era) -> Client {
    let c = connect_as(ClientConfig::default(), url, token, era).await;
    c.peer()
        .set_response_cache_config(ClientCacheConfig::disabled())
        .await;
    c
}

/// One full `tools/list`, page by page: the names in order, the whole walk's time (the sum
/// of the pages') and each page's. With `count_bytes`, also the size of the tools as JSON,
/// measured after each page's time is taken.
async fn walk(c: &Client, count_bytes: bool) -> (Vec<String>, Duration, Vec<Duration>, usize) {
    let mut names = Vec::new();
    let mut pages = Vec::new();
    let mut bytes = 0;
    let mut cursor = None;
    loop {
        let asked = Instant::now();
        let page = c
            .peer()
            .list_tools(Some(PaginatedRequestParams::default().with_cursor(cursor)))
            .await
            .expect("tools/list answers");
        pages.push(asked.elapsed());
        if count_bytes {
            bytes += serde_json::to_vec(&page.tools).map_or(0, |b| b.len());
        }
        names.extend(page.tools.into_iter().map(|t| t.name.into_owned()));
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    (names, pages.iter().sum(), pages, bytes)
}

/// Fails the run unless `names` holds each expected tool exactly once.
fn check_walk(mut names: Vec<String>, expected: &[String], what: &str) {
    let listed = names.len();
    names.sort();
    if names == expected {
        return;
    }
    let mut seen = BTreeSet::new();
    let twice: Vec<&String> = names.iter().filter(|n| !seen.insert(*n)).collect();
    let wanted: BTreeSet<&String> = expected.iter().collect();
    let missing: Vec<&&String> = wanted.difference(&seen).take(5).collect();
    let extra: Vec<&&String> = seen.difference(&wanted).take(5).collect();
    panic!(
        "{what}: the walk listed {listed} tools where {} were expected, each once; \
         listed twice: {twice:?}; missing (first 5): {missing:?}; not expected (first 5): {extra:?}",
        expected.len()
    );
}

/// One `search_tools` call, timed; fails the run if it errs or returns a tool the caller may
/// not see.
async fn search(c: &Client, query: &str, visible: &BTreeSet<&str>) -> Duration {
    let started = Instant::now();
    let result = call_tool(c, "search_tools", json!({"query": query}))
        .await
        .expect("search_tools answers");
    let took = started.elapsed();
    assert_ne!(
        result.is_error,
        Some(true),
        "search_tools failed: {result:?}"
    );
    let found = result
        .structured_content
        .as_ref()
        .and_then(|s| s["tools"].as_array())
        .expect("search_tools returns {\"tools\": […]}");
    assert!(
        !found.is_empty(),
        "search_tools found nothing for `{query}`"
    );
    for tool in found {
        let name = tool["name"].as_str().unwrap_or_default();
        assert!(
            visible.contains(name),
            "search_tools returned `{name}` for `{query}`, a tool this caller may not list"
        );
    }
    took
}

/// Nearest-rank percentile, in milliseconds.
fn ms(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort();
    samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e3
}

fn mib(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |m| format!("{m:.0} MiB"))
}

/// What one configuration measured.
struct Run {
    label: &'static str,
    visible: usize,
    /// The listed tools as JSON (all pages).
    listing_bytes: usize,
    ready: Duration,
    rss_ready: Option<f64>,
    rss_end: Option<f64>,
    /// The first walk and the first search after the start (Legacy era).
    cold_walk: Duration,
    cold_search: Duration,
    eras: Vec<EraRun>,
}

struct EraRun {
    era: Era,
    pages: usize,
    walks: Vec<Duration>,
    pages_each: Vec<Duration>,
    searches: Vec<Duration>,
}

async fn measure(setup: &Setup, apis: &[Api], closed: &ClosedPort, size: &Size) -> Run {
    let targets: Vec<(&str, String)> = apis
        .iter()
        .map(|a| {
            (
                a.name.as_str(),
                format!(
                    "[openapi]\nspec = \"../specs/{}.json\"\nbase_url = \"{}\"\n",
                    a.name,
                    closed.url("/v1")
                ),
            )
        })
        .collect();
    let mut gateway_toml = format!(
        "{}\n[catalog]\nsearch_tool = true\npage_size = {}\n",
        setup.inbound, size.page_size
    );
    if setup.policies {
        gateway_toml.push_str("\n[policies]\ndir = \"policies\"\n");
    }
    let dir = write_config(&gateway_toml, &targets).unwrap();
    std::fs::create_dir(dir.path().join("specs")).unwrap();
    for a in apis {
        std::fs::write(
            dir.path().join("specs").join(format!("{}.json", a.name)),
            &a.spec,
        )
        .unwrap();
    }
    if setup.policies {
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies").join("bench.cedar"), POLICIES).unwrap();
    }

    // The log (with an audit line per search) goes to a file; it is printed if the start fails.
    let log_file = Some(dir.path().join("gateway.log"));
    let (gw, ready) = tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let gw = Gateway::serve(
            dir,
            &Serve {
                log_file,
                ..Serve::default()
            },
        )
        .unwrap();
        (gw, started.elapsed())
    })
    .await
    .unwrap();
    let rss_ready = rss_mib(gw.proc.pid());
    let token = setup.token.map(|args| gw.dev_token(args));
    let expected = visible(apis, setup);
    let expected_set: BTreeSet<&str> = expected.iter().map(String::as_str).collect();

    let first = client(&gw.url, token.as_deref(), Era::Legacy).await;
    let (names, cold_walk, _, _) = walk(&first, false).await;
    check_walk(names, &expected, setup.label);
    let cold_search = search(&first, QUERIES[0], &expected_set).await;
    drop(first);

    let mut eras = Vec::new();
    let mut listing_bytes = 0;
    for era in [Era::Legacy, Era::Modern] {
        let c = client(&gw.url, token.as_deref(), era).await;
        let what = format!("{} ({era:?})", setup.label);
        let (names, _, _, bytes) = walk(&c, true).await; // warm up this session
        check_walk(names, &expected, &what);
        listing_bytes = bytes;
        let mut run = EraRun {
            era,
            pages: 0,
            walks: Vec::new(),
            pages_each: Vec::new(),
            searches: Vec::new(),
        };
        for _ in 0..size.walks {
            let (names, took, pages, _) = walk(&c, false).await;
            check_walk(names, &expected, &what);
            run.pages = pages.len();
            run.walks.push(took);
            run.pages_each.extend(pages);
        }
        for query in QUERIES.iter().cycle().take(size.searches) {
            run.searches.push(search(&c, query, &expected_set).await);
        }
        eras.push(run);
    }
    Run {
        label: setup.label,
        visible: expected.len(),
        listing_bytes,
        ready,
        rss_ready,
        rss_end: rss_mib(gw.proc.pid()),
        cold_walk,
        cold_search,
        eras,
    }
}

fn report(runs: &mut [Run], size: &Size, quick: bool) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Listing {} targets × {} tools ([openapi] specification files; page_size {}){}",
        size.targets,
        size.tools,
        size.page_size,
        if quick {
            " (QUICK MODE: too few samples to quote)"
        } else {
            ""
        }
    );
    out.push_str(
        "\n| configuration | tools listed | listing JSON | start → ready | RSS ready | RSS at end | first walk | first search |\n\
         |---|---|---|---|---|---|---|---|\n",
    );
    for r in runs.iter() {
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} MB | {:.2} s | {} | {} | {:.1} ms | {:.1} ms |",
            r.label,
            r.visible,
            r.listing_bytes as f64 / 1e6,
            r.ready.as_secs_f64(),
            mib(r.rss_ready),
            mib(r.rss_end),
            r.cold_walk.as_secs_f64() * 1e3,
            r.cold_search.as_secs_f64() * 1e3,
        );
    }
    let _ = writeln!(
        out,
        "\nWarm, per protocol era ({} walks, {} searches each); p50 / p90 / max in ms:\n\n\
         | configuration | era | pages | full walk | one page | search_tools |\n\
         |---|---|---|---|---|---|",
        size.walks, size.searches
    );
    for r in runs.iter_mut() {
        for e in &mut r.eras {
            let cell = |s: &mut Vec<Duration>| {
                format!("{:.1} / {:.1} / {:.1}", ms(s, 0.5), ms(s, 0.9), ms(s, 1.0))
            };
            let walks = cell(&mut e.walks);
            let pages = cell(&mut e.pages_each);
            let searches = cell(&mut e.searches);
            let _ = writeln!(
                out,
                "| {} | {:?} | {} | {walks} | {pages} | {searches} |",
                r.label, e.era, e.pages
            );
        }
    }
    out
}

#[tokio::main]
async fn main() {
    let quick = std::env::var("PORTCULLIS_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick");
    let size = if quick { QUICK } else { FULL };
    // Build (or find) the binary before anything is timed.
    tokio::task::spawn_blocking(|| portcullis_e2e::binary("portcullis", "portcullis"))
        .await
        .unwrap();

    let apis: Vec<Api> = (0..size.targets).map(|i| api(i, &size)).collect();
    let closed = ClosedPort::reserve();
    let mut runs = Vec::new();
    for setup in &SETUPS {
        eprintln!("listing benchmark: {}", setup.label);
        runs.push(measure(setup, &apis, &closed, &size).await);
    }
    print!("{}", report(&mut runs, &size, quick));
}

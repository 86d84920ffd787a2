//! `[openapi]` and `[http]` targets end to end: the real gateway in front of a recording HTTP
//! API (a small pet store played by this test) that keeps every request it receives — method,
//! raw path, raw query, headers, body — so each test asserts exactly what a tool call sent:
//! the path with its values escaped, the query by the parameter's style, header parameters,
//! the JSON body, the target's credential in every outbound mode, and never the caller's own
//! token. Specifications come from a file, from a URL served by the test, or from the target
//! file's `[tools.NAME]`; broken ones are refused by `portcullis check`, naming the spot.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use portcullis_e2e::exchanging_as::{
    AUDIENCE, AuthServer, CLIENT_ID, CLIENT_SECRET, RESOURCE, basic,
};
use portcullis_e2e::web::Browser;
use portcullis_e2e::{
    Era, Gateway, Idp, McpClient, MockServer, Serve, call_tool, connect, connect_as,
    eventually_async, jwt_claims, mcp_error, peers, readyz, repo_root, result_text, run_portcullis,
    tool_text, write_config,
};
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, Tool};
use serde_json::{Value, json};
use tokio::sync::watch;

const WITHIN: Duration = Duration::from_secs(20);
/// `max_response_bytes` of the pet store targets: the inventory and order answers are larger.
const LIMIT: usize = 4096;
const SECRET_ENV: &str = "PORTCULLIS_E2E_REST_EXCHANGE_SECRET";

// ---------------------------------------------------------------------------------------------
// The recording API.

/// One HTTP request the API received from the gateway.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    /// The raw (still percent-encoded) path.
    path: String,
    /// The raw query string, if any.
    query: Option<String>,
    /// Every header as sent (names lower-case), repeated names kept.
    headers: Vec<(String, String)>,
    body: String,
}

impl Seen {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The single value of header `name`; fails the test when absent or repeated.
    fn header(&self, name: &str) -> &str {
        match self.header_values(name)[..] {
            [one] => one,
            ref other => panic!(
                "{} {}: header `{name}` is {other:?}",
                self.method, self.path
            ),
        }
    }

    fn query_pairs(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("the body is not JSON ({e}): {}", self.body))
    }

    /// Whether `secret` appears anywhere in the request: path, query, any header or the body.
    fn carries(&self, secret: &str) -> bool {
        self.path.contains(secret)
            || self.query.as_deref().unwrap_or("").contains(secret)
            || self.headers.iter().any(|(_, v)| v.contains(secret))
            || self.body.contains(secret)
    }
}

#[derive(Clone, Default)]
struct ApiState {
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Answer this many of the next requests with 401 (a credential the API refuses).
    refuse: Arc<AtomicUsize>,
}

/// The pet store's answers, by method and raw path (under `/api/v3`), and the other APIs':
/// POST echoes its body; `/acme/…` and `/svc/…` answer `{"ok": true}` for a GET.
fn answer(method: &str, path: &str, body: Bytes) -> Response {
    let json_body = |v: Value| axum::Json(v).into_response();
    let pets = json!([
        {"id": 1, "name": "Rex", "status": "sold", "photoUrls": []},
        {"id": 2, "name": "Tom", "status": "sold", "photoUrls": []},
    ]);
    match (method, path) {
        ("POST" | "PUT" | "PATCH", _) => {
            ([(header::CONTENT_TYPE, "application/json")], body).into_response()
        }
        ("DELETE", _) => StatusCode::OK.into_response(),
        ("GET", "/api/v3/pet/findByStatus" | "/api/v3/pet/findByTags") => json_body(pets),
        ("GET", "/api/v3/pet/404") => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "application/json")],
            NOT_FOUND_BODY,
        )
            .into_response(),
        // Too large, with a Content-Length.
        ("GET", "/api/v3/store/inventory") => json_body(json!({ "sold": "x".repeat(2 * LIMIT) })),
        // Too large, streamed in chunks without a Content-Length.
        ("GET", p) if p.starts_with("/api/v3/store/order/") => {
            let chunks =
                (0..8).map(|_| Ok::<_, std::io::Error>(Bytes::from(vec![b' '; LIMIT / 2])));
            Response::builder()
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(futures::stream::iter(chunks)))
                .unwrap()
        }
        ("GET", p) if p.starts_with("/api/v3/pet/") => {
            let id: i64 = p["/api/v3/pet/".len()..].parse().unwrap_or(-1);
            json_body(json!({"id": id, "name": "Rex", "status": "available", "photoUrls": []}))
        }
        ("GET", p) if p.starts_with("/api/v3/user/") => {
            json_body(json!({"username": &p["/api/v3/user/".len()..]}))
        }
        _ => json_body(json!({"ok": true})),
    }
}

const NOT_FOUND_BODY: &str = r#"{"code":404,"message":"Pet not found"}"#;

async fn record(State(st): State<ApiState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1024 * 1024).await.unwrap();
    st.seen.lock().unwrap().push(Seen {
        method: parts.method.to_string(),
        path: parts.uri.path().to_string(),
        query: parts.uri.query().map(str::to_string),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| {
                let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
                (n.as_str().to_string(), v)
            })
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let refused = st
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    if refused {
        return (StatusCode::UNAUTHORIZED, r#"{"error":"invalid_token"}"#).into_response();
    }
    answer(parts.method.as_str(), parts.uri.path(), body)
}

/// The recording API on a loopback port; it also serves the pet store's specification at
/// `/specs/petstore.yaml` (once [`RecordingApi::release_spec`] was called, with a relative
/// server `/api/v3`) and answers 404 at `/specs/missing.yaml`. Spec requests are not recorded.
struct RecordingApi {
    server: MockServer,
    state: ApiState,
    release: watch::Sender<bool>,
}

impl RecordingApi {
    async fn start() -> Self {
        let state = ApiState::default();
        let (release, released) = watch::channel(false);
        let spec = petstore_spec().replace("https://petstore3.swagger.io/api/v3", "/api/v3");
        let serve_spec = move || {
            let mut released = released.clone();
            let spec = spec.clone();
            async move {
                let _ = released.wait_for(|r| *r).await;
                ([(header::CONTENT_TYPE, "application/yaml")], spec)
            }
        };
        let app = axum::Router::new()
            .route("/specs/petstore.yaml", axum::routing::get(serve_spec))
            .route(
                "/specs/missing.yaml",
                axum::routing::get(|| async { (StatusCode::NOT_FOUND, "no such specification") }),
            )
            .fallback(record)
            .with_state(state.clone());
        Self {
            server: MockServer::start(app).await,
            state,
            release,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }

    /// The requests recorded since `from` (a count of [`RecordingApi::seen`]).
    fn since(&self, from: usize) -> Vec<Seen> {
        self.seen()[from..].to_vec()
    }

    fn count(&self) -> usize {
        self.state.seen.lock().unwrap().len()
    }

    fn refuse_next(&self, n: usize) {
        self.state.refuse.store(n, Ordering::SeqCst);
    }

    fn release_spec(&self) {
        self.release.send_replace(true);
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers.

fn petstore_path() -> PathBuf {
    repo_root().join("gateway/tests/fixtures/openapi/petstore3.yaml")
}

fn petstore_spec() -> String {
    std::fs::read_to_string(petstore_path()).unwrap()
}

/// An `[openapi]` target on the pet store fixture, sent to the recorder, plus `extra`.
fn petstore_target(api: &RecordingApi, extra: &str) -> String {
    format!(
        "[openapi]\nspec = {}\nbase_url = \"{}\"\nmax_response_bytes = {LIMIT}\n\n{extra}",
        toml_str(&petstore_path().display().to_string()),
        api.url("/api/v3"),
    )
}

fn toml_str(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

async fn start(gateway_toml: &str, targets: Vec<(&'static str, String)>) -> Gateway {
    start_with_env(gateway_toml, targets, vec![]).await
}

async fn start_with_env(
    gateway_toml: &str,
    targets: Vec<(&'static str, String)>,
    env: Vec<(&'static str, &'static str)>,
) -> Gateway {
    let toml = gateway_toml.to_string();
    tokio::task::spawn_blocking(move || Gateway::start_with_env(&toml, &targets, &env))
        .await
        .unwrap()
        .expect("the gateway starts")
}

async fn call(client: &McpClient, tool: &str, args: Value) -> CallToolResult {
    call_tool(client, tool, args)
        .await
        .unwrap_or_else(|e| panic!("{tool}: the call is answered with a result: {e}"))
}

async fn tools(client: &McpClient) -> Vec<Tool> {
    client
        .peer()
        .list_all_tools()
        .await
        .expect("tools/list answers")
}

fn error_text(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a tool error: {r:?}");
    result_text(r)
}

/// The one request a call sent, with `method` and raw `path`.
fn only(seen: &[Seen], method: &str, path: &str) -> Seen {
    assert_eq!(seen.len(), 1, "one request expected: {seen:#?}");
    let s = seen[0].clone();
    assert_eq!(
        (s.method.as_str(), s.path.as_str()),
        (method, path),
        "{s:#?}"
    );
    s
}

/// The Bearer token of a request's `Authorization` header.
fn bearer(s: &Seen) -> String {
    s.header("authorization")
        .strip_prefix("Bearer ")
        .unwrap_or_else(|| panic!("not a Bearer credential: {s:#?}"))
        .to_string()
}

// ---------------------------------------------------------------------------------------------
// 1. The pet store from its specification file.

#[tokio::test(flavor = "multi_thread")]
async fn petstore_operations_become_tools_whose_calls_reach_the_api_exactly() {
    let api = RecordingApi::start().await;
    let target = petstore_target(&api, "[openapi.headers]\nX-Api-Version = \"3\"\n");
    let gw = start("[dev_idp]\n", vec![("petstore", target)]).await;
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect(&gw.url, Some(&token)).await;

    // Every operation with a JSON (or no) body is a tool; uploadFile sends octet-stream.
    let listed = tools(&client).await;
    let mut names: Vec<&str> = listed.iter().map(|t| t.name.as_ref()).collect();
    names.sort_unstable();
    let mut want: Vec<String> = [
        "addPet",
        "createUser",
        "createUsersWithListInput",
        "deleteOrder",
        "deletePet",
        "deleteUser",
        "findPetsByStatus",
        "findPetsByTags",
        "getInventory",
        "getOrderById",
        "getPetById",
        "getUserByName",
        "loginUser",
        "logoutUser",
        "placeOrder",
        "updatePet",
        "updatePetWithForm",
        "updateUser",
    ]
    .iter()
    .map(|n| format!("petstore__{n}"))
    .collect();
    want.sort_unstable();
    assert_eq!(names, want);
    let hints = |name: &str| {
        let t = listed.iter().find(|t| t.name == name).unwrap();
        let a = t.annotations.clone().unwrap_or_default();
        (a.read_only_hint, a.destructive_hint)
    };
    assert_eq!(hints("petstore__getPetById"), (Some(true), None));
    assert_eq!(hints("petstore__deletePet"), (None, Some(true)));
    assert_eq!(hints("petstore__addPet"), (None, None));
    assert!(api.seen().is_empty(), "listing sends nothing to the API");

    // A path parameter; a JSON object answer is the structured result.
    let r = call(&client, "petstore__getPetById", json!({"petId": 7})).await;
    let s = only(&api.since(0), "GET", "/api/v3/pet/7");
    assert_eq!(s.query, None);
    assert_eq!(s.body, "");
    assert_eq!(s.header("x-api-version"), "3");
    assert_eq!(
        r.structured_content,
        Some(json!({"id": 7, "name": "Rex", "status": "available", "photoUrls": []}))
    );
    assert_ne!(r.is_error, Some(true));

    // A string path value is escaped so it stays one segment.
    let n = api.count();
    let r = call(
        &client,
        "petstore__getUserByName",
        json!({"username": "ann smith/../admin?x=1#f"}),
    )
    .await;
    only(
        &api.since(n),
        "GET",
        "/api/v3/user/ann%20smith%2F..%2Fadmin%3Fx%3D1%23f",
    );
    assert_ne!(r.is_error, Some(true), "{r:?}");

    // A query parameter; a JSON array answer is wrapped as {"result": …}.
    let n = api.count();
    let r = call(
        &client,
        "petstore__findPetsByStatus",
        json!({"status": "sold"}),
    )
    .await;
    let s = only(&api.since(n), "GET", "/api/v3/pet/findByStatus");
    assert_eq!(s.query.as_deref(), Some("status=sold"));
    let pets = json!([
        {"id": 1, "name": "Rex", "status": "sold", "photoUrls": []},
        {"id": 2, "name": "Tom", "status": "sold", "photoUrls": []},
    ]);
    assert_eq!(r.structured_content, Some(json!({ "result": pets })));

    // An exploded array query parameter repeats its key; each value form-encoded.
    let n = api.count();
    call(
        &client,
        "petstore__findPetsByTags",
        json!({"tags": ["a b", "c&d=e"]}),
    )
    .await;
    let s = only(&api.since(n), "GET", "/api/v3/pet/findByTags");
    assert_eq!(s.query.as_deref(), Some("tags=a+b&tags=c%26d%3De"));
    assert_eq!(
        s.query_pairs(),
        [
            ("tags".into(), "a b".into()),
            ("tags".into(), "c&d=e".into())
        ]
    );

    // A JSON body.
    let pet = json!({"name": "Doggie", "photoUrls": ["https://img.test/d.png"], "status": "pending", "tags": [{"id": 3, "name": "good"}]});
    let n = api.count();
    let r = call(&client, "petstore__addPet", json!({"body": pet})).await;
    let s = only(&api.since(n), "POST", "/api/v3/pet");
    assert_eq!(s.header("content-type"), "application/json");
    assert_eq!(s.json(), pet);
    assert_eq!(r.structured_content, Some(pet.clone()));

    // A header parameter, and DELETE.
    let n = api.count();
    let r = call(
        &client,
        "petstore__deletePet",
        json!({"petId": 9, "api_key": "delete-key-5e1"}),
    )
    .await;
    let s = only(&api.since(n), "DELETE", "/api/v3/pet/9");
    assert_eq!(s.header("api_key"), "delete-key-5e1");
    assert_eq!(s.query, None);
    assert_eq!(
        tool_text(&r),
        "DELETE /api/v3/pet/9 answered HTTP 200 OK with no content"
    );

    // A non-2xx answer is a tool error with the status and the body.
    let r = call(&client, "petstore__getPetById", json!({"petId": 404})).await;
    assert_eq!(
        error_text(&r),
        format!("GET /api/v3/pet/404 answered HTTP 404 Not Found: {NOT_FOUND_BODY}")
    );

    // Answers over max_response_bytes, with a Content-Length and streamed, are tool errors.
    let r = call(&client, "petstore__getInventory", json!({})).await;
    assert!(
        error_text(&r).starts_with(&format!(
            "GET /api/v3/store/inventory answered with more than {LIMIT} bytes"
        )),
        "{r:?}"
    );
    let r = call(&client, "petstore__getOrderById", json!({"orderId": 3})).await;
    assert!(
        error_text(&r).starts_with(&format!(
            "GET /api/v3/store/order/3 answered with more than {LIMIT} bytes"
        )),
        "{r:?}"
    );

    // A missing required argument is the caller's to fix, and nothing is sent.
    let n = api.count();
    let r = call(&client, "petstore__getPetById", json!({})).await;
    assert_eq!(
        error_text(&r),
        "argument `petId` is required (the path parameter `petId`)"
    );
    let r = call(&client, "petstore__addPet", json!({})).await;
    assert!(error_text(&r).contains("`body`"), "{r:?}");
    assert_eq!(
        api.count(),
        n,
        "no request for a call with missing arguments"
    );

    // Mode `none`: a 401 is the API's answer, not retried.
    api.refuse_next(1);
    let r = call(&client, "petstore__getPetById", json!({"petId": 1})).await;
    assert!(
        error_text(&r).starts_with("GET /api/v3/pet/1 answered HTTP 401 Unauthorized"),
        "{r:?}"
    );
    assert_eq!(
        api.count(),
        n + 1,
        "one request, no retry without a credential"
    );

    // No credential, and the caller's token never reached the API.
    for s in api.seen() {
        assert!(s.header_values("authorization").is_empty(), "{s:#?}");
        assert!(
            !s.carries(&token),
            "the caller's token reached the API: {s:#?}"
        );
    }
    client.cancel().await.ok();
}

// ---------------------------------------------------------------------------------------------
// 2. Outbound credentials.

#[tokio::test(flavor = "multi_thread")]
async fn api_keys_go_in_the_configured_header_or_query_and_the_callers_token_nowhere() {
    let api = RecordingApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let header_key = dir.path().join("header.key");
    std::fs::write(&header_key, "hdr-key-81c2\n").unwrap();
    let query_key = dir.path().join("query.key");
    // Characters a query value must escape: the API must decode exactly the key.
    std::fs::write(&query_key, "q k/1&x=2\n").unwrap();
    let in_header = petstore_target(
        &api,
        &format!(
            "[auth]\nmode = \"api_key\"\nkey = {}\nheader = \"X-Api-Key\"\nprefix = \"Key \"\n",
            toml_str(&format!("file:{}", header_key.display()))
        ),
    );
    let in_query = petstore_target(
        &api,
        &format!(
            "[auth]\nmode = \"api_key\"\nkey = {}\nquery = \"key\"\n",
            toml_str(&format!("file:{}", query_key.display()))
        ),
    );
    let gw = start("[dev_idp]\n", vec![("hdr", in_header), ("qry", in_query)]).await;
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect(&gw.url, Some(&token)).await;

    call(&client, "hdr__findPetsByStatus", json!({"status": "sold"})).await;
    let s = only(&api.since(0), "GET", "/api/v3/pet/findByStatus");
    assert_eq!(s.header("x-api-key"), "Key hdr-key-81c2");
    assert_eq!(s.query.as_deref(), Some("status=sold"));
    assert!(s.header_values("authorization").is_empty(), "{s:#?}");

    let n = api.count();
    call(&client, "qry__findPetsByStatus", json!({"status": "sold"})).await;
    let s = only(&api.since(n), "GET", "/api/v3/pet/findByStatus");
    assert_eq!(
        s.query_pairs(),
        [
            ("status".into(), "sold".into()),
            ("key".into(), "q k/1&x=2".into())
        ]
    );
    assert!(
        s.header_values("authorization").is_empty() && s.header_values("x-api-key").is_empty(),
        "{s:#?}"
    );
    assert!(
        !s.headers.iter().any(|(_, v)| v.contains("q k/1")),
        "{s:#?}"
    );

    for s in api.seen() {
        assert!(
            !s.carries(&token),
            "the caller's token reached the API: {s:#?}"
        );
    }
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn client_credentials_send_an_idp_token_and_a_401_fetches_a_fresh_one() {
    let Some(peers) = peers() else { return };
    let idp = Idp::start(&peers).unwrap();
    let api = RecordingApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cc-secret");
    std::fs::write(&secret, "cc-client-secret").unwrap();
    let resource = api.url("/api/v3");
    let target = petstore_target(
        &api,
        &format!(
            "[auth]\nmode = \"oauth2_client_credentials\"\ntoken_url = \"{}/token\"\nclient_id = \"cc-client\"\nclient_secret = {}\nscopes = [\"mcp:read\"]\nresource = \"{resource}\"\n",
            idp.issuer,
            toml_str(&format!("file:{}", secret.display())),
        ),
    );
    let gw = start("[dev_idp]\n", vec![("petstore", target)]).await;
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect(&gw.url, Some(&token)).await;

    let r = call(&client, "petstore__getPetById", json!({"petId": 1})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let first = bearer(&only(&api.since(0), "GET", "/api/v3/pet/1"));
    let claims = jwt_claims(&first).unwrap();
    assert_eq!(claims["iss"], json!(idp.issuer), "{claims}");
    assert_eq!(claims["client_id"], "cc-client", "{claims}");
    let aud = &claims["aud"];
    assert!(
        aud == &json!(resource) || aud.as_array().is_some_and(|a| a.contains(&json!(resource))),
        "the token is for the API: {claims}"
    );

    // The API refuses the token once: the gateway drops it, gets a fresh one and retries.
    api.refuse_next(1);
    let n = api.count();
    let r = call(&client, "petstore__getPetById", json!({"petId": 2})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let seen = api.since(n);
    assert_eq!(
        seen.len(),
        2,
        "the refused request and its retry: {seen:#?}"
    );
    assert!(seen.iter().all(|s| s.path == "/api/v3/pet/2"));
    assert_eq!(bearer(&seen[0]), first, "the cached token was used first");
    let fresh = bearer(&seen[1]);
    assert_ne!(fresh, first, "the retry carries a new token");
    assert_eq!(jwt_claims(&fresh).unwrap()["iss"], json!(idp.issuer));

    for s in api.seen() {
        assert!(
            !s.carries(&token),
            "the caller's token reached the API: {s:#?}"
        );
    }
    client.cancel().await.ok();
}

#[tokio::test(flavor = "multi_thread")]
async fn token_exchange_sends_the_exchanged_token_and_a_401_exchanges_again() {
    let auth = AuthServer::start(basic()).await;
    let api = RecordingApi::start().await;
    let target = petstore_target(
        &api,
        &format!(
            "[auth]\nmode = \"token_exchange\"\ntoken_url = \"{}\"\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"env:{SECRET_ENV}\"\naudience = \"{AUDIENCE}\"\nresource = \"{RESOURCE}\"\nscopes = [\"orders:read\", \"orders:write\"]\n",
            auth.url("/token"),
        ),
    );
    let gw = start_with_env(
        "[dev_idp]\n",
        vec![("petstore", target)],
        vec![(SECRET_ENV, CLIENT_SECRET)],
    )
    .await;
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect(&gw.url, Some(&token)).await;

    let r = call(&client, "petstore__getPetById", json!({"petId": 1})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let s = only(&api.since(0), "GET", "/api/v3/pet/1");
    assert_eq!(s.header("authorization"), "Bearer exchanged-1");
    let exchanges = auth.requests();
    assert_eq!(exchanges.len(), 1);
    assert_eq!(exchanges[0].field("subject_token"), Some(token.as_str()));

    api.refuse_next(1);
    let n = api.count();
    let r = call(&client, "petstore__getPetById", json!({"petId": 2})).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    let seen = api.since(n);
    let bearers: Vec<&str> = seen.iter().map(|s| s.header("authorization")).collect();
    assert_eq!(bearers, ["Bearer exchanged-1", "Bearer exchanged-2"]);
    assert_eq!(
        auth.count(),
        2,
        "the refused token was exchanged again, once"
    );

    for s in api.seen() {
        assert!(
            !s.carries(&token),
            "the caller's token reached the API: {s:#?}"
        );
    }
    client.cancel().await.ok();
}

/// An OpenAPI 3.1 API whose one operation needs the demo provider's `tasks:write`.
const ACME_SPEC: &str = r#"openapi: 3.1.0
info:
  title: Acme Tasks REST
  version: "1"
paths:
  /tasks:
    post:
      operationId: addTask
      summary: Add a task
      security:
        - acme: [tasks:write]
      requestBody:
        required: true
        content:
          application/json:
            schema:
              type: object
              properties:
                title: { type: string }
              required: [title]
      responses:
        "200":
          description: the task
components:
  securitySchemes:
    acme:
      type: oauth2
      flows:
        authorizationCode:
          authorizationUrl: https://tasks.example/authorize
          tokenUrl: https://tasks.example/token
          scopes:
            "tasks:read": read your tasks
            "tasks:write": add tasks
"#;

#[tokio::test(flavor = "multi_thread")]
async fn authorization_code_asks_the_user_for_the_operations_scope_then_sends_their_token() {
    let api = RecordingApi::start().await;
    let port = portcullis_e2e::port_for_peer_script();
    let provider = format!("http://127.0.0.1:{port}");
    let target = format!(
        "[openapi]\nspec = \"acme.yaml\"\nbase_url = \"{}\"\n\n[auth]\nmode = \"oauth2_authorization_code\"\nprovider = \"custom\"\ndisplay_name = \"Acme Tasks\"\nissuer = \"{provider}\"\nclient_id = \"portcullis-demo\"\n",
        api.url("/acme"),
    );
    let dir = write_config(
        &format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n[demo_provider]\nlisten = \"127.0.0.1:{port}\"\n"
        ),
        &[("acme", target)],
    )
    .unwrap();
    std::fs::write(dir.path().join("targets/acme.yaml"), ACME_SPEC).unwrap();
    let gw = tokio::task::spawn_blocking(move || Gateway::serve(dir, &Serve::default()))
        .await
        .unwrap()
        .unwrap();
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect_as(
        portcullis_e2e::url_elicitation_client("rest-targets-test"),
        &gw.url,
        Some(&token),
        Era::Legacy,
    )
    .await;
    let add = || {
        CallToolRequestParams::new("acme__addTask").with_arguments(portcullis_e2e::tool_args(
            json!({"body": {"title": "buy milk"}}),
        ))
    };

    // No grant yet: a consent link, and nothing sent to the API.
    let e = mcp_error(client.peer().call_tool_once(add()).await.unwrap_err());
    assert_eq!(e.code.0, -32042, "{e:?}");
    let link = e.data.as_ref().unwrap()["elicitations"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(api.seen().is_empty(), "{:#?}", api.seen());

    let mut browser = Browser::new();
    let done = browser.consent(&link, "alice", "approve").await.unwrap();
    assert_eq!(done.outcome().as_deref(), Some("done"), "{}", done.text());
    // The provider was asked for the operation's scope: `[auth]` names none, so tasks:write
    // comes from the operation's `security` alone.
    let authorize = browser
        .hops
        .iter()
        .filter_map(|h| url::Url::parse(h).ok())
        .find(|u| u.as_str().starts_with(&format!("{provider}/authorize")))
        .unwrap_or_else(|| panic!("no visit to the provider's /authorize: {:?}", browser.hops));
    let scope: Vec<String> = authorize
        .query_pairs()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.into_owned())
        .collect();
    assert_eq!(scope, ["tasks:write"], "{authorize}");

    // The retry reaches the API with alice's token from the provider.
    let r = match client.peer().call_tool_once(add()).await.unwrap() {
        CallToolResponse::Complete(r) => r,
        other => panic!("expected a result, got {other:?}"),
    };
    assert_eq!(
        r.structured_content,
        Some(json!({"title": "buy milk"})),
        "{r:?}"
    );
    let s = only(&api.seen(), "POST", "/acme/tasks");
    assert_eq!(s.json(), json!({"title": "buy milk"}));
    let user_token = bearer(&s);
    assert_ne!(user_token, token);
    assert!(
        !s.carries(&token),
        "the caller's token reached the API: {s:#?}"
    );
    // It is a token of the provider's holding tasks:write for alice: its own MCP server
    // accepts it for add_task.
    let at_provider = connect(&format!("{provider}/mcp"), Some(&user_token)).await;
    let added = call(
        &at_provider,
        "add_task",
        json!({"title": "via the provider"}),
    )
    .await;
    assert!(tool_text(&added).contains("via the provider"), "{added:?}");
    at_provider.cancel().await.ok();
    client.cancel().await.ok();
}

// ---------------------------------------------------------------------------------------------
// 3. Declared tools.

#[tokio::test(flavor = "multi_thread")]
async fn http_tools_place_each_argument_as_declared() {
    let api = RecordingApi::start().await;
    let target = format!(
        r#"[http]
base_url = "{}"
headers = {{ "X-Client" = "portcullis-e2e" }}

[tools.get_order]
method = "GET"
path = "/orders/{{order_id}}/lines"
description = "One order's lines"
headers = {{ "X-Tenant" = "{{tenant}}", "X-Fixed" = "fixed-1" }}
input_schema = {{ type = "object", properties = {{ order_id = {{ type = "string" }}, tenant = {{ type = "string" }}, expand = {{ type = "array", items = {{ type = "string" }} }}, limit = {{ type = "integer" }} }}, required = ["order_id", "tenant"] }}

[tools.create_order]
method = "POST"
path = "/regions/{{region}}/orders"
description = "Create an order"
input_schema = {{ type = "object", properties = {{ region = {{ type = "string" }}, item = {{ type = "string" }}, quantity = {{ type = "integer" }}, note = {{ type = "object" }} }}, required = ["region", "item"] }}
"#,
        api.url("/svc")
    );
    let gw = start("", vec![("shop", target)]).await;
    let client = connect(&gw.url, None).await;
    let listed = tools(&client).await;
    let get = listed.iter().find(|t| t.name == "shop__get_order").unwrap();
    assert_eq!(get.description.as_deref(), Some("One order's lines"));
    assert_eq!(
        get.annotations.as_ref().and_then(|a| a.read_only_hint),
        Some(true)
    );

    let r = call(
        &client,
        "shop__get_order",
        json!({"order_id": "A/7 b", "tenant": "acme-eu", "expand": ["items", "tax"], "limit": 5}),
    )
    .await;
    assert_eq!(r.structured_content, Some(json!({"ok": true})));
    let s = only(&api.since(0), "GET", "/svc/orders/A%2F7%20b/lines");
    assert_eq!(s.query.as_deref(), Some("expand=items&expand=tax&limit=5"));
    assert_eq!(s.header("x-tenant"), "acme-eu");
    assert_eq!(s.header("x-fixed"), "fixed-1");
    assert_eq!(s.header("x-client"), "portcullis-e2e");
    assert!(s.header_values("content-type").is_empty(), "{s:#?}");
    assert_eq!(s.body, "");

    let n = api.count();
    let order =
        json!({"region": "eu-west", "item": "widget", "quantity": 3, "note": {"gift": true}});
    let r = call(&client, "shop__create_order", order).await;
    let s = only(&api.since(n), "POST", "/svc/regions/eu-west/orders");
    assert_eq!(s.query, None);
    assert_eq!(s.header("content-type"), "application/json");
    assert_eq!(s.header("x-client"), "portcullis-e2e");
    let body = json!({"item": "widget", "quantity": 3, "note": {"gift": true}});
    assert_eq!(
        s.json(),
        body,
        "the arguments no placeholder takes, and only those"
    );
    assert_eq!(r.structured_content, Some(body));

    // A missing placeholder argument: a tool error, nothing sent.
    let n = api.count();
    let r = call(&client, "shop__create_order", json!({"item": "widget"})).await;
    assert!(error_text(&r).contains("`region`"), "{r:?}");
    assert_eq!(api.count(), n);
    client.cancel().await.ok();
}

// ---------------------------------------------------------------------------------------------
// 4. A specification fetched from a URL.

#[tokio::test(flavor = "multi_thread")]
async fn a_spec_url_is_fetched_at_start_and_a_failing_one_leaves_its_target_down() {
    let api = RecordingApi::start().await;
    let fetched = format!(
        "[openapi]\nspec = \"{}\"\n",
        api.url("/specs/petstore.yaml")
    );
    let missing_url = api.url("/specs/missing.yaml");
    let missing = format!("[openapi]\nspec = \"{missing_url}\"\n");
    let local = format!(
        "[http]\nbase_url = \"{}\"\n\n[tools.ping]\npath = \"/ping\"\n",
        api.url("/svc")
    );
    let dir = write_config(
        "",
        &[("fetched", fetched), ("missing", missing), ("local", local)],
    )
    .unwrap();
    let gw = tokio::task::spawn_blocking(move || {
        Gateway::serve(
            dir,
            &Serve {
                until_listening: true,
                ..Serve::default()
            },
        )
    })
    .await
    .unwrap()
    .unwrap();
    let client = connect(&gw.url, None).await;

    // While the specification is being fetched: connecting, and none of its tools.
    let target = |body: &Value, name: &str| {
        body["targets"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no target `{name}` in {body}"))
    };
    let (_, body) = readyz(&gw.base()).await;
    let fetching = target(&body, "fetched");
    assert_eq!(fetching["status"], "connecting", "{body}");
    assert!(
        fetching["reason"]
            .as_str()
            .unwrap()
            .contains(&api.url("/specs/petstore.yaml")),
        "{body}"
    );
    let names: Vec<String> = tools(&client)
        .await
        .into_iter()
        .map(|t| t.name.into_owned())
        .collect();
    assert!(names.iter().any(|n| n == "local__ping"), "{names:?}");
    assert!(
        !names.iter().any(|n| n.starts_with("fetched__")),
        "{names:?}"
    );

    // Once served, the tools appear and calls go to the specification's (relative) server.
    api.release_spec();
    eventually_async(WITHIN, || async {
        let names: Vec<String> = tools(&client)
            .await
            .into_iter()
            .map(|t| t.name.into_owned())
            .collect();
        names
            .iter()
            .any(|n| n == "fetched__getPetById")
            .then_some(())
    })
    .await
    .expect("the fetched specification's tools are listed");
    let (status, body) = readyz(&gw.base()).await;
    assert_eq!(target(&body, "fetched")["status"], "connected", "{body}");
    assert_eq!(target(&body, "local")["status"], "connected", "{body}");
    let missing = target(&body, "missing");
    assert_eq!(missing["status"], "down", "{body}");
    let reason = missing["reason"].as_str().unwrap();
    assert!(
        reason.contains(&missing_url) && reason.contains("404"),
        "the reason names the URL and its answer: {reason}"
    );
    assert_eq!(status, 503, "a required target is down: {body}");

    let n = api.count();
    let r = call(&client, "fetched__getPetById", json!({"petId": 5})).await;
    assert_eq!(r.structured_content.as_ref().unwrap()["id"], 5, "{r:?}");
    only(&api.since(n), "GET", "/api/v3/pet/5");
    let n = api.count();
    let r = call(&client, "local__ping", json!({})).await;
    assert_eq!(r.structured_content, Some(json!({"ok": true})));
    only(&api.since(n), "GET", "/svc/ping");
    client.cancel().await.ok();
}

// ---------------------------------------------------------------------------------------------
// 5. Problems found at load.

/// `portcullis check` on a configuration of one target `petstore` (`toml`), with `files`
/// written beside it; its combined output, after asserting that it failed.
fn check_fails(toml: &str, files: &[(&str, &str)]) -> String {
    let dir = write_config("", &[("petstore", toml.to_string())]).unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join("targets").join(name), text).unwrap();
    }
    let out = run_portcullis("check", dir.path(), &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "check accepted it: {text}");
    text
}

const SPEC_TARGET: &str =
    "[openapi]\nspec = \"petstore.yaml\"\nbase_url = \"http://127.0.0.1:9/api\"\n";

#[test]
fn check_names_the_spot_of_each_problem_in_a_specification_or_target_file() {
    let good = petstore_spec();

    // A YAML syntax error: the spec file, line and column. A flow sequence opened on line 41
    // (`put:` of /pet) cannot hold line 42's mapping: its `:` at column 11 is the error.
    let lines: Vec<&str> = good.lines().collect();
    assert_eq!(lines[40], "    put:");
    let mut broken = lines.clone();
    broken[40] = "    put: [unclosed";
    let text = check_fails(SPEC_TARGET, &[("petstore.yaml", &broken.join("\n"))]);
    assert!(
        text.contains("/targets/petstore.yaml:42:11: the specification is not valid YAML"),
        "{text}"
    );

    // The same operationId twice: the second one's place.
    let twice = good.replacen(
        "operationId: findPetsByTags",
        "operationId: findPetsByStatus",
        1,
    );
    let text = check_fails(SPEC_TARGET, &[("petstore.yaml", &twice)]);
    assert!(
        text.contains("petstore.yaml: `paths › /pet/findByTags › get › operationId`: the operationId `findPetsByStatus` is used twice: at `paths › /pet/findByStatus › get` and at `paths › /pet/findByTags › get`"),
        "{text}"
    );

    // A reference to nothing.
    let dangling = good.replacen(
        "$ref: '#/components/schemas/Pet'",
        "$ref: '#/components/schemas/Pett'",
        1,
    );
    let text = check_fails(SPEC_TARGET, &[("petstore.yaml", &dangling)]);
    assert!(
        text.contains("petstore.yaml: `paths › /pet › put › requestBody › content › application/json › schema › $ref`: `#/components/schemas/Pett` points to nothing in this document"),
        "{text}"
    );
    assert!(text.contains("did you mean `Pet`?"), "{text}");

    // A filter naming no operation: the target file's key, and the nearest name.
    let text = check_fails(
        &format!("{SPEC_TARGET}\n[openapi.include]\noperations = [\"getPetByld\"]\n"),
        &[("petstore.yaml", &good)],
    );
    assert!(
        text.contains("petstore.toml:6:1: `openapi.include.operations`: no operation in the specification has the operationId `getPetByld`"),
        "{text}"
    );
    assert!(text.contains("did you mean `getPetById`?"), "{text}");

    // Two kinds in one file.
    let text = check_fails(
        &format!("[mcp]\nurl = \"http://127.0.0.1:9/mcp\"\n\n{SPEC_TARGET}"),
        &[("petstore.yaml", &good)],
    );
    assert!(
        text.contains("petstore.toml:4:2: `openapi`: the target is both [mcp] and [openapi]"),
        "{text}"
    );

    // `method` describes an [http] tool.
    let text = check_fails(
        &format!("{SPEC_TARGET}\n[tools.getPetById]\nmethod = \"POST\"\n"),
        &[("petstore.yaml", &good)],
    );
    assert!(
        text.contains("petstore.toml:6:1: `tools.getPetById.method`: `method` describes the request of an [http] tool, and this is an [openapi] target"),
        "{text}"
    );
}

/// An API that never answers: the call ends at the target's `timeout` with -32001 naming the
/// target, and the gateway goes on serving.
#[tokio::test(flavor = "multi_thread")]
async fn an_api_that_never_answers_ends_the_call_at_the_targets_timeout() {
    let hanging = MockServer::start(axum::Router::new().fallback(|| async {
        std::future::pending::<()>().await;
        "never"
    }))
    .await;
    let target = format!(
        "timeout = \"1s\"\n[http]\nbase_url = \"{}\"\n[tools.wait]\npath = \"/wait\"\n",
        hanging.url("")
    );
    let gw = start("[dev_idp]\n", vec![("slow", target)]).await;
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect(&gw.url, Some(&token)).await;
    let e = mcp_error(
        client
            .peer()
            .call_tool(CallToolRequestParams::new("slow__wait"))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code.0, -32001, "{e:?}");
    assert!(
        e.message
            .contains("target `slow` did not answer within 1 s"),
        "{e:?}"
    );
    client.cancel().await.unwrap();
}

/// A specification kept beside its target file is watched like the target file: an edit
/// reloads the configuration, and the new operation is a tool without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn editing_a_specification_beside_its_target_file_reloads_its_tools() {
    let api = RecordingApi::start().await;
    let spec = |extra: &str| {
        format!(
            "openapi: 3.1.0\ninfo: {{title: t, version: '1'}}\npaths:\n  /ping:\n    get:\n      operationId: ping\n      responses: {{'200': {{description: ok}}}}\n{extra}"
        )
    };
    let target = format!(
        "[openapi]\nspec = \"api.yaml\"\nbase_url = \"{}\"\n",
        api.url("/api/v3")
    );
    let dir = write_config("[dev_idp]\n", &[("live", target)]).unwrap();
    let spec_file = dir.path().join("targets/api.yaml");
    std::fs::write(&spec_file, spec("")).unwrap();
    let gw = tokio::task::spawn_blocking(move || Gateway::serve(dir, &Serve::default()))
        .await
        .unwrap()
        .unwrap();
    let token = gw.dev_token(&["--user", "alice", "--agent", "a"]);
    let client = connect(&gw.url, Some(&token)).await;
    assert_eq!(
        tools(&client)
            .await
            .iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>(),
        ["live__ping"]
    );

    std::fs::write(
        &spec_file,
        spec("  /pong:\n    get:\n      operationId: pong\n      responses: {'200': {description: ok}}\n"),
    )
    .unwrap();
    let names = eventually_async(Duration::from_secs(30), || async {
        let names: Vec<String> = tools(&client)
            .await
            .iter()
            .map(|t| t.name.to_string())
            .collect();
        (names.len() == 2).then_some(names)
    })
    .await
    .unwrap();
    assert_eq!(names, ["live__ping", "live__pong"]);
    client.cancel().await.unwrap();
}

//! What an upstream asks of the caller in the middle of a call — sampling, elicitation (form
//! and URL), roots — through the gateway, for callers of both protocol eras. The upstream is
//! the reference server (`@modelcontextprotocol/server-everything`, a 2025-11-25 server that
//! asks with server→client requests): a 2025-11-25 caller is asked the same way, a 2026-07-28
//! caller gets `input_required` and retries with its answers while the gateway holds the
//! upstream call. The `requestState` it gets is refused when tampered with, replayed, used by
//! another user or for other arguments.
#![allow(clippy::unwrap_used)] // tests and their harness may panic on setup failures

use std::sync::{Arc, Mutex};

use portcullis_e2e::{
    Era, Everything, Gateway, connect_as, peers, python_peers, result_text, tool_args,
};
use rmcp::model::*;
use rmcp::service::{RequestContext, RunningService, ServiceError};
use rmcp::{ClientHandler, ErrorData, RoleClient};
use serde_json::json;

const GATEWAY: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n";
const ROOT: &str = "file:///srv/test-root";
const SAMPLED: &str = "a haiku the test client sampled";

/// A client that answers what it is asked and records it; it declares only `caps`.
#[derive(Clone)]
struct Answers {
    caps: ClientCapabilities,
    asked: Arc<Mutex<Vec<String>>>,
}

impl Answers {
    fn able() -> Self {
        let mut caps = ClientCapabilities::default();
        caps.sampling = Some(Default::default());
        caps.roots = Some(Default::default());
        caps.elicitation = Some(
            ElicitationCapability::new()
                .with_form(Default::default())
                .with_url(Default::default()),
        );
        Self::with(caps)
    }

    fn with(caps: ClientCapabilities) -> Self {
        Self {
            caps,
            asked: Arc::default(),
        }
    }

    fn asked(&self) -> Vec<String> {
        self.asked.lock().unwrap().clone()
    }
}

#[allow(deprecated)] // sampling and roots are what 2025-era upstreams ask for
impl ClientHandler for Answers {
    fn get_info(&self) -> ClientConfig {
        ClientConfig::new(
            self.caps.clone(),
            Implementation::new("input-bridge-test", "1.0.0"),
        )
    }

    async fn create_message(
        &self,
        _params: CreateMessageRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.asked.lock().unwrap().push("sampling".into());
        Ok(CreateMessageResult::new(
            SamplingMessage::assistant_text(SAMPLED),
            "test-model".into(),
        ))
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        match params {
            ElicitRequestParams::UrlElicitationParams { url, .. } => {
                self.asked.lock().unwrap().push(format!("url {url}"));
                Ok(ElicitResult::new(ElicitationAction::Accept))
            }
            _ => {
                self.asked.lock().unwrap().push("form".into());
                Ok(ElicitResult::new(ElicitationAction::Accept).with_content(
                    json!({ "name": "Ada", "check": true, "email": "ada@example.com" }),
                ))
            }
        }
    }

    async fn list_roots(
        &self,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ListRootsResult, ErrorData> {
        self.asked.lock().unwrap().push("roots".into());
        Ok(ListRootsResult::new(vec![Root::new(ROOT)]))
    }
}

struct Setup {
    gw: Gateway,
    _everything: Everything,
}

fn setup(python: bool) -> Option<Setup> {
    let peers = if python { python_peers() } else { peers() }?;
    let everything = Everything::start(&peers).expect("server-everything starts");
    let target = format!("prefix = \"ev\"\n[mcp]\nurl = \"{}\"\n", everything.url);
    let gw = Gateway::start(GATEWAY, &[("everything", target)]).expect("gateway starts");
    Some(Setup {
        gw,
        _everything: everything,
    })
}

fn params(tool: &str, args: serde_json::Value) -> CallToolRequestParams {
    CallToolRequestParams::new(tool.to_string()).with_arguments(tool_args(args))
}

/// The tools that ask their caller something during the call, with arguments, and what the
/// result shows when the caller answered. (server-everything's `get-roots-list` only reads
/// roots it asked for when the session opened, never during a call, so it is not here.)
fn asking_tools() -> Vec<(&'static str, serde_json::Value, &'static str, &'static str)> {
    vec![
        (
            "ev__trigger-sampling-request",
            json!({ "prompt": "write a haiku", "maxTokens": 50 }),
            "sampling",
            SAMPLED,
        ),
        ("ev__trigger-elicitation-request", json!({}), "form", "Ada"),
        (
            "ev__trigger-url-elicitation",
            json!({ "url": "https://example.com/connect?x=1" }),
            "url https://example.com/connect?x=1",
            "accept",
        ),
    ]
}

async fn client(
    s: &Setup,
    who: &str,
    era: Era,
    handler: Answers,
) -> RunningService<RoleClient, Answers> {
    let token = s.gw.dev_token(&["--user", who, "--agent", "bridge-test"]);
    connect_as(handler, &s.gw.url, Some(&token), era).await
}

#[tokio::test(flavor = "multi_thread")]
async fn callers_of_both_eras_answer_sampling_and_elicitation_through_the_gateway() {
    let Some(s) = setup(false) else { return };
    for era in [Era::Legacy, Era::Modern] {
        let answers = Answers::able();
        let c = client(&s, "alice", era, answers.clone()).await;
        for (tool, args, asked, shows) in asking_tools() {
            // rmcp's own client drives `input_required` rounds through this handler (2026)
            // exactly as it answers server→client requests (2025).
            let result = c.call_tool(params(tool, args)).await;
            let result = result.unwrap_or_else(|e| panic!("{era:?} {tool}: {e}"));
            assert_ne!(result.is_error, Some(true), "{era:?} {tool}: {result:?}");
            assert!(
                result_text(&result).contains(shows),
                "{era:?} {tool}: {result:?}"
            );
            assert_eq!(
                answers.asked().last().map(String::as_str),
                Some(asked),
                "{era:?} {tool}: the client must have been asked"
            );
        }
        c.cancel().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_2026_caller_gets_input_required_and_its_state_is_bound_single_use_and_sealed() {
    let Some(s) = setup(false) else { return };
    let alice = client(&s, "alice", Era::Modern, Answers::able()).await;
    let args = json!({ "prompt": "write a haiku", "maxTokens": 50 });
    let tool = "ev__trigger-sampling-request";

    let first = alice
        .peer()
        .call_tool_once(params(tool, args.clone()))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(asked) = first else {
        panic!("expected input_required, got {first:?}")
    };
    let requests = asked.input_requests.clone().expect("input requests");
    assert_eq!(requests.len(), 1, "{requests:?}");
    let (key, request) = requests.iter().next().unwrap();
    assert!(
        matches!(request, InputRequest::CreateMessage(_)),
        "the upstream's sampling request, as asked: {request:?}"
    );
    let state = asked.request_state.clone().expect("requestState");
    let answer = json!({
        "role": "assistant",
        "content": { "type": "text", "text": SAMPLED },
        "model": "test-model",
    });
    let retry = |state: String, args: serde_json::Value, answer: serde_json::Value| {
        let mut p = params(tool, args);
        p.request_state = Some(state);
        p.input_responses = Some([(key.clone(), answer)].into_iter().collect());
        p
    };

    // Tampered with: refused, and the held call is untouched.
    let mut tampered = state.clone().into_bytes();
    let i = tampered.len() / 2;
    tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    let err = alice
        .peer()
        .call_tool_once(retry(tampered, args.clone(), answer.clone()))
        .await
        .unwrap_err();
    assert_refused(&err);

    // Another user's retry with alice's state, and alice's with other arguments: refused.
    let bob = client(&s, "bob", Era::Modern, Answers::able()).await;
    let err = bob
        .peer()
        .call_tool_once(retry(state.clone(), args.clone(), answer.clone()))
        .await
        .unwrap_err();
    assert_refused(&err);
    let other_args = json!({ "prompt": "something else", "maxTokens": 50 });
    let err = alice
        .peer()
        .call_tool_once(retry(state.clone(), other_args, answer.clone()))
        .await
        .unwrap_err();
    assert_refused(&err);

    // The rightful retry completes the held call with alice's answer.
    let done = alice
        .peer()
        .call_tool_once(retry(state.clone(), args.clone(), answer.clone()))
        .await
        .unwrap();
    let CallToolResponse::Complete(result) = done else {
        panic!("expected the result, got {done:?}")
    };
    assert!(result_text(&result).contains(SAMPLED), "{result:?}");

    // Replayed: the call it resumed is gone.
    let err = alice
        .peer()
        .call_tool_once(retry(state, args.clone(), answer))
        .await
        .unwrap_err();
    assert_refused(&err);

    // An answer that is not a sampling result ends the call with an error naming it.
    let again = alice
        .peer()
        .call_tool_once(params(tool, args.clone()))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(asked) = again else {
        panic!("expected input_required, got {again:?}")
    };
    let err = alice
        .peer()
        .call_tool_once(retry(
            asked.request_state.unwrap(),
            args,
            json!({ "action": "accept" }),
        ))
        .await
        .unwrap_err();
    let ServiceError::McpError(e) = err else {
        panic!("expected a JSON-RPC error, got {err:?}")
    };
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
    assert!(
        e.message.contains(&format!("inputResponses.{key}"))
            && e.message.contains("sampling/createMessage"),
        "{e:?}"
    );
}

fn assert_refused(err: &ServiceError) {
    let ServiceError::McpError(e) = err else {
        panic!("expected a JSON-RPC error, got {err:?}")
    };
    assert_eq!(e.code, ErrorCode::INVALID_PARAMS, "{e:?}");
    assert!(e.message.contains("requestState"), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_caller_without_the_capability_gets_a_tool_error_and_is_never_asked() {
    let Some(s) = setup(false) else { return };
    for era in [Era::Legacy, Era::Modern] {
        let answers = Answers::with(ClientCapabilities::default());
        let c = client(&s, "carol", era, answers.clone()).await;
        for (tool, args, _, _) in asking_tools() {
            let result = c.peer().call_tool_once(params(tool, args)).await;
            let result = result.unwrap_or_else(|e| panic!("{era:?} {tool}: {e}"));
            let CallToolResponse::Complete(result) = result else {
                panic!("{era:?} {tool}: expected a tool error, got {result:?}")
            };
            assert_eq!(result.is_error, Some(true), "{era:?} {tool}: {result:?}");
            let t = result_text(&result);
            assert!(
                t.contains("did not declare") && t.contains("capability"),
                "{era:?} {tool}: {t}"
            );
        }
        assert!(answers.asked().is_empty(), "{era:?}: {:?}", answers.asked());
        c.cancel().await.ok();
    }
}

/// The official Python SDK, in its default negotiation (`--mode auto`, 2026-07-28 against
/// the gateway) and in legacy mode: sampling, form and URL elicitation complete.
#[test]
fn the_python_sdk_answers_sampling_and_elicitation_in_both_modes() {
    let Some(s) = setup(true) else { return };
    let peers = python_peers().unwrap();
    let token = s.gw.dev_token(&["--user", "dora", "--agent", "python"]);
    for mode in ["auto", "legacy"] {
        for (tool, args, asked, shows) in asking_tools() {
            let out = input_client(&peers, &s.gw.url, &token, mode, tool, &args);
            assert_eq!(out["ok"], true, "{mode} {tool}: {out}");
            let expected_version = if mode == "legacy" {
                "2025-11-25"
            } else {
                "2026-07-28"
            };
            assert_eq!(out["protocol_version"], expected_version, "{mode}: {out}");
            let asked_kind = asked.split(' ').next().unwrap();
            assert!(
                out["asked"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|a| a == asked_kind),
                "{mode} {tool}: {out}"
            );
            assert!(
                out["result"].to_string().contains(shows),
                "{mode} {tool}: {out}"
            );
        }
    }
}

fn input_client(
    peers: &std::path::Path,
    url: &str,
    token: &str,
    mode: &str,
    tool: &str,
    args: &serde_json::Value,
) -> serde_json::Value {
    let venv = std::env::var("PEERS_CACHE")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::path::PathBuf::from("/tmp/peers-cache"))
        .join("mcp/venv/bin/python");
    let _ = peers;
    let out = std::process::Command::new(venv)
        .arg(portcullis_e2e::repo_root().join("tests/py/input_client.py"))
        .args([
            url,
            "--token",
            token,
            "--mode",
            mode,
            tool,
            &args.to_string(),
        ])
        .args(["--sampled", SAMPLED])
        .output()
        .expect("run tests/py/input_client.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|_| {
        panic!(
            "input_client.py printed no JSON: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// A 2025 upstream's "open this URL first" error (-32042, which 2026-07-28 removed): a
/// 2025-11-25 caller gets the error as the upstream sent it; a 2026-07-28 caller gets the URL
/// as `input_required`, and its retry reaches the upstream, which then goes on (here: with a
/// URL elicitation request of its own, a second round).
#[tokio::test(flavor = "multi_thread")]
async fn an_upstreams_url_elicitation_error_reaches_each_era_in_its_own_terms() {
    let Some(s) = setup(false) else { return };
    let args =
        json!({ "url": "https://example.com/first", "errorPath": true, "elicitationId": "e-1" });
    let tool = "ev__trigger-url-elicitation";

    let legacy = client(&s, "erin", Era::Legacy, Answers::able()).await;
    let err = legacy
        .peer()
        .call_tool_once(params(tool, args.clone()))
        .await
        .unwrap_err();
    let ServiceError::McpError(e) = err else {
        panic!("expected a JSON-RPC error, got {err:?}")
    };
    assert_eq!(e.code.0, -32042, "{e:?}");
    legacy.cancel().await.ok();

    // Another id: the upstream remembers ids it sent the error for (on the gateway's one
    // session), and answers their retries without the error.
    let args =
        json!({ "url": "https://example.com/first", "errorPath": true, "elicitationId": "e-2" });
    let answers = Answers::able();
    let modern = client(&s, "frank", Era::Modern, answers.clone()).await;
    let first = modern
        .peer()
        .call_tool_once(params(tool, args.clone()))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(asked) = &first else {
        panic!("expected input_required, got {first:?}")
    };
    let v = serde_json::to_value(asked).unwrap();
    assert_eq!(v["inputRequests"]["url-1"]["params"]["mode"], "url", "{v}");
    // server-everything's error names a fixed prerequisite page.
    let prerequisite = v["inputRequests"]["url-1"]["params"]["url"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(prerequisite.starts_with("https://"), "{v}");
    // rmcp's client drives the rounds: the URL above, then the upstream's own request.
    let args =
        json!({ "url": "https://example.com/first", "errorPath": true, "elicitationId": "e-3" });
    let result = modern.call_tool(params(tool, args)).await.unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(
        answers.asked(),
        vec![
            format!("url {prerequisite}"),
            "url https://example.com/first".to_string()
        ],
        "{result:?}"
    );
}

/// A client that answers `register_name`'s two questions (recording each message) and, as
/// [`Answers`] does, `ask_llm`'s sampling.
#[derive(Clone)]
struct Registrar {
    answers: Answers,
}

#[allow(deprecated)] // sampling: what the 2026-only upstream asks for
impl ClientHandler for Registrar {
    fn get_info(&self) -> ClientConfig {
        self.answers.get_info()
    }

    async fn create_message(
        &self,
        params: CreateMessageRequestParams,
        ctx: RequestContext<RoleClient>,
    ) -> Result<CreateMessageResult, ErrorData> {
        self.answers.create_message(params, ctx).await
    }

    async fn create_elicitation(
        &self,
        params: ElicitRequestParams,
        _ctx: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, ErrorData> {
        let message = match &params {
            ElicitRequestParams::FormElicitationParams { message, .. } => message.clone(),
            _ => String::new(),
        };
        self.answers.asked.lock().unwrap().push(message.clone());
        let content = if message.starts_with("What name") {
            json!({ "name": "Ada" })
        } else {
            json!({ "confirm": true })
        };
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(content))
    }
}

/// An upstream that speaks only 2026-07-28 and asks with `input_required` itself
/// (tests/src/bin/stateless_upstream.rs): the gateway opens its session the 2026 way; a 2026
/// caller gets the upstream's questions passed through (the upstream's state sealed inside
/// the gateway's, two rounds), a 2025 caller is asked them as server→client requests.
#[tokio::test(flavor = "multi_thread")]
async fn a_2026_only_upstream_that_asks_with_input_required_serves_both_eras() {
    let (_upstream, url) = portcullis_e2e::spawn_until_line(
        std::process::Command::new(env!("CARGO_BIN_EXE_stateless-upstream")),
        "stateless-upstream",
        "http://",
        std::time::Duration::from_secs(30),
    )
    .expect("the 2026-only upstream starts");
    let target = format!("prefix = \"st\"\n[mcp]\nurl = \"{url}\"\n");
    let gw = Gateway::start(GATEWAY, &[("stateless", target)]).expect("gateway starts");
    let token = gw.dev_token(&["--user", "gina", "--agent", "bridge-test"]);

    for era in [Era::Legacy, Era::Modern] {
        let answers = Answers::able();
        let registrar = Registrar {
            answers: answers.clone(),
        };
        let c = connect_as(registrar, &gw.url, Some(&token), era).await;
        let done = c.call_tool(params("st__register_name", json!({}))).await;
        let done = done.unwrap_or_else(|e| panic!("{era:?}: {e}"));
        assert_eq!(
            result_text(&done),
            "Registered \"Ada\"",
            "{era:?}: {done:?}"
        );
        assert_eq!(
            answers.asked(),
            vec![
                "What name should be registered?".to_string(),
                "Register the name \"Ada\"?".to_string()
            ],
            "{era:?}"
        );
        let answered = c
            .call_tool(params("st__ask_llm", json!({ "question": "why?" })))
            .await
            .unwrap_or_else(|e| panic!("{era:?}: {e}"));
        assert_eq!(
            result_text(&answered),
            format!("The LLM answered: {SAMPLED}"),
            "{era:?}"
        );
        c.cancel().await.ok();
    }

    // The 2026 caller's view of one round: the upstream's own key, and a state that is the
    // gateway's (the upstream's sealed inside: handed to another user, it is refused).
    let modern = connect_as(Answers::able(), &gw.url, Some(&token), Era::Modern).await;
    let first = modern
        .peer()
        .call_tool_once(params("st__register_name", json!({})))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(asked) = first else {
        panic!("expected input_required, got {first:?}")
    };
    assert!(asked.input_requests.as_ref().unwrap().contains_key("name"));
    let mut retry = params("st__register_name", json!({}));
    retry.request_state = asked.request_state;
    retry.input_responses = Some(
        [(
            "name".to_string(),
            json!({ "action": "accept", "content": { "name": "Mallory" } }),
        )]
        .into_iter()
        .collect(),
    );
    let other = gw.dev_token(&["--user", "mallory", "--agent", "bridge-test"]);
    let mallory = connect_as(Answers::able(), &gw.url, Some(&other), Era::Modern).await;
    let err = mallory
        .peer()
        .call_tool_once(retry.clone())
        .await
        .unwrap_err();
    assert_refused(&err);
    let second = modern.peer().call_tool_once(retry).await.unwrap();
    assert!(
        matches!(&second, CallToolResponse::InputRequired(r) if r.input_requests.as_ref().unwrap().contains_key("confirm")),
        "{second:?}"
    );
}

/// A 2025-11-25 upstream whose tool `ask` asks its client for sampling and waits; it records
/// each request of its that the gateway cancels.
#[derive(Clone, Default)]
struct Asker {
    cancelled: Arc<Mutex<u32>>,
}

#[allow(deprecated)] // sampling: what 2025-era upstreams ask for
impl rmcp::ServerHandler for Asker {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _req: Option<PaginatedRequestParams>,
        _ctx: RequestContext<rmcp::RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = json!({ "type": "object" }).as_object().cloned().unwrap();
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "ask",
            "asks its client's model",
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        _req: CallToolRequestParams,
        ctx: RequestContext<rmcp::RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let ask = ctx.peer.create_message(CreateMessageRequestParams::new(
            vec![SamplingMessage::user_text("anything")],
            10,
        ));
        // When the gateway gives up, its refusal of the sampling request and its cancellation
        // of this call race; either may come first.
        let answer = tokio::select! {
            answer = ask => answer,
            _ = ctx.ct.cancelled() => {
                *self.cancelled.lock().unwrap() += 1;
                return Err(ErrorData::internal_error("cancelled", None));
            }
        };
        if answer.is_err()
            && tokio::time::timeout(std::time::Duration::from_secs(10), ctx.ct.cancelled())
                .await
                .is_ok()
        {
            *self.cancelled.lock().unwrap() += 1;
        }
        let text = format!("{answer:?}");
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]).into())
    }
}

/// A call held for a 2026-07-28 caller that never comes back: when the target's `timeout`
/// is up the gateway cancels the upstream's request (`notifications/cancelled`), and the
/// state no longer resumes anything.
#[tokio::test(flavor = "multi_thread")]
async fn a_held_call_nobody_answers_is_cancelled_upstream_and_its_state_refused() {
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    };
    let asker = Asker::default();
    let cancelled = asker.cancelled.clone();
    let service = StreamableHttpService::new(
        move || Ok(asker.clone()),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default().with_allowed_hosts(["127.0.0.1"]),
    );
    let upstream =
        portcullis_e2e::MockServer::start(axum::Router::new().nest_service("/mcp", service)).await;
    let target = format!(
        "prefix = \"up\"\ntimeout = \"1s\"\n[mcp]\nurl = \"{}\"\nprotocol = \"2025-11-25\"\n",
        upstream.url("/mcp")
    );
    let gw = tokio::task::spawn_blocking(move || Gateway::start(GATEWAY, &[("asker", target)]))
        .await
        .unwrap()
        .expect("gateway starts");
    let token = gw.dev_token(&["--user", "hana", "--agent", "bridge-test"]);
    let c = connect_as(Answers::able(), &gw.url, Some(&token), Era::Modern).await;

    let first = c
        .peer()
        .call_tool_once(params("up__ask", json!({})))
        .await
        .unwrap();
    let CallToolResponse::InputRequired(asked) = first else {
        panic!("expected input_required, got {first:?}")
    };
    assert_eq!(*cancelled.lock().unwrap(), 0, "held, not cancelled yet");
    // The hold ends by itself after the target's timeout (1 s): wait for the upstream to hear.
    portcullis_e2e::eventually(std::time::Duration::from_secs(20), || {
        (*cancelled.lock().unwrap() == 1).then_some(())
    })
    .expect("the upstream's request was cancelled when the hold ended");

    let mut retry = params("up__ask", json!({}));
    retry.request_state = asked.request_state;
    retry.input_responses = Some(
        [(
            "sampling-1".to_string(),
            json!({ "role": "assistant", "content": { "type": "text", "text": "late" }, "model": "m" }),
        )]
        .into_iter()
        .collect(),
    );
    let err = c.peer().call_tool_once(retry).await.unwrap_err();
    assert_refused(&err);
}

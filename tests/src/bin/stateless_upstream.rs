//! `stateless-upstream`: an MCP server that speaks only protocol 2026-07-28 and asks for the
//! client's input with `input_required` results (SEP-2322) and its own sealed `requestState`.
//! The gateway tests use it as an upstream that can be reached only the 2026 way.
//!
//! Usage: `stateless-upstream [--port N]`. It binds 127.0.0.1 (port 0 = ephemeral), prints one
//! line `http://127.0.0.1:PORT/mcp` on stdout once listening, and logs to stderr.
//!
//! What a client sees:
//! - `initialize` is refused (HTTP 200, JSON-RPC error -32022 `UnsupportedProtocolVersionError`,
//!   message "this server speaks only MCP 2026-07-28: send server/discover and put the protocol
//!   version and client capabilities in each request's _meta", `data.supported` =
//!   `["2026-07-28"]`, `data.requested` = the version asked for). A client must use `server/discover` and
//!   per-request `_meta` (no session: `Mcp-Session-Id` is never issued); a request without the
//!   `_meta` protocol version and client capabilities gets HTTP 400, -32602. `server/discover`
//!   answers `supportedVersions: ["2026-07-28"]` and the `tools` capability, server info
//!   (`_meta["io.modelcontextprotocol/serverInfo"]`) name `portcullis-stateless-upstream`.
//! - Tool `echo` `{text}`: a complete result, text `echo: <text>`.
//! - Tool `register_name` (no arguments), three rounds, each retry echoing the `requestState`:
//!   1. without `inputResponses`: `resultType: "input_required"`, `inputRequests` =
//!      `{"name": {method: "elicitation/create", params: {mode: "form", message: "What name should
//!      be registered?", requestedSchema: {name: string, required}}}}`, plus a `requestState`;
//!   2. with `inputResponses.name` = `{action: "accept", content: {name: "<N>"}}` and that state:
//!      `input_required` again, `inputRequests` = `{"confirm": elicitation/create message
//!      "Register the name \"<N>\"?", schema {confirm: boolean, required}}` and a new
//!      `requestState` (it carries `<N>`);
//!   3. with `inputResponses.confirm` = `{action: "accept", content: {confirm: true}}` and the
//!      second state: complete, text `Registered "<N>"`; with `confirm: false`: complete, text
//!      `Not registered: "<N>" was not confirmed`.
//!
//!   A `decline` or `cancel` at either round: complete with `isError: true`, text
//!   `Nothing registered: the user chose to <action> when asked for the <name|confirmation>`.
//!   A missing or malformed answer (or round 2/3 answers without their state): the same round is
//!   asked again. A `requestState` this server did not issue for this call (tool and arguments), a
//!   changed one or one older than 10 minutes: JSON-RPC error -32602 ("requestState refused …").
//! - Tool `ask_llm` `{question}`, two rounds: first `input_required` with `inputRequests` =
//!   `{"answer": sampling/createMessage, one user message <question> (text), maxTokens 200}` and a
//!   `requestState` bound to the question; the retry with `inputResponses.answer` (a
//!   `CreateMessageResult`) and that state: complete, text `The LLM answered: <text of the
//!   reply>`. The same state with another question is refused (-32602).
//! - A request whose `_meta` does not declare `elicitation` (for `register_name`) or `sampling`
//!   (for `ask_llm`) in `io.modelcontextprotocol/clientCapabilities` gets HTTP 400, -32021
//!   (`MissingRequiredClientCapabilityError`, `data.requiredCapabilities` naming it, e.g.
//!   `{"sampling": {}}`) instead of an `input_required` result.

// rounds.rs is the conformance fixture's flow driver; this server uses its stateless half.
#[allow(dead_code)]
#[path = "conformance_fixture/rounds.rs"]
mod rounds;

use std::{
    borrow::Cow,
    io::{IsTerminal as _, Write as _},
    net::Ipv4Addr,
    sync::Arc,
};

use anyhow::{Context as _, bail};
use rmcp::{
    ErrorData, RoleServer, ServerHandler,
    model::*,
    service::RequestContext,
    transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService, session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

use rounds::{Ask, Form, Outcome, Refusal, Resume, Round, Rounds, Step, one_string};

const USAGE: &str = "usage: stateless-upstream [--port N]   (N = 0 picks a free port)";
const ONLY: ProtocolVersion = ProtocolVersion::V_2026_07_28;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let port = match parse_args(std::env::args().skip(1)) {
        Ok(Some(port)) => port,
        Ok(None) => {
            println!("{USAGE}");
            return Ok(());
        }
        Err(err) => {
            eprintln!("stateless-upstream: {err:#}");
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
    // No sessions, and every request must carry its protocol version in `_meta` and the header.
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(false)
        .with_stateless_protocol_metadata_required(true)
        .with_allowed_hosts(["localhost", "127.0.0.1"]);
    let server = Stateless {
        rounds: Arc::new(Rounds::with_fresh_key()),
    };
    let service = StreamableHttpService::new(
        move || Ok(server.clone()),
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let app = axum::Router::new().nest_service("/mcp", service);

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}/mcp")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(%addr, "stateless upstream listening");
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

#[derive(Clone)]
struct Stateless {
    rounds: Arc<Rounds>,
}

impl ServerHandler for Stateless {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "portcullis-stateless-upstream",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions("A 2026-07-28-only server whose tools ask with input_required.")
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        Cow::Owned(vec![ONLY])
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, ErrorData> {
        Err(ErrorData::new(
            ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
            "this server speaks only MCP 2026-07-28: send server/discover and put the protocol \
             version and client capabilities in each request's _meta",
            Some(json!({ "supported": [ONLY], "requested": request.protocol_version })),
        ))
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        Ok(ListToolsResult::with_all_items(tools()))
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
        // A sealed state is good only for the tool and the arguments it was issued for.
        let binding = format!("{}:{}", request.name, Value::Object(args.clone()));
        let outcome = match request.name.as_ref() {
            "echo" => {
                let text = text_arg(&args, "text")?;
                return Ok(CallToolResult::success(vec![ContentBlock::text(format!(
                    "echo: {text}"
                ))])
                .into());
            }
            "register_name" => {
                let flow = |round: Round<'_>| Ok(register_name(round));
                self.rounds.run(&ctx, &binding, resume, flow).await
            }
            "ask_llm" => {
                let question = text_arg(&args, "question")?;
                let flow = |round: Round<'_>| Ok(ask_llm(round, question));
                self.rounds.run(&ctx, &binding, resume, flow).await
            }
            other => {
                return Err(ErrorData::invalid_params(
                    format!("unknown tool {other:?}"),
                    None,
                ));
            }
        };
        match outcome {
            Ok(Outcome::Done(result)) => Ok(result.into()),
            Ok(Outcome::InputRequired(asked)) => Ok(asked.into()),
            Err(Refusal::Protocol(err)) => Err(err),
            // Only 2025-11-25 sessions end these ways, and this server opens none.
            Err(Refusal::Undeclared(_) | Refusal::Client(_)) => Err(ErrorData::internal_error(
                "a session-only path was taken by a stateless server",
                None,
            )),
        }
    }
}

fn tools() -> Vec<Tool> {
    let schema = |value: Value| match value {
        Value::Object(map) => map,
        _ => JsonObject::new(),
    };
    vec![
        Tool::new(
            "echo",
            "Answers \"echo: <text>\" at once",
            schema(one_string("text")),
        ),
        Tool::new(
            "register_name",
            "Asks for a name, then for a confirmation, then says what was registered",
            schema(json!({ "type": "object", "properties": {} })),
        ),
        Tool::new(
            "ask_llm",
            "Asks the client's LLM the question and reports its answer",
            schema(one_string("question")),
        ),
    ]
}

fn text_arg<'a>(args: &'a JsonObject, name: &str) -> Result<&'a str, ErrorData> {
    args.get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ErrorData::invalid_params(format!("missing string argument {name:?}"), None))
}

fn ok_text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::success(vec![ContentBlock::text(text)])
}

/// `register_name`: a name (round 1), a confirmation (round 2), then the outcome.
fn register_name(round: Round<'_>) -> Step<CallToolResult> {
    let ask_name = || Step::Ask {
        asks: vec![(
            "name",
            Ask::elicit("What name should be registered?", one_string("name")),
        )],
        state: Some(json!({ "step": "name" })),
    };
    let ask_confirmation = |name: &str| {
        let schema = json!({
            "type": "object",
            "properties": { "confirm": { "type": "boolean" } },
            "required": ["confirm"]
        });
        let message = format!("Register the name {name:?}?");
        Step::Ask {
            asks: vec![("confirm", Ask::elicit(message, schema))],
            state: Some(json!({ "step": "confirm", "name": name })),
        }
    };
    let refused = |action: &str, what: &str| {
        Step::Done(CallToolResult::error(vec![ContentBlock::text(format!(
            "Nothing registered: the user chose to {action} when asked for the {what}"
        ))]))
    };
    match round.state_field("step").and_then(Value::as_str) {
        Some("name") => match round.form("name") {
            Some(Form::Refused(action)) => refused(action, "name"),
            Some(answer) => match answer.text("name").filter(|name| !name.is_empty()) {
                Some(name) => ask_confirmation(name),
                None => ask_name(),
            },
            None => ask_name(),
        },
        Some("confirm") => {
            let Some(name) = round.state_field("name").and_then(Value::as_str) else {
                return ask_name();
            };
            let answer = round.form("confirm");
            let confirmed = match &answer {
                Some(Form::Refused(action)) => return refused(action, "confirmation"),
                Some(Form::Accepted(content)) => content.get("confirm").and_then(Value::as_bool),
                None => None,
            };
            match confirmed {
                Some(true) => Step::Done(ok_text(format!("Registered {name:?}"))),
                Some(false) => Step::Done(ok_text(format!(
                    "Not registered: {name:?} was not confirmed"
                ))),
                None => ask_confirmation(name),
            }
        }
        _ => ask_name(),
    }
}

/// `ask_llm`: one sampling round.
fn ask_llm(round: Round<'_>, question: &str) -> Step<CallToolResult> {
    let asked = round.state_field("asked") == Some(&json!("answer"));
    match round.sample("answer") {
        Some(text) if asked => Step::Done(ok_text(format!("The LLM answered: {text}"))),
        _ => Step::Ask {
            asks: vec![("answer", Ask::sample(question, 200))],
            state: Some(json!({ "asked": "answer" })),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(value: Value) -> InputResponses {
        serde_json::from_value(value).unwrap()
    }

    fn done_text(step: Step<CallToolResult>) -> (String, bool) {
        let Step::Done(result) = step else {
            panic!("expected a result, got {step:?}")
        };
        let text = result.content.first().and_then(|c| c.as_text().cloned());
        (text.expect("text").text, result.is_error == Some(true))
    }

    fn asked(step: Step<CallToolResult>) -> (Vec<&'static str>, Option<Value>) {
        let Step::Ask { asks, state } = step else {
            panic!("expected asks, got {step:?}")
        };
        (asks.iter().map(|(key, _)| *key).collect(), state)
    }

    #[test]
    fn register_name_asks_twice_then_echoes() {
        let none = InputResponses::new();
        let (keys, state) = asked(register_name(Round {
            state: None,
            answers: &none,
        }));
        assert_eq!(keys, ["name"]);

        let given =
            answers(json!({ "name": { "action": "accept", "content": { "name": "Ada" } } }));
        let (keys, state) = asked(register_name(Round {
            state: state.as_ref(),
            answers: &given,
        }));
        assert_eq!(keys, ["confirm"]);

        for (confirm, expected) in [
            (true, "Registered \"Ada\""),
            (false, "Not registered: \"Ada\" was not confirmed"),
        ] {
            let given = answers(
                json!({ "confirm": { "action": "accept", "content": { "confirm": confirm } } }),
            );
            let done = register_name(Round {
                state: state.as_ref(),
                answers: &given,
            });
            assert_eq!(done_text(done), (expected.to_owned(), false));
        }

        let given = answers(json!({ "confirm": { "action": "decline" } }));
        let done = register_name(Round {
            state: state.as_ref(),
            answers: &given,
        });
        let expected =
            "Nothing registered: the user chose to decline when asked for the confirmation";
        assert_eq!(done_text(done), (expected.to_owned(), true));
    }

    #[test]
    fn an_answer_without_its_state_is_asked_again() {
        let given =
            answers(json!({ "answer": { "content": { "type": "text", "text": "Paris" } } }));
        let round = Round {
            state: None,
            answers: &given,
        };
        assert_eq!(asked(ask_llm(round, "Capital?")).0, ["answer"]);
        let state = json!({ "asked": "answer" });
        let round = Round {
            state: Some(&state),
            answers: &given,
        };
        assert_eq!(
            done_text(ask_llm(round, "Capital?")).0,
            "The LLM answered: Paris"
        );
    }
}

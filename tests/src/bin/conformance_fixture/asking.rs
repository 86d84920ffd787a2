//! The tools and the prompt that need the client's input, each a flow for [`Rounds`]: in a
//! 2026-07-28 request they answer `input_required` (the suite's `input-required-result-*`
//! scenarios check the keys and texts used here), in a 2025-11-25 session they send
//! server-to-client requests and finish in the same call (`tools-call-sampling`,
//! `tools-call-elicitation`, the SEP-1034 and SEP-1330 scenarios).

use rmcp::{
    ErrorData, RoleServer,
    model::{
        CallToolResponse, CallToolResult, ClientCapabilities, ContentBlock, GetPromptResponse,
        GetPromptResult, JsonObject, Prompt, PromptMessage, Role, Tool,
    },
    service::RequestContext,
};
use serde_json::{Value, json};

use super::rounds::{Ask, Form, Outcome, Refusal, Resume, Round, Rounds, Step, one_string};
use super::{err_text, object, ok_text, str_arg};

pub const PROMPT: &str = "test_input_required_result_prompt";

/// The asking tools, with the names and arguments the suite calls.
pub fn tools() -> Vec<Tool> {
    let no_args = || object(json!({ "type": "object", "properties": {} }));
    let string_arg = |name: &str, description: &str| {
        object(json!({
            "type": "object",
            "properties": { name: { "type": "string", "description": description } },
            "required": [name]
        }))
    };
    let tool =
        |name: &'static str, description: &'static str| Tool::new(name, description, no_args());
    vec![
        Tool::new(
            "test_sampling",
            "Asks the client to sample an LLM reply to the prompt",
            string_arg("prompt", "The prompt to send to the LLM"),
        ),
        Tool::new(
            "test_elicitation",
            "Asks the client for a username and an email address",
            string_arg("message", "The message to show the user"),
        ),
        tool(
            "test_elicitation_sep1034_defaults",
            "Elicits fields of every primitive type, each with a default (SEP-1034)",
        ),
        tool(
            "test_elicitation_sep1330_enums",
            "Elicits the five enum schema variants (SEP-1330)",
        ),
        tool(
            "test_input_required_result_elicitation",
            "Asks for a name (input key user_name), then answers \"Hello, <name>!\"",
        ),
        tool(
            "test_input_required_result_sampling",
            "Asks an LLM for the capital of France (key capital_question), then echoes the reply",
        ),
        tool(
            "test_input_required_result_list_roots",
            "Asks for the client's roots (key client_roots), then lists their URIs",
        ),
        tool(
            "test_input_required_result_request_state",
            "Asks for a confirmation with a sealed requestState; the answer says state-ok",
        ),
        tool(
            "test_input_required_result_tampered_state",
            "As test_input_required_result_request_state; a changed requestState is refused (-32602)",
        ),
        tool(
            "test_input_required_result_multiple_inputs",
            "Asks for a name, an LLM greeting and the roots at once, with a sealed requestState",
        ),
        tool(
            "test_input_required_result_multi_round",
            "Asks for a name, then a favourite colour, with a new requestState each round",
        ),
        tool(
            "test_input_required_result_capabilities",
            "Asks only for what the client declared: elicitation, sampling, roots",
        ),
        tool(
            "test_streaming_elicitation",
            "Asks for a value with input_required, never with a request on the response stream",
        ),
    ]
}

pub fn prompts() -> Vec<Prompt> {
    vec![Prompt::new(
        PROMPT,
        Some("Asks the user for the context to use (input key user_context)"),
        None,
    )]
}

/// Runs the asking tool `name`; `None` if `name` is not one.
pub async fn call(
    rounds: &Rounds,
    ctx: &RequestContext<RoleServer>,
    name: &str,
    args: &JsonObject,
    resume: Resume,
) -> Option<Result<CallToolResponse, ErrorData>> {
    let flow: ToolFlow<'_> = match name {
        "test_sampling" => {
            let prompt = match str_arg(args, "prompt") {
                Ok(prompt) => prompt,
                Err(err) => return Some(Err(err)),
            };
            Box::new(move |round| Ok(llm_reply(round, prompt)))
        }
        "test_elicitation" => {
            let message = match str_arg(args, "message") {
                Ok(message) => message,
                Err(err) => return Some(Err(err)),
            };
            let ask = Ask::elicit(message, user_info_schema());
            Box::new(move |round| Ok(form_reply(round, "User response", &ask)))
        }
        "test_elicitation_sep1034_defaults" => {
            let message = "Please review these values; every field has a default";
            let ask = Ask::elicit(message, defaults_schema());
            Box::new(move |round| Ok(form_reply(round, "Elicitation completed", &ask)))
        }
        "test_elicitation_sep1330_enums" => {
            let message = "Please pick from each kind of enum";
            let ask = Ask::elicit(message, enums_schema());
            Box::new(move |round| Ok(form_reply(round, "Elicitation completed", &ask)))
        }
        "test_input_required_result_elicitation" => Box::new(|round| Ok(greeting(round))),
        "test_input_required_result_sampling" => Box::new(|round| Ok(capital(round))),
        "test_input_required_result_list_roots" => Box::new(|round| Ok(roots(round))),
        "test_input_required_result_request_state"
        | "test_input_required_result_tampered_state" => Box::new(|round| Ok(confirmation(round))),
        "test_input_required_result_multiple_inputs" => Box::new(|round| Ok(all_at_once(round))),
        "test_input_required_result_multi_round" => Box::new(|round| Ok(two_rounds(round))),
        "test_input_required_result_capabilities" => {
            let declared = ctx.client_capabilities().unwrap_or_default();
            Box::new(move |round| Ok(what_was_declared(round, &declared)))
        }
        "test_streaming_elicitation" => Box::new(|round| Ok(streamed_value(round))),
        _ => return None,
    };
    let outcome = rounds.run(ctx, name, resume, flow).await;
    Some(match outcome {
        Ok(Outcome::Done(result)) => Ok(result.into()),
        Ok(Outcome::InputRequired(asked)) => Ok(asked.into()),
        Err(Refusal::Protocol(err)) => Err(err),
        // 2025-11-25 sessions: a tool error the caller can read, as these tools always answered.
        Err(Refusal::Undeclared(capability)) => Ok(err_text(format!(
            "The client did not declare the {capability} capability"
        ))
        .into()),
        Err(Refusal::Client(text)) => Ok(err_text(text).into()),
    })
}

/// `prompts/get` of [`PROMPT`].
pub async fn get_prompt(
    rounds: &Rounds,
    ctx: &RequestContext<RoleServer>,
    resume: Resume,
) -> Result<GetPromptResponse, ErrorData> {
    let outcome = rounds.run(ctx, PROMPT, resume, |round| Ok(prompt_context(round)));
    match outcome.await {
        Ok(Outcome::Done(result)) => Ok(result.into()),
        Ok(Outcome::InputRequired(asked)) => Ok(asked.into()),
        Err(Refusal::Protocol(err)) => Err(err),
        Err(Refusal::Undeclared(capability)) => Err(ErrorData::invalid_request(
            format!("{PROMPT} needs the {capability} capability, which the client did not declare"),
            None,
        )),
        Err(Refusal::Client(text)) => Err(ErrorData::internal_error(text, None)),
    }
}

// ---------------------------------------------------------------------------------------------
// The flows
// ---------------------------------------------------------------------------------------------

type ToolStep = Step<CallToolResult>;
type ToolFlow<'f> = Box<dyn Fn(Round<'_>) -> Result<ToolStep, ErrorData> + Send + Sync + 'f>;

fn ask(key: &'static str, ask: Ask, state: Option<Value>) -> ToolStep {
    Step::Ask {
        asks: vec![(key, ask)],
        state,
    }
}

/// `test_sampling`: "LLM response: <text>".
fn llm_reply(round: Round<'_>, prompt: &str) -> ToolStep {
    match round.sample("llm_reply") {
        Some(text) => Step::Done(ok_text(format!("LLM response: {text}"))),
        None => ask("llm_reply", Ask::sample(prompt, 100), None),
    }
}

/// The 2025 form tools: "<label>: action=<action>, content=<content JSON or null>".
fn form_reply(round: Round<'_>, label: &str, form: &Ask) -> ToolStep {
    match round.form("form") {
        Some(answer) => Step::Done(ok_text(format!(
            "{label}: action={}, content={}",
            answer.action(),
            answer.content()
        ))),
        None => ask("form", form.clone(), None),
    }
}

/// `test_input_required_result_elicitation`: "Hello, <name>!".
fn greeting(round: Round<'_>) -> ToolStep {
    match round.form("user_name") {
        Some(Form::Refused(action)) => Step::Done(ok_text(format!(
            "No name given: the user chose to {action}"
        ))),
        Some(answer) if answer.text("name").is_some() => {
            let name = answer.text("name").unwrap_or_default();
            Step::Done(ok_text(format!("Hello, {name}!")))
        }
        _ => ask(
            "user_name",
            Ask::elicit("What is your name?", one_string("name")),
            None,
        ),
    }
}

/// `test_input_required_result_sampling`: "Sampling response: <text>".
fn capital(round: Round<'_>) -> ToolStep {
    match round.sample("capital_question") {
        Some(text) => Step::Done(ok_text(format!("Sampling response: {text}"))),
        None => ask(
            "capital_question",
            Ask::sample("What is the capital of France?", 100),
            None,
        ),
    }
}

/// `test_input_required_result_list_roots`: "Client roots: <uri>, <uri>".
fn roots(round: Round<'_>) -> ToolStep {
    match round.roots("client_roots") {
        Some(uris) => Step::Done(ok_text(format!("Client roots: {}", uris.join(", ")))),
        None => ask("client_roots", Ask::Roots, None),
    }
}

/// `test_input_required_result_request_state` (and `_tampered_state`): finishes only with its
/// own state back, "state-ok: action=<action>, content=<content>".
fn confirmation(round: Round<'_>) -> ToolStep {
    let asked = round.state_field("asked") == Some(&json!("confirm"));
    match round.form("confirm") {
        Some(answer) if asked => Step::Done(ok_text(format!(
            "state-ok: action={}, content={}",
            answer.action(),
            answer.content()
        ))),
        _ => {
            let schema = json!({
                "type": "object",
                "properties": { "ok": { "type": "boolean" } },
                "required": ["ok"]
            });
            let state = json!({ "asked": "confirm" });
            ask(
                "confirm",
                Ask::elicit("Please confirm", schema),
                Some(state),
            )
        }
    }
}

/// `test_input_required_result_multiple_inputs`: all three answers and its state, or ask again.
fn all_at_once(round: Round<'_>) -> ToolStep {
    let asked = round.state_field("asked") == Some(&json!("all"));
    let answers = (
        round.form("user_name"),
        round.sample("greeting"),
        round.roots("client_roots"),
    );
    match answers {
        (Some(name), Some(greeting), Some(roots)) if asked => Step::Done(ok_text(format!(
            "All inputs received: name={}, greeting={greeting:?}, roots={}",
            name.content(),
            roots.join(", ")
        ))),
        _ => Step::Ask {
            asks: vec![
                (
                    "user_name",
                    Ask::elicit("What is your name?", one_string("name")),
                ),
                ("greeting", Ask::sample("Generate a greeting", 50)),
                ("client_roots", Ask::Roots),
            ],
            state: Some(json!({ "asked": "all" })),
        },
    }
}

/// `test_input_required_result_multi_round`: a name (round 1), then a colour (round 2), the state
/// carrying the name between them; "<name>'s favourite colour is <colour>".
fn two_rounds(round: Round<'_>) -> ToolStep {
    let step1 = || {
        ask(
            "step1",
            Ask::elicit("Step 1: What is your name?", one_string("name")),
            Some(json!({ "round": 1 })),
        )
    };
    let step2 = |name: &str| {
        ask(
            "step2",
            Ask::elicit("Step 2: What is your favorite color?", one_string("color")),
            Some(json!({ "round": 2, "name": name })),
        )
    };
    let refused = |step: u8, action: &str| {
        Step::Done(ok_text(format!(
            "Stopped at step {step}: the user chose to {action}"
        )))
    };
    match round.state_field("round").and_then(Value::as_u64) {
        Some(1) => match round.form("step1") {
            Some(Form::Refused(action)) => refused(1, action),
            Some(answer) => answer.text("name").map_or_else(step1, step2),
            None => step1(),
        },
        Some(2) => {
            let name = round.state_field("name").and_then(Value::as_str);
            match (name, round.form("step2")) {
                (_, Some(Form::Refused(action))) => refused(2, action),
                (Some(name), Some(answer)) if answer.text("color").is_some() => {
                    let color = answer.text("color").unwrap_or_default();
                    Step::Done(ok_text(format!("{name}'s favourite colour is {color}")))
                }
                (Some(name), _) => step2(name),
                (None, _) => step1(),
            }
        }
        _ => step1(),
    }
}

/// `test_input_required_result_capabilities`: asks only for what the client declared.
fn what_was_declared(round: Round<'_>, declared: &ClientCapabilities) -> ToolStep {
    let mut asks = Vec::new();
    if declared.elicitation.is_some() {
        asks.push((
            "user_name",
            Ask::elicit("What is your name?", one_string("name")),
        ));
    }
    if declared.sampling.is_some() {
        asks.push(("greeting", Ask::sample("Generate a greeting", 50)));
    }
    if declared.roots.is_some() {
        asks.push(("client_roots", Ask::Roots));
    }
    if asks.is_empty() {
        return Step::Done(ok_text(
            "The client declared none of elicitation, sampling and roots: nothing to ask",
        ));
    }
    let keys: Vec<&str> = asks.iter().map(|(key, _)| *key).collect();
    let asked = round.state_field("asked") == Some(&json!(keys));
    if asked && keys.iter().all(|key| round.answers.contains_key(*key)) {
        return Step::Done(ok_text(format!("Answered: {}", keys.join(", "))));
    }
    Step::Ask {
        asks,
        state: Some(json!({ "asked": keys })),
    }
}

/// `test_streaming_elicitation`: "Received: <content>".
fn streamed_value(round: Round<'_>) -> ToolStep {
    match round.form("value") {
        Some(answer) => Step::Done(ok_text(format!("Received: {}", answer.content()))),
        None => ask(
            "value",
            Ask::elicit("Provide a value", one_string("value")),
            None,
        ),
    }
}

/// [`PROMPT`]: a user message built from the context the user gave.
fn prompt_context(round: Round<'_>) -> Step<GetPromptResult> {
    let text = match round.form("user_context") {
        Some(Form::Refused(action)) => {
            format!("No context was given (the user chose to {action}).")
        }
        Some(answer) if answer.text("context").is_some() => {
            let context = answer.text("context").unwrap_or_default();
            format!("Write with this context in mind: {context}")
        }
        _ => {
            return Step::Ask {
                asks: vec![(
                    "user_context",
                    Ask::elicit("What context should the prompt use?", one_string("context")),
                )],
                state: None,
            };
        }
    };
    let message = PromptMessage::new(Role::User, ContentBlock::text(text));
    Step::Done(GetPromptResult::new(vec![message]))
}

// ---------------------------------------------------------------------------------------------
// Elicitation schemas of the 2025-11-25 scenarios
// ---------------------------------------------------------------------------------------------

fn user_info_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "username": { "type": "string", "description": "User's response" },
            "email": { "type": "string", "description": "User's email address" }
        },
        "required": ["username", "email"]
    })
}

/// SEP-1034: a default for every primitive type.
fn defaults_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "description": "User name", "default": "John Doe" },
            "age": { "type": "integer", "description": "User age", "default": 30 },
            "score": { "type": "number", "description": "User score", "default": 95.5 },
            "status": {
                "type": "string",
                "description": "User status",
                "enum": ["active", "inactive", "pending"],
                "default": "active"
            },
            "verified": { "type": "boolean", "description": "Verification status", "default": true }
        }
    })
}

/// SEP-1330: the five enum shapes (untitled/titled single, legacy enumNames, untitled/titled
/// multi).
fn enums_schema() -> Value {
    let titled = |titles: [&str; 3]| {
        let values = ["value1", "value2", "value3"];
        let pairs = values.iter().zip(titles);
        pairs
            .map(|(value, title)| json!({ "const": value, "title": title }))
            .collect::<Vec<_>>()
    };
    json!({
        "type": "object",
        "properties": {
            "untitledSingle": {
                "type": "string",
                "description": "Select one option",
                "enum": ["option1", "option2", "option3"]
            },
            "titledSingle": {
                "type": "string",
                "description": "Select one option with titles",
                "oneOf": titled(["First Option", "Second Option", "Third Option"])
            },
            "legacyEnum": {
                "type": "string",
                "description": "Select one option (legacy)",
                "enum": ["opt1", "opt2", "opt3"],
                "enumNames": ["Option One", "Option Two", "Option Three"]
            },
            "untitledMulti": {
                "type": "array",
                "description": "Select multiple options",
                "items": { "type": "string", "enum": ["option1", "option2", "option3"] }
            },
            "titledMulti": {
                "type": "array",
                "description": "Select multiple options with titles",
                "items": { "anyOf": titled(["First Choice", "Second Choice", "Third Choice"]) }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use rmcp::model::{ElicitationSchema, InputResponses};

    use super::*;

    /// rmcp parses elicitation schemas into typed enums; make sure no keyword the suite checks
    /// is lost on the way back out.
    #[test]
    fn elicitation_schemas_survive_rmcp_types() {
        for schema in [user_info_schema(), defaults_schema(), enums_schema()] {
            let typed: ElicitationSchema =
                serde_json::from_value(schema.clone()).expect("schema parses");
            let back = serde_json::to_value(typed).expect("schema serializes");
            assert_eq!(back["properties"], schema["properties"]);
        }
    }

    fn text(step: ToolStep) -> String {
        let Step::Done(result) = step else {
            panic!("expected a result, got {step:?}")
        };
        let block = result.content.first().and_then(|c| c.as_text().cloned());
        block.expect("text").text
    }

    fn asked(step: &ToolStep) -> (Vec<&'static str>, Option<Value>) {
        let Step::Ask { asks, state } = step else {
            panic!("expected asks, got {step:?}")
        };
        (asks.iter().map(|(key, _)| *key).collect(), state.clone())
    }

    fn answers(value: Value) -> InputResponses {
        serde_json::from_value(value).unwrap()
    }

    fn accept(content: Value) -> Value {
        json!({ "action": "accept", "content": content })
    }

    #[test]
    fn the_multi_round_flow_carries_the_name_to_round_two() {
        let none = InputResponses::new();
        let first = two_rounds(Round {
            state: None,
            answers: &none,
        });
        let (keys, state1) = asked(&first);
        assert_eq!(keys, ["step1"]);

        let given = answers(json!({ "step1": accept(json!({ "name": "Alice" })) }));
        let second = two_rounds(Round {
            state: state1.as_ref(),
            answers: &given,
        });
        let (keys, state2) = asked(&second);
        assert_eq!(keys, ["step2"]);
        assert_ne!(state1, state2, "each round has its own state");

        let given = answers(json!({ "step2": accept(json!({ "color": "blue" })) }));
        let last = two_rounds(Round {
            state: state2.as_ref(),
            answers: &given,
        });
        assert_eq!(text(last), "Alice's favourite colour is blue");
    }

    #[test]
    fn flows_ask_again_for_missing_or_malformed_answers() {
        for given in [
            json!({}),
            json!({ "wrong_key": accept(json!({ "data": "wrong" })) }),
            json!({ "user_name": 12345 }),
        ] {
            let given = answers(given);
            let step = greeting(Round {
                state: None,
                answers: &given,
            });
            assert_eq!(asked(&step).0, ["user_name"]);
        }
        // Without its state, the request-state flow asks again even when the answer is there.
        let given = answers(json!({ "confirm": accept(json!({ "ok": true })) }));
        let step = confirmation(Round {
            state: None,
            answers: &given,
        });
        assert_eq!(asked(&step).0, ["confirm"]);
    }

    #[test]
    fn the_capability_flow_asks_only_for_declared_capabilities() {
        let none = InputResponses::new();
        let round = Round {
            state: None,
            answers: &none,
        };
        let sampling_only = ClientCapabilities::builder().enable_sampling().build();
        assert_eq!(
            asked(&what_was_declared(round, &sampling_only)).0,
            ["greeting"]
        );
        let nothing = ClientCapabilities::default();
        assert!(text(what_was_declared(round, &nothing)).contains("nothing to ask"));
    }
}

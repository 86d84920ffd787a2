//! Flows that need the client's input — an elicitation form, an LLM sample, the client's roots —
//! asked for the way the caller's protocol era allows.
//!
//! Each flow is written once, as a step function: given the state it left in the last round and
//! the answers so far, it either asks for more ([`Step::Ask`]) or finishes ([`Step::Done`]).
//! [`Rounds::run`] drives it:
//! - a 2026-07-28 request gets one step per HTTP request: an `input_required` result carrying the
//!   asks and the flow's state sealed into `requestState` (HMAC, bound to the flow, short TTL);
//!   the client's retry brings the answers and the state back, and a state that does not open is
//!   refused with -32602;
//! - a 2025-11-25 session gets the asks as server-to-client requests inside the one call, and the
//!   flow runs round after round until it finishes.
//!
//! An ask for a capability the client did not declare is never sent: 2026-07-28 requests get
//! -32021 (`MissingRequiredClientCapabilityError`), 2025-11-25 sessions [`Refusal::Undeclared`],
//! which tools turn into an `isError` result as they always did.

// Sampling and roots are deprecated by SEP-2577 but are what these flows ask for, in both eras.
#![allow(deprecated)]

use std::{
    hash::{BuildHasher as _, RandomState},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use rmcp::{
    ErrorData, RoleServer,
    model::{
        ClientCapabilities, CreateMessageRequest, CreateMessageRequestParams, ElicitRequest,
        ElicitRequestParams, ElicitationSchema, InputRequest, InputRequests, InputRequiredResult,
        InputResponses, ListRootsRequest, ProtocolVersion, RequestStateCodec, SamplingMessage,
        SealOptions,
    },
    service::RequestContext,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

/// How long a sealed `requestState` stays good: long enough for a person to fill in a form.
const STATE_TTL: Duration = Duration::from_secs(600);
/// A 2025-11-25 flow that keeps asking after this many rounds is a fixture bug, not a client's.
const MAX_SESSION_ROUNDS: usize = 10;

/// One thing a flow needs from the client.
#[derive(Debug, Clone)]
pub enum Ask {
    /// A form-mode `elicitation/create`; `schema` is the requested schema (an object schema).
    Elicit { message: String, schema: Value },
    /// A `sampling/createMessage` of one user message.
    Sample { prompt: String, max_tokens: u32 },
    /// A `roots/list`.
    Roots,
}

/// What a flow does next: ask (keys name the answers it expects back, `state` is what it must
/// remember until then) or finish with `T`.
#[derive(Debug)]
pub enum Step<T> {
    Ask {
        asks: Vec<(&'static str, Ask)>,
        state: Option<Value>,
    },
    Done(T),
}

/// What a flow sees in a round: its own state from the last round (verified) and the answers.
#[derive(Debug, Clone, Copy)]
pub struct Round<'a> {
    pub state: Option<&'a Value>,
    pub answers: &'a InputResponses,
}

/// How a flow ended.
#[derive(Debug)]
pub enum Outcome<T> {
    Done(T),
    /// 2026-07-28 only: the `input_required` result to answer with.
    InputRequired(InputRequiredResult),
}

/// Why a 2025-11-25 flow could not finish (2026-07-28 requests get [`ErrorData`] instead).
#[derive(Debug)]
pub enum Refusal {
    Protocol(ErrorData),
    /// The client did not declare this capability (`sampling`, `elicitation`, `roots`).
    Undeclared(&'static str),
    /// The client's answer to a server-to-client request was an error: the text says which.
    Client(String),
}

impl From<ErrorData> for Refusal {
    fn from(err: ErrorData) -> Self {
        Self::Protocol(err)
    }
}

/// The retry fields of a `tools/call` or `prompts/get`.
#[derive(Debug, Default)]
pub struct Resume {
    pub answers: Option<InputResponses>,
    pub request_state: Option<String>,
}

/// Seals flow states for 2026-07-28 requests; one per process.
#[derive(Clone, Debug)]
pub struct Rounds {
    codec: RequestStateCodec,
}

impl Rounds {
    pub fn new(key: [u8; 32]) -> Self {
        const _: () = assert!(32 >= RequestStateCodec::MIN_KEY_LENGTH);
        let codec = RequestStateCodec::try_new(key.to_vec());
        Self {
            codec: codec.expect("a 32-byte key is long enough (asserted above)"),
        }
    }

    /// With a key new for every process: std's per-process random hasher seeds, the process id
    /// and the time, hashed together. No state outlives the server, so none needs a stable key.
    pub fn with_fresh_key() -> Self {
        let mut hasher = Sha256::new();
        for _ in 0..4 {
            hasher.update(RandomState::new().hash_one(0u8).to_le_bytes());
        }
        hasher.update(std::process::id().to_le_bytes());
        let now = SystemTime::now().duration_since(UNIX_EPOCH);
        hasher.update(now.unwrap_or_default().as_nanos().to_le_bytes());
        Self::new(hasher.finalize().into())
    }

    /// Runs `flow` for the request in `ctx`, in the caller's era. `binding` is what a sealed state
    /// is good for: the flow's name, and its arguments if a state must not serve other arguments.
    pub async fn run<T>(
        &self,
        ctx: &RequestContext<RoleServer>,
        binding: &str,
        resume: Resume,
        flow: impl Fn(Round<'_>) -> Result<Step<T>, ErrorData>,
    ) -> Result<Outcome<T>, Refusal> {
        let declared = ctx.client_capabilities().unwrap_or_default();
        if is_stateless(ctx) {
            self.one_round(binding, resume, &declared, flow)
                .map_err(Refusal::Protocol)
        } else {
            let done = in_session(ctx, &declared, flow).await?;
            Ok(Outcome::Done(done))
        }
    }

    /// One round of a 2026-07-28 request: open the state, run the step, seal the next state.
    fn one_round<T>(
        &self,
        binding: &str,
        resume: Resume,
        declared: &ClientCapabilities,
        flow: impl Fn(Round<'_>) -> Result<Step<T>, ErrorData>,
    ) -> Result<Outcome<T>, ErrorData> {
        let state = match &resume.request_state {
            None => None,
            Some(sealed) => Some(self.open(binding, sealed)?),
        };
        let answers = resume.answers.unwrap_or_default();
        let round = Round {
            state: state.as_ref(),
            answers: &answers,
        };
        match flow(round)? {
            Step::Done(done) => Ok(Outcome::Done(done)),
            Step::Ask { asks, state } => {
                let mut requests = InputRequests::new();
                for (key, ask) in asks {
                    if !ask.declared(declared) {
                        return Err(ErrorData::missing_required_client_capability(
                            ask.capability(),
                        ));
                    }
                    requests.insert(key.to_owned(), ask.into_input_request()?);
                }
                let sealed = state.map(|state| self.seal(binding, &state)).transpose()?;
                Ok(Outcome::InputRequired(InputRequiredResult::new(
                    Some(requests),
                    sealed,
                )))
            }
        }
    }

    fn seal(&self, binding: &str, state: &Value) -> Result<String, ErrorData> {
        let options = SealOptions::new()
            .associated_data(binding.as_bytes())
            .ttl(STATE_TTL);
        self.codec.seal_json_with(state, &options).map_err(|err| {
            ErrorData::internal_error(format!("cannot seal the requestState: {err}"), None)
        })
    }

    fn open(&self, binding: &str, sealed: &str) -> Result<Value, ErrorData> {
        self.codec
            .open_json_with(sealed, binding.as_bytes())
            .map_err(|err| {
                ErrorData::invalid_params(
                    format!(
                        "requestState refused ({err}): this server did not issue it for this \
                         call, or it was changed, or it has expired; call again without \
                         requestState and inputResponses to start over"
                    ),
                    None,
                )
            })
    }
}

/// Whether the request is served statelessly (2026-07-28 or later): no server-to-client
/// requests, only `input_required` results.
pub fn is_stateless(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.protocol_version()
        .is_some_and(|v| v.as_str() >= ProtocolVersion::V_2026_07_28.as_str())
}

/// A whole flow inside one 2025-11-25 call: every ask becomes a server-to-client request.
async fn in_session<T>(
    ctx: &RequestContext<RoleServer>,
    declared: &ClientCapabilities,
    flow: impl Fn(Round<'_>) -> Result<Step<T>, ErrorData>,
) -> Result<T, Refusal> {
    let mut state = None;
    let mut answers = InputResponses::new();
    for _ in 0..MAX_SESSION_ROUNDS {
        let round = Round {
            state: state.as_ref(),
            answers: &answers,
        };
        let (asks, next) = match flow(round)? {
            Step::Done(done) => return Ok(done),
            Step::Ask { asks, state } => (asks, state),
        };
        answers = InputResponses::new();
        for (key, ask) in asks {
            if !ask.declared(declared) {
                return Err(Refusal::Undeclared(ask.capability_name()));
            }
            answers.insert(key.to_owned(), ask.send(ctx).await?);
        }
        state = next;
    }
    Err(Refusal::Protocol(ErrorData::internal_error(
        format!("the fixture's flow asked for input more than {MAX_SESSION_ROUNDS} times"),
        None,
    )))
}

impl Ask {
    pub fn elicit(message: impl Into<String>, schema: Value) -> Self {
        Self::Elicit {
            message: message.into(),
            schema,
        }
    }

    pub fn sample(prompt: impl Into<String>, max_tokens: u32) -> Self {
        Self::Sample {
            prompt: prompt.into(),
            max_tokens,
        }
    }

    fn capability_name(&self) -> &'static str {
        match self {
            Self::Elicit { .. } => "elicitation",
            Self::Sample { .. } => "sampling",
            Self::Roots => "roots",
        }
    }

    fn capability(&self) -> ClientCapabilities {
        let builder = ClientCapabilities::builder();
        match self {
            Self::Elicit { .. } => builder.enable_elicitation().build(),
            Self::Sample { .. } => builder.enable_sampling().build(),
            Self::Roots => builder.enable_roots().build(),
        }
    }

    fn declared(&self, caps: &ClientCapabilities) -> bool {
        match self {
            Self::Elicit { .. } => caps.elicitation.is_some(),
            Self::Sample { .. } => caps.sampling.is_some(),
            Self::Roots => caps.roots.is_some(),
        }
    }

    fn elicit_params(message: String, schema: Value) -> Result<ElicitRequestParams, ErrorData> {
        let requested_schema: ElicitationSchema = serde_json::from_value(schema)
            .map_err(|err| ErrorData::internal_error(format!("bad fixture schema: {err}"), None))?;
        Ok(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema,
        })
    }

    fn sample_params(prompt: String, max_tokens: u32) -> CreateMessageRequestParams {
        CreateMessageRequestParams::new(vec![SamplingMessage::user_text(prompt)], max_tokens)
    }

    fn into_input_request(self) -> Result<InputRequest, ErrorData> {
        Ok(match self {
            Self::Elicit { message, schema } => {
                InputRequest::Elicitation(ElicitRequest::new(Self::elicit_params(message, schema)?))
            }
            Self::Sample { prompt, max_tokens } => InputRequest::CreateMessage(
                CreateMessageRequest::new(Self::sample_params(prompt, max_tokens)),
            ),
            Self::Roots => InputRequest::ListRoots(ListRootsRequest::default()),
        })
    }

    /// Sends the ask as a server-to-client request and returns the answer as JSON, the shape a
    /// 2026-07-28 client puts in `inputResponses`.
    #[allow(deprecated)] // sampling and roots are what 2025-11-25 clients answer
    async fn send(self, ctx: &RequestContext<RoleServer>) -> Result<Value, Refusal> {
        let peer = &ctx.peer;
        let answer = match self {
            Self::Elicit { message, schema } => {
                let params = Self::elicit_params(message, schema)?;
                let reply = peer.create_elicitation(params).await;
                reply
                    .map(serde_json::to_value)
                    .map_err(|e| format!("Elicitation failed: {e}"))
            }
            Self::Sample { prompt, max_tokens } => {
                let params = Self::sample_params(prompt, max_tokens);
                let reply = peer.create_message(params).await;
                reply
                    .map(serde_json::to_value)
                    .map_err(|e| format!("Sampling failed: {e}"))
            }
            Self::Roots => {
                let reply = peer.list_roots().await;
                reply
                    .map(serde_json::to_value)
                    .map_err(|e| format!("Listing roots failed: {e}"))
            }
        };
        match answer {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(Refusal::Protocol(ErrorData::internal_error(
                format!("cannot read the client's answer: {err}"),
                None,
            ))),
            Err(text) => Err(Refusal::Client(text)),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Reading answers. An answer that does not have the expected shape counts as no answer: the flow
// asks again, as SEP-2322 recommends for missing or malformed input responses.
// ---------------------------------------------------------------------------------------------

/// An answer to an elicitation: the user's action and, when accepted, the form's content.
#[derive(Debug, Clone, PartialEq)]
pub enum Form<'a> {
    Accepted(&'a serde_json::Map<String, Value>),
    /// `decline` or `cancel`.
    Refused(&'a str),
}

impl Form<'_> {
    pub fn action(&self) -> &str {
        match self {
            Form::Accepted(_) => "accept",
            Form::Refused(action) => action,
        }
    }

    /// The accepted content as JSON (`null` when refused), for echoing back.
    pub fn content(&self) -> Value {
        match self {
            Form::Accepted(content) => Value::Object((*content).clone()),
            Form::Refused(_) => Value::Null,
        }
    }

    /// A string field of the accepted content.
    pub fn text(&self, field: &str) -> Option<&str> {
        match self {
            Form::Accepted(content) => content.get(field).and_then(Value::as_str),
            Form::Refused(_) => None,
        }
    }
}

impl<'a> Round<'a> {
    pub fn form(&self, key: &str) -> Option<Form<'a>> {
        let answer = self.answers.get(key)?;
        match answer.get("action")?.as_str()? {
            "accept" => answer
                .get("content")
                .and_then(Value::as_object)
                .map(Form::Accepted),
            action @ ("decline" | "cancel") => Some(Form::Refused(action)),
            _ => None,
        }
    }

    /// The text of a sampling answer (`content` one block or a list of blocks; empty when no
    /// block is text).
    pub fn sample(&self, key: &str) -> Option<&'a str> {
        let content = self.answers.get(key)?.get("content")?;
        let text = |block: &'a Value| block.get("text").and_then(Value::as_str);
        let found = match content {
            Value::Array(blocks) => blocks.iter().find_map(text),
            block => text(block),
        };
        Some(found.unwrap_or_default())
    }

    /// The URIs of a `roots/list` answer.
    pub fn roots(&self, key: &str) -> Option<Vec<&'a str>> {
        let roots = self.answers.get(key)?.get("roots")?.as_array()?;
        Some(
            roots
                .iter()
                .filter_map(|root| root.get("uri").and_then(Value::as_str))
                .collect(),
        )
    }

    /// A field of the flow's own state.
    pub fn state_field(&self, field: &str) -> Option<&'a Value> {
        self.state?.get(field)
    }
}

/// An object schema with one required string property.
pub fn one_string(name: &str) -> Value {
    json!({
        "type": "object",
        "properties": { name: { "type": "string" } },
        "required": [name]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers(value: Value) -> InputResponses {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn answers_of_the_wrong_shape_count_as_missing() {
        let given = answers(json!({
            "number": 12345,
            "no_action": { "content": { "name": "x" } },
            "accepted_without_content": { "action": "accept" },
            "declined": { "action": "decline" },
            "named": { "action": "accept", "content": { "name": "Alice" } },
            "sample_block": { "role": "assistant", "content": { "type": "text", "text": "Paris" } },
            "sample_list": { "content": [{ "type": "image" }, { "type": "text", "text": "Hi" }] },
            "sample_image": { "content": { "type": "image" } },
            "roots": { "roots": [{ "uri": "file:///a" }, { "name": "no uri" }] }
        }));
        let round = Round {
            state: None,
            answers: &given,
        };
        assert_eq!(round.form("number"), None);
        assert_eq!(round.form("no_action"), None);
        assert_eq!(round.form("accepted_without_content"), None);
        assert_eq!(round.form("missing"), None);
        assert_eq!(round.form("declined"), Some(Form::Refused("decline")));
        assert_eq!(round.form("named").unwrap().text("name"), Some("Alice"));
        assert_eq!(round.sample("sample_block"), Some("Paris"));
        assert_eq!(round.sample("sample_list"), Some("Hi"));
        assert_eq!(round.sample("sample_image"), Some(""));
        assert_eq!(round.sample("number"), None);
        assert_eq!(round.roots("roots"), Some(vec!["file:///a"]));
        assert_eq!(round.roots("named"), None);
    }

    fn rounds() -> Rounds {
        Rounds::new([7; 32])
    }

    /// Asks for a name, remembering that it did; finishes once the state and the name are back.
    fn flow(round: Round<'_>) -> Result<Step<String>, ErrorData> {
        match (round.state_field("asked"), round.form("name")) {
            (Some(_), Some(form)) => Ok(Step::Done(form.text("name").unwrap_or("?").to_owned())),
            _ => Ok(Step::Ask {
                asks: vec![("name", Ask::elicit("Name?", one_string("name")))],
                state: Some(json!({ "asked": true })),
            }),
        }
    }

    fn all_capabilities() -> ClientCapabilities {
        ClientCapabilities::builder()
            .enable_elicitation()
            .enable_sampling()
            .enable_roots()
            .build()
    }

    #[test]
    fn a_stateless_round_trip_seals_and_opens_the_state() {
        let rounds = rounds();
        let caps = all_capabilities();
        let first = rounds.one_round("greet", Resume::default(), &caps, flow);
        let Ok(Outcome::InputRequired(asked)) = first else {
            panic!("expected input_required, got {first:?}");
        };
        let sealed = asked.request_state.clone().expect("state sealed");
        assert!(asked.input_requests.unwrap().contains_key("name"));
        let resume = Resume {
            answers: Some(answers(
                json!({ "name": { "action": "accept", "content": { "name": "Ada" } } }),
            )),
            request_state: Some(sealed.clone()),
        };
        let done = rounds.one_round("greet", resume, &caps, flow);
        assert!(
            matches!(done, Ok(Outcome::Done(ref name)) if name == "Ada"),
            "{done:?}"
        );

        // The same state is refused for another flow, and when changed.
        for (name, state) in [("other", sealed.clone()), ("greet", format!("{sealed}x"))] {
            let resume = Resume {
                answers: None,
                request_state: Some(state),
            };
            let refused = rounds.one_round(name, resume, &caps, flow);
            assert!(
                matches!(&refused, Err(err) if err.code.0 == -32602),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn an_undeclared_capability_is_refused_with_32021() {
        let caps = ClientCapabilities::builder().enable_sampling().build();
        let refused = rounds().one_round("greet", Resume::default(), &caps, flow);
        let Err(err) = refused else {
            panic!("expected -32021, got {refused:?}")
        };
        assert_eq!(err.code.0, -32021);
        let data = err.data.expect("data");
        assert!(
            data["requiredCapabilities"]["elicitation"].is_object(),
            "{data}"
        );
    }
}

//! The demo tools. Every answer depends only on the arguments, so tests can assert on them.

use std::time::Duration;

use rmcp::{
    RoleServer, ServerHandler,
    handler::server::{common::schema_for_output, router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CallToolResult, ContentBlock, Implementation, ProgressNotificationParam,
        ServerCapabilities, ServerConfig,
    },
    schemars::{self, JsonSchema},
    service::RequestContext,
    tool, tool_handler, tool_router,
};
use serde::{Deserialize, Serialize};

/// Longest sleep `slow` accepts: enough to trip any sensible gateway timeout, short enough that
/// a typo cannot park a request for hours.
pub const MAX_SLOW_MILLIS: u64 = 60_000;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct EchoArgs {
    /// The text to send back.
    pub text: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct AddArgs {
    /// The first number.
    pub a: f64,
    /// The second number.
    pub b: f64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct AddOutput {
    /// a + b
    pub sum: f64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct WordCountArgs {
    /// The text to count words in.
    pub text: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct WordCountOutput {
    /// Runs of non-whitespace characters.
    pub words: usize,
    /// Unicode scalar values, whitespace included.
    pub characters: usize,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct SlowArgs {
    /// How long to sleep, in milliseconds (at most 60000).
    pub millis: u64,
}

#[derive(Debug, Deserialize, JsonSchema)]
pub struct FailArgs {
    /// The error message to return.
    pub message: String,
}

/// The demo MCP server: a handful of small tools that show what the gateway does to calls.
#[derive(Debug, Clone)]
pub struct DemoServer {
    tool_router: ToolRouter<Self>,
}

impl Default for DemoServer {
    fn default() -> Self {
        Self::new()
    }
}

#[tool_router]
impl DemoServer {
    pub fn new() -> Self {
        Self {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(
        title = "Echo",
        description = "Returns the given text unchanged.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    fn echo(&self, Parameters(args): Parameters<EchoArgs>) -> String {
        args.text
    }

    #[tool(
        title = "Add",
        description = "Adds two numbers. Returns the sum as text and as structured content {\"sum\": number}.",
        output_schema = schema_for_output::<AddOutput>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> CallToolResult {
        let sum = a + b;
        // JSON has no infinity: serde_json would turn it into null and break the output schema.
        if !sum.is_finite() {
            return error_text("the sum is too large to represent");
        }
        structured(sum.to_string(), &AddOutput { sum })
    }

    #[tool(
        title = "Word count",
        description = "Counts the words (whitespace-separated) and characters of a text. Returns the word count as text and both counts as structured content.",
        output_schema = schema_for_output::<WordCountOutput>(),
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    fn word_count(&self, Parameters(args): Parameters<WordCountArgs>) -> CallToolResult {
        let counts = WordCountOutput {
            words: args.text.split_whitespace().count(),
            characters: args.text.chars().count(),
        };
        structured(counts.words.to_string(), &counts)
    }

    #[tool(
        title = "Slow",
        description = "Sleeps for `millis` milliseconds (capped at 60000), then says how long it slept. Use it to see the gateway's timeouts at work.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn slow(
        &self,
        Parameters(args): Parameters<SlowArgs>,
        ctx: RequestContext<RoleServer>,
    ) -> CallToolResult {
        let millis = args.millis.min(MAX_SLOW_MILLIS);
        // Say "started" to a caller that asked for progress, so it knows the call is running.
        if let Some(token) = ctx.meta.get_progress_token() {
            let started = ProgressNotificationParam::new(token, 0.0)
                .with_total(millis as f64)
                .with_message("started");
            let _ = ctx.peer.notify_progress(started).await;
        }
        // rmcp does not drop a handler whose request was cancelled; stop sleeping ourselves.
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(millis)) => {
                CallToolResult::success(vec![ContentBlock::text(format!("Slept {millis} ms"))])
            }
            () = ctx.ct.cancelled() => error_text("cancelled"),
        }
    }

    #[tool(
        title = "Fail",
        description = "Always fails: returns a tool error (isError: true) carrying the given message.",
        annotations(read_only_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    fn fail(&self, Parameters(args): Parameters<FailArgs>) -> CallToolResult {
        error_text(args.message)
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for DemoServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = ServerCapabilities::builder().enable_tools().build();
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                "portcullis-demo",
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(
                "Demo tools for trying Portcullis: echo, add, word_count, slow (timeouts) and \
                 fail (tool errors).",
            )
    }
}

/// A success carrying `text` for people and `value` as structured content for programs.
fn structured(text: String, value: &impl Serialize) -> CallToolResult {
    match serde_json::to_value(value) {
        Ok(value) => {
            let mut result = CallToolResult::success(vec![ContentBlock::text(text)]);
            result.structured_content = Some(value);
            result
        }
        Err(err) => error_text(format!("cannot encode the result: {err}")),
    }
}

fn error_text(text: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(text)])
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn add_returns_text_and_structured_sum() {
        let result = DemoServer::new().add(Parameters(AddArgs { a: 2.0, b: 0.5 }));
        assert_eq!(result.is_error, Some(false));
        assert_eq!(
            result.content[0].as_text().map(|t| t.text.as_str()),
            Some("2.5")
        );
        assert_eq!(result.structured_content, Some(json!({ "sum": 2.5 })));
    }

    #[test]
    fn add_refuses_an_infinite_sum() {
        let result = DemoServer::new().add(Parameters(AddArgs {
            a: f64::MAX,
            b: f64::MAX,
        }));
        assert_eq!(result.is_error, Some(true));
    }

    #[test]
    fn word_count_counts_words_and_characters() {
        let text = "  the quick\tbrown\nfox ".to_owned();
        let result = DemoServer::new().word_count(Parameters(WordCountArgs { text }));
        assert_eq!(
            result.content[0].as_text().map(|t| t.text.as_str()),
            Some("4")
        );
        assert_eq!(
            result.structured_content,
            Some(json!({ "words": 4, "characters": 22 }))
        );
    }

    #[test]
    fn fail_is_a_tool_error() {
        let message = "boom".to_owned();
        let result = DemoServer::new().fail(Parameters(FailArgs { message }));
        assert_eq!(result.is_error, Some(true));
        assert_eq!(
            result.content[0].as_text().map(|t| t.text.as_str()),
            Some("boom")
        );
    }

    #[test]
    fn tools_are_listed_with_schemas() {
        let tools = DemoServer::new().tool_router.list_all();
        let mut names: Vec<_> = tools.iter().map(|t| t.name.as_ref()).collect();
        names.sort_unstable();
        assert_eq!(names, ["add", "echo", "fail", "slow", "word_count"]);
        let add = tools
            .iter()
            .find(|t| t.name == "add")
            .expect("add is listed");
        assert!(add.output_schema.is_some());
        assert_eq!(add.input_schema.get("required"), Some(&json!(["a", "b"])));
    }
}

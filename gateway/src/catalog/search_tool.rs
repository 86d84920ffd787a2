//! The gateway's own tool-search tool as the catalog lists it (`[catalog] search_tool =
//! true`); `server/search.rs` answers its calls, `search.rs` ranks.

use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Value, json};

/// The tool's name. A target tool of the same name is a catalog conflict (a load error).
pub const SEARCH_TOOL: &str = "search_tools";

/// Tools returned when the caller gives no `limit`, and the most it may ask for.
pub const DEFAULT_LIMIT: usize = 10;
pub const MAX_LIMIT: usize = 50;

/// The search tool as `tools/list` shows it.
pub fn tool() -> Tool {
    let schema = json!({
        "type": "object",
        "properties": {
            "query": {
                "type": "string",
                "description": "The task in plain words, e.g. \"open a bug report in the issue tracker\""
            },
            "limit": {
                "type": "integer", "minimum": 1, "maximum": MAX_LIMIT,
                "description": format!("How many tools to return (default {DEFAULT_LIMIT})")
            }
        },
        "required": ["query"]
    });
    let Value::Object(schema) = schema else {
        unreachable!("a json! object literal is an object")
    };
    Tool::new_with_raw(
        SEARCH_TOOL,
        Some(
            "Find the tools for a task among all the tools this gateway offers you. Describe \
             the task in plain words; the best matching tools come back (name, description and \
             input schema), best first. Use it when the tool you need is not in your list."
                .into(),
        ),
        Arc::new(schema),
    )
    .with_annotations(
        ToolAnnotations::new()
            .read_only(true)
            .idempotent(true)
            .open_world(false),
    )
}

//! The gateway's own tool-search tool (`[catalog] search_tool = true`): an agent facing
//! thousands of tools describes its task and gets the few that fit, best first. It ranks
//! only what the caller could list: a tool the policies hide from them is never returned.

use rmcp::model::{CallToolResult, ContentBlock, JsonObject};
use serde_json::{Value, json};

use crate::catalog::View;
use crate::catalog::search_tool::{DEFAULT_LIMIT, MAX_LIMIT, SEARCH_TOOL};
use crate::policy::Lister;

/// Answer a call of the search tool for the caller `lister` lists for.
pub fn answer(view: &View, lister: &Lister<'_>, arguments: Option<&JsonObject>) -> CallToolResult {
    let query = arguments
        .and_then(|a| a.get("query"))
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or("");
    if query.is_empty() {
        return CallToolResult::error(vec![ContentBlock::text(
            "argument `query` is required: describe the task in plain words, e.g. \"list my open pull requests\"",
        )]);
    }
    let limit = match arguments.and_then(|a| a.get("limit")) {
        None | Some(Value::Null) => DEFAULT_LIMIT,
        Some(v) => match v.as_u64() {
            Some(n @ 1..) => usize::try_from(n).unwrap_or(MAX_LIMIT).min(MAX_LIMIT),
            _ => {
                return CallToolResult::error(vec![ContentBlock::text(format!(
                    "argument `limit` must be a whole number from 1 to {MAX_LIMIT}"
                ))]);
            }
        },
    };
    let tools = &view.tools;
    let hits = view.search_index().search(query, limit, |doc| {
        tools[doc].name != SEARCH_TOOL && lister.shows(&tools[doc].name)
    });
    let found: Vec<Value> = hits
        .iter()
        .map(|hit| {
            let t = &tools[hit.doc];
            let mut entry = json!({
                "name": t.name,
                "description": t.description,
                "inputSchema": t.input_schema,
            });
            if let Some(title) = &t.title {
                entry["title"] = json!(title);
            }
            if let Some(a) = &t.annotations {
                entry["annotations"] = json!(a);
            }
            entry
        })
        .collect();
    CallToolResult::structured(json!({ "tools": found }))
}

//! The one place where failures become JSON-RPC errors. Codes are stable and documented in
//! docs/targets.md, so clients and operators can tell whose fault a failure is.

use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use serde_json::json;

use crate::targets::TargetError;

/// The target did not answer within its `timeout` (same code the TypeScript SDK uses).
pub const TARGET_TIMEOUT: ErrorCode = ErrorCode(-32001);
/// The target is down or its session was lost.
pub const TARGET_UNAVAILABLE: ErrorCode = ErrorCode(-32003);

pub fn from_target(e: &TargetError) -> ErrorData {
    match e {
        TargetError::Unavailable { target, .. } => ErrorData::new(
            TARGET_UNAVAILABLE,
            format!(
                "{e}. The gateway keeps reconnecting; retry shortly, or ask the operator to check the target."
            ),
            Some(json!({ "target": target })),
        ),
        TargetError::Timeout { target, after } => ErrorData::new(
            TARGET_TIMEOUT,
            e.to_string(),
            Some(json!({ "target": target, "timeout_ms": after.as_millis() as u64 })),
        ),
        // The upstream's own error, with its code, so clients see what the tool said.
        TargetError::Credential { target, .. } => ErrorData::new(
            TARGET_UNAVAILABLE,
            e.to_string(),
            Some(json!({ "target": target })),
        ),
        TargetError::Upstream { target, error } => ErrorData::new(
            error.code,
            format!("target `{target}`: {}", error.message),
            error.data.clone(),
        ),
    }
}

pub fn unknown_tool(name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("unknown tool `{name}`; call tools/list for the names this gateway serves"),
        None,
    )
}

pub fn unknown_prompt(name: &str) -> ErrorData {
    ErrorData::invalid_params(
        format!("unknown prompt `{name}`; call prompts/list for the names this gateway serves"),
        None,
    )
}

pub fn unknown_resource(uri: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::RESOURCE_NOT_FOUND,
        format!(
            "no target serves resource `{uri}`; call resources/list or resources/templates/list"
        ),
        Some(json!({ "uri": uri })),
    )
}

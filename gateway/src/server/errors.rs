//! The one place where failures become JSON-RPC errors. Codes and texts are stable and
//! documented in docs/errors.md, so clients and operators can tell whose fault a failure is.

use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::ErrorCode;
use serde_json::json;

use crate::targets::TargetError;

/// The target did not answer within its `timeout` (same code the TypeScript SDK uses).
pub const TARGET_TIMEOUT: ErrorCode = ErrorCode(-32001);
/// A caller may not do this: a missing scope, or the policies deny it. Not -32600 ("Invalid
/// Request"): the request is well-formed, the caller is not allowed.
pub const FORBIDDEN: ErrorCode = ErrorCode(-32004);
/// The target is down or its session was lost.
pub const TARGET_UNAVAILABLE: ErrorCode = ErrorCode(-32003);

/// The policies denied `what` ("the call to tool `X`", "prompt `P`"): -32004 with the
/// reason, and the determining policies' ids only when `[policies] show_policy_ids` allows —
/// never their text. `data` names the subject; `reason` and `policies` are added.
pub fn denied_by_policy(
    what: &str,
    mut data: serde_json::Value,
    denial: &crate::policy::Denial,
) -> ErrorData {
    let shown = denial.show_ids && !denial.policies.is_empty();
    let mut message = format!("{what} was denied by policy: {}", denial.reason);
    if shown {
        message = format!(
            "{message} (determining policies: {})",
            denial.policies.join(", ")
        );
    }
    message.push_str("; ask your gateway's administrators if you need this");
    data["reason"] = json!("policy");
    if shown {
        data["policies"] = json!(denial.policies);
    }
    ErrorData::new(FORBIDDEN, message, Some(data))
}

pub fn from_target(e: &TargetError) -> ErrorData {
    match e {
        TargetError::Unavailable { target, .. } => ErrorData::new(
            TARGET_UNAVAILABLE,
            format!("{e}. {KEEPS_RECONNECTING}"),
            Some(json!({ "target": target })),
        ),
        TargetError::Refused { target, .. } => ErrorData::new(
            TARGET_UNAVAILABLE,
            e.to_string(),
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

const KEEPS_RECONNECTING: &str =
    "The gateway keeps reconnecting; retry shortly, or ask the operator to check the target.";

/// A tool name carrying the prefix of a target whose tools are not known yet: it is still
/// on its first connection attempt (`connecting_for`), or that attempt failed (`reason`).
pub fn tools_not_known(target: &str, connecting_for: Option<Duration>, reason: &str) -> ErrorData {
    let message = match connecting_for {
        Some(d) => format!(
            "target `{target}` is still connecting (for {} s); its tools are not known yet — retry in a few seconds",
            d.as_secs()
        ),
        None => format!(
            "target `{target}` is unavailable: {reason}; its tools are not known until it connects. {KEEPS_RECONNECTING}"
        ),
    };
    ErrorData::new(
        TARGET_UNAVAILABLE,
        message,
        Some(json!({ "target": target, "connecting": connecting_for.is_some() })),
    )
}

/// `pending`: targets without a prefix whose tools are not known yet — the tool may be
/// theirs.
pub fn unknown_tool(name: &str, pending: &[&str]) -> ErrorData {
    let mut message =
        format!("unknown tool `{name}`; call tools/list for the names this gateway serves");
    if !pending.is_empty() {
        let names: Vec<String> = pending.iter().map(|t| format!("`{t}`")).collect();
        message.push_str(&format!(
            ". Not connected yet, so their tools are not listed: {}",
            names.join(", ")
        ));
    }
    ErrorData::invalid_params(message, None)
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

//! Why a `tools/call` did not end with the upstream's result, typed by who is at fault, and
//! the one `match` that turns each case into what the caller receives — a JSON-RPC error, a
//! tool result with `isError`, or (for consent in the 2026-07-28 era) an `input_required`
//! result. docs/errors.md and docs/architecture.md list the mapping; a table-driven test below
//! holds every variant to it in both protocol eras.

use std::time::Duration;

use rmcp::ErrorData;
use rmcp::model::{
    CallToolResponse, CallToolResult, ContentBlock, ElicitRequest, ElicitRequestParams, ErrorCode,
    InputRequest, InputRequests, InputRequiredResult, ResultType,
};
use serde_json::json;

use super::errors;
use crate::targets::TargetError;

pub use super::errors::FORBIDDEN;
/// The user must first grant access in a browser (MCP URL elicitation, 2025-11-25).
pub const URL_ELICITATION_REQUIRED: ErrorCode = ErrorCode(-32042);
/// The caller cancelled the call (the LSP/JSON-RPC convention; MCP sends no answer at all to
/// a cancelled request, so this code is seen in the audit trail, not by the caller).
pub const CANCELLED: ErrorCode = ErrorCode(-32800);

/// The MCP protocol era of the calling client: what a consent requirement looks like differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Era {
    /// 2025-11-25 and earlier: sessions, server→client requests, error -32042.
    Sessions,
    /// 2026-07-28: stateless, `input_required` results.
    Stateless,
}

/// What the calling client can receive: its era, and whether it declared URL-mode
/// elicitation (`capabilities.elicitation.url`), without which a consent URL can only be
/// given as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientKind {
    pub era: Era,
    pub url_elicitation: bool,
}

/// How a call failed, by whose fault.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The caller named a tool this gateway does not serve. `pending`: targets without a
    /// prefix that are not connected yet (the tool may be theirs).
    #[error("unknown tool `{name}`")]
    UnknownTool { name: String, pending: Vec<String> },
    /// The tool's target is not connected, so its tools are not known yet.
    #[error("target `{target}` is not connected")]
    NotConnected {
        target: String,
        /// `Some` while the first connection attempt is still running.
        connecting_for: Option<Duration>,
        reason: String,
    },
    /// Authorization refused the call: the token lacks scopes the tool needs.
    #[error("tool `{tool}` needs the scope(s) {}", missing.join(" "))]
    Forbidden { tool: String, missing: Vec<String> },
    /// The policies (`policies/*.cedar`) deny this call.
    #[error("tool `{tool}`: denied by policy ({})", denial.reason)]
    Denied {
        tool: String,
        denial: crate::policy::Denial,
    },
    /// The user has not granted the agent access to the target's provider yet: they must
    /// open `url` (bound to their identity) in a browser, then the agent retries.
    #[error("access to target `{target}` needs the user's consent")]
    ConsentRequired {
        target: String,
        url: String,
        elicitation_id: String,
        message: String,
        /// For a 2026-07-28 client: the sealed state its retry echoes
        /// (`request_state.rs`), bound to the caller, the tool and the arguments.
        request_state: String,
    },
    /// A 2026-07-28 retry echoed a `requestState` that was not sealed for this caller, tool
    /// and arguments, or has expired.
    #[error("the requestState of this retry was refused: {0}")]
    StateRefused(crate::request_state::StateRefused),
    /// The upstream asked the caller for something the caller did not declare it can do
    /// (sampling, elicitation, roots): asking would fail or hang, so the call ends here.
    #[error("tool `{tool}` needs the client capability {}", need.capability())]
    MissingCapability {
        tool: String,
        target: String,
        need: crate::input::Need,
    },
    /// A 2026-07-28 retry answered a question with something that is not an answer to it.
    #[error("{0}")]
    BadAnswer(crate::input::BadAnswer),
    /// The target's credential could not be obtained (token endpoint, STS, …).
    #[error("{0}")]
    Credential(TargetError),
    /// The target failed: down, timed out, or answered with its own error.
    #[error("{0}")]
    Target(TargetError),
    /// The client cancelled the call.
    #[error("the client cancelled the call")]
    Cancelled,
    /// A bug or broken invariant inside the gateway.
    #[error("{0}")]
    Internal(String),
}

impl From<TargetError> for CallError {
    fn from(e: TargetError) -> Self {
        match e {
            TargetError::Credential { .. } => Self::Credential(e),
            other => Self::Target(other),
        }
    }
}

impl CallError {
    /// Whether the gateway decided against the call (audited as `deny`), as opposed to the
    /// call failing on its way.
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            Self::UnknownTool { .. }
                | Self::Forbidden { .. }
                | Self::Denied { .. }
                | Self::StateRefused(_)
        )
    }

    /// What the caller receives. The one place call failures are mapped.
    pub fn respond(self, client: ClientKind) -> Result<CallToolResponse, ErrorData> {
        match self {
            Self::UnknownTool { name, pending } => {
                let pending: Vec<&str> = pending.iter().map(String::as_str).collect();
                Err(errors::unknown_tool(&name, &pending))
            }
            Self::NotConnected {
                target,
                connecting_for,
                reason,
            } => Err(errors::tools_not_known(&target, connecting_for, &reason)),
            Self::Forbidden { tool, missing } => Err(ErrorData::new(
                FORBIDDEN,
                format!(
                    "tool `{tool}` needs the scope(s) {}, which your token does not carry; sign in again asking for them",
                    missing.join(" ")
                ),
                Some(json!({ "tool": tool, "missing_scopes": missing })),
            )),
            // Never the policy text; the ids only when `[policies] show_policy_ids` allows.
            Self::Denied { tool, denial } => Err(errors::denied_by_policy(
                &format!("the call to tool `{tool}`"),
                json!({ "tool": tool }),
                &denial,
            )),
            // A client that cannot open URLs for its user still gets the link, as text to
            // show: every client works.
            Self::ConsentRequired { url, message, .. } if !client.url_elicitation => {
                let text = format!(
                    "{message}. Open this link in your browser to allow it, then call the tool again: {url}"
                );
                let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
                r.result_type = Some(ResultType::COMPLETE);
                Ok(CallToolResponse::Complete(r))
            }
            Self::ConsentRequired {
                target,
                url,
                elicitation_id,
                message,
                request_state,
            } => match client.era {
                Era::Sessions => Err(ErrorData::new(
                    URL_ELICITATION_REQUIRED,
                    message.clone(),
                    Some(json!({ "elicitations": [{
                        "mode": "url", "elicitationId": elicitation_id, "url": url, "message": message,
                    }], "target": target })),
                )),
                Era::Stateless => {
                    let mut requests = InputRequests::new();
                    requests.insert(
                        "consent".into(),
                        InputRequest::Elicitation(ElicitRequest::new(
                            ElicitRequestParams::UrlElicitationParams {
                                meta: None,
                                message,
                                url,
                                elicitation_id: String::new(),
                            },
                        )),
                    );
                    Ok(CallToolResponse::InputRequired(InputRequiredResult::new(
                        Some(requests),
                        Some(request_state),
                    )))
                }
            },
            // One message whatever the reason (the log says which): a forger learns nothing.
            Self::StateRefused(_) => Err(ErrorData::invalid_params(
                "the requestState of this retry was not issued for this caller, tool and arguments, has expired, or was already used; call the tool again without requestState and inputResponses to start over",
                None,
            )),
            Self::BadAnswer(bad) => Err(ErrorData::invalid_params(
                format!(
                    "{bad}; the call was ended: call the tool again without requestState to start over"
                ),
                Some(json!({ "inputResponse": bad.key })),
            )),
            // The user sees why the tool could not run and what would make it work.
            Self::MissingCapability { tool, target, need } => {
                let text = format!(
                    "tool `{tool}` (target `{target}`) asked your client {}, but your client did not declare the `{}` capability, so the gateway did not ask it and ended the call; use a client that supports it, or another tool",
                    need.asked(),
                    need.capability()
                );
                let mut r = CallToolResult::error(vec![ContentBlock::text(text)]);
                r.result_type = Some(ResultType::COMPLETE);
                Ok(CallToolResponse::Complete(r))
            }
            // What the authorization server answered is the tool's failure as the user sees
            // it: a tool result the client shows, naming the target and the OAuth error.
            Self::Credential(e) => {
                let mut r = CallToolResult::error(vec![ContentBlock::text(e.to_string())]);
                r.result_type = Some(ResultType::COMPLETE);
                Ok(CallToolResponse::Complete(r))
            }
            Self::Target(e) => Err(errors::from_target(&e)),
            Self::Cancelled => Err(ErrorData::new(
                CANCELLED,
                "the client cancelled the call",
                None,
            )),
            Self::Internal(what) => Err(ErrorData::internal_error(
                format!("the gateway failed to handle the call: {what}"),
                None,
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_variants() -> Vec<(&'static str, CallError)> {
        vec![
            (
                "unknown tool",
                CallError::UnknownTool {
                    name: "nope".into(),
                    pending: vec![],
                },
            ),
            (
                "not connected",
                CallError::NotConnected {
                    target: "demo".into(),
                    connecting_for: Some(Duration::from_secs(2)),
                    reason: "connecting".into(),
                },
            ),
            (
                "forbidden",
                CallError::Forbidden {
                    tool: "demo__echo".into(),
                    missing: vec!["mcp:write".into()],
                },
            ),
            (
                "denied",
                CallError::Denied {
                    tool: "gh__create_issue".into(),
                    denial: crate::policy::Denial {
                        policies: vec!["own-repos".into()],
                        show_ids: true,
                        reason: "a policy forbids it".into(),
                    },
                },
            ),
            (
                "consent",
                CallError::ConsentRequired {
                    target: "github".into(),
                    url: "http://127.0.0.1:8787/consent/abc".into(),
                    elicitation_id: "abc".into(),
                    message: "Allow my-agent to use your GitHub account".into(),
                    request_state: "sealed-state".into(),
                },
            ),
            (
                "credential",
                CallError::Credential(TargetError::Credential {
                    target: "github".into(),
                    error: crate::outbound::CredentialError::Refused {
                        code: "invalid_client".into(),
                        description: None,
                    },
                }),
            ),
            (
                "unavailable",
                CallError::Target(TargetError::Unavailable {
                    target: "demo".into(),
                    reason: "connection refused".into(),
                }),
            ),
            (
                "refused",
                CallError::Target(TargetError::Refused {
                    target: "orders".into(),
                    reason: "Lambda throttled the call".into(),
                }),
            ),
            (
                "timeout",
                CallError::Target(TargetError::Timeout {
                    target: "demo".into(),
                    after: Duration::from_secs(30),
                }),
            ),
            (
                "upstream",
                CallError::Target(TargetError::Upstream {
                    target: "demo".into(),
                    error: ErrorData::invalid_params("missing `text`", None),
                }),
            ),
            ("cancelled", CallError::Cancelled),
            (
                "state refused",
                CallError::StateRefused(crate::request_state::StateRefused::Expired),
            ),
            (
                "missing capability",
                CallError::MissingCapability {
                    tool: "everything__trigger-sampling-request".into(),
                    target: "everything".into(),
                    need: crate::input::Need::Sampling,
                },
            ),
            (
                "bad answer",
                CallError::BadAnswer(crate::input::BadAnswer {
                    key: "sampling-1".into(),
                    method: "sampling/createMessage",
                    why: "missing field `model`".into(),
                }),
            ),
            (
                "internal",
                CallError::Internal("route names no target".into()),
            ),
        ]
    }

    /// What each variant must become: a JSON-RPC code, a tool error, or input_required.
    #[derive(Debug, PartialEq)]
    enum Expect {
        Code(i32),
        ToolError,
        InputRequired,
    }

    fn expected(name: &str, client: ClientKind) -> Expect {
        match (name, client.era) {
            ("unknown tool", _) => Expect::Code(-32602),
            ("not connected", _) | ("unavailable", _) | ("refused", _) => Expect::Code(-32003),
            ("forbidden", _) | ("denied", _) => Expect::Code(-32004),
            ("consent", _) if !client.url_elicitation => Expect::ToolError,
            ("consent", Era::Sessions) => Expect::Code(-32042),
            ("consent", Era::Stateless) => Expect::InputRequired,
            ("credential", _) => Expect::ToolError,
            ("timeout", _) => Expect::Code(-32001),
            ("upstream", _) => Expect::Code(-32602), // the upstream's own code, passed on
            ("cancelled", _) => Expect::Code(-32800),
            ("state refused", _) | ("bad answer", _) => Expect::Code(-32602),
            ("missing capability", _) => Expect::ToolError,
            ("internal", _) => Expect::Code(-32603),
            _ => unreachable!("{name}"),
        }
    }

    fn clients() -> Vec<ClientKind> {
        let mut all = Vec::new();
        for era in [Era::Sessions, Era::Stateless] {
            for url_elicitation in [true, false] {
                all.push(ClientKind {
                    era,
                    url_elicitation,
                });
            }
        }
        all
    }

    #[test]
    fn every_variant_maps_to_its_documented_answer_for_every_kind_of_client() {
        for client in clients() {
            for (name, e) in all_variants() {
                let got = match e.respond(client) {
                    Err(err) => {
                        assert!(!err.message.contains("::"), "{name}: {}", err.message);
                        Expect::Code(err.code.0)
                    }
                    Ok(CallToolResponse::Complete(r)) => {
                        assert_eq!(r.is_error, Some(true), "{name}");
                        if name == "missing capability" {
                            let text = &r.content[0].as_text().unwrap().text;
                            assert!(text.contains("`sampling` capability"), "{text}");
                        }
                        if name == "consent" {
                            let text = &r.content[0].as_text().unwrap().text;
                            assert!(
                                text.contains("http://127.0.0.1:8787/consent/abc")
                                    && text.contains("call the tool again"),
                                "{text}"
                            );
                        }
                        Expect::ToolError
                    }
                    Ok(CallToolResponse::InputRequired(r)) => {
                        let v = serde_json::to_value(&r).unwrap();
                        assert_eq!(v["resultType"], "input_required", "{v}");
                        let params = &v["inputRequests"]["consent"]["params"];
                        assert_eq!(params["mode"], "url", "{v}");
                        assert_eq!(params["url"], "http://127.0.0.1:8787/consent/abc", "{v}");
                        assert_eq!(v["requestState"], "sealed-state", "{v}");
                        Expect::InputRequired
                    }
                    Ok(other) => panic!("{name}: unexpected {other:?}"),
                };
                assert_eq!(got, expected(name, client), "{name} for {client:?}");
            }
        }
    }

    #[test]
    fn consent_in_the_session_era_carries_the_url_elicitation() {
        let e = CallError::ConsentRequired {
            target: "github".into(),
            url: "http://127.0.0.1:8787/consent/abc".into(),
            elicitation_id: "abc".into(),
            message: "Allow it".into(),
            request_state: "sealed-state".into(),
        };
        let err = e
            .respond(ClientKind {
                era: Era::Sessions,
                url_elicitation: true,
            })
            .unwrap_err();
        let data = err.data.unwrap();
        assert_eq!(data["elicitations"][0]["mode"], "url");
        assert_eq!(data["elicitations"][0]["elicitationId"], "abc");
        assert_eq!(
            data["elicitations"][0]["url"],
            "http://127.0.0.1:8787/consent/abc"
        );
    }

    #[test]
    fn refusals_are_the_gateways_decisions() {
        for (name, e) in all_variants() {
            let refusal = matches!(
                name,
                "unknown tool" | "forbidden" | "denied" | "state refused"
            );
            assert_eq!(e.is_refusal(), refusal, "{name}");
        }
    }
}

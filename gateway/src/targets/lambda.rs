//! An AWS Lambda function as a target (`[lambda]`): its tools are declared in the target
//! file, as AgentCore's Lambda targets declare theirs, and each call is one `Invoke` through
//! `aws-sdk-lambda` with the target's SigV4 credentials — with `assume_role`, a session
//! assumed for this caller and this tool, its policy narrowed to it.
//!
//! The function receives the tool's arguments as its event, and the tool's name in the
//! invocation's client context (`context.client_context.custom`): `bedrockAgentCoreToolName`
//! as AgentCore sends it (`{target}___{tool}`), so functions written for AgentCore run
//! unchanged, and `portcullisToolName` / `portcullisTarget` without the prefix to strip. It
//! answers with an MCP tool result (`{"content": […], "isError"?: …}`) or any JSON, which
//! becomes `structuredContent`. A function error (`FunctionError`) is an error result with
//! the function's message.

use std::sync::Arc;

use aws_sdk_lambda::config::http::HttpResponse;
use aws_sdk_lambda::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_lambda::primitives::Blob;
use base64::Engine as _;
use futures::FutureExt;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock};
use serde_json::{Value, json};
use tokio::sync::OnceCell;

use super::rest::request::structured;
use super::{Health, Listing, PendingCall, TargetError};
use crate::config::{LambdaSpec, TargetSpec};
use crate::outbound::{CredentialError, CredentialProvider, Principal};

/// A handle on a Lambda target. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LambdaTarget {
    shared: Arc<Shared>,
    spec: Arc<TargetSpec>,
}

#[derive(Debug)]
struct Shared {
    built: TargetSpec,
    lambda: LambdaSpec,
    credentials: Arc<dyn CredentialProvider>,
    /// Built on first use (the SDK's HTTP client and its settings), then shared.
    client: OnceCell<aws_sdk_lambda::Client>,
    listing: Arc<Listing>,
}

impl LambdaTarget {
    pub fn start(
        spec: TargetSpec,
        lambda: LambdaSpec,
        credentials: Arc<dyn CredentialProvider>,
    ) -> Self {
        let listing = Arc::new(Listing {
            tools: spec.declared_tools.clone(),
            ..Listing::default()
        });
        Self {
            shared: Arc::new(Shared {
                built: spec.clone(),
                lambda,
                credentials,
                client: OnceCell::new(),
                listing,
            }),
            spec: Arc::new(spec),
        }
    }

    pub fn serves(&self, spec: &TargetSpec) -> bool {
        let built = &self.shared.built;
        built.name == spec.name
            && built.kind == spec.kind
            && built.auth == spec.auth
            && built.declared_tools == spec.declared_tools
    }

    pub fn with_spec(&self, spec: TargetSpec) -> Self {
        Self {
            shared: self.shared.clone(),
            spec: Arc::new(spec),
        }
    }

    pub fn same_function(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }

    pub fn name(&self) -> &str {
        &self.shared.built.name
    }

    pub fn spec(&self) -> &TargetSpec {
        &self.spec
    }

    pub fn credentials(&self) -> &Arc<dyn CredentialProvider> {
        &self.shared.credentials
    }

    pub fn listing(&self) -> Arc<Listing> {
        self.shared.listing.clone()
    }

    /// Its tools are declared: always ready, nothing kept open.
    pub fn health(&self) -> Health {
        Health::Connected
    }

    fn refused(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Refused {
            target: self.name().to_string(),
            reason: reason.into(),
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Unavailable {
            target: self.name().to_string(),
            reason: reason.into(),
        }
    }

    fn credential_error(&self, error: CredentialError) -> TargetError {
        TargetError::Credential {
            target: self.name().to_string(),
            error,
        }
    }

    /// The AWS credentials for this caller and tool (assumed through STS with
    /// `assume_role`), before anything is sent.
    async fn aws_credentials(
        &self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Result<aws_credential_types::Credentials, TargetError> {
        let Some(sigv4) = self.shared.credentials.aws() else {
            // The load refuses a Lambda target without aws_sigv4; this is a bug if reached.
            return Err(self.unavailable("its [auth] is not aws_sigv4"));
        };
        sigv4
            .credentials(principal.map(|p| &p.caller), Some(tool), self.name())
            .await
            .map_err(|e| self.credential_error(e))
    }

    pub async fn credential(
        &self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Result<(), TargetError> {
        self.aws_credentials(principal, tool).await.map(|_| ())
    }

    async fn client(&self) -> &aws_sdk_lambda::Client {
        self.shared
            .client
            .get_or_init(|| async {
                let region = self
                    .shared
                    .credentials
                    .aws()
                    .map(|s| s.region().to_string())
                    .unwrap_or_default();
                let mut config = aws_sdk_lambda::Config::builder()
                    .behavior_version(aws_sdk_lambda::config::BehaviorVersion::latest())
                    .region(aws_sdk_lambda::config::Region::new(region));
                if let Some(endpoint) = &self.shared.lambda.endpoint_url {
                    config = config.endpoint_url(endpoint.as_str().trim_end_matches('/'));
                }
                aws_sdk_lambda::Client::from_conf(config.build())
            })
            .await
    }

    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        principal: Option<&Principal>,
    ) -> Result<PendingCall<CallToolResponse>, TargetError> {
        let tool = params.name.to_string();
        let credentials = self.aws_credentials(principal, &tool).await?;
        let event = Value::Object(params.arguments.unwrap_or_default()).to_string();
        let context = json!({
            "custom": {
                "bedrockAgentCoreToolName": format!("{}___{tool}", self.name()),
                "portcullisToolName": tool,
                "portcullisTarget": self.name(),
            }
        });
        let context = base64::engine::general_purpose::STANDARD.encode(context.to_string());
        let this = self.clone();
        Ok(PendingCall::direct(
            async move {
                let out = this
                    .client()
                    .await
                    .invoke()
                    .function_name(&this.shared.lambda.function)
                    .set_qualifier(this.shared.lambda.qualifier.clone())
                    .client_context(context)
                    .payload(Blob::new(event))
                    .customize()
                    .config_override(
                        aws_sdk_lambda::Config::builder().credentials_provider(credentials),
                    )
                    .send()
                    .await
                    .map_err(|e| this.invoke_error(e))?;
                let payload = out.payload().map(Blob::as_ref).unwrap_or_default();
                Ok(CallToolResponse::Complete(match out.function_error() {
                    Some(kind) => function_error(kind, payload),
                    None => result(payload),
                }))
            }
            .boxed(),
        ))
    }

    /// Lambda refused or could not be reached: whose fault, in plain words, with the fix.
    fn invoke_error(
        &self,
        e: SdkError<aws_sdk_lambda::operation::invoke::InvokeError, HttpResponse>,
    ) -> TargetError {
        let function = &self.shared.lambda.function;
        match &e {
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                // AWS names its error in `x-amzn-errortype`; a Lambda-compatible endpoint that
                // answers in another shape (moto answers XML) leaves the SDK no code, and then
                // the HTTP status says whose fault it is.
                let named = se.err().code();
                let kind = named.unwrap_or(match status {
                    401 | 403 => "AccessDeniedException",
                    404 => "ResourceNotFoundException",
                    _ => "",
                });
                let code = named.map_or_else(|| format!("HTTP {status}"), str::to_string);
                let detail = match se.err().message() {
                    Some(m) if !m.is_empty() => format!(": {m}"),
                    _ => String::new(),
                };
                match kind {
                    "AccessDeniedException"
                    | "UnrecognizedClientException"
                    | "InvalidSignatureException"
                    | "ExpiredTokenException"
                    | "AccessDenied" => self.credential_error(CredentialError::Refused {
                        code,
                        description: Some(format!(
                            "Lambda refused to invoke `{function}` with the target's credentials{detail}; check the keys in [auth], and that they or the assumed role may invoke it"
                        )),
                    }),
                    "ResourceNotFoundException" => self.refused(format!(
                        "Lambda has no function `{function}` in this account and region{detail}; fix `function` in [lambda] or `region` in [auth]"
                    )),
                    "TooManyRequestsException" => self.refused(format!(
                        "Lambda throttled the call to `{function}`{detail}; try again shortly, or raise the function's concurrency"
                    )),
                    _ => self.refused(format!(
                        "Lambda answered {code} for `{function}`{detail}"
                    )),
                }
            }
            SdkError::TimeoutError(_) => {
                self.unavailable("the Lambda endpoint did not answer in time")
            }
            _ => self.unavailable(format!(
                "cannot reach the Lambda endpoint: {}",
                crate::cause::classify(&e)
            )),
        }
    }
}

/// The function's answer: an MCP tool result as it is, other JSON as structured content,
/// anything else as text.
fn result(payload: &[u8]) -> CallToolResult {
    let Ok(value) = serde_json::from_slice::<Value>(payload) else {
        return CallToolResult::success(vec![ContentBlock::text(
            String::from_utf8_lossy(payload).into_owned(),
        )]);
    };
    if value.get("content").is_some_and(Value::is_array)
        && let Ok(r) = serde_json::from_value::<CallToolResult>(value.clone())
    {
        return r;
    }
    structured(value)
}

/// A function error: Lambda's `{"errorMessage", "errorType"}` payload as an error result.
fn function_error(kind: &str, payload: &[u8]) -> CallToolResult {
    let value: Value = serde_json::from_slice(payload).unwrap_or(Value::Null);
    let message = value
        .get("errorMessage")
        .and_then(Value::as_str)
        .map_or_else(
            || String::from_utf8_lossy(payload).into_owned(),
            str::to_string,
        );
    let error_type = value.get("errorType").and_then(Value::as_str);
    let text = match error_type {
        Some(t) => format!("the function failed ({kind}, {t}): {message}"),
        None => format!("the function failed ({kind}): {message}"),
    };
    CallToolResult::error(vec![ContentBlock::text(text)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_and_function_errors_become_results() {
        let mcp = result(br#"{"content":[{"type":"text","text":"done"}],"isError":true}"#);
        assert_eq!(mcp.is_error, Some(true));
        assert_eq!(mcp.content[0].as_text().unwrap().text, "done");
        let plain = result(br#"{"order":7}"#);
        assert_eq!(plain.structured_content, Some(json!({"order": 7})));
        let text = result(b"not json");
        assert_eq!(text.content[0].as_text().unwrap().text, "not json");
        let failed = function_error(
            "Unhandled",
            br#"{"errorMessage":"order 7 not found","errorType":"KeyError"}"#,
        );
        assert_eq!(failed.is_error, Some(true));
        assert_eq!(
            failed.content[0].as_text().unwrap().text,
            "the function failed (Unhandled, KeyError): order 7 not found"
        );
    }
}

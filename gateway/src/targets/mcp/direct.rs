//! Tool calls to an MCP upstream over HTTP that the gateway sends itself, on the 2025-era
//! session rmcp's client opened, with the headers rmcp sends on it ([`Wire`]).
//!
//! Through rmcp's client a call goes from the caller's task to the session's service loop,
//! to a spawned send task, to the session's one worker task (which builds the request,
//! serialising it through a `serde_json::Value`, and parses every answer of every caller),
//! and back the same way: several task hand-offs and copies per call, the most expensive
//! part of the gateway's hop in the profiles (docs/benchmarks.md). A tool call needs none
//! of it: one POST on a pooled connection, answered by the result — or by an SSE stream
//! carrying the upstream's progress, log lines and requests to the caller before it, which
//! are relayed exactly as those rmcp receives are (`client.rs`, `relay.rs`). rmcp keeps
//! everything else: the handshake, listings, the session's own stream, reconnection.
//!
//! No maintained crate sends one MCP request outside a client session, so this is our own
//! small glue over reqwest and rmcp's message types.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use http::header::{ACCEPT, CONTENT_TYPE};
use rmcp::model::*;
use rmcp::service::PeerRequestOptions;
use rmcp::transport::streamable_http_client::{HttpStatusError, StreamableHttpError};
use rmcp::{ErrorData, Peer, RoleClient};
use url::Url;

use super::client::UpstreamClient;
use super::http::{CredentialedClient, OutboundContext, Sent, scrub};
use super::session::{Session, Started};
use crate::cause;
use crate::targets::TargetError;

type HttpError = StreamableHttpError<reqwest::Error>;

/// The largest answer read as one JSON document, and the largest single event of a stream
/// (rmcp's own limits for its client).
const MAX_ANSWER: usize = 16 * 1024 * 1024;
const MAX_EVENT: usize = 16 * 1024 * 1024;
/// How long the gateway's own notices to the upstream (a cancellation, an answer to its
/// request) may take.
const NOTICE_TIMEOUT: Duration = Duration::from_secs(10);

/// Request ids of the gateway's own calls: strings, so they never meet rmcp's numbers on the
/// same session.
static NEXT_CALL: AtomicU64 = AtomicU64::new(1);

/// Where one session's direct calls go and with what.
#[derive(Debug, Clone)]
pub(super) struct Line {
    pub client: CredentialedClient,
    pub url: Arc<Url>,
    pub sent: Arc<Sent>,
    /// 2026-07-28: each request's headers name its method and tool.
    pub named: bool,
}

/// A tool name that goes into `Mcp-Name` as it is (MCP's tool-name characters), never
/// base64-encoded.
pub(super) fn plain_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether an input schema maps some argument to a request header (`x-mcp-header`,
/// 2026-07-28), anywhere in it.
pub(super) fn maps_headers(schema: &JsonObject) -> bool {
    fn any(value: &serde_json::Value) -> bool {
        match value {
            serde_json::Value::Object(o) => o.contains_key("x-mcp-header") || o.values().any(any),
            serde_json::Value::Array(a) => a.iter().any(any),
            _ => false,
        }
    }
    schema.contains_key("x-mcp-header") || schema.values().any(any)
}

/// Start a `tools/call` on `line` (see the module doc). The returned parts are those of
/// rmcp's path (`Session::start_request`), so the pipeline cannot tell the two apart.
/// `declaration` is the caller's, for a session that reads one from each request (it
/// replaces the gateway's own there, as on rmcp's path).
#[allow(clippy::too_many_arguments)]
pub(super) fn start(
    session: &Arc<Session>,
    line: Line,
    mut request: ClientRequest,
    declaration: Option<RequestMetaObject>,
    caller_progress: Option<ProgressToken>,
    peer: Peer<RoleClient>,
    generation: u64,
    timeout: Duration,
) -> Result<Started, TargetError> {
    let name: Arc<str> = format!("portcullis-{}", NEXT_CALL.fetch_add(1, Ordering::Relaxed)).into();
    let id = RequestId::String(name.clone());
    let progress = ProgressToken(NumberOrString::String(name));
    let meta = request.get_meta_mut();
    meta.extend(line.sent.meta.clone());
    if let Some(declaration) = declaration {
        meta.extend(declaration);
    }
    meta.set_progress_token(progress.clone());
    let tool = match &request {
        ClientRequest::CallToolRequest(c) if line.named => Some(c.params.name.to_string()),
        _ => None,
    };
    // In memory only, never serialised: kept for the credential of each POST.
    let ctx = request.extensions_mut().remove::<OutboundContext>();
    let message = ClientJsonRpcMessage::request(request, id.clone());
    let body = Bytes::from(
        serde_json::to_vec(&message).map_err(|e| TargetError::Upstream {
            target: session.spec.name.clone(),
            error: ErrorData::internal_error(format!("cannot encode the call: {e}"), None),
        })?,
    );
    let in_flight = session.relays.begin();
    let (registration, relays) = session
        .relays
        .register(id.clone(), progress, caller_progress);
    let call = Arc::new(Call {
        session: session.clone(),
        line,
        tool,
        ctx,
        id,
        peer,
        generation,
    });
    let response = Box::pin(async move {
        let mut abandoned = Abandoned(Some(call.clone()));
        let answer = call.exchange(body, timeout).await;
        abandoned.0 = None;
        answer
    });
    Ok((response, relays, registration, in_flight))
}

/// One direct call in flight.
#[derive(Debug)]
struct Call {
    session: Arc<Session>,
    line: Line,
    /// The tool, for the `Mcp-Name` header of a 2026-07-28 session.
    tool: Option<String>,
    ctx: Option<OutboundContext>,
    id: RequestId,
    peer: Peer<RoleClient>,
    generation: u64,
}

/// How one POST of the call ended before its answer was read.
enum Posted {
    Answer(reqwest::Response),
    /// The upstream no longer knows the session: nothing was done, the call may go again.
    SessionGone,
}

impl Call {
    async fn exchange(&self, body: Bytes, timeout: Duration) -> Result<ServerResult, TargetError> {
        let named = self.tool.as_deref().map(|tool| ("tools/call", Some(tool)));
        let response = match self.post(body.clone(), named).await? {
            Posted::Answer(r) => r,
            Posted::SessionGone => return self.through_rmcp(&body, timeout).await,
        };
        let status = response.status();
        let kind = content_type(&response);
        if !status.is_success() {
            return Err(self.refused(response, status, kind.as_deref()).await);
        }
        match kind.as_deref() {
            Some(JSON) => {
                let bytes = read_bounded(response, MAX_ANSWER)
                    .await
                    .map_err(|e| self.lost(e))?;
                match self.read(&bytes)? {
                    Read::Answer(answer) => answer,
                    Read::Other(_) => Err(self.lost(malformed("an answer to another request"))),
                }
            }
            Some(EVENT_STREAM) => self.stream(response).await,
            other => Err(self.lost(HttpError::UnexpectedContentType(other.map(str::to_string)))),
        }
    }

    /// POST `body` with the session's headers and the target's credential; once more with a
    /// fresh credential after a 401 the provider says may help. `named`: the method (and
    /// tool) a 2026-07-28 request's headers name; `None` for an answer, or on older sessions.
    async fn post(
        &self,
        body: Bytes,
        named: Option<(&str, Option<&str>)>,
    ) -> Result<Posted, TargetError> {
        let mut retried = false;
        loop {
            let client = &self.line.client;
            let signed: &[u8] = if client.credentials.signs_body() {
                &body
            } else {
                b""
            };
            let (attachment, url) = client
                .attach_to("POST", &self.line.url, signed, self.ctx.as_ref())
                .await
                .map_err(|e| self.lost(e))?;
            let mut request = client
                .http
                .post(url)
                .header(ACCEPT, "application/json, text/event-stream")
                .header(CONTENT_TYPE, JSON);
            for (name, value) in &self.line.sent.headers {
                request = request.header(name, value);
            }
            if let Some(session) = &self.line.sent.session_id {
                request = request.header("mcp-session-id", &**session);
            }
            if let Some((method, name)) = named {
                request = request.header("mcp-method", method);
                if let Some(name) = name {
                    request = request.header("mcp-name", name);
                }
            }
            for (name, value) in &attachment.headers {
                request = request.header(name, value);
            }
            let response = request
                .body(body.clone())
                .send()
                .await
                .map_err(|e| self.lost(scrub(HttpError::Client(e))))?;
            match response.status() {
                reqwest::StatusCode::UNAUTHORIZED
                    if !retried && client.credentials.rejected(&attachment) =>
                {
                    tracing::info!(target: "portcullis::outbound", target_name = %client.target, "upstream refused the credential (401); retrying once with a fresh one");
                    retried = true;
                }
                reqwest::StatusCode::NOT_FOUND if self.line.sent.session_id.is_some() => {
                    return Ok(Posted::SessionGone);
                }
                _ => return Ok(Posted::Answer(response)),
            }
        }
    }

    /// The upstream forgot the session (it restarted, or expired it): rmcp's client opens a
    /// new one and sends the call there. Rare, so this call's relays are attributed as rmcp's
    /// are (its progress token is rmcp's, not the one registered for this call).
    async fn through_rmcp(
        &self,
        body: &[u8],
        timeout: Duration,
    ) -> Result<ServerResult, TargetError> {
        self.session.wire.forget();
        let (mut request, _) = serde_json::from_slice::<ClientJsonRpcMessage>(body)
            .ok()
            .and_then(ClientJsonRpcMessage::into_request)
            .ok_or_else(|| self.lost(malformed("the call could not be sent again")))?;
        if let Some(ctx) = &self.ctx {
            request.extensions_mut().insert(ctx.clone());
        }
        let mut options = PeerRequestOptions::no_options();
        options.timeout = Some(timeout);
        let handle = self
            .peer
            .send_request_with_option(request, options)
            .await
            .map_err(|e| self.session.fail(e, timeout, self.generation))?;
        handle
            .await_response()
            .await
            .map_err(|e| self.session.fail(e, timeout, self.generation))
    }

    /// A non-success status: the upstream's JSON-RPC error when it sent one, else the status.
    async fn refused(
        &self,
        response: reqwest::Response,
        status: reqwest::StatusCode,
        kind: Option<&str>,
    ) -> TargetError {
        if kind == Some(JSON) && !matches!(status.as_u16(), 401 | 403) {
            let error = read_bounded(response, MAX_ANSWER)
                .await
                .ok()
                .and_then(|b| serde_json::from_slice::<ServerJsonRpcMessage>(&b).ok())
                .and_then(|m| m.into_error());
            if let Some((error, _)) = error {
                return self.upstream_error(error);
            }
        } else if let Some(retry) = response.headers().get(http::header::RETRY_AFTER) {
            let retry = retry.to_str().ok().map(str::to_string);
            return self.lost(HttpError::HttpStatus(HttpStatusError::new(
                status.as_u16(),
                retry,
            )));
        }
        self.lost(HttpError::HttpStatus(HttpStatusError::new(
            status.as_u16(),
            None,
        )))
    }

    /// Read the call's SSE stream until its answer, relaying what comes before it.
    async fn stream(&self, response: reqwest::Response) -> Result<ServerResult, TargetError> {
        let since_event = Arc::new(AtomicUsize::new(0));
        let mut events = sse_stream::SseStream::from_bytes_stream(counted(
            response.bytes_stream(),
            since_event.clone(),
        ));
        let client = UpstreamClient::of(&self.session);
        while let Some(event) = events.next().await {
            let event =
                event.map_err(|e| self.lost(malformed(&format!("its event stream broke: {e}"))))?;
            since_event.store(0, Ordering::Relaxed);
            let Some(data) = event.data.filter(|d| !d.trim().is_empty()) else {
                continue; // a priming event, or a comment
            };
            match self.read(data.as_bytes())? {
                Read::Answer(answer) => return answer,
                Read::Other(JsonRpcMessage::Request(r)) => {
                    let reply = match client.answer(r.request, self.id.clone()).await {
                        Ok(result) => ClientJsonRpcMessage::response(result, r.id),
                        Err(error) => ClientJsonRpcMessage::error(error, Some(r.id)),
                    };
                    let _ = tokio::time::timeout(NOTICE_TIMEOUT, self.notice(&reply, None)).await;
                }
                Read::Other(JsonRpcMessage::Notification(n)) => {
                    client.notified(n.notification, &self.id, &self.peer).await;
                }
                // Another request's answer cannot be on this call's stream; ignored.
                Read::Other(_) => {}
            }
        }
        Err(self.lost(HttpError::UnexpectedEndOfStream))
    }

    /// One message of the upstream. The call's answer is read as what it must be (a tool
    /// result, or a 2026 upstream's `input_required`), not tried against every result type
    /// MCP has, as rmcp's generic message type is (most of a parse's cost: each type that
    /// does not fit builds an error); anything else is read as rmcp reads it.
    fn read(&self, bytes: &[u8]) -> Result<Read, TargetError> {
        #[derive(serde::Deserialize)]
        struct Answer {
            id: Option<RequestId>,
            method: Option<serde::de::IgnoredAny>,
            result: Option<serde_json::Value>,
            error: Option<ErrorData>,
        }
        let bad = |e| self.lost(HttpError::Deserialize(e));
        let answer = serde_json::from_slice::<Answer>(bytes).map_err(bad)?;
        if answer.method.is_none() && answer.id.as_ref().is_none_or(|id| *id == self.id) {
            if let Some(error) = answer.error {
                return Ok(Read::Answer(Err(self.upstream_error(error))));
            }
            if let Some(result) = answer.result {
                return Ok(Read::Answer(Ok(tool_result(result).map_err(bad)?)));
            }
        }
        serde_json::from_slice::<ServerJsonRpcMessage>(bytes)
            .map(Read::Other)
            .map_err(bad)
    }

    fn upstream_error(&self, error: ErrorData) -> TargetError {
        TargetError::Upstream {
            target: self.session.spec.name.clone(),
            error,
        }
    }

    /// A failure below MCP: the session is dropped (the next call reconnects), as on rmcp's
    /// path.
    fn lost(&self, e: HttpError) -> TargetError {
        self.session
            .lost_during_call(cause::classify(&e), self.generation)
    }
}

/// What one message of the upstream was.
enum Read {
    /// The call's answer.
    Answer(Result<ServerResult, TargetError>),
    /// Anything else: a request or notification for the call's caller, or another answer.
    Other(ServerJsonRpcMessage),
}

/// A `tools/call` result: a 2026 upstream's `input_required`, else a tool result; what is
/// neither (an empty result) is read as rmcp reads any result.
fn tool_result(result: serde_json::Value) -> Result<ServerResult, serde_json::Error> {
    let input_required =
        result.get("resultType").and_then(serde_json::Value::as_str) == Some("input_required");
    if input_required {
        return serde_json::from_value(result).map(ServerResult::InputRequiredResult);
    }
    if result.get("content").is_some() {
        return serde_json::from_value(result).map(ServerResult::CallToolResult);
    }
    serde_json::from_value(result)
}

/// Tells the upstream a call was abandoned (`notifications/cancelled`) when its answer is
/// dropped unread: the caller cancelled, or the call's deadline passed.
struct Abandoned(Option<Arc<Call>>);

impl Drop for Abandoned {
    fn drop(&mut self) {
        let Some(call) = self.0.take() else { return };
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        rt.spawn(async move {
            let note = ClientNotification::CancelledNotification(CancelledNotification::new(
                CancelledNotificationParam::new(
                    Some(call.id.clone()),
                    Some("the gateway's caller abandoned the call".into()),
                ),
            ));
            let message = ClientJsonRpcMessage::notification(note);
            let named = call.line.named.then_some(("notifications/cancelled", None));
            let _ = tokio::time::timeout(NOTICE_TIMEOUT, call.notice(&message, named)).await;
        });
    }
}

impl Call {
    /// Send the upstream a message that needs no answer (a cancellation, an answer to its
    /// request); a failure is only logged: the call's own outcome says what matters.
    async fn notice(&self, message: &ClientJsonRpcMessage, named: Option<(&str, Option<&str>)>) {
        let Ok(body) = serde_json::to_vec(message) else {
            return;
        };
        match self.post(Bytes::from(body), named).await {
            Ok(Posted::Answer(r)) if r.status().is_success() => {}
            Ok(Posted::Answer(r)) => {
                tracing::debug!(target: "portcullis::targets", target_name = %self.session.spec.name, "the upstream answered HTTP {} to the gateway's notice", r.status())
            }
            Ok(Posted::SessionGone) | Err(_) => {
                tracing::debug!(target: "portcullis::targets", target_name = %self.session.spec.name, "a notice to the upstream was not delivered")
            }
        }
    }
}

const JSON: &str = "application/json";
const EVENT_STREAM: &str = "text/event-stream";

fn content_type(response: &reqwest::Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or(value).trim();
    Some(essence.to_ascii_lowercase())
}

fn malformed(what: &str) -> HttpError {
    HttpError::UnexpectedServerResponse(what.to_string().into())
}

/// The whole body, refused past `limit` bytes.
async fn read_bounded(response: reqwest::Response, limit: usize) -> Result<Bytes, HttpError> {
    if response.content_length().is_some_and(|n| n > limit as u64) {
        return Err(malformed(&format!(
            "its answer is larger than {limit} bytes"
        )));
    }
    let mut body = response.bytes_stream();
    let mut bytes = bytes::BytesMut::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| scrub(HttpError::Client(e)))?;
        if bytes.len() + chunk.len() > limit {
            return Err(malformed(&format!(
                "its answer is larger than {limit} bytes"
            )));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(bytes.freeze())
}

/// The stream's bytes, failing once more than [`MAX_EVENT`] arrive without an event between
/// them (`since` is reset at each event): an upstream cannot make the gateway buffer an
/// endless event.
fn counted(
    body: impl Stream<Item = reqwest::Result<Bytes>> + Send + 'static,
    since: Arc<AtomicUsize>,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send + 'static {
    body.map(move |chunk| {
        let chunk = chunk.map_err(|e| std::io::Error::other(e.without_url()))?;
        if since.fetch_add(chunk.len(), Ordering::Relaxed) + chunk.len() > MAX_EVENT {
            return Err(std::io::Error::other(format!(
                "an event of the upstream's stream is larger than {MAX_EVENT} bytes"
            )));
        }
        Ok(chunk)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_schemas_that_need_rmcps_headers_are_recognised() {
        assert!(plain_name("weather__get_forecast-v2.1"));
        assert!(!plain_name("météo"));
        assert!(!plain_name("two words"));
        assert!(!plain_name(""));
        let plain = json!({"type": "object", "properties": {"region": {"type": "string"}}});
        let mapped = json!({"type": "object", "properties": {"where": {"type": "object",
            "properties": {"region": {"type": "string", "x-mcp-header": "Region"}}}}});
        assert!(!maps_headers(plain.as_object().unwrap()));
        assert!(maps_headers(mapped.as_object().unwrap()));
    }
}

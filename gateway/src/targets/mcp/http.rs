//! The HTTP client under an MCP streamable-HTTP upstream session: rmcp's reqwest client, plus
//! the target's credential on every request (and one retry with a fresh credential after a
//! 401). The caller and tool of a request travel in the JSON-RPC message's in-memory
//! extensions ([`OutboundContext`]), so per-call credentials work on a shared session; a
//! per-user session instead fixes its user for every request, its own included.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use futures::stream::BoxStream;
use http::{HeaderName, HeaderValue};
use rmcp::model::{ClientJsonRpcMessage, GetExtensions};
use rmcp::transport::streamable_http_client::{
    StreamableHttpClient, StreamableHttpError, StreamableHttpPostResponse,
    StreamableHttpResponseLimits,
};
use sse_stream::{Error as SseError, Sse};
use url::Url;

use crate::outbound::{Attachment, CredentialProvider, OutboundRequest, Principal};

/// Who a request to the upstream is for; absent for the gateway's own requests.
#[derive(Debug, Clone)]
pub struct OutboundContext {
    pub principal: Option<Principal>,
    pub tool: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CredentialedClient {
    pub http: reqwest::Client,
    pub credentials: Arc<dyn CredentialProvider>,
    pub target: Arc<str>,
    /// The user of a per-user session: every request of the session acts for them, whatever
    /// a message's context says (see `session::Session::user`).
    pub user: Arc<ArcSwapOption<Principal>>,
    /// What rmcp's requests on the session carry, for the direct tool calls (`direct.rs`).
    pub wire: Arc<Wire>,
}

/// What rmcp's client sends on an established session, as it last sent it: the session id,
/// the headers that do not name one request, and the `_meta` declaration of a session that
/// speaks per request. Tool calls the gateway sends itself (`direct.rs`) go on the same
/// session with the same. Empty until the session's first request after its handshake; a
/// new session replaces it with its first request.
#[derive(Debug, Default)]
pub struct Wire {
    sent: ArcSwapOption<Sent>,
    /// Whether a tool of the session's listing maps an argument to a header (`x-mcp-header`,
    /// 2026-07-28): then rmcp builds those requests' headers (see `direct.rs`).
    pub header_params: std::sync::atomic::AtomicBool,
}

#[derive(Debug, PartialEq)]
pub struct Sent {
    pub session_id: Option<Arc<str>>,
    pub headers: HashMap<HeaderName, HeaderValue>,
    /// rmcp's declaration on each request of a per-request session (protocol version, client
    /// info, capabilities); empty on a 2025 session, which declared them once.
    pub meta: rmcp::model::RequestMetaObject,
}

/// The `_meta` keys of rmcp's own declaration: the same on every request of a session.
const DECLARATION: [&str; 3] = [
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
];

impl Wire {
    pub fn get(&self) -> Option<Arc<Sent>> {
        self.sent.load_full()
    }

    pub fn forget(&self) {
        self.sent.store(None);
    }

    /// Note what rmcp sent, unless it is a handshake (no session yet) or a tool call (whose
    /// `_meta` carries its caller's declaration, not the session's).
    fn saw(
        &self,
        message: &ClientJsonRpcMessage,
        session_id: Option<&Arc<str>>,
        headers: &HashMap<HeaderName, HeaderValue>,
    ) {
        use rmcp::model::{ClientRequest, GetMeta};
        let meta = match message {
            ClientJsonRpcMessage::Request(r) => {
                if matches!(
                    r.request,
                    ClientRequest::InitializeRequest(_)
                        | ClientRequest::DiscoverRequest(_)
                        | ClientRequest::CallToolRequest(_)
                ) {
                    return;
                }
                let mut meta = rmcp::model::RequestMetaObject::default();
                for key in DECLARATION {
                    if let Some(v) = r.request.get_meta().get(key) {
                        meta.insert(key.to_string(), v.clone());
                    }
                }
                meta
            }
            // A notification or an answer carries no declaration: the last one stands.
            _ => self
                .sent
                .load()
                .as_ref()
                .map(|s| s.meta.clone())
                .unwrap_or_default(),
        };
        let headers: HashMap<HeaderName, HeaderValue> = headers
            .iter()
            .filter(|(name, _)| {
                let name = name.as_str();
                name != "mcp-method" && name != "mcp-name" && !name.starts_with("mcp-param-")
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let sent = Sent {
            session_id: session_id.cloned(),
            headers,
            meta,
        };
        if self.sent.load().as_deref() != Some(&sent) {
            self.sent.store(Some(Arc::new(sent)));
        }
    }
}

type Error = StreamableHttpError<reqwest::Error>;

impl CredentialedClient {
    /// The credential for one request and the URL to send it to (a query-parameter key is
    /// added to it).
    async fn attach(
        &self,
        method: &str,
        uri: &str,
        body: &[u8],
        ctx: Option<&OutboundContext>,
    ) -> Result<(Attachment, Url), Error> {
        let url = Url::parse(uri).map_err(|e| {
            StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
                "bad upstream URL: {e}"
            )))
        })?;
        self.attach_to(method, &url, body, ctx).await
    }

    /// [`Self::attach`] for a URL already parsed.
    pub(super) async fn attach_to(
        &self,
        method: &str,
        url: &Url,
        body: &[u8],
        ctx: Option<&OutboundContext>,
    ) -> Result<(Attachment, Url), Error> {
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let user = self.user.load_full();
        let req = OutboundRequest {
            target: &self.target,
            method,
            url,
            headers: if body.is_empty() { &[] } else { &headers },
            body,
            principal: user.as_deref().or(ctx.and_then(|c| c.principal.as_ref())),
            tool: ctx.and_then(|c| c.tool.as_deref()),
        };
        let a = self.credentials.attach(&req).await.map_err(|e| {
            StreamableHttpError::UnexpectedServerResponse(Cow::Owned(format!(
                "cannot get a credential for target `{}`: {e}",
                self.target
            )))
        })?;
        let url = a.apply_query(url);
        Ok((a, url))
    }
}

/// reqwest errors quote the request URL, which may hold a query-parameter API key; errors
/// end up in logs, `/readyz` and callers' messages, so the URL is removed.
pub(super) fn scrub(e: Error) -> Error {
    match e {
        StreamableHttpError::Client(e) => StreamableHttpError::Client(e.without_url()),
        other => other,
    }
}

pub(super) fn with_headers(
    mut base: HashMap<HeaderName, HeaderValue>,
    a: &Attachment,
) -> HashMap<HeaderName, HeaderValue> {
    for (k, v) in &a.headers {
        base.insert(k.clone(), v.clone());
    }
    base
}

fn context(message: &ClientJsonRpcMessage) -> Option<OutboundContext> {
    match message {
        ClientJsonRpcMessage::Request(r) => {
            r.request.extensions().get::<OutboundContext>().cloned()
        }
        _ => None,
    }
}

impl StreamableHttpClient for CredentialedClient {
    type Error = reqwest::Error;

    async fn post_message(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<StreamableHttpPostResponse, Error> {
        self.post_message_with_response_limits(
            uri,
            message,
            session_id,
            auth_header,
            custom_headers,
            StreamableHttpResponseLimits::default(),
        )
        .await
    }

    async fn post_message_with_response_limits(
        &self,
        uri: Arc<str>,
        message: ClientJsonRpcMessage,
        session_id: Option<Arc<str>>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
        limits: StreamableHttpResponseLimits,
    ) -> Result<StreamableHttpPostResponse, Error> {
        // The exact bytes reqwest will send (`RequestBuilder::json` uses serde_json::to_vec),
        // so a body signature (SigV4) matches; serialised only for a provider that signs it.
        let body = if self.credentials.signs_body() {
            serde_json::to_vec(&message)?
        } else {
            Vec::new()
        };
        let ctx = context(&message);
        self.wire
            .saw(&message, session_id.as_ref(), &custom_headers);
        let (a, url) = self.attach("POST", &uri, &body, ctx.as_ref()).await?;
        let first = self
            .http
            .post_message_with_response_limits(
                Arc::from(url.as_str()),
                message.clone(),
                session_id.clone(),
                auth_header.clone(),
                with_headers(custom_headers.clone(), &a),
                limits,
            )
            .await;
        if matches!(first, Err(StreamableHttpError::AuthRequired(_)))
            && self.credentials.rejected(&a)
        {
            tracing::info!(target: "portcullis::outbound", target_name = %self.target, "upstream refused the credential (401); retrying once with a fresh one");
            let (a, url) = self.attach("POST", &uri, &body, ctx.as_ref()).await?;
            return self
                .http
                .post_message_with_response_limits(
                    Arc::from(url.as_str()),
                    message,
                    session_id,
                    auth_header,
                    with_headers(custom_headers, &a),
                    limits,
                )
                .await
                .map_err(scrub);
        }
        first.map_err(scrub)
    }

    async fn delete_session(
        &self,
        uri: Arc<str>,
        session_id: Arc<str>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<(), Error> {
        let (a, url) = self.attach("DELETE", &uri, b"", None).await?;
        self.http
            .delete_session(
                Arc::from(url.as_str()),
                session_id,
                auth_header,
                with_headers(custom_headers, &a),
            )
            .await
            .map_err(scrub)
    }

    async fn get_stream(
        &self,
        uri: Arc<str>,
        session_id: Option<Arc<str>>,
        last_event_id: Option<String>,
        auth_header: Option<String>,
        custom_headers: HashMap<HeaderName, HeaderValue>,
    ) -> Result<BoxStream<'static, Result<Sse, SseError>>, Error> {
        let (a, url) = self.attach("GET", &uri, b"", None).await?;
        self.http
            .get_stream(
                Arc::from(url.as_str()),
                session_id,
                last_event_id,
                auth_header,
                with_headers(custom_headers, &a),
            )
            .await
            .map_err(scrub)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::{
        CallToolRequest, CallToolRequestParams, ClientNotification, ClientRequest,
        InitializedNotification, ListToolsRequest, RequestId,
    };

    fn headers(pairs: &[(&'static str, &'static str)]) -> HashMap<HeaderName, HeaderValue> {
        pairs
            .iter()
            .map(|(k, v)| (HeaderName::from_static(k), HeaderValue::from_static(v)))
            .collect()
    }

    fn request(mut r: ClientRequest, declared: bool) -> ClientJsonRpcMessage {
        use rmcp::model::GetMeta;
        if declared {
            let meta = r.get_meta_mut();
            meta.insert(DECLARATION[0].into(), "2026-07-28".into());
            meta.insert("io.modelcontextprotocol/logLevel".into(), "debug".into());
            meta.insert("progressToken".into(), 7.into());
        }
        ClientJsonRpcMessage::request(r, RequestId::Number(1))
    }

    #[test]
    fn the_wire_keeps_what_a_session_repeats_and_nothing_of_one_request() {
        let wire = Wire::default();
        let session: Arc<str> = "s-1".into();
        let list = || ClientRequest::ListToolsRequest(ListToolsRequest::default());
        let call = || {
            ClientRequest::CallToolRequest(CallToolRequest::new(CallToolRequestParams::new("echo")))
        };
        // A tool call carries its caller's declaration: never taken as the session's.
        wire.saw(&request(call(), true), Some(&session), &headers(&[]));
        assert!(wire.get().is_none());
        // A listing: the session id, the declaration (not the log level or progress token),
        // the protocol version header (not the headers naming this request).
        let named = headers(&[
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/list"),
            ("mcp-name", "x"),
            ("mcp-param-region", "eu"),
        ]);
        wire.saw(&request(list(), true), Some(&session), &named);
        let sent = wire.get().unwrap();
        assert_eq!(sent.session_id.as_deref(), Some("s-1"));
        assert_eq!(
            sent.headers,
            headers(&[("mcp-protocol-version", "2026-07-28")])
        );
        assert_eq!(
            sent.meta.keys().collect::<Vec<_>>(),
            vec!["io.modelcontextprotocol/protocolVersion"]
        );
        // A notification keeps the declaration; a new session id replaces the session.
        let other: Arc<str> = "s-2".into();
        let note = ClientJsonRpcMessage::notification(ClientNotification::InitializedNotification(
            InitializedNotification::default(),
        ));
        wire.saw(&note, Some(&other), &named);
        let sent = wire.get().unwrap();
        assert_eq!(sent.session_id.as_deref(), Some("s-2"));
        assert!(sent.meta.contains_key(DECLARATION[0]));
        // The same again changes nothing (no new allocation to publish).
        wire.saw(&note, Some(&other), &named);
        assert!(Arc::ptr_eq(&sent, &wire.get().unwrap()));
    }
}

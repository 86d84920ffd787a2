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
}

type Error = StreamableHttpError<reqwest::Error>;

impl CredentialedClient {
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
        let headers = [("content-type".to_string(), "application/json".to_string())];
        let user = self.user.load_full();
        let req = OutboundRequest {
            target: &self.target,
            method,
            url: &url,
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
        let url = a.apply_query(&url);
        Ok((a, url))
    }
}

/// reqwest errors quote the request URL, which may hold a query-parameter API key; errors
/// end up in logs, `/readyz` and callers' messages, so the URL is removed.
fn scrub(e: Error) -> Error {
    match e {
        StreamableHttpError::Client(e) => StreamableHttpError::Client(e.without_url()),
        other => other,
    }
}

fn with_headers(
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
        // so a body signature (SigV4) matches.
        let body = serde_json::to_vec(&message)?;
        let ctx = context(&message);
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

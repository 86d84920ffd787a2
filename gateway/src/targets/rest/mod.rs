//! An HTTP API as a target (`[openapi]`, `[http]`): each tool is one [`Operation`], each call
//! one HTTP request with the target's credential attached. Nothing is kept open: the
//! operations are known from the target file or the specification file at load, or fetched
//! once from the specification's URL when the target starts (retried until it loads).

pub mod request;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use futures::FutureExt;
use parking_lot::Mutex;
use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult, Tool, ToolAnnotations};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use url::Url;

use super::{Health, Listing, PendingCall, TargetError};
use crate::config::TargetSpec;
use crate::config::rest::{self, Operation, RestSource, RestSpec, openapi};
use crate::events::Hub;
use crate::outbound::{
    Attachment, CredentialProvider, HttpClientError, OutboundRequest, Principal,
};
use request::{Answer, BadArguments, Built};

/// Between two fetches of a specification URL that failed.
const REFETCH: Duration = Duration::from_secs(30);

/// A handle on an HTTP API target. Cheap to clone.
#[derive(Debug, Clone)]
pub struct RestTarget {
    shared: Arc<Shared>,
    /// The settings calls read (timeout, prefix, scopes).
    spec: Arc<TargetSpec>,
}

#[derive(Debug)]
struct Shared {
    /// The settings the target was built with (its API, credential, connect timeout).
    built: TargetSpec,
    rest: RestSpec,
    http: reqwest::Client,
    credentials: Arc<dyn CredentialProvider>,
    /// `None` until a specification URL was fetched and loaded.
    api: ArcSwapOption<Api>,
    /// Why the API is not known yet (fetching, or what failed).
    pending: Mutex<Pending>,
    /// Flips to true when the first fetch ended, loaded or not.
    first_done: watch::Sender<bool>,
}

#[derive(Debug)]
enum Pending {
    Fetching { since: Instant },
    Failed(String),
    Loaded,
}

/// The operations, where they are sent, and the listing they make.
#[derive(Debug)]
struct Api {
    base: Url,
    /// Shared with the target's settings: not copied per target handle.
    operations: Arc<[Operation]>,
    /// Tool name → index in `operations`.
    by_tool: HashMap<String, usize>,
    listing: Arc<Listing>,
}

impl Api {
    fn new(base: Url, operations: Arc<[Operation]>) -> Self {
        let tools = operations.iter().map(tool).collect();
        Self {
            base,
            by_tool: operations
                .iter()
                .enumerate()
                .map(|(i, o)| (o.tool.clone(), i))
                .collect(),
            operations,
            listing: Arc::new(Listing {
                tools,
                ..Listing::default()
            }),
        }
    }

    fn operation(&self, tool: &str) -> Option<&Operation> {
        self.by_tool.get(tool).map(|i| &self.operations[*i])
    }
}

/// The MCP tool of an operation: its schema and description, and the hints its method
/// gives (GET and HEAD read only, DELETE destructive).
fn tool(op: &Operation) -> Tool {
    let mut hints = ToolAnnotations::new();
    if op.read_only() {
        hints = hints.read_only(true);
    } else if op.destructive() {
        hints = hints.destructive(true);
    }
    Tool::new_with_raw(
        op.tool.clone(),
        op.description.clone().map(Into::into),
        op.input_schema.clone(),
    )
    .with_annotations(hints)
}

impl RestTarget {
    pub fn start(
        spec: TargetSpec,
        rest: RestSpec,
        credentials: Arc<dyn CredentialProvider>,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> Result<Self, HttpClientError> {
        let http = crate::outbound::target_http_client("HTTP API targets", spec.connect_timeout)?;
        let api = match (&rest.source, &rest.base_url) {
            (RestSource::SpecUrl { .. }, _) | (_, None) => None,
            (_, Some(base)) => Some(Arc::new(Api::new(base.clone(), rest.operations.clone()))),
        };
        let loaded = api.is_some();
        let shared = Arc::new(Shared {
            built: spec.clone(),
            rest,
            http,
            credentials,
            api: ArcSwapOption::new(api),
            pending: Mutex::new(if loaded {
                Pending::Loaded
            } else {
                Pending::Fetching {
                    since: Instant::now(),
                }
            }),
            first_done: watch::Sender::new(loaded),
        });
        if let RestSource::SpecUrl { url, filters } = &shared.rest.source {
            tokio::spawn(fetch_until_loaded(
                Arc::downgrade(&shared),
                url.clone(),
                (**filters).clone(),
                hub,
                shutdown,
            ));
        }
        Ok(Self {
            shared,
            spec: Arc::new(spec),
        })
    }

    /// Same API, credential and connect timeout: the handle can be kept across a reload.
    pub fn serves(&self, spec: &TargetSpec) -> bool {
        let built = &self.shared.built;
        built.name == spec.name
            && built.kind == spec.kind
            && built.auth == spec.auth
            && built.connect_timeout == spec.connect_timeout
    }

    pub fn with_spec(&self, spec: TargetSpec) -> Self {
        Self {
            shared: self.shared.clone(),
            spec: Arc::new(spec),
        }
    }

    pub fn same_api(&self, other: &Self) -> bool {
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
        self.shared
            .api
            .load()
            .as_ref()
            .map_or_else(Default::default, |a| a.listing.clone())
    }

    /// Ready once the operations are known; there is no connection to lose.
    pub fn health(&self) -> Health {
        match &*self.shared.pending.lock() {
            Pending::Loaded => Health::Connected,
            Pending::Fetching { .. } => Health::Down {
                reason: format!(
                    "connecting: fetching the OpenAPI specification{}",
                    self.spec_url()
                ),
            },
            Pending::Failed(reason) => Health::Down {
                reason: reason.clone(),
            },
        }
    }

    fn spec_url(&self) -> String {
        match &self.shared.rest.source {
            RestSource::SpecUrl { url, .. } => format!(" from {url}"),
            _ => String::new(),
        }
    }

    pub fn first_attempt_running(&self) -> Option<Duration> {
        match &*self.shared.pending.lock() {
            Pending::Fetching { since } if !*self.shared.first_done.borrow() => {
                Some(since.elapsed())
            }
            _ => None,
        }
    }

    pub fn ever_connected(&self) -> bool {
        self.shared.api.load().is_some()
    }

    /// Wait for the first fetch of a specification URL to end.
    pub async fn ensure_connected(&self) -> Result<(), TargetError> {
        let mut done = self.shared.first_done.subscribe();
        let _ = done.wait_for(|d| *d).await;
        match self.health() {
            Health::Connected => Ok(()),
            Health::Down { reason } => Err(self.unavailable(reason)),
            Health::PerUser { .. } => Ok(()),
        }
    }

    fn unavailable(&self, reason: impl Into<String>) -> TargetError {
        TargetError::Unavailable {
            target: self.name().to_string(),
            reason: reason.into(),
        }
    }

    fn api(&self) -> Result<Arc<Api>, TargetError> {
        self.shared
            .api
            .load_full()
            .ok_or_else(|| match self.health() {
                Health::Down { reason } => self.unavailable(reason),
                _ => self.unavailable("its operations are not known yet"),
            })
    }

    /// The credential phase: obtain the credential for `principal` and `tool` before the
    /// request is built (token endpoint, STS, a user's grant), so a consent that is needed
    /// is asked for before anything is sent.
    pub async fn credential(
        &self,
        principal: Option<&Principal>,
        tool: &str,
    ) -> Result<(), TargetError> {
        let api = self.api()?;
        let probe = Built {
            method: api
                .operation(tool)
                .map_or("GET", |o| o.method.as_str())
                .to_string(),
            url: api.base.clone(),
            headers: vec![],
            body: None,
        };
        self.attach(tool, &probe, principal).await.map(|_| ())
    }

    /// One call: the request built from the arguments, sent with the credential, the
    /// response mapped to the tool's result. Nothing to relay.
    pub async fn call_tool(
        &self,
        params: CallToolRequestParams,
        principal: Option<&Principal>,
    ) -> Result<PendingCall<CallToolResponse>, TargetError> {
        let api = self.api()?;
        let Some(op) = api.operation(params.name.as_ref()) else {
            return Err(TargetError::Refused {
                target: self.name().to_string(),
                reason: format!(
                    "it has no operation `{}` (the specification changed since the tool was listed?)",
                    params.name
                ),
            });
        };
        let built = match request::build(op, &api.base, params.arguments.as_ref()) {
            Ok(b) => b,
            Err(BadArguments(why)) => {
                let result = CallToolResult::error(vec![rmcp::model::ContentBlock::text(why)]);
                return Ok(PendingCall::direct(
                    async move { Ok(CallToolResponse::Complete(result)) }.boxed(),
                ));
            }
        };
        let this = self.clone();
        let principal = principal.cloned();
        let tool = op.tool.clone();
        Ok(PendingCall::direct(
            async move {
                this.send(&tool, &built, principal.as_ref())
                    .await
                    .map(CallToolResponse::Complete)
            }
            .boxed(),
        ))
    }

    /// Send `built` with the credential attached; after a 401, once more with a fresh one
    /// when the provider dropped a cached token.
    async fn send(
        &self,
        tool: &str,
        built: &Built,
        principal: Option<&Principal>,
    ) -> Result<CallToolResult, TargetError> {
        let what = format!("{} {}", built.method, built.url.path());
        let mut retried = false;
        loop {
            let used = self.attach(tool, built, principal).await?;
            let response = self.request(built, &used).send().await.map_err(|e| {
                self.unavailable(format!(
                    "{what} failed: {}",
                    crate::cause::classify(&e.without_url())
                ))
            })?;
            if response.status() == http::StatusCode::UNAUTHORIZED
                && !retried
                && self.shared.credentials.rejected(&used)
            {
                tracing::info!(target: "portcullis::outbound", target_name = %self.name(), "the API refused the credential (401); retrying once with a fresh one");
                retried = true;
                continue;
            }
            return self.answer(response, &what).await;
        }
    }

    async fn attach(
        &self,
        tool: &str,
        built: &Built,
        principal: Option<&Principal>,
    ) -> Result<Attachment, TargetError> {
        let signed: Vec<(String, String)> = built
            .body
            .iter()
            .map(|(ct, _)| ("content-type".to_string(), ct.clone()))
            .collect();
        let req = OutboundRequest {
            target: self.name(),
            method: &built.method,
            url: &built.url,
            headers: &signed,
            body: built.body.as_ref().map_or(&[][..], |(_, b)| b),
            principal,
            tool: Some(tool),
        };
        self.shared
            .credentials
            .attach(&req)
            .await
            .map_err(|error| TargetError::Credential {
                target: self.name().to_string(),
                error,
            })
    }

    fn request(&self, built: &Built, credential: &Attachment) -> reqwest::RequestBuilder {
        let method = http::Method::from_bytes(built.method.as_bytes()).unwrap_or(http::Method::GET);
        let mut req = self
            .shared
            .http
            .request(method, credential.apply_query(&built.url))
            .header(http::header::ACCEPT, "application/json, */*;q=0.5");
        for (k, v) in self.shared.rest.headers.iter().chain(&built.headers) {
            req = req.header(k, v);
        }
        if let Some((ct, body)) = &built.body {
            req = req
                .header(http::header::CONTENT_TYPE, ct)
                .body(body.clone());
        }
        for (k, v) in &credential.headers {
            req = req.header(k, v);
        }
        req
    }

    /// Read at most `max_response_bytes` of the answer and map it to the tool's result.
    async fn answer(
        &self,
        mut response: reqwest::Response,
        what: &str,
    ) -> Result<CallToolResult, TargetError> {
        let limit = self.shared.rest.max_response_bytes;
        let status = response.status();
        let content_type = response
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let too_big = || {
            CallToolResult::error(vec![rmcp::model::ContentBlock::text(format!(
                "{what} answered with more than {limit} bytes (the target's max_response_bytes); ask for less, e.g. with the API's paging or filter arguments"
            ))])
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Ok(too_big());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|e| {
            self.unavailable(format!(
                "{what}: the answer broke off: {}",
                crate::cause::classify(&e.without_url())
            ))
        })? {
            if body.len() + chunk.len() > limit {
                return Ok(too_big());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(request::result(
            &Answer {
                status,
                content_type: content_type.as_deref(),
                body: &body,
            },
            what,
        ))
    }
}

/// Fetch and load a specification URL; on failure say why (health, one log line per new
/// reason) and try again every [`REFETCH`] until it loads or the gateway stops.
async fn fetch_until_loaded(
    shared: std::sync::Weak<Shared>,
    url: Url,
    filters: openapi::Filters,
    hub: Hub,
    shutdown: CancellationToken,
) {
    let mut last_reason = String::new();
    loop {
        let Some(s) = shared.upgrade() else { return };
        let outcome = fetch(&s, &url, &filters).await;
        match outcome {
            Ok(api) => {
                tracing::info!(target: "portcullis::targets", target_name = %s.built.name, "loaded {} operations from the OpenAPI specification at {url}", api.operations.len());
                s.api.store(Some(Arc::new(api)));
                *s.pending.lock() = Pending::Loaded;
                s.first_done.send_replace(true);
                hub.listing_changed();
                return;
            }
            Err(reason) => {
                if reason != last_reason {
                    tracing::warn!(target: "portcullis::targets", target_name = %s.built.name, "{reason}");
                    last_reason.clone_from(&reason);
                }
                *s.pending.lock() = Pending::Failed(reason);
                s.first_done.send_replace(true);
            }
        }
        drop(s);
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(REFETCH) => {}
        }
    }
}

async fn fetch(shared: &Shared, url: &Url, filters: &openapi::Filters) -> Result<Api, String> {
    let failed = |why: String| {
        format!(
            "cannot load the OpenAPI specification at {url}: {why}; fix `spec` in [openapi] or the specification (retrying every {})",
            crate::words::duration(REFETCH)
        )
    };
    // Bounded like a call: a server that never finishes the answer is retried, not waited on.
    let response = shared
        .http
        .get(url.clone())
        .timeout(shared.built.call_timeout)
        .send()
        .await
        .map_err(|e| failed(crate::cause::classify(&e.without_url()).to_string()))?;
    if !response.status().is_success() {
        return Err(failed(format!("it answered HTTP {}", response.status())));
    }
    let text = response
        .text()
        .await
        .map_err(|e| failed(crate::cause::classify(&e.without_url()).to_string()))?;
    let spec = openapi::parse(&text)
        .map_err(|e| vec![e])
        .and_then(|doc| openapi::load(&doc, filters))
        .map_err(|problems| {
            failed(
                problems
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
            )
        })?;
    for w in &spec.warnings {
        tracing::warn!(target: "portcullis::targets", target_name = %shared.built.name, "{url}: {w}");
    }
    let base = match &shared.rest.base_url {
        Some(b) => b.clone(),
        None => rest::server_url(&spec.servers, Some(url)).map_err(failed)?,
    };
    Ok(Api::new(base, spec.operations.into()))
}

//! Outbound credentials: how the gateway authenticates to each target. One
//! [`CredentialProvider`] per target, built when the config is compiled, chosen by `[auth]
//! mode`. It sees the [`Caller`], the tool and the HTTP request about to be sent, and says what
//! to attach; it never sees MCP, and the caller's own token is never what it attaches.

mod api_key;
pub mod authorization_code;
mod client_credentials;
mod oauth;
mod sigv4;
mod token_exchange;
pub mod user_grants;

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use futures::future::BoxFuture;
use http::{HeaderName, HeaderValue};
use url::Url;

pub use client_credentials::ClientCredentials;
pub use sigv4::{SigV4, aws_identity_name};
pub use token_exchange::TokenExchange;

use crate::config::Secret;
use crate::config::outbound::AuthSpec;
use crate::identity::Caller;

/// The bearer token the caller presented to the gateway. Only `outbound/` can read it (token
/// exchange trades it at the caller's authorization server); everything else carries it
/// sealed, from the inbound layer (which puts it in a request extension of its own) to here.
/// It is never attached to a request to a target. Redacted in `Debug`.
#[derive(Debug, Clone)]
pub struct CallerToken(Secret);

impl CallerToken {
    pub fn new(token: impl Into<String>) -> Self {
        Self(Secret::new(token))
    }

    fn expose(&self) -> &str {
        self.0.expose()
    }
}

/// Whom an outbound request acts for: the verified caller, and the token they presented.
#[derive(Debug, Clone)]
pub struct Principal {
    pub caller: Caller,
    token: Option<CallerToken>,
}

impl Principal {
    pub fn new(caller: Caller, token: Option<CallerToken>) -> Self {
        Self { caller, token }
    }

    /// The caller of a request and the token they presented, as the inbound layer recorded
    /// them; `None` when inbound authentication is off.
    pub fn of_request(parts: Option<&http::request::Parts>) -> Option<Self> {
        let parts = parts?;
        let caller = parts.extensions.get::<Caller>()?;
        let token = parts.extensions.get::<CallerToken>();
        Some(Self::new(caller.clone(), token.cloned()))
    }

    /// The caller's own token, for token exchange.
    fn token(&self) -> Option<&str> {
        self.token.as_ref().map(CallerToken::expose)
    }

    #[cfg(test)]
    pub(crate) fn token_for_tests(&self) -> Option<&str> {
        self.token()
    }
}

/// One HTTP request the gateway is about to send to a target.
#[derive(Debug)]
pub struct OutboundRequest<'a> {
    pub target: &'a str,
    pub method: &'a str,
    pub url: &'a Url,
    /// Headers that will be sent and that a signature must cover (e.g. `content-type`).
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// Who the call is for; `None` for the gateway's own requests (session set-up, listing).
    pub principal: Option<&'a Principal>,
    /// The upstream tool being called, if any.
    pub tool: Option<&'a str>,
}

impl OutboundRequest<'_> {
    pub fn caller(&self) -> Option<&Caller> {
        self.principal.map(|p| &p.caller)
    }
}

/// What to add to the request. Values are marked sensitive and never printed.
#[derive(Default, Clone)]
pub struct Attachment {
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub query: Vec<(String, String)>,
}

impl fmt::Debug for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<_> = self.headers.iter().map(|(n, _)| n.as_str()).collect();
        let query: Vec<_> = self.query.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("Attachment")
            .field("headers", &names)
            .field("query", &query)
            .finish_non_exhaustive()
    }
}

impl Attachment {
    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Self, CredentialError> {
        let mut v = HeaderValue::from_str(value).map_err(|_| {
            CredentialError::Invalid("credential is not a valid header value".into())
        })?;
        v.set_sensitive(true);
        self.headers.push((name, v));
        Ok(self)
    }

    /// The URL with the query credentials added.
    pub fn apply_query(&self, url: &Url) -> Url {
        let mut url = url.clone();
        if !self.query.is_empty() {
            let mut q = url.query_pairs_mut();
            for (k, v) in &self.query {
                q.append_pair(k, v);
            }
        }
        url
    }
}

/// Why no credential could be produced. Each names the target, so the caller's tool error
/// says which registration needs attention.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    /// The credential service refused: an OAuth error code, or an AWS STS error code.
    #[error("the credential service refused: {code}{}", .description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        code: String,
        description: Option<String>,
    },
    #[error("the credential service is unreachable: {0}")]
    Unreachable(String),
    #[error("{0}")]
    Invalid(String),
    #[error("mode `{0}` acts for a caller, and this request has none")]
    NoCaller(&'static str),
    /// The caller has no usable grant for this target: they must consent (to `scopes`).
    #[error("the user has not allowed this yet (consent needed for: {})", scopes.join(" "))]
    ConsentNeeded { scopes: Vec<String> },
}

/// The seam every target kind calls before sending a request.
pub trait CredentialProvider: Send + Sync + fmt::Debug {
    fn mode(&self) -> &'static str;

    /// What to attach to this request.
    fn attach<'a>(
        &'a self,
        req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>>;

    /// The target answered 401 to a request made with `used`: drop any cached token it came
    /// from. Returns true when retrying once with a fresh credential can help.
    fn rejected(&self, _used: &Attachment) -> bool {
        false
    }

    /// Whether `attach` reads the request's body (a signature over it, SigV4). Callers that
    /// would have to serialise a message only to hand it over skip that for the others.
    fn signs_body(&self) -> bool {
        false
    }

    /// The users' grants, for a provider that acts with each user's consent (3LO): the
    /// consent pages start and finish authorizations through it.
    fn user_grants(&self) -> Option<&user_grants::UserGrants> {
        None
    }

    /// The AWS credentials behind a SigV4 provider, for a target that calls AWS through its
    /// SDK (Lambda) instead of signing requests of its own.
    fn aws(&self) -> Option<&SigV4> {
        None
    }
}

/// The clock providers use for token expiry; injectable so tests can move time.
pub type Clock = Arc<dyn Fn() -> SystemTime + Send + Sync>;

pub fn system_clock() -> Clock {
    Arc::new(SystemTime::now)
}

/// No credentials.
#[derive(Debug)]
pub struct NoAuth;

impl CredentialProvider for NoAuth {
    fn mode(&self) -> &'static str {
        "none"
    }
    fn attach<'a>(
        &'a self,
        _req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async { Ok(Attachment::default()) })
    }
}

/// What providers that act with a user's consent (3LO) are built with: where grants are kept
/// and where the provider sends the user's browser back (`{public_url}/consent/callback`).
#[derive(Debug, Clone)]
pub struct ConsentWiring {
    pub vault: crate::vault::Vault,
    pub callback: Url,
}

/// A 3LO target in a command that keeps no vault (`check`, `tools`): it cannot act for users.
#[derive(Debug)]
struct NoVault;

impl CredentialProvider for NoVault {
    fn mode(&self) -> &'static str {
        "oauth2_authorization_code"
    }
    fn attach<'a>(
        &'a self,
        _req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async {
            Err(CredentialError::Invalid(
                "this command keeps no token vault, so it cannot act for a user; `portcullis serve` does".into(),
            ))
        })
    }
}

/// Build the provider for target `target`'s `[auth]`. Expensive state (HTTP clients, token
/// caches, AWS clients) lives in the provider, built once per target.
pub fn provider(
    target: &str,
    spec: &AuthSpec,
    http: reqwest::Client,
    consent: Option<&ConsentWiring>,
) -> Arc<dyn CredentialProvider> {
    match spec {
        AuthSpec::AuthorizationCode(s) => match consent {
            Some(c) => Arc::new(user_grants::UserGrants::new(
                target,
                Arc::new(authorization_code::LazyClient::new(
                    (**s).clone(),
                    c.callback.clone(),
                    http,
                    system_clock(),
                )),
                c.vault.clone(),
                s.scopes.clone(),
                s.tool_scopes.clone(),
                system_clock(),
            )),
            None => Arc::new(NoVault),
        },
        AuthSpec::None => Arc::new(NoAuth),
        AuthSpec::ApiKey { key, placement } => {
            Arc::new(api_key::ApiKey::new(key.clone(), placement.clone()))
        }
        AuthSpec::ClientCredentials(s) => {
            Arc::new(ClientCredentials::new(s.clone(), http, system_clock()))
        }
        AuthSpec::AwsSigv4(s) => Arc::new(SigV4::new(s.clone(), system_clock())),
        AuthSpec::TokenExchange(s) => Arc::new(TokenExchange::new(s.clone(), http, system_clock())),
    }
}

/// An HTTP client for token endpoints: no redirects (a redirect could carry our client
/// credentials elsewhere), bounded time. Built once per process and shared by every
/// provider; reloads keep it (and its pooled connections).
pub fn token_http_client() -> Result<reqwest::Client, HttpClientError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(15))
        .build()
        .map_err(|e| HttpClientError::new("token endpoints", &e))
}

/// The HTTP client of one target (MCP over HTTP, an HTTP API): its connect timeout, and no
/// redirects, which could carry the target's credential to another host (SSRF guidance).
/// Built once per target, its connections kept alive between calls.
pub fn target_http_client(
    what: &'static str,
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, HttpClientError> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .build()
        .map_err(|e| HttpClientError::new(what, &e))
}

/// An HTTP client could not be built. Never replaced by a default client: that would drop
/// the no-redirect guard (and `reqwest`'s default panics on the same failure).
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot set up the HTTP client for {purpose}: {cause}. This comes from the TLS setup of this machine (e.g. its root certificates), not from the configuration; the gateway cannot start without it"
)]
pub struct HttpClientError {
    purpose: &'static str,
    cause: String,
}

impl HttpClientError {
    /// `purpose` names what the client is for, as a person reads it ("token endpoints").
    pub fn new(purpose: &'static str, e: &reqwest::Error) -> Self {
        // reqwest says only "builder error" at the top: the cause is in its sources.
        let mut cause = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(s) = source {
            cause = format!("{cause}: {s}");
            source = s.source();
        }
        Self { purpose, cause }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_cannot_be_built_is_an_error_in_plain_words() {
        // A TLS range the backend cannot offer: one way to make `build` fail.
        let e = reqwest::Client::builder()
            .tls_version_min(reqwest::tls::Version::TLS_1_0)
            .tls_version_max(reqwest::tls::Version::TLS_1_1)
            .build()
            .expect_err("rustls offers no TLS below 1.2");
        let message = HttpClientError::new("token endpoints", &e).to_string();
        assert!(
            message.starts_with("cannot set up the HTTP client for token endpoints: "),
            "{message}"
        );
        assert!(message.contains("TLS"), "names the cause: {message}");
        assert!(!message.contains("::"), "{message}");
    }
}

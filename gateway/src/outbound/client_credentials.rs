//! `oauth2_client_credentials` (2LO): the gateway's own token for a target, from the token
//! endpoint (given, or discovered from `issuer`), cached until expiry minus a skew and
//! refreshed single-flight: a thousand concurrent calls cause one token request. An upstream
//! 401 drops the cached token once, so a revoked token is replaced on the retry.

use std::sync::atomic::{AtomicU64, Ordering};

use futures::future::BoxFuture;
use http::header::AUTHORIZATION;
use oauth2::basic::BasicClient;
use oauth2::{AuthType, ClientId, ClientSecret, Scope, TokenResponse, TokenUrl};
use parking_lot::Mutex;
use tokio::sync::OnceCell;
use url::Url;

use super::oauth::{self, CachedToken};
use super::{Attachment, Clock, CredentialError, CredentialProvider, OutboundRequest};
use crate::config::Secret;
use crate::config::outbound::{ClientAuth, ClientCredentialsSpec, TokenEndpoint};

#[derive(Debug)]
pub struct ClientCredentials {
    spec: ClientCredentialsSpec,
    http: reqwest::Client,
    clock: ClockDebug,
    endpoint: OnceCell<Url>,
    cache: Mutex<Option<CachedToken>>,
    flight: tokio::sync::Mutex<()>,
    fetches: AtomicU64,
}

/// `Clock` is a closure; this wrapper gives it a `Debug`.
pub(super) struct ClockDebug(pub Clock);

impl std::fmt::Debug for ClockDebug {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

impl ClientCredentials {
    pub fn new(spec: ClientCredentialsSpec, http: reqwest::Client, clock: Clock) -> Self {
        Self {
            spec,
            http,
            clock: ClockDebug(clock),
            endpoint: OnceCell::new(),
            cache: Mutex::new(None),
            flight: tokio::sync::Mutex::new(()),
            fetches: AtomicU64::new(0),
        }
    }

    /// How many token requests this provider has made (for metrics and tests).
    pub fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    fn cached(&self) -> Option<Secret> {
        let now = (self.clock.0)();
        self.cache
            .lock()
            .as_ref()
            .filter(|t| t.fresh(now))
            .map(|t| t.access_token.clone())
    }

    /// A valid access token, fetching one if needed (single-flight).
    pub async fn token(&self) -> Result<Secret, CredentialError> {
        if let Some(t) = self.cached() {
            return Ok(t);
        }
        let _flight = self.flight.lock().await;
        if let Some(t) = self.cached() {
            return Ok(t); // fetched by the call we waited behind
        }
        let url = self
            .endpoint
            .get_or_try_init(|| async {
                match &self.spec.endpoint {
                    TokenEndpoint::Url(u) => Ok(u.clone()),
                    TokenEndpoint::Issuer(i) => oauth::discover_token_endpoint(&self.http, i).await,
                }
            })
            .await?
            .clone();
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let fresh = self.fetch(&url).await?;
        let token = fresh.access_token.clone();
        *self.cache.lock() = Some(fresh);
        Ok(token)
    }

    async fn fetch(&self, url: &Url) -> Result<CachedToken, CredentialError> {
        let now = (self.clock.0)();
        let client = BasicClient::new(ClientId::new(self.spec.client.client_id.clone()))
            .set_token_uri(TokenUrl::from_url(url.clone()));
        let client = match &self.spec.client.auth {
            ClientAuth::Basic(s) => client
                .set_client_secret(ClientSecret::new(s.expose().to_string()))
                .set_auth_type(AuthType::BasicAuth),
            ClientAuth::Post(s) => client
                .set_client_secret(ClientSecret::new(s.expose().to_string()))
                .set_auth_type(AuthType::RequestBody),
            ClientAuth::PrivateKeyJwt { .. } | ClientAuth::None => {
                client.set_auth_type(AuthType::RequestBody)
            }
        };
        let mut req = client.exchange_client_credentials();
        for s in &self.spec.scopes {
            req = req.add_scope(Scope::new(s.clone()));
        }
        if let Some(a) = &self.spec.audience {
            req = req.add_extra_param("audience", a.clone());
        }
        if let Some(r) = &self.spec.resource {
            req = req.add_extra_param("resource", r.clone());
        }
        if let Some(fields) = oauth::client_assertion(&self.spec.client, url, now)? {
            for (k, v) in fields {
                req = req.add_extra_param(k, v);
            }
        }
        let http = self.http.clone();
        let send = move |r: oauth2::HttpRequest| {
            let http = http.clone();
            async move { oauth::send(&http, r).await }
        };
        let tok = req.request_async(&send).await.map_err(oauth::token_error)?;
        Ok(CachedToken::new(
            tok.access_token().secret().clone(),
            tok.expires_in(),
            self.spec.refresh_skew,
            now,
        ))
    }
}

impl CredentialProvider for ClientCredentials {
    fn mode(&self) -> &'static str {
        "oauth2_client_credentials"
    }

    fn attach<'a>(
        &'a self,
        _req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async move {
            let token = self.token().await?;
            Attachment::default().header(AUTHORIZATION, &format!("Bearer {}", token.expose()))
        })
    }

    fn rejected(&self, used: &Attachment) -> bool {
        let mut slot = self.cache.lock();
        let same = slot.as_ref().is_some_and(|t| {
            used.headers.iter().any(|(_, v)| {
                v.to_str().ok() == Some(format!("Bearer {}", t.access_token.expose()).as_str())
            })
        });
        if same {
            *slot = None;
        }
        // Either we just dropped the rejected token or another call already replaced it:
        // one retry with the current token can succeed.
        true
    }
}

//! `token_exchange` (RFC 8693): trade the caller's token at an authorization server for one
//! with the target's audience, cached per (caller token, target) until it expires.
//!
//! The `oauth2` crate has no RFC 8693 grant, so the form POST is written here: a few fields,
//! sent with the same client authentication as the other modes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use http::header::AUTHORIZATION;
use parking_lot::Mutex;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client_credentials::ClockDebug;
use super::oauth::{self, CachedToken};
use super::{Attachment, Clock, CredentialError, CredentialProvider, OutboundRequest, Principal};
use crate::config::outbound::{ClientAuth, TokenExchangeSpec};

const GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const SKEW: Duration = Duration::from_secs(30);
const MAX_CACHED: usize = 10_000;

#[derive(Debug)]
pub struct TokenExchange {
    spec: TokenExchangeSpec,
    http: reqwest::Client,
    clock: ClockDebug,
    cache: Mutex<HashMap<[u8; 32], CachedToken>>,
    flights: Mutex<HashMap<[u8; 32], Arc<tokio::sync::Mutex<()>>>>,
}

#[derive(Debug, Deserialize)]
struct Exchanged {
    access_token: String,
    expires_in: Option<u64>,
}

#[derive(Debug, Deserialize)]
struct OAuthError {
    error: String,
    error_description: Option<String>,
}

impl TokenExchange {
    pub fn new(spec: TokenExchangeSpec, http: reqwest::Client, clock: Clock) -> Self {
        Self {
            spec,
            http,
            clock: ClockDebug(clock),
            cache: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    async fn exchange(&self, subject: &str) -> Result<CachedToken, CredentialError> {
        let now = (self.clock.0)();
        let mut form: Vec<(String, String)> = vec![
            ("grant_type".into(), GRANT.into()),
            ("subject_token".into(), subject.into()),
            (
                "subject_token_type".into(),
                self.spec.subject_token_type.clone(),
            ),
        ];
        if let Some(a) = &self.spec.audience {
            form.push(("audience".into(), a.clone()));
        }
        if let Some(r) = &self.spec.resource {
            form.push(("resource".into(), r.clone()));
        }
        if !self.spec.scopes.is_empty() {
            form.push(("scope".into(), self.spec.scopes.join(" ")));
        }
        if let Some(t) = &self.spec.requested_token_type {
            form.push(("requested_token_type".into(), t.clone()));
        }
        let mut req = self.http.post(self.spec.token_url.clone());
        if let Some(client) = &self.spec.client {
            match &client.auth {
                // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
                ClientAuth::Basic(s) => {
                    req = req.basic_auth(
                        oauth::form_encode(&client.client_id),
                        Some(oauth::form_encode(s.expose())),
                    )
                }
                ClientAuth::Post(s) => {
                    form.push(("client_id".into(), client.client_id.clone()));
                    form.push(("client_secret".into(), s.expose().to_string()));
                }
                ClientAuth::PrivateKeyJwt { .. } => {
                    form.push(("client_id".into(), client.client_id.clone()));
                    if let Some(fields) =
                        oauth::client_assertion(client, &self.spec.token_url, now)?
                    {
                        form.extend(fields);
                    }
                }
                ClientAuth::None => form.push(("client_id".into(), client.client_id.clone())),
            }
        }
        let resp = req
            .form(&form)
            .send()
            .await
            .map_err(|e| CredentialError::Unreachable(e.to_string()))?;
        let status = resp.status();
        let body = crate::auth_server::read_limited(resp, crate::auth_server::MAX_DOCUMENT_BYTES)
            .await
            .map_err(CredentialError::Unreachable)?;
        if !status.is_success() {
            return Err(match serde_json::from_slice::<OAuthError>(&body) {
                Ok(e) => CredentialError::Refused {
                    code: e.error,
                    description: e.error_description,
                },
                Err(_) => {
                    CredentialError::Invalid(format!("the token endpoint answered HTTP {status}"))
                }
            });
        }
        let t: Exchanged = serde_json::from_slice(&body)
            .map_err(|e| CredentialError::Invalid(format!("not a token exchange response: {e}")))?;
        Ok(CachedToken::new(
            t.access_token,
            t.expires_in.map(Duration::from_secs),
            SKEW,
            now,
        ))
    }
}

impl CredentialProvider for TokenExchange {
    fn mode(&self) -> &'static str {
        "token_exchange"
    }

    fn attach<'a>(
        &'a self,
        req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async move {
            let subject = req
                .principal
                .and_then(Principal::token)
                .ok_or(CredentialError::NoCaller("token_exchange"))?;
            let key: [u8; 32] =
                Sha256::digest(format!("{}\u{0}{}", req.target, subject).as_bytes()).into();
            let now = (self.clock.0)();
            let cached = |now| {
                self.cache
                    .lock()
                    .get(&key)
                    .filter(|t| t.fresh(now))
                    .cloned()
            };
            let token = match cached(now) {
                Some(t) => t,
                None => {
                    // Single flight per (caller token, target): concurrent calls of one caller
                    // share one exchange.
                    let flight = self.flights.lock().entry(key).or_default().clone();
                    let _guard = flight.lock().await;
                    match cached((self.clock.0)()) {
                        Some(t) => t,
                        None => {
                            let t = self.exchange(subject).await?;
                            let mut c = self.cache.lock();
                            if c.len() >= MAX_CACHED {
                                c.retain(|_, t| t.fresh(now));
                                if c.len() >= MAX_CACHED {
                                    c.clear(); // bounded memory beats a perfect hit rate
                                    self.flights.lock().clear();
                                }
                            }
                            c.insert(key, t.clone());
                            drop(c);
                            t
                        }
                    }
                }
            };
            Attachment::default().header(
                AUTHORIZATION,
                &format!("Bearer {}", token.access_token.expose()),
            )
        })
    }

    fn rejected(&self, used: &Attachment) -> bool {
        let used: Vec<&str> = used
            .headers
            .iter()
            .filter_map(|(_, v)| v.to_str().ok())
            .collect();
        self.cache
            .lock()
            .retain(|_, t| !used.contains(&format!("Bearer {}", t.access_token.expose()).as_str()));
        true
    }
}

//! Signing the person at the browser in, so a consent is given by the user whose call asked
//! for it. Two ways, by the caller's issuer:
//!
//! - the development IdP (`[dev_idp]`): its own login form (loopback only, marked as
//!   development; whoever sits at the machine may be anyone, as with its tokens);
//! - any other issuer: OpenID Connect at that issuer — authorization code with PKCE (S256),
//!   `state` bound to the browser, a `nonce`, and the ID token verified with the issuer's
//!   keys (the same keys, algorithms and user claim as the callers' tokens), the gateway
//!   registered there as a client (`[inbound.issuers.consent_login]`).

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};
use url::Url;

use super::browser::{Browser, SignIn, same};
use crate::config::{ConsentLoginSpec, Secret};
use crate::inbound::Issuer;
use crate::inbound::dev_idp::store::{Expiring, digest, random_token};
use crate::outbound::authorization_code::{
    AuthCodeError, AuthorizationCodeClient, ClientAuthMethod, ClientRegistration,
    ProviderEndpoints, new_pkce_verifier,
};

/// How long a sign-in at an issuer may take.
const ATTEMPT_TTL: Duration = Duration::from_secs(10 * 60);
const CAPACITY: usize = 10_000;

/// Where the browser goes once signed in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Then {
    Consent(String),
    Grants,
}

impl Then {
    pub fn path(&self) -> String {
        match self {
            Self::Consent(id) => format!("/consent/{id}"),
            Self::Grants => "/consent/grants".into(),
        }
    }
}

/// A sign-in at an issuer, waiting for its callback.
#[derive(Debug, Clone)]
struct Attempt {
    issuer: String,
    browser: [u8; 32],
    nonce: String,
    verifier: Secret,
    then: Then,
}

/// Why a sign-in failed, in words for the page.
#[derive(Debug)]
pub struct Failed {
    pub status: http::StatusCode,
    pub what: String,
    pub fix: String,
}

impl Failed {
    fn new(status: http::StatusCode, what: impl Into<String>, fix: impl Into<String>) -> Self {
        Self {
            status,
            what: what.into(),
            fix: fix.into(),
        }
    }
}

#[derive(Debug)]
pub struct OidcLogins {
    attempts: Expiring<[u8; 32], Attempt>,
    /// Endpoints by issuer, discovered once.
    endpoints: parking_lot::Mutex<std::collections::HashMap<String, ProviderEndpoints>>,
}

impl Default for OidcLogins {
    fn default() -> Self {
        Self {
            attempts: Expiring::new(CAPACITY, ATTEMPT_TTL),
            endpoints: Default::default(),
        }
    }
}

impl OidcLogins {
    /// The authorization URL that signs `browser` in at `issuer`, then returns to `then`.
    pub async fn start(
        &self,
        issuer: &Issuer,
        login: &ConsentLoginSpec,
        callback: &Url,
        http: &reqwest::Client,
        browser: &Browser,
        then: Then,
    ) -> Result<Url, Failed> {
        let nonce = random_token().map_err(|_| unavailable())?;
        let verifier = new_pkce_verifier();
        let client = self
            .client(issuer, login, callback, http, Some(&nonce))
            .await?;
        let auth = client.begin_with_verifier(&login.scopes, &verifier);
        self.attempts.insert(
            digest(&auth.state),
            Attempt {
                issuer: issuer.spec.issuer.clone(),
                browser: browser.digest(),
                nonce,
                verifier,
                then,
            },
        );
        Ok(auth.url)
    }

    /// The issuer sent the browser back: who signed in, and where to go next.
    #[allow(clippy::too_many_arguments)]
    pub async fn finish(
        &self,
        issuers: &[Arc<Issuer>],
        callback: &Url,
        http: &reqwest::Client,
        browser: Option<&Browser>,
        state: &str,
        code: &str,
    ) -> Result<(SignIn, Then), Failed> {
        let attempt = self.attempts.take(&digest(state)).ok_or_else(|| {
            Failed::new(
                http::StatusCode::BAD_REQUEST,
                "This sign-in was already completed, has expired, or was not started here.",
                "Open the consent link from your agent again.",
            )
        })?;
        if !browser.is_some_and(|b| same(&b.digest(), &attempt.browser)) {
            return Err(Failed::new(
                http::StatusCode::FORBIDDEN,
                "This sign-in was started in another browser (or this browser's cookies were cleared).",
                "Open the consent link again in the browser you sign in with, with cookies allowed for this gateway.",
            ));
        }
        let issuer = issuers
            .iter()
            .find(|i| i.spec.issuer == attempt.issuer)
            .ok_or_else(|| gone(&attempt.issuer))?;
        let login = issuer
            .spec
            .consent_login
            .as_ref()
            .ok_or_else(|| gone(&attempt.issuer))?;
        let client = self.client(issuer, login, callback, http, None).await?;
        let tokens = client
            .exchange(code, &attempt.verifier, &login.scopes)
            .await
            .map_err(|e| {
                Failed::new(
                    http::StatusCode::BAD_GATEWAY,
                    format!("Signing in at {} failed: {e}", attempt.issuer),
                    "Try again; if it keeps failing, the gateway's administrator should check the consent_login client registration at this issuer.",
                )
            })?;
        let id_token = tokens.id_token.ok_or_else(|| {
            Failed::new(
                http::StatusCode::BAD_GATEWAY,
                format!("{} answered the sign-in without an ID token.", attempt.issuer),
                "The gateway's administrator should make sure the consent_login client may use OpenID Connect (scope openid) at this issuer.",
            )
        })?;
        let user = verify_id_token(issuer, &login.client_id, &attempt.nonce, &id_token)
            .await
            .map_err(|why| {
                Failed::new(
                    http::StatusCode::BAD_GATEWAY,
                    format!("The ID token from {} was refused: {why}.", attempt.issuer),
                    "Try again; if it keeps failing, the gateway's administrator should compare the issuer's settings with [inbound.issuers] (algorithms, user_claim).",
                )
            })?;
        Ok((
            SignIn {
                issuer: attempt.issuer,
                user,
            },
            attempt.then,
        ))
    }

    async fn client(
        &self,
        issuer: &Issuer,
        login: &ConsentLoginSpec,
        callback: &Url,
        http: &reqwest::Client,
        nonce: Option<&str>,
    ) -> Result<AuthorizationCodeClient, Failed> {
        let name = &issuer.spec.issuer;
        let known = self.endpoints.lock().get(name).cloned();
        let endpoints = match known {
            Some(e) => e,
            None => {
                let e = ProviderEndpoints::discover(http, name)
                    .await
                    .map_err(|e| unreachable_issuer(name, &e))?;
                self.endpoints.lock().insert(name.clone(), e.clone());
                e
            }
        };
        let registration = ClientRegistration {
            client_id: login.client_id.clone(),
            client_secret: login.client_secret.clone(),
            auth_method: ClientAuthMethod::Basic,
            redirect_uri: callback.clone(),
            resource: None,
            scope_param: "scope".into(),
            extra_authorize_params: nonce
                .map(|n| vec![("nonce".to_string(), n.to_string())])
                .unwrap_or_default(),
        };
        AuthorizationCodeClient::new(
            endpoints,
            registration,
            http.clone(),
            crate::outbound::system_clock(),
        )
        .map_err(|e| unreachable_issuer(name, &e))
    }
}

fn unavailable() -> Failed {
    Failed::new(
        http::StatusCode::SERVICE_UNAVAILABLE,
        "The gateway could not make a random value (its random number generator failed).",
        "Try again in a moment.",
    )
}

fn gone(issuer: &str) -> Failed {
    Failed::new(
        http::StatusCode::BAD_REQUEST,
        format!("The gateway no longer signs users in at {issuer} (its configuration changed)."),
        "Open the consent link from your agent again.",
    )
}

fn unreachable_issuer(issuer: &str, e: &AuthCodeError) -> Failed {
    Failed::new(
        http::StatusCode::BAD_GATEWAY,
        format!("The gateway cannot sign you in at {issuer}: {e}"),
        "Try again later; if it keeps failing, tell the gateway's administrator.",
    )
}

/// The user an ID token names, after checking its signature (the issuer's published keys,
/// the issuer's allowed algorithms), `iss`, `aud` (our client id), `exp` and `nonce`.
async fn verify_id_token(
    issuer: &Issuer,
    client_id: &str,
    nonce: &str,
    token: &Secret,
) -> Result<String, String> {
    let spec = &issuer.spec;
    let header = decode_header(token.expose()).map_err(|_| "it is not a JWT".to_string())?;
    if !spec.algorithms.contains(&header.alg) {
        return Err(format!(
            "it is signed with {:?}, which is not among the issuer's allowed algorithms",
            header.alg
        ));
    }
    let jwk = issuer
        .keys
        .key(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| match e {
            crate::inbound::KeyError::UnknownKid(kid) => {
                format!("the issuer publishes no key `{kid}`")
            }
            crate::inbound::KeyError::NoKid => {
                "it names no key and the issuer publishes several".to_string()
            }
            crate::inbound::KeyError::Unavailable(why) => {
                format!("the issuer's keys cannot be fetched ({why})")
            }
        })?;
    let key =
        DecodingKey::from_jwk(&jwk).map_err(|_| "the issuer's key is unusable".to_string())?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&spec.issuer]);
    validation.set_audience(&[client_id]);
    validation.leeway = spec.leeway.as_secs();
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    let claims = decode::<Map<String, Value>>(token.expose(), &key, &validation)
        .map_err(|e| format!("{e}"))?
        .claims;
    let sent = claims
        .get("nonce")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !same(&digest(sent), &digest(nonce)) {
        return Err("its nonce is not the one this sign-in sent (a replayed ID token)".into());
    }
    claims
        .get(&spec.user_claim)
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            format!(
                "it has no `{}` claim, which names users at this issuer; add the scope that brings it (e.g. profile) to consent_login.scopes",
                spec.user_claim
            )
        })
}

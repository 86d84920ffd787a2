//! The gateway as an OAuth 2.0 client of a third-party provider, on behalf of one user (3LO):
//! the authorization request (PKCE S256, a fresh `state`, RFC 8707 `resource`), the code
//! exchange, refresh, and RFC 7009 revocation. Storing grants (the vault), the consent page
//! and the callback that checks `state` are the caller's; this module holds no per-user state.
//!
//! The `oauth2` crate builds the authorization URL and the token requests. It refuses
//! revocation endpoints that are not `https`, loopback included, so the RFC 7009 POST (two
//! form fields plus client authentication) is written here, as token exchange is.

mod endpoints;
mod error;
mod lazy;
#[cfg(test)]
mod tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError,
    Scope, StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

pub use endpoints::ProviderEndpoints;
pub use error::AuthCodeError;
pub use lazy::LazyClient;

use super::client_credentials::ClockDebug;
use super::{Clock, oauth};
use crate::config::Secret;
use crate::config::outbound::{AuthorizationCodeSpec, ClientAuth, RESERVED_PARAMS};

/// Random bytes in `state` (256 bits; base64url-encoded).
const STATE_BYTES: u32 = 32;

/// How the client proves itself at the token and revocation endpoints when it has a secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuthMethod {
    /// `client_secret_basic` (RFC 6749 §2.3.1), the default of most providers.
    Basic,
    /// `client_secret_post`: id and secret in the form body.
    Post,
}

/// What the provider knows about the gateway as its client, for one target.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub client_id: String,
    /// `None`: a public client (PKCE alone protects the code).
    pub client_secret: Option<Secret>,
    pub auth_method: ClientAuthMethod,
    /// Where the provider sends the browser back (the gateway's callback).
    pub redirect_uri: Url,
    /// RFC 8707 resource indicator, sent on the authorization and every token request.
    pub resource: Option<String>,
    /// The authorization parameter that carries the scopes: `scope`, or Slack's
    /// `user_scope` for user tokens.
    pub scope_param: String,
    /// Added to the authorization URL, e.g. `access_type=offline`, `prompt=consent`.
    pub extra_authorize_params: Vec<(String, String)>,
}

impl ClientRegistration {
    /// The registration a target's compiled `[auth]` settings describe, with the gateway's
    /// callback as `redirect_uri`.
    pub fn from_spec(
        spec: &AuthorizationCodeSpec,
        redirect_uri: Url,
    ) -> Result<Self, AuthCodeError> {
        let (client_secret, auth_method) = match &spec.client.auth {
            ClientAuth::Basic(s) => (Some(s.clone()), ClientAuthMethod::Basic),
            ClientAuth::Post(s) => (Some(s.clone()), ClientAuthMethod::Post),
            ClientAuth::None => (None, ClientAuthMethod::Basic),
            ClientAuth::PrivateKeyJwt { .. } => {
                return Err(AuthCodeError::Misconfigured(
                    "user consent supports client_secret_basic, client_secret_post or a public client, not private_key_jwt; set `client_auth` to one of those".into(),
                ));
            }
        };
        Ok(Self {
            client_id: spec.client.client_id.clone(),
            client_secret,
            auth_method,
            redirect_uri,
            resource: spec.resource.clone(),
            scope_param: spec.scope_param.to_string(),
            extra_authorize_params: spec.authorize_params.clone(),
        })
    }
}

/// A fresh PKCE code verifier (32 random bytes, base64url; RFC 7636 §4.1), for S256.
pub fn new_pkce_verifier() -> Secret {
    let (_, verifier) = PkceCodeChallenge::new_random_sha256();
    Secret::new(verifier.secret().clone())
}

/// An authorization request about to be sent to the user's browser.
#[derive(Debug, Clone)]
pub struct Authorization {
    /// The provider's authorization URL with every parameter.
    pub url: Url,
    /// Single-use; the callback must carry exactly this value back.
    pub state: String,
    /// Kept server-side (the pending consent) until the code is exchanged.
    pub pkce_verifier: Secret,
}

/// Tokens from a code exchange or a refresh.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub access_token: Secret,
    /// `None` from a refresh: the provider did not rotate it, keep the old one.
    pub refresh_token: Option<Secret>,
    /// Unix seconds; `None` when the provider gave no `expires_in`.
    pub expires_at: Option<i64>,
    /// The response's `scope`, else the scopes asked for (RFC 6749 §5.1: omitted = as asked).
    pub granted_scopes: Vec<String>,
    /// Salesforce's `instance_url`: the API host of the user's organisation.
    pub instance_url: Option<String>,
    /// The OpenID Connect ID token, when `openid` was asked for.
    pub id_token: Option<Secret>,
}

/// Which kind of token [`AuthorizationCodeClient::revoke`] is given (RFC 7009 `token_type_hint`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    AccessToken,
    RefreshToken,
}

impl TokenKind {
    fn hint(self) -> &'static str {
        match self {
            Self::AccessToken => "access_token",
            Self::RefreshToken => "refresh_token",
        }
    }
}

/// Fields of a token response beyond RFC 6749 that the gateway keeps.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct ProviderFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    instance_url: Option<String>,
    /// OpenID Connect: when the client asked for `openid` (the consent pages' login).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl oauth2::ExtraTokenFields for ProviderFields {}

type ProviderTokenResponse = StandardTokenResponse<ProviderFields, BasicTokenType>;

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    ProviderTokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The OAuth client of one target's provider, built once per target. It holds no per-user
/// state, so one instance serves every user.
#[derive(Debug)]
pub struct AuthorizationCodeClient {
    oauth: OAuthClient,
    registration: ClientRegistration,
    endpoints: ProviderEndpoints,
    http: reqwest::Client,
    clock: ClockDebug,
}

impl AuthorizationCodeClient {
    /// `http` should be [`super::token_http_client`]: it follows no redirect, so nothing sent
    /// to the token endpoint can be carried elsewhere.
    pub fn new(
        endpoints: ProviderEndpoints,
        registration: ClientRegistration,
        http: reqwest::Client,
        clock: Clock,
    ) -> Result<Self, AuthCodeError> {
        for (name, _) in &registration.extra_authorize_params {
            if let Some(reserved) = RESERVED_PARAMS
                .iter()
                .chain([&registration.scope_param.as_str()])
                .find(|r| r.eq_ignore_ascii_case(name.trim()))
            {
                return Err(AuthCodeError::Misconfigured(format!(
                    "the extra authorization parameter `{name}` would replace `{reserved}`, which the gateway sets itself on every authorization request. Remove it from the extra parameters"
                )));
            }
        }
        let mut oauth = oauth2::Client::new(ClientId::new(registration.client_id.clone()))
            .set_auth_uri(AuthUrl::from_url(endpoints.authorization_url.clone()))
            .set_token_uri(TokenUrl::from_url(endpoints.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(registration.redirect_uri.clone()));
        oauth = match (&registration.client_secret, registration.auth_method) {
            (Some(s), ClientAuthMethod::Basic) => oauth
                .set_client_secret(ClientSecret::new(s.expose().to_string()))
                .set_auth_type(AuthType::BasicAuth),
            (Some(s), ClientAuthMethod::Post) => oauth
                .set_client_secret(ClientSecret::new(s.expose().to_string()))
                .set_auth_type(AuthType::RequestBody),
            // A public client names itself in the body.
            (None, _) => oauth.set_auth_type(AuthType::RequestBody),
        };
        Ok(Self {
            oauth,
            registration,
            endpoints,
            http,
            clock: ClockDebug(clock),
        })
    }

    pub fn endpoints(&self) -> &ProviderEndpoints {
        &self.endpoints
    }

    /// A new authorization request for `scopes`: a fresh PKCE verifier (S256, never plain)
    /// and a fresh `state`, both from a CSPRNG.
    pub fn begin(&self, scopes: &[String]) -> Authorization {
        self.begin_with_verifier(scopes, &new_pkce_verifier())
    }

    /// A new authorization request for `scopes` with a fresh `state` and the PKCE challenge
    /// of `verifier` (made by [`new_pkce_verifier`] and kept server-side until the exchange).
    pub fn begin_with_verifier(&self, scopes: &[String], verifier: &Secret) -> Authorization {
        let verifier = PkceCodeVerifier::new(verifier.expose().to_string());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let mut req = self
            .oauth
            .authorize_url(|| CsrfToken::new_random_len(STATE_BYTES))
            .set_pkce_challenge(challenge);
        if !scopes.is_empty() {
            // Space-separated in one parameter (the crate joins `scope` that way too).
            req = match self.registration.scope_param.as_str() {
                "scope" => req.add_scopes(scopes.iter().cloned().map(Scope::new)),
                other => req.add_extra_param(other.to_string(), scopes.join(" ")),
            };
        }
        if let Some(r) = &self.registration.resource {
            req = req.add_extra_param("resource", r.clone());
        }
        for (k, v) in &self.registration.extra_authorize_params {
            req = req.add_extra_param(k.clone(), v.clone());
        }
        let (url, state) = req.url();
        Authorization {
            url,
            state: state.secret().clone(),
            pkce_verifier: Secret::new(verifier.secret().clone()),
        }
    }

    /// Exchange the callback's `code` (with the verifier of the same authorization) for
    /// tokens. `requested` are the scopes asked for, reported when the provider does not say.
    pub async fn exchange(
        &self,
        code: &str,
        pkce_verifier: &Secret,
        requested: &[String],
    ) -> Result<TokenGrant, AuthCodeError> {
        let mut req = self
            .oauth
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .set_pkce_verifier(PkceCodeVerifier::new(pkce_verifier.expose().to_string()));
        if let Some(r) = &self.registration.resource {
            req = req.add_extra_param("resource", r.clone());
        }
        let now = (self.clock.0)();
        let response = req.request_async(&self.sender()).await;
        self.grant(response, now, requested)
    }

    /// A fresh access token from `refresh_token`. `scopes` are the grant's current scopes,
    /// reported when the provider does not name any. When the provider rotates the refresh
    /// token the new one is in the result and the old one is dead; when the result has
    /// none, the caller keeps using the old one. [`AuthCodeError::InvalidGrant`]: the grant
    /// is dead (delete it, ask consent again); any other error keeps it.
    pub async fn refresh(
        &self,
        refresh_token: &Secret,
        scopes: &[String],
    ) -> Result<TokenGrant, AuthCodeError> {
        let token = RefreshToken::new(refresh_token.expose().to_string());
        let mut req = self.oauth.exchange_refresh_token(&token);
        if let Some(r) = &self.registration.resource {
            req = req.add_extra_param("resource", r.clone());
        }
        let now = (self.clock.0)();
        let response = req.request_async(&self.sender()).await;
        self.grant(response, now, scopes)
    }

    /// Revoke `token` at the provider (RFC 7009). Revoking a refresh token normally ends
    /// the whole grant. [`AuthCodeError::RevocationUnsupported`] when the provider has no
    /// revocation endpoint; nothing is sent then.
    pub async fn revoke(&self, token: &Secret, kind: TokenKind) -> Result<(), AuthCodeError> {
        let Some(url) = &self.endpoints.revocation_url else {
            return Err(AuthCodeError::RevocationUnsupported);
        };
        let shown = crate::cause::shown_url(url);
        let reg = &self.registration;
        let mut form = vec![
            ("token", token.expose().to_string()),
            ("token_type_hint", kind.hint().to_string()),
        ];
        let mut req = self.http.post(url.clone());
        match (&reg.client_secret, reg.auth_method) {
            // RFC 6749 §2.3.1: both parts are form-urlencoded before Basic encoding.
            (Some(s), ClientAuthMethod::Basic) => {
                req = req.basic_auth(
                    oauth::form_encode(&reg.client_id),
                    Some(oauth::form_encode(s.expose())),
                );
            }
            (Some(s), ClientAuthMethod::Post) => {
                form.push(("client_id", reg.client_id.clone()));
                form.push(("client_secret", s.expose().to_string()));
            }
            (None, _) => form.push(("client_id", reg.client_id.clone())),
        }
        let resp = req
            .header(http::header::ACCEPT, "application/json")
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                AuthCodeError::Unreachable(format!("POST {shown}: {}", crate::cause::classify(&e)))
            })?;
        let status = resp.status();
        let body = crate::auth_server::read_limited(resp, crate::auth_server::MAX_DOCUMENT_BYTES)
            .await
            .map_err(|e| AuthCodeError::Unreachable(format!("POST {shown}: {e}")))?;
        if status.is_success() {
            // RFC 7009 §2.2: 200 also for a token that was already invalid.
            return Ok(());
        }
        if status.is_server_error() {
            return Err(AuthCodeError::Unreachable(format!(
                "the revocation endpoint {shown} answered HTTP {status}"
            )));
        }
        Err(match serde_json::from_slice::<OAuthErrorBody>(&body) {
            Ok(e) => AuthCodeError::from_oauth(&e.error, e.error_description.as_deref()),
            Err(_) => AuthCodeError::BadResponse(format!(
                "the revocation endpoint {shown} answered HTTP {status} without an OAuth error"
            )),
        })
    }

    /// The `oauth2` crate's HTTP client: our reqwest (bounded reads, no redirects); a
    /// server error (5xx) is "unreachable", as the provider cannot serve us now.
    fn sender(
        &self,
    ) -> impl Fn(
        oauth2::HttpRequest,
    ) -> futures::future::BoxFuture<'static, Result<oauth2::HttpResponse, Transport>> {
        let http = self.http.clone();
        // Slack user scopes (`user_scope`): the user's token comes under `authed_user`.
        let user_token_nested = self.registration.scope_param == "user_scope";
        move |r: oauth2::HttpRequest| {
            let http = http.clone();
            Box::pin(async move {
                let url = crate::cause::shown_url_text(&r.uri().to_string());
                let resp = oauth::send(&http, r)
                    .await
                    .map_err(|e| Transport(e.to_string()))?;
                if resp.status().is_server_error() {
                    return Err(Transport(format!(
                        "the token endpoint {url} answered HTTP {}",
                        resp.status()
                    )));
                }
                Ok(if user_token_nested {
                    lift_authed_user(resp)
                } else {
                    resp
                })
            })
        }
    }

    /// Turn a token response into a [`TokenGrant`], or its error into an [`AuthCodeError`].
    fn grant(
        &self,
        response: Result<ProviderTokenResponse, RequestTokenError<Transport, BasicErrorResponse>>,
        sent_at: SystemTime,
        asked: &[String],
    ) -> Result<TokenGrant, AuthCodeError> {
        let tok = response.map_err(token_error)?;
        let expires_at = tok.expires_in().map(|d| unix(sent_at + d));
        let granted_scopes = match tok.scopes() {
            Some(s) => s.iter().map(|s| s.to_string()).collect(),
            None => asked.to_vec(),
        };
        Ok(TokenGrant {
            access_token: Secret::new(tok.access_token().secret().clone()),
            refresh_token: tok.refresh_token().map(|t| Secret::new(t.secret().clone())),
            expires_at,
            granted_scopes,
            instance_url: tok.extra_fields().instance_url.clone(),
            id_token: tok.extra_fields().id_token.clone().map(Secret::new),
        })
    }
}

/// Slack answers a code exchange for user scopes with the user's token under `authed_user`
/// (`{"ok":true,"authed_user":{"access_token":…,"refresh_token":…,"expires_in":…}}`) and no
/// top-level `access_token`. Lift those fields to the top, where OAuth puts them; any other
/// answer (an error, a refresh, which Slack answers at the top level) passes unchanged.
/// Written here because the `oauth2` crate reads only RFC 6749's shape.
fn lift_authed_user(resp: oauth2::HttpResponse) -> oauth2::HttpResponse {
    let Ok(serde_json::Value::Object(body)) = serde_json::from_slice(resp.body()) else {
        return resp;
    };
    let Some(serde_json::Value::Object(user)) = body.get("authed_user") else {
        return resp;
    };
    if body.contains_key("access_token") || !user.contains_key("access_token") {
        return resp;
    }
    let mut lifted = serde_json::Map::new();
    for field in ["access_token", "token_type", "refresh_token", "expires_in"] {
        if let Some(v) = user.get(field) {
            lifted.insert(field.to_string(), v.clone());
        }
    }
    // Slack separates scopes with commas; OAuth with spaces.
    if let Some(scope) = user.get("scope").and_then(serde_json::Value::as_str) {
        lifted.insert("scope".into(), scope.replace(',', " ").into());
    }
    lifted.entry("token_type").or_insert_with(|| "user".into());
    let (parts, _) = resp.into_parts();
    let body = serde_json::to_vec(&serde_json::Value::Object(lifted)).unwrap_or_default();
    oauth2::HttpResponse::from_parts(parts, body)
}

/// The network failed, or the provider answered with a server error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Transport(String);

#[derive(Debug, Deserialize)]
struct OAuthErrorBody {
    error: String,
    error_description: Option<String>,
}

fn token_error(e: RequestTokenError<Transport, BasicErrorResponse>) -> AuthCodeError {
    match e {
        RequestTokenError::ServerResponse(r) => AuthCodeError::from_oauth(
            r.error().as_ref(),
            r.error_description().map(String::as_str),
        ),
        RequestTokenError::Request(t) => AuthCodeError::Unreachable(t.0),
        // Some providers (GitHub) report errors with HTTP 200; read those as errors.
        RequestTokenError::Parse(e, body) => {
            match serde_json::from_slice::<OAuthErrorBody>(&body) {
                Ok(err) => AuthCodeError::from_oauth(&err.error, err.error_description.as_deref()),
                Err(_) => {
                    // Say where it failed without quoting values: they may be tokens.
                    let inner = e.inner();
                    let problem = if inner.is_syntax() || inner.is_eof() {
                        "it is not JSON".to_string()
                    } else if inner.to_string().starts_with("missing field") {
                        // "missing field `access_token` at line 1 column 2"
                        let m = inner.to_string();
                        m.split(" at line").next().unwrap_or_default().to_string()
                    } else {
                        format!("`{}` has the wrong type", e.path())
                    };
                    AuthCodeError::BadResponse(format!(
                        "the token endpoint's answer is not a token response: {problem}"
                    ))
                }
            }
        }
        RequestTokenError::Other(s) => AuthCodeError::BadResponse(error::clean_description(&s)),
    }
}

fn unix(t: SystemTime) -> i64 {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs();
    i64::try_from(secs).unwrap_or(i64::MAX)
}

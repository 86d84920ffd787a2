//! Pieces shared by the OAuth modes: the HTTP adapter that lets the `oauth2` crate use our
//! reqwest, token-endpoint discovery, client authentication (`client_secret_basic`,
//! `client_secret_post`, `private_key_jwt`) and a token cache entry.

use std::time::{Duration, SystemTime};

use jsonwebtoken::{EncodingKey, Header};
use serde_json::json;
use url::Url;

use super::CredentialError;
use crate::config::Secret;
use crate::config::outbound::{ClientAuth, OAuthClientSpec};

/// `oauth2` 5 is built on reqwest 0.12 while the rest of the gateway uses 0.13, so it gets
/// this closure-shaped client (the crate's documented extension point) instead.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

pub async fn send(
    http: &reqwest::Client,
    req: oauth2::HttpRequest,
) -> Result<oauth2::HttpResponse, HttpError> {
    let (parts, body) = req.into_parts();
    let target = format!(
        "{} {}",
        parts.method,
        crate::cause::shown_url_text(&parts.uri.to_string())
    );
    let resp = http
        .request(parts.method, parts.uri.to_string())
        .headers(parts.headers)
        .body(body)
        .send()
        .await
        // reqwest's own text says only "error sending request": name the real cause.
        .map_err(|e| HttpError(format!("{target}: {}", crate::cause::classify(&e))))?;
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = crate::auth_server::read_limited(resp, crate::auth_server::MAX_DOCUMENT_BYTES)
        .await
        .map_err(HttpError)?;
    let mut out = http::Response::new(body.to_vec());
    *out.status_mut() = status;
    *out.headers_mut() = headers;
    Ok(out)
}

/// The token endpoint named by an issuer's metadata (OpenID discovery, then RFC 8414).
pub async fn discover_token_endpoint(
    http: &reqwest::Client,
    issuer: &Url,
) -> Result<Url, CredentialError> {
    let (url, doc) = crate::auth_server::discover(http, issuer.as_str())
        .await
        .map_err(|e| {
            CredentialError::Unreachable(format!(
                "cannot discover the token endpoint of {issuer}: {e}"
            ))
        })?;
    let endpoint = doc["token_endpoint"]
        .as_str()
        .ok_or_else(|| CredentialError::Invalid(format!("{url} names no token_endpoint")))?;
    Url::parse(endpoint)
        .map_err(|e| CredentialError::Invalid(format!("token_endpoint {endpoint}: {e}")))
}

/// `application/x-www-form-urlencoded` encoding of one value: RFC 6749 §2.3.1 applies it to
/// the client id and secret before they are put in HTTP Basic.
pub fn form_encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Extra form fields for `private_key_jwt` (RFC 7523 §2.2): a short-lived assertion signed
/// with the client's key, audience = the token endpoint.
pub fn client_assertion(
    client: &OAuthClientSpec,
    token_url: &Url,
    now: SystemTime,
) -> Result<Option<[(String, String); 2]>, CredentialError> {
    let ClientAuth::PrivateKeyJwt { key_pem, alg } = &client.auth else {
        return Ok(None);
    };
    let key = match alg {
        jsonwebtoken::Algorithm::ES256 | jsonwebtoken::Algorithm::ES384 => {
            EncodingKey::from_ec_pem(key_pem.expose().as_bytes())
        }
        _ => EncodingKey::from_rsa_pem(key_pem.expose().as_bytes()),
    }
    .map_err(|e| CredentialError::Invalid(format!("private_key cannot sign: {e}")))?;
    let iat = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    let claims = json!({
        "iss": client.client_id, "sub": client.client_id, "aud": token_url.as_str(),
        "jti": uuid::Uuid::new_v4().to_string(), "iat": iat, "exp": iat + 60,
    });
    let jwt = jsonwebtoken::encode(&Header::new(*alg), &claims, &key)
        .map_err(|e| CredentialError::Invalid(format!("cannot sign the client assertion: {e}")))?;
    Ok(Some([
        (
            "client_assertion_type".into(),
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".into(),
        ),
        ("client_assertion".into(), jwt),
    ]))
}

/// A cached access token and when to stop using it.
#[derive(Debug, Clone)]
pub struct CachedToken {
    pub access_token: Secret,
    /// Expiry minus the refresh skew.
    pub use_until: SystemTime,
}

impl CachedToken {
    pub fn new(
        access_token: String,
        expires_in: Option<Duration>,
        skew: Duration,
        now: SystemTime,
    ) -> Self {
        // Without `expires_in`, assume the common 5 minutes rather than forever.
        let lifetime = expires_in.unwrap_or(Duration::from_secs(300));
        Self {
            access_token: Secret::new(access_token),
            use_until: now + lifetime.saturating_sub(skew),
        }
    }

    pub fn fresh(&self, now: SystemTime) -> bool {
        now < self.use_until
    }
}

/// Map the `oauth2` crate's error into ours: the OAuth error code is what an operator needs.
pub fn token_error<RE: std::error::Error + 'static>(
    e: oauth2::RequestTokenError<
        RE,
        oauth2::StandardErrorResponse<oauth2::basic::BasicErrorResponseType>,
    >,
) -> CredentialError {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => CredentialError::Refused {
            code: r.error().as_ref().to_string(),
            description: r.error_description().cloned(),
        },
        oauth2::RequestTokenError::Request(e) => CredentialError::Unreachable(e.to_string()),
        oauth2::RequestTokenError::Parse(e, _) => CredentialError::Invalid(format!(
            "the token endpoint's answer is not a token response: {e}"
        )),
        oauth2::RequestTokenError::Other(s) => CredentialError::Invalid(s),
    }
}

//! The token endpoint, `/dev-idp/token`: the authorization_code grant (single-use code, PKCE
//! S256 verified in constant time, same client and redirect URI) and the refresh_token grant
//! (opaque tokens stored hashed, rotated on every use; a used one revokes its whole grant).
//! Access tokens are ordinary dev IdP JWTs for the gateway's MCP URL.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode};
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::store::{digest, random_token};
use super::{DevIdp, DevTokenRequest, OAuthError, form_params, no_store, parse_scopes};

/// What a code or refresh token stands for: one login of one user for one client.
#[derive(Debug, Clone)]
pub struct Grant {
    /// Shared by the code and every refresh token that descends from it.
    pub id: String,
    pub client_id: String,
    pub agent: String,
    pub user: String,
    pub scopes: Vec<String>,
    /// Whether the client may use refresh tokens.
    pub refresh: bool,
    /// For the code only: the redirect URI and PKCE challenge of its authorization request.
    pub redirect_uri: String,
    pub code_challenge: String,
}

/// `POST /dev-idp/token`.
pub async fn token(State(idp): State<Arc<DevIdp>>, headers: HeaderMap, body: Bytes) -> Response {
    match exchange(&idp, &headers, &body) {
        Ok(answer) => (StatusCode::OK, no_store(), Json(answer)).into_response(),
        Err(e) => e.into_response(),
    }
}

fn exchange(
    idp: &DevIdp,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<serde_json::Value, OAuthError> {
    let params = form_params(body)?;
    let param = |k: &str| params.get(k).map(String::as_str);
    let client_id = match (param("client_id"), basic_user(headers)) {
        (Some(id), _) => id.to_string(),
        (None, Some(id)) => id,
        (None, None) => {
            return Err(OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "client_id is missing; send the client_id the registration returned",
            ));
        }
    };
    if idp.clients.get(&client_id).is_none() {
        return Err(OAuthError::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client_id: registrations are kept in memory and lost when the gateway restarts; register again",
        ));
    }
    let grant = match param("grant_type") {
        Some("authorization_code") => redeem_code(idp, &client_id, &param)?,
        Some("refresh_token") => redeem_refresh(idp, &client_id, &param)?,
        Some(other) => {
            return Err(OAuthError::bad(
                "unsupported_grant_type",
                format!(
                    "grant_type `{other}` is not offered; use authorization_code or refresh_token"
                ),
            ));
        }
        None => {
            return Err(OAuthError::bad(
                "invalid_request",
                "grant_type is missing; send grant_type=authorization_code or grant_type=refresh_token",
            ));
        }
    };
    issue(idp, grant)
}

fn redeem_code<'a>(
    idp: &DevIdp,
    client_id: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Grant, OAuthError> {
    let code = param("code").ok_or_else(|| {
        OAuthError::bad(
            "invalid_request",
            "code is missing; send the code the redirect carried",
        )
    })?;
    let key = digest(code);
    let Some(grant) = idp.codes.take(&key) else {
        if let Some(grant_id) = idp.spent.get(&key) {
            idp.revoke(&grant_id);
            return Err(OAuthError::bad(
                "invalid_grant",
                "this authorization code was already used; codes work once (the tokens issued for it are revoked). Start the login again",
            ));
        }
        return Err(OAuthError::bad(
            "invalid_grant",
            format!(
                "unknown or expired authorization code (codes last {} s and are forgotten when the gateway restarts); start the login again",
                idp.codes.ttl().as_secs()
            ),
        ));
    };
    idp.spent.insert(key, grant.id.clone());
    if grant.client_id != client_id {
        return Err(OAuthError::bad(
            "invalid_grant",
            "this code was issued to another client; redeem it with the client_id that asked for it",
        ));
    }
    if param("redirect_uri") != Some(grant.redirect_uri.as_str()) {
        return Err(OAuthError::bad(
            "invalid_grant",
            "redirect_uri does not match the one in the authorization request; send exactly the same redirect_uri",
        ));
    }
    let verifier = param("code_verifier").ok_or_else(|| {
        OAuthError::bad(
            "invalid_grant",
            "code_verifier is missing; send the PKCE verifier whose S256 challenge started this login",
        )
    })?;
    let len_ok = (43..=128).contains(&verifier.len());
    let chars_ok = verifier
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    let matches: bool = computed
        .as_bytes()
        .ct_eq(grant.code_challenge.as_bytes())
        .into();
    if !(len_ok && chars_ok && matches) {
        return Err(OAuthError::bad(
            "invalid_grant",
            "code_verifier does not match the code_challenge (BASE64URL(SHA-256(code_verifier)) must equal it; a verifier is 43-128 characters of A-Z a-z 0-9 - . _ ~); send the verifier generated for this login",
        ));
    }
    check_resource(idp, param("resource"))?;
    Ok(grant)
}

fn redeem_refresh<'a>(
    idp: &DevIdp,
    client_id: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Grant, OAuthError> {
    let token = param("refresh_token").ok_or_else(|| {
        OAuthError::bad(
            "invalid_request",
            "refresh_token is missing; send the refresh token from the last token answer",
        )
    })?;
    let key = digest(token);
    let Some(mut grant) = idp.refresh_tokens.take(&key) else {
        if let Some(grant_id) = idp.spent.get(&key) {
            idp.revoke(&grant_id);
            return Err(OAuthError::bad(
                "invalid_grant",
                "this refresh token was already used: each one works once and is replaced by the one returned with it. As a reused token may be stolen, the login it belongs to is revoked; log in again",
            ));
        }
        return Err(OAuthError::bad(
            "invalid_grant",
            "unknown or expired refresh token (they are kept in memory and lost when the gateway restarts); log in again",
        ));
    };
    idp.spent.insert(key, grant.id.clone());
    if grant.client_id != client_id {
        idp.revoke(&grant.id);
        return Err(OAuthError::bad(
            "invalid_grant",
            "this refresh token belongs to another client; the login it belongs to is revoked",
        ));
    }
    check_resource(idp, param("resource"))?;
    if let Some(scope) = param("scope") {
        let asked = parse_scopes(Some(scope))?;
        if let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s)) {
            return Err(OAuthError::bad(
                "invalid_scope",
                format!(
                    "scope `{extra}` was not granted at login; a refresh may only narrow the scopes. Log in again to ask for it"
                ),
            ));
        }
        grant.scopes = asked;
    }
    Ok(grant)
}

fn check_resource(idp: &DevIdp, resource: Option<&str>) -> Result<(), OAuthError> {
    match resource {
        Some(r) if !idp.is_own_resource(r) => Err(OAuthError::bad(
            "invalid_target",
            format!(
                "resource `{r}` is not this gateway; tokens are issued only for {}",
                idp.server.mcp_url()
            ),
        )),
        _ => Ok(()),
    }
}

/// An access token, and a new refresh token when the client may refresh.
fn issue(idp: &DevIdp, grant: Grant) -> Result<serde_json::Value, OAuthError> {
    let request = DevTokenRequest {
        user: grant.user.clone(),
        agent: grant.agent.clone(),
        scopes: grant.scopes.clone(),
        ttl: idp.token_ttl,
    };
    let access = idp
        .key
        .mint_for_client(&idp.server, &request, &grant.client_id)
        .map_err(|e| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("the gateway could not sign the token: {e}"),
            )
        })?;
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": idp.token_ttl.as_secs(),
    });
    if !grant.scopes.is_empty() {
        answer["scope"] = json!(grant.scopes.join(" "));
    }
    if grant.refresh {
        let refresh = random_token().map_err(|_| {
            OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the gateway could not generate a random value; retry",
            )
        })?;
        idp.refresh_tokens.insert(digest(&refresh), grant);
        answer["refresh_token"] = json!(refresh);
    }
    Ok(answer)
}

/// The client id from `Authorization: Basic` (a client that authenticates that way out of
/// habit; its secret, if any, is ignored: every client here is public).
fn basic_user(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, b64) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let user = decoded.split(':').next()?;
    let user = url::form_urlencoded::parse(format!("u={user}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())?;
    (!user.is_empty()).then_some(user)
}

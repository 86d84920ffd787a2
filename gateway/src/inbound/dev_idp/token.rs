//! The token endpoint, `/dev-idp/token`: the authorization_code grant (single-use code, PKCE
//! S256 verified in constant time, same client and redirect URI) and the refresh_token grant
//! (opaque tokens stored hashed, rotated on every use; a used one revokes its whole grant).
//! A request is checked in full before its code or refresh token is used (`ledger`), so a
//! refused request never burns one.
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

use super::ledger::{Key, Kind, Lookup};
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

/// A code or refresh token that passed every check, not used yet.
struct Redemption {
    kind: Kind,
    key: Key,
    grant: Grant,
    /// Scopes of this access token: the grant's, or fewer on a refresh that asks for fewer.
    scopes: Vec<String>,
}

fn redeem_code<'a>(
    idp: &DevIdp,
    client_id: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Redemption, OAuthError> {
    let code = param("code").ok_or_else(|| {
        OAuthError::bad(
            "invalid_request",
            "code is missing; send the code the redirect carried",
        )
    })?;
    check_resource(idp, param("resource"))?;
    let key = digest(code);
    let grant = match idp.ledger.look_up(Kind::Code, &key)? {
        Lookup::Live(grant) => grant,
        other => return Err(refused(Kind::Code, other)),
    };
    // Every check below leaves the code unused, so the client can retry it.
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
    Ok(Redemption {
        kind: Kind::Code,
        key,
        scopes: grant.scopes.clone(),
        grant,
    })
}

fn redeem_refresh<'a>(
    idp: &DevIdp,
    client_id: &str,
    param: &impl Fn(&str) -> Option<&'a str>,
) -> Result<Redemption, OAuthError> {
    let token = param("refresh_token").ok_or_else(|| {
        OAuthError::bad(
            "invalid_request",
            "refresh_token is missing; send the refresh token from the last token answer",
        )
    })?;
    // Checked before the token is looked at: a request refused here leaves it usable.
    check_resource(idp, param("resource"))?;
    // RFC 6749 §6: no `scope` means the scopes granted at login. A scope list has at least
    // one entry (§3.3), so an empty `scope=` (some client libraries send one) means that too.
    let asked = match param("scope") {
        Some(s) if !s.trim().is_empty() => Some(parse_scopes(Some(s))?),
        _ => None,
    };
    let key = digest(token);
    let grant = match idp.ledger.look_up(Kind::Refresh, &key)? {
        Lookup::Live(grant) => grant,
        other => return Err(refused(Kind::Refresh, other)),
    };
    if grant.client_id != client_id {
        idp.ledger.revoke(&grant.id)?;
        tracing::warn!(
            target: "portcullis::inbound",
            client_id = %client_id,
            owner = %grant.client_id,
            user = %grant.user,
            "dev IdP: client {client_id} presented a refresh token of client {} ({}) for user {}; revoked that login: its refresh tokens no longer work, its access tokens stay valid until they expire",
            grant.agent,
            grant.client_id,
            grant.user
        );
        return Err(OAuthError::bad(
            "invalid_grant",
            "this refresh token belongs to another client; the login it belongs to is revoked",
        ));
    }
    let scopes = match asked {
        None => grant.scopes.clone(),
        Some(asked) => {
            if let Some(extra) = asked.iter().find(|s| !grant.scopes.contains(s)) {
                return Err(OAuthError::bad(
                    "invalid_scope",
                    format!(
                        "scope `{extra}` was not granted at login; a refresh may only narrow the scopes. Log in again to ask for it"
                    ),
                ));
            }
            // Narrows this access token only; the next refresh starts from the login's scopes.
            asked
        }
    };
    Ok(Redemption {
        kind: Kind::Refresh,
        key,
        grant,
        scopes,
    })
}

/// The error for a code or refresh token that is not live. A reused one has just revoked
/// its login: that is logged, naming the client and the user, as it may be theft.
fn refused(kind: Kind, lookup: Lookup) -> OAuthError {
    let what = match kind {
        Kind::Code => "authorization code",
        Kind::Refresh => "refresh token",
    };
    match lookup {
        Lookup::Reused(grant) => {
            tracing::warn!(
                target: "portcullis::inbound",
                client_id = %grant.client_id,
                user = %grant.user,
                "dev IdP: a used {what} of client {} ({}) for user {} was presented again; revoked that login: its refresh tokens no longer work, its access tokens stay valid until they expire",
                grant.agent,
                grant.client_id,
                grant.user
            );
            let description = match kind {
                Kind::Code => {
                    "this authorization code was already used; codes work once. As a reused code may be stolen, the refresh tokens issued for it are revoked (access tokens already issued stay valid until they expire). Start the login again"
                }
                Kind::Refresh => {
                    "this refresh token was already used: each one works once and is replaced by the one returned with it. As a reused token may be stolen, the login it belongs to is revoked: its refresh tokens no longer work (access tokens already issued stay valid until they expire). Log in again"
                }
            };
            OAuthError::bad("invalid_grant", description)
        }
        Lookup::Revoked => OAuthError::bad(
            "invalid_grant",
            "the login this refresh token belongs to was revoked, because one of its used refresh tokens (or its code) was presented again, which may be theft; log in again",
        ),
        Lookup::Live(_) | Lookup::Unknown => match kind {
            Kind::Code => OAuthError::bad(
                "invalid_grant",
                format!(
                    "unknown or expired authorization code (codes last {} s and are forgotten when the gateway restarts); start the login again",
                    super::CODES.1.as_secs()
                ),
            ),
            Kind::Refresh => OAuthError::bad(
                "invalid_grant",
                "unknown or expired refresh token (they are kept in memory and lost when the gateway restarts); log in again",
            ),
        },
    }
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

/// Sign the access token, then use the code or refresh token and store its successor in one
/// step: if a concurrent request used it first, nothing is issued.
fn issue(idp: &DevIdp, r: Redemption) -> Result<serde_json::Value, OAuthError> {
    let request = DevTokenRequest {
        user: r.grant.user.clone(),
        agent: r.grant.agent.clone(),
        scopes: r.scopes.clone(),
        ttl: idp.token_ttl,
        claims: Default::default(),
    };
    let access = idp
        .key
        .mint_for_client(&idp.server, &request, &r.grant.client_id)
        .map_err(|e| {
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                format!("the gateway could not sign the token: {e}"),
            )
        })?;
    let refresh = if r.grant.refresh {
        Some(random_token()?)
    } else {
        None
    };
    match idp
        .ledger
        .redeem(r.kind, &r.key, refresh.as_deref().map(digest))?
    {
        Lookup::Live(_) => {}
        other => return Err(refused(r.kind, other)),
    }
    let mut answer = json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": idp.token_ttl.as_secs(),
    });
    if !r.scopes.is_empty() {
        answer["scope"] = json!(r.scopes.join(" "));
    }
    if let Some(refresh) = refresh {
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

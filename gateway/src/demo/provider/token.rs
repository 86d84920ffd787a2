//! The demo provider's token endpoint (authorization code with PKCE S256, refresh with
//! rotation) and RFC 7009 revocation, both for the one registered client, which proves itself
//! with HTTP Basic or with `client_id`/`client_secret` in the body (never both).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::{HeaderMap, StatusCode, header};
use serde_json::json;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::Provider;
use super::ledger::{Issued, Refused};
use super::oauth::{known_scopes, params};
use crate::inbound::dev_idp::OAuthError;
use crate::inbound::dev_idp::store::digest;

/// `POST /token`.
pub async fn token(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    match grant(&p, &headers, &body) {
        Ok(issued) => {
            let body = json!({
                "access_token": issued.access_token,
                "token_type": "Bearer",
                "expires_in": p.ledger.access_ttl().as_secs(),
                "refresh_token": issued.refresh_token,
                "scope": issued.grant.scopes.join(" "),
            });
            (no_store(), Json(body)).into_response()
        }
        Err(e) => error(e),
    }
}

/// `POST /revoke`: 200 for any token once the client is authenticated, known or not.
pub async fn revoke(
    State(p): State<Arc<Provider>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let form = match params(&body) {
        Ok(f) => f,
        Err(why) => return error(OAuthError::bad("invalid_request", why)),
    };
    if let Err(e) = authenticate(&p, &headers, &form) {
        return error(e);
    }
    let Some(token) = form.get("token") else {
        return error(OAuthError::bad(
            "invalid_request",
            "send the token to revoke in the `token` parameter",
        ));
    };
    p.ledger.revoke(token);
    (StatusCode::OK, no_store()).into_response()
}

fn grant(p: &Provider, headers: &HeaderMap, body: &[u8]) -> Result<Issued, OAuthError> {
    let form = params(body).map_err(|why| OAuthError::bad("invalid_request", why))?;
    authenticate(p, headers, &form)?;
    let field = |k: &str| {
        form.get(k).map(String::as_str).ok_or_else(|| {
            OAuthError::bad("invalid_request", format!("the parameter `{k}` is missing"))
        })
    };
    match field("grant_type")? {
        "authorization_code" => {
            let code = field("code")?;
            let redirect_uri = field("redirect_uri")?;
            let verifier = field("code_verifier")?;
            let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
            let issued = p
                .ledger
                .redeem_code(code, |b| {
                    b.client_id == p.settings.client_id
                        && b.redirect_uri == redirect_uri
                        && bool::from(b.code_challenge.as_bytes().ct_eq(challenge.as_bytes()))
                })
                .map_err(refused)?;
            issued.ok_or_else(|| {
                invalid_grant(
                    "the code was issued for another redirect_uri, or the code_verifier does not \
                     match its code_challenge (PKCE S256); start the authorization again",
                )
            })
        }
        "refresh_token" => {
            let refresh = field("refresh_token")?;
            // A narrower scope may be asked for (RFC 6749 §6); an unknown or replayed token
            // is left for the ledger to refuse (and, when replayed, revoke).
            let held = p.ledger.refresh_scopes(refresh);
            let narrow = match (form.get("scope"), held) {
                (Some(s), Some(held)) => {
                    let asked = known_scopes(Some(s))
                        .map_err(|why| OAuthError::bad("invalid_scope", why))?;
                    if let Some(extra) = asked.iter().find(|s| !held.contains(s)) {
                        return Err(OAuthError::bad(
                            "invalid_scope",
                            format!(
                                "the grant does not include `{extra}`; ask the user to approve it"
                            ),
                        ));
                    }
                    Some(asked)
                }
                _ => None,
            };
            p.ledger.refresh(refresh, narrow).map_err(refused)
        }
        other => Err(OAuthError::bad(
            "unsupported_grant_type",
            format!(
                "grant_type `{other}` is not supported; use authorization_code or refresh_token"
            ),
        )),
    }
}

/// The registered client, by HTTP Basic (RFC 6749 §2.3.1: both parts form-encoded) or by
/// `client_id`/`client_secret` in the body; the secret compared in constant time.
fn authenticate(
    p: &Provider,
    headers: &HeaderMap,
    form: &HashMap<String, String>,
) -> Result<(), OAuthError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Basic ")
                .or_else(|| v.strip_prefix("basic "))
        });
    let in_body = form.get("client_secret");
    let Some(registered) = &p.settings.client_secret else {
        // A public client: no secret to check, its id must match (PKCE binds the code).
        if basic.is_some() || in_body.is_some() {
            return Err(invalid_client(
                "this client is registered as public: send only client_id, no secret",
            ));
        }
        return if form.get("client_id") == Some(&p.settings.client_id) {
            Ok(())
        } else {
            Err(invalid_client(
                "unknown client_id; send the gateway's client_id",
            ))
        };
    };
    let (id, secret) = match (basic, in_body) {
        (Some(_), Some(_)) => {
            return Err(OAuthError::bad(
                "invalid_request",
                "the client authenticated twice (HTTP Basic and client_secret in the body); use one",
            ));
        }
        (Some(b), None) => decode_basic(b).ok_or_else(|| {
            invalid_client("the Authorization header is not valid HTTP Basic (base64 of id:secret)")
        })?,
        (None, Some(s)) => (
            form.get("client_id").cloned().unwrap_or_default(),
            s.clone(),
        ),
        (None, None) => {
            return Err(invalid_client(
                "the client did not authenticate; send its id and secret with HTTP Basic or as client_id and client_secret",
            ));
        }
    };
    let id_ok = id == p.settings.client_id;
    let secret_ok: bool = digest(&secret).ct_eq(&digest(registered.expose())).into();
    if id_ok && secret_ok {
        Ok(())
    } else {
        Err(invalid_client(
            "unknown client or wrong client secret; check the gateway's client_id and PORTCULLIS_DEMO_PROVIDER_SECRET",
        ))
    }
}

fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = String::from_utf8(STANDARD.decode(b64.trim()).ok()?).ok()?;
    let (id, secret) = raw.split_once(':')?;
    Some((form_decode(id), form_decode(secret)))
}

/// `application/x-www-form-urlencoded` decoding of one value.
fn form_decode(s: &str) -> String {
    let joined = format!("v={s}");
    url::form_urlencoded::parse(joined.as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

fn invalid_client(description: &str) -> OAuthError {
    OAuthError::new(StatusCode::UNAUTHORIZED, "invalid_client", description)
}

fn invalid_grant(description: &str) -> OAuthError {
    OAuthError::bad("invalid_grant", description)
}

fn refused(r: Refused) -> OAuthError {
    match r {
        Refused::Unknown => invalid_grant(
            "the code or refresh token is unknown, expired or revoked; start the authorization again",
        ),
        Refused::Replayed => invalid_grant(
            "the code or refresh token was used before; every token issued from it is revoked now, so start the authorization again",
        ),
        Refused::Unavailable => {
            OAuthError::unavailable("the random number generator failed; try again")
        }
    }
}

/// The error JSON; a 401 also says how to authenticate (RFC 6749 §5.2).
fn error(e: OAuthError) -> Response {
    if e.status == StatusCode::UNAUTHORIZED {
        let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"Acme Tasks\"")];
        return (challenge, e).into_response();
    }
    e.into_response()
}

fn no_store() -> [(http::HeaderName, &'static str); 2] {
    [
        (header::CACHE_CONTROL, "no-store"),
        (header::PRAGMA, "no-cache"),
    ]
}

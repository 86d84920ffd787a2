//! OAuth on the wire, shared by the dev IdP's endpoints: the error answer (RFC 6749 §5.2),
//! form-encoded parameters and scope lists.

use std::collections::HashMap;

use axum::response::{IntoResponse, Json, Response};
use http::StatusCode;
use serde_json::json;

use super::store::Unavailable;

/// An OAuth error answer (RFC 6749 §5.2, RFC 7591 §3.2.2): a code a program can act on,
/// and a description that tells the person reading it what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: StatusCode,
    pub error: &'static str,
    pub description: String,
}

impl OAuthError {
    pub fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
        }
    }
    pub fn bad(error: &'static str, description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, error, description)
    }
    /// 503 `temporarily_unavailable`: the gateway, not the request, is at fault.
    pub fn unavailable(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "temporarily_unavailable",
            description,
        )
    }
}

impl From<Unavailable> for OAuthError {
    fn from(_: Unavailable) -> Self {
        Self::unavailable(
            "the gateway could not generate a random value (its system random number generator failed); try again",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = json!({ "error": self.error, "error_description": self.description });
        (self.status, no_store(), Json(body)).into_response()
    }
}

/// Answers that carry or concern credentials must not be cached (RFC 6749 §5.1).
pub(super) fn no_store() -> [(http::HeaderName, &'static str); 2] {
    [
        (http::header::CACHE_CONTROL, "no-store"),
        (http::header::PRAGMA, "no-cache"),
    ]
}

/// `application/x-www-form-urlencoded` (query string or body) into a map; a parameter sent
/// twice is an error (RFC 6749 §3.1: parameters must not be repeated).
pub(super) fn form_params(bytes: &[u8]) -> Result<HashMap<String, String>, OAuthError> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(OAuthError::bad(
                "invalid_request",
                format!("the parameter `{k}` is sent more than once; send it once"),
            ));
        }
    }
    Ok(out)
}

/// Requested scopes: space-separated RFC 6749 §3.3 scope tokens. `offline_access` asks for a
/// refresh token (which clients allowed the refresh grant always get), so it is not granted
/// as an API scope.
pub(super) fn parse_scopes(scope: Option<&str>) -> Result<Vec<String>, OAuthError> {
    let mut scopes = Vec::new();
    for s in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        let valid = s
            .bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b));
        if !valid {
            return Err(OAuthError::bad(
                "invalid_scope",
                format!(
                    "the scope `{s}` has characters a scope may not contain (RFC 6749 §3.3: printable ASCII without space, `\"` or `\\`)"
                ),
            ));
        }
        if s != "offline_access" && !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    Ok(scopes)
}

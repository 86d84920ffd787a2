//! The demo provider's authorization server: RFC 8414 metadata and the authorization
//! endpoint (`GET /authorize` checks the request and shows the sign-in page; `POST
//! /authorize` takes its answer). The token and revocation endpoints are in `token`.
//!
//! Open-redirect rule: until the client and its exact `redirect_uri` are known, an error is a
//! page here, never a redirect; after that, errors go back to the client (RFC 6749 §4.1.2.1).

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Json, Redirect, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::json;
use url::Url;

use super::ledger::{CodeBinding, Grant};
use super::page::{self, Approval};
use super::{Provider, SCOPES, token};
use crate::inbound::dev_idp::login::{self, Decision, error_page};

/// An authorization request waiting for the person's answer on the sign-in page.
#[derive(Debug, Clone)]
pub struct PendingAuthorization {
    redirect_uri: Url,
    state: Option<String>,
    scopes: Vec<String>,
    code_challenge: String,
}

pub fn routes(provider: Arc<Provider>) -> Router {
    Router::new()
        .route("/.well-known/oauth-authorization-server", get(metadata))
        .route("/authorize", get(authorize).post(decide))
        .route("/token", axum::routing::post(token::token))
        .route("/revoke", axum::routing::post(token::revoke))
        .with_state(provider)
}

async fn metadata(State(p): State<Arc<Provider>>) -> Json<serde_json::Value> {
    let base = &p.issuer;
    Json(json!({
        "issuer": base,
        "authorization_endpoint": format!("{base}/authorize"),
        "token_endpoint": format!("{base}/token"),
        "revocation_endpoint": format!("{base}/revoke"),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": SCOPES,
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "revocation_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

/// Query or form parameters; a repeated one is refused (RFC 6749 §3.1).
pub fn params(bytes: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut out = HashMap::new();
    for (k, v) in url::form_urlencoded::parse(bytes) {
        if out.insert(k.to_string(), v.into_owned()).is_some() {
            return Err(format!(
                "the parameter `{k}` is sent more than once; send it once"
            ));
        }
    }
    Ok(out)
}

/// Space-separated scopes, each one this provider knows; none asked: `tasks:read`.
pub fn known_scopes(scope: Option<&str>) -> Result<Vec<String>, String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !SCOPES.contains(&s) {
            return Err(format!(
                "the scope `{s}` is not offered here; ask for tasks:read and/or tasks:write"
            ));
        }
        if !scopes.iter().any(|x| x == s) {
            scopes.push(s.to_string());
        }
    }
    if scopes.is_empty() {
        scopes.push(SCOPES[0].to_string());
    }
    Ok(scopes)
}

fn bad_request_page(message: &str) -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "Acme Tasks cannot start this sign-in",
        message,
    )
}

/// `GET /authorize`: check the request, then show the sign-in page.
async fn authorize(State(p): State<Arc<Provider>>, RawQuery(query): RawQuery) -> Response {
    let q = match params(query.unwrap_or_default().as_bytes()) {
        Ok(q) => q,
        Err(why) => return bad_request_page(&why),
    };
    let get = |k: &str| q.get(k).map(String::as_str);
    // Who is asking, and where to answer: until both check out, never redirect.
    if get("client_id") != Some(p.settings.client_id.as_str()) {
        return bad_request_page(&format!(
            "The client id {:?} is not registered with Acme Tasks (it knows `{}`). Check the \
             client_id the gateway is configured with.",
            get("client_id").unwrap_or_default(),
            p.settings.client_id
        ));
    }
    let Some(redirect_uri) = get("redirect_uri").and_then(|r| {
        p.settings
            .redirect_uris
            .iter()
            .find(|u| u.as_str() == r)
            .cloned()
    }) else {
        return bad_request_page(&format!(
            "The redirect URI {:?} is not registered for this client, so Acme Tasks will not \
             send you there. Start the demo provider with --redirect-uri set to the gateway's \
             callback URL, exactly as the gateway sends it.",
            get("redirect_uri").unwrap_or_default()
        ));
    };
    let state = get("state").map(str::to_string);
    let fail = |error: &str, description: &str| {
        redirect(&redirect_uri, &p.issuer, state.as_deref(), |q| {
            q.append_pair("error", error)
                .append_pair("error_description", description);
        })
    };
    if get("response_type") != Some("code") {
        return fail(
            "unsupported_response_type",
            "Acme Tasks supports response_type=code only",
        );
    }
    let Some(code_challenge) = get("code_challenge").filter(|c| !c.is_empty()) else {
        return fail(
            "invalid_request",
            "PKCE is required: send code_challenge with code_challenge_method=S256",
        );
    };
    if get("code_challenge_method") != Some("S256") {
        return fail(
            "invalid_request",
            "only code_challenge_method=S256 is accepted (plain is refused)",
        );
    }
    let scopes = match known_scopes(get("scope")) {
        Ok(s) => s,
        Err(why) => return fail("invalid_scope", &why),
    };
    let pending = PendingAuthorization {
        redirect_uri: redirect_uri.clone(),
        state: state.clone(),
        scopes: scopes.clone(),
        code_challenge: code_challenge.to_string(),
    };
    let Ok(form_token) = p.forms.issue(pending) else {
        return fail(
            "temporarily_unavailable",
            "the random number generator failed; try again",
        );
    };
    page::render(&Approval {
        client_id: &p.settings.client_id,
        redirect_uri: redirect_uri.as_str(),
        scopes: &scopes,
        form_token: &form_token,
    })
}

/// `POST /authorize`: the sign-in page's answer. Approve: a code for the named user; deny:
/// `access_denied`. Either way back to the client with its `state` and our `iss`.
async fn decide(State(p): State<Arc<Provider>>, body: axum::body::Bytes) -> Response {
    let (decision, pending) = match login::validate(&p.forms, &body) {
        Ok(d) => d,
        Err(e) => return e.page(p.forms.lifetime()),
    };
    let state = pending.state.as_deref();
    match decision {
        Decision::Deny => redirect(&pending.redirect_uri, &p.issuer, state, |q| {
            q.append_pair("error", "access_denied").append_pair(
                "error_description",
                "the user denied the request at Acme Tasks",
            );
        }),
        Decision::Allow { user } => {
            let binding = CodeBinding {
                client_id: p.settings.client_id.clone(),
                redirect_uri: pending.redirect_uri.to_string(),
                code_challenge: pending.code_challenge.clone(),
                grant: Grant {
                    user,
                    scopes: pending.scopes.clone(),
                },
            };
            match p.ledger.issue_code(binding) {
                Ok(code) => redirect(&pending.redirect_uri, &p.issuer, state, |q| {
                    q.append_pair("code", &code);
                }),
                Err(_) => redirect(&pending.redirect_uri, &p.issuer, state, |q| {
                    q.append_pair("error", "temporarily_unavailable");
                }),
            }
        }
    }
}

/// 303 to the client's redirect URI with `add`'s parameters, `state` (when sent) and `iss`
/// (RFC 9207).
fn redirect(
    to: &Url,
    issuer: &str,
    state: Option<&str>,
    add: impl FnOnce(&mut url::form_urlencoded::Serializer<'_, url::UrlQuery<'_>>),
) -> Response {
    let mut url = to.clone();
    {
        let mut q = url.query_pairs_mut();
        add(&mut q);
        if let Some(s) = state {
            q.append_pair("state", s);
        }
        q.append_pair("iss", issuer);
    }
    Redirect::to(url.as_str()).into_response()
}

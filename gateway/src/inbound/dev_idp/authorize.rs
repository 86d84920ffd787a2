//! The authorization endpoint, `/dev-idp/authorize`: authorization code with PKCE (S256
//! only). `GET` checks the request and shows the login form; `POST` takes the form back and
//! redirects to the client with `code`, `state` and `iss` (RFC 9207).
//!
//! Errors follow RFC 6749 §4.1.2.1: while the client or its redirect URI is in doubt nothing
//! is sent there (a page, or JSON for programs that ask for it); after that, errors go back
//! to the client on its redirect URI.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use http::StatusCode;
use url::Url;

use super::login::{self, Decision};
use super::store::{digest, random_token};
use super::token::Grant;
use super::{DevIdp, OAuthError, form_params, parse_scopes};

/// An authorization request that passed every check, waiting for its login form.
#[derive(Debug, Clone)]
pub struct AuthRequest {
    pub client_id: String,
    pub agent: String,
    pub redirect_uri: String,
    pub state: Option<String>,
    pub code_challenge: String,
    pub scopes: Vec<String>,
    pub refresh: bool,
}

/// `GET /dev-idp/authorize`.
pub async fn start(State(idp): State<Arc<DevIdp>>, req: Request) -> Response {
    if let Some(refused) = login::refuse_unless_direct_loopback(
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
        req.headers(),
    ) {
        return refused;
    }
    let json = login::wants_json(req.headers());
    let query = req.uri().query().unwrap_or_default().as_bytes().to_vec();
    let params = match form_params(&query) {
        Ok(p) => p,
        Err(e) => return not_redirectable(json, e),
    };
    let param = |k: &str| params.get(k).map(String::as_str);

    // 1. Who is asking, and where the answer may go: not redirectable until both are known.
    let Some(client) = param("client_id").and_then(|id| idp.clients.get(&id.to_string())) else {
        return not_redirectable(
            json,
            OAuthError::new(
                StatusCode::UNAUTHORIZED,
                "invalid_client",
                "unknown client_id: the development identity provider keeps registrations in \
                 memory, so they are gone after a gateway restart. Register again (MCP clients \
                 do it by themselves once their cached registration is refused; for mcp-remote, \
                 delete ~/.mcp-auth)",
            ),
        );
    };
    let Some(redirect_uri) = param("redirect_uri") else {
        return not_redirectable(
            json,
            OAuthError::bad(
                "invalid_request",
                "redirect_uri is missing; send the redirect URI the client registered",
            ),
        );
    };
    if !client.redirect_allowed(redirect_uri) {
        return not_redirectable(
            json,
            OAuthError::bad(
                "invalid_request",
                format!(
                    "redirect_uri `{redirect_uri}` is not one this client registered ({}); send one of those exactly",
                    client.redirect_uris.join(", ")
                ),
            ),
        );
    }
    let back = Back {
        redirect_uri: redirect_uri.to_string(),
        state: param("state").map(str::to_string),
        issuer: idp.issuer(),
    };

    // 2. The rest of the request: errors go back to the client.
    if param("response_type") != Some("code") {
        return back.error(OAuthError::bad(
            "unsupported_response_type",
            "only response_type=code (authorization code with PKCE) is offered",
        ));
    }
    let challenge = match (param("code_challenge"), param("code_challenge_method")) {
        (None, _) => {
            return back.error(OAuthError::bad(
                "invalid_request",
                "PKCE is required: send code_challenge (BASE64URL(SHA-256(code_verifier))) and code_challenge_method=S256",
            ));
        }
        (Some(challenge), Some("S256")) => challenge,
        (Some(_), method) => {
            return back.error(OAuthError::bad(
                "invalid_request",
                format!(
                    "code_challenge_method {} is not accepted: only S256 is (the plain method sends the verifier in the clear); send code_challenge_method=S256",
                    method.map_or("(missing, meaning plain)".to_string(), |m| format!("`{m}`"))
                ),
            ));
        }
    };
    if challenge.len() != 43 || !challenge.bytes().all(is_base64url) {
        return back.error(OAuthError::bad(
            "invalid_request",
            "code_challenge is not an S256 challenge: it must be the 43-character base64url (no padding) SHA-256 of the code_verifier",
        ));
    }
    if let Some(resource) = param("resource")
        && !idp.is_own_resource(resource)
    {
        return back.error(OAuthError::bad(
            "invalid_target",
            format!(
                "resource `{resource}` is not this gateway; the development identity provider issues tokens only for {}",
                idp.server.mcp_url()
            ),
        ));
    }
    let scopes = match parse_scopes(param("scope")) {
        Ok(s) => s,
        Err(e) => return back.error(e),
    };

    // 3. Show the login form, bound to this request.
    let request = AuthRequest {
        client_id: client.id.clone(),
        agent: client.agent().to_string(),
        redirect_uri: back.redirect_uri.clone(),
        state: back.state.clone(),
        code_challenge: challenge.to_string(),
        scopes,
        refresh: client.refresh,
    };
    let form_token = match idp.logins.issue(request.clone()) {
        Ok(t) => t,
        Err(e) => return back.error(e.into()),
    };
    let target = Url::parse(&request.redirect_uri)
        .ok()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| request.redirect_uri.clone());
    let details = [
        (
            "Client",
            format!("{} (client id {})", request.agent, request.client_id),
        ),
        ("Returns to", target),
        (
            "Scopes",
            if request.scopes.is_empty() {
                "(none requested)".to_string()
            } else {
                request.scopes.join(" ")
            },
        ),
    ];
    let sentence = format!(
        "{} wants to call tools at {} as the user you name below.",
        request.agent,
        idp.server.mcp_url()
    );
    login::render(&login::Page {
        request: &sentence,
        details: &details,
        // The metadata's authorization_endpoint: right however public_url is written.
        action: &idp.endpoint("authorize"),
        form_token: &form_token,
    })
}

/// `POST /dev-idp/authorize`: the login form comes back.
pub async fn finish(State(idp): State<Arc<DevIdp>>, req: Request) -> Response {
    if let Some(refused) = login::refuse_unless_direct_loopback(
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
        req.headers(),
    ) {
        return refused;
    }
    // The global body limit applies already; a login form is tiny anyway.
    let Ok(body) = axum::body::to_bytes(req.into_body(), 16 * 1024).await else {
        return login::LoginError::UnknownForm.page(idp.logins.lifetime());
    };
    let (decision, request) = match login::validate(&idp.logins, &body) {
        Ok(ok) => ok,
        Err(e) => return e.page(idp.logins.lifetime()),
    };
    let back = Back {
        redirect_uri: request.redirect_uri.clone(),
        state: request.state.clone(),
        issuer: idp.issuer(),
    };
    let user = match decision {
        Decision::Deny => {
            return back.error(OAuthError::bad(
                "access_denied",
                "the person at the login page cancelled",
            ));
        }
        Decision::Allow { user } => user,
    };
    let (code, grant_id) = match random_token().and_then(|c| Ok((c, random_token()?))) {
        Ok(pair) => pair,
        Err(e) => return back.error(e.into()),
    };
    let grant = Grant {
        id: grant_id,
        client_id: request.client_id,
        agent: request.agent,
        user,
        scopes: request.scopes,
        refresh: request.refresh,
        redirect_uri: request.redirect_uri,
        code_challenge: request.code_challenge,
    };
    tracing::info!(
        target: "portcullis::inbound",
        user = %grant.user,
        agent = %grant.agent,
        "dev IdP: signed in at the development login page"
    );
    if let Err(e) = idp.ledger.add_code(digest(&code), grant) {
        return back.error(e);
    }
    back.to(&[("code", &code)])
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// An error that may not be sent to the redirect URI: JSON for programs that ask for it
/// (mcp-remote probes a cached registration this way), otherwise a page for the person.
fn not_redirectable(json: bool, e: OAuthError) -> Response {
    if json {
        return e.into_response();
    }
    login::error_page(
        e.status,
        "This login request cannot be completed",
        &format!("{} ({})", e.description, e.error),
    )
}

/// The way back to the client.
struct Back {
    redirect_uri: String,
    state: Option<String>,
    issuer: String,
}

impl Back {
    /// Redirect with `params`, plus `state` as received and `iss` (RFC 9207). 303 so the
    /// browser follows a form POST with a GET (OAuth 2.1 §7.5.2).
    fn to(&self, params: &[(&str, &str)]) -> Response {
        let Ok(mut url) = Url::parse(&self.redirect_uri) else {
            // Checked at registration; never reached.
            return login::error_page(
                StatusCode::BAD_REQUEST,
                "Unusable redirect URI",
                "The client's redirect URI is not a URL.",
            );
        };
        {
            let mut q = url.query_pairs_mut();
            for (k, v) in params {
                q.append_pair(k, v);
            }
            if let Some(state) = &self.state {
                q.append_pair("state", state);
            }
            q.append_pair("iss", &self.issuer);
        }
        Redirect::to(url.as_str()).into_response()
    }

    fn error(&self, e: OAuthError) -> Response {
        self.to(&[("error", e.error), ("error_description", &e.description)])
    }
}

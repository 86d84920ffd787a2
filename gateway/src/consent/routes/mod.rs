//! The consent pages, under `{public_url}/consent`:
//!
//! | route | what | file |
//! |---|---|---|
//! | `GET /consent/{id}` | sign in (as the user the call was made for), then Approve / Deny | `decide.rs` |
//! | `POST /consent/{id}` | the decision (single-use form token bound to this browser) | `decide.rs` |
//! | `GET /consent/callback` | the provider's redirect: state + browser cookie, code exchange, grant stored | `callback.rs` |
//! | `GET/POST /consent/grants` | the signed-in user's grants; revoke one (at the provider too, RFC 7009) | `grants.rs` |
//! | `POST /consent/login/dev` | the development IdP's login form | `sign_in.rs` |
//! | `GET /consent/login/callback` | an issuer's OpenID Connect redirect | `sign_in.rs` |
//!
//! Every refusal is a page that says what happened and what to do, and an audit event. This
//! file holds the router and what the pages share; each page is in its own file.

mod callback;
mod decide;
mod grants;
mod sign_in;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use http::{HeaderMap, StatusCode, header};
use url::Url;

use super::browser::{Browser, Browsers, Purpose, SignIn, same};
use super::login::{OidcLogins, Then};
use super::pages::{self, GrantRow, GrantsView, Problem, ScopeLine};
use crate::inbound::dev_idp::{self, login as dev_login};
use crate::outbound::authorization_code::TokenKind;
use crate::runtime::Live;
use crate::telemetry::{AuditEvent, Decision as AuditDecision, Outcome};
use crate::vault::{Authorized, GrantFilter, GrantKey, NewGrant, PendingConsent};

/// Longest form body accepted.
const MAX_FORM_BYTES: usize = 8 * 1024;

/// The consent pages' state: shared by every request, kept for the life of the process.
#[derive(Clone)]
pub struct Pages(Arc<Inner>);

struct Inner {
    live: Arc<Live>,
    browsers: Browsers,
    oidc: OidcLogins,
    dev_forms: dev_login::Forms<DevReturn>,
    /// Cookies get `Secure` when the gateway is reached over https.
    secure: bool,
    /// `{public_url}/consent/login/callback`.
    login_callback: Url,
}

#[derive(Debug, Clone)]
struct DevReturn {
    browser: [u8; 32],
    then: Then,
}

impl std::fmt::Debug for Pages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pages").finish_non_exhaustive()
    }
}

/// The routes of the consent pages.
pub fn router(live: Arc<Live>) -> Router {
    let base = live.consents().base().to_string();
    let secure = base.starts_with("https://");
    let login_callback = Url::parse(&format!("{base}/consent/login/callback"))
        .expect("a public URL with a path appended is a URL");
    let pages = Pages(Arc::new(Inner {
        live,
        browsers: Browsers::default(),
        oidc: OidcLogins::default(),
        dev_forms: dev_login::Forms::new(1_000, Duration::from_secs(10 * 60)),
        secure,
        login_callback,
    }));
    Router::new()
        .route("/consent/callback", get(callback::callback))
        .route("/consent/grants", get(grants::grants).post(grants::revoke))
        .route("/consent/login/dev", post(sign_in::dev_sign_in))
        .route("/consent/login/callback", get(sign_in::oidc_callback))
        .route("/consent/{id}", get(decide::show).post(decide::decide))
        .with_state(pages)
}

/// A page, with the browser's cookie set when it is new.
fn with_cookie(pages: &Pages, browser: &Browser, mut response: Response) -> Response {
    if browser.fresh
        && let Some(v) = browser.set_cookie(pages.0.secure)
    {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
    response
}

/// The system's random number generator failed (it practically never does).
fn no_randomness() -> Response {
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "Try again",
        "The gateway could not make a random value.",
        "Reload the page.",
    )
}

/// A posted form over the size limit or not form-encoded; `fix` says where to go back to.
fn unreadable_form(fix: &str) -> Response {
    problem(
        StatusCode::BAD_REQUEST,
        "This form could not be read",
        "The form sent was too large or malformed.",
        fix,
    )
}

fn problem(status: StatusCode, title: &str, what: &str, fix: &str) -> Response {
    pages::problem(status, &Problem { title, what, fix })
}

/// One audit event for a consent page: who, what, and the refusal if any.
fn audit(
    headers: &HeaderMap,
    started: Instant,
    method: &str,
    who: &str,
    target: Option<&str>,
    refused: Option<(StatusCode, &str)>,
) {
    let id = crate::telemetry::request_id(headers).unwrap_or("-");
    let mut event = AuditEvent::new(id, who, method);
    event.target = target.map(str::to_string);
    let outcome = match refused {
        Some((status, why)) => {
            event.decision = AuditDecision::Deny;
            Outcome::Error {
                code: i32::from(status.as_u16()),
                message: why.to_string(),
            }
        }
        None => Outcome::Ok { is_error: false },
    };
    event.finish(outcome, started.elapsed()).emit();
}

fn label(user: &str, agent: Option<&str>) -> String {
    match agent {
        Some(a) => format!("{user} via {a}"),
        None => user.to_string(),
    }
}

async fn form(req: Request) -> Option<Vec<(String, String)>> {
    let body = axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES)
        .await
        .ok()?;
    Some(
        url::form_urlencoded::parse(&body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect(),
    )
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn query(req: &Request) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// What a page needs of its request, owned (a `Request` is not `Sync`, so a reference to it
/// cannot be held across an await).
struct Asked {
    headers: HeaderMap,
    peer: Option<ConnectInfo<SocketAddr>>,
    query: Vec<(String, String)>,
}

impl Asked {
    fn of(req: &Request) -> Self {
        Self {
            headers: req.headers().clone(),
            peer: req.extensions().get::<ConnectInfo<SocketAddr>>().cloned(),
            query: query(req),
        }
    }
}

fn expired_link() -> Response {
    problem(
        StatusCode::GONE,
        "This consent link is no longer valid",
        "It has expired, was already used, or never existed. Consent links work once and for a limited time.",
        "Go back to your agent and call the tool again: it gives you a new link.",
    )
}

fn no_longer_served(target: &str) -> Response {
    problem(
        StatusCode::GONE,
        "This target is no longer served",
        &format!(
            "The gateway's configuration no longer has a target `{target}` that acts with your consent."
        ),
        "Nothing to do here; ask the gateway's administrator if you expected it.",
    )
}

/// The signed-in user must be the one the call was made for. The page does not say whose
/// link it is.
fn wrong_user(
    headers: &HeaderMap,
    started: Instant,
    who: &SignIn,
    pending: &PendingConsent,
    method: &str,
) -> Option<Response> {
    if who.issuer == pending.issuer && who.user == pending.user {
        return None;
    }
    audit(
        headers,
        started,
        method,
        &who.user,
        Some(&pending.target),
        Some((
            StatusCode::FORBIDDEN,
            "a consent link opened by another user than the one it was made for",
        )),
    );
    Some(problem(
        StatusCode::FORBIDDEN,
        "This link belongs to another user",
        &format!(
            "You are signed in as {}, and this consent was asked for by another user's call. Only that user can give it.",
            who.user
        ),
        "If the link is yours, sign out of this browser's session (close it, or use a private window) and sign in as yourself. If someone sent you this link, do not use it.",
    ))
}

async fn pending(pages: &Pages, id: &str) -> Result<Option<PendingConsent>, Response> {
    // A consent id is 43 base64url characters; anything else is not one (and not a query).
    if id.len() > 64
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Ok(None);
    }
    pages
        .0
        .live
        .consents()
        .vault()
        .pending(id)
        .await
        .map_err(|e| vault_failed(&e))
}

fn vault_failed(e: &crate::vault::VaultError) -> Response {
    tracing::error!(target: "portcullis::vault", "a consent page could not use the vault: {e}");
    problem(
        StatusCode::SERVICE_UNAVAILABLE,
        "The gateway cannot use its token vault",
        "The gateway could not read or write its token vault (its log says why).",
        "Try again in a moment; if it keeps failing, tell the gateway's administrator.",
    )
}

/// Provider-supplied text on a page: bounded, printable.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

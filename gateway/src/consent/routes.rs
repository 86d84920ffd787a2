//! The consent pages, under `{public_url}/consent`:
//!
//! | route | what |
//! |---|---|
//! | `GET /consent/{id}` | sign in (as the user the call was made for), then Approve / Deny |
//! | `POST /consent/{id}` | the decision (single-use form token bound to this browser) |
//! | `GET /consent/callback` | the provider's redirect: state + browser cookie, code exchange, grant stored |
//! | `GET/POST /consent/grants` | the signed-in user's grants; revoke one (at the provider too, RFC 7009) |
//! | `POST /consent/login/dev` | the development IdP's login form |
//! | `GET /consent/login/callback` | an issuer's OpenID Connect redirect |
//!
//! Every refusal is a page that says what happened and what to do, and an audit event.

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
        .route("/consent/callback", get(callback))
        .route("/consent/grants", get(grants).post(revoke))
        .route("/consent/login/dev", post(dev_sign_in))
        .route("/consent/login/callback", get(oidc_callback))
        .route("/consent/{id}", get(show).post(decide))
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

/// Who is at the browser, at `issuer`: signed in already, or a response that signs them in
/// (the dev IdP's form, or a redirect to the issuer) and comes back to `then`.
async fn signed_in(
    pages: &Pages,
    req: &Asked,
    browser: &Browser,
    issuer: &str,
    then: Then,
) -> Result<SignIn, Response> {
    if let Some(who) = pages.0.browsers.signed_in(browser, issuer) {
        return Ok(who);
    }
    let runtime = pages.0.live.load();
    let Some(auth) = runtime.auth.as_ref() else {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "Nobody can sign in here",
            "This gateway does not authenticate its callers (inbound.mode = \"none\"), so it cannot tell who gives consent.",
            "The gateway's administrator must configure [inbound] issuers to use targets that act for users.",
        ));
    };
    let dev_issuer = auth
        .dev_idp
        .as_ref()
        .map(|_| dev_idp::issuer_url(&runtime.snapshot.server));
    if dev_issuer.as_deref() == Some(issuer) {
        if let Some(refused) =
            dev_login::refuse_unless_direct_loopback(req.peer.as_ref(), &req.headers)
        {
            return Err(refused);
        }
        let token = pages
            .0
            .dev_forms
            .issue(DevReturn {
                browser: browser.digest(),
                then: then.clone(),
            })
            .map_err(|_| {
                problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Try again",
                    "The gateway could not make a random value.",
                    "Reload the page.",
                )
            })?;
        let request = match &then {
            Then::Consent(_) => {
                "Sign in as the user whose agent asked for access, to review the request."
            }
            Then::Grants => "Sign in to see the access your agents hold on your behalf.",
        };
        return Err(dev_login::render(&dev_login::Page {
            request,
            details: &[("Identity provider", issuer.to_string())],
            action: "/consent/login/dev",
            form_token: &token,
        }));
    }
    let Some(issuer_state) = auth.issuers().iter().find(|i| i.spec.issuer == issuer) else {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "Unknown identity provider",
            &format!("The gateway no longer trusts the identity provider {issuer}."),
            "Open the consent link from your agent again.",
        ));
    };
    let Some(login) = issuer_state.spec.consent_login.as_ref() else {
        return Err(problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "The gateway cannot sign you in yet",
            &format!(
                "To give consent you must sign in at {issuer}, and the gateway is not registered there as a sign-in client."
            ),
            "The gateway's administrator must register the gateway at this identity provider (redirect URI {public_url}/consent/login/callback) and add [inbound.issuers.consent_login] with its client_id (docs/consent.md).",
        ));
    };
    match pages
        .0
        .oidc
        .start(
            issuer_state,
            login,
            &pages.0.login_callback,
            pages.0.live.inbound_http(),
            browser,
            then,
        )
        .await
    {
        Ok(url) => Err(Redirect::to(url.as_str()).into_response()),
        Err(f) => Err(problem(f.status, "Cannot sign you in", &f.what, &f.fix)),
    }
}

/// `GET /consent/{id}`: sign in, then the consent page.
async fn show(State(pages): State<Pages>, Path(id): Path<String>, req: Request) -> Response {
    let started = Instant::now();
    let Some(browser) = Browser::of_or_new(req.headers()) else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The gateway could not make a random value.",
            "Reload the page.",
        );
    };
    let page = show_inner(&pages, &id, &Asked::of(&req), &browser, started).await;
    with_cookie(&pages, &browser, page)
}

async fn show_inner(
    pages: &Pages,
    id: &str,
    req: &Asked,
    browser: &Browser,
    started: Instant,
) -> Response {
    let pending = match pending(pages, id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            audit(
                &req.headers,
                started,
                "consent/open",
                "unknown",
                None,
                Some((StatusCode::GONE, "an expired, used or unknown consent link")),
            );
            return expired_link();
        }
        Err(r) => return r,
    };
    let who = match signed_in(
        pages,
        req,
        browser,
        &pending.issuer,
        Then::Consent(id.into()),
    )
    .await
    {
        Ok(w) => w,
        Err(response) => return response,
    };
    if let Some(refused) = wrong_user(&req.headers, started, &who, &pending, "consent/open") {
        return refused;
    }
    let runtime = pages.0.live.load();
    let grants = runtime
        .catalog
        .target(&pending.target)
        .and_then(|t| t.user_grants());
    let Some(grants) = grants else {
        return no_longer_served(&pending.target);
    };
    let provider = grants.provider_label();
    let preset = grants.client().provider().name();
    let Some(token) = pages
        .0
        .browsers
        .form_token(browser, Purpose::Decide(id.to_string()))
    else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The gateway could not make a random value.",
            "Reload the page.",
        );
    };
    let scopes: Vec<ScopeLine> = pending
        .scopes
        .iter()
        .map(|s| ScopeLine {
            scope: s,
            meaning: pages::scope_meaning(preset, s),
        })
        .collect();
    let now = now();
    let action = format!("/consent/{id}");
    pages::consent(&pages::ConsentView {
        agent: pending.agent.as_deref().unwrap_or(""),
        user: &who.user,
        issuer: &who.issuer,
        target: &pending.target,
        provider: &provider,
        scopes: &scopes,
        action: &action,
        form_token: &token,
        expires_in: Duration::from_secs(pending.expires_at.saturating_sub(now).max(0) as u64),
    })
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

/// `POST /consent/{id}`: Approve or Deny.
async fn decide(State(pages): State<Pages>, Path(id): Path<String>, req: Request) -> Response {
    let started = Instant::now();
    let headers = req.headers().clone();
    let browser = Browser::of(&headers);
    let Some(form) = form(req).await else {
        return problem(
            StatusCode::BAD_REQUEST,
            "This form could not be read",
            "The form sent was too large or malformed.",
            "Go back, reload the consent page and try again.",
        );
    };
    let token_ok = browser.as_ref().is_some_and(|b| {
        pages.0.browsers.use_form_token(
            field(&form, "form_token").unwrap_or_default(),
            b,
            &Purpose::Decide(id.clone()),
        )
    });
    let pending = match pending(&pages, &id).await {
        Ok(Some(p)) => p,
        Ok(None) => {
            audit(
                &headers,
                started,
                "consent/decide",
                "unknown",
                None,
                Some((
                    StatusCode::GONE,
                    "a decision for an expired, used or unknown consent link",
                )),
            );
            return expired_link();
        }
        Err(r) => return r,
    };
    let (Some(browser), true) = (browser, token_ok) else {
        // Nobody proved who sent it: not the consent's owner.
        audit(
            &headers,
            started,
            "consent/decide",
            "unknown",
            Some(&pending.target),
            Some((
                StatusCode::FORBIDDEN,
                "a consent decision without this page's form token (forged, replayed or from another browser)",
            )),
        );
        return problem(
            StatusCode::FORBIDDEN,
            "This form is no longer valid",
            "The decision did not come with the one-time token of the consent page shown in this browser: the page was already used, is too old, or the request did not come from it.",
            "Open the consent link again and decide on the page it shows.",
        );
    };
    let Some(who) = pages.0.browsers.signed_in(&browser, &pending.issuer) else {
        audit(
            &headers,
            started,
            "consent/decide",
            "unknown",
            Some(&pending.target),
            Some((
                StatusCode::FORBIDDEN,
                "a consent decision from a browser whose sign-in has expired",
            )),
        );
        return expired_sign_in(&id);
    };
    if let Some(refused) = wrong_user(&headers, started, &who, &pending, "consent/decide") {
        return refused;
    }
    let vault = pages.0.live.consents().vault();
    let who_label = label(&pending.user, pending.agent.as_deref());
    if field(&form, "decision") != Some("approve") {
        if let Err(e) = vault.take_pending(&id).await {
            return vault_failed(&e);
        }
        audit(
            &headers,
            started,
            "consent/deny",
            &who_label,
            Some(&pending.target),
            None,
        );
        tracing::info!(target: "portcullis::consent", "{who_label} denied access to target `{}`", pending.target);
        return pages::denied(&pending.target);
    }
    let runtime = pages.0.live.load();
    let Some(grants) = runtime
        .catalog
        .target(&pending.target)
        .and_then(|t| t.user_grants())
    else {
        return no_longer_served(&pending.target);
    };
    let client = match grants.client().get().await {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::BAD_GATEWAY,
                "The provider cannot be reached",
                &format!(
                    "The gateway cannot start the authorization at {}: {e}",
                    grants.provider_label()
                ),
                "Try again later; if it keeps failing, tell the gateway's administrator.",
            );
        }
    };
    let authorization = client.begin_with_verifier(&pending.scopes, &pending.pkce_verifier);
    match vault
        .authorize_pending(&id, &authorization.state, browser.id())
        .await
    {
        Ok(true) => {}
        Ok(false) => {
            audit(
                &headers,
                started,
                "consent/decide",
                &who_label,
                Some(&pending.target),
                Some((
                    StatusCode::GONE,
                    "an approval of a consent that expired meanwhile",
                )),
            );
            return expired_link();
        }
        Err(e) => return vault_failed(&e),
    }
    audit(
        &headers,
        started,
        "consent/approve",
        &who_label,
        Some(&pending.target),
        None,
    );
    Redirect::to(authorization.url.as_str()).into_response()
}

fn expired_sign_in(id: &str) -> Response {
    problem(
        StatusCode::FORBIDDEN,
        "Your sign-in has expired",
        "The consent pages keep you signed in for a limited time, and that time is over (or the gateway restarted).",
        &format!("Open the consent link again (/consent/{id}) and sign in again."),
    )
}

/// `GET /consent/callback`: the provider sends the browser back.
async fn callback(State(pages): State<Pages>, req: Request) -> Response {
    let started = Instant::now();
    let asked = Asked::of(&req);
    drop(req);
    let params = asked.query;
    let headers = &asked.headers;
    let get = |name: &str| field(&params, name);
    let Some(state) = get("state") else {
        return problem(
            StatusCode::BAD_REQUEST,
            "This is not a consent callback",
            "The address lacks the `state` the provider returns.",
            "Open the consent link from your agent again.",
        );
    };
    let browser = Browser::of(headers);
    let vault = pages.0.live.consents().vault();
    let pending = match vault
        .take_authorized(state, browser.as_ref().map(Browser::id))
        .await
    {
        Ok(Authorized::Taken(p)) => p,
        Ok(Authorized::OtherBrowser) => {
            audit(
                headers,
                started,
                "consent/callback",
                "unknown",
                None,
                Some((
                    StatusCode::FORBIDDEN,
                    "a consent callback from another browser than the one that approved (or without its cookie)",
                )),
            );
            return problem(
                StatusCode::FORBIDDEN,
                "This browser did not approve this request",
                "The provider's answer arrived in a browser other than the one where the consent was approved (or this browser did not send the gateway's cookie back).",
                "Open the consent link again in one browser, with cookies allowed for this gateway, and approve there.",
            );
        }
        Ok(Authorized::Expired) => {
            audit(
                headers,
                started,
                "consent/callback",
                "unknown",
                None,
                Some((
                    StatusCode::GONE,
                    "a consent callback for a consent that expired",
                )),
            );
            return expired_link();
        }
        Ok(Authorized::Unknown) => {
            audit(
                headers,
                started,
                "consent/callback",
                "unknown",
                None,
                Some((
                    StatusCode::BAD_REQUEST,
                    "a consent callback with an unknown or already used state",
                )),
            );
            return problem(
                StatusCode::BAD_REQUEST,
                "This answer was already used",
                "The provider's answer refers to a consent that was completed already, replaced by a later approval, or never started here.",
                "If your agent still asks for consent, call the tool again to get a new link.",
            );
        }
        Err(e) => return vault_failed(&e),
    };
    let who = label(&pending.user, pending.agent.as_deref());
    if let Some(error) = get("error") {
        let denied = error == "access_denied";
        audit(
            headers,
            started,
            "consent/callback",
            &who,
            Some(&pending.target),
            Some((
                StatusCode::FORBIDDEN,
                &format!("the provider answered {error}"),
            )),
        );
        if denied {
            return pages::denied(&pending.target);
        }
        return problem(
            StatusCode::BAD_GATEWAY,
            "The provider refused",
            &format!(
                "The provider answered `{}`{}.",
                shown(error),
                get("error_description")
                    .map(|d| format!(": {}", shown(d)))
                    .unwrap_or_default()
            ),
            "Call the tool again from your agent to get a new link; if it keeps failing, tell the gateway's administrator.",
        );
    }
    let runtime = pages.0.live.load();
    let Some(grants) = runtime
        .catalog
        .target(&pending.target)
        .and_then(|t| t.user_grants())
    else {
        return no_longer_served(&pending.target);
    };
    let client = match grants.client().get().await {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::BAD_GATEWAY,
                "The provider cannot be reached",
                &e.to_string(),
                "Call the tool again later.",
            );
        }
    };
    // RFC 9207: an `iss` that is not this provider's means the answer comes from another
    // authorization server (a mix-up attack).
    if let (Some(iss), Some(expected)) = (get("iss"), client.endpoints().issuer.as_deref())
        && iss != expected
    {
        audit(
            headers,
            started,
            "consent/callback",
            &who,
            Some(&pending.target),
            Some((
                StatusCode::BAD_REQUEST,
                "a consent callback naming another issuer (RFC 9207)",
            )),
        );
        return problem(
            StatusCode::BAD_REQUEST,
            "The answer came from another provider",
            &format!(
                "The answer names the issuer {}, not {expected}.",
                shown(iss)
            ),
            "Call the tool again from your agent and approve at the provider it sends you to.",
        );
    }
    let Some(code) = get("code") else {
        return problem(
            StatusCode::BAD_REQUEST,
            "The provider's answer has no code",
            "The provider sent the browser back without an authorization code.",
            "Call the tool again from your agent to get a new link.",
        );
    };
    let tokens = match client
        .exchange(code, &pending.pkce_verifier, &pending.scopes)
        .await
    {
        Ok(t) => t,
        Err(e) => {
            audit(
                headers,
                started,
                "consent/callback",
                &who,
                Some(&pending.target),
                Some((StatusCode::BAD_GATEWAY, "the code exchange failed")),
            );
            tracing::warn!(target: "portcullis::consent", "{who}: the code exchange for target `{}` failed: {e}", pending.target);
            return problem(
                StatusCode::BAD_GATEWAY,
                "The provider did not complete the authorization",
                &format!("Exchanging the authorization code failed: {e}"),
                "Call the tool again from your agent to get a new link.",
            );
        }
    };
    let key = pending.grant_key();
    let grant = NewGrant {
        // What the user approved (some providers word the granted scopes differently).
        scopes: pending.scopes.clone(),
        access_token: tokens.access_token,
        refresh_token: tokens.refresh_token,
        expires_at: tokens.expires_at,
    };
    if let Err(e) = vault.store_grant(&key, &grant).await {
        return vault_failed(&e);
    }
    audit(
        headers,
        started,
        "consent/granted",
        &who,
        Some(&pending.target),
        None,
    );
    tracing::info!(target: "portcullis::consent", "{who} granted access to target `{}` (scopes: {})", pending.target, pending.scopes.join(" "));
    pages.0.live.consents().completed(&pending);
    pages::done(&pending.target, &grants.provider_label())
}

/// Provider-supplied text on a page: bounded, printable.
fn shown(text: &str) -> String {
    text.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// `POST /consent/login/dev`: the development IdP's login form.
async fn dev_sign_in(State(pages): State<Pages>, req: Request) -> Response {
    if let Some(refused) = dev_login::refuse_unless_direct_loopback(
        req.extensions().get::<ConnectInfo<SocketAddr>>(),
        req.headers(),
    ) {
        return refused;
    }
    let started = Instant::now();
    let headers = req.headers().clone();
    let browser = Browser::of(&headers);
    let runtime = pages.0.live.load();
    let issuer = dev_idp::issuer_url(&runtime.snapshot.server);
    let body = match axum::body::to_bytes(req.into_body(), MAX_FORM_BYTES).await {
        Ok(b) => b,
        Err(_) => {
            return dev_login::LoginError::UnknownForm.page(pages.0.dev_forms.lifetime());
        }
    };
    let (decision, back) = match dev_login::validate(&pages.0.dev_forms, &body) {
        Ok(v) => v,
        Err(e) => return e.page(pages.0.dev_forms.lifetime()),
    };
    let Some(browser) = browser.filter(|b| same(&b.digest(), &back.browser)) else {
        audit(
            &headers,
            started,
            "consent/sign-in",
            "unknown",
            None,
            Some((
                StatusCode::FORBIDDEN,
                "a development sign-in posted from another browser than the one shown the form",
            )),
        );
        return problem(
            StatusCode::FORBIDDEN,
            "This sign-in was started in another browser",
            "The login form was not shown to this browser (or its cookies were cleared).",
            "Open the consent link again in this browser.",
        );
    };
    let user = match decision {
        dev_login::Decision::Allow { user } => user,
        dev_login::Decision::Deny => {
            return problem(
                StatusCode::OK,
                "Sign-in cancelled",
                "You cancelled the sign-in, so nothing was decided.",
                "Open the consent link again when you want to review the request.",
            );
        }
    };
    pages.0.browsers.sign_in(&browser, SignIn { issuer, user });
    Redirect::to(&back.then.path()).into_response()
}

/// `GET /consent/login/callback`: an issuer sends the browser back from sign-in.
async fn oidc_callback(State(pages): State<Pages>, req: Request) -> Response {
    let started = Instant::now();
    let asked = Asked::of(&req);
    drop(req);
    let params = asked.query;
    let get = |name: &str| field(&params, name);
    let refused = |status: StatusCode, why: &str| {
        audit(
            &asked.headers,
            started,
            "consent/sign-in",
            "unknown",
            None,
            Some((status, why)),
        );
    };
    if let Some(error) = get("error") {
        refused(
            StatusCode::FORBIDDEN,
            "the identity provider ended the sign-in with an error",
        );
        return problem(
            StatusCode::FORBIDDEN,
            "Sign-in did not complete",
            &format!("The identity provider answered `{}`.", shown(error)),
            "Open the consent link again to retry.",
        );
    }
    let (Some(state), Some(code)) = (get("state"), get("code")) else {
        refused(
            StatusCode::BAD_REQUEST,
            "a sign-in answer without state or code",
        );
        return problem(
            StatusCode::BAD_REQUEST,
            "This is not a sign-in answer",
            "The address lacks the `state` and `code` an identity provider returns.",
            "Open the consent link again.",
        );
    };
    let browser = Browser::of(&asked.headers);
    let runtime = pages.0.live.load();
    let Some(auth) = runtime.auth.as_ref() else {
        return problem(
            StatusCode::FORBIDDEN,
            "Nobody can sign in here",
            "This gateway does not authenticate its callers.",
            "Nothing to do here.",
        );
    };
    match pages
        .0
        .oidc
        .finish(
            auth.issuers(),
            &pages.0.login_callback,
            pages.0.live.inbound_http(),
            browser.as_ref(),
            state,
            code,
        )
        .await
    {
        Ok((who, then)) => {
            if let Some(b) = &browser {
                pages.0.browsers.sign_in(b, who);
            }
            Redirect::to(&then.path()).into_response()
        }
        Err(f) => {
            refused(
                f.status,
                &format!("a sign-in answer was refused: {}", f.what),
            );
            problem(f.status, "Sign-in failed", &f.what, &f.fix)
        }
    }
}

/// `GET /consent/grants`: the signed-in user's grants.
async fn grants(State(pages): State<Pages>, req: Request) -> Response {
    let Some(browser) = Browser::of_or_new(req.headers()) else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The gateway could not make a random value.",
            "Reload the page.",
        );
    };
    let page = grants_inner(&pages, &Asked::of(&req), &browser, None).await;
    with_cookie(&pages, &browser, page)
}

async fn grants_inner(
    pages: &Pages,
    req: &Asked,
    browser: &Browser,
    notice: Option<&str>,
) -> Response {
    let who = match pages.0.browsers.anyone(browser) {
        Some(w) => w,
        None => {
            let Some(issuer) = sign_in_issuer(pages, req) else {
                return problem(
                    StatusCode::BAD_REQUEST,
                    "Which identity provider?",
                    "This gateway trusts several identity providers.",
                    "Add ?issuer=<your identity provider's URL> to this address, or open a consent link from your agent first.",
                );
            };
            match signed_in(pages, req, browser, &issuer, Then::Grants).await {
                Ok(w) => w,
                Err(r) => return r,
            }
        }
    };
    let vault = pages.0.live.consents().vault();
    let list = match vault
        .list_grants(&GrantFilter {
            user: who.user.clone(),
            agent: None,
            target: None,
            issuer: Some(who.issuer.clone()),
        })
        .await
    {
        Ok(l) => l,
        Err(e) => return vault_failed(&e),
    };
    let Some(token) = pages.0.browsers.form_token(browser, Purpose::Revoke) else {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            "Try again",
            "The gateway could not make a random value.",
            "Reload the page.",
        );
    };
    let dates: Vec<(String, String)> = list
        .iter()
        .map(|g| {
            (
                date(g.created_at),
                g.expires_at.map_or_else(
                    || "no expiry".into(),
                    |e| {
                        if g.has_refresh_token {
                            format!("{} (renewed by the gateway)", date(e))
                        } else {
                            date(e)
                        }
                    },
                ),
            )
        })
        .collect();
    let rows: Vec<GrantRow> = list
        .iter()
        .zip(&dates)
        .map(|(g, (since, expires))| GrantRow {
            target: &g.key.target,
            agent: g.key.agent.as_deref().unwrap_or(""),
            scopes: &g.scopes,
            since,
            expires,
        })
        .collect();
    pages::grants(&GrantsView {
        user: &who.user,
        issuer: &who.issuer,
        rows: &rows,
        action: "/consent/grants",
        form_token: &token,
        notice,
    })
}

/// The issuer to sign in at for the grants page: `?issuer=`, else the only one.
fn sign_in_issuer(pages: &Pages, req: &Asked) -> Option<String> {
    if let Some(i) = field(&req.query, "issuer") {
        return Some(i.to_string());
    }
    let runtime = pages.0.live.load();
    let auth = runtime.auth.as_ref()?;
    let issuers = auth.issuers();
    match issuers {
        [only] => Some(only.spec.issuer.clone()),
        _ => None,
    }
}

/// `POST /consent/grants`: revoke one grant of the signed-in user.
async fn revoke(State(pages): State<Pages>, req: Request) -> Response {
    let started = Instant::now();
    let asked = Asked::of(&req);
    let headers = asked.headers.clone();
    let browser = Browser::of(&headers);
    let Some(form) = form(req).await else {
        return problem(
            StatusCode::BAD_REQUEST,
            "This form could not be read",
            "The form sent was too large or malformed.",
            "Go back, reload the page and try again.",
        );
    };
    let token_ok = browser.as_ref().is_some_and(|b| {
        pages.0.browsers.use_form_token(
            field(&form, "form_token").unwrap_or_default(),
            b,
            &Purpose::Revoke,
        )
    });
    let who = browser.as_ref().and_then(|b| pages.0.browsers.anyone(b));
    let (Some(browser), Some(who), true) = (browser, who, token_ok) else {
        audit(
            &headers,
            started,
            "consent/revoke",
            "unknown",
            field(&form, "target"),
            Some((
                StatusCode::FORBIDDEN,
                "a revocation without the grants page's form token or sign-in",
            )),
        );
        return problem(
            StatusCode::FORBIDDEN,
            "This form is no longer valid",
            "The request did not come with the one-time token of the grants page shown in this browser, or your sign-in has expired.",
            "Open /consent/grants again and revoke from the page it shows.",
        );
    };
    let target = field(&form, "target").unwrap_or_default().to_string();
    let agent = field(&form, "agent").filter(|a| !a.is_empty());
    let key = GrantKey {
        issuer: who.issuer.clone(),
        user: who.user.clone(),
        agent: agent.map(str::to_string),
        target: target.clone(),
    };
    let vault = pages.0.live.consents().vault();
    let grant = match vault.grant(&key).await {
        Ok(g) => g,
        Err(e) if e.is_tampered() => None,
        Err(e) => return vault_failed(&e),
    };
    // At the provider first (best effort: the grant is deleted here either way).
    let mut at_provider = "";
    if let Some(grant) = &grant {
        let runtime = pages.0.live.load();
        if let Some(g) = runtime
            .catalog
            .target(&target)
            .and_then(|t| t.user_grants())
            && let Ok(client) = g.client().get().await
        {
            let (token, kind) = match &grant.refresh_token {
                Some(r) => (r, TokenKind::RefreshToken),
                None => (&grant.access_token, TokenKind::AccessToken),
            };
            match client.revoke(token, kind).await {
                Ok(()) => at_provider = " here and at the provider",
                Err(e) => {
                    tracing::warn!(target: "portcullis::consent", "revoking {key} at the provider failed (deleted from the vault anyway): {e}");
                }
            }
        }
    }
    match vault.delete_grant(&key).await {
        Ok(_) => {}
        Err(e) => return vault_failed(&e),
    }
    audit(
        &headers,
        started,
        "consent/revoke",
        &label(&who.user, agent),
        Some(&target),
        None,
    );
    tracing::info!(target: "portcullis::consent", "{} revoked {key}", who.user);
    let notice = format!(
        "Access of {} to {target} was revoked{at_provider}.",
        agent.unwrap_or("any agent")
    );
    grants_inner(&pages, &asked, &browser, Some(&notice)).await
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64
}

/// Unix seconds as `2026-11-30 09:12 UTC`.
fn date(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!(
                "[year]-[month]-[day] [hour]:[minute] UTC"
            ))
            .ok()
        })
        .unwrap_or_else(|| "-".into())
}

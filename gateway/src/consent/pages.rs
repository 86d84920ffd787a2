//! The browser pages of the consent flow: the consent question itself, its outcomes (done,
//! denied, refused) and the page where a user sees and revokes their grants.
//!
//! Every page is an askama template (`gateway/templates/`) on one base layout, also used by
//! the dev IdP's login page, so all pages of the gateway look and are secured the same. The
//! rules the layout keeps: every value is escaped (askama escapes by default; nothing here
//! marks user data `|safe`), there is no JavaScript at all, and the only style is the
//! layout's inline stylesheet, which the Content-Security-Policy admits by its hash — nothing
//! else may load, and no other site may frame the page. The pages carry live form tokens,
//! so they are never cached and send no referrer.

use std::sync::LazyLock;
use std::time::Duration;

use askama::Template;
use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{StatusCode, header};
use sha2::{Digest, Sha256};

mod scopes;
pub use scopes::scope_meaning;

/// Where a signed-in user sees and revokes their grants.
pub const GRANTS_PATH: &str = "/consent/grants";

/// One scope the consent asks for, with its meaning in plain words when known
/// ([`scope_meaning`]).
#[derive(Debug)]
pub struct ScopeLine<'a> {
    pub scope: &'a str,
    pub meaning: Option<&'a str>,
}

/// What the consent page shows. Every string is escaped when rendered.
#[derive(Debug)]
pub struct ConsentView<'a> {
    /// The OAuth client of the agent, e.g. "claude-code"; "" when unknown.
    pub agent: &'a str,
    /// The signed-in user, e.g. "alice".
    pub user: &'a str,
    /// The user's identity provider (its issuer URL).
    pub issuer: &'a str,
    /// The gateway target, e.g. "github".
    pub target: &'a str,
    /// Who the account is at, in words: "GitHub", or the authorization server's host.
    pub provider: &'a str,
    pub scopes: &'a [ScopeLine<'a>],
    /// Where the form posts to (a path on this gateway).
    pub action: &'a str,
    /// The single-use CSRF token, sent back as `form_token`.
    pub form_token: &'a str,
    /// How long the consent link stays valid.
    pub expires_in: Duration,
}

#[derive(Template)]
#[template(path = "consent/consent.html")]
struct ConsentPage<'a> {
    v: &'a ConsentView<'a>,
    expires: String,
    grants: &'static str,
}

/// The consent question (200): who asks to act as whom, where, with which permissions, what
/// Approve does, and a form that posts `form_token` and `decision=approve|deny`.
pub fn consent(v: &ConsentView) -> Response {
    respond(
        StatusCode::OK,
        &ConsentPage {
            v,
            expires: in_words(v.expires_in),
            grants: GRANTS_PATH,
        },
    )
}

#[derive(Template)]
#[template(path = "consent/done.html")]
struct DonePage<'a> {
    target: &'a str,
    provider: &'a str,
    grants: &'static str,
}

/// The consent is complete and the grant stored (200): back to the agent.
pub fn done(target: &str, provider: &str) -> Response {
    respond(
        StatusCode::OK,
        &DonePage {
            target,
            provider,
            grants: GRANTS_PATH,
        },
    )
}

#[derive(Template)]
#[template(path = "consent/denied.html")]
struct DeniedPage<'a> {
    target: &'a str,
}

/// The user pressed Deny (200): nothing was stored.
pub fn denied(target: &str) -> Response {
    respond(StatusCode::OK, &DeniedPage { target })
}

/// Why the flow stops here, for the person at the browser.
#[derive(Debug)]
pub struct Problem<'a> {
    /// The heading, e.g. "This consent link has expired".
    pub title: &'a str,
    /// What happened and why, in plain words.
    pub what: &'a str,
    /// What the person can do about it.
    pub fix: &'a str,
}

#[derive(Template)]
#[template(path = "consent/problem.html")]
struct ProblemPage<'a> {
    p: &'a Problem<'a>,
}

/// Any refusal (expired or foreign link, replayed state, missing cookie, provider error).
pub fn problem(status: StatusCode, p: &Problem) -> Response {
    respond(status, &ProblemPage { p })
}

/// One grant on the grants page. Every string is escaped when rendered.
#[derive(Debug)]
pub struct GrantRow<'a> {
    pub target: &'a str,
    /// The agent it was issued to; "" = any agent.
    pub agent: &'a str,
    pub scopes: &'a [String],
    /// When it was granted, already formatted.
    pub since: &'a str,
    /// When it expires, already formatted ("2026-11-30 09:12 UTC", "no expiry").
    pub expires: &'a str,
}

/// What the grants page shows.
#[derive(Debug)]
pub struct GrantsView<'a> {
    pub user: &'a str,
    pub issuer: &'a str,
    pub rows: &'a [GrantRow<'a>],
    /// Where each row's revoke form posts to.
    pub action: &'a str,
    /// The CSRF token every revoke form carries as `form_token`.
    pub form_token: &'a str,
    /// The outcome of the last action, e.g. "Access of claude-code to github was revoked."
    pub notice: Option<&'a str>,
}

#[derive(Template)]
#[template(path = "consent/grants.html")]
struct GrantsPage<'a> {
    v: &'a GrantsView<'a>,
}

/// The user's grants (200), each with its own revoke form posting `form_token`, `target`,
/// `agent` and `decision=revoke`.
pub fn grants(v: &GrantsView) -> Response {
    respond(StatusCode::OK, &GrantsPage { v })
}

/// The layout's stylesheet, inlined into every page and admitted by [`CONTENT_SECURITY_POLICY`]
/// by its hash: no extra request, no route to mount, and a page served by another server
/// (the demo provider shows the dev IdP's error page) is styled too.
pub const STYLESHEET: &str = include_str!("../../templates/style.css");

/// Nothing may load but the layout's stylesheet; no `<base>`, no framing. `form-action` is
/// left out on purpose: the Approve answer redirects to the provider's site.
static CONTENT_SECURITY_POLICY: LazyLock<String> = LazyLock::new(|| {
    let hash = STANDARD.encode(Sha256::digest(STYLESHEET.as_bytes()));
    format!(
        "default-src 'none'; style-src 'sha256-{hash}'; base-uri 'none'; frame-ancestors 'none'"
    )
});

/// The headers every page on the base layout is sent with: the policy above, framing,
/// caching, sniffing and referrers off (the pages carry live form tokens).
pub fn security_headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            CONTENT_SECURITY_POLICY.as_str(),
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

/// A rendered page with the security headers. Rendering only writes strings, so it fails
/// only on a bug; the person then gets a plain 500 that says so.
pub(crate) fn respond(status: StatusCode, page: &impl Template) -> Response {
    match page.render() {
        Ok(html) => (status, security_headers(), Html(html)).into_response(),
        Err(e) => {
            tracing::error!(
                target: "portcullis::consent",
                error = %e,
                "a page could not be rendered: its template failed; this is a gateway bug, \
                 please report it"
            );
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                security_headers(),
                "The gateway could not show this page (its template failed to render). This is \
                 a bug in the gateway: please report it with the time it happened.\n",
            )
                .into_response()
        }
    }
}

/// The escaper of every `.html` template (wired in `gateway/askama.toml`): the characters
/// that matter in element content and quoted attributes, written as named entities.
#[derive(Debug, Clone, Copy, Default)]
pub struct NamedEntities;

impl askama::filters::Escaper for NamedEntities {
    fn write_escaped_str<W: std::fmt::Write>(&self, mut dest: W, text: &str) -> std::fmt::Result {
        let mut rest = text;
        while let Some(at) = rest.find(['&', '<', '>', '"', '\'']) {
            dest.write_str(&rest[..at])?;
            dest.write_str(match rest.as_bytes()[at] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[at + 1..];
        }
        dest.write_str(rest)
    }
}

/// "10 minutes", "1 hour", "45 seconds": the largest unit that fits, rounded down.
fn in_words(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = match secs {
        0..120 => (secs, "second"),
        120..7200 => (secs / 60, "minute"),
        7200..172_800 => (secs / 3600, "hour"),
        _ => (secs / 86_400, "day"),
    };
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests;

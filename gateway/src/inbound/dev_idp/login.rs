//! The development login form: a page where the person at this machine names the user they
//! act as (any name; no password), and the check of what the page posts back.
//!
//! It is written to be reused (the consent page logs people in the same way): a caller
//! keeps its pending requests in [`Forms`], shows [`render`] with the token [`Forms::issue`]
//! gave, and gets its request back from [`validate`]. The form token is the only link between
//! the page and the request: unguessable, single-use and short-lived, so a form cannot be
//! replayed and another site cannot forge one. Only loopback peers that are not proxies see
//! the page ([`refuse_unless_direct_loopback`]): the dev IdP trusts whoever sits at the
//! machine, nobody else.

use std::net::SocketAddr;
use std::time::Duration;

use askama::Template;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, StatusCode, header};

use super::store::{Expiring, Unavailable, digest, random_token};
use crate::consent::pages;

/// The name suggested in the form.
pub const SUGGESTED_USER: &str = "alice";
/// Longest user name accepted (it becomes the token's `sub`).
pub const MAX_USER_CHARS: usize = 64;

/// Requests waiting for their login form to come back, by the digest of their form token.
#[derive(Debug)]
pub struct Forms<T> {
    pending: Expiring<[u8; 32], T>,
}

impl<T: Clone> Forms<T> {
    pub fn new(capacity: usize, ttl: Duration) -> Self {
        Self {
            pending: Expiring::new(capacity, ttl),
        }
    }

    /// A new form token bound to `request`.
    pub fn issue(&self, request: T) -> Result<String, Unavailable> {
        let token = random_token()?;
        self.pending.insert(digest(&token), request);
        Ok(token)
    }

    /// How long a form stays valid.
    pub fn lifetime(&self) -> Duration {
        self.pending.ttl()
    }
}

/// What the page shows. Every string is escaped when rendered.
#[derive(Debug)]
pub struct Page<'a> {
    /// One sentence: who asks for what, e.g. "mcp-remote wants to call tools at … as you".
    pub request: &'a str,
    /// Facts the person should check before signing in (label, value).
    pub details: &'a [(&'a str, String)],
    /// Where the form posts to (a path on this gateway).
    pub action: &'a str,
    pub form_token: &'a str,
}

#[derive(Template)]
#[template(path = "dev_idp/login.html")]
struct LoginPage<'a> {
    page: &'a Page<'a>,
    suggested_user: &'static str,
    max_user_chars: usize,
}

/// The login page: development-only warning, the request, a user name field, sign in or
/// cancel. On the gateway's base layout: framing, caching and referrers are off (the page
/// carries a live form token) and nothing but the layout's stylesheet loads.
pub fn render(page: &Page) -> Response {
    pages::respond(
        StatusCode::OK,
        &LoginPage {
            page,
            suggested_user: SUGGESTED_USER,
            max_user_chars: MAX_USER_CHARS,
        },
    )
}

#[derive(Template)]
#[template(path = "message.html")]
struct MessagePage<'a> {
    title: &'a str,
    message: &'a str,
}

/// A page that explains why nothing more can happen here, and what to do.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    pages::respond(status, &MessagePage { title, message })
}

/// Framing, caching, sniffing and referrers off, scripts blocked, inline style allowed: for a
/// page that carries its own `<style>` rather than the base layout (the demo provider's
/// sign-in page). Pages on the layout send [`pages::security_headers`], which admits only the
/// layout's stylesheet.
pub fn page_headers() -> [(header::HeaderName, &'static str); 5] {
    [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        ),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ]
}

/// What came back from the form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Sign in as this user.
    Allow { user: String },
    /// The person pressed Cancel.
    Deny,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// No pending form has this token: used already, expired, or never issued.
    UnknownForm,
    /// The form is fine but the user name is not; the form stays valid (go back, fix it).
    BadUser(String),
}

impl LoginError {
    /// The page that explains it.
    pub fn page(&self, lifetime: Duration) -> Response {
        match self {
            Self::UnknownForm => error_page(
                StatusCode::BAD_REQUEST,
                "This login form is no longer valid",
                &format!(
                    "Each login form works once and for {} minutes. It was already submitted, it \
                     expired, or the gateway restarted since it was shown. Start the login again \
                     from your MCP client.",
                    lifetime.as_secs() / 60
                ),
            ),
            Self::BadUser(why) => error_page(StatusCode::BAD_REQUEST, "Check the user name", why),
        }
    }
}

/// Check a submitted form (`application/x-www-form-urlencoded`: `form_token`, `user`,
/// `decision`) and, if it is good, consume its token and return the request it was bound to.
pub fn validate<T: Clone>(forms: &Forms<T>, body: &[u8]) -> Result<(Decision, T), LoginError> {
    let mut token = None;
    let mut user = None;
    let mut decision = None;
    for (k, v) in url::form_urlencoded::parse(body) {
        match k.as_ref() {
            "form_token" => token = Some(v.into_owned()),
            "user" => user = Some(v.trim().to_string()),
            "decision" => decision = Some(v.into_owned()),
            _ => {}
        }
    }
    let key = digest(&token.ok_or(LoginError::UnknownForm)?);
    forms.pending.get(&key).ok_or(LoginError::UnknownForm)?;
    let decision = if decision.as_deref() == Some("deny") {
        Decision::Deny
    } else {
        Decision::Allow {
            user: check_user(user.as_deref().unwrap_or_default())?,
        }
    };
    // Taken only now, so a typo does not burn the form; whoever takes it first wins.
    let request = forms.pending.take(&key).ok_or(LoginError::UnknownForm)?;
    Ok((decision, request))
}

fn check_user(user: &str) -> Result<String, LoginError> {
    if user.is_empty() {
        return Err(LoginError::BadUser(
            "Type a user name (any name works, e.g. alice): go back and fill in the field.".into(),
        ));
    }
    if user.chars().count() > MAX_USER_CHARS || user.chars().any(char::is_control) {
        return Err(LoginError::BadUser(format!(
            "A user name has at most {MAX_USER_CHARS} characters and no control characters: go \
             back and shorten it."
        )));
    }
    Ok(user.to_string())
}

/// Only a browser on this machine may log in here: anything else gets this 403 and why. A
/// request whose peer is unknown is refused too (fail closed), and so is one that came
/// through a proxy (a proxy on this machine is a loopback peer, but it may be serving
/// anyone). `None`: go ahead.
pub fn refuse_unless_direct_loopback(
    peer: Option<&ConnectInfo<SocketAddr>>,
    headers: &HeaderMap,
) -> Option<Response> {
    let why = match peer {
        Some(ConnectInfo(addr)) if addr.ip().is_loopback() => match proxy_header(headers) {
            None => return None,
            Some(header) => format!(
                "The development login page refused this request because it came through a \
                 proxy (it carries a `{header}` header). The development identity provider is \
                 for direct use on the gateway's own machine only: it asks for no password, so \
                 anyone who reaches the proxy could sign in as any user. Open the login at the \
                 gateway's own loopback address, or configure a real identity provider in \
                 [[inbound.issuers]] (docs/inbound.md).\n"
            ),
        },
        _ => "The development login page answers only browsers on the gateway's own machine \
              (loopback addresses): it asks for no password, so anyone else who reached it \
              could sign in as any user. Open the login from a browser on that machine, or \
              configure a real identity provider in [[inbound.issuers]] (docs/inbound.md).\n"
            .to_string(),
    };
    Some((StatusCode::FORBIDDEN, pages::security_headers(), why).into_response())
}

/// The header that shows a request was relayed by a proxy, if any: `Forwarded` (RFC 7239)
/// or the common `X-Forwarded-For` and `X-Real-IP`. Proxies that add none cannot be told
/// from a direct client; that is why `serve` also refuses a non-loopback listen address.
pub fn proxy_header(headers: &HeaderMap) -> Option<&'static str> {
    ["Forwarded", "X-Forwarded-For", "X-Real-IP"]
        .into_iter()
        .find(|h| headers.contains_key(*h))
}

/// Whether the client asked for JSON (programs probing the endpoint) rather than a page.
pub fn wants_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json") && !a.contains("text/html"))
}

/// HTML-escape text for element content and quoted attribute values, as the templates do.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // Writing into a String cannot fail.
    let _ = askama::filters::Escaper::write_escaped_str(&pages::NamedEntities, &mut out, text);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn forms() -> Forms<u32> {
        Forms::new(10, Duration::from_secs(60))
    }

    #[test]
    fn a_form_token_works_once() {
        let f = forms();
        let t = f.issue(7).unwrap();
        let body = format!("form_token={t}&user=bob&decision=allow");
        let (d, req) = validate(&f, body.as_bytes()).unwrap();
        assert_eq!(d, Decision::Allow { user: "bob".into() });
        assert_eq!(req, 7);
        assert_eq!(
            validate(&f, body.as_bytes()),
            Err(LoginError::UnknownForm),
            "a replayed form is refused"
        );
    }

    #[test]
    fn forged_or_missing_tokens_are_refused() {
        let f = forms();
        f.issue(1).unwrap();
        assert_eq!(
            validate(&f, b"form_token=guess&user=bob"),
            Err(LoginError::UnknownForm)
        );
        assert_eq!(validate(&f, b"user=bob"), Err(LoginError::UnknownForm));
    }

    #[test]
    fn a_bad_user_name_keeps_the_form_usable() {
        let f = forms();
        let t = f.issue(1).unwrap();
        let blank = format!("form_token={t}&user=+++");
        assert!(matches!(
            validate(&f, blank.as_bytes()),
            Err(LoginError::BadUser(_))
        ));
        let cancel = format!("form_token={t}&decision=deny");
        assert_eq!(validate(&f, cancel.as_bytes()).unwrap().0, Decision::Deny);
    }

    #[test]
    fn non_loopback_peers_and_unknown_peers_are_refused() {
        let remote = ConnectInfo(SocketAddr::from(([192, 0, 2, 7], 5000)));
        let local = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000)));
        let direct = HeaderMap::new();
        assert_eq!(
            refuse_unless_direct_loopback(Some(&remote), &direct)
                .unwrap()
                .status(),
            StatusCode::FORBIDDEN
        );
        assert!(refuse_unless_direct_loopback(None, &direct).is_some());
        assert!(refuse_unless_direct_loopback(Some(&local), &direct).is_none());
    }

    #[test]
    fn a_loopback_peer_relaying_for_someone_else_is_refused_and_told_why() {
        let local = ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 5000)));
        for (name, value, shown) in [
            ("x-forwarded-for", "203.0.113.9", "`X-Forwarded-For` header"),
            (
                "forwarded",
                "for=203.0.113.9;proto=https",
                "`Forwarded` header",
            ),
            ("x-real-ip", "203.0.113.9", "`X-Real-IP` header"),
        ] {
            let mut headers = HeaderMap::new();
            headers.insert(name, value.parse().unwrap());
            let resp = refuse_unless_direct_loopback(Some(&local), &headers)
                .unwrap_or_else(|| panic!("{name} let the request through"));
            assert_eq!(resp.status(), StatusCode::FORBIDDEN);
            let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 16))
                .unwrap();
            let text = String::from_utf8(body.to_vec()).unwrap();
            assert!(
                text.contains("came through a proxy")
                    && text.contains(shown)
                    && text.contains("direct use on the gateway's own machine only"),
                "{text}"
            );
        }
    }

    #[test]
    fn the_login_page_is_on_the_shared_layout_with_its_fields_and_warning() {
        let details = [("Client", "mcp-remote".to_string())];
        let resp = render(&Page {
            request: "mcp-remote wants to call tools as you.",
            details: &details,
            action: "http://127.0.0.1:8787/dev-idp/authorize",
            form_token: "tok",
        });
        let (_, layout) = pages::security_headers()[0];
        assert_eq!(resp.headers()["content-security-policy"], layout);
        let body =
            futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 20)).unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        for part in [
            "<strong>Development only.</strong>",
            "<form method=\"post\" action=\"http://127.0.0.1:8787/dev-idp/authorize\">",
            "name=\"form_token\" value=\"tok\"",
            "<label for=\"user\">Sign in as user</label>",
            "id=\"user\" name=\"user\" value=\"alice\" required maxlength=\"64\"",
            "name=\"decision\" value=\"allow\">Sign in</button>",
            "name=\"decision\" value=\"deny\" formnovalidate>Cancel</button>",
            "<dt>Client</dt><dd>mcp-remote</dd>",
        ] {
            assert!(html.contains(part), "{part} missing in {html}");
        }
        let error = error_page(StatusCode::BAD_REQUEST, "Check the user name", "Type one.");
        assert_eq!(error.status(), StatusCode::BAD_REQUEST);
        assert_eq!(error.headers()["content-security-policy"], layout);
    }

    #[test]
    fn everything_shown_is_escaped() {
        let details = [("client", "<script>x</script>".to_string())];
        let page = Page {
            request: "\"><img src=x onerror=alert(1)>",
            details: &details,
            action: "/dev-idp/authorize",
            form_token: "t\"x",
        };
        let resp = render(&page);
        assert_eq!(resp.headers()["x-frame-options"], "DENY");
        let body =
            futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 20)).unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(!html.contains("<script>x"), "{html}");
        assert!(!html.contains("<img"), "{html}");
        assert!(html.contains("&lt;script&gt;") && html.contains("t&quot;x"));
    }
}

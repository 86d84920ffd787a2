//! What the consent pages know about a browser: its cookie (a random id, HttpOnly,
//! SameSite=Lax, Secure on https, scoped to `/consent`), who signed in with it, and the
//! single-use form tokens its pages carry (CSRF). The vault and these maps keep only SHA-256
//! digests of the cookie and of form tokens.
//!
//! Sign-ins and form tokens live in this process's memory (bounded, expiring): a restart
//! signs everyone out of the consent pages, which costs a sign-in, never a grant. Several
//! replicas will need them in the shared store (DESIGN §9).

use std::time::Duration;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use http::{HeaderMap, HeaderValue, header};

use crate::inbound::dev_idp::store::{Expiring, digest, random_token};

pub const COOKIE: &str = "portcullis_browser";
/// How long a sign-in on the consent pages lasts.
pub const SIGN_IN_TTL: Duration = Duration::from_secs(30 * 60);
/// How long a page's form token stays valid.
pub const FORM_TTL: Duration = Duration::from_secs(15 * 60);
const CAPACITY: usize = 10_000;

/// A browser, by its cookie.
#[derive(Debug, Clone)]
pub struct Browser {
    id: String,
    /// The cookie was made for this response and must be set.
    pub fresh: bool,
}

impl Browser {
    /// The browser's cookie from `headers`, if it sent one.
    pub fn of(headers: &HeaderMap) -> Option<Self> {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find(|(name, value)| *name == COOKIE && !value.is_empty() && value.len() <= 64)
            .map(|(_, value)| Self {
                id: value.to_string(),
                fresh: false,
            })
    }

    /// The browser's cookie, or a new one.
    pub fn of_or_new(headers: &HeaderMap) -> Option<Self> {
        Self::of(headers).or_else(|| {
            random_token().ok().map(|id| Self {
                id: id.to_string(),
                fresh: true,
            })
        })
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn digest(&self) -> [u8; 32] {
        digest(&self.id)
    }

    /// The `Set-Cookie` value for a fresh cookie.
    pub fn set_cookie(&self, secure: bool) -> Option<HeaderValue> {
        let secure = if secure { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{COOKIE}={}; Path=/consent; HttpOnly; SameSite=Lax{secure}",
            self.id
        ))
        .ok()
    }
}

/// Whether two digests are equal, in constant time.
pub fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    verify_slices_are_equal(a, b).is_ok()
}

/// Who signed in with a browser on the consent pages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignIn {
    pub issuer: String,
    pub user: String,
}

/// What a page's form may do when posted back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// Approve or deny the pending consent with this id.
    Decide(String),
    /// Revoke one of the signed-in user's grants.
    Revoke,
}

#[derive(Debug, Clone)]
struct Form {
    browser: [u8; 32],
    purpose: Purpose,
}

#[derive(Debug)]
pub struct Browsers {
    sign_ins: Expiring<[u8; 32], SignIn>,
    forms: Expiring<[u8; 32], Form>,
}

impl Default for Browsers {
    fn default() -> Self {
        Self {
            sign_ins: Expiring::new(CAPACITY, SIGN_IN_TTL),
            forms: Expiring::new(CAPACITY, FORM_TTL),
        }
    }
}

impl Browsers {
    pub fn sign_in(&self, browser: &Browser, who: SignIn) {
        self.sign_ins.insert(browser.digest(), who);
    }

    /// Who is signed in with `browser`, at `issuer`.
    pub fn signed_in(&self, browser: &Browser, issuer: &str) -> Option<SignIn> {
        self.sign_ins
            .get(&browser.digest())
            .filter(|s| s.issuer == issuer)
    }

    /// Who is signed in with `browser`, at any issuer.
    pub fn anyone(&self, browser: &Browser) -> Option<SignIn> {
        self.sign_ins.get(&browser.digest())
    }

    /// A single-use form token for a page shown to `browser`.
    pub fn form_token(&self, browser: &Browser, purpose: Purpose) -> Option<String> {
        let token = random_token().ok()?;
        self.forms.insert(
            digest(&token),
            Form {
                browser: browser.digest(),
                purpose,
            },
        );
        Some(token)
    }

    /// Use a posted form token: true when it was issued to this browser for `purpose`
    /// (and has not been used or expired). Used either way.
    pub fn use_form_token(&self, token: &str, browser: &Browser, purpose: &Purpose) -> bool {
        self.forms
            .take(&digest(token))
            .is_some_and(|f| same(&f.browser, &browser.digest()) && &f.purpose == purpose)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        h
    }

    #[test]
    fn the_cookie_is_found_among_others_and_a_new_one_is_marked_fresh() {
        let b = Browser::of(&headers("a=1; portcullis_browser=xyz; b=2")).unwrap();
        assert_eq!(b.id(), "xyz");
        assert!(!b.fresh);
        assert!(Browser::of(&headers("portcullis_browser=")).is_none());
        let new = Browser::of_or_new(&HeaderMap::new()).unwrap();
        assert!(new.fresh);
        let set = new.set_cookie(true).unwrap();
        let set = set.to_str().unwrap();
        for attr in ["HttpOnly", "SameSite=Lax", "Secure", "Path=/consent"] {
            assert!(set.contains(attr), "{set}");
        }
        assert!(
            !new.set_cookie(false)
                .unwrap()
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }

    #[test]
    fn a_form_token_works_once_for_its_browser_and_purpose_only() {
        let browsers = Browsers::default();
        let mine = Browser::of(&headers("portcullis_browser=mine")).unwrap();
        let other = Browser::of(&headers("portcullis_browser=other")).unwrap();
        let decide = Purpose::Decide("c1".into());
        let t = browsers.form_token(&mine, decide.clone()).unwrap();
        assert!(
            !browsers.use_form_token(&t, &other, &decide),
            "another browser"
        );
        let t = browsers.form_token(&mine, decide.clone()).unwrap();
        assert!(!browsers.use_form_token(&t, &mine, &Purpose::Decide("c2".into())));
        let t = browsers.form_token(&mine, decide.clone()).unwrap();
        assert!(browsers.use_form_token(&t, &mine, &decide));
        assert!(!browsers.use_form_token(&t, &mine, &decide), "used once");
        assert!(!browsers.use_form_token("forged", &mine, &decide));
    }

    #[test]
    fn a_sign_in_counts_for_its_issuer_only() {
        let browsers = Browsers::default();
        let b = Browser::of(&headers("portcullis_browser=b")).unwrap();
        browsers.sign_in(
            &b,
            SignIn {
                issuer: "https://a".into(),
                user: "alice".into(),
            },
        );
        assert_eq!(browsers.signed_in(&b, "https://a").unwrap().user, "alice");
        assert!(browsers.signed_in(&b, "https://b").is_none());
    }
}

//! A scripted browser for the consent pages, over plain HTTP: it keeps cookies, follows
//! redirects one by one (recording them), and fills the forms the gateway (development
//! login, consent page) and the demo provider (Acme Tasks sign-in) show. Low-level methods
//! let attack tests replay, drop cookies or forge forms.

use std::collections::BTreeMap;

use anyhow::{Context, Result, bail};
use reqwest::StatusCode;
use url::Url;

/// What a page showed: status, final URL, body.
#[derive(Debug, Clone)]
pub struct Page {
    pub status: StatusCode,
    pub url: Url,
    pub body: String,
}

impl Page {
    /// The `data-outcome` of a gateway result page (`done`, `denied`, `refused`), if any.
    pub fn outcome(&self) -> Option<String> {
        let at = self.body.find("data-outcome=\"")? + "data-outcome=\"".len();
        let rest = &self.body[at..];
        Some(rest[..rest.find('"')?].to_string())
    }

    /// The value of the hidden input `name` of the page's form.
    pub fn input(&self, name: &str) -> Option<String> {
        let needle = format!("name=\"{name}\" value=\"");
        let at = self.body.find(&needle)? + needle.len();
        let rest = &self.body[at..];
        Some(unescape(&rest[..rest.find('"')?]))
    }

    /// The form's `action`, resolved against the page's URL.
    pub fn action(&self) -> Option<Url> {
        let at = self.body.find("action=\"")? + "action=\"".len();
        let rest = &self.body[at..];
        self.url.join(&unescape(&rest[..rest.find('"')?])).ok()
    }

    /// The page's text, tags removed, for assertions on what a person reads.
    pub fn text(&self) -> String {
        // Without the stylesheet: it is not what a person reads.
        let body = match (self.body.find("<style"), self.body.find("</style>")) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &self.body[..a], &self.body[b..]),
            _ => self.body.clone(),
        };
        let mut out = String::new();
        let mut in_tag = false;
        for c in body.chars() {
            match c {
                '<' => in_tag = true,
                '>' => {
                    in_tag = false;
                    out.push(' ');
                }
                c if !in_tag => out.push(c),
                _ => {}
            }
        }
        unescape(&out.split_whitespace().collect::<Vec<_>>().join(" "))
    }
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#x27;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// One browser: its cookies (by name; tests run on one loopback host) and its history.
#[derive(Debug)]
pub struct Browser {
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
    /// Every URL requested, in order.
    pub hops: Vec<String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Self {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("an HTTP client"),
            cookies: BTreeMap::new(),
            hops: Vec::new(),
        }
    }

    fn cookie_header(&self) -> Option<String> {
        (!self.cookies.is_empty()).then(|| {
            self.cookies
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("; ")
        })
    }

    fn remember(&mut self, response: &reqwest::Response) {
        for v in response.headers().get_all(reqwest::header::SET_COOKIE) {
            if let Some((pair, _)) = v.to_str().unwrap_or_default().split_once(';')
                && let Some((k, v)) = pair.split_once('=')
            {
                self.cookies
                    .insert(k.trim().to_string(), v.trim().to_string());
            }
        }
    }

    /// One request, no redirect followed.
    async fn send(
        &mut self,
        req: reqwest::RequestBuilder,
        url: &Url,
    ) -> Result<(StatusCode, Option<Url>, String)> {
        self.hops.push(url.to_string());
        let req = match self.cookie_header() {
            Some(c) => req.header(reqwest::header::COOKIE, c),
            None => req,
        };
        let response = req
            .send()
            .await
            .with_context(|| format!("requesting {url}"))?;
        self.remember(&response);
        let status = response.status();
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| url.join(l).ok());
        Ok((status, location, response.text().await.unwrap_or_default()))
    }

    /// GET `url`, following redirects.
    pub async fn get(&mut self, url: &str) -> Result<Page> {
        let mut url = Url::parse(url)?;
        for _ in 0..10 {
            let (status, location, body) = self.send(self.http.get(url.clone()), &url).await?;
            match location {
                Some(next) if status.is_redirection() => url = next,
                _ => return Ok(Page { status, url, body }),
            }
        }
        bail!("too many redirects from {url}")
    }

    /// GET `url` without following a redirect: the status and where it points.
    pub async fn get_once(&mut self, url: &str) -> Result<(StatusCode, Option<Url>, String)> {
        let url = Url::parse(url)?;
        self.send(self.http.get(url.clone()), &url).await
    }

    /// POST a form to `url`, following redirects with GETs.
    pub async fn post(&mut self, url: &Url, fields: &[(&str, &str)]) -> Result<Page> {
        let (status, location, body) = self.post_once(url, fields).await?;
        match location {
            Some(next) if status.is_redirection() => self.get(next.as_str()).await,
            _ => Ok(Page {
                status,
                url: url.clone(),
                body,
            }),
        }
    }

    /// POST a form without following a redirect.
    pub async fn post_once(
        &mut self,
        url: &Url,
        fields: &[(&str, &str)],
    ) -> Result<(StatusCode, Option<Url>, String)> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(fields)
            .finish();
        let req = self
            .http
            .post(url.clone())
            .header(
                reqwest::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .body(body);
        self.send(req, url).await
    }

    /// Submit the page's form as a person would: sign in as `user` on a sign-in form, or
    /// press `decision` (`approve`/`deny`) on the consent page.
    pub async fn submit(&mut self, page: &Page, user: &str, decision: &str) -> Result<Page> {
        let action = page.action().context("the page has no form")?;
        let token = page
            .input("form_token")
            .context("the form has no form_token")?;
        let consent_page = page.body.contains("value=\"approve\"");
        let fields: Vec<(&str, &str)> = if consent_page {
            vec![("form_token", &token), ("decision", decision)]
        } else {
            let press = if decision == "approve" {
                "allow"
            } else {
                "deny"
            };
            vec![("form_token", &token), ("user", user), ("decision", press)]
        };
        self.post(&action, &fields).await
    }

    /// Open a consent link and walk every page as `user` with `decision` until a gateway
    /// result page (`data-outcome`).
    pub async fn consent(&mut self, link: &str, user: &str, decision: &str) -> Result<Page> {
        let mut page = self.get(link).await?;
        for _ in 0..8 {
            if let Some(o) = page.outcome()
                && ["done", "denied", "refused"].contains(&o.as_str())
            {
                return Ok(page);
            }
            if page.input("form_token").is_none() {
                bail!(
                    "stuck at {} (HTTP {}): {}",
                    page.url,
                    page.status,
                    page.text()
                );
            }
            page = self.submit(&page, user, decision).await?;
        }
        bail!("no result page after 8 forms; last at {}", page.url)
    }
}

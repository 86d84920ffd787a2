//! The attacks on user consent (3LO) that issue 9 lists, each played against the quickstart's
//! own stack: the real gateway with its development IdP, the demo provider "Acme Tasks"
//! beside it (`[demo_provider]`), and the quickstart's target file. A scripted browser
//! (`portcullis_e2e::web`) plays the user and the attacker, walking the pages one request at
//! a time where an attack needs a URL or a form token in hand.
//!
//! Every refusal is checked three ways: the HTTP status, the page (`data-outcome="refused"`
//! and its title), and an audit event with decision `deny` in the gateway's log. Where an
//! attack could have consumed or stored something, the test then shows that the legitimate
//! user's flow still works and nothing else was stored. The last two tests put a recording
//! reverse proxy in front of the provider to see every token the gateway sends upstream.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use portcullis_e2e::web::{Browser, Page};
use portcullis_e2e::{
    Gateway, McpClient, MockServer, Serve, binary, call_tool, connect, eventually, write_config,
};
use rmcp::model::CallToolResult;
use serde_json::{Value, json};
use url::Url;

const GATEWAY: &str = "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n";
const AGENT: &str = "agent-a";

/// The quickstart's target file, for a demo provider on `port`.
fn tasks_target(port: u16) -> String {
    let file =
        std::fs::read_to_string(portcullis_e2e::repo_root().join("targets/tasks.toml")).unwrap();
    file.replace("127.0.0.1:8788", &format!("127.0.0.1:{port}"))
}

/// The gateway (logging to a file the test reads) and the demo provider beside it.
struct Stack {
    gateway: Gateway,
    log: PathBuf,
    /// `http://127.0.0.1:PORT` of the demo provider.
    provider: String,
}

impl Stack {
    /// The quickstart's stack as it ships.
    fn start() -> Self {
        // The demo provider's port must be known before the target file is written.
        let port = portcullis_e2e::port_for_peer_script();
        Self::start_with(port, tasks_target(port), "warn")
    }

    /// The stack with the demo provider on `port`, the target file `target` and
    /// `PORTCULLIS_LOG=log_filter` (the audit stream is written whatever the filter).
    fn start_with(port: u16, target: String, log_filter: &str) -> Self {
        let toml = format!("{GATEWAY}[demo_provider]\nlisten = \"127.0.0.1:{port}\"\n");
        let dir = write_config(&toml, &[("tasks", target)]).unwrap();
        let log = dir.path().join("gateway.stderr");
        let gateway = Gateway::serve(
            dir,
            &Serve {
                env: &[("PORTCULLIS_LOG", log_filter)],
                log_file: Some(log.clone()),
                ..Serve::default()
            },
        )
        .unwrap();
        Self {
            gateway,
            log,
            provider: format!("http://127.0.0.1:{port}"),
        }
    }

    fn base(&self) -> String {
        self.gateway.base()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every audit event written so far.
    fn audit(&self) -> Vec<Value> {
        self.log_text()
            .lines()
            .filter(|l| l.contains("\"stream\":\"portcullis::audit\""))
            .filter_map(|l| serde_json::from_str(&l[l.find('{')?..]).ok())
            .collect()
    }

    /// The audit events of `method` denied with HTTP `status`, once there are at least `n`.
    fn denials(&self, method: &str, status: u16, n: usize) -> Vec<Value> {
        let found = eventually(Duration::from_secs(10), || {
            let found: Vec<Value> = self
                .audit()
                .into_iter()
                .filter(|e| {
                    e["method"] == method
                        && e["decision"] == "deny"
                        && e["outcome"]["status"] == "error"
                        && e["outcome"]["code"] == status
                })
                .collect();
            (found.len() >= n).then_some(found)
        });
        found.unwrap_or_else(|_| {
            panic!(
                "expected {n} audit event(s) `{method}` denied with {status}; the audit has:\n{:#?}",
                self.audit()
            )
        })
    }

    /// A caller's MCP session (a client without URL elicitation: the link comes as text).
    async fn client(&self, user: &str) -> McpClient {
        let token = self.gateway.dev_token(&["--user", user, "--agent", AGENT]);
        connect(&self.gateway.url, Some(&token)).await
    }

    /// `portcullis vault list --user USER --json` against this gateway's configuration.
    fn vault_list(&self, user: &str) -> Vec<Value> {
        let out = Command::new(binary("portcullis", "portcullis"))
            .args(["vault", "list", "--config"])
            .arg(self.gateway.dir.path().join("gateway.toml"))
            .args(["--user", user, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "vault list failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<Vec<Value>>(&out.stdout).unwrap()
    }

    fn vault_file(&self) -> PathBuf {
        self.gateway.dir.path().join(".data/vault.sqlite3")
    }
}

async fn list_tasks(client: &McpClient) -> CallToolResult {
    call_tool(client, "tasks__list_tasks", json!({}))
        .await
        .unwrap()
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text())
        .map(|t| t.text.as_str())
        .collect()
}

/// The consent link a call without a usable grant answers with (as text).
fn link_in(r: &CallToolResult) -> String {
    assert_eq!(r.is_error, Some(true), "expected a consent link: {r:?}");
    let text = text(r);
    text.split_whitespace()
        .find(|w| w.contains("/consent/"))
        .unwrap_or_else(|| panic!("no consent link in: {text}"))
        .to_string()
}

/// A call that reaches the provider as `user`.
async fn assert_call_succeeds(client: &McpClient, user: &str) {
    let r = list_tasks(client).await;
    assert_ne!(r.is_error, Some(true), "{r:?}");
    assert!(text(&r).contains(&format!("{user} has no tasks")), "{r:?}");
}

/// Open `link`, sign in as `user` at the development login if asked, and return the consent
/// page (or whatever the gateway showed instead).
async fn open_as(browser: &mut Browser, link: &str, user: &str) -> Page {
    let page = browser.get(link).await.unwrap();
    if is_consent_page(&page) || page.outcome().as_deref() == Some("refused") {
        return page;
    }
    assert!(
        page.action()
            .is_some_and(|a| a.path() == "/consent/login/dev"),
        "expected the development login: {}",
        page.text()
    );
    browser.submit(&page, user, "approve").await.unwrap()
}

fn is_consent_page(page: &Page) -> bool {
    page.body.contains("value=\"approve\"")
}

/// The consent page for `user` on `link` (signed in first).
async fn consent_page(browser: &mut Browser, link: &str, user: &str) -> Page {
    let page = open_as(browser, link, user).await;
    assert!(
        is_consent_page(&page),
        "expected the consent page (HTTP {}): {}",
        page.status,
        page.text()
    );
    page
}

/// Approve on `page` and at the provider (as `user`); the provider's redirect back to the
/// gateway's callback, not followed.
async fn approve_until_callback(
    stack: &Stack,
    browser: &mut Browser,
    page: &Page,
    user: &str,
) -> Url {
    let token = page.input("form_token").unwrap();
    let (status, to, body) = browser
        .post_once(
            &page.action().unwrap(),
            &[("form_token", &token), ("decision", "approve")],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let to = to.unwrap();
    assert!(to.as_str().starts_with(&stack.provider), "{to}");
    let sign_in = browser.get(to.as_str()).await.unwrap();
    let (status, back, body) = browser
        .post_once(
            &sign_in.action().unwrap(),
            &[
                ("form_token", &sign_in.input("form_token").unwrap()),
                ("user", user),
                ("decision", "allow"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let back = back.unwrap();
    assert!(
        back.as_str()
            .starts_with(&stack.url("/consent/callback?code=")),
        "{back}"
    );
    back
}

/// `user` answers `link` all the way: signed in, approved, back at the gateway.
async fn complete(stack: &Stack, browser: &mut Browser, link: &str, user: &str) {
    let page = consent_page(browser, link, user).await;
    let back = approve_until_callback(stack, browser, &page, user).await;
    assert_done(&browser.get(back.as_str()).await.unwrap());
}

fn assert_done(page: &Page) {
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert_eq!(page.outcome().as_deref(), Some("done"), "{}", page.text());
}

/// A refusal page: its status, `data-outcome="refused"` and a phrase of what it says.
fn assert_refused(status: StatusCode, body: &str, want: StatusCode, phrase: &str) {
    let page = Page {
        status,
        url: Url::parse("http://unused.invalid/").unwrap(),
        body: body.to_string(),
    };
    assert_eq!(status, want, "{}", page.text());
    assert_eq!(
        page.outcome().as_deref(),
        Some("refused"),
        "{}",
        page.text()
    );
    assert!(
        page.text().contains(phrase),
        "`{phrase}` in: {}",
        page.text()
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Another user's link.

#[tokio::test(flavor = "multi_thread")]
async fn another_user_signing_in_on_a_consent_link_is_refused_and_its_owner_can_still_use_it() {
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);

    let mut bobs = Browser::new();
    let page = open_as(&mut bobs, &link, "bob").await;
    assert_refused(
        page.status,
        &page.body,
        StatusCode::FORBIDDEN,
        "This link belongs to another user",
    );
    assert!(
        !page.body.contains("alice"),
        "the page must not say whose link it is: {}",
        page.body
    );
    let denied = stack.denials("consent/open", 403, 1);
    assert_eq!(denied[0]["caller"], "bob", "{denied:?}");
    assert_eq!(denied[0]["target"], "tasks", "{denied:?}");
    // Bob's refused visit took nothing: alice completes her consent, and her call works.
    assert!(stack.vault_list("bob").is_empty());
    assert!(stack.vault_list("alice").is_empty());

    complete(&stack, &mut Browser::new(), &link, "alice").await;
    assert_call_succeeds(&alice, "alice").await;
    alice.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 2. and 3. The provider's answer: replayed, or brought back by another browser.

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_callback_is_refused_and_the_grant_it_first_delivered_still_works() {
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    let mut browser = Browser::new();
    let page = consent_page(&mut browser, &link, "alice").await;
    let back = approve_until_callback(&stack, &mut browser, &page, "alice").await;
    assert_done(&browser.get(back.as_str()).await.unwrap());

    let (status, to, body) = browser.get_once(back.as_str()).await.unwrap();
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "already used");
    assert!(to.is_none(), "{to:?}");
    stack.denials("consent/callback", 400, 1);

    assert_eq!(stack.vault_list("alice").len(), 1);
    assert_call_succeeds(&alice, "alice").await;
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_callback_from_a_browser_that_did_not_approve_is_refused_and_takes_nothing() {
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    let mut browser = Browser::new();
    let page = consent_page(&mut browser, &link, "alice").await;
    let back = approve_until_callback(&stack, &mut browser, &page, "alice").await;

    // A browser without any cookie, and one with its own cookie of the consent pages.
    let mut other = Browser::new();
    let (status, _, body) = other.get_once(back.as_str()).await.unwrap();
    assert_refused(status, &body, StatusCode::FORBIDDEN, "did not approve");
    let mut bobs = Browser::new();
    let bob = stack.client("bob").await;
    let bobs_link = link_in(&list_tasks(&bob).await);
    consent_page(&mut bobs, &bobs_link, "bob").await;
    assert!(bobs.cookies.contains_key("portcullis_browser"));
    let (status, _, body) = bobs.get_once(back.as_str()).await.unwrap();
    assert_refused(status, &body, StatusCode::FORBIDDEN, "did not approve");
    stack.denials("consent/callback", 403, 2);
    assert!(stack.vault_list("alice").is_empty());
    assert!(stack.vault_list("bob").is_empty());

    // The browser that approved still completes with the same answer.
    assert_done(&browser.get(back.as_str()).await.unwrap());
    assert_call_succeeds(&alice, "alice").await;
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 4. Approve without this page's form token.

/// A decision posted with `fields` is refused, and nobody is sent to the provider.
async fn assert_decision_refused(
    from: &mut Browser,
    action: &Url,
    fields: &[(&str, &str)],
    what: &str,
) {
    let (status, to, body) = from.post_once(action, fields).await.unwrap();
    assert_ne!(
        status,
        StatusCode::SEE_OTHER,
        "{what}: sent to the provider"
    );
    assert!(to.is_none(), "{what}: redirected to {to:?}");
    assert_refused(status, &body, StatusCode::FORBIDDEN, "no longer valid");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_approval_without_the_pages_own_form_token_is_refused_and_sends_nobody_to_the_provider()
{
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    let mut browser = Browser::new();
    let page = consent_page(&mut browser, &link, "alice").await;
    let action = page.action().unwrap();
    assert_eq!(
        action.as_str(),
        stack.url(Url::parse(&link).unwrap().path())
    );

    // The same user's page in another browser: its token is bound to that browser.
    let mut second = Browser::new();
    let elsewhere = consent_page(&mut second, &link, "alice")
        .await
        .input("form_token")
        .unwrap();
    let own = page.input("form_token").unwrap();
    let forged = "forged-token-0123456789";
    // Posted from the signed-in browser: no token, a forged one, the other browser's.
    for (what, fields) in [
        ("no form token", vec![("decision", "approve")]),
        (
            "a forged form token",
            vec![("form_token", forged), ("decision", "approve")],
        ),
        (
            "another browser's form token",
            vec![("form_token", &elsewhere), ("decision", "approve")],
        ),
    ] {
        assert_decision_refused(&mut browser, &action, &fields, what).await;
    }
    // The page's own token without the page's cookie: a post from another site.
    assert_decision_refused(
        &mut Browser::new(),
        &action,
        &[("form_token", &own), ("decision", "approve")],
        "a cross-site post",
    )
    .await;
    let denied = stack.denials("consent/decide", 403, 4);
    assert!(denied.iter().all(|e| e["target"] == "tasks"), "{denied:?}");
    assert!(stack.vault_list("alice").is_empty());

    // The page shown again gives a token that works.
    let page = consent_page(&mut browser, &link, "alice").await;
    let back = approve_until_callback(&stack, &mut browser, &page, "alice").await;
    assert_done(&browser.get(back.as_str()).await.unwrap());
    assert_call_succeeds(&alice, "alice").await;
    alice.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 5. Expired, used and unknown links (the vault's own unit tests expire one on a clock).

#[tokio::test(flavor = "multi_thread")]
async fn unknown_used_and_denied_consent_links_are_no_longer_valid() {
    let stack = Stack::start();
    let mut browser = Browser::new();
    let unknown = stack.url("/consent/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA");
    let page = browser.get(&unknown).await.unwrap();
    assert_refused(page.status, &page.body, StatusCode::GONE, "no longer valid");
    let denied = stack.denials("consent/open", 410, 1);
    assert_eq!(denied[0]["caller"], "unknown", "{denied:?}");

    let alice = stack.client("alice").await;
    let used = link_in(&list_tasks(&alice).await);
    complete(&stack, &mut browser, &used, "alice").await;
    let page = browser.get(&used).await.unwrap();
    assert_refused(page.status, &page.body, StatusCode::GONE, "no longer valid");

    let bob = stack.client("bob").await;
    let denied_link = link_in(&list_tasks(&bob).await);
    let mut bobs = Browser::new();
    let page = consent_page(&mut bobs, &denied_link, "bob").await;
    let page = bobs.submit(&page, "bob", "deny").await.unwrap();
    assert_eq!(page.outcome().as_deref(), Some("denied"), "{}", page.text());
    let page = bobs.get(&denied_link).await.unwrap();
    assert_refused(page.status, &page.body, StatusCode::GONE, "no longer valid");
    stack.denials("consent/open", 410, 3);
    assert!(stack.vault_list("bob").is_empty());
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_decision_posted_for_a_used_consent_link_is_no_longer_valid_and_audited() {
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    let mut browser = Browser::new();
    let page = consent_page(&mut browser, &link, "alice").await;
    // A second page of the same consent, kept open in another tab.
    let tab = consent_page(&mut browser, &link, "alice").await;
    let back = approve_until_callback(&stack, &mut browser, &page, "alice").await;
    assert_done(&browser.get(back.as_str()).await.unwrap());

    let (status, to, body) = browser
        .post_once(
            &tab.action().unwrap(),
            &[
                ("form_token", &tab.input("form_token").unwrap()),
                ("decision", "approve"),
            ],
        )
        .await
        .unwrap();
    assert!(to.is_none(), "{to:?}");
    assert_refused(status, &body, StatusCode::GONE, "no longer valid");
    stack.denials("consent/decide", 410, 1);
    alice.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 6. Redirect parameters pointing off-site.

/// `scheme://host:port` of `url`.
fn origin(url: &str) -> String {
    Url::parse(url).unwrap().origin().ascii_serialization()
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_parameters_on_a_consent_link_never_send_the_browser_off_site() {
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    let evil = "https%3A%2F%2Fevil.example%2F";
    let baited = format!("{link}?return={evil}&next={evil}&redirect_uri={evil}&then={evil}");

    let mut browser = Browser::new();
    let login = browser.get(&baited).await.unwrap();
    assert_eq!(login.status, StatusCode::OK, "{}", login.text());
    let action = login.action().unwrap();
    assert_eq!(origin(action.as_str()), origin(&stack.base()), "{action}");
    // The sign-in form, with the same parameters added to it.
    let (status, to, body) = browser
        .post_once(
            &action,
            &[
                ("form_token", &login.input("form_token").unwrap()),
                ("user", "alice"),
                ("decision", "allow"),
                ("return", "https://evil.example/"),
                ("next", "https://evil.example/"),
                ("redirect_uri", "https://evil.example/"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(status, StatusCode::SEE_OTHER, "{body}");
    let to = to.unwrap();
    assert_eq!(origin(to.as_str()), origin(&stack.base()), "{to}");
    assert_eq!(to.path(), Url::parse(&link).unwrap().path());
    let page = browser.get(to.as_str()).await.unwrap();
    assert!(is_consent_page(&page), "{}", page.text());
    assert_eq!(origin(page.url.as_str()), origin(&stack.base()));

    // Approving sends the browser to the provider with the gateway's own callback only.
    let back = approve_until_callback(&stack, &mut browser, &page, "alice").await;
    assert_done(&browser.get(back.as_str()).await.unwrap());
    for hop in &browser.hops {
        let o = origin(hop);
        assert!(
            o == origin(&stack.base()) || o == stack.provider,
            "a hop off the gateway and the provider: {hop}"
        );
    }
    let authorize = browser
        .hops
        .iter()
        .find(|h| h.starts_with(&format!("{}/authorize", stack.provider)))
        .unwrap();
    let redirect_uri = Url::parse(authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "redirect_uri")
        .map(|(_, v)| v.into_owned());
    assert_eq!(redirect_uri, Some(stack.url("/consent/callback")));
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_forged_sign_in_answer_with_an_off_site_redirect_is_an_error_page_on_the_gateway() {
    let stack = Stack::start();
    let mut browser = Browser::new();
    let forged = stack.url(
        "/consent/login/callback?state=x&code=y&redirect_uri=https%3A%2F%2Fevil.example%2F&return=https%3A%2F%2Fevil.example%2F",
    );
    let (status, to, body) = browser.get_once(&forged).await.unwrap();
    assert!(to.is_none(), "redirected to {to:?}");
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "Sign-in failed");
    assert!(!body.contains("evil.example"), "{body}");
    // The same for the provider's callback.
    let forged = stack.url(
        "/consent/callback?state=x&code=y&redirect_uri=https%3A%2F%2Fevil.example%2F&return=https%3A%2F%2Fevil.example%2F",
    );
    let (status, to, body) = browser.get_once(&forged).await.unwrap();
    assert!(to.is_none(), "redirected to {to:?}");
    assert_refused(status, &body, StatusCode::BAD_REQUEST, "already used");
    stack.denials("consent/callback", 400, 1);
    // Every refusal of the consent pages is audited, the sign-in answer's too.
    let events: Vec<Value> = stack
        .audit()
        .into_iter()
        .filter(|e| e["decision"] == "deny" && e["method"] != "consent/callback")
        .collect();
    assert_eq!(
        events.len(),
        1,
        "an audit event for the forged sign-in answer; the audit has:\n{:#?}",
        stack.audit()
    );
}

// ---------------------------------------------------------------------------------------------
// 7. The grants page.

/// Revoke `target`/`agent` with `fields` (the form token among them, or not).
async fn post_revoke(
    stack: &Stack,
    browser: &mut Browser,
    fields: &[(&str, &str)],
) -> (StatusCode, Option<Url>, String) {
    let mut all = vec![
        ("target", "tasks"),
        ("agent", AGENT),
        ("decision", "revoke"),
    ];
    all.extend_from_slice(fields);
    let url = Url::parse(&stack.url("/consent/grants")).unwrap();
    browser.post_once(&url, &all).await.unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grant_is_revoked_only_from_its_owners_grants_page_with_its_form_token() {
    let stack = Stack::start();
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    let mut browser = Browser::new();
    complete(&stack, &mut browser, &link, "alice").await;

    let grants = browser.get(&stack.url("/consent/grants")).await.unwrap();
    assert_eq!(grants.status, StatusCode::OK, "{}", grants.text());
    assert!(
        grants.text().contains("Agents acting for you"),
        "{}",
        grants.text()
    );
    assert!(
        grants.text().contains("tasks") && grants.text().contains(AGENT),
        "{}",
        grants.text()
    );

    let (status, _, body) = post_revoke(&stack, &mut browser, &[]).await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "no longer valid");
    let (status, _, body) =
        post_revoke(&stack, &mut browser, &[("form_token", "forged-token-0123")]).await;
    assert_refused(status, &body, StatusCode::FORBIDDEN, "no longer valid");
    let denied = stack.denials("consent/revoke", 403, 2);
    assert_eq!(denied[0]["target"], "tasks", "{denied:?}");
    assert_eq!(stack.vault_list("alice").len(), 1);
    assert_call_succeeds(&alice, "alice").await;

    // Bob, on his own grants page with its token, names alice's grant: the gateway revokes
    // the grant of the signed-in user only (his own, for the same agent and target).
    let bob = stack.client("bob").await;
    let bobs_link = link_in(&list_tasks(&bob).await);
    let mut bobs = Browser::new();
    complete(&stack, &mut bobs, &bobs_link, "bob").await;
    let bobs_page = bobs.get(&stack.url("/consent/grants")).await.unwrap();
    assert!(
        bobs_page.text().contains("Agents acting for you"),
        "{}",
        bobs_page.text()
    );
    let token = bobs_page.input("form_token").unwrap();
    let (status, _, _) = post_revoke(&stack, &mut bobs, &[("form_token", &token)]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(stack.vault_list("bob").is_empty());
    assert_eq!(stack.vault_list("alice").len(), 1);
    assert_call_succeeds(&alice, "alice").await;
    bob.cancel().await.unwrap();

    // Alice revokes with her page's token.
    let grants = browser.get(&stack.url("/consent/grants")).await.unwrap();
    let token = grants.input("form_token").unwrap();
    let (status, _, body) = post_revoke(&stack, &mut browser, &[("form_token", &token)]).await;
    let page = Page {
        status,
        url: Url::parse(&stack.url("/consent/grants")).unwrap(),
        body,
    };
    assert_eq!(status, StatusCode::OK, "{}", page.text());
    assert!(page.text().contains("revoked"), "{}", page.text());
    // Acme Tasks has an RFC 7009 endpoint: the grant was revoked there too.
    assert!(
        page.text().contains("revoked here and at the provider"),
        "{}",
        page.text()
    );
    assert!(stack.vault_list("alice").is_empty());
    let again = list_tasks(&alice).await;
    assert!(link_in(&again).starts_with(&stack.url("/consent/")));
    alice.cancel().await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// 8. and 9. What travels upstream, and what stays at rest.

/// One request the recording proxy forwarded, and what came back.
#[derive(Debug, Clone)]
struct Exchange {
    path: String,
    bearer: Option<String>,
    /// The `Mcp-Session-Id` the request carried.
    session: Option<String>,
    request: Vec<u8>,
    /// Filled as the answer streams through.
    response: Arc<Mutex<Vec<u8>>>,
}

impl Exchange {
    fn response(&self) -> String {
        String::from_utf8_lossy(&self.response.lock().unwrap()).into_owned()
    }

    fn is_tool_call(&self) -> bool {
        serde_json::from_slice::<Value>(&self.request).is_ok_and(|v| v["method"] == "tools/call")
    }
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    http: reqwest::Client,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

/// A reverse proxy in front of the demo provider that records every request (with its
/// bearer token) and every answer (streamed through, SSE included). Stops when dropped.
struct RecordingProxy {
    server: MockServer,
    seen: Arc<Mutex<Vec<Exchange>>>,
}

impl RecordingProxy {
    async fn start(upstream: &str) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_string(),
            http: portcullis_e2e::proxy_http_client(),
            seen: seen.clone(),
        };
        let app = axum::Router::new().fallback(forward).with_state(state);
        Self {
            server: MockServer::start(app).await,
            seen,
        }
    }

    fn seen(&self) -> Vec<Exchange> {
        self.seen.lock().unwrap().clone()
    }

    /// The bearer tokens of every request to `/mcp`.
    fn mcp_bearers(&self) -> Vec<String> {
        self.seen()
            .into_iter()
            .filter(|e| e.path == "/mcp")
            .map(|e| {
                e.bearer
                    .unwrap_or_else(|| panic!("a request to /mcp without a bearer token"))
            })
            .collect()
    }

    /// The tokens the provider's token endpoint issued, in order: (access, refresh).
    fn issued(&self) -> Vec<(String, Option<String>)> {
        self.seen()
            .into_iter()
            .filter(|e| e.path == "/token")
            .filter_map(|e| serde_json::from_str::<Value>(&e.response()).ok())
            .filter_map(|v| {
                Some((
                    v["access_token"].as_str()?.to_string(),
                    v["refresh_token"].as_str().map(str::to_string),
                ))
            })
            .collect()
    }
}

async fn forward(State(st): State<ProxyState>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = match axum::body::to_bytes(body, 16 * 1024 * 1024).await {
        Ok(b) => b,
        Err(e) => return (StatusCode::BAD_REQUEST, e.to_string()).into_response(),
    };
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let response_bytes = Arc::new(Mutex::new(Vec::new()));
    st.seen.lock().unwrap().push(Exchange {
        path: parts.uri.path().to_string(),
        bearer: header("authorization").and_then(|a| a.strip_prefix("Bearer ").map(str::to_string)),
        session: header("mcp-session-id"),
        request: body.to_vec(),
        response: response_bytes.clone(),
    });

    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut out = st.http.request(
        parts.method.clone(),
        format!("{}{path_and_query}", st.upstream),
    );
    for (name, value) in &parts.headers {
        if portcullis_e2e::forwardable(name) {
            out = out.header(name, value);
        }
    }
    let resp = match out.body(body).send().await {
        Ok(r) => r,
        Err(e) => return (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    };
    let mut headers = HeaderMap::new();
    for (name, value) in resp.headers() {
        if portcullis_e2e::forwardable(name) {
            headers.append(name, value.clone());
        }
    }
    let status = resp.status();
    // Streamed, not buffered: answers may be `text/event-stream` that stay open.
    let stream = resp
        .bytes_stream()
        .map_ok(move |chunk| {
            response_bytes.lock().unwrap().extend_from_slice(&chunk);
            chunk
        })
        .map_err(std::io::Error::other);
    let mut response = Body::from_stream(stream).into_response();
    *response.status_mut() = status;
    *response.headers_mut() = headers;
    response
}

/// The quickstart's target file with its MCP server and token endpoint behind `proxy`
/// (the browser still goes to the provider's own authorization page). The endpoints are
/// named instead of discovered, since discovery would name the provider's token endpoint.
fn proxied_target(port: u16, proxy: &str) -> String {
    let provider = format!("http://127.0.0.1:{port}");
    // 2025-11-25 sessions, so the test can check that no upstream session carries two users'
    // tokens (a 2026-07-28 upstream has no sessions; each request's token is checked anyway).
    let original = tasks_target(port).replacen("[mcp]\n", "[mcp]\nprotocol = \"2025-11-25\"\n", 1);
    let target = original
        .replace(
            &format!("url = \"{provider}/mcp\""),
            &format!("url = \"{proxy}/mcp\""),
        )
        .replace(
            &format!("issuer = \"{provider}\""),
            &format!(
                "authorization_url = \"{provider}/authorize\"\ntoken_url = \"{proxy}/token\"\nrevocation_url = \"{proxy}/revoke\""
            ),
        );
    assert_eq!(
        target.matches(proxy).count(),
        3,
        "the target file changed shape:\n{original}"
    );
    target
}

/// The stack with the recording proxy in front of the provider.
async fn start_proxied(log_filter: &str) -> (Stack, RecordingProxy) {
    let port = portcullis_e2e::port_for_peer_script();
    let proxy = RecordingProxy::start(&format!("http://127.0.0.1:{port}")).await;
    let target = proxied_target(port, &proxy.server.base);
    // Starting waits for the gateway's line: off the runtime's threads, so the proxy serves.
    let stack = tokio::task::block_in_place(|| Stack::start_with(port, target, log_filter));
    (stack, proxy)
}

/// Whether `needle` occurs anywhere in `haystack`.
fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[tokio::test(flavor = "multi_thread")]
async fn no_access_or_refresh_token_is_in_the_vault_file_or_the_log() {
    // Everything the gateway logs at debug level, to see what an operator investigating
    // would keep.
    let (stack, proxy) = start_proxied("debug").await;
    let alice = stack.client("alice").await;
    let link = link_in(&list_tasks(&alice).await);
    complete(&stack, &mut Browser::new(), &link, "alice").await;
    assert_call_succeeds(&alice, "alice").await;

    let issued = proxy.issued();
    assert_eq!(issued.len(), 1, "one code exchange: {issued:?}");
    let (access, refresh) = issued[0].clone();
    let refresh = refresh.expect("the provider issues a refresh token");
    let sent = proxy.mcp_bearers();
    assert!(!sent.is_empty());
    assert!(sent.iter().all(|t| *t == access), "{sent:?}");
    assert!(
        !sent.contains(&refresh),
        "the refresh token was sent upstream"
    );

    let vault = stack.vault_file();
    let mut at_rest = std::fs::read(&vault).unwrap();
    at_rest.extend(std::fs::read(format!("{}-wal", vault.display())).unwrap_or_default());
    assert!(holds(&at_rest, "alice"), "the test reads the vault's rows");
    let log = stack.log_text();
    assert!(
        log.contains("consent/granted"),
        "the log holds the loop:\n{log}"
    );
    for (what, token) in [("access token", &access), ("refresh token", &refresh)] {
        assert!(!holds(&at_rest, token), "the {what} is in the vault file");
        assert!(!log.contains(token.as_str()), "the {what} is in the log");
    }
    for token in &sent {
        assert!(!log.contains(token.as_str()), "a sent token is in the log");
    }
    assert!(!log.contains("\"refresh_token\":\""), "{log}");
    alice.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn each_users_calls_reach_the_provider_with_that_users_token_only() {
    let (stack, proxy) = start_proxied("warn").await;
    let mut tokens: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut clients = Vec::new();
    for user in ["alice", "bob"] {
        let client = stack.client(user).await;
        let link = link_in(&list_tasks(&client).await);
        let before = proxy.issued().len();
        complete(&stack, &mut Browser::new(), &link, user).await;
        let issued: BTreeSet<String> = proxy.issued()[before..]
            .iter()
            .map(|(a, _)| a.clone())
            .collect();
        assert_eq!(issued.len(), 1, "{user}: {issued:?}");
        tokens.insert(user, issued);
        clients.push((user, client));
    }
    assert!(tokens["alice"].is_disjoint(&tokens["bob"]));

    // Interleaved, then all at once.
    for _ in 0..2 {
        for (user, client) in &clients {
            assert_call_succeeds(client, user).await;
        }
    }
    let calls = clients.iter().flat_map(|(user, client)| {
        (0..4).map(move |_| async move { assert_call_succeeds(client, user).await })
    });
    futures::future::join_all(calls).await;

    // Each tool call's answer names the user whose token it was sent with.
    let seen = proxy.seen();
    let mut answered = BTreeMap::<&str, usize>::new();
    for e in seen.iter().filter(|e| e.path == "/mcp" && e.is_tool_call()) {
        let bearer = e.bearer.clone().unwrap();
        let response = e.response();
        let user = ["alice", "bob"]
            .into_iter()
            .find(|u| response.contains(&format!("{u} has no tasks")))
            .unwrap_or_else(|| panic!("a tool call answered for nobody: {response}"));
        assert!(
            tokens[user].contains(&bearer),
            "{user}'s call was sent with another user's token"
        );
        *answered.entry(user).or_default() += 1;
    }
    assert_eq!(answered.get("alice"), Some(&6), "{answered:?}");
    assert_eq!(answered.get("bob"), Some(&6), "{answered:?}");
    // Every upstream request carries a token of one user, and an upstream session never
    // carries two users' tokens.
    let mut sessions = BTreeMap::<String, BTreeSet<&str>>::new();
    for e in seen.iter().filter(|e| e.path == "/mcp") {
        let bearer = e.bearer.clone().unwrap();
        let owner = ["alice", "bob"]
            .into_iter()
            .find(|u| tokens[u].contains(&bearer))
            .unwrap_or_else(|| panic!("an upstream request with a token issued to nobody"));
        if let Some(s) = &e.session {
            sessions.entry(s.clone()).or_default().insert(owner);
        }
    }
    assert!(!sessions.is_empty());
    assert!(
        sessions.values().all(|owners| owners.len() == 1),
        "{sessions:?}"
    );
    for (_, client) in clients {
        client.cancel().await.unwrap();
    }
}

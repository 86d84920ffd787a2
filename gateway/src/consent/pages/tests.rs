//! The pages' promises: security headers, escaping, forms, accessibility, scope words.

use super::*;

fn html(resp: Response) -> String {
    let body = futures::executor::block_on(axum::body::to_bytes(resp.into_body(), 1 << 20))
        .expect("a page body");
    String::from_utf8(body.to_vec()).expect("UTF-8")
}

const SCOPES: &[ScopeLine] = &[
    ScopeLine {
        scope: "repo",
        meaning: Some("read and change all your repositories"),
    },
    ScopeLine {
        scope: "x:custom",
        meaning: None,
    },
];

fn consent_view() -> ConsentView<'static> {
    ConsentView {
        agent: "claude-code",
        user: "alice",
        issuer: "https://idp.example.test",
        target: "github",
        provider: "GitHub",
        scopes: SCOPES,
        action: "/consent/AbC/decision",
        form_token: "tok-123",
        expires_in: Duration::from_secs(600),
    }
}

fn grant_scopes() -> Vec<String> {
    vec!["repo".into(), "read:org".into()]
}

/// One of each page, for the checks every page must pass.
fn every_page() -> Vec<(&'static str, Response)> {
    let scopes = grant_scopes();
    let rows = [GrantRow {
        target: "github",
        agent: "claude-code",
        scopes: &scopes,
        since: "2026-11-01 10:00 UTC",
        expires: "no expiry",
    }];
    vec![
        ("consent", consent(&consent_view())),
        ("done", done("github", "GitHub")),
        ("denied", denied("github")),
        (
            "problem",
            problem(
                StatusCode::FORBIDDEN,
                &Problem {
                    title: "This link is for another user",
                    what: "You are signed in as bob; the link was made for alice.",
                    fix: "Ask alice to open it, or start again from your own agent.",
                },
            ),
        ),
        (
            "grants",
            grants(&GrantsView {
                user: "alice",
                issuer: "https://idp.example.test",
                rows: &rows,
                action: "/consent/grants",
                form_token: "tok-9",
                notice: None,
            }),
        ),
    ]
}

#[test]
fn every_page_is_sent_with_the_security_headers() {
    for (name, resp) in every_page() {
        let h = resp.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.starts_with("default-src 'none';"), "{name}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{name}: {csp}");
        assert!(csp.contains("base-uri 'none'"), "{name}: {csp}");
        // No script source at all (default-src 'none' covers scripts), nothing inline
        // unhashed, and no form-action: Approve's answer redirects to the provider.
        for absent in [
            "unsafe-inline",
            "unsafe-eval",
            "script-src",
            "form-action",
            "*",
        ] {
            assert!(!csp.contains(absent), "{name}: {csp} has {absent}");
        }
        assert_eq!(h["x-frame-options"], "DENY", "{name}");
        assert_eq!(h["cache-control"], "no-store", "{name}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{name}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{name}");
        assert!(
            h["content-type"].to_str().unwrap().starts_with("text/html"),
            "{name}"
        );
        let page = html(resp);
        assert!(!page.contains("<script"), "{name} has a script: {page}");
    }
}

#[test]
fn the_policy_admits_exactly_the_inline_stylesheet() {
    for (name, resp) in every_page() {
        let csp = resp.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        let page = html(resp);
        assert_eq!(page.matches("<style>").count(), 1, "{name}");
        assert!(
            !page.contains(" style="),
            "{name}: inline style attributes are blocked"
        );
        let css = page
            .split("<style>")
            .nth(1)
            .and_then(|rest| rest.split("</style>").next())
            .unwrap();
        let hash = STANDARD.encode(Sha256::digest(css.as_bytes()));
        assert!(
            csp.contains(&format!("style-src 'sha256-{hash}';")),
            "{name}: {csp}"
        );
    }
}

#[test]
fn every_page_is_accessible_and_fits_a_phone() {
    for (name, resp) in every_page() {
        let page = html(resp);
        assert!(page.starts_with("<!doctype html>"), "{name}");
        assert!(page.contains("<html lang=\"en\">"), "{name}");
        assert!(
            page.contains(
                "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            ),
            "{name}"
        );
        assert_eq!(
            page.matches("<h1>").count(),
            1,
            "{name}: one heading names the page"
        );
        assert_eq!(page.matches("<main").count(), 1, "{name}");
        assert!(
            page.contains("<title>") && !page.contains("<title> ·"),
            "{name}"
        );
        // Buttons are real buttons (focusable, keyboard-operable), never clickable divs.
        assert!(
            !page.contains("onclick") && !page.contains("tabindex=\"-1\""),
            "{name}"
        );
    }
}

#[test]
fn the_consent_page_says_who_asks_for_what_and_carries_the_form() {
    let page = html(consent(&consent_view()));
    assert!(
        page.contains(
            "claude-code asks to act as you (alice) at GitHub through the gateway target \
             github."
        ),
        "{page}"
    );
    assert!(page.contains("<form method=\"post\" action=\"/consent/AbC/decision\">"));
    assert!(page.contains("<input type=\"hidden\" name=\"form_token\" value=\"tok-123\">"));
    assert!(
        page.contains(
            "<button type=\"submit\" name=\"decision\" value=\"approve\">Approve</button>"
        )
    );
    assert!(
        page.contains("<button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>")
    );
    assert!(page.contains("<code>repo</code>: read and change all your repositories"));
    assert!(page.contains("<code>x:custom</code>: <span class=\"muted\">no description known"));
    assert!(page.contains("You will be sent to GitHub to sign in and confirm."));
    assert!(page.contains("encrypted. Only claude-code, acting for you, uses it."));
    assert!(page.contains("<a href=\"/consent/grants\">/consent/grants</a>"));
    assert!(page.contains("signed in as alice at https://idp.example.test"));
    assert!(page.contains("expires in 10 minutes"));
    assert!(
        !page.contains("data-outcome"),
        "the question is no outcome yet"
    );
}

#[test]
fn an_agent_without_a_name_is_flagged_and_no_scopes_are_said_plainly() {
    let v = ConsentView {
        agent: "",
        scopes: &[],
        ..consent_view()
    };
    let page = html(consent(&v));
    assert!(page.contains("An unidentified agent asks to act as you (alice) at GitHub"));
    assert!(page.contains("The agent did not give its name."));
    assert!(page.contains("Only this agent, acting for you"));
    assert!(page.contains("No particular permissions"));
}

#[test]
fn every_dynamic_field_is_escaped() {
    const X: &str = "<script>alert(1)</script>\"'&";
    const SAFE: &str = "&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;";
    let scopes = [ScopeLine {
        scope: X,
        meaning: Some(X),
    }];
    let v = ConsentView {
        agent: X,
        user: X,
        issuer: X,
        target: X,
        provider: X,
        scopes: &scopes,
        action: X,
        form_token: X,
        expires_in: Duration::from_secs(60),
    };
    let grant_scopes = vec![X.to_string()];
    let rows = [GrantRow {
        target: X,
        agent: X,
        scopes: &grant_scopes,
        since: X,
        expires: X,
    }];
    let g = GrantsView {
        user: X,
        issuer: X,
        rows: &rows,
        action: X,
        form_token: X,
        notice: Some(X),
    };
    let p = Problem {
        title: X,
        what: X,
        fix: X,
    };
    for (name, resp, times) in [
        // agent ×3, user ×2, issuer, target, provider ×6 (incl. the title), scope,
        // meaning, action, form token.
        ("consent", consent(&v), 16),
        ("done", done(X, X), 2),
        ("denied", denied(X), 1),
        ("problem", problem(StatusCode::GONE, &p), 4),
        // user, issuer, notice; per row target ×2, agent ×2, scope, since, expires,
        // action, form token.
        ("grants", grants(&g), 12),
    ] {
        let page = html(resp);
        assert!(!page.contains("<script"), "{name}: {page}");
        assert!(!page.contains("\"'&"), "{name}: {page}");
        assert_eq!(page.matches(SAFE).count(), times, "{name}: {page}");
    }
}

#[test]
fn the_outcome_pages_say_what_happened() {
    let page = html(done("github", "GitHub"));
    assert!(page.contains("<main data-outcome=\"done\">"));
    assert!(page.contains("<h1>Done — return to your agent</h1>"));
    assert!(page.contains("can now retry"));
    let page = html(denied("github"));
    assert!(page.contains("<main data-outcome=\"denied\">"));
    assert!(page.contains("<h1>You denied access</h1>") && page.contains("Nothing was stored"));
    let resp = problem(
        StatusCode::GONE,
        &Problem {
            title: "This consent link has expired",
            what: "It was valid for 10 minutes.",
            fix: "Ask your agent to try again; it will give you a new link.",
        },
    );
    assert_eq!(resp.status(), StatusCode::GONE);
    let page = html(resp);
    assert!(page.contains("<main data-outcome=\"refused\">"));
    assert!(page.contains("<h1>This consent link has expired</h1>"));
    assert!(page.contains("<h2>What to do</h2>\n<p>Ask your agent to try again"));
}

#[test]
fn the_grants_page_has_one_revoke_form_per_row() {
    let scopes = grant_scopes();
    let rows = [
        GrantRow {
            target: "github",
            agent: "claude-code",
            scopes: &scopes,
            since: "2026-11-01 10:00 UTC",
            expires: "no expiry",
        },
        GrantRow {
            target: "google",
            agent: "",
            scopes: &[],
            since: "2026-11-02 11:00 UTC",
            expires: "2026-11-30 09:12 UTC",
        },
    ];
    let page = html(grants(&GrantsView {
        user: "alice",
        issuer: "https://idp.example.test",
        rows: &rows,
        action: "/consent/grants",
        form_token: "tok-9",
        notice: Some("Access of claude-code to gitlab was revoked."),
    }));
    let forms: Vec<&str> = page
        .split("<form ")
        .skip(1)
        .map(|f| f.split("</form>").next().unwrap())
        .collect();
    assert_eq!(forms.len(), rows.len(), "{page}");
    for (form, row) in forms.iter().zip(&rows) {
        for field in [
            "method=\"post\" action=\"/consent/grants\">".to_string(),
            "<input type=\"hidden\" name=\"form_token\" value=\"tok-9\">".into(),
            format!(
                "<input type=\"hidden\" name=\"target\" value=\"{}\">",
                row.target
            ),
            format!(
                "<input type=\"hidden\" name=\"agent\" value=\"{}\">",
                row.agent
            ),
            "<button type=\"submit\" name=\"decision\" value=\"revoke\">Revoke</button>".into(),
        ] {
            assert!(form.contains(&field), "{field} missing in {form}");
        }
    }
    assert!(page.contains("<code>repo</code> <code>read:org</code>"));
    assert!(page.contains(">any agent<") && page.contains(">default access<"));
    assert!(page.contains("2026-11-30 09:12 UTC") && page.contains("no expiry"));
    assert!(page.contains(
        "<p class=\"notice\" role=\"status\">Access of claude-code to gitlab was revoked.</p>"
    ));
    assert!(!page.contains("No agent holds access"));
}

#[test]
fn the_grants_page_says_when_there_is_nothing_to_revoke() {
    let page = html(grants(&GrantsView {
        user: "alice",
        issuer: "https://idp.example.test",
        rows: &[],
        action: "/consent/grants",
        form_token: "tok-9",
        notice: None,
    }));
    assert!(page.contains("No agent holds access on your behalf."));
    assert!(!page.contains("<form") && !page.contains("<table") && !page.contains("role="));
}

#[test]
fn well_known_scopes_have_a_meaning_and_unknown_ones_none() {
    assert!(scope_meaning("github", "repo").unwrap().contains("private"));
    assert!(scope_meaning("google", "openid").is_some());
    assert!(
        scope_meaning("google", "https://www.googleapis.com/auth/gmail.send")
            .unwrap()
            .contains("send email")
    );
    assert_eq!(
        scope_meaning("atlassian", "offline_access"),
        Some("stay connected: refresh access without asking you again")
    );
    // Entra ID: any case, with or without the Graph prefix.
    let mail = scope_meaning("microsoft", "Mail.Read");
    assert!(mail.is_some());
    assert_eq!(scope_meaning("microsoft", "mail.read"), mail);
    assert_eq!(
        scope_meaning("microsoft", "https://graph.microsoft.com/Mail.Read"),
        mail
    );
    assert!(scope_meaning("slack", "chat:write").is_some());
    assert!(scope_meaning("salesforce", "api").is_some());
    // OIDC scopes at any provider, even a custom one; nothing else is guessed.
    assert!(scope_meaning("custom", "email").is_some());
    assert_eq!(scope_meaning("custom", "repo"), None);
    assert_eq!(scope_meaning("github", "admin:enterprise-everything"), None);
    assert_eq!(
        scope_meaning("github", "Repo"),
        None,
        "GitHub scopes are exact"
    );
    assert_eq!(
        scope_meaning("slack", "repo"),
        None,
        "each preset has its own words"
    );
}

#[test]
fn the_escaper_writes_named_entities_and_leaves_the_rest() {
    let mut out = String::new();
    askama::filters::Escaper::write_escaped_str(&NamedEntities, &mut out, "a<b>&\"c'd é").unwrap();
    assert_eq!(out, "a&lt;b&gt;&amp;&quot;c&#39;d é");
}

#[test]
fn durations_read_as_words() {
    assert_eq!(in_words(Duration::from_secs(1)), "1 second");
    assert_eq!(in_words(Duration::from_secs(90)), "90 seconds");
    assert_eq!(in_words(Duration::from_secs(600)), "10 minutes");
    assert_eq!(in_words(Duration::from_secs(3600)), "60 minutes");
    assert_eq!(in_words(Duration::from_secs(7200)), "2 hours");
    assert_eq!(in_words(Duration::from_secs(86_400 * 30)), "30 days");
}

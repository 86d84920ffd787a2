//! `GET/POST /consent/grants`: the signed-in user's grants, and revoking one (at the provider
//! too, RFC 7009, when it has an endpoint).

use super::sign_in::signed_in;
use super::*;

/// `GET /consent/grants`: the signed-in user's grants.
pub(super) async fn grants(State(pages): State<Pages>, req: Request) -> Response {
    let Some(browser) = Browser::of_or_new(req.headers()) else {
        return no_randomness();
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
        return no_randomness();
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
pub(super) async fn revoke(State(pages): State<Pages>, req: Request) -> Response {
    let started = Instant::now();
    let asked = Asked::of(&req);
    let headers = asked.headers.clone();
    let browser = Browser::of(&headers);
    let Some(form) = form(req).await else {
        return unreadable_form("Go back, reload the page and try again.");
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

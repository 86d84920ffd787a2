//! The consent page (`GET /consent/{id}`) and its decision (`POST`): sign-in first, then
//! Approve (to the provider, with a state bound to this browser) or Deny.

use super::sign_in::signed_in;
use super::*;

/// `GET /consent/{id}`: sign in, then the consent page.
pub(super) async fn show(
    State(pages): State<Pages>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let Some(browser) = Browser::of_or_new(req.headers()) else {
        return no_randomness();
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
        return no_randomness();
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

/// `POST /consent/{id}`: Approve or Deny.
pub(super) async fn decide(
    State(pages): State<Pages>,
    Path(id): Path<String>,
    req: Request,
) -> Response {
    let started = Instant::now();
    let headers = req.headers().clone();
    let browser = Browser::of(&headers);
    let Some(form) = form(req).await else {
        return unreadable_form("Go back, reload the consent page and try again.");
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

//! `GET /consent/callback`: the provider sends the browser back. The consent is taken once by
//! (state, this browser's cookie); RFC 9207 `iss` is checked; the code is exchanged and the
//! grant stored; the 2025-11-25 session that asked is told.

use super::*;

/// `GET /consent/callback`: the provider sends the browser back.
pub(super) async fn callback(State(pages): State<Pages>, req: Request) -> Response {
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

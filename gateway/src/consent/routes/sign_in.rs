//! Who is at the browser: signed in already, the development IdP's login form, or OpenID
//! Connect at the caller's issuer (`consent/login.rs`), and the two answers that sign in.

use super::*;

/// Who is at the browser, at `issuer`: signed in already, or a response that signs them in
/// (the dev IdP's form, or a redirect to the issuer) and comes back to `then`.
pub(super) async fn signed_in(
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
            .map_err(|_| no_randomness())?;
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

/// `POST /consent/login/dev`: the development IdP's login form.
pub(super) async fn dev_sign_in(State(pages): State<Pages>, req: Request) -> Response {
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
pub(super) async fn oidc_callback(State(pages): State<Pages>, req: Request) -> Response {
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

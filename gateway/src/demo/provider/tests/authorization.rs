//! The authorization server's rules over HTTP with a plain client: metadata, the sign-in
//! page, PKCE, single-use codes, refresh rotation, revocation, client authentication and the
//! open-redirect rule.

use super::*;

#[tokio::test]
async fn metadata_names_the_endpoints_and_only_s256() {
    let base = start().await;
    let m: Value = http()
        .get(format!("{base}/.well-known/oauth-authorization-server"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(m["issuer"], base.as_str());
    assert_eq!(m["authorization_endpoint"], format!("{base}/authorize"));
    assert_eq!(m["token_endpoint"], format!("{base}/token"));
    assert_eq!(m["revocation_endpoint"], format!("{base}/revoke"));
    assert_eq!(
        m["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        m["scopes_supported"],
        serde_json::json!(["tasks:read", "tasks:write"])
    );
}

#[tokio::test]
async fn a_code_is_bound_to_its_pkce_verifier_and_works_once() {
    let base = start().await;
    let p = pkce();

    // Wrong verifier: refused, and the code is spent.
    let code = code_for(&base, &p, "alice", "tasks:read").await;
    let (status, err) = exchange(&base, &code, &pkce().verifier).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (status, _) = exchange(&base, &code, &p.verifier).await;
    assert_eq!(
        status,
        StatusCode::BAD_REQUEST,
        "a refused code stays spent"
    );

    // Right verifier: tokens.
    let code = code_for(&base, &p, "alice", "tasks:read tasks:write").await;
    let (status, t) = exchange(&base, &code, &p.verifier).await;
    assert_eq!(status, StatusCode::OK, "{t}");
    assert_eq!(t["token_type"], "Bearer");
    assert_eq!(t["expires_in"], 600);
    assert_eq!(t["scope"], "tasks:read tasks:write");
    let access = t["access_token"].as_str().unwrap();
    assert!(t["refresh_token"].as_str().is_some_and(|r| r.len() >= 43));
    assert!(!access.contains('.'), "opaque, not a JWT");
    assert_eq!(mcp_status(&base, Some(access)).await, StatusCode::OK);

    // The same code again: invalid_grant, and what it gave is revoked.
    let (status, err) = exchange(&base, &code, &p.verifier).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    assert_eq!(
        mcp_status(&base, Some(access)).await,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn refresh_rotates_and_a_reused_refresh_token_revokes_the_grant() {
    let base = start().await;
    let p = pkce();
    let code = code_for(&base, &p, "bob", "tasks:read").await;
    let (_, first) = exchange(&base, &code, &p.verifier).await;
    let r1 = first["refresh_token"].as_str().unwrap();

    let (status, second) = refresh(&base, r1).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let r2 = second["refresh_token"].as_str().unwrap();
    let a2 = second["access_token"].as_str().unwrap();
    assert_ne!(r1, r2, "a new refresh token every time");
    assert_eq!(second["scope"], "tasks:read");
    assert_eq!(mcp_status(&base, Some(a2)).await, StatusCode::OK);

    // r1 again: a replay. The whole grant dies, r2 and its access token included.
    let (status, err) = refresh(&base, r1).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (StatusCode::BAD_REQUEST, Some("invalid_grant"))
    );
    let (_, err) = refresh(&base, r2).await;
    assert_eq!(err["error"], "invalid_grant");
    assert_eq!(mcp_status(&base, Some(a2)).await, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn revocation_ends_tokens_and_accepts_unknown_ones() {
    let base = start().await;
    let p = pkce();
    let code = code_for(&base, &p, "carol", "tasks:read").await;
    let (_, t) = exchange(&base, &code, &p.verifier).await;
    let revoke = |token: String, secret: &'static str| {
        let base = base.clone();
        async move {
            http()
                .post(format!("{base}/revoke"))
                .form(&[
                    ("token", token.as_str()),
                    ("client_id", CLIENT),
                    ("client_secret", secret),
                ])
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    let access = t["access_token"].as_str().unwrap().to_string();
    let refresh_token = t["refresh_token"].as_str().unwrap().to_string();
    assert_eq!(
        revoke(access.clone(), "wrong").await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(mcp_status(&base, Some(&access)).await, StatusCode::OK);
    assert_eq!(revoke(access.clone(), SECRET).await, StatusCode::OK);
    assert_eq!(
        mcp_status(&base, Some(&access)).await,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(revoke(refresh_token.clone(), SECRET).await, StatusCode::OK);
    assert_eq!(
        refresh(&base, &refresh_token).await.1["error"],
        "invalid_grant"
    );
    assert_eq!(revoke("never-issued".into(), SECRET).await, StatusCode::OK);
}

#[tokio::test]
async fn a_wrong_client_secret_is_invalid_client_with_401() {
    let base = start().await;
    for req in [
        http()
            .post(format!("{base}/token"))
            .basic_auth(CLIENT, Some("nope")),
        http()
            .post(format!("{base}/token"))
            .basic_auth("other", Some(SECRET)),
        http().post(format!("{base}/token")),
    ] {
        let resp = req
            .form(&[("grant_type", "refresh_token"), ("refresh_token", "x")])
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        assert!(resp.headers().contains_key(WWW_AUTHENTICATE));
        let err: Value = resp.json().await.unwrap();
        assert_eq!(err["error"], "invalid_client");
    }
    // client_secret_post works with the right secret (here: an unknown refresh token).
    let resp = http()
        .post(format!("{base}/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", "x"),
            ("client_id", CLIENT),
            ("client_secret", SECRET),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_unknown_redirect_uri_or_client_is_a_page_never_a_redirect() {
    let base = start().await;
    let p = pkce();
    for (client, redirect) in [
        (CLIENT, "http://127.0.0.1:9/oauth/callback/"),
        (CLIENT, "https://evil.example/cb"),
        ("someone-else", CALLBACK),
    ] {
        let resp = authorize(
            &base,
            &[
                ("response_type", "code"),
                ("client_id", client),
                ("redirect_uri", redirect),
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "S256"),
            ],
        )
        .await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
        assert!(resp.headers().get(LOCATION).is_none());
        let html = resp.text().await.unwrap();
        assert!(
            html.contains("Acme Tasks cannot start this sign-in"),
            "{html}"
        );
        assert!(!html.contains("form_token"));
    }
}

#[tokio::test]
async fn plain_pkce_missing_pkce_and_unknown_scopes_go_back_as_errors() {
    let base = start().await;
    let p = pkce();
    let cases: [(&[(&str, &str)], &str); 3] = [
        (
            &[
                ("code_challenge", &p.verifier),
                ("code_challenge_method", "plain"),
            ],
            "invalid_request",
        ),
        (&[], "invalid_request"),
        (
            &[
                ("code_challenge", &p.challenge),
                ("code_challenge_method", "S256"),
                ("scope", "admin"),
            ],
            "invalid_scope",
        ),
    ];
    for (extra, expected) in cases {
        let mut params = vec![
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", CALLBACK),
            ("state", "s"),
        ];
        params.extend_from_slice(extra);
        let resp = authorize(&base, &params).await;
        assert_eq!(resp.status(), StatusCode::SEE_OTHER);
        let q = query(&location(&resp));
        assert_eq!((q["error"].as_str(), q["state"].as_str()), (expected, "s"));
        assert!(!q.contains_key("code"));
    }
}

#[tokio::test]
async fn deny_sends_access_denied_and_a_form_works_once() {
    let base = start().await;
    let p = pkce();
    let page = authorize(
        &base,
        &[
            ("response_type", "code"),
            ("client_id", CLIENT),
            ("redirect_uri", CALLBACK),
            ("state", "s2"),
            ("code_challenge", &p.challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .await;
    let html = page.text().await.unwrap();
    assert!(html.contains("Acme Tasks — sign in as"));
    let token = form_token(&html);
    let post = |decision: &'static str| {
        http()
            .post(format!("{base}/authorize"))
            .form(&[
                ("form_token", token.as_str()),
                ("user", "dave"),
                ("decision", decision),
            ])
            .send()
    };
    let back = location(&post("deny").await.unwrap());
    let q = query(&back);
    assert_eq!(
        (q["error"].as_str(), q["state"].as_str()),
        ("access_denied", "s2")
    );
    let again = post("allow").await.unwrap();
    assert_eq!(again.status(), StatusCode::BAD_REQUEST, "the form was used");
    assert!(again.headers().get(LOCATION).is_none());
}

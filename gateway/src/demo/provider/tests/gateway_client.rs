//! The gateway's own OAuth client (`outbound::authorization_code`) against the demo provider,
//! then an rmcp client calling its MCP server with the access token it got.

use rmcp::ServiceExt as _;
use rmcp::model::{CallToolRequestParams, CallToolResult, ClientConfig};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;

use super::*;
use crate::outbound::authorization_code::{
    AuthorizationCodeClient, ClientAuthMethod, ClientRegistration, ProviderEndpoints, TokenKind,
};

async fn oauth_client(base: &str, auth_method: ClientAuthMethod) -> AuthorizationCodeClient {
    let http = crate::outbound::token_http_client().unwrap();
    let endpoints = ProviderEndpoints::discover(&http, base).await.unwrap();
    let registration = ClientRegistration {
        client_id: CLIENT.into(),
        client_secret: Some(Secret::new(SECRET)),
        auth_method,
        redirect_uri: Url::parse(CALLBACK).unwrap(),
        resource: Some(format!("{base}/mcp")),
        scope_param: "scope".into(),
        extra_authorize_params: vec![],
    };
    AuthorizationCodeClient::new(
        endpoints,
        registration,
        http,
        crate::outbound::system_clock(),
    )
    .unwrap()
}

/// begin → the sign-in page → approve as `user` → exchange: the grant.
async fn consent(
    base: &str,
    client: &AuthorizationCodeClient,
    user: &str,
    scopes: &[&str],
) -> crate::outbound::authorization_code::TokenGrant {
    let scopes: Vec<String> = scopes.iter().map(|s| s.to_string()).collect();
    let authorization = client.begin(&scopes);
    let page = http().get(authorization.url.clone()).send().await.unwrap();
    let back = answer(base, page, user, "allow").await;
    let q = query(&back);
    assert_eq!(q["state"], authorization.state);
    assert_eq!(q["iss"], base);
    client
        .exchange(&q["code"], &authorization.pkce_verifier, &scopes)
        .await
        .unwrap()
}

async fn mcp(base: &str, token: &Secret) -> RunningService<RoleClient, ClientConfig> {
    let config = StreamableHttpClientTransportConfig::with_uri(format!("{base}/mcp"))
        .auth_header(token.expose());
    ClientConfig::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

async fn call(
    c: &RunningService<RoleClient, ClientConfig>,
    tool: &str,
    args: Value,
) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.to_string());
    if let Value::Object(args) = args {
        params = params.with_arguments(args);
    }
    c.peer().call_tool(params).await.unwrap()
}

fn text(r: &CallToolResult) -> String {
    r.content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}

#[tokio::test]
async fn the_gateways_oauth_client_gets_a_token_that_the_mcp_server_accepts_per_user() {
    let base = start().await;
    let gateway = oauth_client(&base, ClientAuthMethod::Basic).await;
    assert_eq!(gateway.endpoints().issuer.as_deref(), Some(base.as_str()));

    // alice approves read and write: add_task, then list_tasks shows it.
    let alice = consent(&base, &gateway, "alice", &["tasks:read", "tasks:write"]).await;
    assert_eq!(alice.granted_scopes, ["tasks:read", "tasks:write"]);
    let c = mcp(&base, &alice.access_token).await;
    let added = call(
        &c,
        "add_task",
        serde_json::json!({"title": "water the plants"}),
    )
    .await;
    assert_eq!(added.is_error, Some(false), "{}", text(&added));
    let listed = call(&c, "list_tasks", serde_json::json!({})).await;
    assert_eq!(listed.is_error, Some(false));
    assert_eq!(
        listed.structured_content,
        Some(serde_json::json!({"user": "alice", "tasks": ["water the plants"]}))
    );
    c.cancel().await.unwrap();

    // bob (client_secret_post, read only) sees none of alice's tasks and may not add any.
    let gateway_post = oauth_client(&base, ClientAuthMethod::Post).await;
    let bob = consent(&base, &gateway_post, "bob", &["tasks:read"]).await;
    let c = mcp(&base, &bob.access_token).await;
    let listed = call(&c, "list_tasks", serde_json::json!({})).await;
    assert_eq!(
        listed.structured_content,
        Some(serde_json::json!({"user": "bob", "tasks": []}))
    );
    let refused = call(&c, "add_task", serde_json::json!({"title": "x"})).await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("tasks:write"), "{}", text(&refused));
    c.cancel().await.unwrap();

    // Refresh rotates; revoking the refresh token ends the grant.
    let old_refresh = bob.refresh_token.clone().unwrap();
    let renewed = gateway_post
        .refresh(&old_refresh, &bob.granted_scopes)
        .await
        .unwrap();
    let new_refresh = renewed.refresh_token.clone().unwrap();
    assert_ne!(new_refresh, old_refresh);
    gateway_post
        .revoke(&new_refresh, TokenKind::RefreshToken)
        .await
        .unwrap();
    let dead = gateway_post
        .refresh(&new_refresh, &bob.granted_scopes)
        .await
        .unwrap_err();
    assert!(dead.grant_is_dead(), "{dead}");
    assert_eq!(
        mcp_status(&base, Some(renewed.access_token.expose())).await,
        StatusCode::UNAUTHORIZED
    );

    // No bearer at all: 401 with a Bearer challenge.
    let resp = http().post(format!("{base}/mcp")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(
        resp.headers()[WWW_AUTHENTICATE]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );
}

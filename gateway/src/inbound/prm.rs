//! OAuth 2.0 Protected Resource Metadata (RFC 9728): how an MCP client finds out which
//! authorization server to log in at, and for which resource to ask a token (RFC 8707).

use serde_json::{Value, json};

use super::Authenticator;
use crate::config::ServerSettings;

/// The path-inserted metadata URL for the `/mcp` resource, named in every challenge.
pub fn metadata_url(server: &ServerSettings) -> String {
    format!("{}/.well-known/oauth-protected-resource/mcp", base(server))
}

fn base(server: &ServerSettings) -> String {
    server.public_url.as_str().trim_end_matches('/').to_string()
}

/// The document. RFC 9728 §3.3: `resource` must equal the identifier the well-known URL was
/// built from, so the root document describes the origin and the `/mcp` one the endpoint
/// (whose URL is the audience tokens must carry).
pub fn document(
    auth: &Authenticator,
    server: &ServerSettings,
    tool_scopes: &[String],
    root: bool,
) -> Value {
    let resource = if root { base(server) } else { server.mcp_url() };
    let mut scopes = auth.required_scopes();
    scopes.extend(tool_scopes.iter().cloned());
    scopes.sort();
    scopes.dedup();
    let servers: Vec<&str> = auth
        .issuers()
        .iter()
        .map(|i| i.spec.issuer.as_str())
        .collect();
    json!({
        "resource": resource,
        "authorization_servers": servers,
        "scopes_supported": scopes,
        "bearer_methods_supported": ["header"],
        "resource_name": "Portcullis MCP gateway",
    })
}

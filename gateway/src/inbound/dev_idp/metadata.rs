//! The dev IdP's authorization server metadata (RFC 8414), also served as its OpenID
//! discovery document. MCP clients read it to find where to register, log in and get
//! tokens; they look for it at the RFC 8414 path-inserted URL
//! (`/.well-known/oauth-authorization-server/dev-idp`), then the OIDC ones.

use serde_json::{Value, json};

use super::DevIdp;

/// The metadata. `scopes` are the scopes the gateway knows of (those its tools require);
/// any other scope is granted too, as asked.
pub fn document(idp: &DevIdp, scopes: &[String]) -> Value {
    json!({
        "issuer": idp.issuer(),
        "authorization_endpoint": idp.endpoint("authorize"),
        "token_endpoint": idp.endpoint("token"),
        "registration_endpoint": idp.endpoint("register"),
        "jwks_uri": idp.endpoint("jwks"),
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "refresh_token"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
        "authorization_response_iss_parameter_supported": true,
        // OIDC discovery requires these two; the dev IdP issues access tokens only. (No
        // `service_documentation`: it must be a URL, and clients reject the document otherwise.)
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
    })
}

//! Dynamic client registration (RFC 7591) at `/dev-idp/register`: an MCP client posts its
//! metadata and gets a `client_id`. Every client is public (`token_endpoint_auth_method =
//! "none"`, no secret): PKCE protects its codes. Registrations live in memory only.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use http::StatusCode;
use serde_json::{Value, json};
use url::Url;

use super::store::random_token;
use super::{DevIdp, OAuthError, no_store};

const MAX_REDIRECT_URIS: usize = 20;
const MAX_URI_CHARS: usize = 2_000;
const MAX_NAME_CHARS: usize = 100;

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub id: String,
    pub name: Option<String>,
    pub redirect_uris: Vec<String>,
    /// Whether it may use refresh tokens (then every code exchange returns one).
    pub refresh: bool,
}

impl Client {
    /// The agent its tokens name (`azp`): the name it registered, so audit lines and policies
    /// read "mcp-remote" rather than a random id; the id when it gave no name. Names are
    /// self-chosen, which the dev IdP accepts because it trusts whoever uses the machine.
    pub fn agent(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Whether `uri` is one this client registered. Exact string match, except that the
    /// port of an `http` loopback IP redirect may differ: native apps get a free port at
    /// run time (RFC 8252 §7.3).
    pub fn redirect_allowed(&self, uri: &str) -> bool {
        self.redirect_uris
            .iter()
            .any(|r| r == uri || same_but_loopback_port(r, uri))
    }
}

fn same_but_loopback_port(registered: &str, asked: &str) -> bool {
    let (Ok(mut a), Ok(mut b)) = (Url::parse(registered), Url::parse(asked)) else {
        return false;
    };
    let loopback_ip = |u: &Url| {
        u.scheme() == "http"
            && match u.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                _ => false,
            }
    };
    if !loopback_ip(&a) || !loopback_ip(&b) {
        return false;
    }
    let _ = a.set_port(None);
    let _ = b.set_port(None);
    a == b
}

/// `POST /dev-idp/register`.
pub async fn register(State(idp): State<Arc<DevIdp>>, body: Bytes) -> Response {
    match registration(&body) {
        Ok(mut client) => {
            client.id = match random_token() {
                Ok(t) => format!("dev-{}", &t[..22]),
                Err(_) => return unavailable(),
            };
            let answer = json!({
                "client_id": client.id,
                "client_id_issued_at": SystemTime::now()
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or_default(),
                "client_name": client.name,
                "redirect_uris": client.redirect_uris,
                "grant_types": if client.refresh { json!(["authorization_code", "refresh_token"]) } else { json!(["authorization_code"]) },
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            });
            tracing::info!(
                target: "portcullis::inbound",
                client_id = %client.id,
                agent = %client.agent(),
                "dev IdP: registered a client"
            );
            idp.clients.insert(client.id.clone(), client);
            (StatusCode::CREATED, no_store(), Json(answer)).into_response()
        }
        Err(e) => e.into_response(),
    }
}

fn unavailable() -> Response {
    OAuthError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "temporarily_unavailable",
        "the gateway could not generate a random client id; retry",
    )
    .into_response()
}

fn invalid(description: impl Into<String>) -> OAuthError {
    OAuthError::bad("invalid_client_metadata", description)
}

/// Check the client's metadata; the id is filled in by the caller.
fn registration(body: &[u8]) -> Result<Client, OAuthError> {
    let meta: Value = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the body is not JSON ({e}); send the client metadata as a JSON object (RFC 7591 §2)"
        ))
    })?;
    let Some(meta) = meta.as_object() else {
        return Err(invalid(
            "the body must be a JSON object of client metadata (RFC 7591 §2)",
        ));
    };
    let redirect_uris = match meta.get("redirect_uris") {
        Some(Value::Array(list)) if !list.is_empty() => list,
        _ => {
            return Err(OAuthError::bad(
                "invalid_redirect_uri",
                "`redirect_uris` is missing or empty: list the URL(s) the login should return to, e.g. [\"http://127.0.0.1:33418/callback\"]",
            ));
        }
    };
    if redirect_uris.len() > MAX_REDIRECT_URIS {
        return Err(OAuthError::bad(
            "invalid_redirect_uri",
            format!("at most {MAX_REDIRECT_URIS} redirect_uris are accepted"),
        ));
    }
    let redirect_uris = redirect_uris
        .iter()
        .enumerate()
        .map(|(i, v)| check_redirect_uri(i, v))
        .collect::<Result<Vec<_>, _>>()?;

    let grants = strings(meta, "grant_types")?;
    let grants =
        grants.unwrap_or_else(|| vec!["authorization_code".into(), "refresh_token".into()]);
    if let Some(g) = grants
        .iter()
        .find(|g| !matches!(g.as_str(), "authorization_code" | "refresh_token"))
    {
        return Err(invalid(format!(
            "grant type `{g}` is not offered by the development identity provider; register with grant_types [\"authorization_code\", \"refresh_token\"]"
        )));
    }
    if !grants.iter().any(|g| g == "authorization_code") {
        return Err(invalid(
            "grant_types must include \"authorization_code\": it is the only way to log in here",
        ));
    }
    if let Some(types) = strings(meta, "response_types")?
        && types.iter().any(|t| t != "code")
    {
        return Err(invalid(
            "only the response type \"code\" is offered; register with response_types [\"code\"]",
        ));
    }
    let name = match meta.get("client_name") {
        None | Some(Value::Null) => None,
        Some(Value::String(n)) => {
            let n = n.trim();
            if n.chars().count() > MAX_NAME_CHARS || n.chars().any(char::is_control) {
                return Err(invalid(format!(
                    "client_name must be at most {MAX_NAME_CHARS} characters without control characters"
                )));
            }
            (!n.is_empty()).then(|| n.to_string())
        }
        Some(_) => return Err(invalid("client_name must be a string")),
    };
    // Any other `token_endpoint_auth_method` is replaced by "none" (RFC 7591 §3.2.1 lets the
    // server choose); the answer says so and clients use what it says.
    Ok(Client {
        id: String::new(),
        name,
        redirect_uris,
        refresh: grants.iter().any(|g| g == "refresh_token"),
    })
}

fn strings(
    meta: &serde_json::Map<String, Value>,
    key: &str,
) -> Result<Option<Vec<String>>, OAuthError> {
    match meta.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_string))
            .collect::<Option<Vec<_>>>()
            .map(Some)
            .ok_or_else(|| invalid(format!("`{key}` must be an array of strings"))),
        Some(_) => Err(invalid(format!("`{key}` must be an array of strings"))),
    }
}

/// A redirect URI must be absolute, without a fragment (RFC 6749 §3.1.2), and not a
/// scheme a browser would run or read locally. Plain `http` only to this machine
/// (RFC 8252 §7.3); `https` anywhere; other schemes are native apps' private-use schemes
/// (e.g. `vscode://…`, RFC 8252 §7.1).
fn check_redirect_uri(index: usize, value: &Value) -> Result<String, OAuthError> {
    let bad = |why: &str| {
        OAuthError::bad(
            "invalid_redirect_uri",
            format!("redirect_uris[{index}] {why}"),
        )
    };
    let Some(text) = value.as_str() else {
        return Err(bad(
            "is not a string; write each redirect URI as a JSON string",
        ));
    };
    if text.len() > MAX_URI_CHARS {
        return Err(bad(&format!("is longer than {MAX_URI_CHARS} characters")));
    }
    let url = Url::parse(text).map_err(|e| {
        bad(&format!(
            "(`{text}`) is not an absolute URL ({e}); write the full URL, e.g. http://127.0.0.1:33418/callback"
        ))
    })?;
    if url.fragment().is_some() || text.contains('#') {
        return Err(bad(&format!(
            "(`{text}`) has a fragment (`#…`), which redirect URIs may not have (RFC 6749 §3.1.2); remove it"
        )));
    }
    match url.scheme() {
        "https" => {}
        "http" => {
            let local = match url.host() {
                Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                None => false,
            };
            if !local {
                return Err(bad(&format!(
                    "(`{text}`) uses plain http to another machine; use https, or http only to 127.0.0.1, [::1] or localhost"
                )));
            }
        }
        "javascript" | "data" | "file" | "blob" | "about" | "vbscript" => {
            return Err(bad(&format!(
                "(`{text}`) uses the `{}:` scheme, which cannot receive a login; use an http(s) URL or your app's own scheme",
                url.scheme()
            )));
        }
        _ => {}
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(body: Value) -> Result<Client, OAuthError> {
        registration(body.to_string().as_bytes())
    }

    #[test]
    fn a_typical_mcp_client_registers() {
        let c = reg(json!({
            "redirect_uris": ["http://127.0.0.1:5173/oauth/callback"],
            "client_name": "MCP CLI Client",
            "grant_types": ["authorization_code", "refresh_token"],
            "token_endpoint_auth_method": "none",
        }))
        .unwrap();
        assert_eq!(c.agent(), "MCP CLI Client");
        assert!(c.refresh);
    }

    #[test]
    fn redirect_uris_are_checked_and_the_error_says_what_to_fix() {
        for (uri, says) in [
            ("/callback", "not an absolute URL"),
            ("http://127.0.0.1:1/cb#frag", "fragment"),
            ("http://evil.example/cb", "use https"),
            ("javascript:alert(1)", "cannot receive a login"),
        ] {
            let e = reg(json!({ "redirect_uris": [uri] })).unwrap_err();
            assert_eq!(e.error, "invalid_redirect_uri", "{uri}");
            assert!(e.description.contains(says), "{uri}: {}", e.description);
            assert!(
                e.description.starts_with("redirect_uris[0]"),
                "{}",
                e.description
            );
        }
        let e = reg(json!({ "client_name": "x" })).unwrap_err();
        assert_eq!(e.error, "invalid_redirect_uri");
        for ok in [
            "https://vscode.dev/redirect",
            "http://localhost:8080/cb",
            "http://[::1]:9/cb",
            "vscode://callback",
        ] {
            assert!(reg(json!({ "redirect_uris": [ok] })).is_ok(), "{ok}");
        }
    }

    #[test]
    fn unsupported_grants_are_refused() {
        let e = reg(json!({ "redirect_uris": ["https://a.example/cb"], "grant_types": ["client_credentials"] }))
            .unwrap_err();
        assert_eq!(e.error, "invalid_client_metadata");
        assert!(e.description.contains("client_credentials"));
    }

    #[test]
    fn redirect_match_is_exact_except_a_loopback_ip_port() {
        let c =
            reg(json!({ "redirect_uris": ["http://127.0.0.1:5000/cb", "https://a.example/cb"] }))
                .unwrap();
        assert!(c.redirect_allowed("http://127.0.0.1:5000/cb"));
        assert!(c.redirect_allowed("http://127.0.0.1:6123/cb"));
        assert!(!c.redirect_allowed("http://127.0.0.1:5000/other"));
        assert!(!c.redirect_allowed("http://localhost:5000/cb"));
        assert!(!c.redirect_allowed("https://a.example/cb/"));
        assert!(!c.redirect_allowed("https://a.example:444/cb"));
    }
}

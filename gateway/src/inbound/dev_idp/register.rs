//! Dynamic client registration (RFC 7591) at `/dev-idp/register`: an MCP client posts its
//! metadata and gets a `client_id`. Every client is public (`token_endpoint_auth_method =
//! "none"`, no secret): PKCE protects its codes. Registrations live in memory only.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use http::{HeaderMap, StatusCode, header};
use serde_json::{Value, json};
use url::Url;

use super::login::proxy_header;
use super::store::random_token;
use super::{DevIdp, OAuthError, no_store};
use crate::config::is_loopback_host;

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
    /// port of an `http` loopback redirect (127.0.0.1, [::1] or localhost) may differ: native
    /// apps get a free port at run time (RFC 8252 §7.3), and clients such as Claude Code and
    /// VS Code register `http://localhost:PORT/callback` and may pick a new port per login.
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
    let loopback =
        |u: &Url| u.scheme() == "http" && is_loopback_host(u.host_str().unwrap_or_default());
    if !loopback(&a) || !loopback(&b) {
        return false;
    }
    let _ = a.set_port(None);
    let _ = b.set_port(None);
    a == b
}

/// `POST /dev-idp/register`.
pub async fn register(State(idp): State<Arc<DevIdp>>, headers: HeaderMap, body: Bytes) -> Response {
    match new_client(&headers, &body) {
        Ok(client) => {
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

fn new_client(headers: &HeaderMap, body: &[u8]) -> Result<Client, OAuthError> {
    check_sender(headers)?;
    let mut client = registration(body)?;
    client.id = format!("dev-{}", &random_token()?[..22]);
    Ok(client)
}

/// Refuse registrations a web page or a proxy could have sent. A page may POST `text/plain` to
/// any address without asking (a "simple" CORS request); `application/json` makes the
/// browser ask first with a preflight, which the gateway does not grant. So any page could
/// fill the registry (evicting real clients) were another type accepted.
fn check_sender(headers: &HeaderMap) -> Result<(), OAuthError> {
    if let Some(header) = proxy_header(headers) {
        return Err(OAuthError::new(
            StatusCode::FORBIDDEN,
            "access_denied",
            format!(
                "this registration came through a proxy (it carries a `{header}` header); the development identity provider is for direct use on the gateway's own machine only. Register at the gateway's own loopback address, or configure a real identity provider in [[inbound.issuers]] (docs/inbound.md)"
            ),
        ));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return Ok(());
    }
    let sent = if content_type.is_empty() {
        "no Content-Type".to_string()
    } else {
        format!("Content-Type `{content_type}`")
    };
    Err(OAuthError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "invalid_request",
        format!(
            "the registration was sent with {sent}; send the client metadata as JSON with `Content-Type: application/json` (RFC 7591 §3.1)"
        ),
    ))
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
        "http" if !is_loopback_host(url.host_str().unwrap_or_default()) => {
            return Err(bad(&format!(
                "(`{text}`) uses plain http to another machine; use https, or http only to 127.0.0.1, [::1] or localhost"
            )));
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
    fn redirect_match_is_exact_except_a_loopback_port() {
        let c =
            reg(json!({ "redirect_uris": ["http://127.0.0.1:5000/cb", "https://a.example/cb"] }))
                .unwrap();
        assert!(c.redirect_allowed("http://127.0.0.1:5000/cb"));
        assert!(c.redirect_allowed("http://127.0.0.1:6123/cb"));
        assert!(!c.redirect_allowed("http://127.0.0.1:5000/other"));
        assert!(
            !c.redirect_allowed("http://localhost:5000/cb"),
            "the host is matched exactly"
        );
        assert!(!c.redirect_allowed("https://a.example/cb/"));
        assert!(!c.redirect_allowed("https://a.example:444/cb"));
    }

    #[test]
    fn a_localhost_redirect_may_come_back_on_another_port() {
        // As Claude Code and VS Code register it, then log in on a new port.
        let c = reg(json!({ "redirect_uris": ["http://localhost:33418/callback"] })).unwrap();
        assert!(c.redirect_allowed("http://localhost:33418/callback"));
        assert!(c.redirect_allowed("http://localhost:51234/callback"));
        assert!(!c.redirect_allowed("http://localhost:51234/other"));
        assert!(!c.redirect_allowed("https://localhost:51234/callback"));
        assert!(!c.redirect_allowed("http://127.0.0.1:51234/callback"));
    }

    fn refused(pairs: &[(&'static str, &str)]) -> Option<OAuthError> {
        let mut headers = HeaderMap::new();
        for (k, v) in pairs {
            headers.insert(*k, v.parse().unwrap());
        }
        check_sender(&headers).err()
    }

    #[test]
    fn only_json_registrations_are_accepted() {
        // A page's no-cors POST can only be text/plain, form or multipart.
        for sent in [
            "text/plain",
            "text/plain;charset=UTF-8",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
        ] {
            let e = refused(&[("content-type", sent)]).unwrap_or_else(|| panic!("{sent} accepted"));
            assert_eq!(e.status, StatusCode::UNSUPPORTED_MEDIA_TYPE, "{sent}");
            assert_eq!(e.error, "invalid_request");
            assert!(
                e.description.contains(sent)
                    && e.description.contains("Content-Type: application/json"),
                "{}",
                e.description
            );
        }
        let e = refused(&[]).unwrap();
        assert!(
            e.description.contains("no Content-Type"),
            "{}",
            e.description
        );
        assert!(refused(&[("content-type", "application/json")]).is_none());
        assert!(refused(&[("content-type", "Application/JSON; charset=utf-8")]).is_none());
    }

    #[test]
    fn a_registration_through_a_proxy_is_refused() {
        for proxy in ["x-forwarded-for", "forwarded", "x-real-ip"] {
            let e = refused(&[
                ("content-type", "application/json"),
                (proxy, "for=192.0.2.1"),
            ])
            .unwrap_or_else(|| panic!("{proxy} accepted"));
            assert_eq!(e.status, StatusCode::FORBIDDEN);
            assert!(
                e.description.contains("came through a proxy")
                    && e.description
                        .contains("direct use on the gateway's own machine only"),
                "{}",
                e.description
            );
        }
    }
}

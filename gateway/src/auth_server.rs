//! Talking to identity providers and token endpoints: answers are read with a size cap (an
//! IdP that misbehaves, or an attacker in its place, cannot make the gateway buffer
//! gigabytes), and authorization-server metadata is discovered the same way everywhere.

/// Largest discovery document, JWK set or token response accepted.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The response body, or an error once more than `max` bytes arrived (also without a
/// Content-Length header).
pub async fn read_limited(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(format!("the answer is larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("the answer is larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// An authorization server's metadata: OpenID discovery (`{issuer}/.well-known/openid-configuration`),
/// then RFC 8414 (`{origin}/.well-known/oauth-authorization-server{path}`). Returns the URL that
/// answered and its document; the error names every URL tried. Checking the document's
/// `issuer` is the caller's business (inbound keys require an exact match).
pub async fn discover(
    http: &reqwest::Client,
    issuer: &str,
) -> Result<(String, serde_json::Value), String> {
    let mut candidates = vec![format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )];
    if let Ok(u) = url::Url::parse(issuer) {
        let path = u.path().trim_end_matches('/');
        candidates.push(format!(
            "{}/.well-known/oauth-authorization-server{path}",
            u.origin().ascii_serialization()
        ));
    }
    let mut failures = Vec::new();
    for url in candidates {
        match http.get(&url).send().await {
            Ok(r) if r.status().is_success() => {
                let body = read_limited(r, MAX_DOCUMENT_BYTES)
                    .await
                    .map_err(|e| format!("GET {url}: {e}"))?;
                let doc =
                    serde_json::from_slice(&body).map_err(|e| format!("{url} is not JSON: {e}"))?;
                return Ok((url, doc));
            }
            Ok(r) => failures.push(format!("GET {url}: HTTP {}", r.status())),
            Err(e) => failures.push(format!("GET {url}: {e}")),
        }
    }
    Err(format!("discovery failed: {}", failures.join("; ")))
}

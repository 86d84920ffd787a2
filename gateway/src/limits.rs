//! Reading answers from identity providers and token endpoints with a size cap: an IdP that
//! misbehaves (or an attacker in its place) cannot make the gateway buffer gigabytes.

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

//! `api_key`: a static key from a secret reference, in a header (with optional prefix) or a
//! query parameter.

use futures::future::BoxFuture;
use http::HeaderName;

use super::{Attachment, CredentialError, CredentialProvider, OutboundRequest};
use crate::config::Secret;
use crate::config::outbound::KeyPlacement;

#[derive(Debug)]
pub struct ApiKey {
    key: Secret,
    placement: KeyPlacement,
}

impl ApiKey {
    pub fn new(key: Secret, placement: KeyPlacement) -> Self {
        Self { key, placement }
    }
}

impl CredentialProvider for ApiKey {
    fn mode(&self) -> &'static str {
        "api_key"
    }

    fn attach<'a>(
        &'a self,
        _req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async move {
            match &self.placement {
                KeyPlacement::Header { name, prefix } => {
                    let name = HeaderName::from_bytes(name.as_bytes())
                        .map_err(|_| CredentialError::Invalid(format!("bad header name {name}")))?;
                    Attachment::default().header(name, &format!("{prefix}{}", self.key.expose()))
                }
                KeyPlacement::Query { name } => Ok(Attachment {
                    query: vec![(name.clone(), self.key.expose().to_string())],
                    ..Default::default()
                }),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use url::Url;

    fn req(url: &Url) -> OutboundRequest<'_> {
        OutboundRequest {
            target: "t",
            method: "POST",
            url,
            headers: &[],
            body: b"",
            principal: None,
            tool: None,
        }
    }

    #[tokio::test]
    async fn header_and_query_placement() {
        let url = Url::parse("http://x/mcp").unwrap();
        let h = ApiKey::new(
            Secret::new("k1"),
            KeyPlacement::Header {
                name: "Authorization".into(),
                prefix: "Bearer ".into(),
            },
        );
        let a = h.attach(&req(&url)).await.unwrap();
        assert_eq!(a.headers[0].1.to_str().unwrap(), "Bearer k1");
        assert!(a.headers[0].1.is_sensitive());
        assert!(!format!("{a:?}").contains("k1"));
        let q = ApiKey::new(
            Secret::new("k2"),
            KeyPlacement::Query {
                name: "api_key".into(),
            },
        );
        let a = q.attach(&req(&url)).await.unwrap();
        assert_eq!(a.apply_query(&url).as_str(), "http://x/mcp?api_key=k2");
    }
}

//! Where a provider's authorization, token and revocation endpoints are: given explicitly, or
//! read from the issuer's metadata (OpenID discovery, then RFC 8414) with the same bounded
//! fetch as everywhere else. Tokens and codes travel to these URLs, so each must be `https`,
//! except on a loopback host (a provider on the same machine, as in development and tests).

use url::Url;

use super::AuthCodeError;
use crate::config::outbound::{AuthorizationCodeSpec, ProviderEndpoints as ConfiguredEndpoints};

/// The endpoints of one provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderEndpoints {
    /// Where the user's browser is sent to log in and consent.
    pub authorization_url: Url,
    /// Where codes and refresh tokens are exchanged.
    pub token_url: Url,
    /// RFC 7009; `None` when the provider has none.
    pub revocation_url: Option<Url>,
    /// The issuer, when the endpoints came from discovery (or the caller knows it): RFC 9207
    /// `iss` on the callback can be compared with it.
    pub issuer: Option<String>,
}

impl ProviderEndpoints {
    /// Endpoints given explicitly.
    pub fn new(
        authorization_url: Url,
        token_url: Url,
        revocation_url: Option<Url>,
    ) -> Result<Self, AuthCodeError> {
        check_transport("authorization endpoint", &authorization_url)?;
        check_transport("token endpoint", &token_url)?;
        if let Some(u) = &revocation_url {
            check_transport("revocation endpoint", u)?;
        }
        Ok(Self {
            authorization_url,
            token_url,
            revocation_url,
            issuer: None,
        })
    }

    /// Endpoints from the metadata of `issuer`. The document must name exactly this issuer
    /// (RFC 8414 §3.3: otherwise another server could stand in for it), and, when it lists
    /// its PKCE methods, S256 among them. A document that lists none is accepted: several
    /// large providers support S256 without saying so, and the gateway always sends S256.
    pub async fn discover(http: &reqwest::Client, issuer: &str) -> Result<Self, AuthCodeError> {
        // The metadata names where secrets go: it must not be readable or changeable on the
        // way, so the issuer itself is held to the endpoints' rule.
        let parsed = Url::parse(issuer).map_err(|_| {
            AuthCodeError::Misconfigured(format!(
                "the issuer \"{issuer}\" is not an absolute URL. Write the provider's issuer URL, e.g. https://login.example.com/"
            ))
        })?;
        check_transport("issuer", &parsed)?;
        let (from, doc) = crate::auth_server::discover(http, issuer)
            .await
            .map_err(|e| {
                AuthCodeError::Unreachable(format!("cannot read the metadata of {issuer}: {e}"))
            })?;
        let named = doc["issuer"].as_str().unwrap_or_default();
        // Exactly the same, or the same URL (`https://idp.example` is `https://idp.example/`).
        let same = named == issuer
            || matches!((Url::parse(named), Url::parse(issuer)), (Ok(a), Ok(b)) if a == b);
        if !same {
            return Err(AuthCodeError::BadResponse(format!(
                "{from} names issuer \"{named}\", not \"{issuer}\"; if that is the same provider, configure its issuer exactly as \"{named}\""
            )));
        }
        if let Some(methods) = doc["code_challenge_methods_supported"].as_array()
            && !methods.iter().any(|m| m.as_str() == Some("S256"))
        {
            return Err(AuthCodeError::Misconfigured(format!(
                "the provider {issuer} does not offer PKCE with S256 ({from} lists code_challenge_methods_supported without it); the gateway uses only S256, so it cannot act as this provider's client"
            )));
        }
        let url = |field: &str| -> Result<Option<Url>, AuthCodeError> {
            doc[field]
                .as_str()
                .map(|s| {
                    Url::parse(s).map_err(|e| {
                        AuthCodeError::BadResponse(format!(
                            "{from}: {field} \"{s}\" is not a URL: {e}"
                        ))
                    })
                })
                .transpose()
        };
        let required = |field: &str| -> Result<Url, AuthCodeError> {
            url(field)?.ok_or_else(|| {
                AuthCodeError::BadResponse(format!(
                    "{from} names no {field}; give the endpoints explicitly instead of the issuer"
                ))
            })
        };
        let mut endpoints = Self::new(
            required("authorization_endpoint")?,
            required("token_endpoint")?,
            url("revocation_endpoint")?,
        )?;
        // As the provider spells it: RFC 9207 `iss` on the callback is compared with it.
        endpoints.issuer = Some(named.to_string());
        Ok(endpoints)
    }

    /// The endpoints a target's compiled settings name, discovered when they give an issuer.
    /// A configured revocation endpoint (the preset's or the target file's) wins over a
    /// discovered one.
    pub async fn resolve(
        http: &reqwest::Client,
        spec: &AuthorizationCodeSpec,
    ) -> Result<Self, AuthCodeError> {
        let mut endpoints = match &spec.endpoints {
            ConfiguredEndpoints::Discover { issuer } => {
                Self::discover(http, issuer.as_str()).await?
            }
            ConfiguredEndpoints::Urls {
                authorization_url,
                token_url,
            } => Self::new(authorization_url.clone(), token_url.clone(), None)?,
        };
        if let Some(u) = &spec.revocation_url {
            check_transport("revocation endpoint", u)?;
            endpoints.revocation_url = Some(u.clone());
        }
        Ok(endpoints)
    }
}

/// `https`, or `http` on a loopback host.
/// https, or http on a loopback host (local development and tests). The config applies the
/// same rule at load (`config::outbound::authorization_code`).
pub(crate) fn check_transport(what: &str, url: &Url) -> Result<(), AuthCodeError> {
    if crate::config::secure_transport(url) {
        return Ok(());
    }
    Err(AuthCodeError::Misconfigured(format!(
        "the {what} {url} is not an https URL: authorization codes and tokens would travel in clear text. Use the provider's https URL"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn endpoints_must_be_https_except_on_loopback() {
        assert!(
            ProviderEndpoints::new(
                u("https://idp.example/auth"),
                u("http://127.0.0.1:9/token"),
                Some(u("http://localhost/revoke")),
            )
            .is_ok()
        );
        let e = ProviderEndpoints::new(
            u("https://idp.example/auth"),
            u("http://idp.example/token"),
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the token endpoint http://idp.example/token is not an https URL"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn an_http_issuer_is_refused_before_anything_is_fetched() {
        // Nothing listens there: a fetch would fail differently.
        let http = crate::outbound::token_http_client().unwrap();
        let e = ProviderEndpoints::discover(&http, "http://idp.example/")
            .await
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("the issuer http://idp.example/ is not an https URL"),
            "{e}"
        );
    }
}

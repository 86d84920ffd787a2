//! Compiling a target's `[auth]`: how the gateway authenticates to it. Secrets are resolved
//! here, so a missing one stops startup naming the reference (never the value).

use std::path::Path;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::schema::{AssumeRoleSection, AuthSection, ClientAuthName};
use super::{ConfigErrors, Secret, SecretRef, SourceFile};

mod authorization_code;

pub use authorization_code::{AuthorizationCodeSpec, Provider, ProviderEndpoints, RESERVED_PARAMS};

#[derive(Debug, Clone, PartialEq)]
pub enum AuthSpec {
    None,
    ApiKey {
        key: Secret,
        placement: KeyPlacement,
    },
    ClientCredentials(ClientCredentialsSpec),
    AwsSigv4(SigV4Spec),
    TokenExchange(TokenExchangeSpec),
    /// Each user's own grant, obtained with their consent (3LO).
    AuthorizationCode(Box<AuthorizationCodeSpec>),
}

impl AuthSpec {
    pub fn mode(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::ApiKey { .. } => "api_key",
            Self::ClientCredentials(_) => "oauth2_client_credentials",
            Self::AwsSigv4(_) => "aws_sigv4",
            Self::TokenExchange(_) => "token_exchange",
            Self::AuthorizationCode(_) => "oauth2_authorization_code",
        }
    }

    /// Whether the credential depends on the caller, so an upstream session opened with it
    /// can only ever serve that one caller (DESIGN §5): such a target keeps a session per
    /// user. Gateway credentials are shared by every caller, and so is their session.
    pub fn per_caller(&self) -> bool {
        match self {
            Self::TokenExchange(_) | Self::AuthorizationCode(_) => true,
            Self::None | Self::ApiKey { .. } | Self::ClientCredentials(_) | Self::AwsSigv4(_) => {
                false
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPlacement {
    Header { name: String, prefix: String },
    Query { name: String },
}

/// How the gateway proves its own identity at a token endpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum ClientAuth {
    /// HTTP Basic with the client secret (RFC 6749 §2.3.1).
    Basic(Secret),
    /// `client_secret` in the form body.
    Post(Secret),
    /// A JWT signed with the client's private key (RFC 7523, `private_key_jwt`).
    PrivateKeyJwt { key_pem: Secret, alg: Algorithm },
    /// Public client: only `client_id`.
    None,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClientSpec {
    pub client_id: String,
    pub auth: ClientAuth,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TokenEndpoint {
    Url(Url),
    /// Discovered from the issuer's metadata (OpenID, then RFC 8414).
    Issuer(Url),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClientCredentialsSpec {
    pub endpoint: TokenEndpoint,
    pub client: OAuthClientSpec,
    pub scopes: Vec<String>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    /// Refresh this long before the token expires.
    pub refresh_skew: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StaticAwsCredentials {
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    pub session_token: Option<Secret>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SigV4Spec {
    pub service: String,
    pub region: String,
    /// `None`: the standard AWS chain (env, profile, web identity, ECS, IMDS).
    pub credentials: Option<StaticAwsCredentials>,
    pub sts_endpoint: Option<Url>,
    pub assume_role: Option<AssumeRoleSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AssumeRoleSpec {
    pub role_arn: String,
    /// With `{tool}`, `{target}`, `{user}` placeholders, filled per call.
    pub session_policy: Option<String>,
    pub duration: Duration,
    pub external_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TokenExchangeSpec {
    pub token_url: Url,
    pub client: Option<OAuthClientSpec>,
    pub audience: Option<String>,
    pub resource: Option<String>,
    pub scopes: Vec<String>,
    pub subject_token_type: String,
    pub requested_token_type: Option<String>,
}

pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

struct Ctx<'a> {
    /// The table being compiled: `auth` or `listing_auth`.
    section: &'a str,
    src: &'a SourceFile,
    base: &'a Path,
    errors: &'a mut ConfigErrors,
}

impl Ctx<'_> {
    fn err(&mut self, key: &str, message: impl Into<String>, fix: impl Into<String>) {
        let e = self
            .src
            .error(&format!("{}.{key}", self.section), message, fix);
        self.errors.push(e);
    }

    fn secret(&mut self, key: &str, r: &SecretRef) -> Option<Secret> {
        match r.resolve(self.base) {
            Ok(s) => Some(s),
            Err(e) => {
                self.err(key, format!("secret `{r}` cannot be read: {e}"), e.fix());
                None
            }
        }
    }
}

/// Compile the `[auth]`-shaped table named `section` (`auth` or `listing_auth`).
pub(super) fn compile(
    src: &SourceFile,
    section: &str,
    auth: Option<&AuthSection>,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<AuthSpec> {
    let before = errors.0.len();
    let mut cx = Ctx {
        section,
        src,
        base,
        errors,
    };
    let spec = match auth {
        None | Some(AuthSection::None {}) => Some(AuthSpec::None),
        Some(AuthSection::ApiKey {
            key,
            header,
            prefix,
            query,
        }) => api_key(&mut cx, key, header, prefix, query),
        Some(AuthSection::ClientCredentials {
            token_url,
            issuer,
            client_id,
            client_secret,
            private_key,
            private_key_alg,
            client_auth,
            scopes,
            audience,
            resource,
            refresh_skew,
        }) => {
            let endpoint = match (token_url, issuer) {
                (Some(u), None) => Some(TokenEndpoint::Url(u.clone())),
                (None, Some(i)) => Some(TokenEndpoint::Issuer(i.clone())),
                _ => {
                    cx.err(
                        "token_url",
                        "set exactly one of `token_url` or `issuer`",
                        "give the token endpoint, or the issuer to discover it from",
                    );
                    None
                }
            };
            let client = oauth_client(
                &mut cx,
                client_id,
                client_secret.as_ref(),
                private_key.as_ref(),
                private_key_alg.as_deref(),
                *client_auth,
            );
            match (endpoint, client) {
                (Some(endpoint), Some(client)) => {
                    Some(AuthSpec::ClientCredentials(ClientCredentialsSpec {
                        endpoint,
                        client,
                        scopes: scopes.clone(),
                        audience: audience.clone(),
                        resource: resource.clone(),
                        refresh_skew: refresh_skew.unwrap_or(Duration::from_secs(60)),
                    }))
                }
                _ => None,
            }
        }
        Some(AuthSection::AuthorizationCode {
            provider,
            tenant,
            issuer,
            authorization_url,
            token_url,
            revocation_url,
            client_id,
            client_secret,
            client_auth,
            scopes,
            tool_scopes,
            authorize_params,
            resource,
            display_name,
        }) => {
            let spec = authorization_code::compile(
                &mut cx,
                &authorization_code::Section {
                    provider,
                    tenant: tenant.as_deref(),
                    issuer: issuer.as_ref(),
                    authorization_url: authorization_url.as_ref(),
                    token_url: token_url.as_ref(),
                    revocation_url: revocation_url.as_ref(),
                    client_id,
                    client_secret: client_secret.as_ref(),
                    client_auth: *client_auth,
                    scopes,
                    tool_scopes,
                    authorize_params,
                    resource: resource.as_deref(),
                    display_name: display_name.as_deref(),
                },
            );
            spec.map(|s| AuthSpec::AuthorizationCode(Box::new(s)))
        }
        Some(AuthSection::AwsSigv4 {
            service,
            region,
            access_key_id,
            secret_access_key,
            session_token,
            sts_endpoint,
            assume_role,
        }) => {
            let credentials = match (access_key_id, secret_access_key) {
                (Some(id), Some(secret)) => {
                    let id = cx.secret("access_key_id", id);
                    let secret = cx.secret("secret_access_key", secret);
                    let token = session_token
                        .as_ref()
                        .and_then(|t| cx.secret("session_token", t));
                    match (id, secret) {
                        (Some(access_key_id), Some(secret_access_key)) => {
                            Some(Some(StaticAwsCredentials {
                                access_key_id,
                                secret_access_key,
                                session_token: token,
                            }))
                        }
                        _ => None,
                    }
                }
                (None, None) => Some(None),
                _ => {
                    cx.err(
                        "access_key_id",
                        "give both `access_key_id` and `secret_access_key`, or neither",
                        "remove both to use the standard AWS credential chain",
                    );
                    None
                }
            };
            let role = assume_role.as_ref().map(|r| assume_role_spec(&mut cx, r));
            if service.is_empty() || region.is_empty() {
                cx.err(
                    "service",
                    "`service` and `region` must not be empty",
                    "e.g. service = \"lambda\", region = \"us-east-1\"",
                );
            }
            match (credentials, role) {
                (Some(credentials), None) => Some(AuthSpec::AwsSigv4(SigV4Spec {
                    service: service.clone(),
                    region: region.clone(),
                    credentials,
                    sts_endpoint: sts_endpoint.clone(),
                    assume_role: None,
                })),
                (Some(credentials), Some(Some(role))) => Some(AuthSpec::AwsSigv4(SigV4Spec {
                    service: service.clone(),
                    region: region.clone(),
                    credentials,
                    sts_endpoint: sts_endpoint.clone(),
                    assume_role: Some(role),
                })),
                _ => None,
            }
        }
        Some(AuthSection::TokenExchange {
            token_url,
            client_id,
            client_secret,
            client_auth,
            audience,
            resource,
            scopes,
            subject_token_type,
            requested_token_type,
        }) => {
            let client = match client_id {
                Some(id) => oauth_client(
                    &mut cx,
                    id,
                    client_secret.as_ref(),
                    None,
                    None,
                    *client_auth,
                )
                .map(Some),
                None => Some(None),
            };
            client.map(|client| {
                AuthSpec::TokenExchange(TokenExchangeSpec {
                    token_url: token_url.clone(),
                    client,
                    audience: audience.clone(),
                    resource: resource.clone(),
                    scopes: scopes.clone(),
                    subject_token_type: subject_token_type
                        .clone()
                        .unwrap_or_else(|| ACCESS_TOKEN_TYPE.into()),
                    requested_token_type: requested_token_type.clone(),
                })
            })
        }
    };
    (errors.0.len() == before).then_some(spec).flatten()
}

fn api_key(
    cx: &mut Ctx<'_>,
    key: &SecretRef,
    header: &Option<String>,
    prefix: &Option<String>,
    query: &Option<String>,
) -> Option<AuthSpec> {
    // Resolved first but checked last, so a missing key and a bad placement show together.
    let secret = cx.secret("key", key);
    let placement = match (header, query) {
        (Some(_), Some(_)) => {
            cx.err(
                "query",
                "set `header` or `query`, not both",
                "keep the one the target expects",
            );
            return None;
        }
        (_, Some(q)) => {
            if prefix.is_some() {
                cx.err(
                    "prefix",
                    "`prefix` only applies to a header",
                    "remove it, or use `header`",
                );
                return None;
            }
            KeyPlacement::Query { name: q.clone() }
        }
        (h, None) => {
            let name = h.clone().unwrap_or_else(|| "Authorization".into());
            if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
                cx.err(
                    "header",
                    format!("`{name}` is not a valid HTTP header name"),
                    "header names are letters, digits and `-`, e.g. header = \"X-API-Key\"",
                );
                return None;
            }
            let default_prefix = if name.eq_ignore_ascii_case("authorization") {
                "Bearer "
            } else {
                ""
            };
            KeyPlacement::Header {
                prefix: prefix.clone().unwrap_or_else(|| default_prefix.into()),
                name,
            }
        }
    };
    Some(AuthSpec::ApiKey {
        key: secret?,
        placement,
    })
}

fn oauth_client(
    cx: &mut Ctx<'_>,
    client_id: &str,
    secret: Option<&SecretRef>,
    private_key: Option<&SecretRef>,
    alg: Option<&str>,
    method: Option<ClientAuthName>,
) -> Option<OAuthClientSpec> {
    let method = method.unwrap_or(if private_key.is_some() {
        ClientAuthName::PrivateKeyJwt
    } else {
        ClientAuthName::ClientSecretBasic
    });
    let auth = match method {
        ClientAuthName::ClientSecretBasic | ClientAuthName::ClientSecretPost => {
            let Some(r) = secret else {
                cx.err(
                    "client_secret",
                    format!(
                        "`client_auth = \"{}\"` needs `client_secret`",
                        method.name()
                    ),
                    "client_secret = \"env:NAME\" or \"file:PATH\"",
                );
                return None;
            };
            let s = cx.secret("client_secret", r)?;
            if method == ClientAuthName::ClientSecretBasic {
                ClientAuth::Basic(s)
            } else {
                ClientAuth::Post(s)
            }
        }
        ClientAuthName::PrivateKeyJwt => {
            let Some(r) = private_key else {
                cx.err(
                    "private_key",
                    "`private_key_jwt` needs `private_key` (a PEM file)",
                    "private_key = \"file:keys/client.pem\"",
                );
                return None;
            };
            let key_pem = cx.secret("private_key", r)?;
            let alg_name = alg;
            let alg = match alg.unwrap_or("RS256").parse::<Algorithm>() {
                Ok(
                    a @ (Algorithm::RS256
                    | Algorithm::RS384
                    | Algorithm::RS512
                    | Algorithm::PS256
                    | Algorithm::PS384
                    | Algorithm::PS512
                    | Algorithm::ES256
                    | Algorithm::ES384),
                ) => a,
                _ => {
                    cx.err(
                        "private_key_alg",
                        format!(
                            "`{}` is not a supported `private_key_alg`",
                            alg_name.unwrap_or_default()
                        ),
                        "use RS256, PS256, ES256 or ES384",
                    );
                    return None;
                }
            };
            let loads = match alg {
                Algorithm::ES256 | Algorithm::ES384 => {
                    jsonwebtoken::EncodingKey::from_ec_pem(key_pem.expose().as_bytes()).is_ok()
                }
                _ => jsonwebtoken::EncodingKey::from_rsa_pem(key_pem.expose().as_bytes()).is_ok(),
            };
            if !loads {
                cx.err(
                    "private_key",
                    format!(
                        "the private key is not a PEM key for {}",
                        alg_name.unwrap_or("RS256")
                    ),
                    "give a PKCS#8 or PKCS#1 PEM private key matching `private_key_alg`",
                );
                return None;
            }
            ClientAuth::PrivateKeyJwt { key_pem, alg }
        }
    };
    Some(OAuthClientSpec {
        client_id: client_id.to_string(),
        auth,
    })
}

fn assume_role_spec(cx: &mut Ctx<'_>, r: &AssumeRoleSection) -> Option<AssumeRoleSpec> {
    let duration = r.duration.unwrap_or(Duration::from_secs(900));
    if !(900..=43_200).contains(&duration.as_secs()) {
        cx.err(
            "assume_role.duration",
            "STS sessions last between 15 minutes and 12 hours",
            "use e.g. \"15m\" or \"1h\"",
        );
        return None;
    }
    if !r.role_arn.starts_with("arn:") {
        cx.err(
            "assume_role.role_arn",
            format!("`{}` is not an ARN", r.role_arn),
            "e.g. arn:aws:iam::123456789012:role/portcullis-lambda",
        );
        return None;
    }
    if let Some(p) = &r.session_policy {
        let sample = fill_policy(p, "tool", "target", "user");
        if let Err(e) = serde_json::from_str::<serde_json::Value>(&sample) {
            cx.err(
                "assume_role.session_policy",
                format!("the session policy is not JSON once filled in: {e}"),
                "write an IAM policy document; {tool}, {target} and {user} are replaced per call",
            );
            return None;
        }
        if sample.len() > 2048 {
            cx.err(
                "assume_role.session_policy",
                "STS accepts inline session policies of at most 2048 characters",
                "shorten the policy",
            );
            return None;
        }
    }
    Some(AssumeRoleSpec {
        role_arn: r.role_arn.clone(),
        session_policy: r.session_policy.clone(),
        duration,
        external_id: r.external_id.clone(),
    })
}

/// Fill a session-policy template. Values are JSON-string-escaped so a tool or user name can
/// never change the policy's structure.
pub fn fill_policy(template: &str, tool: &str, target: &str, user: &str) -> String {
    let esc = |s: &str| {
        serde_json::to_string(s)
            .map(|q| q[1..q.len() - 1].to_string())
            .unwrap_or_default()
    };
    template
        .replace("{tool}", &esc(tool))
        .replace("{target}", &esc(target))
        .replace("{user}", &esc(user))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_placeholders_cannot_inject_json() {
        let p = fill_policy(
            r#"{"Resource":"arn:aws:lambda:::function:{tool}"}"#,
            r#"x","Action":"*"#,
            "t",
            "u",
        );
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v.as_object().unwrap().len(), 1, "{p}");
        assert!(
            v["Resource"]
                .as_str()
                .unwrap()
                .ends_with(r#"x","Action":"*"#)
        );
    }
}

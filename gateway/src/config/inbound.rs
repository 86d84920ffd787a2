//! Compiling `[inbound]` and `[dev_idp]`: who may call the gateway.

use std::path::{Path, PathBuf};
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::Url;

use super::schema::{ClaimRuleSection, GatewayFile, InboundModeName, IssuerSection};
use super::{ConfigErrors, SourceFile};

/// Asymmetric algorithms accepted when `algorithms` is not set. Never `none`; HMAC (HS*)
/// is refused outright because it would need a secret shared with the issuer.
pub const DEFAULT_ALGORITHMS: &[Algorithm] = &[
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug, Clone, PartialEq)]
pub struct InboundSettings {
    pub mode: InboundMode,
    pub dev_idp: Option<DevIdpSettings>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InboundMode {
    /// Every request needs a valid bearer JWT from one of these issuers (plus the dev IdP).
    Jwt { issuers: Vec<IssuerSpec> },
    /// No authentication: loopback only, for local experiments.
    None,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerSpec {
    /// Compared to `iss` exactly, without normalisation (as RFC 8414/9207 require).
    pub issuer: String,
    /// Empty: the gateway's canonical MCP URL (`{public_url}/mcp`), filled in at start.
    pub audiences: Vec<String>,
    pub allowed_clients: Vec<String>,
    pub required_scopes: Vec<String>,
    pub algorithms: Vec<Algorithm>,
    pub leeway: Duration,
    pub user_claim: String,
    /// Tried in order; the first present names the agent.
    pub agent_claims: Vec<String>,
    pub groups_claim: Option<String>,
    pub tenant_claim: Option<String>,
    pub jwks_uri: Option<Url>,
    /// Least time between two JWKS fetches triggered by an unknown `kid`.
    pub jwks_refetch_interval: Duration,
    pub claim_rules: Vec<ClaimRule>,
    /// The gateway's client at this issuer for signing users in on the consent pages.
    pub consent_login: Option<ConsentLoginSpec>,
}

/// The gateway registered as an OpenID Connect client at an issuer, so the consent pages can
/// prove who is at the browser (authorization code + PKCE + nonce, then the ID token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentLoginSpec {
    pub client_id: String,
    /// `None`: a public client (PKCE only).
    pub client_secret: Option<super::Secret>,
    /// Always holds `openid`.
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimRule {
    Equals { claim: String, value: String },
    Contains { claim: String, value: String },
    ContainsAny { claim: String, values: Vec<String> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevIdpSettings {
    pub key_file: PathBuf,
    pub token_ttl: Duration,
}

pub(super) fn compile(
    src: &SourceFile,
    file: &GatewayFile,
    base: &Path,
    errors: &mut ConfigErrors,
) -> InboundSettings {
    let data_dir = base.join(file.data_dir.as_deref().unwrap_or(Path::new(".data")));
    let dev_idp = file.dev_idp.as_ref().map(|d| DevIdpSettings {
        key_file: d
            .key_file
            .as_ref()
            .map(|k| base.join(k))
            .unwrap_or_else(|| data_dir.join("dev-idp-key.der")),
        token_ttl: d.token_ttl.unwrap_or(Duration::from_secs(3600)),
    });
    let mode = match file.inbound.mode {
        Some(InboundModeName::None) => {
            if !file.inbound.issuers.is_empty() || dev_idp.is_some() {
                errors.push(src.error(
                    "inbound.mode",
                    "mode \"none\" turns authentication off, but issuers or [dev_idp] are configured",
                    "remove `mode = \"none\"` to require tokens, or remove the issuers and [dev_idp]",
                ));
            }
            InboundMode::None
        }
        Some(InboundModeName::Jwt) | None => {
            // Issuers or [dev_idp] written wrong were reported as such already.
            let written_wrong = src.removed_under("inbound") || src.removed_under("dev_idp");
            if file.inbound.issuers.is_empty() && dev_idp.is_none() && !written_wrong {
                errors.push(src.error(
                    "inbound",
                    "no token issuer is configured, so no caller could ever be admitted",
                    "add an [[inbound.issuers]] table (see docs/inbound.md), or [dev_idp] for local development, or `[inbound] mode = \"none\"` for an unauthenticated loopback-only gateway",
                ));
            }
            let issuers: Vec<IssuerSpec> = file
                .inbound
                .issuers
                .iter()
                .enumerate()
                .filter_map(|(i, s)| compile_issuer(src, i, s, base, errors))
                .collect();
            for (i, spec) in issuers.iter().enumerate() {
                if issuers[..i]
                    .iter()
                    .any(|earlier| earlier.issuer == spec.issuer)
                {
                    errors.push(src.error(
                        &format!("inbound.issuers[{i}].issuer"),
                        format!(
                            "issuer `{}` is configured twice; only one entry could ever be used",
                            spec.issuer
                        ),
                        "merge the two entries",
                    ));
                }
            }
            InboundMode::Jwt { issuers }
        }
    };
    InboundSettings { mode, dev_idp }
}

fn compile_issuer(
    src: &SourceFile,
    index: usize,
    s: &IssuerSection,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<IssuerSpec> {
    let before = errors.0.len();
    let at = |k: &str| format!("inbound.issuers[{index}].{k}");
    match Url::parse(&s.issuer) {
        Ok(u) if matches!(u.scheme(), "https" | "http") && u.host_str().is_some() => {
            if u.scheme() == "http" && !super::is_loopback_host(u.host_str().unwrap_or_default()) {
                errors.push(src.error(
                    &at("issuer"),
                    format!("issuer `{}` is plain http on a non-loopback host; keys fetched from it could be forged in transit", s.issuer),
                    "use the issuer's https URL",
                ));
            }
        }
        _ => errors.push(src.error(
            &at("issuer"),
            format!("issuer `{}` (entry {}) is not an http(s) URL", s.issuer, index + 1),
            "write the issuer exactly as it appears in the tokens' `iss` claim, e.g. https://login.example.com/",
        )),
    }
    let mut algorithms = Vec::new();
    for name in &s.algorithms {
        match name.parse::<Algorithm>() {
            Ok(Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512) => errors.push(src.error(
                &at("algorithms"),
                format!("{name} is a shared-secret algorithm: anyone holding the secret could mint tokens"),
                "list asymmetric algorithms only (RS256, PS256, ES256, EdDSA, …)",
            )),
            Ok(a) => algorithms.push(a),
            Err(_) => errors.push(src.error(
                &at("algorithms"),
                format!("unknown or refused algorithm `{name}`"),
                "use names like RS256, PS256, ES256, ES384 or EdDSA (`none` is never accepted)",
            )),
        }
    }
    if algorithms.is_empty() && s.algorithms.is_empty() {
        algorithms = DEFAULT_ALGORITHMS.to_vec();
    }
    let consent_login = s.consent_login.as_ref().and_then(|c| {
        let client_secret = match &c.client_secret {
            None => None,
            Some(r) => match r.resolve(base) {
                Ok(v) => Some(v),
                Err(e) => {
                    errors.push(src.error(
                        &at("consent_login.client_secret"),
                        format!("secret `{r}` cannot be read: {e}"),
                        e.fix(),
                    ));
                    return None;
                }
            },
        };
        if c.client_id.trim().is_empty() {
            errors.push(src.error(
                &at("consent_login.client_id"),
                "the client id is empty",
                "write the client id the issuer gave the gateway when you registered it (redirect URI {public_url}/consent/login/callback)",
            ));
            return None;
        }
        let mut scopes = c.scopes.clone().unwrap_or_default();
        if !scopes.iter().any(|s| s == "openid") {
            scopes.insert(0, "openid".into());
        }
        Some(ConsentLoginSpec {
            client_id: c.client_id.clone(),
            client_secret,
            scopes,
        })
    });
    let claim_rules = s
        .claims
        .iter()
        .filter_map(|r| compile_rule(src, &at("claims"), r, errors))
        .collect();
    if let Some(u) = &s.jwks_uri
        && u.scheme() != "https"
        && !super::is_loopback_host(u.host_str().unwrap_or_default())
    {
        errors.push(src.error(
            &at("jwks_uri"),
            format!("`{u}` is plain http on a non-loopback host; keys fetched from it could be forged in transit"),
            "use https",
        ));
    }
    for (key, value) in [
        ("user_claim", &s.user_claim),
        ("agent_claim", &s.agent_claim),
    ] {
        if value.as_deref().is_some_and(str::is_empty) {
            errors.push(src.error(
                &at(key),
                "an empty claim name matches nothing",
                "remove the key to use the default, or name a claim",
            ));
        }
    }
    if s.jwks_refetch_interval
        .is_some_and(|d| d < Duration::from_secs(1))
    {
        errors.push(src.error(
            &at("jwks_refetch_interval"),
            "an interval under one second lets a flood of unknown key ids hammer the IdP",
            "use e.g. \"30s\"",
        ));
    }
    (errors.0.len() == before).then(|| IssuerSpec {
        issuer: s.issuer.clone(),
        audiences: s.audiences.clone(),
        allowed_clients: s.allowed_clients.clone(),
        required_scopes: s.required_scopes.clone(),
        algorithms,
        leeway: s.leeway.unwrap_or(Duration::from_secs(30)),
        user_claim: s.user_claim.clone().unwrap_or_else(|| "sub".into()),
        agent_claims: match &s.agent_claim {
            Some(c) => vec![c.clone()],
            None => vec!["azp".into(), "client_id".into()],
        },
        groups_claim: s.groups_claim.clone(),
        tenant_claim: s.tenant_claim.clone(),
        jwks_uri: s.jwks_uri.clone(),
        jwks_refetch_interval: s.jwks_refetch_interval.unwrap_or(Duration::from_secs(30)),
        claim_rules,
        consent_login,
    })
}

fn compile_rule(
    src: &SourceFile,
    key: &str,
    r: &ClaimRuleSection,
    errors: &mut ConfigErrors,
) -> Option<ClaimRule> {
    let claim = r.claim.clone();
    match (&r.equals, &r.contains, &r.contains_any) {
        (Some(v), None, None) => Some(ClaimRule::Equals {
            claim,
            value: v.clone(),
        }),
        (None, Some(v), None) => Some(ClaimRule::Contains {
            claim,
            value: v.clone(),
        }),
        (None, None, Some(vs)) if !vs.is_empty() => Some(ClaimRule::ContainsAny {
            claim,
            values: vs.clone(),
        }),
        _ => {
            errors.push(src.error(
                key,
                format!("the rule for claim `{}` needs exactly one of `equals`, `contains`, `contains_any` (non-empty)", r.claim),
                "e.g. { claim = \"groups\", contains = \"mcp-users\" }",
            ));
            None
        }
    }
}

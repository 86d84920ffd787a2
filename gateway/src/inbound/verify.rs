//! One token → one [`Caller`], or the precise reason it was refused. The checks, in order:
//! size (in `mod.rs`) → shape and header (`alg` not `none`, no `crit`) → issuer (exact match
//! of `iss` against the trusted list) → algorithm allow-list → signing key (`kid`, and the
//! key's own `alg`) → signature, `exp`, `nbf`, `aud` (RFC 8707) → user claim → allowed
//! clients → claim rules → required scopes (403 step-up).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use serde_json::{Map, Value};

use super::Rejection;
use super::jwks::{KeyError, KeySource};
use crate::config::{ClaimRule, IssuerSpec};
use crate::identity::Caller;

#[derive(Debug)]
pub struct Issuer {
    pub spec: IssuerSpec,
    pub keys: KeySource,
}

impl Issuer {
    pub fn new(spec: IssuerSpec, keys: KeySource) -> Self {
        Self { spec, keys }
    }
}

pub async fn verify(issuers: &[Arc<Issuer>], token: &str) -> Result<Caller, Rejection> {
    let (header_json, claims_json) = unverified_parts(token)?;
    if header_json
        .get("alg")
        .and_then(Value::as_str)
        .is_some_and(|a| a.eq_ignore_ascii_case("none"))
    {
        return Err(Rejection::invalid(
            "unsigned tokens (alg none) are not accepted",
        ));
    }
    if header_json.get("crit").is_some() {
        return Err(Rejection::invalid(
            "the token's `crit` header names extensions this gateway does not support",
        ));
    }
    let header = decode_header(token)
        .map_err(|e| Rejection::invalid(format!("malformed token header: {e}")))?;
    let iss = claims_json
        .get("iss")
        .and_then(Value::as_str)
        .ok_or_else(|| Rejection::invalid("the token has no `iss` claim"))?;
    let issuer = issuers
        .iter()
        .find(|i| i.spec.issuer == iss)
        .ok_or_else(|| {
            Rejection::invalid(format!("issuer `{iss}` is not trusted by this gateway"))
        })?;
    let spec = &issuer.spec;
    if !spec.algorithms.contains(&header.alg) {
        return Err(Rejection::invalid(format!(
            "algorithm {:?} is not accepted for issuer `{iss}`",
            header.alg
        )));
    }
    let jwk = issuer
        .keys
        .key(header.kid.as_deref(), header.alg)
        .await
        .map_err(|e| match e {
            KeyError::UnknownKid(kid) => Rejection::invalid(format!(
                "signing key `{kid}` is not published by the issuer"
            )),
            KeyError::NoKid => {
                Rejection::invalid("the token names no `kid` and the issuer publishes several keys")
            }
            KeyError::Unavailable(why) => Rejection::unavailable(format!(
                "the issuer's signing keys cannot be fetched now ({why}); retry later"
            )),
        })?;
    if let Some(ka) = jwk.common.key_algorithm
        && Algorithm::try_from(ka).ok() != Some(header.alg)
    {
        return Err(Rejection::invalid(
            "the token's algorithm does not match its signing key",
        ));
    }
    let key = DecodingKey::from_jwk(&jwk)
        .map_err(|_| Rejection::invalid("the issuer's key cannot verify this algorithm"))?;

    let mut v = Validation::new(header.alg);
    v.set_issuer(&[iss]);
    v.set_audience(&spec.audiences);
    v.set_required_spec_claims(&["exp", "iss", "aud"]);
    v.validate_nbf = true;
    v.leeway = spec.leeway.as_secs();
    let data = decode::<Map<String, Value>>(token, &key, &v).map_err(|e| {
        Rejection::invalid(match e.kind() {
            ErrorKind::ExpiredSignature => "the token has expired".to_string(),
            ErrorKind::ImmatureSignature => {
                "the token is not valid yet (nbf is in the future)".to_string()
            }
            ErrorKind::InvalidAudience => format!(
                "the token's audience is not {}",
                spec.audiences.join(" or ")
            ),
            ErrorKind::InvalidIssuer => format!("the token's issuer is not {iss}"),
            ErrorKind::InvalidSignature => "the signature does not verify".to_string(),
            ErrorKind::InvalidAlgorithm => {
                "the token's algorithm does not match its key".to_string()
            }
            ErrorKind::MissingRequiredClaim(c) => format!("the token has no `{c}` claim"),
            ErrorKind::Base64(_)
            | ErrorKind::Json(_)
            | ErrorKind::Utf8(_)
            | ErrorKind::InvalidToken => {
                "malformed token: a part is not valid base64url JSON".to_string()
            }
            other => format!("the token was rejected ({other:?})"),
        })
    })?;
    caller_from(spec, data.claims)
}

/// Header and claims before verification: only used to choose the issuer and to refuse
/// what must never be verified at all.
type Claims = Map<String, Value>;

fn unverified_parts(token: &str) -> Result<(Claims, Claims), Rejection> {
    let malformed =
        || Rejection::invalid("malformed token: expected a signed JWT (three base64url parts)");
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed());
    };
    let decode_part = |p: &str| -> Result<Map<String, Value>, Rejection> {
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(p.trim_end_matches('='))
            .map_err(|_| malformed())?;
        serde_json::from_slice(&bytes).map_err(|_| malformed())
    };
    Ok((decode_part(h)?, decode_part(c)?))
}

pub fn caller_from(spec: &IssuerSpec, claims: Map<String, Value>) -> Result<Caller, Rejection> {
    let user = claims
        .get(&spec.user_claim)
        .and_then(Value::as_str)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            Rejection::invalid(format!(
                "the token has no `{}` claim naming the user",
                spec.user_claim
            ))
        })?
        .to_string();
    let agent = spec
        .agent_claims
        .iter()
        .find_map(|c| claims.get(c).and_then(Value::as_str))
        .map(str::to_string);
    if !spec.allowed_clients.is_empty()
        && !agent
            .as_ref()
            .is_some_and(|a| spec.allowed_clients.contains(a))
    {
        return Err(Rejection::invalid(format!(
            "client `{}` is not allowed to call this gateway",
            agent.as_deref().unwrap_or("(none)")
        )));
    }
    for rule in &spec.claim_rules {
        if !rule_holds(rule, &claims) {
            return Err(Rejection::invalid(format!(
                "the token does not satisfy the rule on claim `{}`",
                rule_claim(rule)
            )));
        }
    }
    let scopes = scopes_of(&claims);
    let missing: Vec<String> = spec
        .required_scopes
        .iter()
        .filter(|s| !scopes.contains(*s))
        .cloned()
        .collect();
    if !missing.is_empty() {
        return Err(Rejection::insufficient_scope(
            &spec.required_scopes,
            format!("the token lacks the scope(s) {}", missing.join(" ")),
        ));
    }
    let groups = spec
        .groups_claim
        .as_ref()
        .map(|c| strings(claims.get(c)))
        .unwrap_or_default();
    let tenant = spec
        .tenant_claim
        .as_ref()
        .and_then(|c| claims.get(c))
        .and_then(Value::as_str)
        .map(str::to_string);
    let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
    Ok(Caller {
        issuer: spec.issuer.clone(),
        user,
        agent,
        scopes,
        groups,
        tenant,
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(exp),
        claims,
    })
}

/// `scope` (space-separated, RFC 9068) or `scp` (string or array: Okta, Entra ID).
pub fn scopes_of(claims: &Map<String, Value>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for key in ["scope", "scp"] {
        match claims.get(key) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_string)),
            Some(Value::Array(a)) => {
                out.extend(a.iter().filter_map(Value::as_str).map(str::to_string))
            }
            _ => {}
        }
    }
    out
}

fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => vec![],
    }
}

fn rule_claim(rule: &ClaimRule) -> &str {
    match rule {
        ClaimRule::Equals { claim, .. }
        | ClaimRule::Contains { claim, .. }
        | ClaimRule::ContainsAny { claim, .. } => claim,
    }
}

fn rule_holds(rule: &ClaimRule, claims: &Map<String, Value>) -> bool {
    let values = strings(claims.get(rule_claim(rule)));
    match rule {
        ClaimRule::Equals { value, .. } => {
            claims.get(rule_claim(rule)).and_then(Value::as_str) == Some(value.as_str())
        }
        ClaimRule::Contains { value, .. } => values.iter().any(|v| v == value),
        ClaimRule::ContainsAny { values: wanted, .. } => values.iter().any(|v| wanted.contains(v)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scopes_from_either_claim() {
        let c = json!({"scope": "a b", "scp": ["c"]});
        let s = scopes_of(c.as_object().unwrap());
        assert_eq!(s.into_iter().collect::<Vec<_>>(), ["a", "b", "c"]);
    }

    #[test]
    fn claim_rules() {
        let c = json!({"groups": ["x", "y"], "tid": "t1"});
        let c = c.as_object().unwrap();
        assert!(rule_holds(
            &ClaimRule::Contains {
                claim: "groups".into(),
                value: "y".into()
            },
            c
        ));
        assert!(!rule_holds(
            &ClaimRule::Contains {
                claim: "groups".into(),
                value: "z".into()
            },
            c
        ));
        assert!(rule_holds(
            &ClaimRule::ContainsAny {
                claim: "groups".into(),
                values: vec!["z".into(), "x".into()]
            },
            c
        ));
        assert!(rule_holds(
            &ClaimRule::Equals {
                claim: "tid".into(),
                value: "t1".into()
            },
            c
        ));
        assert!(!rule_holds(
            &ClaimRule::Equals {
                claim: "groups".into(),
                value: "x".into()
            },
            c
        ));
    }

    #[test]
    fn malformed_tokens_are_refused_before_any_crypto() {
        assert!(unverified_parts("not-a-jwt").is_err());
        assert!(unverified_parts("a.b").is_err());
        assert!(unverified_parts("a.b.c.d").is_err());
    }
}

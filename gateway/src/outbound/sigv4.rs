//! `aws_sigv4`: requests signed with AWS Signature Version 4 (the `aws-sigv4` crate; never
//! hand-rolled). Credentials come from explicit secret references or the standard AWS chain
//! (`aws-config`: env, profile, web identity, ECS, IMDS).
//!
//! With `assume_role`, every call first assumes the role through STS with an inline session
//! policy narrowed to the one action the tool performs (the template's `{tool}`, `{target}`,
//! `{user}` filled in), a session name and `SourceIdentity` naming the calling user — so the
//! cloud's own audit trail names the person the agent acted for, and a leaked credential can
//! do one thing. Assumed credentials are cached per (policy, user) until expiry minus a skew.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_credential_types::Credentials;
use aws_credential_types::provider::ProvideCredentials;
use aws_sigv4::http_request::{
    PayloadChecksumKind, PercentEncodingMode, SignableBody, SignableRequest, SigningSettings,
    UriPathNormalizationMode, sign,
};
use aws_sigv4::sign::v4;
use futures::future::BoxFuture;
use http::HeaderName;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use tokio::sync::OnceCell;

use super::client_credentials::ClockDebug;
use super::{Attachment, Clock, CredentialError, CredentialProvider, OutboundRequest};
use crate::config::outbound::{SigV4Spec, fill_policy};
use crate::identity::Caller;

const SKEW: Duration = Duration::from_secs(60);

/// (filled session policy, raw user): what an assumed session is cached under.
type SessionKey = (String, Option<String>);

#[derive(Debug)]
pub struct SigV4 {
    spec: SigV4Spec,
    clock: ClockDebug,
    sdk: OnceCell<aws_config::SdkConfig>,
    assumed: Mutex<HashMap<SessionKey, Credentials>>,
    flights: Mutex<HashMap<SessionKey, Arc<tokio::sync::Mutex<()>>>>,
}

impl SigV4 {
    pub fn new(spec: SigV4Spec, clock: Clock) -> Self {
        Self {
            spec,
            clock: ClockDebug(clock),
            sdk: OnceCell::new(),
            assumed: Mutex::new(HashMap::new()),
            flights: Mutex::new(HashMap::new()),
        }
    }

    async fn sdk(&self) -> &aws_config::SdkConfig {
        self.sdk
            .get_or_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .region(aws_config::Region::new(self.spec.region.clone()));
                if let Some(c) = &self.spec.credentials {
                    loader = loader.credentials_provider(Credentials::new(
                        c.access_key_id.expose(),
                        c.secret_access_key.expose(),
                        c.session_token.as_ref().map(|t| t.expose().to_string()),
                        None,
                        "portcullis-config",
                    ));
                }
                if let Some(endpoint) = &self.spec.sts_endpoint {
                    loader = loader.endpoint_url(endpoint.as_str().trim_end_matches('/'));
                }
                loader.load().await
            })
            .await
    }

    async fn base_credentials(&self) -> Result<Credentials, CredentialError> {
        let provider = self.sdk().await.credentials_provider().ok_or_else(|| {
            CredentialError::Invalid("no AWS credentials: set access_key_id/secret_access_key or configure the AWS credential chain".into())
        })?;
        provider
            .provide_credentials()
            .await
            .map_err(|e| CredentialError::Unreachable(format!("AWS credential chain: {e}")))
    }

    /// The region requests are signed for.
    pub fn region(&self) -> &str {
        &self.spec.region
    }

    /// Credentials for this request: assumed per call when `assume_role` is set.
    pub async fn credentials(
        &self,
        caller: Option<&Caller>,
        tool: Option<&str>,
        target: &str,
    ) -> Result<Credentials, CredentialError> {
        let Some(role) = &self.spec.assume_role else {
            return self.base_credentials().await;
        };
        // The name IAM and CloudTrail see; the policy's `{user}` is the same string, so a
        // policy can compare it with `aws:SourceIdentity`.
        let name = caller.map(|c| aws_identity_name(&c.issuer, &c.user));
        // The gateway's own requests (no caller) get the role without a narrowing policy.
        let policy = match (&name, &role.session_policy) {
            (Some(u), Some(t)) => Some(fill_policy(t, tool.unwrap_or(""), target, u)),
            _ => None,
        };
        // Keyed on the raw identity (issuer and user): two users never share a session.
        let key = (
            policy.clone().unwrap_or_default(),
            caller.map(|c| format!("{}\u{0}{}", c.issuer, c.user)),
        );
        let fresh = |now: SystemTime| {
            self.assumed
                .lock()
                .get(&key)
                .cloned()
                .filter(|c| c.expiry().is_some_and(|e| now + SKEW < e))
        };
        if let Some(c) = fresh((self.clock.0)()) {
            return Ok(c);
        }
        // Single flight per (policy, user): concurrent calls share one AssumeRole.
        let flight = self.flights.lock().entry(key.clone()).or_default().clone();
        let _guard = flight.lock().await;
        let now = (self.clock.0)();
        if let Some(c) = fresh(now) {
            return Ok(c);
        }
        let sts = aws_sdk_sts::Client::new(self.sdk().await);
        let out = sts
            .assume_role()
            .role_arn(&role.role_arn)
            .role_session_name(session_name(name.as_deref()))
            .set_policy(policy)
            .set_source_identity(name.clone())
            .set_external_id(role.external_id.clone())
            .duration_seconds(i32::try_from(role.duration.as_secs()).unwrap_or(900))
            .send()
            .await
            .map_err(|e| match e.as_service_error() {
                Some(se) => CredentialError::Refused {
                    code: se.meta().code().unwrap_or("AssumeRole failed").to_string(),
                    description: se.meta().message().map(str::to_string),
                },
                None => CredentialError::Unreachable(format!("STS: {e}")),
            })?;
        let c = out
            .credentials()
            .ok_or_else(|| CredentialError::Invalid("STS returned no credentials".into()))?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        let creds = Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_string()),
            expiry,
            "sts-assume-role",
        );
        let mut m = self.assumed.lock();
        m.retain(|_, c| c.expiry().is_some_and(|e| now < e));
        m.insert(key, creds.clone());
        Ok(creds)
    }

    /// Sign one request; returns the headers to add.
    pub fn sign(
        &self,
        creds: &Credentials,
        req: &OutboundRequest<'_>,
        now: SystemTime,
    ) -> Result<Attachment, CredentialError> {
        let identity = creds.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.spec.region)
            .name(&self.spec.service)
            .time(now)
            .settings(settings_for(&self.spec.service))
            .build()
            .map_err(|e| CredentialError::Invalid(format!("SigV4 parameters: {e}")))?
            .into();
        let signable = SignableRequest::new(
            req.method,
            req.url.as_str(),
            req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(req.body),
        )
        .map_err(|e| CredentialError::Invalid(format!("cannot sign this request: {e}")))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|e| CredentialError::Invalid(format!("SigV4 signing failed: {e}")))?
            .into_parts();
        let mut out = Attachment::default();
        for (name, value) in instructions.headers() {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| CredentialError::Invalid("bad signed header".into()))?;
            out = out.header(name, value)?;
        }
        Ok(out)
    }
}

/// The name AWS sees for a caller (`SourceIdentity`, the session name's tail, the policy's
/// `{user}`): the user cleaned to IAM's `[\w+=,.@-]` and cut to 53 characters, then `.` and a
/// hash of (issuer, user). The hash is always there, so no user — from any issuer, with any
/// name — can produce another's name.
pub fn aws_identity_name(issuer: &str, user: &str) -> String {
    let clean: String = user
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@-_".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(53)
        .collect();
    let digest = Sha256::digest(format!("{issuer}\u{0}{user}").as_bytes());
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    format!("{clean}.{hash}")
}

/// User sessions are `u.<name>`; the gateway's own is `portcullis-gateway`, which no user
/// session name can equal.
fn session_name(name: Option<&str>) -> String {
    match name {
        Some(n) => format!("u.{n}"),
        None => "portcullis-gateway".into(),
    }
}

/// S3 signs differently: it wants `x-amz-content-sha256`, the path encoded once, and no
/// path normalisation (aws-sigv4's documented S3 settings).
fn settings_for(service: &str) -> SigningSettings {
    let mut settings = SigningSettings::default();
    if service.starts_with("s3") {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
        settings.percent_encoding_mode = PercentEncodingMode::Single;
        settings.uri_path_normalization_mode = UriPathNormalizationMode::Disabled;
    }
    settings
}

impl CredentialProvider for SigV4 {
    fn mode(&self) -> &'static str {
        "aws_sigv4"
    }

    fn attach<'a>(
        &'a self,
        req: &'a OutboundRequest<'a>,
    ) -> BoxFuture<'a, Result<Attachment, CredentialError>> {
        Box::pin(async move {
            let creds = self.credentials(req.caller(), req.tool, req.target).await?;
            self.sign(&creds, req, (self.clock.0)())
        })
    }

    fn aws(&self) -> Option<&SigV4> {
        Some(self)
    }

    fn signs_body(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_names_are_safe_and_never_shared() {
        let ok = |n: &str| {
            (2..=62).contains(&n.len())
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@-_".contains(c))
        };
        let a = aws_identity_name("https://idp", "alice@example.com");
        assert!(ok(&a) && a.starts_with("alice@example.com."), "{a}");
        let (b1, b2) = (
            aws_identity_name("https://idp", "bob smith"),
            aws_identity_name("https://idp", "bob/smith"),
        );
        assert!(ok(&b1) && ok(&b2) && b1 != b2);
        // A user named like another's cleaned name still gets a different name.
        assert_ne!(aws_identity_name("https://idp", &b1), b1);
        // The same subject at two issuers is two people.
        assert_ne!(
            aws_identity_name("https://a", "alice"),
            aws_identity_name("https://b", "alice")
        );
        let long = aws_identity_name("https://idp", &"y".repeat(200));
        assert!(ok(&long));
        assert!(ok(&aws_identity_name("https://idp", "x")));
        assert_ne!(
            session_name(Some(&aws_identity_name(
                "https://idp",
                "portcullis-gateway"
            ))),
            session_name(None)
        );
        assert!(session_name(Some(&long)).len() <= 64);
    }
}

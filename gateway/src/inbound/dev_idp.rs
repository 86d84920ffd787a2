//! The development identity provider (`[dev_idp]`), for the quickstart and tests only.
//!
//! It is an issuer like any other: `{public_url}/dev-idp`, with discovery and a JWKS served
//! by the gateway, and tokens that go through the same verification as a real IdP's. Its
//! ES256 key is generated on first use and kept (mode 0600) in the data directory, so
//! `portcullis dev-token` and the running gateway agree. It has no login page: tokens are
//! minted on the command line, which is why it must never face a network (`serve` refuses a
//! non-loopback address while it is on).

use std::path::Path;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::config::{DEFAULT_ALGORITHMS, IssuerSpec, ServerSettings};

#[derive(Debug)]
pub struct DevKey {
    encoding: EncodingKey,
    jwk: Jwk,
}

/// What `portcullis dev-token` puts in a token.
#[derive(Debug, Clone)]
pub struct DevTokenRequest {
    pub user: String,
    pub agent: String,
    pub scopes: Vec<String>,
    pub ttl: Duration,
}

impl DevKey {
    /// Read the key, or create it (and its directory) if it does not exist yet.
    pub fn load_or_create(path: &Path) -> Result<Self, String> {
        let pkcs8 = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path)?,
            Err(e) => {
                return Err(format!(
                    "cannot read the dev IdP key {}: {e}",
                    path.display()
                ));
            }
        };
        let encoding = EncodingKey::from_ec_der(&pkcs8);
        let mut jwk = Jwk::from_encoding_key(&encoding, Algorithm::ES256).map_err(|e| {
            format!(
                "the dev IdP key {} is not a P-256 key ({e}); delete it to make a new one",
                path.display()
            )
        })?;
        jwk.common.key_id = jwk.thumbprint(ThumbprintHash::SHA256).ok();
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        Ok(Self { encoding, jwk })
    }

    pub fn jwks(&self) -> JwkSet {
        JwkSet {
            keys: vec![self.jwk.clone()],
        }
    }

    /// Sign a token for `server`'s MCP endpoint.
    pub fn mint(&self, server: &ServerSettings, req: &DevTokenRequest) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let claims = json!({
            "iss": issuer_url(server),
            "aud": server.mcp_url(),
            "sub": req.user,
            "azp": req.agent,
            "client_id": req.agent,
            "scope": req.scopes.join(" "),
            "iat": now,
            "nbf": now,
            "exp": now + req.ttl.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let mut header = Header::new(Algorithm::ES256);
        header.kid = self.jwk.common.key_id.clone();
        header.typ = Some("at+jwt".into());
        jsonwebtoken::encode(&header, &claims, &self.encoding)
            .map_err(|e| format!("cannot sign: {e}"))
    }
}

fn create(path: &Path) -> Result<Vec<u8>, String> {
    let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map_err(|_| "cannot generate the dev IdP key".to_string())?;
    let bytes = doc.as_ref().to_vec();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    write_private(path, &bytes)
        .map_err(|e| format!("cannot write the dev IdP key {}: {e}", path.display()))?;
    tracing::info!(target: "portcullis::inbound", "created the dev IdP signing key {}", path.display());
    Ok(bytes)
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

pub fn issuer_url(server: &ServerSettings) -> String {
    format!(
        "{}/dev-idp",
        server.public_url.as_str().trim_end_matches('/')
    )
}

/// The dev issuer, verified like any other (ES256 only).
pub fn issuer_spec(server: &ServerSettings) -> IssuerSpec {
    debug_assert!(DEFAULT_ALGORITHMS.contains(&Algorithm::ES256));
    IssuerSpec {
        issuer: issuer_url(server),
        audiences: vec![server.mcp_url()],
        allowed_clients: vec![],
        required_scopes: vec![],
        algorithms: vec![Algorithm::ES256],
        leeway: Duration::from_secs(30),
        user_claim: "sub".into(),
        agent_claims: vec!["azp".into(), "client_id".into()],
        groups_claim: None,
        tenant_claim: None,
        jwks_uri: None,
        jwks_refetch_interval: Duration::from_secs(30),
        claim_rules: vec![],
    }
}

/// `GET /dev-idp/.well-known/openid-configuration`.
pub fn discovery(server: &ServerSettings) -> serde_json::Value {
    let issuer = issuer_url(server);
    json!({
        "issuer": issuer,
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "token_endpoint_auth_methods_supported": [],
        "service_documentation": "Portcullis development issuer: tokens come from `portcullis dev-token`; there is no login page."
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_created_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/dev.der");
        let a = DevKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let b = DevKey::load_or_create(&path).unwrap();
        assert_eq!(a.jwk, b.jwk);
        assert!(a.jwk.common.key_id.is_some());
    }
}

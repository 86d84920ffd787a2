//! The development identity provider (`[dev_idp]`), for the quickstart and tests only.
//!
//! It is an issuer like any other: `{public_url}/dev-idp`, with discovery and a JWKS served
//! by the gateway, and tokens that go through the same verification as a real IdP's. Its
//! ES256 key is generated on first use and kept (mode 0600) in the data directory, so
//! `portcullis dev-token` and the running gateway agree.
//!
//! It is also a small OAuth 2.1 authorization server, so MCP clients that log in by
//! themselves (mcp-remote, Claude Code, VS Code, the Inspector) work against the quickstart:
//! `metadata` (RFC 8414 / OIDC discovery), `register` (RFC 7591 dynamic registration),
//! `authorize` (authorization code + PKCE S256, with the `login` form: pick any user name,
//! loopback peers only), `token` (code and refresh grants). Its state lives in memory:
//! `store` (bounded expiring maps) and `ledger` (codes and refresh tokens, single-use). Whoever sits at the machine may become any user: that is why it must never face
//! a network (`serve` refuses a non-loopback address while it is on).

mod authorize;
#[cfg(test)]
mod flow_tests;
mod ledger;
pub mod login;
pub mod metadata;
mod register;
pub mod store;
mod token;
mod wire;

pub use wire::OAuthError;
use wire::{form_params, no_store, parse_scopes};

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use axum::Router;
use axum::extract::State;
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use http::StatusCode;
use jsonwebtoken::jwk::{Jwk, JwkSet, PublicKeyUse, ThumbprintHash};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::json;

use crate::config::{DEFAULT_ALGORITHMS, DevIdpSettings, IssuerSpec, ServerSettings};
use store::Expiring;

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
    /// Further claims (`groups`, `email`, `dept`, …), for trying policies; they cannot
    /// replace the claims above.
    pub claims: serde_json::Map<String, serde_json::Value>,
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

    /// Sign a token for `server`'s MCP endpoint; the agent is also the OAuth client id.
    pub fn mint(&self, server: &ServerSettings, req: &DevTokenRequest) -> Result<String, String> {
        self.mint_for_client(server, req, &req.agent)
    }

    /// Sign a token whose agent (`azp`) and OAuth client (`client_id`) may differ: a
    /// registered client is named by its `client_name` but identified by its `client_id`.
    pub fn mint_for_client(
        &self,
        server: &ServerSettings,
        req: &DevTokenRequest,
        client_id: &str,
    ) -> Result<String, String> {
        let now = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let mut claims = json!({
            "iss": issuer_url(server),
            "aud": server.mcp_url(),
            "sub": req.user,
            "azp": req.agent,
            "client_id": client_id,
            "iat": now,
            "nbf": now,
            "exp": now + req.ttl.as_secs(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        for (name, value) in &req.claims {
            if claims.get(name).is_none() {
                claims[name] = value.clone();
            }
        }
        // RFC 9068: `scope` lists granted scopes; none granted means no claim, not "".
        if !req.scopes.is_empty() {
            claims["scope"] = json!(req.scopes.join(" "));
        }
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
        // `portcullis dev-token --group` puts them here, for trying group policies.
        groups_claim: Some("groups".into()),
        tenant_claim: None,
        jwks_uri: None,
        jwks_refetch_interval: Duration::from_secs(30),
        claim_rules: vec![],
        // The consent pages sign users in with the dev IdP's own login form instead.
        consent_login: None,
    }
}

/// How long each kind of dev IdP state lives, and how many entries it may hold.
const CLIENTS: (usize, Duration) = (1_000, Duration::from_secs(30 * 24 * 3600));
const LOGIN_FORMS: (usize, Duration) = (1_000, Duration::from_secs(10 * 60));
const CODES: (usize, Duration) = (1_000, Duration::from_secs(60));
const REFRESH_TOKENS: (usize, Duration) = (10_000, Duration::from_secs(7 * 24 * 3600));

/// The running dev IdP: its key, what it mints for, and its in-memory state.
#[derive(Debug)]
pub struct DevIdp {
    key: DevKey,
    server: ServerSettings,
    token_ttl: Duration,
    clients: Expiring<String, register::Client>,
    logins: login::Forms<authorize::AuthRequest>,
    /// Codes and refresh tokens, each usable once; a used one presented again revokes its
    /// login, as it is a sign of theft (OAuth 2.1 §4.3.1, §6.1).
    ledger: ledger::Ledger,
}

impl DevIdp {
    pub fn new(key: DevKey, server: &ServerSettings, settings: &DevIdpSettings) -> Self {
        Self {
            key,
            server: server.clone(),
            token_ttl: settings.token_ttl,
            clients: Expiring::new(CLIENTS.0, CLIENTS.1),
            logins: login::Forms::new(LOGIN_FORMS.0, LOGIN_FORMS.1),
            ledger: ledger::Ledger::new(ledger::Limits {
                codes: CODES,
                refresh_tokens: REFRESH_TOKENS,
            }),
        }
    }

    pub fn jwks(&self) -> JwkSet {
        self.key.jwks()
    }

    pub fn issuer(&self) -> String {
        issuer_url(&self.server)
    }

    fn endpoint(&self, path: &str) -> String {
        format!("{}/{path}", self.issuer())
    }

    /// RFC 8707 `resource` values this IdP issues tokens for: the MCP URL (the tokens'
    /// audience), and the origin, which the root protected resource metadata names.
    fn is_own_resource(&self, resource: &str) -> bool {
        let mcp = self.server.mcp_url();
        let origin = self.server.public_url.as_str().trim_end_matches('/');
        let r = resource.trim_end_matches('/');
        r == mcp || r == origin
    }

    /// A token for alice, as `dev-token` would mint it.
    #[cfg(test)]
    pub fn mint_for_test(&self) -> String {
        let req = DevTokenRequest {
            user: "alice".into(),
            agent: "test".into(),
            scopes: vec![],
            ttl: Duration::from_secs(60),
            claims: Default::default(),
        };
        self.key.mint(&self.server, &req).unwrap()
    }
}

/// The dev IdP's own endpoints under `/dev-idp/`. All are public (no bearer token), and all
/// answer only requests addressed to this gateway's own host names: a web page that rebinds
/// its DNS name to 127.0.0.1 cannot drive the login form or the token endpoint.
pub fn routes(idp: Arc<DevIdp>) -> Router {
    Router::new()
        .route("/dev-idp/jwks", get(jwks))
        .route("/dev-idp/register", post(register::register))
        .route(
            "/dev-idp/authorize",
            get(authorize::start).post(authorize::finish),
        )
        .route("/dev-idp/token", post(token::token))
        .route_layer(axum::middleware::from_fn_with_state(
            idp.clone(),
            own_host_only,
        ))
        .with_state(idp)
}

async fn jwks(State(idp): State<Arc<DevIdp>>) -> Response {
    Json(idp.jwks()).into_response()
}

async fn own_host_only(
    State(idp): State<Arc<DevIdp>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    match host {
        Some(h) if host_allowed(&h, &idp.server.allowed_hosts) => next.run(req).await,
        _ => (
            StatusCode::FORBIDDEN,
            "The development identity provider answers only requests addressed to this gateway \
             (its public_url host or a loopback name). Fix: use the gateway's own address, or add \
             the host name to `server.allowed_hosts`.\n",
        )
            .into_response(),
    }
}

/// `host[:port]` against the allowed list; an entry without a port allows any port (as the
/// MCP endpoint's own check does).
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let split = |s: &str| -> Option<(String, Option<u16>)> {
        let a = http::uri::Authority::try_from(s).ok()?;
        let name = a.host().trim_matches(['[', ']']).to_ascii_lowercase();
        Some((name, a.port_u16()))
    };
    let Some((name, port)) = split(host) else {
        return false;
    };
    allowed
        .iter()
        .filter_map(|a| split(a))
        .any(|(n, p)| n == name && p.is_none_or(|p| Some(p) == port))
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

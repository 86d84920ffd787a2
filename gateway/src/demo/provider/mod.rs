//! "Acme Tasks": a small third-party service with its own OAuth 2.0 authorization server and
//! an MCP server that accepts only the access tokens it issued. It exists so that user consent
//! (3LO) can be tried and tested end to end on one machine: call → URL → sign in here →
//! approve → the call succeeds. **A demo, not for production**: anyone who reaches the sign-in
//! page may sign in as any user (no password), and everything lives in memory.
//!
//! `portcullis demo-provider --listen 127.0.0.1:PORT --redirect-uri URI` (hidden) serves, on
//! a loopback address only:
//! - `oauth` — RFC 8414 metadata and `/authorize` (code + PKCE S256, with the sign-in page
//!   of `page`); `token` — `/token` (code and refresh grants, refresh rotation with reuse
//!   detection) and `/revoke` (RFC 7009); all for one registered confidential client;
//! - `ledger` — codes, grants, access and refresh tokens (stored hashed, bounded, expiring);
//! - `tasks` — `/mcp` with `list_tasks` (`tasks:read`) and `add_task` (`tasks:write`) on a
//!   per-user list; every request needs `Authorization: Bearer <an access token from here>`.

mod ledger;
mod oauth;
mod page;
mod tasks;
#[cfg(test)]
mod tests;
mod token;

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use axum::Router;
use url::Url;

use crate::config::Secret;
use crate::inbound::dev_idp::login::Forms;

/// The environment variable that holds the client secret.
pub const SECRET_ENV: &str = "PORTCULLIS_DEMO_PROVIDER_SECRET";
/// The client secret when [`SECRET_ENV`] is not set.
pub const DEFAULT_SECRET: &str = "demo-secret";
/// The client id when `--client-id` is not given.
pub const DEFAULT_CLIENT_ID: &str = "portcullis-demo";
/// The scopes this provider knows.
pub const SCOPES: [&str; 2] = ["tasks:read", "tasks:write"];

/// How long a sign-in form stays usable, and how many may be pending.
const FORM_TTL: Duration = Duration::from_secs(10 * 60);
const MAX_PENDING_FORMS: usize = 1_000;

/// The one client this provider knows (a confidential client, like the gateway).
#[derive(Debug, Clone)]
pub struct Settings {
    pub client_id: String,
    /// `None`: the client is public (PKCE alone), as the quickstart registers the gateway.
    pub client_secret: Option<Secret>,
    /// Compared exactly with the `redirect_uri` of each request.
    pub redirect_uris: Vec<Url>,
    /// Lifetime of access tokens.
    pub token_ttl: Duration,
}

impl Settings {
    /// The settings from the command line, with the secret from [`SECRET_ENV`].
    pub fn from_cli(
        client_id: String,
        redirect_uris: Vec<Url>,
        token_ttl: Duration,
    ) -> anyhow::Result<Self> {
        if redirect_uris.is_empty() {
            bail!(
                "the demo provider needs at least one --redirect-uri: the gateway's OAuth callback URL, exactly as the gateway sends it"
            );
        }
        if token_ttl.is_zero() {
            bail!("--token-ttl must be longer than zero, e.g. 10m");
        }
        let client_secret = match std::env::var(SECRET_ENV) {
            Ok(s) if !s.is_empty() => Secret::new(s),
            _ => {
                tracing::warn!(
                    "demo provider: {SECRET_ENV} is not set, so the client secret is the demo default `{DEFAULT_SECRET}`"
                );
                Secret::new(DEFAULT_SECRET)
            }
        };
        Ok(Self {
            client_id,
            client_secret: Some(client_secret),
            redirect_uris,
            token_ttl,
        })
    }
}

/// Everything the endpoints share.
#[derive(Debug)]
struct Provider {
    /// The base URL, which is also the issuer (no trailing slash).
    issuer: String,
    settings: Settings,
    /// Authorization requests waiting for their sign-in form.
    forms: Forms<oauth::PendingAuthorization>,
    ledger: ledger::Ledger,
    tasks: tasks::TaskBook,
}

/// Refuse anything but a loopback address: the sign-in page asks for no password.
pub fn check_listen(addr: SocketAddr) -> anyhow::Result<SocketAddr> {
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        bail!(
            "refusing to serve the demo provider on {addr}: its sign-in page asks for no password, so anyone who reaches it could sign in as any user; use a loopback address such as 127.0.0.1:8932"
        )
    }
}

/// Serve forever on `addr` (loopback only), printing the base URL on stdout once listening.
pub async fn serve(addr: SocketAddr, settings: Settings) -> anyhow::Result<()> {
    let addr = check_listen(addr)?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let addr = listener.local_addr()?;
    let app = router(&format!("http://{addr}"), settings);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "http://{addr}")?;
    stdout.flush()?;
    drop(stdout);
    tracing::info!(
        "demo provider (Acme Tasks): OAuth metadata at http://{addr}/.well-known/oauth-authorization-server, MCP at http://{addr}/mcp"
    );
    axum::serve(listener, app).await?;
    Ok(())
}

/// Serve on `listener` for as long as the process runs, beside the gateway (`[demo_provider]`
/// in gateway.toml): one public client, `client_id`, redirecting to `redirect_uri`.
pub fn spawn_beside_gateway(
    listener: tokio::net::TcpListener,
    client_id: &str,
    redirect_uri: Url,
) -> anyhow::Result<String> {
    let addr = check_listen(listener.local_addr()?)?;
    let base = format!("http://{addr}");
    let app = router(
        &base,
        Settings {
            client_id: client_id.to_string(),
            client_secret: None,
            redirect_uris: vec![redirect_uri],
            token_ttl: Duration::from_secs(3600),
        },
    );
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("the demo provider stopped: {e}");
        }
    });
    Ok(base)
}

/// The whole service for the base URL `issuer`.
fn router(issuer: &str, settings: Settings) -> Router {
    let provider = Arc::new(Provider {
        issuer: issuer.trim_end_matches('/').to_string(),
        ledger: ledger::Ledger::new(settings.token_ttl),
        settings,
        forms: Forms::new(MAX_PENDING_FORMS, FORM_TTL),
        tasks: tasks::TaskBook::default(),
    });
    oauth::routes(provider.clone()).merge(tasks::routes(provider))
}

#[cfg(test)]
mod listen_tests {
    use super::*;

    #[test]
    fn only_loopback_addresses_are_served() {
        assert!(check_listen("127.0.0.1:0".parse().unwrap()).is_ok());
        assert!(check_listen("[::1]:0".parse().unwrap()).is_ok());
        for other in ["0.0.0.0:8932", "192.168.1.2:8932"] {
            let err = check_listen(other.parse().unwrap()).unwrap_err();
            assert!(err.to_string().contains("loopback"), "{err}");
        }
    }

    #[test]
    fn settings_need_a_redirect_uri_and_a_token_lifetime() {
        let uri = vec![Url::parse("http://127.0.0.1:8080/cb").unwrap()];
        let ttl = Duration::from_secs(600);
        let err = Settings::from_cli("c".into(), vec![], ttl).unwrap_err();
        assert!(err.to_string().contains("--redirect-uri"), "{err}");
        let err = Settings::from_cli("c".into(), uri, Duration::ZERO).unwrap_err();
        assert!(err.to_string().contains("--token-ttl"), "{err}");
    }
}

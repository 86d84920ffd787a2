//! A target's OAuth client, built on first use. Discovering a provider's endpoints is a
//! network call, and a target must load (and reload) while its provider is unreachable: the
//! first call or consent that needs the client resolves them, and a failure is retried by
//! the next one.

use std::sync::Arc;

use tokio::sync::OnceCell;
use url::Url;

use super::{AuthCodeError, AuthorizationCodeClient, ClientRegistration, ProviderEndpoints};
use crate::config::outbound::{
    AuthorizationCodeSpec, Provider, ProviderEndpoints as ConfiguredEndpoints,
};
use crate::outbound::Clock;

#[derive(Debug)]
pub struct LazyClient {
    /// `None` for a client handed over ready-made.
    recipe: Option<Recipe>,
    provider: Provider,
    cell: OnceCell<Arc<AuthorizationCodeClient>>,
}

#[derive(Debug)]
struct Recipe {
    spec: AuthorizationCodeSpec,
    redirect_uri: Url,
    http: reqwest::Client,
    clock: crate::outbound::client_credentials::ClockDebug,
}

impl LazyClient {
    /// The client `spec` describes, redirecting users back to `redirect_uri`.
    pub fn new(
        spec: AuthorizationCodeSpec,
        redirect_uri: Url,
        http: reqwest::Client,
        clock: Clock,
    ) -> Self {
        Self {
            provider: spec.provider,
            recipe: Some(Recipe {
                spec,
                redirect_uri,
                http,
                clock: crate::outbound::client_credentials::ClockDebug(clock),
            }),
            cell: OnceCell::new(),
        }
    }

    /// A client that is already built.
    pub fn ready(client: Arc<AuthorizationCodeClient>, provider: Provider) -> Self {
        Self {
            recipe: None,
            provider,
            cell: OnceCell::new_with(Some(client)),
        }
    }

    /// The preset the target names (`github`, …, `custom`).
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// The client if it was built already.
    pub fn resolved(&self) -> Option<&Arc<AuthorizationCodeClient>> {
        self.cell.get()
    }

    /// Who the account is at, in words: the preset's name ("GitHub"), or for `custom` the
    /// authorization server's host once known, else `fallback`.
    pub fn label(&self, fallback: &str) -> String {
        if let Some(name) = self
            .recipe
            .as_ref()
            .and_then(|r| r.spec.display_name.clone())
        {
            return name;
        }
        let preset = match self.provider {
            Provider::Github => "GitHub",
            Provider::Google => "Google",
            Provider::Microsoft => "Microsoft",
            Provider::Slack => "Slack",
            Provider::Salesforce => "Salesforce",
            Provider::Atlassian => "Atlassian",
            Provider::Custom => {
                let configured = self.recipe.as_ref().map(|r| match &r.spec.endpoints {
                    ConfiguredEndpoints::Discover { issuer } => issuer,
                    ConfiguredEndpoints::Urls {
                        authorization_url, ..
                    } => authorization_url,
                });
                let resolved = self.resolved().map(|c| &c.endpoints().authorization_url);
                return configured
                    .or(resolved)
                    .and_then(|u| {
                        let host = u.host_str()?;
                        Some(match u.port() {
                            Some(p) => format!("{host}:{p}"),
                            None => host.to_string(),
                        })
                    })
                    .unwrap_or_else(|| fallback.to_string());
            }
        };
        preset.to_string()
    }

    /// The client, its endpoints resolved (once; a failure is tried again next time).
    pub async fn get(&self) -> Result<Arc<AuthorizationCodeClient>, AuthCodeError> {
        self.cell
            .get_or_try_init(|| async {
                let Some(r) = &self.recipe else {
                    return Err(AuthCodeError::Misconfigured(
                        "the OAuth client of this target was never built".into(),
                    ));
                };
                let endpoints = ProviderEndpoints::resolve(&r.http, &r.spec).await?;
                let registration = ClientRegistration::from_spec(&r.spec, r.redirect_uri.clone())?;
                AuthorizationCodeClient::new(
                    endpoints,
                    registration,
                    r.http.clone(),
                    r.clock.0.clone(),
                )
                .map(Arc::new)
            })
            .await
            .cloned()
    }
}

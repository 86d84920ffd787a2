//! The swappable runtime: everything a request reads — the configuration snapshot, the
//! authenticator, the targets by name and their merged view — behind one `ArcSwap`. A request
//! loads it once ([`Live::load`]) and reads that one runtime from start to end; a reload
//! ([`Live::reload`]) builds a complete new runtime and swaps it in, so no request ever sees
//! half of one configuration and half of another.
//!
//! What survives a reload: MCP client sessions (they hold [`Live`], not a runtime), the
//! sessions of targets whose connection settings did not change, the authenticator (and the
//! dev IdP's logins) while `[inbound]`/`[dev_idp]` did not change, and the event stream
//! clients hear `list_changed` on. A removed target's session ends when the last call that
//! still uses it has finished (its handle is dropped with the old runtime).

mod reload;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use arc_swap::ArcSwap;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

pub use reload::watch;

use crate::catalog::{Catalog, follow_listings};
use crate::config::{self, Snapshot};
use crate::consent::Consents;
use crate::events::{CatalogEvent, Hub};
use crate::inbound::Authenticator;
use crate::input::HeldCalls;
use crate::outbound::{self, ConsentWiring, HttpClientError};
use crate::policy::Policies;
use crate::request_state::RequestStates;
use crate::targets::{self, Wiring};
use crate::vault::Vault;

/// One complete, immutable configuration in force.
#[derive(Debug)]
pub struct Runtime {
    pub snapshot: Arc<Snapshot>,
    /// `None` when inbound authentication is off (`inbound.mode = "none"`).
    pub auth: Option<Arc<Authenticator>>,
    pub catalog: Arc<Catalog>,
    /// The Cedar policies of `policies/`; `None` when there is no policy directory (every
    /// authenticated caller may call every tool).
    pub policies: Option<Arc<Policies>>,
}

/// The runtime in force, and what outlives any one runtime.
#[derive(Debug)]
pub struct Live {
    current: ArcSwap<Runtime>,
    /// What every target is built with (the event hub, the token endpoints' HTTP client).
    wiring: Wiring,
    /// For discovery and JWKS fetches of a reloaded authenticator.
    inbound_http: reqwest::Client,
    /// Users' consented grants; opened once, kept across reloads (`[vault]` changes at
    /// restart).
    vault: Vault,
    /// The consent hand-off of calls.
    consents: Consents,
    /// The key of every `requestState` (one per process: a restart makes older states
    /// unusable, and their callers start again).
    states: Arc<RequestStates>,
    /// Upstream calls waiting for their 2026-07-28 callers' answers; kept across reloads.
    held: HeldCalls,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    /// The problems of the last reload that failed (cleared by one that succeeds), for
    /// `/readyz` details.
    failed_reload: Mutex<Option<Vec<String>>>,
    /// Successful reloads since start, for `/readyz` (and tests waiting for one).
    reloads: AtomicU64,
}

/// Why the runtime could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartFailed {
    #[error(transparent)]
    HttpClient(#[from] HttpClientError),
    #[error("cannot open the token vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error("cannot set up user consent: {0}")]
    Consent(String),
    #[error("{0}")]
    Policies(config::ConfigErrors),
}

/// Why a reload changed nothing: each problem as `portcullis check` words it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadFailed(pub Vec<String>);

/// What a successful reload changed, for the log and for tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// Targets whose new settings could not be served by their old session (upstream,
    /// credential or connect timeout changed): reconnected.
    pub reconnected: Vec<String>,
    /// Settings that only take effect at the next restart, left as they were.
    pub not_applied: Vec<String>,
}

impl Live {
    /// Start the runtime for `snapshot`: open its vault, start connecting its targets, and
    /// keep the merged view of whichever runtime is current up to date.
    pub async fn start(
        snapshot: Snapshot,
        auth: Option<Arc<Authenticator>>,
        inbound_http: reqwest::Client,
        shutdown: CancellationToken,
    ) -> Result<Arc<Self>, StartFailed> {
        let policies = Policies::load(&snapshot.policies)
            .map_err(StartFailed::Policies)?
            .map(Arc::new);
        let vault = Vault::from_settings(&snapshot.vault).await?;
        tokio::spawn(purge_expired_consents(vault.clone(), shutdown.clone()));
        let public_url = &snapshot.server.public_url;
        let callback = url::Url::parse(&format!(
            "{}/consent/callback",
            public_url.as_str().trim_end_matches('/')
        ))
        .map_err(|e| {
            StartFailed::Consent(format!("public_url cannot carry the consent callback: {e}"))
        })?;
        let wiring = Wiring {
            hub: Hub::new(),
            token_http: outbound::token_http_client()?,
            consent: Some(ConsentWiring {
                vault: vault.clone(),
                callback,
            }),
            shutdown: shutdown.clone(),
        };
        let states =
            Arc::new(RequestStates::generate().map_err(|e| StartFailed::Consent(e.to_string()))?);
        let consents = Consents::new(
            vault.clone(),
            states.clone(),
            public_url,
            wiring.hub.clone(),
        )
        .map_err(StartFailed::Consent)?;
        let targets = targets::compile(&snapshot.targets, None, &wiring)?;
        let catalog = Arc::new(Catalog::new(&snapshot, targets, &wiring.hub, None));
        let hub = wiring.hub.clone();
        let live = Arc::new(Self {
            current: ArcSwap::from_pointee(Runtime {
                snapshot: Arc::new(snapshot),
                auth,
                catalog,
                policies,
            }),
            wiring,
            inbound_http,
            vault,
            consents,
            states,
            held: HeldCalls::default(),
            reloading: tokio::sync::Mutex::new(()),
            failed_reload: Mutex::new(None),
            reloads: AtomicU64::new(0),
        });
        let weak = Arc::downgrade(&live);
        follow_listings(&hub, shutdown, move || match weak.upgrade() {
            Some(live) => {
                live.load().catalog.rebuild();
                true
            }
            None => false,
        });
        Ok(live)
    }

    /// The consent hand-off of calls.
    pub fn consents(&self) -> &Consents {
        &self.consents
    }

    /// The key of every `requestState` this process gives 2026-07-28 callers.
    pub fn states(&self) -> &RequestStates {
        &self.states
    }

    /// Calls held while their 2026-07-28 callers answer what the upstream asked.
    pub fn held(&self) -> &HeldCalls {
        &self.held
    }

    /// The inbound HTTP client (discovery and JWKS), also used by the consent pages' login.
    pub fn inbound_http(&self) -> &reqwest::Client {
        &self.inbound_http
    }

    /// The HTTP client of token endpoints.
    pub fn token_http(&self) -> &reqwest::Client {
        &self.wiring.token_http
    }

    /// The runtime in force. Load once per request.
    pub fn load(&self) -> Arc<Runtime> {
        self.current.load_full()
    }

    /// Catalog changes (an upstream's `list_changed`, a reload), for telling clients.
    pub fn subscribe(&self) -> broadcast::Receiver<CatalogEvent> {
        self.wiring.hub.events.subscribe()
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// How many reloads succeeded since the gateway started.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// The problems of the last failed reload, while no later reload succeeded.
    pub fn failed_reload(&self) -> Option<Vec<String>> {
        self.failed_reload.lock().clone()
    }

    fn set_failed_reload(&self, problems: Option<Vec<String>>) {
        *self.failed_reload.lock() = problems;
    }

    /// Read the configuration again and, if it is valid as a whole, swap it in. An invalid
    /// configuration changes nothing: the old runtime keeps serving, and the problems are
    /// logged (as `portcullis check` prints them) and shown in `/readyz`.
    pub async fn reload(&self) -> Result<ReloadSummary, ReloadFailed> {
        let _one_at_a_time = self.reloading.lock().await;
        let old = self.load();
        let mut snapshot = match config::load(&old.snapshot.source) {
            Ok(s) => s,
            Err(errors) => {
                tracing::error!(
                    "configuration not reloaded; the previous one keeps serving. {errors}"
                );
                let problems: Vec<String> = errors.0.iter().map(|e| e.to_string()).collect();
                self.set_failed_reload(Some(problems.clone()));
                return Err(ReloadFailed(problems));
            }
        };
        let mut summary = ReloadSummary::default();

        // The listener and the HTTP surface were built from [server]: it changes at restart.
        snapshot.server.bound_to(old.snapshot.server.listen);
        if snapshot.server != old.snapshot.server {
            summary.not_applied.push("[server]".into());
            snapshot.server = old.snapshot.server.clone();
        }
        // The vault was opened at start with its key.
        if snapshot.vault != old.snapshot.vault {
            summary.not_applied.push("[vault]".into());
            snapshot.vault = old.snapshot.vault.clone();
        }
        // The dev IdP's endpoints and their state (registrations, logins) were set up at start.
        if snapshot.inbound.dev_idp != old.snapshot.inbound.dev_idp {
            summary.not_applied.push("[dev_idp]".into());
            snapshot.inbound.dev_idp = old.snapshot.inbound.dev_idp.clone();
        }
        // Keep the authenticator (its key caches) unless the issuers changed.
        let auth = if snapshot.inbound == old.snapshot.inbound {
            old.auth.clone()
        } else {
            match Authenticator::new(&snapshot, self.inbound_http.clone()) {
                Ok(auth) => {
                    let auth = auth.map(Arc::new);
                    if let Some(auth) = auth.clone() {
                        tokio::spawn(async move {
                            for (issuer, e) in auth.warm_up().await {
                                tracing::error!(%issuer, "cannot fetch the issuer's signing keys (retrying on demand; /readyz reports it): {e}");
                            }
                        });
                    }
                    auth
                }
                Err(e) => {
                    let problem = format!("the new [inbound] settings cannot be used: {e}");
                    tracing::error!(
                        "configuration not reloaded; the previous one keeps serving. {problem}"
                    );
                    self.set_failed_reload(Some(vec![problem.clone()]));
                    return Err(ReloadFailed(vec![problem]));
                }
            }
        };

        // Compile the new targets (unchanged ones keep their sessions) and their catalog.
        let catalog =
            match targets::compile(&snapshot.targets, Some(old.catalog.by_name()), &self.wiring) {
                Ok(targets) => {
                    Catalog::new(&snapshot, targets, &self.wiring.hub, Some(&old.catalog))
                }
                Err(e) => {
                    let problem = e.to_string();
                    tracing::error!(
                        "configuration not reloaded; the previous one keeps serving. {problem}"
                    );
                    self.set_failed_reload(Some(vec![problem.clone()]));
                    return Err(ReloadFailed(vec![problem]));
                }
            };
        for t in catalog.targets() {
            match old.catalog.target(t.name()) {
                None => summary.added.push(t.name().to_string()),
                Some(before) if !before.same_connections(t) => {
                    summary.reconnected.push(t.name().to_string());
                }
                Some(_) => {}
            }
        }
        summary.removed = old
            .catalog
            .targets()
            .filter(|t| catalog.target(t.name()).is_none())
            .map(|t| t.name().to_string())
            .collect();
        let catalog = Arc::new(catalog);
        // The new view is in place before the swap, and clients hear of it after.
        let changes = catalog.refresh_view();
        // The policies are checked against the tools the new catalog serves; any error keeps
        // the previous set (and everything else) serving.
        // Checking a large set against a large catalog takes seconds: off the async workers.
        let checked = {
            let (settings, view) = (snapshot.policies.clone(), catalog.view());
            tokio::task::spawn_blocking(move || load_policies(&settings, &view)).await
        };
        let policies =
            match checked.unwrap_or_else(|e| Err(vec![format!("the policy check failed: {e}")])) {
                Ok(p) => p,
                Err(problems) => {
                    tracing::error!(
                        "configuration not reloaded; the previous one keeps serving. {}",
                        problems.join("\n")
                    );
                    self.set_failed_reload(Some(problems.clone()));
                    return Err(ReloadFailed(problems));
                }
            };
        self.current.store(Arc::new(Runtime {
            snapshot: Arc::new(snapshot),
            auth,
            catalog: catalog.clone(),
            policies,
        }));
        catalog.announce(changes);
        self.set_failed_reload(None);
        self.reloads.fetch_add(1, Ordering::Relaxed);
        summary.log();
        Ok(summary)
    }
}

/// Read and check the policies of `settings` against `view`'s tools; warnings are logged.
/// `Err`: each problem as `portcullis check` prints it.
pub fn load_policies(
    settings: &config::PolicySettings,
    view: &crate::catalog::View,
) -> Result<Option<Arc<Policies>>, Vec<String>> {
    let policies = Policies::load(settings)
        .map_err(|errors| errors.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
    let Some(policies) = policies else {
        return Ok(None);
    };
    let findings = policies.check(view);
    for w in &findings.warnings {
        tracing::warn!(target: "portcullis::policy", "{w}");
    }
    if !findings.errors.is_empty() {
        return Err(findings.errors.0.iter().map(ToString::to_string).collect());
    }
    Ok(Some(Arc::new(policies)))
}

/// Pending consents nobody completed are removed once expired (they open nothing anyway).
async fn purge_expired_consents(vault: Vault, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(10 * 60));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = vault.purge_expired().await {
            tracing::warn!(target: "portcullis::vault", "expired consents could not be removed (retrying in 10 minutes): {e}");
        }
    }
}

impl ReloadSummary {
    fn log(&self) {
        let list = |names: &[String]| {
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        };
        tracing::info!(
            "configuration reloaded: targets added: {}; removed: {}; reconnected (upstream, credential or connect timeout changed): {}",
            list(&self.added),
            list(&self.removed),
            list(&self.reconnected),
        );
        if !self.not_applied.is_empty() {
            tracing::warn!(
                "{} changed but takes effect only at the next restart (the listener, public URL, hosts, origins, body limit, the vault and the development IdP are fixed while serving); kept as it was",
                self.not_applied.join(", ")
            );
        }
    }
}

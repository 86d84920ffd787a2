//! Command line: `serve`, `check`, `tools`, `dev-token`, `vault` (and the hidden
//! `demo-upstream` and `demo-provider`).

mod policy;
mod vault;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::catalog::Catalog;
use crate::config::InboundMode;
use crate::config::{self, McpTransport, Snapshot, TargetKind};
use crate::inbound::Authenticator;
use crate::inbound::dev_idp::{DevKey, DevTokenRequest};
use crate::runtime::{self, Live};
use crate::server::{Gateway, http};
use crate::targets::Health;
use crate::words::plural;

#[derive(Debug, Parser)]
#[command(
    name = "portcullis",
    version,
    about = "Portcullis: one MCP endpoint in front of many tool targets",
    long_about = "Portcullis is an MCP gateway. Agents connect to its /mcp endpoint; it merges the tools \
of every target registered in targets/*.toml (named `{target}__{tool}`) and routes each call to \
the target that owns it.\n\nStart with `portcullis check` to validate the configuration and see the \
catalog, then `portcullis serve`. Logs go to stderr; set PORTCULLIS_LOG (e.g. `debug` or \
`info,portcullis=debug`) to change the level, PORTCULLIS_LOG_FORMAT=json for JSON lines."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway until Ctrl-C or SIGTERM.
    Serve {
        #[command(flatten)]
        config: ConfigArg,
        /// Allow the development identity provider on a non-loopback address.
        #[arg(long)]
        i_know_this_is_insecure: bool,
    },
    /// Mint a token from the development identity provider ([dev_idp] in the config) and
    /// print it. Use it as `Authorization: Bearer <token>`.
    DevToken {
        #[command(flatten)]
        config: ConfigArg,
        /// The user the token names (`sub`).
        #[arg(long)]
        user: String,
        /// The agent (OAuth client) the token names (`azp`, `client_id`).
        #[arg(long, default_value = "dev-cli")]
        agent: String,
        /// A scope to grant; repeat for several.
        #[arg(long = "scope")]
        scopes: Vec<String>,
        #[command(flatten)]
        claims: policy::ClaimArgs,
        /// Lifetime, e.g. 15m, 1h (default: [dev_idp] token_ttl, 1h).
        #[arg(long)]
        ttl: Option<humantime::Duration>,
        /// The running gateway's address, when `server.listen` uses port 0: the port
        /// `portcullis serve` printed (`portcullis listening: http://127.0.0.1:PORT/mcp`).
        #[arg(long, value_name = "IP:PORT")]
        listening_on: Option<std::net::SocketAddr>,
    },
    /// Validate the configuration, connect to every target and print the tool catalog.
    /// Exits 1, listing every problem, if anything is wrong.
    Check(ConfigArg),
    /// Connect to every target and print the tool catalog as JSON.
    Tools(ConfigArg),
    /// The Cedar policies of `policies/`: print their schema, or explain a decision.
    Policy {
        #[command(subcommand)]
        action: PolicyCommand,
    },
    /// See and revoke users' consented grants in the token vault. Never prints a token.
    Vault {
        #[command(subcommand)]
        action: VaultCommand,
    },
    /// Serve the quickstart's demo MCP server (echo, add, word_count, slow, fail) on stdio, or
    /// with `--http 127.0.0.1:PORT` over streamable HTTP. `targets/demo.toml` runs it.
    #[command(hide = true)]
    DemoUpstream {
        /// Serve streamable HTTP at this loopback address instead of stdio (port 0: any).
        #[arg(long, value_name = "IP:PORT")]
        http: Option<std::net::SocketAddr>,
    },
    /// Serve "Acme Tasks", a demo third-party service for trying user consent locally: an
    /// OAuth authorization server and an MCP server that accepts only its tokens. Prints its
    /// base URL. The client secret comes from PORTCULLIS_DEMO_PROVIDER_SECRET.
    #[command(hide = true)]
    DemoProvider {
        /// The loopback address to listen on (port 0: any).
        #[arg(long, value_name = "IP:PORT")]
        listen: std::net::SocketAddr,
        /// The client id of the one registered client (the gateway).
        #[arg(long, default_value = crate::demo::provider::DEFAULT_CLIENT_ID)]
        client_id: String,
        /// A redirect URI of that client, matched exactly; repeat for several.
        #[arg(long = "redirect-uri", value_name = "URL", required = true)]
        redirect_uris: Vec<url::Url>,
        /// Lifetime of access tokens.
        #[arg(long, default_value = "10m")]
        token_ttl: humantime::Duration,
    },
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Print the schema policies are checked against: the base (policies/schema.cedarschema
    /// or the built-in one) and one action per tool of the live catalog, with its arguments.
    Schema(ConfigArg),
    /// Decide one call as the gateway would, and name the policies that decided it. Connects
    /// to the targets to learn their tools; needs no running gateway.
    Explain {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        args: policy::ExplainArgs,
    },
}

#[derive(Debug, Subcommand)]
enum VaultCommand {
    /// List a user's grants: target, agent, scopes, expiry.
    List {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        selection: vault::Selection,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Delete a user's grants (all, or one agent's and/or one target's); the next call that
    /// needs one asks the user to consent again.
    Revoke {
        #[command(flatten)]
        config: ConfigArg,
        #[command(flatten)]
        selection: vault::Selection,
    },
}

#[derive(Debug, clap::Args)]
struct ConfigArg {
    /// The gateway configuration file; targets are read from `targets_dir` beside it.
    #[arg(long, short, env = "PORTCULLIS_CONFIG", default_value = "gateway.toml")]
    config: PathBuf,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    crate::telemetry::init_logging();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve {
                config,
                i_know_this_is_insecure,
            } => serve(&config.config, i_know_this_is_insecure).await,
            Command::DevToken {
                config,
                user,
                agent,
                scopes,
                claims,
                ttl,
                listening_on,
            } => dev_token(
                &config.config,
                listening_on,
                DevTokenRequest {
                    user,
                    agent,
                    scopes,
                    ttl: ttl.map(Into::into).unwrap_or_default(),
                    claims: claims.to_map("groups"),
                },
            ),
            Command::Policy {
                action: PolicyCommand::Schema(a),
            } => policy::schema(&load(&a.config)?).await,
            Command::Policy {
                action: PolicyCommand::Explain { config, args },
            } => policy::explain(&load(&config.config)?, args).await,
            Command::Check(a) => check(&a.config).await,
            Command::Tools(a) => tools(&a.config).await,
            Command::Vault {
                action:
                    VaultCommand::List {
                        config,
                        selection,
                        json,
                    },
            } => vault::list(&config.config, &selection, json).await,
            Command::Vault {
                action: VaultCommand::Revoke { config, selection },
            } => vault::revoke(&config.config, &selection).await,
            Command::DemoUpstream { http } => crate::demo::serve(crate::demo::Mode::new(http)?)
                .await
                .map(|()| ExitCode::SUCCESS),
            Command::DemoProvider {
                listen,
                client_id,
                redirect_uris,
                token_ttl,
            } => {
                let listen = crate::demo::provider::check_listen(listen)?;
                let settings = crate::demo::provider::Settings::from_cli(
                    client_id,
                    redirect_uris,
                    token_ttl.into(),
                )?;
                crate::demo::provider::serve(listen, settings)
                    .await
                    .map(|()| ExitCode::SUCCESS)
            }
        }
    });
    // Do not wait for stdio children or sessions to wind down: they are cancelled already.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Snapshot> {
    config::load(path).map_err(|errors| anyhow::anyhow!("{errors}"))
}

/// `[demo_provider]`: the quickstart's demo third-party service, beside the gateway.
async fn start_demo_provider(
    addr: std::net::SocketAddr,
    server: &config::ServerSettings,
    path: &std::path::Path,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
        anyhow::anyhow!(
            "cannot start the demo provider on {addr}: {e}. Fix: stop the other process using that address, or change `demo_provider.listen` in {} (and the URLs in the target file that uses it)",
            path.display()
        )
    })?;
    let callback = url::Url::parse(&format!(
        "{}/consent/callback",
        server.public_url.as_str().trim_end_matches('/')
    ))?;
    let base = crate::demo::provider::spawn_beside_gateway(
        listener,
        crate::demo::provider::DEFAULT_CLIENT_ID,
        callback,
    )?;
    tracing::info!(
        "demo provider (Acme Tasks, a demo third-party service; no passwords, loopback only) at {base}"
    );
    Ok(())
}

async fn serve(path: &std::path::Path, insecure_dev_idp: bool) -> anyhow::Result<ExitCode> {
    let mut snapshot = load(path)?;
    let loopback = snapshot.server.listen.ip().is_loopback();
    if snapshot.inbound.dev_idp.is_some() {
        if !loopback && !insecure_dev_idp {
            anyhow::bail!(
                "[dev_idp] is on and `server.listen` ({}) is not a loopback address: anyone who \
                 reaches it could sign in as any user. Fix: remove [dev_idp] and configure a real \
                 issuer in [[inbound.issuers]] (docs/inbound.md), or listen on 127.0.0.1; to do it \
                 anyway, pass --i-know-this-is-insecure",
                snapshot.server.listen
            );
        }
        // Behind a reverse proxy on this machine every peer looks local: the public URL says
        // who can really reach the login page.
        let public_host = snapshot.server.public_url.host_str().unwrap_or_default();
        if !config::is_loopback_host(public_host) && !insecure_dev_idp {
            anyhow::bail!(
                "[dev_idp] is on and `server.public_url` ({}) is not a loopback URL: through the \
                 proxy that serves it, anyone could sign in as any user at the development login \
                 page. Fix: remove [dev_idp] and configure a real issuer in [[inbound.issuers]] \
                 (docs/inbound.md); to do it anyway, pass --i-know-this-is-insecure",
                snapshot.server.public_url
            );
        }
        tracing::warn!(
            "the development identity provider is ON: anyone at this machine can sign in as any user at /dev-idp/authorize, and tokens from `portcullis dev-token` are accepted. Never use it in production."
        );
    }
    if snapshot.inbound.mode == InboundMode::None {
        tracing::warn!(
            "inbound authentication is OFF (inbound.mode = \"none\"): every local process can call every tool. For local experiments only."
        );
    }
    let listener = tokio::net::TcpListener::bind(snapshot.server.listen)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot listen on {}: {e}. Fix: stop the other process using that address, or set `server.listen` in {} to a free address",
                snapshot.server.listen,
                path.display()
            )
        })?;
    snapshot.server.bound_to(listener.local_addr()?);
    if let Some(addr) = snapshot.demo_provider {
        start_demo_provider(addr, &snapshot.server, path).await?;
    }
    let shutdown = CancellationToken::new();
    let auth = Authenticator::new(&snapshot, inbound_http_client()?)
        .map_err(|e| anyhow::anyhow!(e))?
        .map(Arc::new);
    let mcp_url = snapshot.server.mcp_url();
    // Targets connect in the background: HTTP is served from the first moment, /readyz says
    // what is still connecting, and a call to a target that is not up yet gets an error naming it.
    let live = Live::start(
        snapshot,
        auth.clone(),
        inbound_http_client()?,
        shutdown.clone(),
    )
    .await?;
    let catalog = live.load().catalog.clone();
    let policies = live.load().policies.clone();
    let app = http::router(Gateway::new(live.clone()), shutdown.clone());
    let names: Vec<&str> = catalog.targets().map(|t| t.name()).collect();
    tracing::info!(
        "listening on {} (MCP endpoint {mcp_url}); connecting to {} in the background: {}",
        listener.local_addr()?,
        plural(names.len(), "target"),
        if names.is_empty() {
            "-".to_string()
        } else {
            names.join(", ")
        }
    );
    // Lines on stdout, for scripts and tests: HTTP is served; later, every target was tried.
    println!("portcullis listening: {mcp_url}");
    let startup = tokio::spawn(start_up(catalog, policies, auth, mcp_url, shutdown.clone()));
    // From here on, changes to gateway.toml and targets/ (and SIGHUP) reload the configuration.
    runtime::watch(live, shutdown.clone());
    let stop = shutdown.clone();
    // MCP answers are small writes (an SSE event, then the end of the stream): without
    // TCP_NODELAY, Nagle's algorithm and the client's delayed ACK add ~40 ms to every call.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        tokio::select! {
            () = wait_for_signal() => tracing::info!("shutting down"),
            () = stop.cancelled() => {}
        }
        stop.cancel();
    })
    .await?;
    match startup.await {
        Ok(Err(e)) => Err(e),
        _ => Ok(ExitCode::SUCCESS),
    }
}

/// How often `serve` says which targets it is still waiting for.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The first connection round of a starting gateway, in the background: connect every target
/// and fetch every issuer's keys, saying every few seconds what is still pending, then report
/// the outcome once. A catalog conflict (two targets claiming one tool name) stops the gateway,
/// as `check` would.
async fn start_up(
    catalog: Arc<Catalog>,
    policies: Option<Arc<crate::policy::Policies>>,
    auth: Option<Arc<Authenticator>>,
    mcp_url: String,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let started = tokio::time::Instant::now();
    let issuers = async {
        if let Some(auth) = &auth {
            for (issuer, e) in auth.warm_up().await {
                tracing::error!(%issuer, "cannot fetch the issuer's signing keys (retrying on demand; /readyz reports it): {e}");
            }
        }
    };
    let everything = futures::future::join(catalog.connect_all(), issuers);
    tokio::pin!(everything);
    let mut progress = tokio::time::interval_at(started + PROGRESS_EVERY, PROGRESS_EVERY);
    let (failures, ()) = loop {
        tokio::select! {
            done = &mut everything => break done,
            _ = progress.tick() => {
                let waiting: Vec<&str> = catalog
                    .targets()
                    .filter(|t| matches!(t.health(), Health::Down { .. }))
                    .map(|t| t.name())
                    .collect();
                tracing::info!(
                    "still connecting to {} after {} s: {}",
                    plural(waiting.len(), "target"),
                    started.elapsed().as_secs(),
                    waiting.join(", ")
                );
            }
            () = shutdown.cancelled() => return Ok(()),
        }
    };
    let conflicts = catalog.view().conflicts.clone();
    if !conflicts.is_empty() {
        shutdown.cancel();
        let lines: Vec<_> = conflicts
            .into_iter()
            .map(|c| format!("error: {}", c.0))
            .collect();
        anyhow::bail!("the tool catalog cannot be built:\n{}", lines.join("\n"));
    }
    let view = catalog.view();
    // The policies are checked against the tools now known; an error stops the gateway, as
    // `check` would fail.
    match &policies {
        Some(policies) => {
            // Seconds for a large set and catalog: off the async workers.
            let findings = {
                let (policies, view) = (policies.clone(), view.clone());
                tokio::task::spawn_blocking(move || policies.check(&view)).await?
            };
            for w in &findings.warnings {
                tracing::warn!(target: "portcullis::policy", "{w}");
            }
            if !findings.errors.is_empty() {
                shutdown.cancel();
                anyhow::bail!("the policies cannot be used: {}", findings.errors);
            }
            tracing::info!(target: "portcullis::policy", "policies in force: {}", policies.summary());
        }
        None => tracing::warn!(
            target: "portcullis::policy",
            "no policy directory: every authenticated caller may call every tool. Add policies/*.cedar (docs/policies.md) to decide who may call what"
        ),
    }
    let total = catalog.targets().len();
    if failures.is_empty() {
        tracing::info!(
            "ready in {}: {} from {} at {mcp_url}",
            crate::words::duration(started.elapsed()),
            plural(view.tools.len(), "tool"),
            plural(total, "target"),
        );
    } else {
        let down: Vec<&str> = failures.iter().map(|(name, _)| name.as_str()).collect();
        tracing::warn!(
            "serving {} from {} of {} at {mcp_url}; not connected: {} (retrying in the background; /readyz names the cause)",
            plural(view.tools.len(), "tool"),
            total - down.len(),
            plural(total, "target"),
            down.join(", ")
        );
    }
    println!("portcullis ready: {mcp_url}");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Connect everything once; returns the catalog and the problems found.
async fn connect(
    snapshot: &Snapshot,
    shutdown: &CancellationToken,
) -> anyhow::Result<(Arc<Catalog>, Vec<String>, Vec<String>)> {
    let catalog = Catalog::start(snapshot, shutdown.clone())?;
    let failures = catalog.connect_all().await;
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    for (name, e) in failures {
        let optional = catalog
            .targets()
            .any(|t| t.name() == name && t.spec().optional);
        if optional {
            warnings.push(format!(
                "{e} (the target is optional: it does not stop the gateway)"
            ));
        } else {
            problems.push(e.to_string());
        }
    }
    problems.extend(catalog.view().conflicts.iter().map(|c| c.0.clone()));
    problems.extend(catalog.view().unknown_tool_settings.iter().cloned());
    Ok((catalog, problems, warnings))
}

/// Check the policies against the catalog's tools; a line for `check` to print.
fn check_policies(
    snapshot: &Snapshot,
    view: &crate::catalog::View,
    problems: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> String {
    match crate::policy::Policies::load(&snapshot.policies) {
        Ok(None) => format!(
            "No policy directory ({}): every authenticated caller may call every tool.",
            snapshot.policies.dir.display()
        ),
        Ok(Some(policies)) => {
            let findings = policies.check(view);
            warnings.extend(findings.warnings);
            let checked = if findings.errors.is_empty() {
                "checked against the catalog's tools"
            } else {
                "NOT usable"
            };
            problems.extend(findings.errors.0.iter().map(ToString::to_string));
            format!("Policies: {}, {checked}.", policies.summary())
        }
        Err(errors) => {
            problems.extend(errors.0.iter().map(ToString::to_string));
            "Policies: NOT usable.".to_string()
        }
    }
}

async fn check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let snapshot = load(path)?;
    let shutdown = CancellationToken::new();
    let (catalog, mut problems, mut warnings) = connect(&snapshot, &shutdown).await?;
    let policies = check_policies(&snapshot, &catalog.view(), &mut problems, &mut warnings);
    println!(
        "Configuration {} parsed and validated; connected to the targets:\n",
        path.display()
    );
    println!("{:<20} {:<9} {:<6} UPSTREAM", "TARGET", "STATUS", "TOOLS");
    for t in catalog.targets() {
        let status = match t.health() {
            Health::Connected => "up",
            Health::Down { .. } => "DOWN",
            // Nothing to connect until a user calls it (a session per user).
            Health::PerUser { .. } => "per-user",
        };
        let upstream = match &t.spec().kind {
            TargetKind::Mcp(McpTransport::Http { url }, _) => url.to_string(),
            TargetKind::Mcp(McpTransport::Stdio { command, args, .. }, _) => {
                format!("stdio: {} {}", command.display(), args.join(" "))
            }
            TargetKind::Rest(rest) => match (&rest.source, &rest.base_url) {
                (_, Some(base)) => format!("{}: {base}", rest.kind()),
                (config::rest::RestSource::SpecUrl { url, .. }, None) => {
                    format!("openapi: servers of {url}")
                }
                _ => rest.kind().to_string(),
            },
            TargetKind::Lambda(l) => format!("lambda: {}", l.function),
        };
        println!(
            "{:<20} {:<9} {:<6} {}",
            t.name(),
            status,
            t.listing().tools.len(),
            upstream
        );
    }
    let view = catalog.view();
    println!("\n{:<48} {:<20} DESCRIPTION", "TOOL", "TARGET");
    for tool in &view.tools {
        let target = view
            .tool_routes
            .get(tool.name.as_ref())
            .map(|r| r.target.as_str())
            .unwrap_or("(gateway)");
        let desc: String = tool
            .description
            .as_deref()
            .unwrap_or("")
            .lines()
            .next()
            .unwrap_or("")
            .chars()
            .take(60)
            .collect();
        println!("{:<48} {:<20} {desc}", tool.name, target);
    }
    shutdown.cancel();
    println!("\n{policies}");
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    if problems.is_empty() {
        println!(
            "\n{} from {}.",
            plural(view.tools.len(), "tool"),
            plural(catalog.targets().len(), "target")
        );
        Ok(ExitCode::SUCCESS)
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        Ok(ExitCode::FAILURE)
    }
}

async fn tools(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let snapshot = load(path)?;
    let shutdown = CancellationToken::new();
    let (catalog, problems, warnings) = connect(&snapshot, &shutdown).await?;
    let view = catalog.view();
    let items: Vec<_> = view
        .tools
        .iter()
        .map(|tool| {
            let route = view.tool_routes.get(tool.name.as_ref());
            serde_json::json!({
                "name": tool.name,
                "target": route.map(|r| r.target.as_str()),
                "upstream_name": route.map(|r| r.upstream_name.as_str()),
                "description": tool.description,
                "inputSchema": tool.input_schema,
                "annotations": tool.annotations,
            })
        })
        .collect();
    println!("{}", serde_json::to_string_pretty(&items)?);
    shutdown.cancel();
    for w in &warnings {
        eprintln!("warning: {w}");
    }
    for p in &problems {
        eprintln!("error: {p}");
    }
    Ok(if problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// HTTP client for discovery and JWKS: no redirects (SSRF), bounded time.
fn inbound_http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| crate::outbound::HttpClientError::new("identity providers", &e))?)
}

/// Reads only `gateway.toml`'s [server] and [dev_idp]: minting a token must not depend on
/// every target's secrets being set in this shell.
fn dev_token(
    path: &std::path::Path,
    listening_on: Option<std::net::SocketAddr>,
    mut req: DevTokenRequest,
) -> anyhow::Result<ExitCode> {
    let (mut server, dev) =
        config::load_dev_idp(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    match listening_on {
        Some(addr) if server.listen == addr => {}
        Some(addr) if server.listen.port() == 0 && addr.ip() == server.listen.ip() => {
            server.bound_to(addr);
        }
        Some(addr) => anyhow::bail!(
            "--listening-on {addr} does not match `server.listen` ({}) in {}: it is only for a gateway configured with port 0. Fix: drop --listening-on, or pass the address that gateway printed",
            server.listen,
            path.display()
        ),
        None if server.listen.port() == 0 => anyhow::bail!(
            "`server.listen` uses port 0, so the token's audience (the gateway's URL) is unknown. Fix: pass --listening-on with the address `portcullis serve` printed, or set a fixed port in `server.listen`"
        ),
        None => {}
    }
    if req.ttl.is_zero() {
        req.ttl = dev.token_ttl;
    }
    let key = DevKey::load_or_create(&dev.key_file).map_err(|e| anyhow::anyhow!(e))?;
    let token = key.mint(&server, &req).map_err(|e| anyhow::anyhow!(e))?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

//! `portcullis vault list|revoke`: what an operator sees of users' consented grants, and how
//! to take them back. Nothing here ever prints a token: the listing type has none.

use std::path::Path;
use std::process::ExitCode;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config;
use crate::vault::{GrantFilter, GrantSummary, Vault};
use crate::words::plural;

/// Which grants a command is about: one user's, narrowed by agent and target.
#[derive(Debug, clap::Args)]
pub struct Selection {
    /// The user (as the inbound issuer names them, e.g. the token's `sub`).
    #[arg(long)]
    user: String,
    /// Only the grants for this agent (OAuth client).
    #[arg(long)]
    agent: Option<String>,
    /// Only the grants for this target (its file name without `.toml`).
    #[arg(long)]
    target: Option<String>,
    /// Only the grants of users of this issuer (needed when the user name exists at several).
    #[arg(long)]
    issuer: Option<String>,
}

impl Selection {
    fn filter(&self) -> GrantFilter {
        GrantFilter {
            user: self.user.clone(),
            agent: self.agent.clone(),
            target: self.target.clone(),
            issuer: self.issuer.clone(),
        }
    }

    fn describe(&self) -> String {
        let mut s = format!("user `{}`", self.user);
        if let Some(a) = &self.agent {
            s.push_str(&format!(", agent `{a}`"));
        }
        if let Some(t) = &self.target {
            s.push_str(&format!(", target `{t}`"));
        }
        if let Some(i) = &self.issuer {
            s.push_str(&format!(", issuer `{i}`"));
        }
        s
    }
}

/// The vault of the configuration at `path`, or `None` when it was never created (no
/// gateway has started with this configuration, so it holds no grant). Never creates a vault,
/// nor a key beside an existing one.
async fn open(path: &Path) -> anyhow::Result<Option<Vault>> {
    let settings = config::load_vault(path).map_err(|errors| anyhow::anyhow!("{errors}"))?;
    if !settings.path.exists() {
        return Ok(None);
    }
    let vault = Vault::from_settings(&settings)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the token vault: {e}"))?;
    Ok(Some(vault))
}

pub async fn list(path: &Path, selection: &Selection, json: bool) -> anyhow::Result<ExitCode> {
    let grants = match open(path).await? {
        Some(vault) => {
            let grants = vault.list_grants(&selection.filter()).await?;
            vault.close().await;
            grants
        }
        None => vec![],
    };
    if json {
        let rows: Vec<_> = grants.iter().map(as_json).collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if grants.is_empty() {
        println!("no grants for {}", selection.describe());
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{} for {}:",
        plural(grants.len(), "grant"),
        selection.describe()
    );
    for g in &grants {
        println!(
            "  target `{}`  agent {}  issuer {}\n    scopes: {}\n    expires: {}; refresh token: {}; stored {}",
            g.key.target,
            g.key
                .agent
                .as_deref()
                .filter(|a| !a.is_empty())
                .map_or_else(|| "(any)".to_string(), |a| format!("`{a}`")),
            g.key.issuer,
            if g.scopes.is_empty() {
                "(none)".to_string()
            } else {
                g.scopes.join(" ")
            },
            g.expires_at.map_or_else(|| "never".to_string(), date),
            if g.has_refresh_token { "yes" } else { "no" },
            date(g.updated_at),
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn revoke(path: &Path, selection: &Selection) -> anyhow::Result<ExitCode> {
    let Some(vault) = open(path).await? else {
        println!(
            "no grants for {}: the vault was never created",
            selection.describe()
        );
        return Ok(ExitCode::SUCCESS);
    };
    // The same name at two issuers is two people: revoke only when it is clear whose.
    if selection.issuer.is_none() {
        let mut issuers: Vec<String> = vault
            .list_grants(&selection.filter())
            .await?
            .into_iter()
            .map(|g| g.key.issuer)
            .collect();
        issuers.sort();
        issuers.dedup();
        if issuers.len() > 1 {
            vault.close().await;
            anyhow::bail!(
                "{} has grants from {} issuers ({}), and the same user name at two issuers is two different people; nothing was revoked. Fix: add --issuer with one of them",
                selection.describe(),
                issuers.len(),
                issuers.join(", ")
            );
        }
    }
    let deleted = vault.delete_grants(&selection.filter()).await?;
    vault.close().await;
    tracing::info!(
        target: "portcullis::vault",
        "revoked {} for {} from the command line",
        plural(deleted as usize, "grant"),
        selection.describe()
    );
    println!(
        "revoked {} for {}; the next call that needs one asks the user to consent again",
        plural(deleted as usize, "grant"),
        selection.describe()
    );
    Ok(ExitCode::SUCCESS)
}

fn date(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

fn as_json(g: &GrantSummary) -> serde_json::Value {
    serde_json::json!({
        "issuer": g.key.issuer,
        "user": g.key.user,
        "agent": g.key.agent,
        "target": g.key.target,
        "scopes": g.scopes,
        "expires_at": g.expires_at.map(date),
        "has_refresh_token": g.has_refresh_token,
        "stored_at": date(g.updated_at),
    })
}

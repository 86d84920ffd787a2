//! What triggers a reload: a change to `gateway.toml`, to a file in the targets directory or
//! to a policy or the schema in the policy directory (watched with the `notify` crate), and SIGHUP (`kill -HUP <pid>`). Editors save in bursts
//! (write a temporary file, rename it, touch it again): changes are gathered for a short
//! quiet period and answered with one reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::Live;

/// How long the files must stay quiet before a burst of changes is answered.
const QUIET: Duration = Duration::from_millis(300);

/// Reload `live` on every change to its configuration files and on SIGHUP, until `shutdown`.
/// A watcher that cannot start (e.g. no inotify instances left) is logged; SIGHUP still works.
pub fn watch(live: Arc<Live>, shutdown: CancellationToken) {
    let snapshot = live.load().snapshot.clone();
    let gateway_file = snapshot.source.clone();
    let targets_dir = snapshot.targets_dir.clone();
    let policies_dir = snapshot.policies.dir.clone();
    let (tx, rx) = mpsc::unbounded_channel::<()>();
    let watcher = start_watcher(&gateway_file, &targets_dir, &policies_dir, tx.clone());
    tokio::spawn(async move {
        // Owned by the task: dropping it stops watching.
        let _watcher = watcher;
        answer(live, rx, shutdown).await;
    });
    spawn_sighup(tx);
}

/// Gather triggers; after each quiet period, reload once.
async fn answer(
    live: Arc<Live>,
    mut triggers: mpsc::UnboundedReceiver<()>,
    shutdown: CancellationToken,
) {
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            t = triggers.recv() => if t.is_none() { return },
        }
        // Coalesce the rest of the burst.
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                t = tokio::time::timeout(QUIET, triggers.recv()) => match t {
                    Ok(Some(())) => continue,
                    Ok(None) | Err(_) => break,
                },
            }
        }
        // The outcome is logged (and kept for /readyz) by reload itself.
        let _ = live.reload().await;
    }
}

fn start_watcher(
    gateway_file: &Path,
    targets_dir: &Path,
    policies_dir: &Path,
    tx: mpsc::UnboundedSender<()>,
) -> Option<notify::RecommendedWatcher> {
    let gateway_dir = gateway_file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
    let gateway_name = gateway_file.file_name().map(ToOwned::to_owned);
    let targets = targets_dir.to_path_buf();
    let policies = policies_dir.to_path_buf();
    let handler = move |event: notify::Result<notify::Event>| {
        let Ok(event) = event else { return };
        if event.kind.is_access() {
            return;
        }
        // In the gateway file's folder only the gateway file matters; in the targets folder
        // every `*.toml` file does, and the OpenAPI specifications kept beside them
        // (`*.yaml`, `*.yml`, `*.json`); in the policy folder every `*.cedar` and the schema.
        let relevant = event.paths.iter().any(|p| {
            let is_gateway = p.file_name() == gateway_name.as_deref();
            let is_target = p.parent().is_some_and(|d| same_dir(d, &targets))
                && p.extension()
                    .is_some_and(|e| ["toml", "yaml", "yml", "json"].iter().any(|x| e == *x));
            let is_policy = p.parent().is_some_and(|d| same_dir(d, &policies))
                && p.extension()
                    .is_some_and(|e| e == "cedar" || e == "cedarschema");
            is_gateway || is_target || is_policy
        });
        if relevant {
            let _ = tx.send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(
                "cannot watch the configuration files ({e}); reload with `kill -HUP <pid>` instead"
            );
            return None;
        }
    };
    // A policy directory created while serving is read at the next reload (SIGHUP).
    let policies_dir = policies_dir.is_dir().then_some(policies_dir);
    for dir in [gateway_dir.as_path(), targets_dir]
        .into_iter()
        .chain(policies_dir)
    {
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {} for configuration changes ({e}); reload with `kill -HUP <pid>` instead",
                dir.display()
            );
        }
    }
    Some(watcher)
}

/// Paths from the watcher are absolute; configured ones may be relative.
fn same_dir(a: &Path, b: &Path) -> bool {
    a == b
        || match (a.canonicalize(), b.canonicalize()) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        }
}

#[cfg(unix)]
fn spawn_sighup(tx: mpsc::UnboundedSender<()>) {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(
                "cannot listen for SIGHUP ({e}); configuration changes are picked up from the files only"
            );
            return;
        }
    };
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP received: reloading the configuration");
            if tx.send(()).is_err() {
                return;
            }
        }
    });
}

#[cfg(not(unix))]
fn spawn_sighup(_tx: mpsc::UnboundedSender<()>) {}

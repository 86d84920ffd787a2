//! Gateway overhead per tool call: the same `echo` call made directly to the demo upstream
//! (streamable HTTP) and through Portcullis in front of it (dev-IdP token, one upstream
//! session), sequentially and with 16 concurrent callers; then two credentials compared on
//! the same upstream: an API key, and the calling user's own grant (3LO) read from the vault
//! (a grant stored beforehand, so every call is a vault hit). Prints percentiles; asserts
//! nothing.
//!
//! Run: `cargo bench -p portcullis-e2e --bench overhead` (release build; loopback only).
#![allow(clippy::unwrap_used)] // a benchmark may panic on setup failures

use std::process::Command;
use std::time::{Duration, Instant};

use portcullis_e2e::{Gateway, McpClient, binary, connect, spawn_until_line};
use rmcp::model::CallToolRequestParams;

const SEQUENTIAL: usize = 2_000;
const CONCURRENT: usize = 16;
const PER_TASK: usize = 250;

async fn call(c: &McpClient, tool: &str) -> Duration {
    let args = serde_json::json!({"text": "ping"})
        .as_object()
        .cloned()
        .unwrap();
    let started = Instant::now();
    let r = c
        .peer()
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args))
        .await
        .unwrap();
    assert_ne!(r.is_error, Some(true));
    started.elapsed()
}

fn report(label: &str, mut samples: Vec<Duration>, wall: Duration) {
    samples.sort();
    let p = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize].as_secs_f64() * 1e6;
    println!(
        "{label:<34} n={:<6} p50={:>7.0}µs p90={:>7.0}µs p99={:>7.0}µs  {:>7.0} calls/s",
        samples.len(),
        p(0.5),
        p(0.9),
        p(0.99),
        samples.len() as f64 / wall.as_secs_f64()
    );
}

async fn run(label: &str, url: &str, token: Option<String>, tool: &str) {
    let c = connect(url, token.as_deref()).await;
    for _ in 0..200 {
        call(&c, tool).await; // warm up
    }
    let started = Instant::now();
    let mut samples = Vec::with_capacity(SEQUENTIAL);
    for _ in 0..SEQUENTIAL {
        samples.push(call(&c, tool).await);
    }
    report(&format!("{label}, sequential"), samples, started.elapsed());

    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..CONCURRENT {
        let (url, token, tool) = (url.to_string(), token.clone(), tool.to_string());
        tasks.spawn(async move {
            let c = connect(&url, token.as_deref()).await;
            let mut s = Vec::with_capacity(PER_TASK);
            for _ in 0..PER_TASK {
                s.push(call(&c, &tool).await);
            }
            s
        });
    }
    let samples: Vec<Duration> = tasks.join_all().await.into_iter().flatten().collect();
    report(
        &format!("{label}, {CONCURRENT} concurrent"),
        samples,
        started.elapsed(),
    );
}

#[tokio::main]
async fn main() {
    let mut cmd = Command::new(binary("portcullis-demo", "portcullis-demo"));
    cmd.args(["--http", "127.0.0.1:0"]);
    let (_demo, demo_url) =
        spawn_until_line(cmd, "portcullis-demo", "http://", Duration::from_secs(60)).unwrap();

    let target = format!("[mcp]\nurl = \"{demo_url}\"\n");
    // The upstream ignores credentials: the two differ only in the gateway's work.
    let api_key = format!(
        "[mcp]\nurl = \"{demo_url}\"\n[auth]\nmode = \"api_key\"\nkey = \"env:BENCH_API_KEY\"\n"
    );
    let three_lo = format!(
        "[mcp]\nurl = \"{demo_url}\"\n[auth]\nmode = \"oauth2_authorization_code\"\nprovider = \"custom\"\n\
         authorization_url = \"http://127.0.0.1:9/authorize\"\ntoken_url = \"http://127.0.0.1:9/token\"\n\
         client_id = \"bench\"\nscopes = [\"read\"]\n\
         [tools.echo]\ninput_schema = {{ type = \"object\" }}\n"
    );
    let gw = tokio::task::spawn_blocking(move || {
        Gateway::start_with_env(
            "[dev_idp]\n",
            &[("demo", target), ("keyed", api_key), ("user", three_lo)],
            &[("BENCH_API_KEY", "bench-api-key")],
        )
        .unwrap()
    })
    .await
    .unwrap();
    let token = gw.dev_token(&["--user", "bench", "--agent", "bench-agent"]);
    seed_grant(&gw).await;

    run("direct to the demo upstream", &demo_url, None, "echo").await;
    run(
        "through Portcullis (JWT checked)",
        &gw.url,
        Some(token.clone()),
        "demo__echo",
    )
    .await;
    run(
        "through Portcullis, api_key",
        &gw.url,
        Some(token.clone()),
        "keyed__echo",
    )
    .await;
    run(
        "through Portcullis, 3LO vault hit",
        &gw.url,
        Some(token),
        "user__echo",
    )
    .await;
}

/// Store bench's grant for target `user` in the running gateway's vault (SQLite allows a
/// second process), as a consent would: no expiry, so every call is a vault hit.
async fn seed_grant(gw: &Gateway) {
    use portcullis::config::{Secret, SecretRef};
    use portcullis::vault::{GrantKey, Kek, NewGrant, Vault};
    let data = gw.dir.path().join(".data");
    let kek = Kek::load(&SecretRef::File(data.join("vault.key")), gw.dir.path()).unwrap();
    let vault = Vault::open(&data.join("vault.sqlite3"), kek).await.unwrap();
    let key = GrantKey {
        issuer: format!("{}/dev-idp", gw.base()),
        user: "bench".into(),
        agent: Some("bench-agent".into()),
        target: "user".into(),
    };
    let grant = NewGrant {
        scopes: vec!["read".into()],
        access_token: Secret::new("bench-user-token"),
        refresh_token: None,
        expires_at: None,
    };
    vault.store_grant(&key, &grant).await.unwrap();
    vault.close().await;
}

//! Gateway overhead per tool call: the same `echo` call made directly to the demo upstream
//! (streamable HTTP) and through Portcullis in front of it (dev-IdP token, one upstream
//! session), sequentially and with 16 concurrent callers. Prints percentiles; asserts nothing.
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
    let gw = tokio::task::spawn_blocking(move || {
        Gateway::start("[dev_idp]\n", &[("demo", target)]).unwrap()
    })
    .await
    .unwrap();
    let token = gw.dev_token(&["--user", "bench"]);

    run("direct to the demo upstream", &demo_url, None, "echo").await;
    run(
        "through Portcullis (JWT checked)",
        &gw.url,
        Some(token),
        "demo__echo",
    )
    .await;
}

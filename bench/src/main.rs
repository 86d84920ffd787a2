//! `cargo run --release -p portcullis-bench`: every scenario of docs/benchmarks.md "Gateways
//! side by side" in one run. It starts the benchmark upstream, Portcullis in front of it
//! (without auth; with JWT + api_key + a Cedar policy), ContextForge when Python 3.12 is there
//! (`bench/contextforge/start.sh`), agentgateway when `AGENTGATEWAY_BIN` names a binary, and
//! measures them with the same client in interleaved rounds. It prints a Markdown report and
//! asserts only that every call succeeded and every listing was complete.
#![allow(clippy::unwrap_used)] // a benchmark may panic on setup failures

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use portcullis_bench::client::{Client, Endpoint, Era};
use portcullis_bench::load::{self, Budget, Sample};
use portcullis_bench::procs::{self, Gateway, Proc};
use portcullis_bench::procstat;

#[derive(Parser, Debug)]
#[command(about = "Portcullis benchmark harness: gateways side by side in front of one upstream")]
struct Args {
    #[command(subcommand)]
    command: Option<Sub>,
    /// A short run that shows the harness works (CI); its figures are not worth quoting.
    #[arg(long, env = "PORTCULLIS_BENCH_QUICK", value_parser = clap::builder::FalseyValueParser::new())]
    quick: bool,
    /// Interleaved rounds; the report gives the median of each figure.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Leave ContextForge out even when Python 3.12 is available.
    #[arg(long)]
    no_contextforge: bool,
    /// An agentgateway binary to compare with (built by hand; see docs/benchmarks.md).
    #[arg(long, env = "AGENTGATEWAY_BIN")]
    agentgateway: Option<PathBuf>,
    /// Also write the report to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Measure only the paths whose name contains this (and the direct path), e.g. "JWT".
    #[arg(long)]
    only: Option<String>,
    /// tools/call only: leave out the listing and idle-session scenarios.
    #[arg(long)]
    calls_only: bool,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Serve the benchmark upstream (the harness starts it so; see `upstream.rs`).
    Upstream {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:0")]
        listen: std::net::SocketAddr,
        /// How many tools to list (`echo` and fillers).
        #[arg(long, default_value_t = 1)]
        tools: usize,
    },
}

/// How much load each scenario gets.
#[derive(Debug, Clone, Copy)]
struct Plan {
    warmup: u64,
    sequential: Budget,
    clients: usize,
    per_client: Budget,
    rate: u32,
    rate_for: Duration,
    listing_targets: usize,
    listing_tools: usize,
    listing_samples: usize,
    idle_users: usize,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                warmup: 20,
                sequential: Budget {
                    calls: 200,
                    limit: Duration::from_secs(5),
                },
                clients: 4,
                per_client: Budget {
                    calls: 25,
                    limit: Duration::from_secs(5),
                },
                rate: 200,
                rate_for: Duration::from_secs(1),
                listing_targets: 5,
                listing_tools: 20,
                listing_samples: 2,
                idle_users: 2,
            }
        } else {
            Self {
                warmup: 300,
                sequential: Budget {
                    calls: 3_000,
                    limit: Duration::from_secs(15),
                },
                clients: 16,
                per_client: Budget {
                    calls: 500,
                    limit: Duration::from_secs(15),
                },
                rate: 1_000,
                rate_for: Duration::from_secs(5),
                listing_targets: 100,
                listing_tools: 100,
                listing_samples: 20,
                idle_users: 100,
            }
        }
    }
}

/// Sessions each idle-session user opens (the gateway's per-user cap is 100).
const SESSIONS_PER_USER: usize = 100;

/// Something the client calls: the upstream itself or a gateway in front of it.
struct Subject {
    label: String,
    endpoint: Endpoint,
    /// The process whose CPU and memory are charged to this path.
    pid: u32,
    eras: Vec<Era>,
    idle: procstat::Usage,
    /// Slow peers get a shorter budget (their calls take tens of milliseconds).
    slow: bool,
}

/// One path's figures in one round and era.
#[derive(Debug, Clone)]
struct Round {
    sequential: Sample,
    concurrent: Sample,
    /// Gateway CPU seconds per 1,000 calls, over the concurrent run.
    cpu_per_1000: f64,
    fixed: Option<Sample>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(Sub::Upstream { listen, tools }) = args.command {
        return portcullis_bench::upstream::run(listen, tools).await;
    }
    let plan = Plan::new(args.quick);
    let rounds = if args.quick { 1 } else { args.rounds.max(1) };
    let started = Instant::now();

    let portcullis = procs::portcullis_bin()?;
    let (upstream, upstream_url) = procs::upstream(1)?;
    let mut subjects = vec![Subject {
        label: "direct (the upstream)".into(),
        endpoint: Endpoint {
            url: upstream_url.parse()?,
            token: None,
            echo: "echo".into(),
        },
        pid: upstream.pid(),
        eras: vec![Era::Legacy, Era::Modern],
        idle: procstat::usage(upstream.pid()),
        slow: false,
    }];

    let noauth = start_portcullis(&portcullis, &upstream_url, false)?;
    subjects.push(Subject {
        label: "Portcullis, no auth".into(),
        endpoint: Endpoint {
            url: noauth.url.parse()?,
            token: None,
            echo: "bench__echo".into(),
        },
        pid: noauth.proc.pid(),
        eras: vec![Era::Legacy, Era::Modern],
        idle: procstat::usage(noauth.proc.pid()),
        slow: false,
    });
    let secured = start_portcullis(&portcullis, &upstream_url, true)?;
    let token = secured.dev_token(&["--user", "bench", "--agent", "bench-agent"])?;
    subjects.push(Subject {
        label: "Portcullis, JWT + api_key + policy".into(),
        endpoint: Endpoint {
            url: secured.url.parse()?,
            token: Some(token.clone()),
            echo: "bench__echo".into(),
        },
        pid: secured.proc.pid(),
        eras: vec![Era::Legacy, Era::Modern],
        idle: procstat::usage(secured.proc.pid()),
        slow: false,
    });

    let mut peers: Vec<Proc> = Vec::new();
    if let Some(bin) = &args.agentgateway {
        for jwt in [false, true] {
            let auth = jwt
                .then(|| agentgateway_jwt(&secured, &token))
                .transpose()?;
            let (proc, url) = start_agentgateway(bin, &upstream_url, auth.as_ref())?;
            subjects.push(Subject {
                label: format!("agentgateway, {}", if jwt { "JWT" } else { "no auth" }),
                endpoint: Endpoint {
                    url: url.parse()?,
                    token: jwt.then(|| token.clone()),
                    echo: "bench_echo".into(),
                },
                pid: proc.pid(),
                eras: vec![Era::Legacy],
                idle: procstat::usage(proc.pid()),
                slow: false,
            });
            peers.push(proc);
        }
    } else {
        println!("agentgateway: left out (set AGENTGATEWAY_BIN to a binary to compare with it)");
    }
    let contextforge = if args.no_contextforge {
        println!("ContextForge: left out (--no-contextforge)");
        None
    } else {
        match ContextForge::start(&upstream_url) {
            Ok(cf) => {
                subjects.push(Subject {
                    label: "ContextForge, JWT".into(),
                    endpoint: Endpoint {
                        url: cf.url.parse()?,
                        token: Some(cf.token.clone()),
                        echo: cf.echo.clone(),
                    },
                    pid: cf.pid,
                    eras: vec![Era::Legacy],
                    idle: procstat::usage(cf.pid),
                    slow: true,
                });
                Some(cf)
            }
            // CI requires every peer (PORTCULLIS_REQUIRE_PEERS=1, as for the tests).
            Err(e) if std::env::var("PORTCULLIS_REQUIRE_PEERS").as_deref() == Ok("1") => {
                return Err(e.context("ContextForge is required (PORTCULLIS_REQUIRE_PEERS=1)"));
            }
            Err(e) => {
                println!("ContextForge: left out ({e:#})");
                None
            }
        }
    };

    if let Some(only) = &args.only {
        let mut i = 0;
        subjects.retain(|s| {
            i += 1;
            i == 1 || s.label.contains(only.as_str())
        });
    }
    for s in &subjects {
        eprintln!("{}: pid {}", s.label, s.pid);
    }
    // Interleaved rounds: every path once per round, so a noisy moment hits all of them.
    let mut results: Vec<Vec<(Era, Round)>> = vec![Vec::new(); subjects.len()];
    for round in 0..rounds {
        for (i, s) in subjects.iter().enumerate() {
            for &era in &s.eras {
                eprintln!(
                    "round {}/{rounds}: {} ({})",
                    round + 1,
                    s.label,
                    era.version()
                );
                let r = measure(s, era, &plan)
                    .await
                    .with_context(|| format!("{} ({})", s.label, era.version()))?;
                results[i].push((era, r));
            }
        }
    }
    let mut report = String::new();
    report += &calls_table(&subjects, &results, &plan, rounds);

    if !args.calls_only {
        report += &listing(&portcullis, &plan).await?;
        let secured_subject = subjects
            .iter()
            .find(|s| s.pid == secured.proc.pid())
            .context("the secured gateway is measured")?;
        let mut idle_rows = vec![idle_sessions(secured_subject, &secured, &plan).await?];
        for s in subjects
            .iter()
            .filter(|s| s.label.starts_with("agentgateway, no"))
        {
            idle_rows.push(idle_sessions_open(s, std::slice::from_ref(&s.endpoint), &plan).await?);
        }
        report += &idle_table(&idle_rows, &plan);
    }
    report += &format!(
        "\nThe whole run took {:.0} s ({} round{}).\n",
        started.elapsed().as_secs_f64(),
        rounds,
        if rounds == 1 { "" } else { "s" }
    );
    println!("\n{report}");
    if let Some(path) = &args.report {
        std::fs::write(path, &report)?;
    }
    drop(contextforge);
    drop(peers);
    Ok(())
}

/// Portcullis with one MCP target `bench` in front of the upstream: no inbound auth, or the
/// dev IdP's JWTs with an api_key credential toward the upstream and a Cedar policy that
/// permits the call (so the policy is evaluated on every call).
fn start_portcullis(bin: &Path, upstream: &str, secured: bool) -> Result<Gateway> {
    if !secured {
        let target = format!("[mcp]\nurl = \"{upstream}\"\n");
        return Gateway::start(
            bin,
            "[inbound]\nmode = \"none\"\n",
            &[("bench".into(), target)],
            None,
            &[],
        );
    }
    let target = format!(
        "[mcp]\nurl = \"{upstream}\"\n[auth]\nmode = \"api_key\"\nkey = \"env:BENCH_API_KEY\"\n"
    );
    let policy = "@id(\"bench-agent-calls-bench\")\n\
                  permit(principal, action in Action::\"CallTool\", resource in Target::\"bench\")\n\
                  when { context.agent == Agent::\"bench-agent\" };\n";
    Gateway::start(
        bin,
        "[dev_idp]\n",
        &[("bench".into(), target)],
        Some(policy),
        &[("BENCH_API_KEY", "bench-api-key")],
    )
}

fn median(v: Vec<f64>) -> f64 {
    quantile(v, 0.5)
}

/// The value at quantile `q` (nearest rank).
fn quantile(mut v: Vec<f64>, q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

async fn measure(s: &Subject, era: Era, plan: &Plan) -> Result<Round> {
    let (sequential, per_client) = if s.slow {
        (
            Budget {
                calls: plan.sequential.calls.min(300),
                limit: plan.sequential.limit,
            },
            Budget {
                calls: plan.per_client.calls.min(30),
                limit: plan.per_client.limit,
            },
        )
    } else {
        (plan.sequential, plan.per_client)
    };
    let warmup = if s.slow { 10 } else { plan.warmup };
    let sequential = load::sequential(&s.endpoint, era, warmup, sequential).await?;
    let before = procstat::usage(s.pid);
    let concurrent = load::max_rate(&s.endpoint, era, plan.clients, per_client).await?;
    let after = procstat::usage(s.pid);
    let cpu_per_1000 = (after.cpu_s - before.cpu_s) / concurrent.calls() as f64 * 1000.0;
    // A fixed rate the path cannot sustain measures only its queue.
    let fixed = if concurrent.rate() > plan.rate as f64 * 1.2 {
        Some(load::fixed_rate(&s.endpoint, era, plan.clients, plan.rate, plan.rate_for).await?)
    } else {
        None
    };
    Ok(Round {
        sequential,
        concurrent,
        cpu_per_1000,
        fixed,
    })
}

fn calls_table(
    subjects: &[Subject],
    results: &[Vec<(Era, Round)>],
    plan: &Plan,
    rounds: usize,
) -> String {
    let mut out = format!(
        "## tools/call: added latency, throughput, CPU and memory\n\n\
         Sequential: one client, {} calls (after {} warm-up); concurrent: {} clients × {} calls; \
         fixed rate: {} calls/s for {} s from {} clients, latency from the moment each call is released into the queue. \
         \"Added\" is the path's percentile minus the direct path's in the same round and era. \
         Median of {rounds} round{}.\n\n\
         | path | era | sequential p50 / p90 / p99 / max | added p50 / p90 / p99 | {} clients calls/s (× direct) | added at {}/s p50 / p99 | CPU-s per 1,000 calls | RSS idle → peak |\n\
         |---|---|---|---|---|---|---|---|\n",
        plan.sequential.calls,
        plan.warmup,
        plan.clients,
        plan.per_client.calls,
        plan.rate,
        plan.rate_for.as_secs(),
        plan.clients,
        if rounds == 1 { "" } else { "s" },
        plan.clients,
        plan.rate,
    );
    let direct = &results[0];
    let qs = [0.5, 0.9, 0.99];
    for (s, rs) in subjects.iter().zip(results) {
        for &era in &s.eras {
            let mine: Vec<(usize, &Round)> = rs
                .iter()
                .filter(|(e, _)| *e == era)
                .map(|(_, r)| r)
                .enumerate()
                .collect();
            let base: Vec<&Round> = direct
                .iter()
                .filter(|(e, _)| *e == era)
                .map(|(_, r)| r)
                .collect();
            let m = |f: &dyn Fn(&Round) -> f64| median(mine.iter().map(|(_, r)| f(r)).collect());
            let added = |f: &dyn Fn(&Round) -> f64| {
                median(mine.iter().map(|(i, r)| f(r) - f(base[*i])).collect())
            };
            let seq: Vec<String> = qs
                .iter()
                .map(|&q| fmt_us(m(&|r| r.sequential.us(q))))
                .chain([fmt_us(m(&|r| r.sequential.max_us()))])
                .collect();
            let add: Vec<String> = if s.pid == subjects[0].pid {
                vec!["—".into()]
            } else {
                // Not the maximum: one outlier of either path decides it.
                qs.iter()
                    .map(|&q| fmt_us(added(&|r| r.sequential.us(q))))
                    .collect()
            };
            let rate = m(&|r| r.concurrent.rate());
            let base_rate = median(base.iter().map(|r| r.concurrent.rate()).collect());
            let fixed = if mine
                .iter()
                .all(|(i, r)| r.fixed.is_some() && base[*i].fixed.is_some())
            {
                let f = |q: f64| added(&|r| r.fixed.as_ref().map_or(0.0, |x| x.us(q)));
                if s.pid == subjects[0].pid {
                    format!(
                        "({} / {} itself)",
                        fmt_us(m(&|r| r.fixed.as_ref().map_or(0.0, |x| x.us(0.5)))),
                        fmt_us(m(&|r| r.fixed.as_ref().map_or(0.0, |x| x.us(0.99))))
                    )
                } else {
                    format!("{} / {}", fmt_us(f(0.5)), fmt_us(f(0.99)))
                }
            } else {
                "cannot sustain".into()
            };
            out += &format!(
                "| {} | {} | {} | {} | {:.0} (× {:.2}) | {} | {:.3} | {:.1} → {:.1} MiB |\n",
                s.label,
                era.version(),
                seq.join(" / "),
                add.join(" / "),
                rate,
                rate / base_rate,
                fixed,
                m(&|r| r.cpu_per_1000),
                s.idle.rss_kib as f64 / 1024.0,
                procstat::usage(s.pid).peak_kib as f64 / 1024.0,
            );
        }
    }
    out
}

fn fmt_us(us: f64) -> String {
    if us.abs() >= 10_000.0 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{us:.0} µs")
    }
}

/// `tools/list` of targets × tools through Portcullis (paged from its catalog) against the
/// upstream's own listing of the same number of tools in one answer.
async fn listing(portcullis: &Path, plan: &Plan) -> Result<String> {
    let total = plan.listing_targets * plan.listing_tools;
    let (_small, small_url) = procs::upstream(plan.listing_tools)?;
    let (big, big_url) = procs::upstream(total)?;
    let targets: Vec<(String, String)> = (0..plan.listing_targets)
        .map(|i| {
            (
                format!("t{i:03}"),
                format!("[mcp]\nurl = \"{small_url}\"\n"),
            )
        })
        .collect();
    let gw = Gateway::start(
        portcullis,
        "[inbound]\nmode = \"none\"\n",
        &targets,
        None,
        &[],
    )?;
    let direct = Endpoint {
        url: big_url.parse()?,
        token: None,
        echo: "echo".into(),
    };
    let through = Endpoint {
        url: gw.url.parse()?,
        token: None,
        echo: "t000__echo".into(),
    };
    let mut out = format!(
        "\n## tools/list of {total} tools\n\n\
         The upstream lists {total} tools in one answer; Portcullis serves {} targets × {} tools \
         (each target the upstream with {} tools) from its catalog, in pages of 500. A sample is \
         a whole walk (every page, following nextCursor) by one client on a kept-alive \
         connection; {} samples after one untimed walk.\n\n\
         | path | era | pages | p50 | p90 | max | × upstream's own (p50) | RSS after |\n|---|---|---|---|---|---|---|---|\n",
        plan.listing_targets, plan.listing_tools, plan.listing_tools, plan.listing_samples
    );
    for era in [Era::Legacy, Era::Modern] {
        let mut base = 0.0;
        for (label, ep, pid) in [
            ("direct (the upstream)", &direct, big.pid()),
            ("Portcullis", &through, gw.proc.pid()),
        ] {
            let mut c = Client::connect(ep, era).await?;
            let (n, pages) = c.list_all().await?;
            if n != total {
                bail!("{label} listed {n} tools, not {total}");
            }
            let mut times = Vec::new();
            for _ in 0..plan.listing_samples {
                let t = Instant::now();
                let (n, _) = c.list_all().await?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                if n != total {
                    bail!("{label} listed {n} tools, not {total}");
                }
            }
            let p50 = median(times.clone());
            let p90 = quantile(times.clone(), 0.9);
            if pid == big.pid() {
                base = p50;
            }
            out += &format!(
                "| {label} | {} | {pages} | {p50:.1} ms | {p90:.1} ms | {:.1} ms | {:.2} | {:.0} MiB |\n",
                era.version(),
                quantile(times, 1.0),
                p50 / base,
                procstat::usage(pid).rss_kib as f64 / 1024.0
            );
        }
    }
    Ok(out)
}

/// One path's idle-session figures.
struct IdleRow {
    label: String,
    sessions: usize,
    before_kib: u64,
    after_kib: u64,
    open_s: f64,
}

/// Open `idle_users × 100` 2025-11-25 sessions on Portcullis with JWTs, one user per
/// connection (the gateway keeps at most 100 sessions per user).
async fn idle_sessions(s: &Subject, gw: &Gateway, plan: &Plan) -> Result<IdleRow> {
    let endpoints: Vec<Endpoint> = (0..plan.idle_users)
        .map(|i| Endpoint {
            token: gw
                .dev_token(&["--user", &format!("idle-{i}"), "--agent", "bench-agent"])
                .ok(),
            ..s.endpoint.clone()
        })
        .collect();
    idle_sessions_open(s, &endpoints, plan).await
}

/// Open `idle_users × 100` sessions spread over `endpoints` (one connection each, cycled),
/// each `initialize` + `initialized`, and leave them idle.
async fn idle_sessions_open(s: &Subject, endpoints: &[Endpoint], plan: &Plan) -> Result<IdleRow> {
    let sessions = plan.idle_users * SESSIONS_PER_USER;
    let before = procstat::usage(s.pid).rss_kib;
    let t = Instant::now();
    let per_endpoint = sessions / endpoints.len();
    let mut tasks = tokio::task::JoinSet::new();
    for chunk in endpoints.chunks(endpoints.len().div_ceil(8)) {
        let chunk = chunk.to_vec();
        tasks.spawn(async move {
            let mut kept = Vec::new();
            for ep in &chunk {
                let mut c = Client::connect(ep, Era::Legacy).await?;
                for _ in 1..per_endpoint {
                    c.open_session().await?;
                }
                kept.push(c);
            }
            anyhow::Ok(kept)
        });
    }
    let mut kept = Vec::new();
    while let Some(r) = tasks.join_next().await {
        kept.extend(r??);
    }
    let open_s = t.elapsed().as_secs_f64();
    let after = procstat::usage(s.pid).rss_kib;
    drop(kept);
    Ok(IdleRow {
        label: s.label.clone(),
        sessions,
        before_kib: before,
        after_kib: after,
        open_s,
    })
}

fn idle_table(rows: &[IdleRow], plan: &Plan) -> String {
    let mut out = format!(
        "\n## Idle sessions\n\n\
         {} 2025-11-25 sessions opened (`initialize` + `initialized`) and left idle, {} per user \
         on Portcullis (its per-user cap).\n\n\
         | path | sessions | RSS before → after | per session | time to open |\n|---|---|---|---|---|\n",
        plan.idle_users * SESSIONS_PER_USER,
        SESSIONS_PER_USER
    );
    for r in rows {
        out += &format!(
            "| {} | {} | {:.1} → {:.1} MiB | {:.1} KiB | {:.1} s |\n",
            r.label,
            r.sessions,
            r.before_kib as f64 / 1024.0,
            r.after_kib as f64 / 1024.0,
            r.after_kib.saturating_sub(r.before_kib) as f64 / r.sessions as f64,
            r.open_s
        );
    }
    out
}

/// The JWT settings agentgateway needs to accept the dev IdP's tokens: issuer, audience and
/// the JWKS (fetched from the running gateway into a file).
struct AgwJwt {
    issuer: String,
    audience: String,
    jwks: PathBuf,
}

fn agentgateway_jwt(gw: &Gateway, token: &str) -> Result<AgwJwt> {
    use base64::Engine as _;
    let payload = token.split('.').nth(1).context("a JWT has three parts")?;
    let claims: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?;
    let issuer = claims["iss"].as_str().context("no iss")?.to_string();
    let audience = match &claims["aud"] {
        serde_json::Value::Array(a) => a[0].as_str().unwrap_or_default().to_string(),
        v => v.as_str().unwrap_or_default().to_string(),
    };
    let jwks_url = format!("{}/dev-idp/jwks", gw.base());
    let body = Command::new("curl")
        .args(["-sf", &jwks_url])
        .output()
        .with_context(|| format!("fetch {jwks_url}"))?
        .stdout;
    let jwks = gw.dir.path().join("agentgateway-jwks.json");
    std::fs::write(&jwks, body)?;
    Ok(AgwJwt {
        issuer,
        audience,
        jwks,
    })
}

fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// agentgateway (stateful MCP mode) with one target `bench` → the upstream, at
/// `http://127.0.0.1:PORT/mcp`; tools are prefixed `bench_`.
fn start_agentgateway(bin: &Path, upstream: &str, jwt: Option<&AgwJwt>) -> Result<(Proc, String)> {
    let port = free_port()?;
    let dir = tempfile::tempdir()?.keep();
    let auth = match jwt {
        Some(j) => format!(
            "      policies:\n        mcpAuthentication:\n          mode: strict\n          issuer: {}\n          audiences: [{}]\n          jwks:\n            file: {}\n          resourceMetadata:\n            resource: http://127.0.0.1:{port}/mcp\n",
            j.issuer,
            j.audience,
            j.jwks.display()
        ),
        None => String::new(),
    };
    let config = format!(
        "binds:\n- port: {port}\n  listeners:\n  - routes:\n    - backends:\n      - mcp:\n          prefixMode: always\n          targets:\n          - name: bench\n            mcp:\n              host: {upstream}\n{auth}"
    );
    let file = dir.join("config.yaml");
    std::fs::write(&file, config)?;
    let mut cmd = Command::new(bin);
    cmd.arg("-f").arg(&file);
    for var in ["ADMIN_ADDR", "STATS_ADDR", "READINESS_ADDR"] {
        cmd.env(var, format!("127.0.0.1:{}", free_port()?));
    }
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join("agentgateway.log"))?);
    let proc = Proc(cmd.spawn().context("start agentgateway")?);
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!(
                "agentgateway did not listen on {port} within 30 s; its log: {}",
                dir.join("agentgateway.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((proc, format!("http://127.0.0.1:{port}/mcp")))
}

/// ContextForge started by `bench/contextforge/start.sh` (installs it on first use).
struct ContextForge {
    url: String,
    token: String,
    echo: String,
    pid: u32,
}

impl ContextForge {
    fn start(upstream: &str) -> Result<Self> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("contextforge/start.sh");
        let port = free_port()?;
        eprintln!("ContextForge: starting (the first run installs it: a few minutes)");
        let out = Command::new("bash")
            .arg(&script)
            .arg(port.to_string())
            .arg(upstream)
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("run {}", script.display()))?;
        if !out.status.success() {
            bail!("{} failed (its output is above)", script.display());
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let line = text.lines().last().context("start.sh printed nothing")?;
        let mut parts = line.split_whitespace();
        let (Some(url), Some(token), Some(echo), Some(pid)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            bail!("start.sh printed `{line}`, not `URL TOKEN TOOL PID`");
        };
        Ok(Self {
            url: url.into(),
            token: token.into(),
            echo: echo.into(),
            pid: pid.parse()?,
        })
    }
}

impl Drop for ContextForge {
    fn drop(&mut self) {
        // Its workers are children of the main process: stop the whole group.
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.pid))
            .status();
    }
}

//! The cost of Cedar policies, in process (no network): one `tools/call` decision
//! ([`tool_call`]) and the policy part of a `tools/list` ([`Lister::shows`] over every tool),
//! with no policies, 10 and 1,000, over a catalog of 1,000 tools (10 targets × 100 tools, each
//! with a typed input schema); then loading and checking the 1,000-policy set.
//!
//! "Cold" is the first question about a tool after a load (it includes building the tool's
//! policy slice); "warm" asks again. Every sample is one timed iteration (`Instant` around
//! one call, or around one whole listing); the table gives the median and p99. It asserts
//! only that the generated policies check and decide as designed, never a timing.
//!
//! Run: `cargo bench -p portcullis --bench policies` (release build). Quick mode, for CI:
//! `PORTCULLIS_BENCH_QUICK=1` or `-- --quick`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // a benchmark may panic on setup failures

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use portcullis::catalog::{Route, View};
use portcullis::config::{PolicyMode, PolicySettings};
use portcullis::identity::Caller;
use portcullis::policy::{Decision, Lister, Policies, tool_call};
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Map, Value, json};

const TARGETS: usize = 10;
const TOOLS_PER_TARGET: usize = 100;
const TOOLS: usize = TARGETS * TOOLS_PER_TARGET;

/// Iteration counts; quick mode only proves that the benchmark runs.
struct Plan {
    /// Fresh loads whose first call of every tool is timed (cold), per caller.
    cold_call_rounds: usize,
    /// Passes over every tool, per caller, after one untimed pass (warm).
    warm_call_rounds: usize,
    /// Listings, each after a fresh load (cold).
    cold_lists: usize,
    /// Listings after three untimed ones (warm).
    warm_lists: usize,
    /// `Policies::load` and `Policies::check` runs.
    loads: usize,
    checks: usize,
}

const FULL: Plan = Plan {
    cold_call_rounds: 3,
    warm_call_rounds: 10,
    cold_lists: 10,
    warm_lists: 30,
    loads: 15,
    checks: 5,
};

const QUICK: Plan = Plan {
    cold_call_rounds: 1,
    warm_call_rounds: 1,
    cold_lists: 2,
    warm_lists: 3,
    loads: 2,
    checks: 1,
};

fn tool_name(i: usize) -> String {
    format!(
        "t{}__tool_{:03}",
        i / TOOLS_PER_TARGET,
        i % TOOLS_PER_TARGET
    )
}

/// 1,000 tools, each with `repo` (string, required), `count` (integer), `draft` (boolean) and
/// a free-form `note`; one in three is read-only.
fn catalog() -> View {
    let schema = json!({
        "type": "object",
        "required": ["repo"],
        "properties": {
            "repo": {"type": "string"},
            "count": {"type": "integer"},
            "draft": {"type": "boolean"},
            "note": {"type": "string"}
        }
    });
    let schema = Arc::new(schema.as_object().unwrap().clone());
    let mut view = View::default();
    for i in 0..TOOLS {
        let name = tool_name(i);
        let mut tool = Tool::new(name.clone(), "a benchmark tool", schema.clone());
        tool.annotations = Some(ToolAnnotations::new().read_only(i % 3 == 0));
        view.tools.push(tool);
        view.tool_routes.insert(
            name,
            Route {
                target: format!("t{}", i / TOOLS_PER_TARGET),
                upstream_name: format!("tool_{:03}", i % TOOLS_PER_TARGET),
            },
        );
    }
    view.tools.sort_by(|a, b| a.name.cmp(&b.name));
    view
}

/// `n` policies in the proportions of a realistic set: 60 % name one tool with a condition
/// on its arguments, 20 % apply to one target for a group, 10 % forbid agents on tools that
/// are not read-only, 10 % are global rules on every call. One file per target plus
/// `global.cedar`; no `@id`, so each policy is known by `FILE:LINE`.
fn policy_files(n: usize) -> BTreeMap<String, String> {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    let mut push = |file: String, text: String| {
        let f = files.entry(file).or_default();
        f.push_str(&text);
        f.push('\n');
    };
    let per_tool = n * 6 / 10;
    let per_target = n * 2 / 10;
    let agent_forbids = n / 10;
    let global = n - per_tool - per_target - agent_forbids;
    for i in 0..per_tool {
        // Spread over the tools: 600 policies name 600 distinct tools.
        let tool = (i * 7) % TOOLS;
        let name = tool_name(tool);
        let text = match i % 3 {
            0 => format!(
                "permit(principal, action == Action::\"{name}\", resource)\nwhen {{ context.input.repo like \"team-{i}/*\" }};\n"
            ),
            1 => format!(
                "permit(principal, action == Action::\"{name}\", resource)\nwhen {{ context.input has count && context.input.count < {} }};\n",
                10 + i % 90
            ),
            _ => format!(
                "forbid(principal, action == Action::\"{name}\", resource)\nwhen {{ context.input has draft && context.input.draft && context.input.repo like \"prod-{i}/*\" }};\n"
            ),
        };
        push(format!("t{}.cedar", tool / TOOLS_PER_TARGET), text);
    }
    for i in 0..per_target {
        let target = i % TARGETS;
        push(
            format!("t{target}.cedar"),
            format!(
                "permit(principal, action in Action::\"CallTool\", resource in Target::\"t{target}\")\nwhen {{ principal.groups.contains(\"g-{i}\") }};\n"
            ),
        );
    }
    for i in 0..agent_forbids {
        let target = i % TARGETS;
        let what = if i % 2 == 0 {
            "!resource.read_only"
        } else {
            "resource.destructive"
        };
        push(
            format!("t{target}.cedar"),
            format!(
                "forbid(principal, action in Action::\"CallTool\", resource in Target::\"t{target}\")\nwhen {{ context.agent == Agent::\"bot-{i}\" && {what} }};\n"
            ),
        );
    }
    for i in 0..global {
        let text = match i % 4 {
            0 => format!(
                "permit(principal, action in Action::\"CallTool\", resource)\nwhen {{ principal.groups.contains(\"admins-{i}\") }};\n"
            ),
            1 => format!(
                "forbid(principal, action in Action::\"CallTool\", resource)\nwhen {{ principal.issuer == \"https://untrusted-{i}.example\" }};\n"
            ),
            2 => format!(
                "permit(principal, action in Action::\"CallTool\", resource)\nwhen {{ resource.read_only && principal.groups.contains(\"readers-{i}\") }};\n"
            ),
            _ => format!(
                "forbid(principal, action in Action::\"CallTool\", resource)\nwhen {{ context.scopes.contains(\"suspended-{i}\") }};\n"
            ),
        };
        push("global.cedar".into(), text);
    }
    files
}

fn caller(user: &str, groups: &[&str]) -> Caller {
    Caller {
        issuer: "https://idp.example".into(),
        user: user.into(),
        agent: Some("cli".into()),
        scopes: ["tools:read", "tools:write"]
            .iter()
            .map(ToString::to_string)
            .collect(),
        groups: groups.iter().map(ToString::to_string).collect(),
        tenant: None,
        claims: Map::new(),
        expires_at: SystemTime::now(),
    }
}

fn arguments(value: Value) -> Map<String, Value> {
    value.as_object().unwrap().clone()
}

/// One policy set: its directory (absent for the baseline) and settings.
struct Set {
    label: &'static str,
    count: usize,
    _dir: Option<tempfile::TempDir>,
    settings: PolicySettings,
}

impl Set {
    fn new(label: &'static str, count: usize) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = if count == 0 {
            // The baseline: no policy directory, as in a gateway without `policies/`.
            dir.path().join("absent")
        } else {
            for (file, text) in policy_files(count) {
                std::fs::write(dir.path().join(file), text).unwrap();
            }
            dir.path().to_path_buf()
        };
        Self {
            label,
            count,
            settings: PolicySettings {
                dir: path,
                dir_named: count != 0,
                mode: PolicyMode::Enforce,
                show_policy_ids: false,
                claims: BTreeMap::new(),
            },
            _dir: Some(dir),
        }
    }

    fn load(&self) -> Option<Policies> {
        let loaded = Policies::load(&self.settings).unwrap();
        assert_eq!(loaded.is_some(), self.count != 0, "{}", self.label);
        loaded
    }
}

#[derive(Clone, Copy)]
enum Expect {
    Allow,
    Deny,
}

fn check_decision(d: &Decision, expect: Expect, tool: &str, set: &str) {
    let ok = match expect {
        Expect::Allow => *d == Decision::Allow,
        Expect::Deny => matches!(d, Decision::Denied(_)),
    };
    assert!(
        ok,
        "{set}: {tool}: the generated policies decided {d:?}; the benchmark's callers and policies disagree"
    );
}

/// Time one `tool_call` per tool, each the first for that tool after a fresh load.
fn calls_cold(
    set: &Set,
    view: &View,
    who: &Caller,
    args: &Map<String, Value>,
    expect: Expect,
    rounds: usize,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds * TOOLS);
    for _ in 0..rounds {
        let policies = set.load();
        for tool in &view.tools {
            let started = Instant::now();
            let v = tool_call(policies.as_ref(), view, Some(who), &tool.name, Some(args));
            samples.push(started.elapsed());
            check_decision(&black_box(v).decision, expect, &tool.name, set.label);
        }
    }
    samples
}

/// Time `tool_call` over every tool, `rounds` times, after one untimed pass.
fn calls_warm(
    policies: Option<&Policies>,
    view: &View,
    who: &Caller,
    args: &Map<String, Value>,
    expect: Expect,
    rounds: usize,
    label: &str,
) -> Vec<Duration> {
    let mut samples = Vec::with_capacity(rounds * TOOLS);
    for round in 0..=rounds {
        for tool in &view.tools {
            let started = Instant::now();
            let v = tool_call(policies, view, Some(who), &tool.name, Some(args));
            let took = started.elapsed();
            if round > 0 {
                samples.push(took);
            }
            check_decision(&black_box(v).decision, expect, &tool.name, label);
        }
    }
    samples
}

/// One `tools/list`'s policy part: a `Lister` for the caller, asked about every tool.
fn list(policies: Option<&Policies>, view: &View, who: &Caller) -> (Duration, usize) {
    let started = Instant::now();
    let lister = Lister::new(policies, view, Some(who));
    let shown = view
        .tools
        .iter()
        .filter(|t| lister.shows(black_box(&t.name)))
        .count();
    (started.elapsed(), black_box(shown))
}

struct Stats {
    n: usize,
    median: Duration,
    p99: Duration,
}

fn stats(mut samples: Vec<Duration>) -> Stats {
    assert!(!samples.is_empty());
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q).round() as usize];
    Stats {
        n: samples.len(),
        median: at(0.5),
        p99: at(0.99),
    }
}

fn time(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1.0 {
        format!("{:.0} ns", us * 1e3)
    } else if us < 10.0 {
        format!("{us:.2} µs")
    } else if us < 1_000.0 {
        format!("{us:.1} µs")
    } else if us < 100_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.0} ms", us / 1e3)
    }
}

fn cell(s: Option<&Stats>) -> String {
    s.map_or_else(
        || "—".into(),
        |s| format!("{} / {}", time(s.median), time(s.p99)),
    )
}

fn samples(row: &[Option<Stats>]) -> String {
    let mut ns: Vec<usize> = row.iter().flatten().map(|s| s.n).collect();
    ns.dedup();
    ns.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(" / ")
}

/// Resident memory in kB (Linux), `None` elsewhere.
fn rss_kb() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// What the set and its per-tool slices hold in memory, and how long dropping them takes.
fn memory(set: &Set, view: &View, who: &Caller) -> String {
    let before = rss_kb();
    let policies = set.load();
    let loaded = rss_kb();
    let (_, shown) = list(policies.as_ref(), view, who);
    let sliced = rss_kb();
    let started = Instant::now();
    drop(black_box(policies));
    let dropped = started.elapsed();
    let mb = |a: Option<u64>, b: Option<u64>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.1} MB", (b as f64 - a as f64) / 1024.0),
        _ => "n/a".into(),
    };
    format!(
        "Memory, {}: resident size +{} once loaded, +{} more once a listing ({shown} tools shown) has built every tool's slice; dropping the set with its slices took {}.",
        set.label,
        mb(before, loaded),
        mb(loaded, sliced),
        time(dropped)
    )
}

fn main() {
    let quick = std::env::var("PORTCULLIS_BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
        || std::env::args().any(|a| a == "--quick");
    let plan = if quick { QUICK } else { FULL };
    let whole = Instant::now();

    let view = catalog();
    // alice is in a group every target's group permit names (g-0 … g-9), and `admins-0`
    // (the first global permit): allowed everywhere whatever the arguments. bob is in no
    // group and his arguments match no argument permit: denied everywhere ("no policy
    // permits it"). Neither is forbidden: the forbids name other agents, issuers, scopes and
    // repos.
    let groups: Vec<String> = (0..TARGETS)
        .map(|i| format!("g-{i}"))
        .chain(["admins-0".into()])
        .collect();
    let alice = caller(
        "alice",
        &groups.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let bob = caller("bob", &[]);
    let alice_args = arguments(json!({"repo": "team-3/web", "count": 5, "draft": false}));
    let bob_args = arguments(json!({"repo": "elsewhere/web", "count": 1_000_000, "draft": false}));

    let sets = [
        Set::new("0 policies", 0),
        Set::new("10 policies", 10),
        Set::new("1,000 policies", 1_000),
    ];

    // Memory first, in a fresh process: the set loaded, then every tool's slice built (one
    // listing asks about every tool), then dropped as a reload drops the old set.
    let memory = memory(&sets[2], &view, &alice);

    // Untimed warm-up of the process (allocator, caches, lazily built statics).
    {
        let p = sets[2].load();
        for tool in view.tools.iter().take(100) {
            black_box(tool_call(
                p.as_ref(),
                &view,
                Some(&alice),
                &tool.name,
                Some(&alice_args),
            ));
        }
    }

    // An empty timed iteration: the floor under every per-call figure.
    let timer = stats(
        (0..100_000)
            .map(|_| {
                let started = Instant::now();
                black_box(());
                started.elapsed()
            })
            .collect(),
    );

    let mut rows: Vec<(&str, Vec<Option<Stats>>)> = vec![
        ("`tools/call` decision, allowed, cold", vec![]),
        ("`tools/call` decision, allowed, warm", vec![]),
        ("`tools/call` decision, denied, cold", vec![]),
        ("`tools/call` decision, denied, warm", vec![]),
        ("`tools/list` filter, 1,000 tools, cold", vec![]),
        ("`tools/list` filter, 1,000 tools, warm", vec![]),
        ("`Policies::load` (read and parse)", vec![]),
        ("`Policies::check` (against 1,000 tools)", vec![]),
    ];
    let mut shown = Vec::new();
    for set in &sets {
        let with_policies = set.count != 0;
        // First the check: the sets must be what the gateway would accept.
        rows[7].1.push(set.load().map(|p| {
            stats(
                (0..plan.checks)
                    .map(|_| {
                        let started = Instant::now();
                        let findings = p.check(&view);
                        let took = started.elapsed();
                        assert!(
                            findings.errors.0.is_empty(),
                            "{}: the generated policies do not check: {}",
                            set.label,
                            findings.errors
                        );
                        took
                    })
                    .collect(),
            )
        }));
        rows[0].1.push(Some(stats(calls_cold(
            set,
            &view,
            &alice,
            &alice_args,
            Expect::Allow,
            plan.cold_call_rounds,
        ))));
        let policies = set.load();
        rows[1].1.push(Some(stats(calls_warm(
            policies.as_ref(),
            &view,
            &alice,
            &alice_args,
            Expect::Allow,
            plan.warm_call_rounds,
            set.label,
        ))));
        // Without policies nothing is denied.
        rows[2].1.push(with_policies.then(|| {
            stats(calls_cold(
                set,
                &view,
                &bob,
                &bob_args,
                Expect::Deny,
                plan.cold_call_rounds,
            ))
        }));
        rows[3].1.push(with_policies.then(|| {
            stats(calls_warm(
                policies.as_ref(),
                &view,
                &bob,
                &bob_args,
                Expect::Deny,
                plan.warm_call_rounds,
                set.label,
            ))
        }));

        let mut cold = Vec::with_capacity(plan.cold_lists);
        let mut count = 0;
        for _ in 0..plan.cold_lists {
            let fresh = set.load();
            let (took, n) = list(fresh.as_ref(), &view, &alice);
            cold.push(took);
            count = n;
        }
        shown.push(count);
        rows[4].1.push(Some(stats(cold)));
        for _ in 0..3 {
            list(policies.as_ref(), &view, &alice);
        }
        rows[5].1.push(Some(stats(
            (0..plan.warm_lists)
                .map(|_| list(policies.as_ref(), &view, &alice).0)
                .collect(),
        )));

        rows[6].1.push(with_policies.then(|| {
            stats(
                (0..plan.loads)
                    .map(|_| {
                        let started = Instant::now();
                        let p = set.load();
                        let took = started.elapsed();
                        drop(black_box(p));
                        took
                    })
                    .collect(),
            )
        }));
    }

    let mut out = String::new();
    let _ = writeln!(
        out,
        "Policies over {TOOLS} tools ({TARGETS} targets × {TOOLS_PER_TARGET}); median / p99 per timed iteration{}",
        if quick {
            " (QUICK MODE: too few samples to quote)"
        } else {
            ""
        }
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "| measurement | {} | {} | {} | samples per cell |",
        sets[0].label, sets[1].label, sets[2].label
    );
    out.push_str("|---|---|---|---|---|\n");
    for (label, row) in &rows {
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} | {} |",
            cell(row[0].as_ref()),
            cell(row[1].as_ref()),
            cell(row[2].as_ref()),
            samples(row)
        );
    }
    out.push('\n');
    let per_tool = |i: usize| {
        let warm = rows[5].1[i].as_ref().unwrap().median / TOOLS as u32;
        let cold = rows[4].1[i].as_ref().unwrap().median / TOOLS as u32;
        format!("{} cold, {} warm", time(cold), time(warm))
    };
    let _ = writeln!(
        out,
        "Listing per tool (median / 1,000): {} with 0 policies, {} with 10, {} with 1,000; tools shown to the caller: {} / {} / {} of {TOOLS}.",
        per_tool(0),
        per_tool(1),
        per_tool(2),
        shown[0],
        shown[1],
        shown[2]
    );
    let _ = writeln!(
        out,
        "An empty timed iteration: median {} / p99 {} (included in every per-call figure).",
        time(timer.median),
        time(timer.p99)
    );
    let _ = writeln!(
        out,
        "Cold: the first question about each tool after a fresh load (the load itself untimed); warm: asked again.",
    );
    let _ = writeln!(out, "{memory}");
    let _ = writeln!(out, "Whole run: {:.1} s.", whole.elapsed().as_secs_f64());
    print!("{out}");
}

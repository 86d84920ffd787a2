//! `portcullis policy schema` and `portcullis policy explain`: the policies' schema for the
//! live catalog, and the decision for one call, decided as the gateway decides it, without a
//! running gateway (the targets are connected once to learn their tools).

use std::process::ExitCode;

use serde_json::{Map, Value, json};
use tokio_util::sync::CancellationToken;

use crate::config::{InboundMode, IssuerSpec, Snapshot};
use crate::identity::Caller;
use crate::policy::{self, Decision, Policies};

/// Extra claims for a token the command makes up: `--group` and `--claim`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClaimArgs {
    /// A group the user is in (the `groups` claim); repeat for several.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// Any other claim, `NAME=VALUE`; VALUE is read as JSON when it parses (`level=3`,
    /// `tags=["a","b"]`), else as a string. Repeat for several.
    #[arg(long = "claim", value_name = "NAME=VALUE", value_parser = parse_claim)]
    pub claims: Vec<(String, Value)>,
}

impl ClaimArgs {
    /// The claims, with the groups under `groups_claim`.
    pub fn to_map(&self, groups_claim: &str) -> Map<String, Value> {
        let mut map: Map<String, Value> = self.claims.iter().cloned().collect();
        if !self.groups.is_empty() {
            map.insert(groups_claim.into(), json!(self.groups));
        }
        map
    }
}

fn parse_claim(s: &str) -> Result<(String, Value), String> {
    let (name, value) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE (e.g. --claim dept=payments)"))?;
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
    Ok((name.to_string(), value))
}

/// What `explain` is asked.
#[derive(Debug, clap::Args)]
pub struct ExplainArgs {
    /// The user (the issuer's user claim, default `sub`).
    #[arg(long)]
    pub user: String,
    /// The agent (OAuth client: `azp`).
    #[arg(long)]
    pub agent: Option<String>,
    /// A scope the token grants; repeat for several.
    #[arg(long = "scope")]
    pub scopes: Vec<String>,
    #[command(flatten)]
    pub claims: ClaimArgs,
    /// The issuer whose claim settings apply (default: the first configured issuer, else the
    /// development IdP).
    #[arg(long)]
    pub issuer: Option<String>,
    /// The gateway tool name (`demo__echo`).
    #[arg(long)]
    pub tool: String,
    /// The call's arguments as a JSON object.
    #[arg(long = "args", value_name = "JSON", default_value = "{}")]
    pub arguments: String,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

pub async fn schema(snapshot: &Snapshot) -> anyhow::Result<ExitCode> {
    let shutdown = CancellationToken::new();
    let (catalog, problems, _) = super::connect(snapshot, &shutdown).await?;
    let policies = Policies::load(&snapshot.policies).map_err(|e| anyhow::anyhow!("{e}"))?;
    let view = catalog.view();
    let text = match &policies {
        Some(p) => p.schema(&view),
        None => policy::schema_text(policy::BASE_SCHEMA, &view, policy::Governs::default()),
    };
    print!("{text}");
    shutdown.cancel();
    for p in &problems {
        eprintln!("warning: {p} (its tools are not in the schema)");
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn explain(snapshot: &Snapshot, args: ExplainArgs) -> anyhow::Result<ExitCode> {
    let arguments: Value = serde_json::from_str(&args.arguments).map_err(|e| {
        anyhow::anyhow!("--args is not JSON ({e}). Fix: pass an object, e.g. --args '{{\"repo\": \"acme/web\"}}'")
    })?;
    let Value::Object(arguments) = arguments else {
        anyhow::bail!(
            "--args must be a JSON object (the tool's arguments), e.g. --args '{{\"repo\": \"acme/web\"}}'"
        );
    };
    let caller = caller(snapshot, &args)?;
    let shutdown = CancellationToken::new();
    let (catalog, problems, _) = super::connect(snapshot, &shutdown).await?;
    shutdown.cancel();
    let view = catalog.view();
    if view.tool(&args.tool).is_none() {
        let mut message = format!(
            "tool `{}` is not in the catalog. Fix: use a name `portcullis check` lists",
            args.tool
        );
        if !problems.is_empty() {
            message.push_str(&format!(
                " (not connected, so not listed: {})",
                problems.join("; ")
            ));
        }
        anyhow::bail!(message);
    }
    let policies = Policies::load(&snapshot.policies).map_err(|e| anyhow::anyhow!("{e}"))?;
    let Some(policies) = policies else {
        let verdict = policy::tool_call(None, &view, caller.as_ref(), &args.tool, Some(&arguments));
        print_plain(&args, &verdict.decision, None, &[], &[]);
        return Ok(ExitCode::SUCCESS);
    };
    let findings = policies.check(&view);
    for w in &findings.warnings {
        eprintln!("warning: {w}");
    }
    if !findings.errors.is_empty() {
        eprint!("{}", findings.errors);
        return Ok(ExitCode::FAILURE);
    }
    let e = policies.explain(&view, caller.as_ref(), &args.tool, Some(&arguments));
    print_plain(
        &args,
        &e.decision,
        e.record.as_ref().map(|r| (r.mode.as_str(), r.allowed)),
        e.record.as_ref().map_or(&[][..], |r| &r.policies),
        &e.determining,
    );
    Ok(ExitCode::SUCCESS)
}

/// The caller a token with these claims would make, through the same claim rules as a
/// real token (`inbound::caller_from`). `None` when inbound authentication is off.
fn caller(snapshot: &Snapshot, args: &ExplainArgs) -> anyhow::Result<Option<Caller>> {
    let issuers: Vec<IssuerSpec> = match &snapshot.inbound.mode {
        InboundMode::None => return Ok(None),
        InboundMode::Jwt { issuers } => issuers.clone(),
    };
    let dev = snapshot
        .inbound
        .dev_idp
        .is_some()
        .then(|| crate::inbound::dev_idp::issuer_spec(&snapshot.server));
    let all: Vec<IssuerSpec> = issuers.into_iter().chain(dev).collect();
    let spec = match &args.issuer {
        Some(wanted) => all.iter().find(|s| &s.issuer == wanted).ok_or_else(|| {
            anyhow::anyhow!(
                "--issuer {wanted} is not configured. Fix: use one of {}",
                all.iter()
                    .map(|s| s.issuer.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })?,
        None => all
            .first()
            .ok_or_else(|| anyhow::anyhow!("no issuer is configured in [inbound]"))?,
    };
    let mut claims = args
        .claims
        .to_map(spec.groups_claim.as_deref().unwrap_or("groups"));
    claims.insert("iss".into(), json!(spec.issuer));
    claims.insert(spec.user_claim.clone(), json!(args.user));
    if let Some(agent) = &args.agent {
        for c in &spec.agent_claims {
            claims.insert(c.clone(), json!(agent));
        }
    }
    if !args.scopes.is_empty() {
        claims.insert("scope".into(), json!(args.scopes.join(" ")));
    }
    crate::inbound::caller_from(spec, claims)
        .map(Some)
        .map_err(|r| {
            anyhow::anyhow!(
                "the gateway would refuse such a token before any policy: {}",
                r.description.unwrap_or_default()
            )
        })
}

fn print_plain(
    args: &ExplainArgs,
    decision: &Decision,
    record: Option<(&str, bool)>,
    ids: &[String],
    determining: &[String],
) {
    let (word, detail) = match decision {
        Decision::Allow => match record {
            Some((mode, false)) => (
                "allow",
                format!(
                    "allowed, but only because the mode is {mode}: in enforce mode the policies would deny it"
                ),
            ),
            Some(_) => ("allow", "the policies permit it".to_string()),
            None => (
                "allow",
                "no policy directory: every authenticated caller may call every tool".to_string(),
            ),
        },
        Decision::NeedsScopes { missing, .. } => (
            "deny",
            format!(
                "the token lacks the tool's scope(s) {} (a step-up, before any policy)",
                missing.join(" ")
            ),
        ),
        Decision::Denied(d) => ("deny", format!("denied by policy: {}", d.reason)),
    };
    if args.json {
        println!(
            "{}",
            json!({
                "decision": word,
                "mode": record.map(|(m, _)| m),
                "policies_allow": record.map(|(_, a)| a),
                "reason": detail,
                "policies": ids,
                "determining_policies": determining,
                "tool": args.tool,
            })
        );
        return;
    }
    println!("decision: {}", word.to_uppercase());
    println!("reason: {detail}");
    if determining.is_empty() {
        if matches!(decision, Decision::Denied(_)) || record.is_some_and(|(_, a)| !a) {
            println!("determining policies: none (no permit matched: Cedar denies by default)");
        }
    } else {
        println!("determining policies:");
        for d in determining {
            println!("  {d}");
        }
    }
}

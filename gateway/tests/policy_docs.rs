//! The policies docs/policies.md shows are real: every ```cedar block on the page (but the
//! schema excerpt) checks against a catalog with the tools it names, and decides as the page
//! says.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use portcullis::catalog::{Route, View};
use portcullis::config::{PolicyMode, PolicySettings};
use portcullis::identity::Caller;
use portcullis::policy::{Decision, Policies, tool_call};
use rmcp::model::{Tool, ToolAnnotations};
use serde_json::{Value, json};

fn cedar_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```cedar\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_string())
        .filter(|block| !block.contains("appliesTo"))
        .collect()
}

fn catalog() -> View {
    let mut view = View::default();
    let tools = [
        (
            "billing__refund",
            json!({"type": "object", "required": ["amount"], "properties": {"amount": {"type": "integer"}}}),
            false,
            false,
        ),
        (
            "github__create_issue",
            json!({"type": "object", "required": ["repo"], "properties": {"repo": {"type": "string"}}}),
            false,
            false,
        ),
        (
            "github__delete_repo",
            json!({"type": "object", "properties": {"repo": {"type": "string"}}}),
            false,
            true,
        ),
        (
            "github__list_issues",
            json!({"type": "object", "properties": {"repo": {"type": "string"}}}),
            true,
            false,
        ),
        (
            "ops__deploy",
            json!({"type": "object", "properties": {}}),
            false,
            false,
        ),
        (
            "interns__noop",
            json!({"type": "object", "properties": {}}),
            true,
            false,
        ),
    ];
    for (name, schema, read_only, destructive) in tools {
        let mut tool = Tool::new(
            name,
            "a tool",
            Arc::new(schema.as_object().unwrap().clone()),
        );
        tool.annotations = Some(
            ToolAnnotations::new()
                .read_only(read_only)
                .destructive(destructive),
        );
        view.tools.push(tool);
        let (target, upstream) = name.split_once("__").unwrap();
        view.tool_routes.insert(
            name.into(),
            Route {
                target: target.into(),
                upstream_name: upstream.into(),
            },
        );
    }
    view.tools.sort_by(|a, b| a.name.cmp(&b.name));
    view
}

fn caller(agent: &str, groups: &[&str], scopes: &[&str]) -> Caller {
    Caller {
        issuer: "https://idp.example".into(),
        user: "alice".into(),
        agent: Some(agent.into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        tenant: None,
        claims: Default::default(),
        expires_at: std::time::SystemTime::now(),
    }
}

#[test]
fn the_worked_policies_check_and_decide_as_the_page_says() {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/policies.md"))
        .unwrap();
    let blocks = cedar_blocks(&page);
    assert!(
        blocks.len() >= 2,
        "the page shows its policies in ```cedar blocks"
    );
    let dir = tempfile::tempdir().unwrap();
    for (i, block) in blocks.iter().enumerate() {
        std::fs::write(dir.path().join(format!("page-{i}.cedar")), block).unwrap();
    }
    let settings = PolicySettings {
        dir: dir.path().to_path_buf(),
        dir_named: true,
        mode: PolicyMode::Enforce,
        show_policy_ids: true,
        claims: Default::default(),
    };
    let policies = Policies::load(&settings)
        .unwrap_or_else(|e| panic!("docs/policies.md does not parse:\n{e}"))
        .unwrap();
    let view = catalog();
    let findings = policies.check(&view);
    assert!(
        findings.errors.is_empty(),
        "docs/policies.md does not check:\n{}",
        findings.errors
    );

    let decide = |who: &Caller, tool: &str, args: Value| match tool_call(
        Some(&policies),
        &view,
        Some(who),
        tool,
        args.as_object(),
    )
    .decision
    {
        Decision::Allow => Ok(()),
        Decision::Denied(d) => Err(d.policies),
        other => panic!("{other:?}"),
    };
    let payments = caller("app", &["staff", "payments"], &[]);
    let staff = caller("app", &["staff"], &[]);
    assert_eq!(
        decide(&payments, "billing__refund", json!({"amount": 400})),
        Ok(())
    );
    assert_eq!(
        decide(&payments, "billing__refund", json!({"amount": 600})),
        Err(vec!["refunds-payments-only".into()])
    );
    assert_eq!(
        decide(&staff, "billing__refund", json!({"amount": 1})),
        Err(vec!["refunds-payments-only".into()])
    );
    assert_eq!(
        decide(
            &caller("ci-bot", &["staff"], &[]),
            "github__create_issue",
            json!({"repo": "x/y"})
        ),
        Err(vec!["ci-read-only".into()])
    );
    assert_eq!(
        decide(
            &caller("ci-bot", &["staff"], &[]),
            "github__list_issues",
            json!({})
        ),
        Ok(())
    );
    let team_a = caller("app", &["staff", "team-a"], &[]);
    assert_eq!(
        decide(
            &team_a,
            "github__create_issue",
            json!({"repo": "team-a/web"})
        ),
        Ok(())
    );
    assert_eq!(
        decide(
            &team_a,
            "github__create_issue",
            json!({"repo": "team-b/web"})
        ),
        Err(vec!["team-a-repos".into()])
    );
    assert_eq!(
        decide(&staff, "github__delete_repo", json!({"repo": "a/b"})),
        Err(vec!["destructive-needs-admin-scope".into()])
    );
    assert_eq!(
        decide(
            &caller("app", &["staff"], &["github:admin"]),
            "github__delete_repo",
            json!({"repo": "a/b"})
        ),
        Ok(())
    );
    assert_eq!(
        decide(&caller("app", &[], &[]), "interns__noop", json!({})),
        Err(vec![]),
        "no permit: default deny"
    );
}

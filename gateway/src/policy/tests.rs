use std::sync::Arc;
use std::time::SystemTime;

use rmcp::model::{Tool, ToolAnnotations};
use serde_json::json;

use super::*;
use crate::catalog::Route;

fn caller(user: &str, agent: &str, scopes: &[&str], groups: &[&str]) -> Caller {
    Caller {
        issuer: "https://idp.example".into(),
        user: user.into(),
        agent: Some(agent.into()),
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        groups: groups.iter().map(|s| s.to_string()).collect(),
        tenant: None,
        claims: json!({"dept": "payments"}).as_object().unwrap().clone(),
        expires_at: SystemTime::now(),
    }
}

fn tool(name: &str, schema: Value, read_only: bool) -> Tool {
    let mut t = Tool::new(
        name.to_string(),
        "a tool",
        Arc::new(schema.as_object().unwrap().clone()),
    );
    t.annotations = Some(ToolAnnotations::new().read_only(read_only));
    t
}

fn view() -> View {
    let mut v = View::default();
    let repo = json!({"type": "object", "required": ["repo"], "properties": {"repo": {"type": "string"}, "amount": {"type": "integer"}}});
    for (name, target, ro) in [
        ("gh__create_issue", "gh", false),
        ("gh__list_issues", "gh", true),
        ("gh__push", "gh", false),
        ("pay__refund", "pay", false),
    ] {
        v.tools.push(tool(name, repo.clone(), ro));
        v.tool_routes.insert(
            name.into(),
            Route {
                target: target.into(),
                upstream_name: name.split("__").nth(1).unwrap().into(),
            },
        );
    }
    v.tools.sort_by(|a, b| a.name.cmp(&b.name));
    v.tool_scopes.insert(
        "gh__push".into(),
        vec!["repo:write".into(), "repo:read".into()],
    );
    v
}

fn policies(text: &str, mode: PolicyMode) -> (tempfile::TempDir, Policies) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("main.cedar"), text).unwrap();
    let settings = PolicySettings {
        dir: dir.path().to_path_buf(),
        dir_named: true,
        mode,
        show_policy_ids: true,
        claims: [("department".to_string(), "dept".to_string())].into(),
    };
    let p = Policies::load(&settings).unwrap().unwrap();
    (dir, p)
}

const SET: &str = r#"
@id("staff-read")
permit(principal, action in Action::"CallTool", resource in Target::"gh")
when { resource.read_only };

@id("eng-write")
permit(principal, action in Action::"CallTool", resource in Target::"gh")
when { principal.groups.contains("eng") };

@id("own-repos")
forbid(principal, action == Action::"gh__create_issue", resource)
unless { context.input.repo like "acme/*" };

@id("ci-read-only")
forbid(principal, action, resource)
when { context.agent == Agent::"ci" && !resource.read_only };

@id("small-refunds")
permit(principal, action == Action::"pay__refund", resource)
when { context.input has amount && context.input.amount <= 100 };
"#;

fn decision(p: &Policies, who: &Caller, tool: &str, args: Value) -> Decision {
    tool_call(Some(p), &view(), Some(who), tool, args.as_object()).decision
}

fn denied_by(d: &Decision) -> Vec<String> {
    match d {
        Decision::Denied(denial) => denial.policies.clone(),
        other => panic!("expected a denial, got {other:?}"),
    }
}

#[test]
fn permits_forbids_default_deny_and_arguments() {
    let (_dir, p) = policies(SET, PolicyMode::Enforce);
    let eng = caller("alice", "cli", &["repo:read", "repo:write"], &["eng"]);
    let other = caller("bob", "cli", &[], &[]);
    let ci = caller("alice", "ci", &[], &["eng"]);
    assert_eq!(
        decision(&p, &eng, "gh__create_issue", json!({"repo": "acme/web"})),
        Decision::Allow
    );
    assert_eq!(
        denied_by(&decision(
            &p,
            &eng,
            "gh__create_issue",
            json!({"repo": "evil/web"})
        )),
        vec!["own-repos"]
    );
    assert_eq!(
        decision(&p, &other, "gh__list_issues", json!({"repo": "x"})),
        Decision::Allow
    );
    // Default deny: no permit matches (and no forbid did).
    assert_eq!(
        denied_by(&decision(
            &p,
            &other,
            "gh__create_issue",
            json!({"repo": "acme/x"})
        )),
        Vec::<String>::new()
    );
    assert_eq!(
        denied_by(&decision(
            &p,
            &ci,
            "gh__create_issue",
            json!({"repo": "acme/x"})
        )),
        vec!["ci-read-only"]
    );
    assert_eq!(
        decision(
            &p,
            &other,
            "pay__refund",
            json!({"repo": "r", "amount": 100})
        ),
        Decision::Allow
    );
    assert_eq!(
        denied_by(&decision(
            &p,
            &other,
            "pay__refund",
            json!({"repo": "r", "amount": 101})
        )),
        Vec::<String>::new()
    );
}

#[test]
fn a_mistyped_argument_is_denied_and_a_forbid_that_errors_denies() {
    let (_dir, p) = policies(SET, PolicyMode::Enforce);
    let eng = caller("alice", "cli", &[], &["eng"]);
    let Decision::Denied(d) =
        decision(&p, &eng, "pay__refund", json!({"repo": "r", "amount": "5"}))
    else {
        panic!()
    };
    assert!(
        d.reason.contains("argument `amount` is not an integer"),
        "{}",
        d.reason
    );
    // `repo` missing: the forbid `own-repos` cannot be evaluated, so it denies.
    assert_eq!(
        denied_by(&decision(&p, &eng, "gh__create_issue", json!({}))),
        vec!["own-repos"]
    );
}

#[test]
fn scopes_come_first_and_log_only_allows_what_it_would_deny() {
    let (_dir, p) = policies(SET, PolicyMode::LogOnly);
    let bob = caller("bob", "cli", &[], &[]);
    let v = tool_call(
        Some(&p),
        &view(),
        Some(&bob),
        "gh__create_issue",
        json!({"repo": "evil/x"}).as_object(),
    );
    assert_eq!(v.decision, Decision::Allow);
    let r = v.record.unwrap();
    assert!(!r.allowed);
    assert_eq!(r.policies, vec!["own-repos"]);
    assert!(matches!(
        tool_call(Some(&p), &view(), Some(&bob), "gh__push", None).decision,
        Decision::NeedsScopes { .. }
    ));
}

#[test]
fn listing_shows_what_some_input_could_allow() {
    let (_dir, p) = policies(SET, PolicyMode::Enforce);
    let v = view();
    let bob = caller("bob", "cli", &[], &[]);
    let lister = Lister::new(Some(&p), &v, Some(&bob));
    assert!(lister.shows("gh__list_issues"));
    assert!(
        !lister.shows("gh__create_issue"),
        "no permit for bob, whatever the input"
    );
    assert!(lister.shows("pay__refund"), "a small refund is allowed");
    let ci = caller("carol", "ci", &[], &["eng"]);
    let lister = Lister::new(Some(&p), &v, Some(&ci));
    assert!(
        !lister.shows("gh__create_issue"),
        "the CI agent may not write"
    );
    assert!(lister.shows("gh__list_issues"));
    // Without policies, and in shadow mode, everything is listed.
    assert!(Lister::new(None, &v, Some(&bob)).shows("gh__create_issue"));
}

#[test]
fn claims_mapped_in_config_are_user_attributes() {
    let (_dir, p) = policies(
        r#"permit(principal, action, resource) when { principal has department && principal.department == "payments" };"#,
        PolicyMode::Enforce,
    );
    assert_eq!(
        decision(
            &p,
            &caller("a", "b", &[], &[]),
            "pay__refund",
            json!({"repo": "r"})
        ),
        Decision::Allow
    );
}

#[test]
fn the_check_places_each_problem_and_warns_of_unknown_tools() {
    let (_dir, p) = policies(
        "permit(principal, action, resource)\nwhen { principal.departmnt == \"x\" };\n\npermit(principal, action == Action::\"gh__nope\", resource);\n\npermit(principal, action == Action::\"pay__refund\", resource)\nwhen { context.input.amount like \"1*\" };\n",
        PolicyMode::Enforce,
    );
    let findings = p.check(&view());
    let errors: Vec<String> = findings.errors.0.iter().map(ToString::to_string).collect();
    // The unknown attribute; the type error and the unguarded optional argument.
    assert_eq!(errors.len(), 3, "{errors:#?}");
    let found =
        |place: &str, what: &str| errors.iter().any(|e| e.contains(place) && e.contains(what));
    assert!(found("main.cedar:2:", "departmnt"), "{errors:#?}");
    assert!(
        found("main.cedar:7:", "expected String but saw Long"),
        "{errors:#?}"
    );
    assert!(found("main.cedar:7:", "has amount"), "{errors:#?}");
    assert_eq!(findings.warnings.len(), 1, "{:?}", findings.warnings);
    assert!(
        findings.warnings[0].contains("main.cedar:4") && findings.warnings[0].contains("gh__nope")
    );
}

#[test]
fn a_syntax_error_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.cedar"),
        "permit(principal, action, resource);\n\nforbid(principal action, resource);\n",
    )
    .unwrap();
    let settings = PolicySettings {
        dir: dir.path().to_path_buf(),
        dir_named: true,
        mode: PolicyMode::Enforce,
        show_policy_ids: false,
        claims: Default::default(),
    };
    let errors = Policies::load(&settings).unwrap_err();
    let text = errors.to_string();
    assert!(text.contains("a.cedar:3:"), "{text}");
}

#[test]
fn policy_ids_are_the_id_annotation_else_file_and_line() {
    let (_dir, p) = policies(
        "permit(principal, action, resource);\n\n@id(\"named\")\nforbid(principal, action, resource) when { false };\npermit(principal, action, resource) when { true };\n",
        PolicyMode::Enforce,
    );
    let mut ids: Vec<String> = p.set.policies().map(|p| p.id().to_string()).collect();
    ids.sort();
    assert_eq!(ids, vec!["main.cedar:1", "main.cedar:5", "named"]);
}

#[test]
fn the_step_up_names_every_missing_scope() {
    let v = view();
    assert_eq!(
        missing_scopes(&v, Some(&caller("a", "b", &["repo:read"], &[])), "gh__push"),
        Some(Decision::NeedsScopes {
            needed: vec!["repo:write".into(), "repo:read".into()],
            missing: vec!["repo:write".into()]
        })
    );
    assert_eq!(missing_scopes(&v, None, "gh__push"), None);
    assert_eq!(
        missing_scopes(&v, Some(&caller("a", "b", &[], &[])), "gh__list_issues"),
        None
    );
}

#[test]
fn prompts_and_resources_are_governed_only_once_a_policy_names_their_action() {
    let bob = caller("bob", "cli", &[], &[]);
    let writer = caller("ann", "cli", &[], &["writers"]);
    let prompt = Item::Prompt {
        name: "gh__review",
        target: "gh",
    };
    let resource = Item::Resource {
        uri: "file:///etc/passwd",
        target: "files",
    };
    // SET names neither action: both allowed, listed, and the schema declares neither.
    let (_dir, p) = policies(SET, PolicyMode::Enforce);
    assert_eq!(item(Some(&p), Some(&bob), prompt).decision, Decision::Allow);
    assert_eq!(
        item(Some(&p), Some(&bob), resource).decision,
        Decision::Allow
    );
    assert!(!p.schema(&view()).contains("entity Prompt"));

    let (_dir, p) = policies(
        &format!(
            "{SET}\n@id(\"writers-prompts\")\npermit(principal, action == Action::\"GetPrompt\", resource in Target::\"gh\")\nwhen {{ principal.groups.contains(\"writers\") }};\n"
        ),
        PolicyMode::Enforce,
    );
    assert_eq!(
        item(Some(&p), Some(&writer), prompt).decision,
        Decision::Allow
    );
    let Decision::Denied(d) = item(Some(&p), Some(&bob), prompt).decision else {
        panic!("bob is no writer")
    };
    assert!(d.policies.is_empty(), "default deny: {d:?}");
    assert_eq!(
        item(Some(&p), Some(&bob), resource).decision,
        Decision::Allow,
        "resources are not named"
    );
    assert!(
        item(Some(&p), Some(&bob), resource).record.is_none(),
        "nothing to audit"
    );
    assert!(!item(Some(&p), Some(&bob), prompt).record.unwrap().allowed);
    let v = view();
    assert!(!Lister::new(Some(&p), &v, Some(&bob)).shows_item(prompt));
    assert!(Lister::new(Some(&p), &v, Some(&writer)).shows_item(prompt));
    assert!(p.schema(&v).contains("entity Prompt"));
    // Governing prompts puts GetPrompt under `action` without a constraint: SET's
    // `ci-read-only` reads `resource.read_only`, which a Prompt does not have.
    let errors = p.check(&v).errors.to_string();
    assert!(
        errors.contains("ci-read-only") && errors.contains("read_only"),
        "{errors}"
    );
}

#[test]
fn a_callers_remembered_entities_follow_their_claims_and_agent() {
    // The same user and tool, asked again and again on one policy set (whose slice keeps
    // callers' entities): each answer must follow the claims and agent of that call.
    let (_dir, p) = policies(SET, PolicyMode::Enforce);
    let args = json!({"repo": "acme/web"});
    let plain = caller("alice", "cli", &[], &[]);
    let eng = caller("alice", "cli", &[], &["eng"]);
    let eng_ci = caller("alice", "ci", &[], &["eng"]);
    for _ in 0..2 {
        assert!(matches!(
            decision(&p, &plain, "gh__create_issue", args.clone()),
            Decision::Denied(_)
        ));
        assert_eq!(
            decision(&p, &eng, "gh__create_issue", args.clone()),
            Decision::Allow
        );
        assert_eq!(
            denied_by(&decision(&p, &eng_ci, "gh__create_issue", args.clone())),
            vec!["ci-read-only"]
        );
    }
    // More callers than a slice remembers: every answer still right.
    for i in 0..200 {
        let who = caller(
            &format!("user{i}"),
            "cli",
            &[],
            if i % 2 == 0 { &["eng"] } else { &[] },
        );
        let allowed = decision(&p, &who, "gh__create_issue", args.clone()) == Decision::Allow;
        assert_eq!(allowed, i % 2 == 0, "user{i}");
    }
}

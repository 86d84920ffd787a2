//! The gateway's tool search (`[catalog] search_tool = true`) end to end: the real binary, a
//! caller's JWT, Cedar policies. It ranks the caller's visible tools for a task written in
//! plain words, and never returns a tool the policies hide from that caller.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use portcullis_e2e::{Gateway, Serve, call_tool, connect, result_text, tool_names, write_config};
use serde_json::{Value, json};

const GATEWAY: &str =
    "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n[catalog]\nsearch_tool = true\n";

/// Everyone may call everything, except the payroll export, which is for HR.
const POLICIES: &str = r#"
@id("everyone")
permit(principal, action in Action::"CallTool", resource);

@id("payroll-is-for-hr")
forbid(principal, action == Action::"hr__export_payroll", resource)
unless { principal.groups.contains("hr") };
"#;

/// An `[http]` target whose tools are never called here: listing and search only.
fn http_target(tools: &[(&str, &str)]) -> String {
    let mut file = String::from("[http]\nbase_url = \"http://127.0.0.1:9/api\"\n");
    for (name, description) in tools {
        file.push_str(&format!(
            "[tools.{name}]\ndescription = \"{description}\"\npath = \"/{name}\"\ninput_schema = {{ type = \"object\", properties = {{ year = {{ type = \"integer\" }} }} }}\n"
        ));
    }
    file
}

fn start() -> Gateway {
    let targets = [
        (
            "hr",
            http_target(&[
                (
                    "export_payroll",
                    "Export the payroll of every employee as a CSV file",
                ),
                ("list_employees", "List the employees of a department"),
                ("request_leave", "Request days of paid leave"),
            ]),
        ),
        (
            "finance",
            http_target(&[
                ("payroll_summary", "Total payroll cost per month"),
                ("list_invoices", "List the invoices of a customer"),
            ]),
        ),
    ];
    let dir = write_config(GATEWAY, &targets).unwrap();
    std::fs::create_dir(dir.path().join("policies")).unwrap();
    std::fs::write(dir.path().join("policies/hr.cedar"), POLICIES).unwrap();
    Gateway::serve(dir, &Serve::default()).unwrap()
}

/// The names `search_tools` returned, best first.
fn found(result: &rmcp::model::CallToolResult) -> Vec<String> {
    let tools = &result.structured_content.as_ref().unwrap()["tools"];
    tools
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn search_ranks_the_callers_tools_and_never_returns_one_the_policies_hide() {
    let gw = start();
    let hr = gw.dev_token(&["--user", "alice", "--agent", "a", "--group", "hr"]);
    let other = gw.dev_token(&["--user", "bob", "--agent", "a"]);

    let alice = connect(&gw.url, Some(&hr)).await;
    let listed = tool_names(&alice).await;
    assert!(listed.contains(&"search_tools".to_string()), "{listed:?}");
    let r = call_tool(
        &alice,
        "search_tools",
        json!({"query": "export the payroll of employees"}),
    )
    .await
    .unwrap();
    let names = found(&r);
    assert_eq!(names[0], "hr__export_payroll", "{names:?}");
    assert!(!names.contains(&"search_tools".to_string()), "{names:?}");
    // Each entry is what tools/list would show: schema included.
    let first = &r.structured_content.as_ref().unwrap()["tools"][0];
    assert_eq!(first["inputSchema"]["type"], json!("object"), "{first}");

    // Bob may not call the export: he cannot list it, and search never returns it.
    let bob = connect(&gw.url, Some(&other)).await;
    assert!(
        !tool_names(&bob)
            .await
            .contains(&"hr__export_payroll".to_string())
    );
    for query in [
        "export the payroll of employees",
        "payroll csv export",
        "hr export payroll",
    ] {
        let r = call_tool(&bob, "search_tools", json!({"query": query, "limit": 50}))
            .await
            .unwrap();
        let names = found(&r);
        assert!(
            !names.contains(&"hr__export_payroll".to_string()),
            "{query}: {names:?}"
        );
        assert!(
            names.contains(&"finance__payroll_summary".to_string()),
            "{query}: the visible payroll tool is still found: {names:?}"
        );
    }

    let limited = call_tool(&alice, "search_tools", json!({"query": "list", "limit": 1}))
        .await
        .unwrap();
    assert_eq!(found(&limited).len(), 1);
    let missing = call_tool(&alice, "search_tools", json!({})).await.unwrap();
    assert_eq!(missing.is_error, Some(true));
    assert!(
        result_text(&missing).contains("`query` is required"),
        "{}",
        result_text(&missing)
    );
    let nothing = call_tool(&alice, "search_tools", json!({"query": "zebra"}))
        .await
        .unwrap();
    assert_eq!(
        nothing.structured_content,
        Some(json!({ "tools": Value::Array(vec![]) }))
    );
    alice.cancel().await.unwrap();
    bob.cancel().await.unwrap();
}

#[test]
fn a_target_tool_named_like_the_search_tool_is_a_conflict_naming_both() {
    let target = format!(
        "prefix = \"\"\n{}",
        http_target(&[("search_tools", "Mine")])
    );
    let dir = write_config(GATEWAY, &[("clash", target)]).unwrap();
    let out = portcullis_e2e::run_portcullis("check", dir.path(), &[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("search_tools") && text.contains("search_tool` in [catalog]"),
        "names the gateway's tool and the target's: {text}"
    );
}

//! What `portcullis serve` says about policies as it starts: that there are none (every
//! authenticated caller may call every tool), which are in force, or — refusing to start —
//! which policy does not check, with its file and line.
#![allow(clippy::unwrap_used)]

use std::process::Command;

use portcullis_e2e::{Gateway, Serve, binary, write_config};

fn demo_target() -> String {
    format!(
        "[mcp]\ncommand = \"{}\"\n",
        binary("portcullis-demo", "portcullis-demo").display()
    )
}

fn config(policy: Option<&str>) -> tempfile::TempDir {
    let dir = write_config("[dev_idp]\n", &[("demo", demo_target())]).unwrap();
    if let Some(policy) = policy {
        std::fs::create_dir(dir.path().join("policies")).unwrap();
        std::fs::write(dir.path().join("policies/main.cedar"), policy).unwrap();
    }
    dir
}

fn served_log(dir: tempfile::TempDir) -> String {
    let log = dir.path().join("serve.log");
    let gw = Gateway::serve(
        dir,
        &Serve {
            env: &[("PORTCULLIS_LOG", "info")],
            log_file: Some(log.clone()),
            ..Serve::default()
        },
    )
    .unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    drop(gw);
    text
}

#[test]
fn without_policies_the_gateway_says_every_caller_may_call_every_tool() {
    let log = served_log(config(None));
    assert!(
        log.contains("no policy directory: every authenticated caller may call every tool"),
        "{log}"
    );
}

#[test]
fn with_policies_the_gateway_names_what_is_in_force() {
    let log = served_log(config(Some(
        "@id(\"all\")\npermit(principal, action, resource);\n",
    )));
    assert!(
        log.contains("policies in force: 1 policy from 1 file in") && log.contains("(enforce)"),
        "{log}"
    );
}

/// `serve` refuses a policy that does not parse at once, and one that does not check against
/// the tools' schema once the targets are connected; both name the file and line.
#[test]
fn a_policy_that_does_not_check_stops_the_start_with_its_file_and_line() {
    for (policy, line, says) in [
        (
            "permit(principal, action, resource);\nforbid(principal action, resource);\n",
            ":2:",
            "unexpected token",
        ),
        (
            "permit(principal, action, resource);\n\npermit(principal, action == Action::\"demo__add\", resource)\nwhen { context.input.a like \"1*\" };\n",
            "main.cedar:4:",
            "expected String but saw decimal",
        ),
    ] {
        let dir = config(Some(policy));
        let out = Command::new(binary("portcullis", "portcullis"))
            .arg("serve")
            .arg("--config")
            .arg(dir.path().join("gateway.toml"))
            .env("PORTCULLIS_LOG", "warn")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success(),
            "served a policy that does not check:\n{stderr}"
        );
        assert!(stderr.contains(line), "no {line} in:\n{stderr}");
        assert!(
            stderr.to_lowercase().contains(&says.to_lowercase()),
            "no `{says}` in:\n{stderr}"
        );
    }
}

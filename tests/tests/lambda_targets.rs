//! `[lambda]` targets end to end: the real gateway invoking a function in moto (`peers/aws`),
//! which checks every SigV4 signature — so each "accepted" below is moto's verdict on the
//! signature the gateway made, never our signer checking itself.
//!
//! Lambda's endpoint and STS sit behind recording proxies that forward every request
//! unchanged (`Host` included, so moto's check still passes) and record it: the tests read the
//! client context, the session the Invoke was signed with, and the policy asked of STS (moto
//! does not enforce session policies, so the policy TEXT sent is what is checked). Also: SigV4
//! on an `[openapi]` target describing Lambda's REST API, and the config errors of a Lambda
//! target whose `[auth]` cannot invoke it.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use base64::Engine as _;
use portcullis::config::outbound::fill_policy;
use portcullis::outbound::aws_identity_name;
use portcullis_e2e::aws::{Moto, Recorder, Reply, Seen};
use portcullis_e2e::{
    Gateway, McpClient, Serve, call_tool, connect, jwt_claims, mcp_error, python_peers,
    result_text, run_portcullis, tool_names, write_config,
};
use serde_json::{Value, json};
use url::Url;

const GATEWAY: &str = "[dev_idp]\n";

/// The tools the function handles, declared as AgentCore's Lambda targets declare theirs.
const TOOLS: &str = r#"
[tools.get_order]
description = "Look up an order by its number"
input_schema = { type = "object", properties = { order = { type = "integer" } } }

[tools.cancel_order]
description = "Cancel an order"
input_schema = { type = "object", properties = { order = { type = "integer" }, fail = { type = "boolean" } } }
"#;

/// A session policy naming the target and the tool (in the policy's `Id`) and the user; it
/// allows only invoking the function. No spaces: moto re-encodes a form body before checking
/// its signature and would turn a space into `+` (see `outbound_sigv4.rs`).
const POLICY_TEMPLATE: &str = r#"{"Version":"2012-10-17","Id":"{target}.{tool}","Statement":[{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:123456789012:function:peers-echo","Condition":{"StringEquals":{"aws:SourceIdentity":"{user}"}}}]}"#;

/// The gateway's environment: the seeded admin's key id, its secret, and a wrong secret.
fn env(moto: &Moto) -> Vec<(&'static str, String)> {
    vec![
        ("LAMBDA_KEY_ID", moto.var("AWS_ACCESS_KEY_ID").to_string()),
        (
            "LAMBDA_SECRET",
            moto.var("AWS_SECRET_ACCESS_KEY").to_string(),
        ),
        (
            "LAMBDA_WRONG_SECRET",
            "wrong-secret-wrong-secret-wrong-secret0".to_string(),
        ),
    ]
}

fn start(moto: &Moto, targets: &[(&str, String)]) -> Gateway {
    let env = env(moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    Gateway::start_with_env(GATEWAY, targets, &env).unwrap()
}

/// `[auth]` signing for `lambda` with the seeded key id and the secret in `secret_env`.
fn sigv4(secret_env: &str) -> String {
    format!(
        r#"
[auth]
mode = "aws_sigv4"
service = "lambda"
region = "us-east-1"
access_key_id = "env:LAMBDA_KEY_ID"
secret_access_key = "env:{secret_env}"
"#
    )
}

/// A Lambda target invoking `function` at `endpoint`, with `auth` and the declared [`TOOLS`].
fn lambda_target(function: &str, endpoint: &Url, auth: &str) -> String {
    format!("[lambda]\nfunction = \"{function}\"\nendpoint_url = \"{endpoint}\"\n{auth}{TOOLS}")
}

async fn caller(gw: &Gateway, user: &str) -> (McpClient, String) {
    let token = gw.dev_token(&["--user", user, "--agent", "a"]);
    let issuer = jwt_claims(&token).unwrap()["iss"]
        .as_str()
        .unwrap()
        .to_string();
    (connect(&gw.url, Some(&token)).await, issuer)
}

/// The Invoke path for `function`.
fn invocations(function: &str) -> String {
    format!("/2015-03-31/functions/{function}/invocations")
}

/// The client context of a recorded Invoke, decoded.
fn client_context(seen: &Seen) -> Value {
    let header = seen
        .header("x-amz-client-context")
        .unwrap_or_else(|| panic!("no client context: {seen:?}"));
    let json = base64::engine::general_purpose::STANDARD
        .decode(header)
        .unwrap();
    serde_json::from_slice(&json).unwrap()
}

/// The text of the first `<tag>` in an XML answer.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lambda_target_invokes_its_function_signed_with_the_targets_keys() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let function = moto.var("AWS_LAMBDA_FUNCTION").to_string();
    let (endpoint, lambda, _proxy) = Recorder::start(&moto.endpoint()).await;
    let (bad_endpoint, bad_lambda, _bad_proxy) = Recorder::start(&moto.endpoint()).await;
    let gw = start(
        &moto,
        &[
            (
                "orders",
                lambda_target(&function, &endpoint, &sigv4("LAMBDA_SECRET")),
            ),
            (
                "badkey",
                lambda_target(&function, &bad_endpoint, &sigv4("LAMBDA_WRONG_SECRET")),
            ),
        ],
    );
    let (client, _) = caller(&gw, "alice").await;

    // The declared tools, with the target's prefix, described as declared.
    let mut names = tool_names(&client).await;
    names.sort();
    assert_eq!(
        names,
        [
            "badkey__cancel_order",
            "badkey__get_order",
            "orders__cancel_order",
            "orders__get_order"
        ]
    );
    let tools = client.peer().list_all_tools().await.unwrap();
    let get = tools
        .iter()
        .find(|t| t.name == "orders__get_order")
        .unwrap();
    assert_eq!(
        get.description.as_deref(),
        Some("Look up an order by its number")
    );
    assert_eq!(
        get.input_schema["properties"]["order"]["type"],
        json!("integer")
    );

    // The function's event is the arguments; moto's function echoes it, as structured content.
    let result = call_tool(&client, "orders__get_order", json!({"order": 7}))
        .await
        .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(result.structured_content, Some(json!({"order": 7})));

    let seen = lambda.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let invoke = &seen[0];
    assert_eq!(invoke.method, "POST");
    assert_eq!(invoke.path, invocations(&function));
    assert_eq!(
        serde_json::from_str::<Value>(&invoke.body).unwrap(),
        json!({"order": 7})
    );
    // moto checked the signature (made for the proxy's Host) and accepted it.
    assert!(invoke.forwarded);
    assert_eq!(invoke.answer.0, 200, "{invoke:?}");
    assert_eq!(
        invoke.host,
        format!("127.0.0.1:{}", endpoint.port().unwrap())
    );
    assert_eq!(
        invoke.access_key_id(),
        Some(moto.var("AWS_ACCESS_KEY_ID")),
        "{invoke:?}"
    );
    assert!(
        invoke
            .header("authorization")
            .unwrap()
            .contains("/us-east-1/lambda/aws4_request"),
        "{invoke:?}"
    );
    assert_eq!(invoke.header("x-amz-security-token"), None);
    // The tool's name, both ways: as AgentCore sends it, and without the prefix to strip.
    assert_eq!(
        client_context(invoke),
        json!({"custom": {
            "bedrockAgentCoreToolName": "orders___get_order",
            "portcullisToolName": "get_order",
            "portcullisTarget": "orders",
        }})
    );

    // A wrong secret: moto refuses the signature, and the caller is told the credential was
    // refused, by Lambda, for this function.
    let result = call_tool(&client, "badkey__get_order", json!({"order": 7}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let text = result_text(&result);
    assert!(
        text.contains("cannot get a credential for target `badkey`")
            && text.contains("refused")
            && text.contains(&format!("Lambda refused to invoke `{function}`"))
            && text.contains("HTTP 403"),
        "{text}"
    );
    let seen = bad_lambda.seen();
    assert!(!seen.is_empty());
    for refused in &seen {
        // Refused by moto, not by us: the request went out signed and moto said why.
        assert!(refused.forwarded);
        assert_eq!(refused.access_key_id(), Some(moto.var("AWS_ACCESS_KEY_ID")));
        assert_eq!(refused.answer.0, 403, "{refused:?}");
        assert!(
            refused.answer.1.contains("SignatureDoesNotMatch")
                || refused.answer.1.contains("InvalidSignature"),
            "{refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_callers_tool_gets_its_own_assumed_session() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let function = moto.var("AWS_LAMBDA_FUNCTION").to_string();
    let role_arn = moto.var("AWS_ROLE_ARN").to_string();
    let (endpoint, lambda, _lambda_proxy) = Recorder::start(&moto.endpoint()).await;
    let (sts_endpoint, sts, _sts_proxy) = Recorder::start(&moto.endpoint()).await;
    let auth = format!(
        "{}sts_endpoint = \"{sts_endpoint}\"\n\n[auth.assume_role]\nrole_arn = \"{role_arn}\"\nsession_policy = '''{POLICY_TEMPLATE}'''\n",
        sigv4("LAMBDA_SECRET")
    );
    let gw = start(
        &moto,
        &[("shop", lambda_target(&function, &endpoint, &auth))],
    );
    let (client, issuer) = caller(&gw, "alice").await;
    let alice = aws_identity_name(&issuer, "alice");
    assert!(alice.starts_with("alice."), "{alice}");

    // Two tools: two sessions, each asked with a policy naming its tool, for alice.
    for (tool, order) in [("get_order", 1), ("cancel_order", 2)] {
        let result = call_tool(&client, &format!("shop__{tool}"), json!({"order": order}))
            .await
            .unwrap();
        assert_ne!(result.is_error, Some(true), "{result:?}");
        assert_eq!(result.structured_content, Some(json!({"order": order})));
    }
    let asked = sts.seen();
    assert_eq!(asked.len(), 2, "{asked:?}");
    for (seen, tool) in asked.iter().zip(["get_order", "cancel_order"]) {
        assert_eq!(seen.answer.0, 200, "moto refused AssumeRole: {seen:?}");
        let form = seen.form();
        assert_eq!(form["Action"], "AssumeRole", "{form:?}");
        assert_eq!(form["RoleArn"], role_arn, "{form:?}");
        assert_eq!(form["RoleSessionName"], format!("u.{alice}"), "{form:?}");
        assert_eq!(form["SourceIdentity"], alice, "{form:?}");
        assert!(
            form["Policy"].contains(&format!("\"shop.{tool}\"")),
            "{form:?}"
        );
        let sent: Value = serde_json::from_str(&form["Policy"]).unwrap();
        let expected: Value =
            serde_json::from_str(&fill_policy(POLICY_TEMPLATE, tool, "shop", &alice)).unwrap();
        assert_eq!(sent, expected);
    }

    // Each Invoke is signed with the session STS issued for it, and moto accepted it.
    let invokes = lambda.seen();
    assert_eq!(invokes.len(), 2, "{invokes:?}");
    for (invoke, session) in invokes.iter().zip(&asked) {
        assert_eq!(invoke.path, invocations(&function));
        assert!(invoke.forwarded);
        assert_eq!(invoke.answer.0, 200, "{invoke:?}");
        let key = invoke.access_key_id().unwrap();
        assert!(key.starts_with("ASIA"), "{invoke:?}");
        assert_eq!(Some(key), xml_text(&session.answer.1, "AccessKeyId"));
        assert_eq!(
            invoke.header("x-amz-security-token"),
            xml_text(&session.answer.1, "SessionToken")
        );
    }
    assert_ne!(invokes[0].access_key_id(), invokes[1].access_key_id());

    // The same tool again: the session is reused, STS is not asked.
    let result = call_tool(&client, "shop__get_order", json!({"order": 3}))
        .await
        .unwrap();
    assert_eq!(result.structured_content, Some(json!({"order": 3})));
    assert_eq!(sts.seen().len(), 2);
    let invokes = lambda.seen();
    assert_eq!(invokes.len(), 3);
    assert_eq!(invokes[2].answer.0, 200, "{:?}", invokes[2]);
    assert_eq!(invokes[2].access_key_id(), invokes[0].access_key_id());
}

/// AWS's answer to an Invoke of a function that does not exist.
fn no_such_function(function: &str) -> Reply {
    Reply {
        status: 404,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-amzn-errortype".into(), "ResourceNotFoundException".into()),
        ],
        body: json!({
            "Type": "User",
            "message": format!("Function not found: arn:aws:lambda:us-east-1:123456789012:function:{function}"),
        })
        .to_string(),
    }
}

/// AWS's answer when the function raised: 200, `X-Amz-Function-Error`, the error as payload.
fn function_raised() -> Reply {
    Reply {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("x-amz-function-error".into(), "Unhandled".into()),
        ],
        body: r#"{"errorMessage":"order 7 not found","errorType":"KeyError"}"#.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambdas_answers_and_errors_reach_the_caller() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let function = moto.var("AWS_LAMBDA_FUNCTION").to_string();
    // moto's docker-free Invoke cannot fail: it echoes for ANY function name (even one never
    // created) and never sets FunctionError. So the proxy plays AWS's documented answers for
    // two designated requests instead of forwarding them: an Invoke of `no-such-fn`, and an
    // event holding `"fail": true`. Every other request reaches moto.
    let (endpoint, lambda, _proxy) = Recorder::start_answering(&moto.endpoint(), |seen| {
        if seen.path.starts_with(&invocations("no-such-fn")) {
            return Some(no_such_function("no-such-fn"));
        }
        let event: Value = serde_json::from_str(&seen.body).unwrap_or_default();
        (event["fail"] == json!(true)).then(function_raised)
    })
    .await;
    let auth = sigv4("LAMBDA_SECRET");
    let gw = start(
        &moto,
        &[
            ("orders", lambda_target(&function, &endpoint, &auth)),
            ("missing", lambda_target("no-such-fn", &endpoint, &auth)),
        ],
    );
    let (client, _) = caller(&gw, "alice").await;

    // No such function: the target is unavailable, and the message names the function and
    // the key to fix.
    let e = mcp_error(
        call_tool(&client, "missing__get_order", json!({"order": 1}))
            .await
            .unwrap_err(),
    );
    assert_eq!(e.code.0, -32003, "{e:?}");
    assert!(
        e.message.contains("no function `no-such-fn`") && e.message.contains("`function`"),
        "{e:?}"
    );
    // Nothing to reconnect: the fix is in the configuration, and the message says so.
    assert!(
        e.message.contains("refused the call") && !e.message.contains("reconnecting"),
        "{e:?}"
    );

    // The function raised: an error result with its message and type.
    let result = call_tool(
        &client,
        "orders__cancel_order",
        json!({"order": 7, "fail": true}),
    )
    .await
    .unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    assert_eq!(
        result_text(&result),
        "the function failed (Unhandled, KeyError): order 7 not found"
    );

    // The function answered an MCP tool result: it comes back as that result.
    moto.queue_lambda_result(
        r#"{"content":[{"type":"text","text":"from lambda"}],"isError":false}"#,
    )
    .await;
    let result = call_tool(&client, "orders__get_order", json!({"order": 8}))
        .await
        .unwrap();
    assert_eq!(result.is_error, Some(false), "{result:?}");
    assert_eq!(result_text(&result), "from lambda");
    assert_eq!(result.structured_content, None);

    let seen = lambda.seen();
    assert_eq!(seen.len(), 3, "{seen:?}");
    // Only the last reached moto, which accepted the signature; all three were signed.
    assert_eq!(
        seen.iter().map(|s| s.forwarded).collect::<Vec<_>>(),
        [false, false, true]
    );
    assert_eq!(seen[2].answer.0, 200, "{:?}", seen[2]);
    assert!(
        seen.iter()
            .all(|s| s.access_key_id() == Some(moto.var("AWS_ACCESS_KEY_ID")))
    );
}

/// Lambda's `Invoke` as a REST API: `POST /2015-03-31/functions/{FunctionName}/invocations`.
fn lambda_openapi() -> Value {
    json!({
        "openapi": "3.0.3",
        "info": {"title": "AWS Lambda", "version": "2015-03-31"},
        "paths": {
            "/2015-03-31/functions/{FunctionName}/invocations": {
                "post": {
                    "operationId": "invoke",
                    "summary": "Invoke a function with a JSON event",
                    "parameters": [{
                        "name": "FunctionName", "in": "path", "required": true,
                        "schema": {"type": "string"}
                    }],
                    "requestBody": {
                        "required": true,
                        "content": {"application/json": {"schema": {"type": "object"}}}
                    },
                    "responses": {
                        "200": {
                            "description": "the function's answer",
                            "content": {"application/json": {"schema": {"type": "object"}}}
                        }
                    }
                }
            }
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_openapi_target_signs_its_requests_for_aws() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let function = moto.var("AWS_LAMBDA_FUNCTION").to_string();
    let target = |secret_env: &str| {
        format!(
            "[openapi]\nspec = \"lambda-api.json\"\nbase_url = \"{}\"\n{}",
            moto.endpoint(),
            sigv4(secret_env)
        )
    };
    let dir = write_config(
        GATEWAY,
        &[
            ("lambdaapi", target("LAMBDA_SECRET")),
            ("wrongkey", target("LAMBDA_WRONG_SECRET")),
        ],
    )
    .unwrap();
    std::fs::write(
        dir.path().join("targets/lambda-api.json"),
        lambda_openapi().to_string(),
    )
    .unwrap();
    let env = env(&moto);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let gw = Gateway::serve(
        dir,
        &Serve {
            env: &env,
            ..Serve::default()
        },
    )
    .unwrap();
    let (client, _) = caller(&gw, "alice").await;
    let mut names = tool_names(&client).await;
    names.sort();
    assert_eq!(names, ["lambdaapi__invoke", "wrongkey__invoke"]);

    // moto verified the signature over the JSON body and echoed the body.
    let event = json!({"order": 7, "note": "through openapi"});
    let result = call_tool(
        &client,
        "lambdaapi__invoke",
        json!({"FunctionName": function, "body": event}),
    )
    .await
    .unwrap();
    assert_ne!(result.is_error, Some(true), "{result:?}");
    assert_eq!(result.structured_content, Some(event.clone()));

    // The same request signed with a wrong secret: moto refuses it.
    let result = call_tool(
        &client,
        "wrongkey__invoke",
        json!({"FunctionName": function, "body": event}),
    )
    .await
    .unwrap();
    assert_eq!(result.is_error, Some(true), "{result:?}");
    let text = result_text(&result);
    assert!(
        text.contains("403") && text.contains("SignatureDoesNotMatch"),
        "{text}"
    );
}

#[test]
fn a_lambda_target_without_lambda_credentials_is_refused_by_check() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("api-key");
    std::fs::write(&key, "k-123").unwrap();
    let endpoint = Url::parse("http://127.0.0.1:1/").unwrap();
    let api_key = format!(
        "\n[auth]\nmode = \"api_key\"\nkey = \"file:{}\"\nheader = \"x-api-key\"\n",
        key.display()
    );
    let s3 = "\n[auth]\nmode = \"aws_sigv4\"\nservice = \"s3\"\nregion = \"us-east-1\"\n";
    let config = write_config(
        "",
        &[
            ("noauth", lambda_target("orders", &endpoint, "")),
            ("apikey", lambda_target("orders", &endpoint, &api_key)),
            ("s3", lambda_target("orders", &endpoint, s3)),
        ],
    )
    .unwrap();
    let out = run_portcullis("check", config.path(), &[]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("configuration has 3 errors"), "{said}");
    // Each problem on its file's line, with the key at fault, and the fix on the next line.
    let lines: Vec<&str> = said.lines().collect();
    let add_auth = r#"fix: add [auth] with mode = "aws_sigv4", service = "lambda" and region ="#;
    for (file, key, problem, fix) in [
        (
            "noauth.toml",
            "lambda",
            "a Lambda target has no [auth]",
            add_auth,
        ),
        (
            "apikey.toml",
            "auth.mode",
            "a Lambda function is invoked through AWS, and mode `api_key` is not an AWS credential",
            add_auth,
        ),
        (
            "s3.toml",
            "auth.service",
            "a Lambda target signs for service `lambda`, not `s3`",
            r#"fix: write service = "lambda""#,
        ),
    ] {
        let at = lines
            .iter()
            .position(|l| l.contains(problem))
            .unwrap_or_else(|| panic!("no `{problem}` in:\n{said}"));
        assert!(
            lines[at].contains(&format!("/targets/{file}:"))
                && lines[at].contains(&format!("`{key}`: {problem}")),
            "{said}"
        );
        assert!(
            lines
                .get(at + 1)
                .is_some_and(|l| l.trim_start().starts_with(fix)),
            "{said}"
        );
    }
}

//! Interoperability of the `aws_sigv4` outbound credential provider with an independent
//! verifier: moto (`peers/aws`), an AWS emulator that checks every SigV4 signature and IAM.
//!
//! Nothing here checks one of our signatures with our own signer: moto accepts or refuses
//! each request. STS `AssumeRole` goes through a recording proxy (forwarding every request
//! unchanged, `Host` included, so moto's signature check still passes) so the tests can assert
//! what was asked of STS — moto does not enforce session policies, so the policy TEXT sent is
//! what is checked.
#![allow(clippy::unwrap_used)] // tests may panic on setup failures

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::header;
use portcullis::config::Secret;
use portcullis::config::outbound::{AssumeRoleSpec, SigV4Spec, StaticAwsCredentials, fill_policy};
use portcullis::identity::Caller;
use portcullis::outbound::{
    Attachment, Clock, CredentialProvider, OutboundRequest, Principal, SigV4, system_clock,
};
use portcullis_e2e::aws::{Moto, Recorder, http_client};
use portcullis_e2e::python_peers;
use url::Url;

const STS_BODY: &str = "Action=GetCallerIdentity&Version=2011-06-15";
const FORM: &str = "application/x-www-form-urlencoded";
const JSON: &str = "application/json";
const POLICY_TEMPLATE: &str = r#"{"Version":"2012-10-17","Statement":[{"Sid":"OneTool","Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:123456789012:function:{tool}","Condition":{"StringEquals":{"aws:SourceIdentity":"{user}"}}}]}"#;

fn spec(
    service: &str,
    credentials: StaticAwsCredentials,
    sts_endpoint: Option<Url>,
    assume_role: Option<AssumeRoleSpec>,
) -> SigV4Spec {
    SigV4Spec {
        service: service.into(),
        region: "us-east-1".into(),
        credentials: Some(credentials),
        sts_endpoint,
        assume_role,
    }
}

fn caller(user: &str) -> Caller {
    Caller {
        issuer: "http://127.0.0.1:1".into(),
        user: user.into(),
        agent: Some("test-agent".into()),
        scopes: BTreeSet::new(),
        groups: Vec::new(),
        tenant: None,
        claims: serde_json::Map::new(),
        expires_at: SystemTime::now() + Duration::from_secs(3600),
    }
}

/// The name AWS sees for a test caller (see `aws_identity_name`).
fn aws_name(user: &str) -> String {
    portcullis::outbound::aws_identity_name("http://127.0.0.1:1", user)
}

/// Send `method url` with `content_type`, `body` and the attachment's headers; (status, body).
async fn send(
    method: &str,
    url: &Url,
    content_type: &str,
    body: &[u8],
    attachment: &Attachment,
) -> (u16, String) {
    assert!(attachment.query.is_empty(), "{attachment:?}");
    let mut req = http_client()
        .request(method.parse().unwrap(), url.as_str())
        .header(header::CONTENT_TYPE, content_type)
        .body(body.to_vec());
    for (name, value) in &attachment.headers {
        req = req.header(name, value);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.text().await.unwrap())
}

/// Sign through the provider's `attach` (as the gateway does) and send.
async fn attach_and_send(
    provider: &SigV4,
    url: &Url,
    content_type: &str,
    body: &[u8],
    caller: Option<&Caller>,
    tool: Option<&str>,
) -> (u16, String) {
    let headers = [("content-type".to_string(), content_type.to_string())];
    let principal = caller.map(|c| Principal::new(c.clone(), None));
    let req = OutboundRequest {
        target: "aws-target",
        method: "POST",
        url,
        headers: &headers,
        body,
        principal: principal.as_ref(),
        tool,
    };
    let attachment = provider.attach(&req).await.unwrap();
    send("POST", url, content_type, body, &attachment).await
}

/// The text of the first `<tag>` in an XML answer.
fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let len = xml[start..].find(&format!("</{tag}>"))?;
    Some(&xml[start..start + len])
}

/// A clock the test moves.
fn movable_clock() -> (Clock, Arc<Mutex<Duration>>) {
    let offset = Arc::new(Mutex::new(Duration::ZERO));
    let o = offset.clone();
    let clock: Clock = Arc::new(move || SystemTime::now() + *o.lock().unwrap());
    (clock, offset)
}

/// IAM's `RoleSessionName` / `SourceIdentity` syntax: `[\w+=,.@-]{2,64}`.
fn iam_name_ok(s: &str) -> bool {
    (2..=64).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@-".contains(c))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_credentials_are_accepted_and_tampering_is_refused() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let url = moto.url("/");

    // Signed by `attach` with the seeded admin's keys: moto verifies and answers who we are.
    let good = SigV4::new(
        spec("sts", moto.credentials(None), None, None),
        system_clock(),
    );
    let (status, body) = attach_and_send(&good, &url, FORM, STS_BODY.as_bytes(), None, None).await;
    assert_eq!(status, 200, "{body}");
    let arn = xml_text(&body, "Arn").unwrap_or_default();
    assert!(arn.ends_with(":user/peers-admin"), "{body}");

    // No signature at all is not accepted (moto answers 500 rather than AWS's 403).
    let (status, body) = send(
        "POST",
        &url,
        FORM,
        STS_BODY.as_bytes(),
        &Attachment::default(),
    )
    .await;
    assert_ne!(status, 200, "{body}");

    // The right key id with a wrong secret: the signature does not match.
    let wrong = SigV4::new(
        spec(
            "sts",
            moto.credentials(Some("wrong-secret-wrong-secret-wrong-secret0")),
            None,
            None,
        ),
        system_clock(),
    );
    let (status, body) = attach_and_send(&wrong, &url, FORM, STS_BODY.as_bytes(), None, None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("SignatureDoesNotMatch"), "{body}");

    // The body changed after signing: the signature covers it.
    let headers = [("content-type".to_string(), FORM.to_string())];
    let req = OutboundRequest {
        target: "aws-target",
        method: "POST",
        url: &url,
        headers: &headers,
        body: STS_BODY.as_bytes(),
        principal: None,
        tool: None,
    };
    let attachment = good.attach(&req).await.unwrap();
    let tampered = format!("{STS_BODY}&Extra=1");
    let (status, body) = send("POST", &url, FORM, tampered.as_bytes(), &attachment).await;
    assert_eq!(status, 403, "{body}");
    // ... and the same attachment with the signed body still passes (the refusal was the body).
    let (status, body) = send("POST", &url, FORM, STS_BODY.as_bytes(), &attachment).await;
    assert_eq!(status, 200, "{body}");

    // The signature covers the content type it was told about.
    let (status, body) = send(
        "POST",
        &url,
        "application/x-www-form-urlencoded; charset=utf-8",
        STS_BODY.as_bytes(),
        &attachment,
    )
    .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_lambda_invoke_echoes_the_payload() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let function = moto.var("AWS_LAMBDA_FUNCTION").to_string();
    let url = moto.url(&format!("/2015-03-31/functions/{function}/invocations"));
    let payload = serde_json::json!({"tool": "echo", "args": {"message": "hi from portcullis"}});
    let body = serde_json::to_vec(&payload).unwrap();

    let provider = SigV4::new(
        spec("lambda", moto.credentials(None), None, None),
        system_clock(),
    );
    let (status, answer) = attach_and_send(&provider, &url, JSON, &body, None, None).await;
    assert_eq!(status, 200, "{answer}");
    let echoed: serde_json::Value = serde_json::from_str(&answer).unwrap();
    assert_eq!(echoed, payload);

    // The JSON payload is covered by the signature: another payload under it is refused.
    let headers = [("content-type".to_string(), JSON.to_string())];
    let req = OutboundRequest {
        target: "aws-target",
        method: "POST",
        url: &url,
        headers: &headers,
        body: &body,
        principal: None,
        tool: None,
    };
    let attachment = provider.attach(&req).await.unwrap();
    let (status, answer) = send("POST", &url, JSON, br#"{"tool":"rm -rf"}"#, &attachment).await;
    assert_eq!(status, 403, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_call_assume_role_sends_the_narrowed_policy_and_caches() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let (sts, recorder, _sts_proxy) = Recorder::start(&moto.endpoint()).await;
    let role_arn = moto.var("AWS_ROLE_ARN").to_string();
    let role = AssumeRoleSpec {
        role_arn: role_arn.clone(),
        session_policy: Some(POLICY_TEMPLATE.into()),
        duration: Duration::from_secs(15 * 60),
        external_id: None,
    };
    let (clock, offset) = movable_clock();
    let provider = SigV4::new(
        spec(
            "sts",
            moto.credentials(None),
            Some(sts.clone()),
            Some(role.clone()),
        ),
        clock,
    );

    let creds = provider
        .credentials(Some(&caller("alice")), Some("peers-echo"), "lambda-target")
        .await
        .unwrap();
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1, "one AssumeRole: {seen:?}");
    assert_eq!(seen[0].answer.0, 200, "moto refused AssumeRole: {seen:?}");
    // The proxy forwarded the Host the SDK signed: moto's verdict is on the SDK's signature.
    assert_eq!(seen[0].host, format!("127.0.0.1:{}", sts.port().unwrap()));
    let form = seen[0].form();
    assert_eq!(form["Action"], "AssumeRole", "{form:?}");
    assert_eq!(form["RoleArn"], role_arn, "{form:?}");
    assert_eq!(
        form["RoleSessionName"],
        format!("u.{}", aws_name("alice")),
        "{form:?}"
    );
    assert_eq!(form["SourceIdentity"], aws_name("alice"), "{form:?}");
    assert_eq!(form["DurationSeconds"], "900", "{form:?}");
    assert!(!form.contains_key("ExternalId"), "{form:?}");
    let sent: serde_json::Value = serde_json::from_str(&form["Policy"]).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&fill_policy(
        POLICY_TEMPLATE,
        "peers-echo",
        "lambda-target",
        &aws_name("alice"),
    ))
    .unwrap();
    assert_eq!(sent, expected);
    assert_eq!(
        sent["Statement"][0]["Resource"],
        "arn:aws:lambda:us-east-1:123456789012:function:peers-echo"
    );

    // Temporary credentials: an ASIA key with a session token and an expiry.
    assert!(creds.access_key_id().starts_with("ASIA"), "{creds:?}");
    assert!(creds.session_token().is_some_and(|t| !t.is_empty()));
    let expiry = creds.expiry().unwrap();
    assert!(
        expiry > SystemTime::now() + Duration::from_secs(800),
        "{expiry:?}"
    );

    // moto accepts a request signed with them (the session token is signed in) as the role
    // session named for alice.
    let url = moto.url("/");
    let headers = [("content-type".to_string(), FORM.to_string())];
    let req = OutboundRequest {
        target: "lambda-target",
        method: "POST",
        url: &url,
        headers: &headers,
        body: STS_BODY.as_bytes(),
        principal: None,
        tool: None,
    };
    let attachment = provider.sign(&creds, &req, SystemTime::now()).unwrap();
    assert!(
        attachment
            .headers
            .iter()
            .any(|(n, _)| n.as_str() == "x-amz-security-token"),
        "{attachment:?}"
    );
    let (status, body) = send("POST", &url, FORM, STS_BODY.as_bytes(), &attachment).await;
    assert_eq!(status, 200, "{body}");
    let arn = xml_text(&body, "Arn").unwrap_or_default();
    assert!(
        arn.contains(":assumed-role/peers-gateway-role/u.alice"),
        "{body}"
    );

    // Without the session token the same key is refused: the token is what makes it valid.
    let no_token = SigV4::new(
        spec(
            "sts",
            StaticAwsCredentials {
                access_key_id: Secret::new(creds.access_key_id()),
                secret_access_key: Secret::new(creds.secret_access_key()),
                session_token: None,
            },
            None,
            None,
        ),
        system_clock(),
    );
    let (status, body) =
        attach_and_send(&no_token, &url, FORM, STS_BODY.as_bytes(), None, None).await;
    assert_eq!(status, 403, "{body}");

    // Same user and tool again: served from the cache, STS is not asked.
    let again = provider
        .credentials(Some(&caller("alice")), Some("peers-echo"), "lambda-target")
        .await
        .unwrap();
    assert_eq!(recorder.seen().len(), 1);
    assert_eq!(again.access_key_id(), creds.access_key_id());

    // Another user: another session, another policy.
    let bob = provider
        .credentials(Some(&caller("bob")), Some("peers-echo"), "lambda-target")
        .await
        .unwrap();
    let seen = recorder.seen();
    assert_eq!(seen.len(), 2);
    assert_ne!(bob.access_key_id(), creds.access_key_id());
    let form = seen[1].form();
    assert_eq!(
        form["RoleSessionName"],
        format!("u.{}", aws_name("bob")),
        "{form:?}"
    );
    assert_eq!(form["SourceIdentity"], aws_name("bob"), "{form:?}");
    let sent: serde_json::Value = serde_json::from_str(&form["Policy"]).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&fill_policy(
        POLICY_TEMPLATE,
        "peers-echo",
        "lambda-target",
        &aws_name("bob"),
    ))
    .unwrap();
    assert_eq!(sent, expected);

    // Another tool for alice: another policy, so another session.
    provider
        .credentials(Some(&caller("alice")), Some("other-fn"), "lambda-target")
        .await
        .unwrap();
    let seen = recorder.seen();
    assert_eq!(seen.len(), 3);
    let sent: serde_json::Value = serde_json::from_str(&seen[2].form()["Policy"]).unwrap();
    assert_eq!(
        sent["Statement"][0]["Resource"],
        "arn:aws:lambda:us-east-1:123456789012:function:other-fn"
    );

    // Ten minutes on, alice's session (15 min) is still good; near its end it is renewed.
    *offset.lock().unwrap() = Duration::from_secs(600);
    provider
        .credentials(Some(&caller("alice")), Some("peers-echo"), "lambda-target")
        .await
        .unwrap();
    assert_eq!(recorder.seen().len(), 3);
    *offset.lock().unwrap() = Duration::from_secs(870);
    let renewed = provider
        .credentials(Some(&caller("alice")), Some("peers-echo"), "lambda-target")
        .await
        .unwrap();
    assert_eq!(recorder.seen().len(), 4);
    assert_ne!(renewed.access_key_id(), creds.access_key_id());
    *offset.lock().unwrap() = Duration::ZERO;

    // The gateway's own requests (no caller) get the role without a narrowing policy.
    provider
        .credentials(None, None, "lambda-target")
        .await
        .unwrap();
    let seen = recorder.seen();
    assert_eq!(seen.len(), 5);
    let form = seen[4].form();
    assert!(!form.contains_key("Policy"), "{form:?}");
    assert!(!form.contains_key("SourceIdentity"), "{form:?}");
    assert_eq!(form["RoleSessionName"], "portcullis-gateway", "{form:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attach_assumes_the_role_for_the_caller_and_tool() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let (sts, recorder, _sts_proxy) = Recorder::start(&moto.endpoint()).await;
    let function = moto.var("AWS_LAMBDA_FUNCTION").to_string();
    let provider = SigV4::new(
        spec(
            "lambda",
            moto.credentials(None),
            Some(sts),
            Some(AssumeRoleSpec {
                role_arn: moto.var("AWS_ROLE_ARN").into(),
                session_policy: Some(POLICY_TEMPLATE.into()),
                duration: Duration::from_secs(15 * 60),
                external_id: Some("ext-123".into()),
            }),
        ),
        system_clock(),
    );
    let url = moto.url(&format!("/2015-03-31/functions/{function}/invocations"));
    let body = br#"{"hello":"lambda"}"#;
    let alice = caller("alice");
    let (status, answer) =
        attach_and_send(&provider, &url, JSON, body, Some(&alice), Some(&function)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer.as_bytes(), body);

    // attach assumed the role for alice and this tool (the policy names them).
    let seen = recorder.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let form = seen[0].form();
    assert_eq!(
        form["RoleSessionName"],
        format!("u.{}", aws_name("alice")),
        "{form:?}"
    );
    assert_eq!(form["SourceIdentity"], aws_name("alice"), "{form:?}");
    assert_eq!(form["ExternalId"], "ext-123", "{form:?}");
    let sent: serde_json::Value = serde_json::from_str(&form["Policy"]).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&fill_policy(
        POLICY_TEMPLATE,
        &function,
        "aws-target",
        &aws_name("alice"),
    ))
    .unwrap();
    assert_eq!(sent, expected);

    // A second call for the same caller and tool reuses the session.
    let (status, answer) =
        attach_and_send(&provider, &url, JSON, body, Some(&alice), Some(&function)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(recorder.seen().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_names_iam_does_not_allow_still_give_valid_sessions() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let (sts, recorder, _sts_proxy) = Recorder::start(&moto.endpoint()).await;
    // The policy names only the tool here: moto re-encodes a form body before checking its
    // signature (a space becomes `+`, where the SDK correctly sends `%20`), so a policy holding
    // "bob smith" would fail moto's check though AWS accepts it. The user's part of this test
    // is the session name and source identity.
    let template = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"lambda:InvokeFunction","Resource":"arn:aws:lambda:us-east-1:123456789012:function:{tool}"}]}"#;
    let provider = SigV4::new(
        spec(
            "sts",
            moto.credentials(None),
            Some(sts),
            Some(AssumeRoleSpec {
                role_arn: moto.var("AWS_ROLE_ARN").into(),
                session_policy: Some(template.into()),
                duration: Duration::from_secs(15 * 60),
                external_id: None,
            }),
        ),
        system_clock(),
    );
    let url = moto.url("/");
    let long = format!("{}@example.com", "very.long.user.name".repeat(5));
    let users = [
        "bob smith/admin",
        "zoë \"quoted\" ünïcode 🙂",
        "x",
        long.as_str(),
    ];
    for (i, user) in users.iter().enumerate() {
        let creds = provider
            .credentials(Some(&caller(user)), Some("peers-echo"), "lambda-target")
            .await
            .unwrap_or_else(|e| panic!("user {user:?}: {e}; STS saw {:?}", recorder.seen()));
        let seen = recorder.seen();
        assert_eq!(seen.len(), i + 1);
        let form = seen[i].form();
        let session = &form["RoleSessionName"];
        let source = &form["SourceIdentity"];
        assert!(iam_name_ok(session), "{user:?} -> session {session:?}");
        assert!(
            iam_name_ok(source),
            "{user:?} -> source identity {source:?}"
        );
        assert!(session.starts_with("u."), "{session}");
        // SourceIdentity is the session name without its `u.` prefix.
        assert_eq!(session.strip_prefix("u.").unwrap(), source.as_str());
        // The user cannot break the policy's structure: it is still the template's JSON.
        let sent: serde_json::Value = serde_json::from_str(&form["Policy"]).unwrap();
        assert_eq!(
            sent["Statement"].as_array().map(Vec::len),
            Some(1),
            "{sent}"
        );

        // moto accepted the session, and requests signed with it work under that name.
        let headers = [("content-type".to_string(), FORM.to_string())];
        let req = OutboundRequest {
            target: "lambda-target",
            method: "POST",
            url: &url,
            headers: &headers,
            body: STS_BODY.as_bytes(),
            principal: None,
            tool: None,
        };
        let attachment = provider.sign(&creds, &req, SystemTime::now()).unwrap();
        let (status, body) = send("POST", &url, FORM, STS_BODY.as_bytes(), &attachment).await;
        assert_eq!(status, 200, "{user:?}: {body}");
        let arn = xml_text(&body, "Arn").unwrap_or_default();
        assert!(
            arn.ends_with(&format!("assumed-role/peers-gateway-role/{session}")),
            "{user:?}: {arn}"
        );
    }
    let seen = recorder.seen();
    // Cleaning changed the name, so a hash of the original keeps it distinct from any other
    // user whose name cleans to the same text ("bob smith/admin" vs "bob-smith-admin").
    let bob = seen[0].form()["SourceIdentity"].clone();
    assert!(
        bob.starts_with("bob-smith-admin.") && bob.len() == "bob-smith-admin.".len() + 8,
        "{bob}"
    );
    assert_eq!(seen[0].form()["RoleSessionName"], format!("u.{bob}"));
}

/// S3 checks signatures differently from every other service: it wants the payload hash in
/// `x-amz-content-sha256`, the path encoded once and not normalised. botocore, signing the same
/// GETs, gets 200 / 404 `NoSuchKey` / 404 / 404 from this moto; the provider gets 403
/// `SignatureDoesNotMatch` for all four (it signs every service with `SigningSettings::default()`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_requests_are_signed_the_way_s3_checks() {
    let Some(peers) = python_peers() else { return };
    let moto = Moto::start(&peers).unwrap();
    let provider = SigV4::new(
        spec("s3", moto.credentials(None), None, None),
        system_clock(),
    );
    for (key, want) in [
        ("hello.txt", 200),
        ("hello%20world.txt", 404),
        ("a%2Bb.txt", 404),
        ("a//b.txt", 404),
    ] {
        let url = moto.url(&format!("/peers-test-bucket/{key}"));
        let req = OutboundRequest {
            target: "s3-target",
            method: "GET",
            url: &url,
            headers: &[],
            body: b"",
            principal: None,
            tool: None,
        };
        let attachment = provider.attach(&req).await.unwrap();
        let mut get = http_client().get(url.as_str());
        for (name, value) in &attachment.headers {
            get = get.header(name, value);
        }
        let resp = get.send().await.unwrap();
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap();
        assert_eq!(status, want, "{key}: {body}");
    }
}

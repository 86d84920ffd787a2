//! Inbound authentication under attack, end to end: a real issuer (an axum server inside the
//! test process, publishing a JWKS from the throwaway keys in `tests/fixtures/`), the real
//! `portcullis` binary trusting it, and `dynamic-upstream` behind the gateway.
//!
//! Every forged, tampered, misdirected or misplaced credential in [`attack_table`] must be
//! refused with the exact RFC 6750 / RFC 9728 challenge, and the upstream's own count of
//! `tools/call` requests must stay at zero. Also: a flood of unknown `kid`s costs the issuer a
//! bounded number of JWKS fetches (and so does a flood during an issuer outage), a key
//! published after startup is picked up, per-tool scopes step up to 403, a session id is no
//! substitute for the caller's own token, attacker-chosen text cannot break the challenge, and
//! the protected resource metadata is what RFC 9728 says.

// A failed step should stop the test right there, with the error in the panic message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use portcullis_e2e::{Gateway, MockServer, Proc, call_tool, connect, spawn_until_line};
use portcullis_e2e::{tool_names, tool_text};
use rmcp::model::CallToolRequestParams;
use serde_json::{Value, json};

const RSA_PEM: &[u8] = include_bytes!("../fixtures/rsa.pem");
const RSA_PUBLIC_PEM: &[u8] = include_bytes!("../fixtures/rsa.pub.pem");
const EC_PEM: &[u8] = include_bytes!("../fixtures/ec.pem");
const ATTACKER_RSA_PEM: &[u8] = include_bytes!("../fixtures/attacker-rsa.pem");

const RSA_KID: &str = "rsa-1";
const EC_KID: &str = "ec-1";
const GOOD_AGENT: &str = "good-agent";
/// Every issuer token needs it (`required_scopes`).
const READ: &str = "mcp:read";
/// `dyn__add_tool` needs it too when the target says `[tools.add_tool] scopes`.
const WRITE: &str = "mcp:write";
/// What a step-up for `dyn__add_tool` asks for: the issuer's scope and the tool's.
const READ_AND_WRITE: &str = "mcp:read mcp:write";
/// How many tokens with random `kid`s the flood sends at once.
const FLOOD: usize = 200;

// ---------------------------------------------------------------------------------------------
// The issuer: discovery document and JWKS, counting every fetch.

#[derive(Debug)]
struct IssuerState {
    issuer: String,
    keys: RwLock<JwkSet>,
    discovery_fetches: AtomicUsize,
    jwks_fetches: AtomicUsize,
    /// While set, `/jwks` answers 503 (the issuer is having an outage).
    jwks_down: AtomicBool,
}

/// An OpenID issuer on 127.0.0.1, served by this test process; stopped on drop.
#[derive(Debug)]
struct Issuer {
    url: String,
    state: Arc<IssuerState>,
    _server: MockServer,
}

impl Issuer {
    async fn start(published: Vec<Jwk>) -> Self {
        let mut state = None;
        let server = MockServer::start_with(|url| {
            let shared = Arc::new(IssuerState {
                issuer: url.to_string(),
                keys: RwLock::new(JwkSet { keys: published }),
                discovery_fetches: AtomicUsize::new(0),
                jwks_fetches: AtomicUsize::new(0),
                jwks_down: AtomicBool::new(false),
            });
            state = Some(shared.clone());
            axum::Router::new()
                .route("/.well-known/openid-configuration", get(discovery))
                .route("/jwks", get(jwks))
                .with_state(shared)
        })
        .await;
        Self {
            url: server.base.clone(),
            state: state.unwrap(),
            _server: server,
        }
    }

    fn jwks_fetches(&self) -> usize {
        self.state.jwks_fetches.load(Ordering::SeqCst)
    }

    fn discovery_fetches(&self) -> usize {
        self.state.discovery_fetches.load(Ordering::SeqCst)
    }

    /// Key rotation: the issuer starts publishing another key.
    fn publish(&self, jwk: Jwk) {
        self.state.keys.write().unwrap().keys.push(jwk);
    }
}

async fn discovery(State(s): State<Arc<IssuerState>>) -> Json<Value> {
    s.discovery_fetches.fetch_add(1, Ordering::SeqCst);
    Json(json!({
        "issuer": s.issuer,
        "jwks_uri": format!("{}/jwks", s.issuer),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256", "ES256"],
    }))
}

async fn jwks(State(s): State<Arc<IssuerState>>) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    s.jwks_fetches.fetch_add(1, Ordering::SeqCst);
    if s.jwks_down.load(Ordering::SeqCst) {
        return http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    Json(s.keys.read().unwrap().clone()).into_response()
}

// ---------------------------------------------------------------------------------------------
// Keys and tokens.

struct Keys {
    rsa: EncodingKey,
    ec: EncodingKey,
    /// Never published by the issuer.
    attacker: EncodingKey,
}

impl Keys {
    fn load() -> Self {
        Self {
            rsa: EncodingKey::from_rsa_pem(RSA_PEM).unwrap(),
            ec: EncodingKey::from_ec_pem(EC_PEM).unwrap(),
            attacker: EncodingKey::from_rsa_pem(ATTACKER_RSA_PEM).unwrap(),
        }
    }

    fn rsa_jwk(&self) -> Jwk {
        public_jwk(&self.rsa, Algorithm::RS256, RSA_KID)
    }

    fn ec_jwk(&self) -> Jwk {
        public_jwk(&self.ec, Algorithm::ES256, EC_KID)
    }
}

/// The public half of `key` as a JWK with `alg` and `kid`, as an issuer publishes it.
fn public_jwk(key: &EncodingKey, alg: Algorithm, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, alg).unwrap();
    jwk.common.key_id = Some(kid.to_string());
    jwk
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Mints tokens as the issuer would, for the gateway's audience.
struct Minter {
    issuer: String,
    audience: String,
    keys: Keys,
}

impl Minter {
    /// Claims the gateway accepts: its own issuer and audience, an allowed client, the
    /// required scope, valid for ten minutes.
    fn claims(&self) -> Value {
        let now = now();
        json!({
            "iss": self.issuer,
            "sub": "alice",
            "aud": self.audience,
            "azp": GOOD_AGENT,
            "scope": READ,
            "iat": now,
            "exp": now + 600,
        })
    }

    /// The valid claims with `changes` applied (a `null` removes the claim).
    fn claims_with(&self, changes: Value) -> Value {
        let mut claims = self.claims();
        let object = claims.as_object_mut().unwrap();
        for (k, v) in changes.as_object().unwrap() {
            if v.is_null() {
                object.remove(k);
            } else {
                object.insert(k.clone(), v.clone());
            }
        }
        claims
    }

    fn rs256(&self, claims: &Value) -> String {
        sign(Algorithm::RS256, Some(RSA_KID), claims, &self.keys.rsa)
    }

    fn es256(&self, claims: &Value) -> String {
        sign(Algorithm::ES256, Some(EC_KID), claims, &self.keys.ec)
    }

    /// A token the gateway must accept (signed with the RSA key).
    fn valid(&self) -> String {
        self.rs256(&self.claims())
    }
}

fn sign(alg: Algorithm, kid: Option<&str>, claims: &Value, key: &EncodingKey) -> String {
    let header = Header {
        kid: kid.map(str::to_string),
        ..Header::new(alg)
    };
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A JWT assembled by hand, for headers a JWT library will not write: `header` as given,
/// signed with `key` under `alg`, or with an empty signature when `signer` is `None`.
fn hand_made(header: &Value, claims: &Value, signer: Option<(&EncodingKey, Algorithm)>) -> String {
    let signing_input = format!("{}.{}", b64_json(header), b64_json(claims));
    let signature = match signer {
        Some((key, alg)) => jsonwebtoken::crypto::sign(signing_input.as_bytes(), key, alg).unwrap(),
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

/// The same token with one bit of its signature changed.
fn flip_signature_bit(token: &str) -> String {
    let (signing_input, signature) = token.rsplit_once('.').unwrap();
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The same token, header and signature untouched, with its claims segment re-encoded after
/// `sub` was changed.
fn tamper_subject(token: &str, sub: &str) -> String {
    let [header, claims, signature]: [&str; 3] =
        token.split('.').collect::<Vec<_>>().try_into().unwrap();
    let mut claims: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    claims["sub"] = json!(sub);
    format!("{header}.{}.{signature}", b64_json(&claims))
}

fn random_kid(i: usize) -> String {
    // A fresh RandomState is seeded anew: unpredictable, distinct kids without a rand crate.
    let hashed = std::collections::hash_map::RandomState::new().hash_one(i);
    format!("rotated-{hashed:016x}-{i}")
}

// ---------------------------------------------------------------------------------------------
// The stack: issuer, upstream, gateway.

#[derive(Debug, Default)]
struct Setup {
    /// Put `dynamic-upstream` behind the gateway as target `dyn`.
    upstream: bool,
    /// `[tools.add_tool] scopes = ["mcp:write"]` on that target.
    write_scope_on_add_tool: bool,
    /// Configure `jwks_uri` instead of letting the gateway discover it.
    jwks_uri: bool,
    /// The issuer publishes only the RSA key at first (the EC key is rotated in later).
    rsa_only: bool,
    /// The issuer's JWKS endpoint is down from the start.
    jwks_down: bool,
}

/// Killed in field order: the gateway first, so it does not log its upstream vanishing.
struct Stack {
    gateway: Gateway,
    _upstream: Option<Proc>,
    issuer: Issuer,
    minter: Minter,
    http: reqwest::Client,
}

impl Stack {
    async fn start(setup: Setup) -> Self {
        let keys = Keys::load();
        let mut published = vec![keys.rsa_jwk()];
        if !setup.rsa_only {
            published.push(keys.ec_jwk());
        }
        // The issuer first: the gateway fetches its keys while starting.
        let issuer = Issuer::start(published).await;
        issuer
            .state
            .jwks_down
            .store(setup.jwks_down, Ordering::SeqCst);

        let mut targets = Vec::new();
        let mut upstream = None;
        if setup.upstream {
            let (proc, url) = tokio::task::spawn_blocking(|| {
                spawn_until_line(
                    Command::new(env!("CARGO_BIN_EXE_dynamic-upstream")),
                    "dynamic-upstream",
                    "http://",
                    Duration::from_secs(30),
                )
            })
            .await
            .unwrap()
            .unwrap();
            let mut target = format!("[mcp]\nurl = \"{url}\"\n");
            if setup.write_scope_on_add_tool {
                target.push_str(&format!("\n[tools.add_tool]\nscopes = [\"{WRITE}\"]\n"));
            }
            targets.push(("dyn", target));
            upstream = Some(proc);
        }

        let mut gateway_toml = format!(
            "[[inbound.issuers]]\n\
             issuer = \"{issuer}\"\n\
             allowed_clients = [\"{GOOD_AGENT}\"]\n\
             required_scopes = [\"{READ}\"]\n\
             jwks_refetch_interval = \"30s\"\n",
            issuer = issuer.url,
        );
        if setup.jwks_uri {
            gateway_toml.push_str(&format!("jwks_uri = \"{}/jwks\"\n", issuer.url));
        }
        // Blocking (it waits for the gateway's ready line) while this runtime serves the
        // issuer the gateway is fetching keys from.
        let gateway = tokio::task::spawn_blocking(move || Gateway::start(&gateway_toml, &targets))
            .await
            .unwrap()
            .unwrap();

        let minter = Minter {
            issuer: issuer.url.clone(),
            // The default audience: the gateway's canonical MCP URL, known only now.
            audience: gateway.url.clone(),
            keys,
        };
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        Self {
            gateway,
            _upstream: upstream,
            issuer,
            minter,
            http,
        }
    }

    /// What every challenge must name (RFC 9728 §5.1).
    fn resource_metadata(&self) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp",
            self.gateway.base()
        )
    }

    async fn send(&self, request: &Attempt) -> Reply {
        self.send_in(request, None).await
    }

    /// `request` in an existing 2025-11-25 session. An admitted request's SSE answer is read
    /// (the stream of a POST ends with its response) into `body`: the JSON-RPC response.
    async fn send_in(&self, request: &Attempt, session: Option<&str>) -> Reply {
        let url = match &request.query {
            Some(q) => format!("{}?{q}", self.gateway.url),
            None => self.gateway.url.clone(),
        };
        let mut builder = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        // `header` appends, so two values make two Authorization headers.
        for value in &request.authorization {
            builder = builder.header("authorization", value);
        }
        if let Some(id) = session {
            builder = builder
                .header("mcp-session-id", id)
                .header("mcp-protocol-version", "2025-11-25");
        }
        let response = builder.json(&request.body).send().await.unwrap();
        let status = response.status().as_u16();
        let challenges: Vec<String> = response
            .headers()
            .get_all("www-authenticate")
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        let new_session = response
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().unwrap().to_owned());
        // Refusals are small JSON documents. Outside a session an admitted request is not
        // read: it may be an open SSE stream.
        let body = if !(200..300).contains(&status) {
            response.json().await.unwrap_or(Value::Null)
        } else if session.is_some() {
            let text = tokio::time::timeout(Duration::from_secs(30), response.text())
                .await
                .expect("the SSE answer to a POST did not end")
                .unwrap();
            text.lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .filter_map(|d| serde_json::from_str::<Value>(d.trim()).ok())
                .find(|m| m.get("id").is_some())
                .unwrap_or(Value::Null)
        } else {
            Value::Null
        };
        Reply {
            status,
            challenges,
            body,
            session: new_session,
        }
    }

    /// How many `tools/call` requests reached the upstream so far, asked through the gateway
    /// with a valid `token` (the `calls` tool does not count itself).
    async fn upstream_calls(&self, token: &str) -> u64 {
        let client = connect(&self.gateway.url, Some(token)).await;
        let result = client
            .call_tool(CallToolRequestParams::new("dyn__calls"))
            .await
            .unwrap();
        client.cancel().await.unwrap();
        tool_text(&result).trim().parse().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// Raw requests and the challenges they get.

/// One raw HTTP request to `/mcp`.
#[derive(Debug, Clone)]
struct Attempt {
    /// One value per `Authorization` header.
    authorization: Vec<String>,
    query: Option<String>,
    body: Value,
}

impl Attempt {
    fn bearer(token: &str, body: Value) -> Self {
        Self {
            authorization: vec![format!("Bearer {token}")],
            query: None,
            body,
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    /// Every `WWW-Authenticate` header.
    challenges: Vec<String>,
    body: Value,
    /// The `Mcp-Session-Id` the gateway assigned (initialize only).
    session: Option<String>,
}

/// A tools/call of the upstream's `add_tool`: if it ever got through, the upstream would
/// count it.
fn call_add_tool(name: &str) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": { "name": "dyn__add_tool", "arguments": { "name": name } },
    })
}

fn initialize() -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": { "name": "inbound-attacks", "version": "0" },
        },
    })
}

/// The refusal a request must get.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 401 and a challenge without `error`: no bearer token was presented (RFC 6750 §3.1).
    Missing,
    /// 401 `invalid_token`, the `error_description` containing this.
    Invalid(&'static str),
    /// 403 `insufficient_scope` asking for exactly these scopes.
    Scope(&'static str),
    /// 400 `invalid_request`, the `error_description` containing this.
    BadRequest(&'static str),
}

/// `Bearer k="v", k="v"` → its parameters. The gateway never puts `"` inside a value.
fn parse_challenge(header: &str) -> Result<BTreeMap<String, String>, String> {
    let mut rest = header
        .strip_prefix("Bearer ")
        .ok_or_else(|| format!("challenge is not a Bearer challenge: {header}"))?;
    let mut params = BTreeMap::new();
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .ok_or_else(|| format!("unparsable challenge: {header}"))?;
        let (value, after) = after
            .split_once('"')
            .ok_or_else(|| format!("unterminated value in challenge: {header}"))?;
        if params
            .insert(key.trim().to_string(), value.to_string())
            .is_some()
        {
            return Err(format!("parameter {key} twice in challenge: {header}"));
        }
        rest = after.trim_start();
        if !rest.is_empty() {
            rest = rest
                .strip_prefix(',')
                .ok_or_else(|| format!("parameters not comma-separated: {header}"))?
                .trim_start();
        }
    }
    Ok(params)
}

fn check(reply: &Reply, expect: Expect, resource_metadata: &str) -> Result<(), String> {
    let (status, error, scope, needle) = match expect {
        Expect::Missing => (401, None, Some(READ), None),
        Expect::Invalid(needle) => (401, Some("invalid_token"), None, Some(needle)),
        Expect::Scope(scope) => (403, Some("insufficient_scope"), Some(scope), None),
        Expect::BadRequest(needle) => (400, Some("invalid_request"), None, Some(needle)),
    };
    if reply.status != status {
        return Err(format!(
            "status {} instead of {status}: {reply:?}",
            reply.status
        ));
    }
    let [challenge] = reply.challenges.as_slice() else {
        return Err(format!(
            "expected exactly one WWW-Authenticate header: {reply:?}"
        ));
    };
    let params = parse_challenge(challenge)?;
    // Exactly these parameters, no more.
    let mut expected_keys = vec!["resource_metadata"];
    if error.is_some() {
        expected_keys.extend(["error", "error_description"]);
    }
    if scope.is_some() {
        expected_keys.push("scope");
    }
    expected_keys.sort_unstable();
    let keys: Vec<&str> = params.keys().map(String::as_str).collect();
    if keys != expected_keys {
        return Err(format!(
            "challenge parameters {keys:?}, expected {expected_keys:?}: {challenge}"
        ));
    }
    if params["resource_metadata"] != resource_metadata {
        return Err(format!(
            "resource_metadata is not {resource_metadata}: {challenge}"
        ));
    }
    if let Some(error) = error
        && params["error"] != error
    {
        return Err(format!("error is not {error}: {challenge}"));
    }
    if let Some(scope) = scope
        && params["scope"] != scope
    {
        return Err(format!("scope is not \"{scope}\": {challenge}"));
    }
    if let Some(needle) = needle
        && !params["error_description"].contains(needle)
    {
        return Err(format!(
            "error_description does not mention {needle:?}, so the token may have been refused for another reason: {challenge}"
        ));
    }
    // The JSON body agrees with the challenge.
    let body_error = error.unwrap_or("unauthorized");
    if reply.body["error"] != body_error {
        return Err(format!("body error is not {body_error}: {}", reply.body));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// The attack table.

/// One row of the attack table: the request, and the refusal it must get.
#[derive(Debug)]
struct Case {
    name: &'static str,
    attempt: Attempt,
    expect: Expect,
}

/// Every case differs from a valid request in one way only, so the expected description
/// proves the gateway refused it for that reason.
fn attack_table(stack: &Stack) -> Vec<Case> {
    let m = &stack.minter;
    let keys = &m.keys;
    let now = now();
    let claims = m.claims();
    let valid = m.valid();
    let rs256 = |changes: Value| m.rs256(&m.claims_with(changes));
    let bearer = |name: &'static str, token: &str, expect: Expect| Case {
        name,
        attempt: Attempt::bearer(token, call_add_tool(name)),
        expect,
    };
    let attacker_jwk =
        serde_json::to_value(public_jwk(&keys.attacker, Algorithm::RS256, "attacker-1")).unwrap();
    let padding = "A".repeat(80 * 1024);
    let huge = rs256(json!({ "pad": padding }));
    assert!(
        huge.len() >= 100 * 1024,
        "the huge token is {} bytes",
        huge.len()
    );

    vec![
        Case {
            name: "no_token",
            attempt: Attempt {
                authorization: vec![],
                query: None,
                body: initialize(),
            },
            expect: Expect::Missing,
        },
        bearer("not_a_jwt", "abc", Expect::Invalid("malformed")),
        bearer(
            "alg_none",
            &hand_made(&json!({ "alg": "none", "typ": "JWT" }), &claims, None),
            Expect::Invalid("alg none"),
        ),
        bearer(
            "alg_none_mixed_case",
            &hand_made(&json!({ "alg": "nOnE", "typ": "JWT" }), &claims, None),
            Expect::Invalid("alg none"),
        ),
        // The classic key confusion: HMAC keyed with the issuer's public key, which anyone
        // can download, under the RSA key's kid.
        bearer(
            "hs256_keyed_with_the_rsa_public_key",
            &hand_made(
                &json!({ "alg": "HS256", "typ": "JWT", "kid": RSA_KID }),
                &claims,
                Some((&EncodingKey::from_secret(RSA_PUBLIC_PEM), Algorithm::HS256)),
            ),
            Expect::Invalid("HS256"),
        ),
        bearer(
            "unknown_kid",
            &sign(Algorithm::RS256, Some("no-such-key"), &claims, &keys.rsa),
            Expect::Invalid("not published"),
        ),
        // Past the 30 s leeway.
        bearer(
            "expired",
            &rs256(json!({ "iat": now - 900, "exp": now - 120 })),
            Expect::Invalid("expired"),
        ),
        bearer(
            "not_yet_valid",
            &rs256(json!({ "nbf": now + 300 })),
            Expect::Invalid("not valid yet"),
        ),
        bearer(
            "no_exp",
            &rs256(json!({ "exp": null })),
            Expect::Invalid("`exp`"),
        ),
        bearer(
            "wrong_issuer",
            &rs256(json!({ "iss": "http://127.0.0.1:1" })),
            Expect::Invalid("not trusted"),
        ),
        // `iss` must equal the configured issuer exactly, without normalisation.
        bearer(
            "issuer_with_trailing_slash",
            &rs256(json!({ "iss": format!("{}/", m.issuer) })),
            Expect::Invalid("not trusted"),
        ),
        bearer(
            "wrong_audience",
            &rs256(json!({ "aud": "https://api.example.com/" })),
            Expect::Invalid("audience"),
        ),
        // RFC 8707: a token minted for another MCP server must not be replayable here.
        bearer(
            "audience_of_another_resource",
            &rs256(json!({ "aud": "http://127.0.0.1:1/mcp" })),
            Expect::Invalid("audience"),
        ),
        bearer(
            "audience_is_the_origin_not_the_endpoint",
            &rs256(json!({ "aud": stack.gateway.base() })),
            Expect::Invalid("audience"),
        ),
        bearer(
            "client_not_allowed",
            &rs256(json!({ "azp": "evil-agent" })),
            Expect::Invalid("evil-agent"),
        ),
        bearer(
            "client_not_allowed_via_client_id",
            &rs256(json!({ "azp": null, "client_id": "evil-agent" })),
            Expect::Invalid("evil-agent"),
        ),
        bearer(
            "no_client_claim",
            &rs256(json!({ "azp": null })),
            Expect::Invalid("not allowed"),
        ),
        bearer(
            "missing_required_scope",
            &rs256(json!({ "scope": "profile email" })),
            Expect::Scope(READ),
        ),
        bearer(
            "signature_bit_flipped",
            &flip_signature_bit(&valid),
            Expect::Invalid("signature"),
        ),
        bearer(
            "claims_tampered_after_signing",
            &tamper_subject(&valid, "mallory"),
            Expect::Invalid("signature"),
        ),
        bearer(
            "signed_by_another_key_under_the_real_kid",
            &sign(Algorithm::RS256, Some(RSA_KID), &claims, &keys.attacker),
            Expect::Invalid("signature"),
        ),
        // The token carries its own key (`jwk`) and a URL for more (`jku`): neither may be
        // trusted, only the issuer's JWKS.
        bearer(
            "embedded_jwk_and_jku",
            &hand_made(
                &json!({
                    "alg": "RS256",
                    "typ": "JWT",
                    "kid": "attacker-1",
                    "jwk": attacker_jwk,
                    "jku": "http://127.0.0.1:1/jwks",
                }),
                &claims,
                Some((&keys.attacker, Algorithm::RS256)),
            ),
            Expect::Invalid("not published"),
        ),
        // A published EC key's signature, presented under the RSA key's kid.
        bearer(
            "es256_under_the_rsa_kid",
            &sign(Algorithm::ES256, Some(RSA_KID), &claims, &keys.ec),
            Expect::Invalid("does not match"),
        ),
        // The RSA key is published for RS256 only.
        bearer(
            "ps256_with_the_rs256_key",
            &sign(Algorithm::PS256, Some(RSA_KID), &claims, &keys.rsa),
            Expect::Invalid("does not match"),
        ),
        bearer("token_of_100_kb", &huge, Expect::Invalid("larger than")),
        // Validly signed, but it says the verifier must understand an extension it does not.
        bearer(
            "crit_unknown_extension",
            &hand_made(
                &json!({
                    "alg": "RS256",
                    "typ": "JWT",
                    "kid": RSA_KID,
                    "crit": ["urn:example:unknown-extension"],
                    "urn:example:unknown-extension": true,
                }),
                &claims,
                Some((&keys.rsa, Algorithm::RS256)),
            ),
            Expect::Invalid("crit"),
        ),
        // A valid token, but in the URL (logs, browser history): refused outright.
        Case {
            name: "token_in_query_string",
            attempt: Attempt {
                authorization: vec![],
                query: Some(format!("access_token={valid}")),
                body: call_add_tool("token_in_query_string"),
            },
            expect: Expect::BadRequest("URL"),
        },
        Case {
            name: "basic_scheme",
            attempt: Attempt {
                authorization: vec![format!(
                    "Basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:password")
                )],
                query: None,
                body: initialize(),
            },
            expect: Expect::Missing,
        },
        // Even when both are valid: which one would be the caller?
        Case {
            name: "two_authorization_headers",
            attempt: Attempt {
                authorization: vec![
                    format!("Bearer {valid}"),
                    format!("Bearer {}", m.es256(&claims)),
                ],
                query: None,
                body: call_add_tool("two_authorization_headers"),
            },
            expect: Expect::BadRequest("exactly one"),
        },
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn every_attack_is_refused_with_its_challenge_and_nothing_reaches_the_upstream() {
    let stack = Stack::start(Setup {
        upstream: true,
        ..Setup::default()
    })
    .await;
    let valid = stack.minter.valid();
    // The counter works through the gateway, and starts at zero.
    assert_eq!(stack.upstream_calls(&valid).await, 0);

    let cases = attack_table(&stack);
    assert!(cases.len() >= 17, "only {} cases", cases.len());
    let resource_metadata = stack.resource_metadata();
    let mut failures = Vec::new();
    for case in &cases {
        let reply = stack.send(&case.attempt).await;
        if let Err(why) = check(&reply, case.expect, &resource_metadata) {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} attacks were not refused as expected:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );

    // Tokens signed with the other published key (ES256) are accepted too, so the gateway was
    // not simply refusing everything; and not one attack's tools/call reached the upstream.
    let es256 = stack.minter.es256(&stack.minter.claims());
    assert_eq!(
        stack.upstream_calls(&es256).await,
        0,
        "an attack reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_unknown_kids_costs_the_issuer_a_bounded_number_of_jwks_fetches() {
    let stack = Stack::start(Setup {
        jwks_uri: true,
        ..Setup::default()
    })
    .await;
    let at_startup = stack.issuer.jwks_fetches();
    assert!(
        at_startup >= 1,
        "the gateway did not fetch the keys at startup"
    );
    assert_eq!(
        stack.issuer.discovery_fetches(),
        0,
        "with jwks_uri configured there is nothing to discover"
    );

    let stack = Arc::new(stack);
    let mut flood = tokio::task::JoinSet::new();
    for i in 0..FLOOD {
        let stack = stack.clone();
        let claims = stack.minter.claims();
        let token = sign(
            Algorithm::RS256,
            Some(&random_kid(i)),
            &claims,
            &stack.minter.keys.rsa,
        );
        flood.spawn(async move {
            let reply = stack
                .send(&Attempt::bearer(&token, call_add_tool("flood")))
                .await;
            check(
                &reply,
                Expect::Invalid("not published"),
                &stack.resource_metadata(),
            )
        });
    }
    let results = flood.join_all().await;
    let refused = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(
        refused,
        FLOOD,
        "not every unknown kid was refused with invalid_token: {:?}",
        results.iter().find(|r| r.is_err())
    );

    // An unknown kid may mean the issuer rotated its keys, so the gateway refetches the JWKS;
    // but at most once per `jwks_refetch_interval` (30 s here) and single-flight, so the whole
    // flood costs the issuer exactly one fetch. At least one: the refetch is what lets a
    // rotated key in (see the rotation test). At most two: slack for a machine so slow the
    // flood straddles two intervals. Without the limit this would be up to 200.
    let beyond_startup = stack.issuer.jwks_fetches() - at_startup;
    assert!(
        (1..=2).contains(&beyond_startup),
        "{FLOOD} unknown kids made the gateway fetch the JWKS {beyond_startup} more times"
    );

    // The flood did not cost legitimate callers their keys.
    let reply = stack
        .send(&Attempt::bearer(&stack.minter.valid(), initialize()))
        .await;
    assert_eq!(reply.status, 200, "valid token after the flood: {reply:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_published_after_startup_is_fetched_when_a_token_names_it() {
    let stack = Stack::start(Setup {
        rsa_only: true,
        ..Setup::default()
    })
    .await;
    assert!(
        stack.issuer.discovery_fetches() >= 1,
        "keys were not discovered"
    );
    let before = stack.issuer.jwks_fetches();

    // The issuer rotates in its EC key and a token signed with it arrives.
    stack.issuer.publish(stack.minter.keys.ec_jwk());
    let token = stack.minter.es256(&stack.minter.claims());
    let reply = stack.send(&Attempt::bearer(&token, initialize())).await;
    assert_eq!(
        reply.status, 200,
        "token signed with the new key: {reply:?}"
    );
    assert_eq!(
        stack.issuer.jwks_fetches() - before,
        1,
        "one JWKS refetch for the new kid"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tool_scope_steps_up_to_403_and_a_token_with_it_calls_the_tool() {
    let stack = Stack::start(Setup {
        upstream: true,
        write_scope_on_add_tool: true,
        ..Setup::default()
    })
    .await;
    let m = &stack.minter;
    let read_only = m.valid();
    let read_write = m.rs256(&m.claims_with(json!({ "scope": READ_AND_WRITE })));

    // The happy path: initialize (inside `connect`) and tools/list with a valid token.
    let reader = connect(&stack.gateway.url, Some(&read_only)).await;
    let tools = tool_names(&reader).await;
    for expected in ["dyn__add_tool", "dyn__calls"] {
        assert!(tools.iter().any(|t| t == expected), "tools: {tools:?}");
    }
    reader.cancel().await.unwrap();

    // mcp:read alone: 403 naming every scope the call needs, the issuer's and the tool's.
    let resource_metadata = stack.resource_metadata();
    let reply = stack
        .send(&Attempt::bearer(&read_only, call_add_tool("stepped_up")))
        .await;
    check(&reply, Expect::Scope(READ_AND_WRITE), &resource_metadata).unwrap();
    let description = &parse_challenge(&reply.challenges[0]).unwrap()["error_description"];
    assert!(description.contains("dyn__add_tool"), "{description}");
    // Nor can the call hide in a batch behind a harmless request.
    let batch = json!([
        { "jsonrpc": "2.0", "id": 1, "method": "tools/list" },
        call_add_tool("stepped_up"),
    ]);
    let reply = stack.send(&Attempt::bearer(&read_only, batch)).await;
    check(&reply, Expect::Scope(READ_AND_WRITE), &resource_metadata).unwrap();
    // Tools without a scope of their own stay callable with mcp:read.
    assert_eq!(stack.upstream_calls(&read_only).await, 0);

    // With both scopes the call goes through, and the upstream counts it.
    let writer = connect(&stack.gateway.url, Some(&read_write)).await;
    let result = call_tool(&writer, "dyn__add_tool", json!({ "name": "stepped_up" }))
        .await
        .unwrap();
    assert!(tool_text(&result).contains("stepped_up"), "{result:?}");
    writer.cancel().await.unwrap();
    assert_eq!(stack.upstream_calls(&read_only).await, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn protected_resource_metadata_follows_rfc_9728() {
    let stack = Stack::start(Setup {
        upstream: true,
        write_scope_on_add_tool: true,
        ..Setup::default()
    })
    .await;
    let base = stack.gateway.base();

    // A client starts from the 401 challenge and follows its resource_metadata.
    let reply = stack
        .send(&Attempt {
            authorization: vec![],
            query: None,
            body: initialize(),
        })
        .await;
    check(&reply, Expect::Missing, &stack.resource_metadata()).unwrap();
    let url = parse_challenge(&reply.challenges[0]).unwrap()["resource_metadata"].clone();
    assert_eq!(
        url,
        format!("{base}/.well-known/oauth-protected-resource/mcp")
    );

    let get = |url: String| {
        let http = stack.http.clone();
        async move {
            // No token: the metadata is public.
            let response = http.get(&url).send().await.unwrap();
            assert_eq!(response.status(), 200, "GET {url}");
            let content_type = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_owned();
            assert!(
                content_type.starts_with("application/json"),
                "{content_type}"
            );
            response.json::<Value>().await.unwrap()
        }
    };

    let doc = get(url).await;
    // §3.3: the resource the well-known URL was built from, which is also the audience.
    assert_eq!(doc["resource"], json!(stack.gateway.url), "{doc}");
    assert_eq!(
        doc["authorization_servers"],
        json!([stack.issuer.url]),
        "{doc}"
    );
    let scopes = doc["scopes_supported"].as_array().unwrap();
    for scope in [READ, WRITE] {
        assert!(scopes.contains(&json!(scope)), "scopes_supported: {doc}");
    }
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]), "{doc}");
    assert!(
        doc["resource_name"].as_str().is_some_and(|n| !n.is_empty()),
        "{doc}"
    );

    // The root document describes the origin, not the endpoint (RFC 9728 §3.3).
    let root = get(format!("{base}/.well-known/oauth-protected-resource")).await;
    assert_eq!(root["resource"], json!(base), "{root}");
    assert!(!base.ends_with("/mcp") && !base.ends_with('/'), "{base}");
    assert_eq!(
        root["authorization_servers"],
        json!([stack.issuer.url]),
        "{root}"
    );
    assert_eq!(
        root["bearer_methods_supported"],
        json!(["header"]),
        "{root}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_session_id_is_not_a_credential() {
    let stack = Stack::start(Setup {
        upstream: true,
        ..Setup::default()
    })
    .await;
    let m = &stack.minter;
    let alice = m.valid();
    let mallory = m.rs256(&m.claims_with(json!({ "sub": "mallory" })));

    // Alice opens a session.
    let opened = stack.send(&Attempt::bearer(&alice, initialize())).await;
    assert_eq!(opened.status, 200, "{opened:?}");
    let session = opened.session.expect("no Mcp-Session-Id");
    let initialized = json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
    let reply = stack
        .send_in(&Attempt::bearer(&alice, initialized), Some(&session))
        .await;
    assert_eq!(reply.status, 202, "{reply:?}");

    // Mallory, whose own token is valid, presents Alice's session id: refused, as forbidden
    // (403) or as if the session did not exist (404, what MCP answers for unknown sessions).
    let hijack = Attempt::bearer(&mallory, call_add_tool("hijacked"));
    let reply = stack.send_in(&hijack, Some(&session)).await;
    assert!(matches!(reply.status, 403 | 404), "{reply:?}");
    for challenge in &reply.challenges {
        let params = parse_challenge(challenge).unwrap();
        assert_eq!(params["resource_metadata"], stack.resource_metadata());
    }

    // The session itself is fine for Alice, and Mallory's call never reached the upstream.
    let count = Attempt::bearer(
        &alice,
        json!({
            "jsonrpc": "2.0",
            "id": 7,
            "method": "tools/call",
            "params": { "name": "dyn__calls", "arguments": {} },
        }),
    );
    let reply = stack.send_in(&count, Some(&session)).await;
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(
        reply.body["result"]["content"][0]["text"],
        json!("0"),
        "{reply:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// Attacker-chosen text in challenges, and issuer outages.

/// RFC 6750 §3: `error_description` is limited to %x20-21 / %x23-5B / %x5D-7E.
fn rfc6750_clean(value: &str) -> bool {
    value
        .bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_challenge_survives_attacker_chosen_text_in_the_token() {
    // The gateway quotes the token's own `iss` and `kid` back in error_description. A control
    // character there once made the header invalid and the 401 went out with no challenge at
    // all; a long `iss` made a header of any size.
    let stack = Stack::start(Setup::default()).await;
    let m = &stack.minter;
    let cases = [
        (
            "control character in iss",
            m.rs256(&m.claims_with(json!({ "iss": "http://evil\u{1}.example" }))),
        ),
        (
            "newline in iss",
            m.rs256(&m.claims_with(json!({ "iss": "http://evil\n.example" }))),
        ),
        (
            "DEL in kid",
            sign(
                Algorithm::RS256,
                Some("key\u{7f}"),
                &m.claims(),
                &m.keys.rsa,
            ),
        ),
        (
            "non-ASCII iss",
            m.rs256(&m.claims_with(json!({ "iss": "http://évil.example" }))),
        ),
        (
            "10 KB iss",
            m.rs256(&m.claims_with(json!({ "iss": format!("http://{}", "a".repeat(10 * 1024)) }))),
        ),
    ];
    let mut failures = Vec::new();
    for (name, token) in cases {
        let reply = stack.send(&Attempt::bearer(&token, initialize())).await;
        let checked =
            check(&reply, Expect::Invalid(""), &stack.resource_metadata()).and_then(|()| {
                let challenge = &reply.challenges[0];
                let description = &parse_challenge(challenge)?["error_description"];
                if !rfc6750_clean(description) {
                    Err(format!("characters RFC 6750 does not allow: {challenge:?}"))
                } else if challenge.len() > 1024 {
                    Err(format!("a challenge of {} bytes", challenge.len()))
                } else {
                    Ok(())
                }
            });
        if let Err(why) = checked {
            failures.push(format!("{name}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_issuer_outage_does_not_turn_a_token_flood_into_a_jwks_flood() {
    let stack = Arc::new(
        Stack::start(Setup {
            jwks_uri: true,
            jwks_down: true,
            ..Setup::default()
        })
        .await,
    );
    let at_startup = stack.issuer.jwks_fetches();
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..FLOOD {
        let stack = stack.clone();
        flood.spawn(async move {
            let reply = stack
                .send(&Attempt::bearer(&stack.minter.valid(), initialize()))
                .await;
            // The token may well be valid: the client is told to retry (503), not that its
            // token is bad (401 would send it back to its IdP for nothing).
            let described = reply.body["error_description"].as_str().unwrap_or_default();
            if reply.status != 503 {
                Err(format!("status {} instead of 503: {reply:?}", reply.status))
            } else if !described.contains("cannot be fetched now") {
                Err(format!("the reason is not given: {reply:?}"))
            } else {
                Ok(())
            }
        });
    }
    for result in flood.join_all().await {
        result.unwrap();
    }
    // Like the unknown-kid refetch, retrying a failed fetch should be limited (backoff, or at
    // most once per `jwks_refetch_interval`), so that an outage plus a flood of tokens (which
    // anyone can mint: no valid signature is needed to get this far) does not hammer the
    // issuer and queue every request behind one fetch at a time.
    let beyond_startup = stack.issuer.jwks_fetches() - at_startup;
    assert!(
        beyond_startup <= 2,
        "{FLOOD} requests during the outage made {beyond_startup} JWKS fetches"
    );
}

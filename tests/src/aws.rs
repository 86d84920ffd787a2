//! moto (`peers/aws`), an AWS emulator that checks every SigV4 signature and IAM, and a
//! recording proxy to put in front of it.
//!
//! The proxy forwards every request unchanged — `Host` included, so moto's verdict is on the
//! signature the sender made for the proxy's address — and records what it saw and what moto
//! answered, so tests can assert what was asked of STS or Lambda. Where moto cannot produce an
//! answer real AWS gives (a function error, a missing function), a test can have the proxy
//! answer one designated request itself ([`Recorder::start_answering`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use axum::extract::{Request, State};
use axum::response::Response;
use http::header;
use portcullis::config::Secret;
use portcullis::config::outbound::StaticAwsCredentials;
use url::Url;

use crate::{MockServer, port_for_peer_script};

/// moto from `peers/aws` on a loopback port (see [`port_for_peer_script`]), seeded; stopped on
/// drop (also on panic).
#[derive(Debug)]
pub struct Moto {
    pub port: u16,
    peers: PathBuf,
    env: HashMap<String, String>,
}

impl Moto {
    pub fn start(peers: &Path) -> Result<Self> {
        let port = port_for_peer_script();
        // The guard exists before the script runs: a start that fails half-way is stopped too.
        let mut moto = Self {
            port,
            peers: peers.to_path_buf(),
            env: HashMap::new(),
        };
        let url = moto.script("start-aws.sh")?;
        if url != format!("http://127.0.0.1:{port}") {
            bail!("start-aws.sh printed {url:?}");
        }
        let seeded = moto.script("seed.sh")?;
        moto.env = seeded
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        for key in [
            "AWS_ENDPOINT_URL",
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "AWS_ROLE_ARN",
            "AWS_LAMBDA_FUNCTION",
        ] {
            if !moto.env.contains_key(key) {
                bail!("seed.sh printed no {key}: {seeded}");
            }
        }
        Ok(moto)
    }

    fn script(&self, script: &str) -> Result<String> {
        let out = Command::new("bash")
            .arg(self.peers.join("aws").join(script))
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("run {script}"))?;
        if !out.status.success() {
            bail!(
                "{script} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// A line `seed.sh` printed (`AWS_ACCESS_KEY_ID`, `AWS_ROLE_ARN`, …).
    pub fn var(&self, key: &str) -> &str {
        &self.env[key]
    }

    pub fn endpoint(&self) -> Url {
        Url::parse(self.var("AWS_ENDPOINT_URL")).unwrap()
    }

    pub fn url(&self, path: &str) -> Url {
        self.endpoint().join(path).unwrap()
    }

    /// The seeded admin's static credentials (optionally with another secret).
    pub fn credentials(&self, secret: Option<&str>) -> StaticAwsCredentials {
        StaticAwsCredentials {
            access_key_id: Secret::new(self.var("AWS_ACCESS_KEY_ID")),
            secret_access_key: Secret::new(
                secret.unwrap_or_else(|| self.var("AWS_SECRET_ACCESS_KEY")),
            ),
            session_token: None,
        }
    }

    /// Queue `payload` as the answer of the next Lambda `Invoke` (moto's docker-free backend
    /// answers queued results in order, then echoes the request's payload again).
    pub async fn queue_lambda_result(&self, payload: &str) {
        let resp = http_client()
            .post(self.url("/moto-api/static/lambda-simple/response"))
            .json(&serde_json::json!({"results": [payload], "region": "us-east-1"}))
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_success(), "moto did not queue: {resp:?}");
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(self.peers.join("aws/stop-aws.sh"))
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .output();
    }
}

/// An HTTP client for talking to moto and the proxies: no system proxy, a bounded wait.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// One request the recording proxy saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// The path and query, as sent.
    pub path: String,
    /// The `Host` the sender signed.
    pub host: String,
    /// Every header as received (names lower case).
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// What was answered: status and body (empty while the [`StandIn`] decides).
    pub answer: (u16, String),
    /// Whether moto answered (false: the proxy's stand-in did).
    pub forwarded: bool,
}

impl Seen {
    /// A form body's fields (STS's `Action`, `Policy`, …).
    pub fn form(&self) -> HashMap<String, String> {
        url::form_urlencoded::parse(self.body.as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The access key id in the SigV4 `Authorization` header (`Credential=ID/…`).
    pub fn access_key_id(&self) -> Option<&str> {
        let credential = self.header("authorization")?.split("Credential=").nth(1)?;
        credential.split('/').next()
    }
}

/// An answer the proxy gives itself instead of forwarding: status, headers, body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// Decides, per request, whether the proxy answers it itself.
pub type StandIn = Arc<dyn Fn(&Seen) -> Option<Reply> + Send + Sync>;

/// An HTTP proxy that forwards every request to `upstream` unchanged (method, path, query,
/// body, headers including `Host`) and records what it saw.
#[derive(Clone)]
pub struct Recorder {
    upstream: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    client: reqwest::Client,
    stand_in: Option<StandIn>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder")
            .field("upstream", &self.upstream)
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

impl Recorder {
    /// The proxy's URL, its record, and its server (stopped when dropped).
    pub async fn start(upstream: &Url) -> (Url, Self, MockServer) {
        Self::serve(upstream, None).await
    }

    /// [`Recorder::start`], with the requests `stand_in` answers answered by it, not moto.
    pub async fn start_answering(
        upstream: &Url,
        stand_in: impl Fn(&Seen) -> Option<Reply> + Send + Sync + 'static,
    ) -> (Url, Self, MockServer) {
        Self::serve(upstream, Some(Arc::new(stand_in))).await
    }

    async fn serve(upstream: &Url, stand_in: Option<StandIn>) -> (Url, Self, MockServer) {
        let rec = Self {
            upstream: upstream.as_str().trim_end_matches('/').to_string(),
            seen: Arc::default(),
            client: http_client(),
            stand_in,
        };
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(rec.clone());
        let server = MockServer::start(app).await;
        (Url::parse(&server.url("/")).unwrap(), rec, server)
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

const HOP_BY_HOP: [header::HeaderName; 4] = [
    header::CONNECTION,
    header::TRANSFER_ENCODING,
    header::CONTENT_LENGTH,
    header::UPGRADE,
];

async fn forward(State(rec): State<Recorder>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX).await.unwrap();
    let text = |v: &http::HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let path = parts
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut seen = Seen {
        method: parts.method.to_string(),
        path: path.clone(),
        host: parts
            .headers
            .get(header::HOST)
            .map(text)
            .unwrap_or_default(),
        headers: parts
            .headers
            .iter()
            .map(|(n, v)| (n.as_str().to_string(), text(v)))
            .collect(),
        body: String::from_utf8_lossy(&body).into_owned(),
        answer: (0, String::new()),
        forwarded: false,
    };
    if let Some(reply) = rec.stand_in.as_ref().and_then(|f| f(&seen)) {
        seen.answer = (reply.status, reply.body.clone());
        rec.seen.lock().unwrap().push(seen);
        let mut resp = Response::builder().status(reply.status);
        for (name, value) in &reply.headers {
            resp = resp.header(name, value);
        }
        return resp.body(reply.body.into()).unwrap();
    }
    let mut headers = parts.headers.clone();
    for h in &HOP_BY_HOP {
        headers.remove(h);
    }
    let upstream = rec
        .client
        .request(parts.method, format!("{}{path}", rec.upstream))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = upstream.status();
    let headers = upstream.headers().clone();
    let answer = upstream.bytes().await.unwrap();
    seen.answer = (
        status.as_u16(),
        String::from_utf8_lossy(&answer).into_owned(),
    );
    seen.forwarded = true;
    rec.seen.lock().unwrap().push(seen);
    let mut resp = Response::builder().status(status);
    for (name, value) in &headers {
        if !HOP_BY_HOP.contains(name) {
            resp = resp.header(name, value);
        }
    }
    resp.body(answer.into()).unwrap()
}

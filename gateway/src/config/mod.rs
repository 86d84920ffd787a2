//! Configuration: `gateway.toml` plus one `targets/NAME.toml` per target.
//!
//! Three steps, as in agentgateway: parse (typed serde structs, `deny_unknown_fields`) →
//! validate (every error names file, line, key and fix; all errors reported at once) →
//! compile into an immutable [`Snapshot`] that the running gateway reads. Secrets are
//! resolved during compilation so a missing one fails at startup, naming the reference.
//! A wrong key or value does not stop the reading of its file (`recover.rs`): every problem
//! in `gateway.toml` and in every target file is reported in one run.

mod diagnostic;
mod explain;
mod inbound;
pub mod outbound;
mod recover;
pub mod rest;
mod schema;
pub mod secret;
mod targets;
mod values;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use diagnostic::{ConfigError, ConfigErrors, SourceFile};
pub use inbound::{
    ClaimRule, ConsentLoginSpec, DEFAULT_ALGORITHMS, DevIdpSettings, InboundMode, InboundSettings,
    IssuerSpec,
};
use schema::{GATEWAY_TOP_LEVEL, GatewayFile};
pub use secret::{Secret, SecretRef};
use targets::{check_no_per_caller_targets, check_prefixes, load_targets};
use url::Url;
pub use values::secure_transport;

/// What a stdio child inherits from the gateway's environment unless `inherit_env` adds more.
pub const DEFAULT_INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "TERM",
    // So that a target run through `cargo run` (the quickstart's) finds its toolchain.
    "CARGO_HOME",
    "RUSTUP_HOME",
    "RUSTUP_TOOLCHAIN",
];

/// Default per-call timeout for a target (the 30 s).
pub const DEFAULT_CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Default time to wait for a target's handshake at startup and on reconnect.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// The compiled, validated configuration. Immutable; a reload builds a new one.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The gateway file the snapshot was loaded from.
    pub source: PathBuf,
    /// Where the target files were read from (watched for hot reload).
    pub targets_dir: PathBuf,
    pub server: ServerSettings,
    pub catalog: CatalogSettings,
    pub inbound: InboundSettings,
    pub vault: VaultSettings,
    /// `[demo_provider]`: where the demo third-party service listens (loopback), if on.
    pub demo_provider: Option<SocketAddr>,
    pub policies: PolicySettings,
    pub targets: Vec<TargetSpec>,
}

/// `[policies]`, resolved. The policies themselves are read by `policy::Policies::load`, as
/// part of the runtime: they are checked against the live catalog's tools.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicySettings {
    pub dir: PathBuf,
    /// `dir` was named in the file (so a missing directory is an error, not "no policies").
    pub dir_named: bool,
    pub mode: PolicyMode,
    pub show_policy_ids: bool,
    /// `User` attribute → the claim it is read from.
    pub claims: BTreeMap<String, String>,
}

/// What a denial does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyMode {
    /// A denied call is refused.
    Enforce,
    /// Shadow mode: every decision is made and audited, a would-be denial is allowed.
    LogOnly,
}

impl PolicyMode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Enforce => "enforce",
            Self::LogOnly => "log_only",
        }
    }
}

/// `[vault]`, resolved: the SQLite file and the key-encryption key's reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VaultSettings {
    pub path: PathBuf,
    pub key: SecretRef,
    /// What a relative `file:` key path is relative to (the gateway file's directory).
    pub key_base: PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerSettings {
    pub listen: SocketAddr,
    /// Where clients reach the gateway; the MCP endpoint is `{public_url}/mcp`.
    pub public_url: Url,
    /// `Host` header values accepted on `/mcp` (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// Browser `Origin`s accepted on `/mcp`; a request with any other Origin gets 403.
    pub allowed_origins: Vec<String>,
    pub max_request_bytes: usize,
    /// The public URL was derived from `listen` (not configured), so it follows the port
    /// actually bound (`listen = "127.0.0.1:0"` picks a free one).
    derived_public_url: bool,
}

impl ServerSettings {
    /// Record the address actually bound; a derived public URL and host list follow it.
    pub fn bound_to(&mut self, addr: SocketAddr) {
        if self.listen.port() != 0 || !self.derived_public_url {
            self.listen = addr;
            return;
        }
        let old = authority(&self.public_url);
        let _ = self.public_url.set_port(Some(addr.port()));
        let new = authority(&self.public_url);
        for h in &mut self.allowed_hosts {
            if *h == old {
                h.clone_from(&new);
            } else if let Some(host) = h.strip_suffix(":0") {
                *h = format!("{host}:{}", addr.port());
            }
        }
        for o in &mut self.allowed_origins {
            if let Some(base) = o.strip_suffix(":0") {
                *o = format!("{base}:{}", addr.port());
            }
        }
        self.listen = addr;
    }

    /// The canonical resource URI of the MCP endpoint (RFC 8707): no trailing slash.
    pub fn mcp_url(&self) -> String {
        format!("{}/mcp", self.public_url.as_str().trim_end_matches('/'))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct CatalogSettings {
    /// Between a target's prefix and the upstream tool name: `github__list_repos`.
    pub separator: String,
    /// Items per page of every listing the gateway serves (`[catalog] page_size`).
    pub page_size: usize,
    /// The gateway's tool-search tool is listed (`[catalog] search_tool`).
    pub search_tool: bool,
}

/// Items per page of a listing when `[catalog] page_size` is not set.
pub const DEFAULT_PAGE_SIZE: usize = 500;

/// One registered target.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetSpec {
    /// From the file name: `targets/github.toml` → `github`.
    pub name: String,
    pub file: PathBuf,
    pub description: Option<String>,
    /// Prepended to every tool of this target (may be empty).
    pub prefix: String,
    pub call_timeout: Duration,
    pub connect_timeout: Duration,
    /// An optional target being down does not make `/readyz` fail.
    pub optional: bool,
    /// Each call's arguments go into its audit event (`audit_arguments = true`).
    pub audit_arguments: bool,
    /// Scopes a caller needs per upstream tool name (`[tools.NAME] scopes`).
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// For a per-user target: the tools it declares (`[tools.NAME] input_schema`), listed
    /// until a user's session lists the upstream.
    pub declared_tools: Vec<rmcp::model::Tool>,
    pub kind: TargetKind,
    /// How the gateway authenticates to the target (`[auth]`).
    pub auth: outbound::AuthSpec,
    /// For a per-user target: the gateway's own credential for a session that only lists the
    /// upstream (`[listing_auth]`).
    pub listing_auth: Option<outbound::AuthSpec>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TargetKind {
    Mcp(McpTransport, McpProtocol),
    /// An HTTP API: `[openapi]` (tools from its specification) or `[http]` (declared).
    Rest(Box<rest::RestSpec>),
    /// An AWS Lambda function (`[lambda]`); its tools are the declared ones.
    Lambda(LambdaSpec),
}

impl TargetKind {
    /// The table the target was written with, for messages.
    pub fn table(&self) -> &'static str {
        match self {
            Self::Mcp(..) => "mcp",
            Self::Rest(r) => r.kind(),
            Self::Lambda(_) => "lambda",
        }
    }

    /// Whether calls need no connection kept open: each one is a request of its own.
    pub fn per_call(&self) -> bool {
        !matches!(self, Self::Mcp(..))
    }
}

/// `[lambda]`, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct LambdaSpec {
    /// Function name, partial or full ARN.
    pub function: String,
    pub qualifier: Option<String>,
    pub endpoint_url: Option<Url>,
}

/// The MCP protocol era the gateway opens an upstream's sessions in (`[mcp] protocol`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
pub enum McpProtocol {
    /// The newest the upstream speaks: `server/discover` (2026-07-28), else `initialize`.
    #[default]
    #[serde(rename = "auto")]
    Newest,
    /// Only the 2025-11-25 `initialize` handshake, for an upstream that mishandles
    /// `server/discover` (answers it slowly, or breaks on it).
    #[serde(rename = "2025-11-25")]
    Sessions,
}

#[derive(Debug, Clone, PartialEq)]
pub enum McpTransport {
    /// Streamable HTTP (http or https).
    Http { url: Url },
    /// A child process speaking MCP on stdin/stdout.
    Stdio {
        command: PathBuf,
        args: Vec<String>,
        /// Plain and secret environment variables; secrets stay redacted in `Debug`.
        env: Vec<(String, EnvValue)>,
        /// Names of the gateway's own variables the child inherits; nothing else is passed
        /// (other targets' secrets, cloud credentials in the gateway's environment).
        inherit: Vec<String>,
        cwd: Option<PathBuf>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub enum EnvValue {
    Plain(String),
    Secret(Secret),
}

impl EnvValue {
    pub fn expose(&self) -> &str {
        match self {
            Self::Plain(s) => s,
            Self::Secret(s) => s.expose(),
        }
    }
}

/// Load, validate and compile the gateway file at `path` and its targets directory.
pub fn load(path: &Path) -> Result<Snapshot, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let gateway = compile_gateway(path, &mut errors);
    let Some(gateway) = gateway else {
        return Err(errors);
    };
    // A wrong `targets_dir` was reported; reading the default directory instead would only
    // add confusing errors.
    let targets = match &gateway.targets_dir {
        Some(dir) => load_targets(dir, &mut errors),
        None => vec![],
    };
    check_prefixes(&targets, &gateway.catalog.separator, &mut errors);
    if gateway.inbound.mode == InboundMode::None {
        check_no_per_caller_targets(&targets, &mut errors);
    }
    errors.sort_by_place();
    errors.into_result(Snapshot {
        source: path.to_path_buf(),
        targets_dir: gateway.targets_dir.unwrap_or_default(),
        server: gateway.server.unwrap_or_else(fallback_server),
        catalog: gateway.catalog,
        inbound: gateway.inbound,
        vault: gateway.vault,
        demo_provider: gateway.demo_provider,
        policies: gateway.policies,
        targets,
    })
}

/// Only what `portcullis dev-token` needs: the server settings (the tokens' audience is the
/// gateway's URL) and the development identity provider. The targets are not read, so a
/// target whose secret is not set in this shell does not stop a token being minted.
pub fn load_dev_idp(path: &Path) -> Result<(ServerSettings, DevIdpSettings), ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let Some(gateway) = compile_gateway(path, &mut errors) else {
        return Err(errors);
    };
    if gateway.inbound.dev_idp.is_none() {
        errors.push(ConfigError {
            file: path.to_path_buf(),
            position: None,
            key: String::new(),
            message: "there is no [dev_idp] table, so the development identity provider is off and would refuse its own tokens".into(),
            fix: "add a line `[dev_idp]` to the file (development only), or get a token from the identity provider named in [[inbound.issuers]]".into(),
        });
    }
    let (Some(server), Some(dev_idp)) = (gateway.server, gateway.inbound.dev_idp) else {
        return Err(errors);
    };
    errors.sort_by_place();
    errors.into_result((server, dev_idp))
}

/// Only what the `vault` commands need: `[vault]` (the targets are not read).
pub fn load_vault(path: &Path) -> Result<VaultSettings, ConfigErrors> {
    let mut errors = ConfigErrors::default();
    let Some(gateway) = compile_gateway(path, &mut errors) else {
        return Err(errors);
    };
    errors.sort_by_place();
    errors.into_result(gateway.vault)
}

/// `gateway.toml` read and checked on its own, without the targets.
struct GatewayParts {
    /// `None` when its errors are recorded.
    server: Option<ServerSettings>,
    catalog: CatalogSettings,
    inbound: InboundSettings,
    vault: VaultSettings,
    demo_provider: Option<SocketAddr>,
    policies: PolicySettings,
    /// `None` when `targets_dir` itself is wrong (and reported).
    targets_dir: Option<PathBuf>,
}

/// Read, check and compile `gateway.toml`. `None` when it cannot be read or its TOML syntax
/// is broken (the error is recorded); otherwise every problem in it is recorded.
fn compile_gateway(path: &Path, errors: &mut ConfigErrors) -> Option<GatewayParts> {
    let mut src = match SourceFile::read(path) {
        Ok(src) => src,
        Err(mut e) => {
            if e.message.ends_with("not found") {
                e.fix = "run portcullis in the directory that holds gateway.toml, or name the file with `--config PATH` (or the PORTCULLIS_CONFIG environment variable)".into();
            }
            errors.push(e);
            return None;
        }
    };
    let file: GatewayFile = src.parse_all(GATEWAY_TOP_LEVEL, errors)?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let checks_start = errors.len();

    let inbound = inbound::compile(&src, &file, &base, errors);
    let server = compile_server(&src, &file, &inbound, errors);
    let separator = file
        .catalog
        .separator
        .clone()
        .unwrap_or_else(|| "__".into());
    if !valid_tool_chars(&separator) {
        errors.push(src.error(
            "catalog.separator",
            format!("separator `{separator}` has characters MCP tool names may not contain"),
            "use only letters, digits, `_`, `-` or `.` (the default is `__`)",
        ));
    }
    let page_size = file.catalog.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if page_size == 0 {
        errors.push(src.error(
            "catalog.page_size",
            "a page of 0 items would never let a client reach the end of a listing",
            format!("use at least 1 (the default is {DEFAULT_PAGE_SIZE}); to serve each listing in one page, use a number larger than the catalog"),
        ));
    }
    src.drop_follow_ons(errors, checks_start);
    let targets_dir = (!src.removed_under("targets_dir"))
        .then(|| base.join(file.targets_dir.as_deref().unwrap_or(Path::new("targets"))));
    let data_dir = base.join(file.data_dir.as_deref().unwrap_or(Path::new(".data")));
    let vault = VaultSettings {
        path: data_dir.join(
            file.vault
                .path
                .as_deref()
                .unwrap_or(Path::new("vault.sqlite3")),
        ),
        key: file
            .vault
            .key
            .clone()
            .unwrap_or_else(|| SecretRef::File(data_dir.join("vault.key"))),
        key_base: base.clone(),
    };
    let demo_provider = file.demo_provider.as_ref().and_then(|d| {
        if d.listen.ip().is_loopback() {
            return Some(d.listen);
        }
        errors.push(src.error(
            "demo_provider.listen",
            format!(
                "the demo provider may not listen on {}: its sign-in page asks for no password, so anyone who reaches it could sign in as any user",
                d.listen
            ),
            "use a loopback address such as \"127.0.0.1:8788\", or remove [demo_provider] (it is for the quickstart only)",
        ));
        None
    });
    let policies = compile_policies(&src, &file, &base, errors);
    Some(GatewayParts {
        server,
        policies,
        catalog: CatalogSettings {
            separator,
            page_size,
            search_tool: file.catalog.search_tool,
        },
        inbound,
        vault,
        demo_provider,
        targets_dir,
    })
}

fn compile_policies(
    src: &SourceFile,
    file: &GatewayFile,
    base: &Path,
    errors: &mut ConfigErrors,
) -> PolicySettings {
    let p = &file.policies;
    let dir = base.join(p.dir.as_deref().unwrap_or(Path::new("policies")));
    if p.dir.is_some() && !dir.is_dir() {
        errors.push(src.error(
            "policies.dir",
            format!("the policy directory {} does not exist", dir.display()),
            "create it with your *.cedar files, or remove `dir` (without a policy directory every authenticated caller may call every tool)",
        ));
    }
    for (attribute, claim) in &p.claims {
        if !is_cedar_identifier(attribute)
            || ["groups", "issuer", "tenant", "email"].contains(&attribute.as_str())
        {
            errors.push(src.error(
                &format!("policies.claims.{attribute}"),
                format!("`{attribute}` cannot be a User attribute read from the claim `{claim}`"),
                "use a name of letters, digits and `_` that does not start with a digit, other than groups, issuer, tenant and email (which the gateway fills itself)",
            ));
        }
    }
    PolicySettings {
        dir,
        dir_named: p.dir.is_some(),
        mode: match p.mode {
            Some(schema::PolicyModeValue::LogOnly) => PolicyMode::LogOnly,
            Some(schema::PolicyModeValue::Enforce) | None => PolicyMode::Enforce,
        },
        show_policy_ids: p.show_policy_ids.unwrap_or(false),
        claims: p.claims.clone(),
    }
}

fn fallback_server() -> ServerSettings {
    // Only used when errors were already recorded; never escapes `load`.
    ServerSettings {
        listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
        public_url: Url::parse("http://127.0.0.1:8787").expect("static URL"),
        allowed_hosts: vec![],
        allowed_origins: vec![],
        max_request_bytes: 0,
        derived_public_url: true,
    }
}

fn compile_server(
    src: &SourceFile,
    file: &GatewayFile,
    inbound: &InboundSettings,
    errors: &mut ConfigErrors,
) -> Option<ServerSettings> {
    let s = &file.server;
    let listen = s.listen.unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8787)));
    let public_url = match &s.public_url {
        Some(u) if values::missing_http(u).is_some() => {
            errors.push(src.error(
                "server.public_url",
                format!(
                    "`{u}` has no `//` after `{}:`, so `{}` is read as the URL's scheme",
                    u.scheme(),
                    u.scheme()
                ),
                format!(
                    "write \"{}\" (or https://)",
                    values::missing_http(u).unwrap_or_default()
                ),
            ));
            return None;
        }
        Some(u) => u.clone(),
        None => {
            let host = if listen.ip().is_unspecified() {
                "127.0.0.1".to_string()
            } else {
                match listen {
                    SocketAddr::V4(a) => a.ip().to_string(),
                    SocketAddr::V6(a) => format!("[{}]", a.ip()),
                }
            };
            Url::parse(&format!("http://{host}:{}", listen.port())).ok()?
        }
    };
    let mut ok = true;
    if !matches!(public_url.scheme(), "http" | "https") || public_url.host_str().is_none() {
        errors.push(src.error(
            "server.public_url",
            format!("`{public_url}` is not an http(s) URL with a host"),
            "write the URL clients use to reach the gateway, e.g. https://mcp.example.com",
        ));
        ok = false;
    }
    if public_url.query().is_some() || public_url.fragment().is_some() {
        errors.push(src.error(
            "server.public_url",
            "the public URL may not have a query or fragment",
            "remove everything after `?` or `#`",
        ));
        ok = false;
    }
    if !listen.ip().is_loopback() && inbound.mode == InboundMode::None {
        // Without authentication every caller that can reach the port can call every tool:
        // only the local machine may.
        errors.push(src.error(
            "server.listen",
            format!("{listen} is not a loopback address, and `inbound.mode = \"none\"` does not authenticate callers"),
            "listen on 127.0.0.1 or [::1], or configure [[inbound.issuers]] so callers need a token",
        ));
        ok = false;
    }
    let max_request_bytes = s.max_request_bytes.unwrap_or(4 * 1024 * 1024);
    if max_request_bytes < 1024 {
        errors.push(src.error(
            "server.max_request_bytes",
            format!("{max_request_bytes} bytes is too small for any MCP request"),
            "use at least 1024 (the default is 4194304, 4 MiB)",
        ));
        ok = false;
    }
    for (i, origin) in s.allowed_origins.iter().enumerate() {
        // `:*` (any port) is understood by the HTTP layer but not by the URL parser.
        let parsable = origin.strip_suffix(":*").unwrap_or(origin);
        if Url::parse(parsable)
            .map(|u| u.host_str().is_none())
            .unwrap_or(true)
        {
            errors.push(src.error(
                "server.allowed_origins",
                format!("entry {} (`{origin}`) is not an origin", i + 1),
                "write scheme://host[:port], e.g. https://app.example.com or http://localhost:*",
            ));
            ok = false;
        }
    }
    let mut allowed_hosts = vec![authority(&public_url)];
    if let Some(host) = public_url.host_str() {
        allowed_hosts.push(host.to_string());
    }
    if is_loopback_host(public_url.host_str().unwrap_or_default()) {
        // A loopback deployment is reachable under every loopback name, on the listen port.
        for h in ["localhost", "127.0.0.1", "[::1]"] {
            allowed_hosts.push(h.to_string());
            allowed_hosts.push(format!("{h}:{}", listen.port()));
        }
    }
    allowed_hosts.extend(s.allowed_hosts.iter().cloned());
    allowed_hosts.sort();
    allowed_hosts.dedup();
    // With an explicit port: a port-less entry would match any port.
    let own_port = public_url.port_or_known_default().unwrap_or(listen.port());
    let mut allowed_origins = vec![format!(
        "{}://{}:{own_port}",
        public_url.scheme(),
        public_url.host_str().unwrap_or_default()
    )];
    if is_loopback_host(public_url.host_str().unwrap_or_default()) {
        let port = own_port;
        allowed_origins.extend(
            ["localhost", "127.0.0.1", "[::1]"]
                .map(|h| format!("{}://{h}:{port}", public_url.scheme())),
        );
    }
    allowed_origins.extend(s.allowed_origins.iter().cloned());
    ok.then_some(ServerSettings {
        listen,
        public_url,
        allowed_hosts,
        allowed_origins,
        max_request_bytes,
        derived_public_url: s.public_url.is_none(),
    })
}

fn authority(u: &Url) -> String {
    let host = u.host_str().unwrap_or_default();
    match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// MCP tool-name characters: `[A-Za-z0-9_.-]`.
pub fn valid_tool_chars(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// A name Cedar accepts after `principal.` without quoting.
fn is_cedar_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

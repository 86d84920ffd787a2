//! The TOML schema exactly as users write it. Validation and defaults live in `config/mod.rs`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use url::Url;

use super::SecretRef;
use super::values;

/// Top-level keys of `gateway.toml` that hold plain values (not tables): written after a
/// `[table]` header by mistake, TOML puts them inside that table.
pub const GATEWAY_TOP_LEVEL: &[&str] = &["targets_dir", "data_dir"];
/// The same for `targets/NAME.toml`.
pub const TARGET_TOP_LEVEL: &[&str] = &[
    "description",
    "prefix",
    "timeout",
    "connect_timeout",
    "optional",
    "audit_arguments",
];

/// `gateway.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayFile {
    /// Directory of `NAME.toml` target files, relative to the gateway file. Default `targets`.
    pub targets_dir: Option<PathBuf>,
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub catalog: CatalogSection,
    /// Where the gateway keeps state (the dev IdP key), relative to the gateway file.
    pub data_dir: Option<PathBuf>,
    #[serde(default)]
    pub inbound: InboundSection,
    pub dev_idp: Option<DevIdpSection>,
    #[serde(default)]
    pub vault: VaultSection,
    pub demo_provider: Option<DemoProviderSection>,
    #[serde(default)]
    pub policies: PoliciesSection,
}

/// `[policies]`: Cedar policies over callers, agents, tools and arguments (docs/policies.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesSection {
    /// Directory of `*.cedar` files and `schema.cedarschema`, relative to the gateway file.
    /// Default `policies`; without it every authenticated caller may call every tool.
    pub dir: Option<PathBuf>,
    /// `enforce` (default) or `log_only`: decide and audit, but allow.
    pub mode: Option<PolicyModeValue>,
    /// Whether a denied caller is told the ids of the policies that denied them.
    pub show_policy_ids: Option<bool>,
    /// Extra `User` attributes from token claims: `attribute = "claim name"`.
    #[serde(default)]
    pub claims: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolicyModeValue {
    Enforce,
    LogOnly,
}

/// `[demo_provider]`: run the "Acme Tasks" demo third-party service beside the gateway, so
/// the quickstart can show user consent end to end. Loopback only.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DemoProviderSection {
    pub listen: SocketAddr,
}

/// `[vault]`: where users' consented grants are kept, and the key that seals them.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    /// The SQLite file, relative to `data_dir`. Default `vault.sqlite3`.
    pub path: Option<PathBuf>,
    /// The key-encryption key: `file:PATH` (relative to the gateway file; created on first
    /// start) or `env:NAME` (base64 of 32 bytes). Default `file:{data_dir}/vault.key`.
    pub key: Option<SecretRef>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboundSection {
    pub mode: Option<InboundModeName>,
    #[serde(default)]
    pub issuers: Vec<IssuerSection>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InboundModeName {
    Jwt,
    None,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerSection {
    pub issuer: String,
    #[serde(default)]
    pub audiences: Vec<String>,
    #[serde(default)]
    pub allowed_clients: Vec<String>,
    #[serde(default)]
    pub required_scopes: Vec<String>,
    #[serde(default)]
    pub algorithms: Vec<String>,
    #[serde(default, with = "humantime_serde")]
    pub leeway: Option<Duration>,
    pub user_claim: Option<String>,
    pub agent_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub tenant_claim: Option<String>,
    #[serde(default, deserialize_with = "values::opt_url")]
    pub jwks_uri: Option<Url>,
    #[serde(default, with = "humantime_serde")]
    pub jwks_refetch_interval: Option<Duration>,
    #[serde(default)]
    pub claims: Vec<ClaimRuleSection>,
    /// How the consent pages sign users in at this issuer (OpenID Connect).
    pub consent_login: Option<ConsentLoginSection>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentLoginSection {
    pub client_id: String,
    pub client_secret: Option<SecretRef>,
    pub scopes: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRuleSection {
    pub claim: String,
    pub equals: Option<String>,
    pub contains: Option<String>,
    pub contains_any: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevIdpSection {
    pub key_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub token_ttl: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default, deserialize_with = "values::listen")]
    pub listen: Option<SocketAddr>,
    #[serde(default, deserialize_with = "values::opt_url")]
    pub public_url: Option<Url>,
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    pub max_request_bytes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogSection {
    pub separator: Option<String>,
    /// Items per page of `tools/list`, `prompts/list`, `resources/list` and
    /// `resources/templates/list`.
    pub page_size: Option<usize>,
    /// List the gateway's own tool-search tool (`search_tools`).
    #[serde(default)]
    pub search_tool: bool,
}

/// `targets/NAME.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetFile {
    pub description: Option<String>,
    pub prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub connect_timeout: Option<Duration>,
    #[serde(default)]
    pub optional: bool,
    /// Record each call's arguments in its audit event (off: arguments may hold personal or
    /// secret data).
    #[serde(default)]
    pub audit_arguments: bool,
    pub mcp: Option<McpSection>,
    /// An HTTP API described by an OpenAPI specification: each operation is a tool.
    pub openapi: Option<OpenApiSection>,
    /// An HTTP API whose tools are declared in `[tools.NAME]` (method, path, schema).
    pub http: Option<HttpSection>,
    /// An AWS Lambda function; its tools are declared in `[tools.NAME]`.
    pub lambda: Option<LambdaSection>,
    /// How the gateway authenticates to this target.
    pub auth: Option<AuthSection>,
    /// For a target whose `[auth]` acts for each caller: a credential of the gateway's own,
    /// used only to list the upstream's tools (never for a call).
    pub listing_auth: Option<AuthSection>,
    /// Per-tool settings keyed by the upstream tool name.
    #[serde(default)]
    pub tools: BTreeMap<String, ToolSection>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolSection {
    /// Scopes a caller's token must carry to call this tool (403 step-up otherwise).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// A declared tool of a per-user target, listed before any user's session listed the
    /// upstream: what callers are told the tool does…
    pub description: Option<String>,
    /// …and the JSON Schema of its arguments.
    pub input_schema: Option<serde_json::Map<String, serde_json::Value>>,
    /// `[http]` targets: the HTTP method (default GET)…
    pub method: Option<String>,
    /// …the path template appended to `base_url` (`/forecast/{city}`)…
    pub path: Option<String>,
    /// …and headers of this tool: a value that is exactly `{arg}` takes the argument.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

/// `[openapi]`: an HTTP API described by an OpenAPI 3.0/3.1 specification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenApiSection {
    /// A file (relative to the target file) or an `http(s)://` URL; YAML or JSON.
    pub spec: String,
    /// Overrides the specification's `servers`.
    #[serde(default, deserialize_with = "values::opt_url")]
    pub base_url: Option<Url>,
    #[serde(default)]
    pub include: OperationFilterSection,
    #[serde(default)]
    pub exclude: OperationFilterSection,
    /// Sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub max_response_bytes: Option<usize>,
}

/// `[openapi.include]` / `[openapi.exclude]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OperationFilterSection {
    #[serde(default)]
    pub operations: Vec<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub paths: Vec<String>,
}

/// `[http]`: an HTTP API without a specification.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSection {
    #[serde(deserialize_with = "values::url")]
    pub base_url: Url,
    /// Sent with every request.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    pub max_response_bytes: Option<usize>,
}

/// `[lambda]`: an AWS Lambda function, invoked with the `[auth]` (aws_sigv4) credentials.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaSection {
    /// Function name, partial or full ARN.
    pub function: String,
    /// A version or alias.
    pub qualifier: Option<String>,
    /// Another Lambda endpoint (a VPC endpoint, an emulator).
    #[serde(default, deserialize_with = "values::opt_url")]
    pub endpoint_url: Option<Url>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpSection {
    #[serde(default, deserialize_with = "values::opt_url")]
    pub url: Option<Url>,
    pub command: Option<String>,
    #[serde(default)]
    pub args: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    #[serde(default)]
    pub secret_env: BTreeMap<String, SecretRef>,
    /// Extra variables of the gateway's environment the child may see.
    #[serde(default)]
    pub inherit_env: Vec<String>,
    pub cwd: Option<PathBuf>,
    /// Which protocol era the gateway speaks to the upstream.
    #[serde(default)]
    pub protocol: super::McpProtocol,
}

/// `[auth]` in a target file; `mode` selects the variant.
#[derive(Debug, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum AuthSection {
    None {},
    ApiKey {
        key: SecretRef,
        header: Option<String>,
        prefix: Option<String>,
        query: Option<String>,
    },
    #[serde(rename = "oauth2_client_credentials")]
    ClientCredentials {
        #[serde(default, deserialize_with = "values::opt_url")]
        token_url: Option<Url>,
        #[serde(default, deserialize_with = "values::opt_url")]
        issuer: Option<Url>,
        client_id: String,
        client_secret: Option<SecretRef>,
        private_key: Option<SecretRef>,
        private_key_alg: Option<String>,
        client_auth: Option<ClientAuthName>,
        #[serde(default)]
        scopes: Vec<String>,
        audience: Option<String>,
        resource: Option<String>,
        #[serde(default, with = "humantime_serde")]
        refresh_skew: Option<Duration>,
    },
    #[serde(rename = "oauth2_authorization_code")]
    AuthorizationCode {
        provider: String,
        tenant: Option<String>,
        #[serde(default, deserialize_with = "values::opt_url")]
        issuer: Option<Url>,
        #[serde(default, deserialize_with = "values::opt_url")]
        authorization_url: Option<Url>,
        #[serde(default, deserialize_with = "values::opt_url")]
        token_url: Option<Url>,
        #[serde(default, deserialize_with = "values::opt_url")]
        revocation_url: Option<Url>,
        client_id: String,
        client_secret: Option<SecretRef>,
        client_auth: Option<ClientAuthName>,
        #[serde(default)]
        scopes: Vec<String>,
        #[serde(default)]
        tool_scopes: BTreeMap<String, Vec<String>>,
        #[serde(default)]
        authorize_params: BTreeMap<String, String>,
        resource: Option<String>,
        display_name: Option<String>,
    },
    AwsSigv4 {
        service: String,
        region: String,
        access_key_id: Option<SecretRef>,
        secret_access_key: Option<SecretRef>,
        session_token: Option<SecretRef>,
        #[serde(default, deserialize_with = "values::opt_url")]
        sts_endpoint: Option<Url>,
        assume_role: Option<AssumeRoleSection>,
    },
    TokenExchange {
        #[serde(deserialize_with = "values::url")]
        token_url: Url,
        client_id: Option<String>,
        client_secret: Option<SecretRef>,
        client_auth: Option<ClientAuthName>,
        audience: Option<String>,
        resource: Option<String>,
        #[serde(default)]
        scopes: Vec<String>,
        subject_token_type: Option<String>,
        requested_token_type: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuthName {
    ClientSecretBasic,
    ClientSecretPost,
    PrivateKeyJwt,
}

impl ClientAuthName {
    /// As written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::PrivateKeyJwt => "private_key_jwt",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssumeRoleSection {
    pub role_arn: String,
    /// Inline session policy template: `{tool}`, `{target}`, `{user}` are replaced per call.
    pub session_policy: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub duration: Option<Duration>,
    pub external_id: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys serde accepts at the top of a file, from its own "unknown field" message.
    fn accepted<T: serde::de::DeserializeOwned + std::fmt::Debug>() -> String {
        toml::from_str::<T>("surely_unknown = 1")
            .expect_err("unknown keys are refused")
            .message()
            .to_string()
    }

    #[test]
    fn top_level_lists_name_real_top_level_keys() {
        let gateway = accepted::<GatewayFile>();
        for k in GATEWAY_TOP_LEVEL {
            assert!(gateway.contains(&format!("`{k}`")), "{k}: {gateway}");
        }
        let target = accepted::<TargetFile>();
        for k in TARGET_TOP_LEVEL {
            assert!(target.contains(&format!("`{k}`")), "{k}: {target}");
        }
    }
}

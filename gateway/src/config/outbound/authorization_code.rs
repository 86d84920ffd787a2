//! `[auth] mode = "oauth2_authorization_code"`: acting at a third-party service on behalf of
//! each user after their consent (3LO). A provider preset fills in the endpoints and quirks of
//! the well-known services; `custom` takes an issuer to discover or the endpoints themselves.

use std::collections::BTreeMap;

use url::Url;

use super::{ClientAuth, Ctx, OAuthClientSpec, oauth_client};
use crate::config::SecretRef;
use crate::config::schema::ClientAuthName;

/// A target's 3LO settings, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationCodeSpec {
    /// The preset as written (`github`, …, `custom`), for messages and the consent page.
    pub provider: Provider,
    pub endpoints: ProviderEndpoints,
    /// RFC 7009 revocation endpoint, when the provider has one.
    pub revocation_url: Option<Url>,
    /// `ClientAuth::None` for a public client (PKCE only).
    pub client: OAuthClientSpec,
    /// Scopes every grant asks for.
    pub scopes: Vec<String>,
    /// Extra scopes per upstream tool: a call of that tool needs the union.
    pub tool_scopes: BTreeMap<String, Vec<String>>,
    /// Extra parameters on the authorization request (e.g. `access_type=offline`).
    pub authorize_params: Vec<(String, String)>,
    /// The authorization request parameter that carries the scopes (`scope`; Slack user
    /// tokens: `user_scope`).
    pub scope_param: &'static str,
    /// RFC 8707 `resource` sent on the authorization and token requests.
    pub resource: Option<String>,
    /// How consent messages and pages name the provider ("Acme Tasks"); default the
    /// preset's name, or a custom provider's host.
    pub display_name: Option<String>,
}

/// Where the provider's endpoints come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderEndpoints {
    /// RFC 8414 / OpenID discovery at this issuer.
    Discover { issuer: Url },
    Urls {
        authorization_url: Url,
        token_url: Url,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provider {
    Github,
    Google,
    Microsoft,
    Slack,
    Salesforce,
    Atlassian,
    Custom,
}

impl Provider {
    pub const ALL: [Self; 7] = [
        Self::Github,
        Self::Google,
        Self::Microsoft,
        Self::Slack,
        Self::Salesforce,
        Self::Atlassian,
        Self::Custom,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Self::Github => "github",
            Self::Google => "google",
            Self::Microsoft => "microsoft",
            Self::Slack => "slack",
            Self::Salesforce => "salesforce",
            Self::Atlassian => "atlassian",
            Self::Custom => "custom",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.name() == s)
    }
}

/// What a preset fills in; everything may be overridden in the target file.
struct Preset {
    authorization_url: &'static str,
    token_url: &'static str,
    revocation_url: Option<&'static str>,
    /// Always added to the scopes (refresh tokens need them at these providers).
    scopes: &'static [&'static str],
    params: &'static [(&'static str, &'static str)],
    scope_param: &'static str,
}

fn preset(p: Provider, tenant: &str) -> Option<(Preset, String, String)> {
    let fixed = |preset: Preset| {
        let (a, t) = (
            preset.authorization_url.to_string(),
            preset.token_url.to_string(),
        );
        Some((preset, a, t))
    };
    match p {
        // Tokens do not expire and come without a refresh token unless the OAuth app opts in
        // to expiring user tokens; GitHub has no RFC 7009 endpoint.
        Provider::Github => fixed(Preset {
            authorization_url: "https://github.com/login/oauth/authorize",
            token_url: "https://github.com/login/oauth/access_token",
            revocation_url: None,
            scopes: &[],
            params: &[],
            scope_param: "scope",
        }),
        // A refresh token only with offline access, and again only on a fresh consent.
        Provider::Google => fixed(Preset {
            authorization_url: "https://accounts.google.com/o/oauth2/v2/auth",
            token_url: "https://oauth2.googleapis.com/token",
            revocation_url: Some("https://oauth2.googleapis.com/revoke"),
            scopes: &[],
            params: &[("access_type", "offline"), ("prompt", "consent")],
            scope_param: "scope",
        }),
        // The endpoints name the tenant; refresh tokens need `offline_access`.
        Provider::Microsoft => {
            let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
            Some((
                Preset {
                    authorization_url: "",
                    token_url: "",
                    revocation_url: None,
                    scopes: &["offline_access"],
                    params: &[],
                    scope_param: "scope",
                },
                format!("{base}/authorize"),
                format!("{base}/token"),
            ))
        }
        // User tokens: scopes go in `user_scope`.
        Provider::Slack => fixed(Preset {
            authorization_url: "https://slack.com/oauth/v2/authorize",
            token_url: "https://slack.com/api/oauth.v2.access",
            revocation_url: None,
            scopes: &[],
            params: &[],
            scope_param: "user_scope",
        }),
        // The token response names the org's `instance_url`, which calls must use.
        Provider::Salesforce => fixed(Preset {
            authorization_url: "https://login.salesforce.com/services/oauth2/authorize",
            token_url: "https://login.salesforce.com/services/oauth2/token",
            revocation_url: Some("https://login.salesforce.com/services/oauth2/revoke"),
            scopes: &["refresh_token"],
            params: &[],
            scope_param: "scope",
        }),
        // Tokens for the Atlassian cloud APIs; refresh tokens need `offline_access`.
        Provider::Atlassian => fixed(Preset {
            authorization_url: "https://auth.atlassian.com/authorize",
            token_url: "https://auth.atlassian.com/oauth/token",
            revocation_url: None,
            scopes: &["offline_access"],
            params: &[("audience", "api.atlassian.com"), ("prompt", "consent")],
            scope_param: "scope",
        }),
        Provider::Custom => None,
    }
}

/// Parameters the gateway sets itself on the authorization request; the OAuth client refuses
/// them as extra parameters too (`outbound::authorization_code`).
pub const RESERVED_PARAMS: [&str; 8] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "state",
    "code_challenge",
    "code_challenge_method",
    "scope",
    "resource",
];

/// The `[auth]` table of this mode, as read.
#[derive(Debug)]
pub(super) struct Section<'a> {
    pub provider: &'a str,
    pub tenant: Option<&'a str>,
    pub issuer: Option<&'a Url>,
    pub authorization_url: Option<&'a Url>,
    pub token_url: Option<&'a Url>,
    pub revocation_url: Option<&'a Url>,
    pub client_id: &'a str,
    pub client_secret: Option<&'a SecretRef>,
    pub client_auth: Option<ClientAuthName>,
    pub scopes: &'a [String],
    pub tool_scopes: &'a BTreeMap<String, Vec<String>>,
    pub authorize_params: &'a BTreeMap<String, String>,
    pub resource: Option<&'a str>,
    pub display_name: Option<&'a str>,
}

/// The checked settings; every problem is recorded in `cx`.
pub(super) fn compile(cx: &mut Ctx<'_>, s: &Section<'_>) -> Option<AuthorizationCodeSpec> {
    let names: Vec<&str> = Provider::ALL.iter().map(|p| p.name()).collect();
    let Some(provider) = Provider::parse(s.provider) else {
        cx.err(
            "provider",
            format!("`{}` is not a provider this gateway knows", s.provider),
            format!(
                "use one of {}; `custom` with `issuer` (or `authorization_url` and `token_url`) for any other OAuth 2.0 provider",
                names.join(", ")
            ),
        );
        return None;
    };
    let mut ok = true;
    if s.tenant.is_some() != (provider == Provider::Microsoft) {
        ok = false;
        if provider == Provider::Microsoft {
            cx.err(
                "tenant",
                "the `microsoft` provider needs the Entra ID tenant its endpoints name",
                "add `tenant = \"contoso.onmicrosoft.com\"` (or the tenant id; `organizations` or `common` for multi-tenant apps)",
            );
        } else {
            cx.err(
                "tenant",
                "`tenant` only applies to the `microsoft` provider",
                "remove it",
            );
        }
    }
    if let Some(t) = s.tenant
        && (!t.chars().any(|c| c.is_ascii_alphanumeric())
            || !t
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-._".contains(c)))
    {
        ok = false;
        cx.err(
            "tenant",
            format!("`{t}` is not a tenant name or id"),
            "write the tenant's domain (contoso.onmicrosoft.com) or its id (a GUID)",
        );
    }
    let endpoints = endpoints(cx, s, provider);
    let preset = preset(provider, s.tenant.unwrap_or_default());

    let mut scopes: Vec<String> = s.scopes.to_vec();
    if let Some((p, ..)) = &preset {
        for extra in p.scopes {
            if !scopes.iter().any(|x| x == extra) {
                scopes.push((*extra).to_string());
            }
        }
    }
    if scopes.is_empty() && s.tool_scopes.is_empty() && provider != Provider::Github {
        ok = false;
        cx.err(
            "scopes",
            "no scopes are asked for, so a grant would allow nothing",
            "list what the agent needs, e.g. scopes = [\"read:user\"], and per tool in [auth.tool_scopes]",
        );
    }
    for (tool, extra) in s.tool_scopes {
        if extra.is_empty() {
            ok = false;
            cx.err(
                &format!("tool_scopes.{tool}"),
                "an empty list adds nothing",
                "list the extra scopes this tool needs, or remove the entry",
            );
        }
    }

    let mut authorize_params: Vec<(String, String)> = preset
        .as_ref()
        .map(|(p, ..)| {
            p.params
                .iter()
                .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                .collect()
        })
        .unwrap_or_default();
    let scope_param = preset.as_ref().map_or("scope", |(p, ..)| p.scope_param);
    for (k, v) in s.authorize_params {
        let name = k.trim();
        if RESERVED_PARAMS
            .iter()
            .chain([&scope_param])
            .any(|r| r.eq_ignore_ascii_case(name))
        {
            ok = false;
            cx.err(
                &format!("authorize_params.{k}"),
                format!("`{k}` is set by the gateway on every authorization request"),
                match name.to_ascii_lowercase().as_str() {
                    "scope" | "user_scope" => "list scopes in `scopes` and `[auth.tool_scopes]`",
                    "resource" => "set `resource` in [auth]",
                    _ => "remove it",
                },
            );
            continue;
        }
        authorize_params.retain(|(have, _)| have != k);
        authorize_params.push((k.clone(), v.clone()));
    }

    let revocation_url = s.revocation_url.cloned().or_else(|| {
        preset
            .as_ref()
            .and_then(|(p, ..)| p.revocation_url)
            .and_then(|u| Url::parse(u).ok())
    });
    let resource = match s.resource {
        Some(r) if Url::parse(r).is_err() => {
            ok = false;
            cx.err(
                "resource",
                format!("`{r}` is not an absolute URL"),
                "write the API's URL, e.g. resource = \"https://api.example.com/\" (RFC 8707)",
            );
            None
        }
        r => r.map(str::to_string),
    };
    // A public client (no secret) authenticates with PKCE alone.
    let client = match (s.client_secret, s.client_auth) {
        (None, None) => Some(OAuthClientSpec {
            client_id: s.client_id.to_string(),
            auth: ClientAuth::None,
        }),
        (_, Some(ClientAuthName::PrivateKeyJwt)) => {
            cx.err(
                "client_auth",
                "`private_key_jwt` is not offered for this mode",
                "use client_secret_basic (the default) or client_secret_post with `client_secret`, or no secret for a public client",
            );
            None
        }
        (secret, method) => oauth_client(cx, s.client_id, secret, None, None, method),
    };
    if s.client_id.is_empty() {
        ok = false;
        cx.err(
            "client_id",
            "`client_id` is empty",
            "give the client id of the OAuth app you registered at the provider",
        );
    }
    for (key, url) in [
        ("issuer", s.issuer),
        ("authorization_url", s.authorization_url),
        ("token_url", s.token_url),
        ("revocation_url", s.revocation_url),
    ] {
        if let Some(url) = url
            && !crate::config::secure_transport(url)
        {
            ok = false;
            cx.err(
                key,
                format!("`{url}` is not an https URL: authorization codes and tokens would travel in clear text"),
                "use the provider's https URL (plain http is accepted only on a loopback host, for local development)",
            );
        }
    }
    let (Some(endpoints), Some(client), true) = (endpoints, client, ok) else {
        return None;
    };
    Some(AuthorizationCodeSpec {
        provider,
        endpoints,
        revocation_url,
        client,
        scopes,
        tool_scopes: s.tool_scopes.clone(),
        authorize_params,
        scope_param,
        resource,
        display_name: s
            .display_name
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string),
    })
}

/// The endpoints: a preset's (any of them overridable), else `issuer` or both URLs.
fn endpoints(cx: &mut Ctx<'_>, s: &Section<'_>, provider: Provider) -> Option<ProviderEndpoints> {
    if let Some((_, authorization_url, token_url)) = preset(provider, s.tenant.unwrap_or_default())
    {
        if s.issuer.is_some() {
            cx.err(
                "issuer",
                format!("the `{}` preset knows its endpoints; `issuer` is for `custom`", provider.name()),
                "remove `issuer` (override `authorization_url`/`token_url` for e.g. an enterprise server)",
            );
            return None;
        }
        let parse = |u: String| Url::parse(&u).ok();
        return Some(ProviderEndpoints::Urls {
            authorization_url: s
                .authorization_url
                .cloned()
                .or_else(|| parse(authorization_url))?,
            token_url: s.token_url.cloned().or_else(|| parse(token_url))?,
        });
    }
    match (s.issuer, s.authorization_url, s.token_url) {
        (Some(issuer), None, None) => Some(ProviderEndpoints::Discover {
            issuer: issuer.clone(),
        }),
        (None, Some(a), Some(t)) => Some(ProviderEndpoints::Urls {
            authorization_url: a.clone(),
            token_url: t.clone(),
        }),
        _ => {
            cx.err(
                "issuer",
                "a `custom` provider needs either `issuer` (its endpoints are discovered) or both `authorization_url` and `token_url`",
                "add issuer = \"https://login.example.com/\", or the two endpoint URLs",
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConfigErrors, SourceFile};

    fn compiled(section: Section<'_>) -> (Option<AuthorizationCodeSpec>, ConfigErrors) {
        let src = SourceFile::from_text("targets/t.toml", "");
        let mut errors = ConfigErrors::default();
        let mut cx = Ctx {
            section: "auth",
            src: &src,
            base: std::path::Path::new("."),
            errors: &mut errors,
        };
        (compile(&mut cx, &section), errors)
    }

    fn section<'a>(provider: &'a str, scopes: &'a [String]) -> Section<'a> {
        static EMPTY_SCOPES: BTreeMap<String, Vec<String>> = BTreeMap::new();
        static EMPTY_PARAMS: BTreeMap<String, String> = BTreeMap::new();
        Section {
            provider,
            tenant: None,
            issuer: None,
            authorization_url: None,
            token_url: None,
            revocation_url: None,
            client_id: "app",
            client_secret: None,
            client_auth: None,
            scopes,
            tool_scopes: &EMPTY_SCOPES,
            authorize_params: &EMPTY_PARAMS,
            resource: None,
            display_name: None,
        }
    }

    fn url(spec: &AuthorizationCodeSpec) -> (String, String) {
        match &spec.endpoints {
            ProviderEndpoints::Urls {
                authorization_url,
                token_url,
            } => (authorization_url.to_string(), token_url.to_string()),
            ProviderEndpoints::Discover { issuer } => (issuer.to_string(), String::new()),
        }
    }

    #[test]
    fn presets_fill_in_endpoints_scopes_and_parameters() {
        let scopes = vec!["Mail.Read".to_string()];
        let mut s = section("microsoft", &scopes);
        s.tenant = Some("contoso.onmicrosoft.com");
        let (spec, errors) = compiled(s);
        assert!(errors.is_empty(), "{errors}");
        let spec = spec.unwrap();
        assert_eq!(
            url(&spec).0,
            "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/authorize"
        );
        assert_eq!(spec.scopes, ["Mail.Read", "offline_access"]);
        assert!(
            matches!(spec.client.auth, ClientAuth::None),
            "no secret: a public client"
        );

        let (spec, _) = compiled(section("google", &scopes));
        let spec = spec.unwrap();
        assert_eq!(
            spec.authorize_params,
            [
                ("access_type".to_string(), "offline".to_string()),
                ("prompt".to_string(), "consent".to_string())
            ]
        );
        assert_eq!(
            spec.revocation_url.unwrap().as_str(),
            "https://oauth2.googleapis.com/revoke"
        );

        let (spec, _) = compiled(section("slack", &scopes));
        assert_eq!(spec.unwrap().scope_param, "user_scope");
    }

    #[test]
    fn a_preset_endpoint_can_be_overridden_and_custom_discovers_or_takes_urls() {
        let scopes = vec!["repo".to_string()];
        let ghe = Url::parse("https://github.example.com/login/oauth/authorize").unwrap();
        let mut s = section("github", &scopes);
        s.authorization_url = Some(&ghe);
        let (spec, _) = compiled(s);
        let (authorize, token) = url(&spec.unwrap());
        assert_eq!(authorize, ghe.as_str());
        assert_eq!(token, "https://github.com/login/oauth/access_token");

        let issuer = Url::parse("https://login.example.com/").unwrap();
        let mut s = section("custom", &scopes);
        s.issuer = Some(&issuer);
        let (spec, errors) = compiled(s);
        assert!(errors.is_empty(), "{errors}");
        assert_eq!(
            spec.unwrap().endpoints,
            ProviderEndpoints::Discover { issuer }
        );
    }
}

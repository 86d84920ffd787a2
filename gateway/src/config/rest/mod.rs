//! `[openapi]` and `[http]` targets: HTTP APIs whose operations are tools. Both compile to a
//! [`RestSpec`] holding [`Operation`]s: an `[http]` target's from its `[tools.NAME]` tables
//! (here), an `[openapi]` target's from its specification (`openapi.rs`) — read now for a
//! file, so its problems stop the load naming the spot; fetched when the target starts for
//! a URL.

pub mod openapi;
mod operation;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Value, json};
use url::Url;

pub use operation::{Body, Location, Operation, Param, Style};

use super::diagnostic::io_problem;
use super::schema::{HttpSection, OpenApiSection, ToolSection};
use super::{ConfigError, ConfigErrors, SourceFile, valid_tool_chars, values};
use openapi::{Filters, SpecError, Spot};

/// The most bytes of a response body a call reads when `max_response_bytes` is not set.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// An HTTP API target, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct RestSpec {
    pub source: RestSource,
    /// Where each operation's path is appended. `None` only for a specification fetched
    /// from a URL without `base_url`: its `servers` decide once it is fetched.
    pub base_url: Option<Url>,
    /// Sent with every request (`headers` of `[http]` / `[openapi]`).
    pub headers: Vec<(String, String)>,
    pub max_response_bytes: usize,
    /// Known at load for `[http]` and a specification file; empty until fetched for a URL.
    pub operations: Arc<[Operation]>,
}

impl RestSpec {
    /// The table the target was written with, for messages.
    pub fn kind(&self) -> &'static str {
        match self.source {
            RestSource::Declared => "http",
            RestSource::SpecFile(_) | RestSource::SpecUrl { .. } => "openapi",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum RestSource {
    /// `[http]`: the operations are the target file's `[tools.NAME]`.
    Declared,
    /// `[openapi] spec` naming a file (absolute once compiled).
    SpecFile(PathBuf),
    /// `[openapi] spec` naming a URL, fetched when the target starts.
    SpecUrl { url: Url, filters: Box<Filters> },
}

/// `[openapi]`: a specification file is read and turned into operations now, so every
/// problem in it stops the load naming its spot; a URL is fetched when the target starts.
pub(super) fn compile_openapi(
    src: &SourceFile,
    section: &OpenApiSection,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<RestSpec> {
    let start = errors.len();
    let headers = fixed_headers(src, "openapi.headers", &section.headers, errors);
    let max_response_bytes = response_limit(src, "openapi", section.max_response_bytes, errors);
    if let Some(url) = &section.base_url
        && !matches!(url.scheme(), "http" | "https")
    {
        errors.push(src.error(
            "openapi.base_url",
            format!("scheme `{}` is not supported", url.scheme()),
            "use the http:// or https:// URL the API's paths start from",
        ));
    }
    let filters = Filters {
        include_operations: section.include.operations.clone(),
        include_tags: section.include.tags.clone(),
        include_paths: section.include.paths.clone(),
        exclude_operations: section.exclude.operations.clone(),
        exclude_tags: section.exclude.tags.clone(),
        exclude_paths: section.exclude.paths.clone(),
    };
    let spec = section.spec.trim();
    if spec.starts_with("http://") || spec.starts_with("https://") {
        let url = match values::parse_url(spec) {
            Ok(u) => u,
            Err(why) => {
                errors.push(src.error("openapi.spec", why, "give the specification's full URL"));
                return None;
            }
        };
        return (errors.len() == start).then(|| RestSpec {
            source: RestSource::SpecUrl {
                url,
                filters: Box::new(filters),
            },
            base_url: section.base_url.clone(),
            headers,
            max_response_bytes,
            operations: Arc::from([]),
        });
    }
    // As the user named it in messages (relative stays relative, like the target file).
    let shown = base.join(spec);
    let file = std::path::absolute(&shown).unwrap_or_else(|_| shown.clone());
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            errors.push(src.error(
                "openapi.spec",
                io_problem(&e, &format!("OpenAPI specification {}", shown.display())),
                "fix the path (it is relative to this target file's directory), or give an http(s):// URL",
            ));
            return None;
        }
    };
    let loaded = openapi::parse(&text)
        .map_err(|e| vec![e])
        .and_then(|doc| openapi::load(&doc, &filters));
    let spec = match loaded {
        Ok(s) => s,
        Err(problems) => {
            for p in problems {
                errors.push(spec_error(src, &shown, p));
            }
            return None;
        }
    };
    for w in &spec.warnings {
        tracing::warn!(target: "portcullis::config", "{}: {w}", shown.display());
    }
    let base_url = match &section.base_url {
        Some(u) => Some(u.clone()),
        None => match server_url(&spec.servers, None) {
            Ok(u) => Some(u),
            Err(why) => {
                errors.push(src.error(
                    "openapi",
                    format!("{}: {why}", shown.display()),
                    "set `base_url` in [openapi] to the URL the API's paths start from",
                ));
                None
            }
        },
    };
    (errors.len() == start).then(|| RestSpec {
        source: RestSource::SpecFile(file),
        base_url,
        headers,
        max_response_bytes,
        operations: spec.operations.into(),
    })
}

/// The base URL from a specification's `servers`: the first one, resolved against the
/// specification's own URL when relative (a file has none to resolve against).
pub fn server_url(servers: &[String], spec_url: Option<&Url>) -> Result<Url, String> {
    let Some(first) = servers.first() else {
        return Err("the specification lists no `servers`, so the API's address is unknown".into());
    };
    let url = match (Url::parse(first), spec_url) {
        (Ok(u), _) => u,
        (Err(url::ParseError::RelativeUrlWithoutBase), Some(spec)) => spec
            .join(first)
            .map_err(|e| format!("server `{first}` cannot be resolved: {e}"))?,
        (Err(url::ParseError::RelativeUrlWithoutBase), None) => {
            return Err(format!(
                "the specification's server `{first}` is relative, and a file has no address to resolve it against"
            ));
        }
        (Err(e), _) => return Err(format!("server `{first}` is not a URL: {e}")),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("server `{url}` is not an http(s) URL"));
    }
    Ok(url)
}

/// A problem of the specification, placed: in the specification file (a line, or a spot
/// like `paths › /pets › get`), or at the target file's filter key it comes from.
fn spec_error(src: &SourceFile, file: &Path, e: SpecError) -> ConfigError {
    match e.at {
        Spot::Filter(key) => src.error(key, e.message, e.fix),
        Spot::Line { line, column } => ConfigError {
            file: file.to_path_buf(),
            position: Some((line, column)),
            key: String::new(),
            message: e.message,
            fix: e.fix,
        },
        Spot::Spec(at) => ConfigError {
            file: file.to_path_buf(),
            position: None,
            key: at,
            message: e.message,
            fix: e.fix,
        },
    }
}

/// Methods an `[http]` tool may use.
const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Methods whose requests carry no body: an `[http]` tool's other arguments go to the query.
fn bodiless(method: &str) -> bool {
    matches!(method, "GET" | "HEAD" | "DELETE" | "OPTIONS")
}

/// Check the headers a target or tool sends: valid names and values, and none that the
/// credential or the call sets itself.
pub(super) fn fixed_headers(
    src: &SourceFile,
    key: &str,
    headers: &BTreeMap<String, String>,
    errors: &mut ConfigErrors,
) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (name, value) in headers {
        let at = format!("{key}.{name}");
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            errors.push(src.error(
                &at,
                format!("`{name}` is not a valid HTTP header name"),
                "use letters, digits and `-`, e.g. X-Api-Version",
            ));
        } else if matches!(
            name.to_ascii_lowercase().as_str(),
            "authorization" | "host" | "content-length" | "content-type"
        ) {
            errors.push(src.error(
                &at,
                format!("header `{name}` is set by the gateway for each request"),
                "remove it; credentials belong in [auth] (e.g. mode = \"api_key\")",
            ));
        } else if http::HeaderValue::from_str(value).is_err() {
            errors.push(src.error(
                &at,
                format!("the value of header `{name}` has characters a header may not carry"),
                "use visible ASCII characters",
            ));
        } else {
            out.push((name.clone(), value.clone()));
        }
    }
    out
}

/// `[http]`: every `[tools.NAME]` is one operation.
pub(super) fn compile_http(
    src: &SourceFile,
    http: &HttpSection,
    tools: &BTreeMap<String, ToolSection>,
    errors: &mut ConfigErrors,
) -> Option<RestSpec> {
    let start = errors.len();
    if !matches!(http.base_url.scheme(), "http" | "https") {
        errors.push(src.error(
            "http.base_url",
            format!("scheme `{}` is not supported", http.base_url.scheme()),
            "use the http:// or https:// URL the API's paths start from",
        ));
    }
    let headers = fixed_headers(src, "http.headers", &http.headers, errors);
    if tools.is_empty() {
        errors.push(src.error(
            "http",
            "an [http] target declares its tools, and this file declares none",
            "add a table per tool: [tools.NAME] with `method`, `path`, `description` and `input_schema`",
        ));
    }
    let operations: Vec<Operation> = tools
        .iter()
        .filter_map(|(name, tool)| declared_operation(src, name, tool, errors))
        .collect();
    let max_response_bytes = response_limit(src, "http", http.max_response_bytes, errors);
    (errors.len() == start).then(|| RestSpec {
        source: RestSource::Declared,
        base_url: Some(http.base_url.clone()),
        headers,
        max_response_bytes,
        operations: operations.into(),
    })
}

pub(super) fn response_limit(
    src: &SourceFile,
    table: &str,
    limit: Option<usize>,
    errors: &mut ConfigErrors,
) -> usize {
    if limit == Some(0) {
        errors.push(src.error(
            &format!("{table}.max_response_bytes"),
            "a limit of zero bytes would refuse every response",
            "leave it out (1 MiB), or give the most bytes one response may have, e.g. 4194304",
        ));
    }
    limit.unwrap_or(DEFAULT_MAX_RESPONSE_BYTES)
}

/// One `[tools.NAME]` of an `[http]` target. The path's `{placeholders}` and the headers
/// whose value is exactly `{arg}` take those arguments; the other arguments go to the query
/// (GET, HEAD, DELETE, OPTIONS) or make the JSON body (POST, PUT, PATCH).
fn declared_operation(
    src: &SourceFile,
    name: &str,
    tool: &ToolSection,
    errors: &mut ConfigErrors,
) -> Option<Operation> {
    let key = |k: &str| format!("tools.{name}.{k}");
    let start = errors.len();
    if !valid_tool_chars(name) {
        errors.push(src.error(
            &format!("tools.{name}"),
            format!("`{name}` has characters MCP tool names may not contain"),
            "use only letters, digits, `_`, `-` or `.`",
        ));
    }
    let method = tool.method.as_deref().unwrap_or("GET").to_ascii_uppercase();
    if !METHODS.contains(&method.as_str()) {
        errors.push(src.error(
            &key("method"),
            format!("`{method}` is not an HTTP method an [http] tool can use"),
            format!("use one of {}", METHODS.join(", ")),
        ));
    }
    let Some(path) = &tool.path else {
        errors.push(src.error(
            &format!("tools.{name}"),
            format!("tool `{name}` of an [http] target has no `path`"),
            "add `path = \"/resource/{id}\"` (appended to [http] base_url; `{arg}` takes an argument)",
        ));
        return None;
    };
    if !path.starts_with('/') {
        errors.push(src.error(
            &key("path"),
            format!("path `{path}` does not start with `/`"),
            format!("write `/{path}`; it is appended to [http] base_url"),
        ));
    }
    let placeholders = match placeholders(path) {
        Ok(p) => p,
        Err(why) => {
            errors.push(src.error(
                &key("path"),
                format!("path `{path}`: {why}"),
                "write each argument as `{name}`, e.g. /users/{user_id}/repos",
            ));
            return None;
        }
    };
    let schema = match &tool.input_schema {
        Some(s) if s.get("type").and_then(Value::as_str) != Some("object") => {
            errors.push(src.error(
                &key("input_schema"),
                "an MCP tool's input schema must be a JSON Schema of `type = \"object\"`",
                "add `type = \"object\"` to the schema table",
            ));
            return None;
        }
        Some(s) => s.clone(),
        // Without a schema, the path's arguments are the tool's: required strings.
        None => path_only_schema(&placeholders),
    };
    let properties = schema.get("properties").and_then(Value::as_object);
    let declared = |arg: &str| properties.is_some_and(|p| p.contains_key(arg));
    let mut params = Vec::new();
    let mut taken = BTreeSet::new();
    for arg in &placeholders {
        if !declared(arg) {
            errors.push(src.error(
                &key("path"),
                format!("the path takes argument `{arg}`, which input_schema does not describe"),
                format!("add `{arg}` to input_schema's properties (and to `required`)"),
            ));
        }
        taken.insert(arg.clone());
        params.push(Param {
            name: arg.clone(),
            arg: arg.clone(),
            location: Location::Path,
            required: true,
            style: Style::Simple,
            explode: false,
        });
    }
    let mut fixed = BTreeMap::new();
    for (header, value) in &tool.headers {
        match value
            .strip_prefix('{')
            .and_then(|v| v.strip_suffix('}'))
            .filter(|v| !v.contains(['{', '}']))
        {
            Some(arg) => {
                if !declared(arg) {
                    errors.push(src.error(
                        &key(&format!("headers.{header}")),
                        format!("header `{header}` takes argument `{arg}`, which input_schema does not describe"),
                        format!("add `{arg}` to input_schema's properties"),
                    ));
                }
                taken.insert(arg.to_string());
                params.push(Param {
                    name: header.clone(),
                    arg: arg.to_string(),
                    location: Location::Header,
                    required: required(&schema, arg),
                    style: Style::Simple,
                    explode: false,
                });
            }
            None => {
                fixed.insert(header.clone(), value.clone());
            }
        }
    }
    let headers = fixed_headers(src, &key("headers"), &fixed, errors);
    let rest: Vec<&String> = properties
        .into_iter()
        .flat_map(|p| p.keys())
        .filter(|a| !taken.contains(*a))
        .collect();
    let body = if bodiless(&method) {
        params.extend(rest.into_iter().map(|arg| Param {
            name: arg.clone(),
            arg: arg.clone(),
            location: Location::Query,
            required: required(&schema, arg),
            style: Style::Form,
            explode: true,
        }));
        None
    } else if rest.is_empty() {
        None
    } else {
        Some(Body {
            arg: None,
            required: false,
            content_type: "application/json".into(),
        })
    };
    (errors.len() == start).then(|| Operation {
        tool: name.to_string(),
        operation_id: None,
        description: tool.description.clone(),
        method,
        path: path.clone(),
        params,
        headers,
        body,
        input_schema: Arc::new(schema),
        scopes: vec![],
        tags: vec![],
    })
}

fn required(schema: &Map<String, Value>, arg: &str) -> bool {
    schema
        .get("required")
        .and_then(Value::as_array)
        .is_some_and(|r| r.iter().any(|v| v.as_str() == Some(arg)))
}

fn path_only_schema(placeholders: &[String]) -> Map<String, Value> {
    let properties: Map<String, Value> = placeholders
        .iter()
        .map(|p| (p.clone(), json!({ "type": "string" })))
        .collect();
    let Value::Object(schema) = json!({
        "type": "object",
        "properties": properties,
        "required": placeholders,
    }) else {
        unreachable!("a json! object literal is an object")
    };
    schema
}

/// The `{names}` of a path template, in order; an unclosed or empty brace is an error.
pub fn placeholders(path: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut rest = path;
    while let Some(open) = rest.find('{') {
        if rest[..open].contains('}') {
            return Err("a `}` without its `{`".into());
        }
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| "a `{` without its `}`".to_string())?;
        let name = &after[..close];
        if name.is_empty() || name.contains('{') {
            return Err(format!("`{{{name}}}` is not an argument name"));
        }
        if !out.iter().any(|n| n == name) {
            out.push(name.to_string());
        }
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err("a `}` without its `{`".into());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_read_in_order_and_malformed_ones_refused() {
        assert_eq!(
            placeholders("/users/{user}/repos/{repo}").unwrap(),
            ["user", "repo"]
        );
        assert_eq!(placeholders("/a/{x}/b/{x}").unwrap(), ["x"]);
        assert!(placeholders("/a/{x").is_err());
        assert!(placeholders("/a/x}").is_err());
        assert!(placeholders("/a/{}").is_err());
        assert!(placeholders("/plain").unwrap().is_empty());
    }
}

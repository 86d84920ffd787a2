//! Loading `targets/*.toml`: one file per target, validated into a [`TargetSpec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::diagnostic::io_problem;
use super::schema::{AuthSection, LambdaSection, McpSection, TARGET_TOP_LEVEL, TargetFile};
use super::{
    ConfigError, ConfigErrors, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_INHERITED_ENV, EnvValue, LambdaSpec, McpTransport, SourceFile, TargetKind, TargetSpec,
    outbound, rest, valid_tool_chars, values,
};

pub(super) fn load_targets(dir: &Path, errors: &mut ConfigErrors) -> Vec<TargetSpec> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ConfigError {
                file: dir.to_path_buf(),
                position: None,
                key: String::new(),
                message: io_problem(&e, "targets directory"),
                fix: "create it (it may stay empty), or point `targets_dir` (a top-level key of gateway.toml, relative to it) at the directory of your target files".into(),
            });
            return vec![];
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
        .iter()
        .filter_map(|f| load_target(f, errors))
        .collect()
}

/// Read and check one target file. Every problem in it is recorded; the target is returned
/// only when there is none.
fn load_target(path: &Path, errors: &mut ConfigErrors) -> Option<TargetSpec> {
    let mut src = match SourceFile::read(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    let start = errors.len();
    let name = path.file_stem()?.to_string_lossy().to_string();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        errors.push(src.error(
            "",
            format!("target name `{name}` (from the file name) has characters other than letters, digits, `_`, `-`"),
            "rename the file, e.g. targets/my_tools.toml",
        ));
    }
    let mut file: TargetFile = src.parse_all(TARGET_TOP_LEVEL, errors)?;
    let checks_start = errors.len();
    let prefix = file.prefix.clone().unwrap_or_else(|| name.clone());
    if !prefix.is_empty() && !valid_tool_chars(&prefix) {
        errors.push(src.error(
            "prefix",
            format!("prefix `{prefix}` has characters MCP tool names may not contain"),
            "use only letters, digits, `_`, `-` or `.`, or \"\" for no prefix",
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let kind = compile_kind(&src, &file, base, errors);
    if let (
        Some(TargetKind::Rest(rest)),
        Some(AuthSection::AuthorizationCode { tool_scopes, .. }),
    ) = (&kind, &mut file.auth)
    {
        // What a user consents to for a tool: its operation's `security` scopes, unless
        // `[auth.tool_scopes]` names the tool. Added before `[auth]` is compiled, so a
        // target whose scopes all come from its specification needs no `scopes` of its own.
        for op in rest.operations.iter().filter(|o| !o.scopes.is_empty()) {
            tool_scopes
                .entry(op.tool.clone())
                .or_insert_with(|| op.scopes.clone());
        }
    }
    let auth = outbound::compile(&src, "auth", file.auth.as_ref(), base, errors);
    // Unknown when `[auth]` has problems of its own (reported already).
    let per_caller = auth.as_ref().map(outbound::AuthSpec::per_caller);
    let per_call = kind.as_ref().is_some_and(TargetKind::per_call);
    let listing_auth = file.listing_auth.as_ref().and_then(|l| {
        if per_call {
            errors.push(src.error(
                "listing_auth",
                "this target's tools come from its file or specification, not from a session, so there is nothing to list with [listing_auth]",
                "remove [listing_auth]",
            ));
            return None;
        }
        let spec = outbound::compile(&src, "listing_auth", Some(l), base, errors)?;
        check_listing_auth(&src, &spec, auth.as_ref(), errors).then_some(spec)
    });
    check_tool_keys(&src, &file.tools, kind.as_ref(), errors);
    let declared_tools = match &kind {
        Some(TargetKind::Lambda(_)) => declared_tools(&src, &file.tools, Declared::Lambda, errors),
        Some(TargetKind::Rest(_)) => vec![],
        _ => declared_tools(&src, &file.tools, Declared::Mcp { per_caller }, errors),
    };
    if let Some(TargetKind::Lambda(_)) = &kind {
        check_lambda_auth(&src, auth.as_ref(), file.auth.is_some(), errors);
    }
    if let (Some(auth), Some(TargetKind::Mcp(McpTransport::Stdio { .. }, _))) = (&auth, &kind)
        && !matches!(auth, outbound::AuthSpec::None)
    {
        errors.push(src.error(
            "auth",
            "a stdio target runs as a child process; it has no HTTP requests to attach credentials to",
            "pass its credentials as environment variables with `[mcp.secret_env]`, and remove [auth]",
        ));
    }
    for (key, d) in [
        ("timeout", file.timeout),
        ("connect_timeout", file.connect_timeout),
    ] {
        if d.is_some_and(|d| d.is_zero()) {
            errors.push(src.error(
                key,
                "a timeout of zero would fail every call",
                "use e.g. \"30s\"",
            ));
        }
    }
    src.drop_follow_ons(errors, checks_start);
    let (Some(kind), Some(auth)) = (kind, auth) else {
        return None;
    };
    if file.listing_auth.is_some() && listing_auth.is_none() {
        return None;
    }
    (errors.len() == start).then(|| TargetSpec {
        name,
        file: path.to_path_buf(),
        description: file.description,
        prefix,
        call_timeout: file.timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        connect_timeout: file.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        optional: file.optional,
        audit_arguments: file.audit_arguments,
        tool_scopes: file
            .tools
            .iter()
            .map(|(k, v)| (k.clone(), v.scopes.clone()))
            .collect(),
        declared_tools,
        kind,
        auth,
        listing_auth,
    })
}

/// `[listing_auth]` only makes sense beside an `[auth]` that acts for each caller, and must
/// itself be a credential of the gateway's own (it is used with no caller).
fn check_listing_auth(
    src: &SourceFile,
    listing: &outbound::AuthSpec,
    auth: Option<&outbound::AuthSpec>,
    errors: &mut ConfigErrors,
) -> bool {
    if listing.per_caller() {
        errors.push(src.error(
            "listing_auth.mode",
            format!("mode `{}` acts for a caller, and listing happens for no caller", listing.mode()),
            "use a credential of the gateway's own here: none, api_key, oauth2_client_credentials or aws_sigv4",
        ));
        return false;
    }
    match auth {
        Some(a) if !a.per_caller() => {
            errors.push(src.error(
                "listing_auth",
                format!("[auth] mode `{}` is the gateway's own credential, so the target's one shared session lists its tools already", a.mode()),
                "remove [listing_auth]; it is for targets whose [auth] acts for each caller (token_exchange, oauth2_authorization_code)",
            ));
            false
        }
        _ => true,
    }
}

/// Whose declared tools are read: a per-user MCP target's (listed until a user's session
/// lists the upstream; for a shared session they are an error) or a Lambda function's (its
/// only tools).
#[derive(Debug, Clone, Copy)]
enum Declared {
    Mcp { per_caller: Option<bool> },
    Lambda,
}

/// The tools a target declares (`[tools.NAME]` with `input_schema`).
fn declared_tools(
    src: &SourceFile,
    tools: &BTreeMap<String, super::schema::ToolSection>,
    whose: Declared,
    errors: &mut ConfigErrors,
) -> Vec<rmcp::model::Tool> {
    let mut declared = Vec::new();
    if matches!(whose, Declared::Lambda) && tools.is_empty() {
        errors.push(src.error(
            "lambda",
            "a Lambda target's tools are declared in its file, and this file declares none",
            "add a table per tool the function handles: [tools.NAME] with `description` and `input_schema`",
        ));
    }
    for (name, t) in tools {
        let key = |k: &str| format!("tools.{name}.{k}");
        if t.input_schema.is_none() && t.description.is_none() {
            if matches!(whose, Declared::Lambda) {
                errors.push(src.error(
                    &format!("tools.{name}"),
                    format!("tool `{name}` is declared without the schema of its arguments"),
                    "add `description = \"…\"` and `input_schema = { type = \"object\", properties = { … } }`",
                ));
            }
            continue;
        }
        if matches!(
            whose,
            Declared::Mcp {
                per_caller: Some(false)
            }
        ) {
            let k = if t.input_schema.is_some() {
                "input_schema"
            } else {
                "description"
            };
            errors.push(src.error(
                &key(k),
                "declared tools are for targets whose [auth] acts for each caller (token_exchange); this target's tools come from its upstream, which describes them itself",
                format!("remove `{k}`"),
            ));
            continue;
        }
        let Some(schema) = &t.input_schema else {
            errors.push(src.error(
                &key("description"),
                format!("tool `{name}` is declared without the schema of its arguments"),
                "add `input_schema = { type = \"object\", properties = { … } }`",
            ));
            continue;
        };
        if schema.get("type").and_then(|t| t.as_str()) != Some("object") {
            errors.push(src.error(
                &key("input_schema"),
                "an MCP tool's input schema must be a JSON Schema of `type = \"object\"`",
                "add `type = \"object\"` to the schema table",
            ));
            continue;
        }
        if !valid_tool_chars(name) {
            errors.push(src.error(
                &format!("tools.{name}"),
                format!("`{name}` has characters MCP tool names may not contain"),
                "use only letters, digits, `_`, `-` or `.`",
            ));
            continue;
        }
        declared.push(rmcp::model::Tool::new_with_raw(
            name.clone(),
            t.description.clone().map(Into::into),
            std::sync::Arc::new(schema.clone()),
        ));
    }
    declared
}

fn compile_mcp(
    src: &SourceFile,
    mcp: &McpSection,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<McpTransport> {
    // Ask the file, not the parsed table: a `url` with a bad value was taken out while
    // reading, but the user still wrote both.
    let has_url = mcp.url.is_some() || src.has_key("mcp.url");
    let has_command = mcp.command.is_some() || src.has_key("mcp.command");
    if has_url && has_command {
        errors.push(src.error(
            "mcp",
            "both `url` (streamable HTTP upstream) and `command` (stdio child process) are set",
            "keep `url = \"http://host/mcp\"` or `command = \"…\"`, not both",
        ));
        return None;
    }
    match (&mcp.url, &mcp.command) {
        (Some(url), None) => compile_http(src, mcp, url, errors),
        (None, Some(command)) => compile_stdio(src, mcp, command, base, errors),
        _ => {
            // A misspelt `url` or `command` was reported already, with the right name.
            if !has_url && !has_command && !src.removed_under("mcp") {
                errors.push(src.error(
                    "mcp",
                    "the [mcp] table has neither `url` (streamable HTTP upstream) nor `command` (stdio child process)",
                    "add `url = \"http://host/mcp\"` or `command = \"…\"`",
                ));
            }
            None
        }
    }
}

fn compile_http(
    src: &SourceFile,
    mcp: &McpSection,
    url: &url::Url,
    errors: &mut ConfigErrors,
) -> Option<McpTransport> {
    let mut ok = true;
    if let Some(meant) = values::missing_http(url) {
        errors.push(src.error(
            "mcp.url",
            format!(
                "`{url}` has no `//` after `{scheme}:`, so `{scheme}` is read as the URL's scheme",
                scheme = url.scheme()
            ),
            format!("write {meant}"),
        ));
        ok = false;
    } else if !matches!(url.scheme(), "http" | "https") {
        errors.push(src.error(
            "mcp.url",
            format!("scheme `{}` is not supported", url.scheme()),
            "use an http:// or https:// URL of the upstream's MCP endpoint",
        ));
        ok = false;
    }
    let stdio_only = [
        ("mcp.args", !mcp.args.is_empty()),
        ("mcp.env", !mcp.env.is_empty()),
        ("mcp.secret_env", !mcp.secret_env.is_empty()),
        ("mcp.cwd", mcp.cwd.is_some()),
        ("mcp.inherit_env", !mcp.inherit_env.is_empty()),
    ];
    for (key, set) in stdio_only {
        if set {
            errors.push(src.error(
                key,
                "only applies to stdio targets (`command`)",
                "remove it, or use `command` instead of `url`",
            ));
            ok = false;
        }
    }
    ok.then(|| McpTransport::Http { url: url.clone() })
}

fn compile_stdio(
    src: &SourceFile,
    mcp: &McpSection,
    command: &str,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<McpTransport> {
    let mut ok = true;
    let cwd = mcp
        .cwd
        .as_ref()
        .map(|c| std::path::absolute(base.join(c)).unwrap_or_else(|_| base.join(c)));
    if let Some(c) = &cwd
        && !c.is_dir()
    {
        errors.push(src.error(
            "mcp.cwd",
            format!("directory not found: {}", c.display()),
            "create it, or fix the path (it is relative to this file's directory)",
        ));
        ok = false;
    }
    let resolved = resolve_command(command, cwd.as_deref().unwrap_or(base));
    if resolved.is_none() {
        errors.push(src.error(
            "mcp.command",
            format!("command `{command}` was not found"),
            "install it (PATH is searched), or give its absolute path, or a path relative to `cwd` (to this file's directory when `cwd` is not set)",
        ));
        ok = false;
    }
    let mut env: Vec<(String, EnvValue)> = mcp
        .env
        .iter()
        .map(|(k, v)| (k.clone(), EnvValue::Plain(v.clone())))
        .collect();
    for (k, r) in &mcp.secret_env {
        match r.resolve(base) {
            Ok(s) => env.push((k.clone(), EnvValue::Secret(s))),
            Err(e) => {
                errors.push(src.error(
                    &format!("mcp.secret_env.{k}"),
                    format!("secret `{r}` cannot be read: {e}"),
                    e.fix(),
                ));
                ok = false;
            }
        }
    }
    let mut inherit: Vec<String> = DEFAULT_INHERITED_ENV
        .iter()
        .map(|s| s.to_string())
        .collect();
    inherit.extend(mcp.inherit_env.iter().cloned());
    Some(McpTransport::Stdio {
        command: resolved?,
        args: mcp.args.clone(),
        env,
        inherit,
        cwd,
    })
    .filter(|_| ok)
}

/// The command that means the gateway itself: the quickstart's demo target is served by a
/// subcommand of the running binary, so it needs no second build and no `PATH` entry.
const SELF_COMMAND: &str = "portcullis";

/// A command is the gateway itself (`portcullis`), a path (contains `/`, relative to `dir`)
/// or a name looked up on `PATH`.
fn resolve_command(command: &str, dir: &Path) -> Option<PathBuf> {
    if command == SELF_COMMAND {
        return std::env::current_exe().ok();
    }
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.is_file()
            && p.metadata()
                .map(|m| m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
    };
    if command.contains('/') {
        // Absolute, because the child is started in its `cwd`, not ours.
        let p = std::path::absolute(dir.join(command)).ok()?;
        return is_exec(&p).then_some(p);
    }
    std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join(command))
            .find(|p| is_exec(p))
    })?
}

/// Exactly one of `[mcp]`, `[openapi]`, `[http]`, `[lambda]` says what the target is.
fn compile_kind(
    src: &SourceFile,
    file: &TargetFile,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<TargetKind> {
    let tables: Vec<&str> = [
        ("mcp", file.mcp.is_some()),
        ("openapi", file.openapi.is_some()),
        ("http", file.http.is_some()),
        ("lambda", file.lambda.is_some()),
    ]
    .into_iter()
    .filter_map(|(t, set)| set.then_some(t))
    .collect();
    if let [first, second, ..] = tables[..] {
        errors.push(src.error(
            second,
            format!("the target is both [{first}] and [{second}]"),
            "keep one table: a target file describes one target (split it into two files)",
        ));
        return None;
    }
    if let Some(mcp) = &file.mcp {
        return compile_mcp(src, mcp, base, errors).map(|t| TargetKind::Mcp(t, mcp.protocol));
    }
    if let Some(openapi) = &file.openapi {
        return rest::compile_openapi(src, openapi, base, errors)
            .map(|r| TargetKind::Rest(Box::new(r)));
    }
    if let Some(http) = &file.http {
        return rest::compile_http(src, http, &file.tools, errors)
            .map(|r| TargetKind::Rest(Box::new(r)));
    }
    if let Some(lambda) = &file.lambda {
        return compile_lambda(src, lambda, errors);
    }
    // A misspelt table was reported already, with the right name.
    if !src.removed_under("mcp") {
        errors.push(src.error(
            "",
            "the target does not say what it is: there is no [mcp], [openapi], [http] or [lambda] table",
            "add [mcp] with `url = \"http://…/mcp\"` or `command = \"…\"` for an MCP server, [openapi] with `spec = \"…\"` for a REST API, [http] with `base_url` for an API without a specification, or [lambda] with `function = \"…\"`",
        ));
    }
    None
}

fn compile_lambda(
    src: &SourceFile,
    lambda: &LambdaSection,
    errors: &mut ConfigErrors,
) -> Option<TargetKind> {
    let function = lambda.function.trim();
    let valid = !function.is_empty()
        && function
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_:.$".contains(c));
    if !valid {
        errors.push(src.error(
            "lambda.function",
            format!("`{function}` is not a Lambda function name or ARN"),
            "give the function's name (orders-api) or ARN (arn:aws:lambda:us-east-1:123456789012:function:orders-api)",
        ));
    }
    if let Some(url) = &lambda.endpoint_url
        && !matches!(url.scheme(), "http" | "https")
    {
        errors.push(src.error(
            "lambda.endpoint_url",
            format!("scheme `{}` is not supported", url.scheme()),
            "use the http(s):// URL of the Lambda endpoint, or leave it out for AWS's own",
        ));
        return None;
    }
    valid.then(|| {
        TargetKind::Lambda(LambdaSpec {
            function: function.to_string(),
            qualifier: lambda.qualifier.clone(),
            endpoint_url: lambda.endpoint_url.clone(),
        })
    })
}

/// A Lambda function is invoked through AWS: `[auth]` must be `aws_sigv4` for `lambda`.
fn check_lambda_auth(
    src: &SourceFile,
    auth: Option<&outbound::AuthSpec>,
    written: bool,
    errors: &mut ConfigErrors,
) {
    const EXAMPLE: &str = "add [auth] with mode = \"aws_sigv4\", service = \"lambda\" and region = \"…\" (credentials from the AWS chain, or access_key_id / secret_access_key)";
    match auth {
        Some(outbound::AuthSpec::AwsSigv4(s)) if s.service == "lambda" => {}
        Some(outbound::AuthSpec::AwsSigv4(s)) => errors.push(src.error(
            "auth.service",
            format!(
                "a Lambda target signs for service `lambda`, not `{}`",
                s.service
            ),
            "write service = \"lambda\"",
        )),
        Some(a) if written => errors.push(src.error(
            "auth.mode",
            format!(
                "a Lambda function is invoked through AWS, and mode `{}` is not an AWS credential",
                a.mode()
            ),
            EXAMPLE,
        )),
        // Problems of `[auth]` itself were reported already.
        None if written => {}
        _ => errors.push(src.error("lambda", "a Lambda target has no [auth]", EXAMPLE)),
    }
}

/// `[tools.NAME]` keys that only some kinds read: `method`, `path` and `headers` describe an
/// `[http]` tool; an `[openapi]` target's tools are described by its specification.
fn check_tool_keys(
    src: &SourceFile,
    tools: &BTreeMap<String, super::schema::ToolSection>,
    kind: Option<&TargetKind>,
    errors: &mut ConfigErrors,
) {
    let Some(kind) = kind else { return };
    let http = matches!(kind, TargetKind::Rest(r) if r.source == rest::RestSource::Declared);
    let openapi = matches!(kind, TargetKind::Rest(_)) && !http;
    for (name, t) in tools {
        let key = |k: &str| format!("tools.{name}.{k}");
        if !http {
            for (k, set) in [
                ("method", t.method.is_some()),
                ("path", t.path.is_some()),
                ("headers", !t.headers.is_empty()),
            ] {
                if set {
                    errors.push(src.error(
                        &key(k),
                        format!("`{k}` describes the request of an [http] tool, and this is an [{}] target", kind.table()),
                        format!("remove `{k}`"),
                    ));
                }
            }
        }
        if openapi {
            for (k, set) in [
                ("description", t.description.is_some()),
                ("input_schema", t.input_schema.is_some()),
            ] {
                if set {
                    errors.push(src.error(
                        &key(k),
                        "an [openapi] target's tools are described by its specification",
                        format!(
                            "remove `{k}` (change the specification's summary or schema instead)"
                        ),
                    ));
                }
            }
        }
    }
}

/// Two targets with the same non-empty prefix would collide on every shared tool name.
pub(super) fn check_prefixes(targets: &[TargetSpec], separator: &str, errors: &mut ConfigErrors) {
    let mut seen: BTreeMap<&str, &TargetSpec> = BTreeMap::new();
    for t in targets.iter().filter(|t| !t.prefix.is_empty()) {
        if let Some(first) = seen.insert(&t.prefix, t) {
            errors.push(ConfigError {
                file: t.file.clone(),
                position: None,
                key: "prefix".into(),
                message: format!(
                    "prefix `{}` is also used by target `{}` ({}); their tools `{}{separator}…` would collide",
                    t.prefix,
                    first.name,
                    first.file.display(),
                    t.prefix
                ),
                fix: "give one of them another `prefix`".into(),
            });
        }
    }
}

/// With inbound authentication off there is no caller, so a credential obtained for each
/// caller could never be obtained: refuse at load rather than on every call.
pub(super) fn check_no_per_caller_targets(targets: &[TargetSpec], errors: &mut ConfigErrors) {
    for t in targets.iter().filter(|t| t.auth.per_caller()) {
        errors.push(ConfigError {
            file: t.file.clone(),
            position: None,
            key: "auth.mode".into(),
            message: format!(
                "mode `{}` obtains a credential for each caller, and gateway.toml turns inbound authentication off (inbound.mode = \"none\"), so no call has a caller",
                t.auth.mode()
            ),
            fix: "turn on inbound authentication in gateway.toml, or give this target a credential of the gateway's own (api_key, oauth2_client_credentials, aws_sigv4)".into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_portcullis_is_the_running_gateway() {
        let dir = tempfile::tempdir().unwrap();
        // Not looked up on PATH: the running binary, whatever PATH holds.
        let own = std::env::current_exe().unwrap();
        assert_eq!(resolve_command("portcullis", dir.path()), Some(own));
        assert_eq!(
            resolve_command("portcullis-surely-missing", dir.path()),
            None
        );
        assert_ne!(
            resolve_command("sh", dir.path()),
            Some(std::env::current_exe().unwrap())
        );
    }
}

//! Loading `targets/*.toml`: one file per target, validated into a [`TargetSpec`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::schema::{McpSection, TargetFile};
use super::{
    ConfigError, ConfigErrors, DEFAULT_CALL_TIMEOUT, DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_INHERITED_ENV, EnvValue, McpTransport, SourceFile, TargetKind, TargetSpec, outbound,
    valid_tool_chars,
};

pub(super) fn load_targets(dir: &Path, errors: &mut ConfigErrors) -> Vec<TargetSpec> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(ConfigError {
                file: dir.to_path_buf(),
                position: None,
                key: String::new(),
                message: format!("cannot read the targets directory: {e}"),
                fix: "create it, or set `targets_dir` in the gateway file".into(),
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

fn load_target(path: &Path, errors: &mut ConfigErrors) -> Option<TargetSpec> {
    let src = match SourceFile::read(path) {
        Ok(s) => s,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
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
        return None;
    }
    let file: TargetFile = match src.parse() {
        Ok(f) => f,
        Err(e) => {
            errors.push(e);
            return None;
        }
    };
    let before = errors.0.len();
    let prefix = file.prefix.clone().unwrap_or_else(|| name.clone());
    if !prefix.is_empty() && !valid_tool_chars(&prefix) {
        errors.push(src.error(
            "prefix",
            format!("prefix `{prefix}` has characters MCP tool names may not contain"),
            "use only letters, digits, `_`, `-` or `.`, or \"\" for no prefix",
        ));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let kind = match &file.mcp {
        Some(mcp) => compile_mcp(&src, mcp, base, errors).map(TargetKind::Mcp),
        None => {
            errors.push(src.error(
                "",
                "the target does not say what it is",
                "add an [mcp] table with `url = \"http://…/mcp\"` (streamable HTTP) or `command = \"…\"` (stdio)",
            ));
            None
        }
    };
    let kind = kind?;
    let auth = outbound::compile(&src, file.auth.as_ref(), base, errors)?;
    if let (false, TargetKind::Mcp(McpTransport::Stdio { .. })) =
        (matches!(auth, outbound::AuthSpec::None), &kind)
    {
        errors.push(src.error(
            "auth",
            "a stdio target runs as a child process; it has no HTTP requests to attach credentials to",
            "pass its credentials as environment variables with `[mcp.secret_env]`, and remove [auth]",
        ));
    }
    if let (outbound::AuthSpec::TokenExchange(_), TargetKind::Mcp(_)) = (&auth, &kind) {
        // The upstream session is opened (and listed) before any caller exists, so there is
        // no caller token to exchange for it.
        errors.push(src.error(
            "auth.mode",
            "`token_exchange` needs a caller's token on every request, but an MCP target shares one upstream session opened before any caller",
            "use `oauth2_client_credentials` or `api_key` for MCP targets; token exchange serves per-call target kinds",
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
    (errors.0.len() == before).then(|| TargetSpec {
        name,
        file: path.to_path_buf(),
        description: file.description,
        prefix,
        call_timeout: file.timeout.unwrap_or(DEFAULT_CALL_TIMEOUT),
        connect_timeout: file.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        optional: file.optional,
        tool_scopes: file
            .tools
            .iter()
            .map(|(k, v)| (k.clone(), v.scopes.clone()))
            .collect(),
        kind,
        auth,
    })
}

fn compile_mcp(
    src: &SourceFile,
    mcp: &McpSection,
    base: &Path,
    errors: &mut ConfigErrors,
) -> Option<McpTransport> {
    match (&mcp.url, &mcp.command) {
        (Some(_), Some(_)) | (None, None) => {
            errors.push(src.error(
                "mcp",
                "set exactly one of `url` (streamable HTTP upstream) or `command` (stdio child process)",
                "keep `url = \"http://host/mcp\"` or `command = \"…\"`, not both",
            ));
            None
        }
        (Some(url), None) => {
            if !matches!(url.scheme(), "http" | "https") {
                errors.push(src.error(
                    "mcp.url",
                    format!("scheme `{}` is not supported", url.scheme()),
                    "use an http:// or https:// URL of the upstream's MCP endpoint",
                ));
                return None;
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
                }
            }
            Some(McpTransport::Http { url: url.clone() })
        }
        (None, Some(command)) => {
            let cwd = mcp
                .cwd
                .as_ref()
                .map(|c| std::path::absolute(base.join(c)).unwrap_or_else(|_| base.join(c)));
            let Some(resolved) = resolve_command(command, cwd.as_deref().unwrap_or(base)) else {
                errors.push(src.error(
                    "mcp.command",
                    format!("command `{command}` was not found"),
                    "install it (PATH is searched), or give its absolute path, or a path relative to `cwd` (to this file's directory when `cwd` is not set)",
                ));
                return None;
            };
            if let Some(c) = &cwd
                && !c.is_dir()
            {
                errors.push(src.error(
                    "mcp.cwd",
                    format!("`{}` is not a directory", c.display()),
                    "create it or fix the path",
                ));
                return None;
            }
            let mut env: Vec<(String, EnvValue)> = mcp
                .env
                .iter()
                .map(|(k, v)| (k.clone(), EnvValue::Plain(v.clone())))
                .collect();
            for (k, r) in &mcp.secret_env {
                match r.resolve(base) {
                    Ok(s) => env.push((k.clone(), EnvValue::Secret(s))),
                    Err(e) => errors.push(src.error(
                        &format!("mcp.secret_env.{k}"),
                        format!("secret `{r}` cannot be read: {e}"),
                        "set the variable or create the file before starting the gateway",
                    )),
                }
            }
            let mut inherit: Vec<String> = DEFAULT_INHERITED_ENV
                .iter()
                .map(|s| s.to_string())
                .collect();
            inherit.extend(mcp.inherit_env.iter().cloned());
            Some(McpTransport::Stdio {
                command: resolved,
                args: mcp.args.clone(),
                env,
                inherit,
                cwd,
            })
        }
    }
}

/// A command is a path (contains `/`, relative to `dir`) or a name looked up on `PATH`.
fn resolve_command(command: &str, dir: &Path) -> Option<PathBuf> {
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

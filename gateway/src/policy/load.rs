//! Reading `policies/`: every `*.cedar` file parsed (each policy given a stable id: its
//! `@id("…")` annotation, else `FILE:LINE`), and `schema.cedarschema` (or the built-in one).
//! Every problem in every file is reported at once, with file, line and the fix.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use cedar_policy::{PolicyId, PolicySet, SchemaFragment};
use miette::Diagnostic;

use crate::config::{ConfigError, ConfigErrors, PolicySettings};

/// The schema used when `policies/` has no `schema.cedarschema`.
pub const BASE_SCHEMA: &str = include_str!("base.cedarschema");

/// The file name of the schema in the policy directory.
pub const SCHEMA_FILE: &str = "schema.cedarschema";

/// Where a policy was written.
#[derive(Debug, Clone)]
pub struct Origin {
    pub file: PathBuf,
    pub line: usize,
    /// The file's text (validation errors point into it).
    pub text: std::sync::Arc<str>,
}

/// The parsed contents of a policy directory.
#[derive(Debug)]
pub struct Parsed {
    pub set: PolicySet,
    pub origins: HashMap<PolicyId, Origin>,
    /// The schema's text and the file it came from (`None`: the built-in one).
    pub schema: (String, Option<PathBuf>),
    pub files: usize,
}

/// Read and parse the policy directory. `Ok(None)`: there is none (and none was named).
pub fn read(settings: &PolicySettings) -> Result<Option<Parsed>, ConfigErrors> {
    let dir = &settings.dir;
    if !dir.is_dir() && !settings.dir_named {
        return Ok(None);
    }
    let mut errors = ConfigErrors::default();
    let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cedar"))
            .collect(),
        Err(e) => {
            errors.push(whole_file(
                dir,
                format!("cannot read the policy directory: {e}"),
                "check that it exists and the gateway may read it",
            ));
            return Err(errors);
        }
    };
    paths.sort();
    let mut set = PolicySet::new();
    let mut origins = HashMap::new();
    for path in &paths {
        let text: std::sync::Arc<str> = match std::fs::read_to_string(path) {
            Ok(t) => t.into(),
            Err(e) => {
                errors.push(whole_file(
                    path,
                    format!("cannot read the file: {e}"),
                    "check the file's permissions",
                ));
                continue;
            }
        };
        let parsed = match PolicySet::from_str(&text) {
            Ok(p) => p,
            Err(parse_errors) => {
                for e in parse_errors.iter() {
                    errors.push(located(
                        path,
                        &text,
                        e,
                        "correct the Cedar syntax: each policy is `permit(…)` or `forbid(…)`, optionally `when { … }` / `unless { … }`, and ends with `;` (docs/policies.md has examples)",
                    ));
                }
                continue;
            }
        };
        if parsed.templates().next().is_some() {
            errors.push(whole_file(
                path,
                "the file holds a policy template (`?principal` or `?resource`); the gateway links no templates",
                "write the policy for the principal or resource it is meant for",
            ));
            continue;
        }
        // The parser numbers a file's policies `policy0`, `policy1`, … in the order written;
        // each one's line is where its own text is found, after the previous one's.
        let mut in_order: Vec<_> = parsed.policies().collect();
        in_order.sort_by_key(|p| {
            p.id()
                .to_string()
                .trim_start_matches("policy")
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let mut cursor = 0;
        for policy in in_order {
            let written = policy.to_string();
            let offset = text[cursor..]
                .find(written.trim())
                .map_or(cursor, |at| cursor + at);
            cursor = offset + written.trim().len().min(text.len() - offset);
            let (line, _) = position(&text, offset);
            let id = policy.annotation("id").map_or_else(
                || format!("{}:{line}", file_name(path)),
                ToString::to_string,
            );
            let pid = PolicyId::new(&id);
            if let Some(first) = origins.get(&pid) {
                let first: &Origin = first;
                errors.push(at_line(
                    path,
                    line,
                    format!(
                        "the policy id `{id}` is already used by the policy at {}:{}",
                        first.file.display(),
                        first.line
                    ),
                    "give each policy its own `@id(\"…\")`",
                ));
                continue;
            }
            if let Err(e) = set.add(policy.new_id(pid.clone())) {
                errors.push(at_line(
                    path,
                    line,
                    e.to_string(),
                    "give each policy its own `@id(\"…\")`",
                ));
                continue;
            }
            origins.insert(
                pid,
                Origin {
                    file: path.clone(),
                    line,
                    text: text.clone(),
                },
            );
        }
    }
    let schema_path = dir.join(SCHEMA_FILE);
    let schema = if schema_path.is_file() {
        match std::fs::read_to_string(&schema_path) {
            Ok(text) => (text, Some(schema_path)),
            Err(e) => {
                errors.push(whole_file(
                    &schema_path,
                    format!("cannot read the file: {e}"),
                    "check the file's permissions",
                ));
                (String::new(), Some(schema_path))
            }
        }
    } else {
        (BASE_SCHEMA.to_string(), None)
    };
    if let Err(e) = SchemaFragment::from_cedarschema_str(&schema.0) {
        let path = schema.1.clone().unwrap_or_else(|| dir.join(SCHEMA_FILE));
        errors.push(located(
            &path,
            &schema.0,
            &e,
            "correct the schema; `portcullis policy schema` prints a valid one to start from",
        ));
    }
    if errors.is_empty() {
        Ok(Some(Parsed {
            set,
            origins,
            schema,
            files: paths.len(),
        }))
    } else {
        Err(errors)
    }
}

/// An error of the Cedar parser or validator, placed at its first label in `text`.
pub fn located(path: &Path, text: &str, e: &dyn Diagnostic, fix: &str) -> ConfigError {
    let offset = e
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset());
    let mut message = e.to_string();
    if let Some(help) = e.help() {
        message = format!("{message} ({help})");
    }
    ConfigError {
        file: path.to_path_buf(),
        position: offset.map(|o| position(text, o)),
        key: String::new(),
        message,
        fix: fix.to_string(),
    }
}

fn at_line(path: &Path, line: usize, message: impl Into<String>, fix: &str) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        position: Some((line, 1)),
        key: String::new(),
        message: message.into(),
        fix: fix.to_string(),
    }
}

fn whole_file(path: &Path, message: impl Into<String>, fix: &str) -> ConfigError {
    ConfigError {
        file: path.to_path_buf(),
        position: None,
        key: String::new(),
        message: message.into(),
        fix: fix.to_string(),
    }
}

/// 1-based line and column of a byte offset.
pub fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map_or(1, |l| l.chars().count() + 1);
    (line, column)
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(
        || path.display().to_string(),
        |n| n.to_string_lossy().into_owned(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        assert_eq!(position("ab\ncd", 0), (1, 1));
        assert_eq!(position("ab\ncd", 4), (2, 2));
    }
}

//! Config errors a person can act on: each names the file, line, key and the fix.
//!
//! TOML parse errors carry a byte span; errors found after parsing (validation) carry a key
//! path. Both are turned into a line/column through [`SourceFile`], which keeps the text and
//! its span-annotated parse tree.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file, as the user named it (relative paths stay relative).
    pub file: PathBuf,
    /// 1-based line and column, when the problem has a place in the file.
    pub position: Option<(usize, usize)>,
    /// Dotted key path (`mcp.command`), empty for the whole file.
    pub key: String,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some((line, col)) = self.position {
            write!(f, ":{line}:{col}")?;
        }
        if !self.key.is_empty() {
            write!(f, ": `{}`", self.key)?;
        }
        write!(f, ": {}", self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

/// All errors found in one load, reported together so a user fixes them in one pass.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.len();
        writeln!(
            f,
            "configuration has {n} error{}:",
            if n == 1 { "" } else { "s" }
        )?;
        for e in &self.0 {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
    pub fn into_result<T>(self, ok: T) -> Result<T, ConfigErrors> {
        if self.0.is_empty() { Ok(ok) } else { Err(self) }
    }
}

/// A config file's text, kept so errors found after parsing can point into it.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self {
                path: path.to_path_buf(),
                text,
            }),
            Err(e) => Err(ConfigError {
                file: path.to_path_buf(),
                position: None,
                key: String::new(),
                message: format!("cannot read the file: {e}"),
                fix: "check the path (see --config) and the file's permissions".into(),
            }),
        }
    }

    /// Deserialize the whole file, mapping a TOML or schema error to a [`ConfigError`].
    pub fn parse<T: serde::de::DeserializeOwned>(&self) -> Result<T, ConfigError> {
        toml::from_str(&self.text).map_err(|e| {
            let span = e.span();
            let key = span.clone().map(|s| self.key_at(s)).unwrap_or_default();
            let (message, fix) = explain_toml_error(e.message());
            ConfigError {
                file: self.path.clone(),
                position: span.map(|s| self.line_col(s.start)),
                key,
                message,
                fix,
            }
        })
    }

    /// An error about `key` (a dotted path) found after parsing.
    pub fn error(
        &self,
        key: &str,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> ConfigError {
        ConfigError {
            file: self.path.clone(),
            position: self.span_of(key).map(|s| self.line_col(s.start)),
            key: key.to_string(),
            message: message.into(),
            fix: fix.into(),
        }
    }

    fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before
            .rfind('\n')
            .map_or(before.len(), |nl| before.len() - nl - 1)
            + 1;
        (line, col)
    }

    /// The span of the key (not the value) at a dotted path; the nearest existing parent when
    /// the key is absent, so "missing key" errors point at its table.
    fn span_of(&self, path: &str) -> Option<Range<usize>> {
        let doc = DeTable::parse(&self.text).ok()?;
        let mut table = doc.get_ref();
        let mut best = None;
        for part in path.split('.').filter(|p| !p.is_empty()) {
            // `issuers[1]` addresses the second table of an array of tables.
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let Some((k, v)) = table.get_key_value(name) else {
                break;
            };
            best = Some(k.span());
            let value = match (v.get_ref(), index) {
                (DeValue::Array(items), Some(i)) => match items.get(i) {
                    Some(item) => {
                        best = Some(item.span());
                        item.get_ref()
                    }
                    None => break,
                },
                (other, _) => other,
            };
            match value {
                DeValue::Table(t) => table = t,
                _ => break,
            }
        }
        best
    }

    /// The dotted path of the key at `span`: the innermost key whose name or value covers it.
    fn key_at(&self, span: Range<usize>) -> String {
        fn walk(table: &DeTable<'_>, span: &Range<usize>, path: &mut Vec<String>) -> bool {
            for (k, v) in table.iter() {
                path.push(k.get_ref().to_string());
                if let DeValue::Table(t) = v.get_ref()
                    && walk(t, span, path)
                {
                    return true;
                }
                let (ks, vs) = (k.span(), v.span());
                let covers =
                    |r: &Range<usize>| r.start <= span.start && span.start < r.end.max(r.start + 1);
                if covers(&ks) || (covers(&vs) && !matches!(v.get_ref(), DeValue::Table(_))) {
                    return true;
                }
                path.pop();
            }
            false
        }
        let Ok(doc) = DeTable::parse(&self.text) else {
            return String::new();
        };
        let mut path = Vec::new();
        walk(doc.get_ref(), &span, &mut path);
        path.join(".")
    }
}

/// Turn serde/TOML wording into a message plus a concrete fix.
fn explain_toml_error(raw: &str) -> (String, String) {
    let message = raw.trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let (field, expected) = rest.split_once('`').unwrap_or((rest, ""));
        let allowed: Vec<&str> = expected
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 1)
            .map(|(_, s)| s)
            .collect();
        let fix = match closest(field, &allowed) {
            Some(near) => format!(
                "did you mean `{near}`? Allowed keys here: {}",
                allowed.join(", ")
            ),
            None if allowed.is_empty() => "remove this key".to_string(),
            None => format!("remove it; allowed keys here: {}", allowed.join(", ")),
        };
        return (format!("unknown key `{field}`"), fix);
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return (
            format!("required key `{field}` is missing"),
            format!("add `{field} = ...` to this table"),
        );
    }
    // Our own value types explain themselves as "<what is wrong>; fix: <what to do>".
    if let Some((what, fix)) = message.split_once("; fix: ") {
        return (what.to_string(), fix.to_string());
    }
    if message.contains("expected a duration") {
        return (
            message,
            "write a duration string such as \"30s\", \"2m\" or \"500ms\"".into(),
        );
    }
    if message.starts_with("invalid type") {
        return (
            message,
            "give the value the type shown after `expected`".into(),
        );
    }
    if message.starts_with("unknown variant") {
        return (
            message,
            "use one of the values listed after `expected`".into(),
        );
    }
    let syntax = [
        "unclosed",
        "expected",
        "invalid table",
        "invalid key",
        "duplicate key",
        "invalid string",
        "unterminated",
    ]
    .iter()
    .any(|w| message.contains(w));
    let fix = if syntax {
        "correct the TOML syntax at this position"
    } else {
        "correct this value (docs/configuration.md lists every key with an example)"
    };
    (message, fix.into())
}

/// The allowed key nearest to a misspelt one (edit distance ≤ 2), for "did you mean".
fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(
            closest("comand", &["url", "command", "args"]),
            Some("command")
        );
        assert_eq!(closest("zzzzzz", &["url", "command"]), None);
    }

    #[test]
    fn positions_are_one_based() {
        let f = SourceFile {
            path: "x.toml".into(),
            text: "a = 1\n[mcp]\nurl = 2\n".into(),
        };
        assert_eq!(f.line_col(0), (1, 1));
        let e = f.error("mcp.url", "bad", "fix it");
        assert_eq!(e.position, Some((3, 1)));
        assert_eq!(f.key_at(14..15), "mcp.url");
    }
}

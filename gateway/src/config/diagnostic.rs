//! Config errors a person can act on: each names the file, line, key and the fix.
//!
//! TOML parse errors carry a byte span; errors found after parsing (validation) carry a key
//! path. Both are turned into a line/column through [`SourceFile`], which keeps the text and
//! its span-annotated parse tree. Reading a file with every problem reported is in
//! `recover.rs`; the wording of serde's errors is translated in `explain.rs`.

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
        writeln!(f, "configuration has {}:", crate::words::plural(n, "error"))?;
        for e in &self.0 {
            writeln!(f, "error: {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl ConfigErrors {
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn push(&mut self, e: ConfigError) {
        self.0.push(e);
    }
    /// Group the errors by file (in the order the files were read) and sort each file's by
    /// line, so a user can work through a file from top to bottom.
    pub fn sort_by_place(&mut self) {
        let mut files: Vec<PathBuf> = Vec::new();
        for e in &self.0 {
            if !files.contains(&e.file) {
                files.push(e.file.clone());
            }
        }
        self.0.sort_by_key(|e| {
            let file = files
                .iter()
                .position(|f| *f == e.file)
                .unwrap_or(usize::MAX);
            (file, e.position)
        });
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
    /// Key paths taken out while reading because they were wrong (see `recover.rs`).
    pub(super) removed: Vec<String>,
}

impl SourceFile {
    /// Read a config file; a missing or unreadable file is an error naming it.
    pub fn read(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Self::from_text(path, text)),
            Err(e) => Err(ConfigError {
                file: path.to_path_buf(),
                position: None,
                key: String::new(),
                message: io_problem(&e, "file"),
                fix: "check the path and the file's permissions".into(),
            }),
        }
    }

    pub fn from_text(path: impl Into<PathBuf>, text: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            text: text.into(),
            removed: Vec::new(),
        }
    }

    /// Whether the file writes `key` (a dotted path), even if it was taken out as wrong.
    pub fn has_key(&self, key: &str) -> bool {
        let Some(span) = self.span_of(key) else {
            return false;
        };
        // `span_of` falls back to the nearest parent: compare the key's own name.
        let name = key.rsplit('.').next().unwrap_or(key);
        let name = name.split('[').next().unwrap_or(name);
        self.text
            .get(span)
            .is_some_and(|s| s.trim_matches(['"', '\'', '[', ']']) == name)
    }

    /// Whether something at or under `key` was taken out as wrong while reading.
    pub fn removed_under(&self, key: &str) -> bool {
        self.removed.iter().any(|r| within(r, key))
    }

    /// Drop the errors from `start` on that are about keys taken out as wrong while reading:
    /// they were reported already, as what they were.
    pub fn drop_follow_ons(&self, errors: &mut ConfigErrors, start: usize) {
        let mut i = 0;
        errors.0.retain(|e| {
            i += 1;
            i <= start || e.file != self.path || !self.removed.iter().any(|r| within(&e.key, r))
        });
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

    pub(super) fn line_col(&self, offset: usize) -> (usize, usize) {
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
    pub(super) fn span_of(&self, path: &str) -> Option<Range<usize>> {
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
}

/// `key` is `table` or lies under it (`mcp.url` is within `mcp`, `mcp.urls` is not).
fn within(key: &str, table: &str) -> bool {
    key.strip_prefix(table)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// What went wrong reading a file or directory, in plain words: "file not found".
pub(super) fn io_problem(e: &std::io::Error, what: &str) -> String {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NotFound => format!("{what} not found"),
        ErrorKind::PermissionDenied => format!("{what} cannot be read: permission denied"),
        ErrorKind::IsADirectory => format!("a directory was found where a {what} was expected"),
        ErrorKind::NotADirectory => format!("a file was found where a {what} was expected"),
        ErrorKind::InvalidData => format!("the {what} is not UTF-8 text"),
        _ => {
            // The OS wording without Rust's " (os error N)" suffix.
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            format!("{what} cannot be read: {}", text.to_lowercase())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_are_one_based() {
        let f = SourceFile::from_text("x.toml", "a = 1\n[mcp]\nurl = 2\n");
        assert_eq!(f.line_col(0), (1, 1));
        let e = f.error("mcp.url", "bad", "fix it");
        assert_eq!(e.position, Some((3, 1)));
        assert!(f.has_key("mcp.url") && f.has_key("a"));
        assert!(!f.has_key("mcp.command") && !f.has_key("b"));
    }
}

//! Secrets in config are references, never values: `env:NAME` or `file:PATH`.
//!
//! A [`SecretRef`] is what the TOML holds; [`Secret`] is the resolved value, which never
//! prints itself (`Debug` and `Display` say `[redacted]`), so it cannot leak into a log line.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where a secret comes from.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
}

impl TryFrom<String> for SecretRef {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        if let Some(name) = s.strip_prefix("env:") {
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid {
                return Err(format!(
                    "`env:{name}` is not a valid environment variable name; fix: use letters, digits and `_` only"
                ));
            }
            return Ok(Self::Env(name.to_string()));
        }
        if let Some(path) = s.strip_prefix("file:") {
            if path.is_empty() {
                return Err("`file:` needs a path; fix: write e.g. file:/run/secrets/token".into());
            }
            return Ok(Self::File(PathBuf::from(path)));
        }
        // Deliberately not echoing the value: it may be a pasted secret.
        Err(
            "secret values may not be written into config files; fix: write a reference instead: \
             `env:NAME` (an environment variable) or `file:PATH` (a file holding the secret)"
                .into(),
        )
    }
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{}", path.display()),
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("environment variable `{0}` is not set")]
    EnvMissing(String),
    /// `reason` is in plain words, e.g. "file not found".
    #[error("{reason}: {path}")]
    File { path: String, reason: String },
    #[error("secret `{0}` is empty")]
    Empty(String),
}

impl SecretError {
    /// What to do about it, for the `fix:` line.
    pub fn fix(&self) -> String {
        match self {
            Self::EnvMissing(name) => format!(
                "set `{name}` in the environment the gateway starts in (e.g. `export {name}=…`), or change the reference"
            ),
            Self::File { .. } => "create the file, or correct the path (a relative path is relative to the directory of the file that names it)".into(),
            Self::Empty(_) => "put the secret into the variable or file; an empty secret is refused".into(),
        }
    }
}

impl SecretRef {
    /// Read the secret now. Relative file paths are resolved against `base` (the directory of
    /// the file that named them). The error names the reference, never a value.
    pub fn resolve(&self, base: &Path) -> Result<Secret, SecretError> {
        let value = match self {
            Self::Env(name) => {
                std::env::var(name).map_err(|_| SecretError::EnvMissing(name.clone()))?
            }
            Self::File(path) => {
                let full = base.join(path);
                let raw = std::fs::read_to_string(&full).map_err(|e| SecretError::File {
                    path: full.display().to_string(),
                    reason: super::diagnostic::io_problem(&e, "file"),
                })?;
                // Files written by editors and `echo` end in a newline that is not part of it.
                raw.trim_end_matches(['\n', '\r']).to_string()
            }
        };
        if value.is_empty() {
            return Err(SecretError::Empty(self.to_string()));
        }
        Ok(Secret(value))
    }
}

/// A resolved secret value. The only way to see it is [`Secret::expose`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_values_are_refused_without_echoing_them() {
        let err = SecretRef::try_from("hunter2".to_string()).unwrap_err();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("`env:NAME`") && err.contains("; fix: "));
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn file_secret_is_trimmed_and_relative_to_base() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "abc\n").unwrap();
        let r = SecretRef::try_from("file:tok".to_string()).unwrap();
        assert_eq!(r.resolve(dir.path()).unwrap().expose(), "abc");
        let missing = SecretRef::try_from("env:PORTCULLIS_TEST_SURELY_UNSET".to_string()).unwrap();
        assert_eq!(
            missing.resolve(dir.path()).unwrap_err(),
            SecretError::EnvMissing("PORTCULLIS_TEST_SURELY_UNSET".into())
        );
        let absent = SecretRef::try_from("file:absent".to_string()).unwrap();
        let e = absent.resolve(dir.path()).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("file not found: {}", dir.path().join("absent").display())
        );
    }
}

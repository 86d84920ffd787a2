//! Reading a config file so that every problem in it is reported in one run.
//!
//! serde stops at the first unknown key or wrong-typed value. To report them all, the file's
//! span-annotated parse tree is deserialized again and again: each failure is recorded, the
//! entry it points at is taken out of the tree, and the rest is tried once more. The paths
//! taken out are remembered in the [`SourceFile`], so that validation afterwards neither
//! checks what is gone nor reports its absence as a second problem.

use std::ops::Range;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use super::explain::{explain, missing_field, unknown_field};
use super::{ConfigError, ConfigErrors, SourceFile};

/// A file with more problems than this is reported in part (the rest after a fix).
const MAX_PROBLEMS_PER_FILE: usize = 64;

/// One step of a key path: a table key, or the position in an array of tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

/// `inbound.issuers[1].issuer`: the form error messages and [`SourceFile::error`] use.
pub(super) fn render(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

impl SourceFile {
    /// Deserialize the whole file, recording every unknown key, wrong-typed value and
    /// missing key in `errors`. Returns what could be read with the faulty entries left out,
    /// or `None` when the TOML syntax is broken or the file's problems cannot be separated.
    /// `top_level` names the file's top-level keys that hold plain values: written after a
    /// `[table]` header they land inside that table, and the error says so.
    pub fn parse_all<T: DeserializeOwned>(
        &mut self,
        top_level: &[&str],
        errors: &mut ConfigErrors,
    ) -> Option<T> {
        let mut doc = match DeTable::parse(&self.text) {
            Ok(doc) => doc,
            Err(e) => {
                errors.push(self.toml_error(e.message(), e.span(), &[], top_level));
                return None;
            }
        };
        let start = errors.len();
        let mut removed: Vec<String> = Vec::new();
        let mut parsed = None;
        for _ in 0..MAX_PROBLEMS_PER_FILE {
            let e = match T::deserialize(toml::de::Deserializer::from(doc.clone())) {
                Ok(value) => {
                    parsed = Some(value);
                    break;
                }
                Err(e) => e,
            };
            let raw = e.message().trim().to_string();
            let mut path = Vec::new();
            if let Some(span) = e.span() {
                locate(doc.get_ref(), span.start, &mut path);
            }
            let located = path.len();
            // Some errors (inside `[auth]`, whose `mode` picks the schema) are reported at
            // the table: point at the offending key itself.
            if let Some(field) = unknown_field(&raw)
                && path.last() != Some(&Seg::Key(field.to_string()))
                && table_at(doc.get_ref(), &path).is_some_and(|t| t.contains_key(field))
            {
                path.push(Seg::Key(field.to_string()));
            }
            // The same for a wrong-typed value: find the one key in that table holding it.
            if let Some(found) = found_value(&raw)
                && let Some(table) = table_at(doc.get_ref(), &path)
                && let [key] = table
                    .iter()
                    .filter(|(_, v)| same_value(v.get_ref(), found))
                    .map(|(k, _)| k.get_ref().to_string())
                    .collect::<Vec<_>>()
                    .as_slice()
            {
                path.push(Seg::Key(key.clone()));
            }
            // A required key we took out ourselves was reported already, as what it was.
            let follow_on = missing_field(&raw).is_some_and(|field| {
                let mut p = path.clone();
                p.push(Seg::Key(field.to_string()));
                removed.contains(&render(&p))
            });
            if !follow_on {
                // Refined to a key inside the table serde pointed at: show that key's line.
                let span = if path.len() > located {
                    self.span_of(&render(&path)).or(e.span())
                } else {
                    e.span()
                };
                errors.push(self.toml_error(&raw, span, &path, top_level));
            }
            // Never an element of an array of tables: the indices of the others would shift.
            while matches!(path.last(), Some(Seg::Index(_))) {
                path.pop();
            }
            if path.is_empty() || !remove(doc.get_mut(), &path) {
                break;
            }
            removed.push(render(&path));
        }
        // serde meets the keys in its own order; the reader reads top to bottom.
        errors.0[start..].sort_by_key(|e| e.position);
        self.removed = removed;
        parsed
    }

    /// A TOML or schema error, placed at the key `path` (at `span` when that is unknown).
    fn toml_error(
        &self,
        raw: &str,
        span: Option<Range<usize>>,
        path: &[Seg],
        top_level: &[&str],
    ) -> ConfigError {
        let key = render(path);
        let (message, fix) = explain(raw, path, top_level);
        // An unknown key is shown where its name is; anything else where serde pointed.
        let position = match unknown_field(raw) {
            Some(_) if !key.is_empty() => self.span_of(&key).map(|s| s.start),
            _ => None,
        }
        .or(span.map(|s| s.start))
        .map(|offset| self.line_col(offset));
        ConfigError {
            file: self.path.clone(),
            position,
            key,
            message,
            fix,
        }
    }
}

/// `invalid type: integer `5`, expected a string` → `integer `5``.
fn found_value(raw: &str) -> Option<&str> {
    let rest = raw
        .strip_prefix("invalid type: ")
        .or_else(|| raw.strip_prefix("invalid value: "))?;
    Some(rest.split_once(", expected ")?.0)
}

/// Whether `value` is what serde described as `found` (`integer `5``, `string "x"`).
fn same_value(value: &DeValue<'_>, found: &str) -> bool {
    let ticked = |s: &str| s.trim_matches('`').to_string();
    match value {
        DeValue::Integer(i) => found.strip_prefix("integer ").map(ticked) == Some(i.to_string()),
        DeValue::Float(f) => {
            found.strip_prefix("floating point ").map(ticked) == Some(f.to_string())
        }
        DeValue::Boolean(b) => found.strip_prefix("boolean ").map(ticked) == Some(b.to_string()),
        DeValue::String(s) => found.strip_prefix("string ") == Some(&format!("{s:?}")),
        DeValue::Array(_) => found == "sequence",
        DeValue::Table(_) => found == "map",
        DeValue::Datetime(_) => false,
    }
}

fn covers(r: &Range<usize>, at: usize) -> bool {
    r.start <= at && at < r.end.max(r.start + 1)
}

/// The path of the innermost entry whose key or value covers byte `at`.
fn locate(table: &DeTable<'_>, at: usize, path: &mut Vec<Seg>) -> bool {
    for (k, v) in table.iter() {
        path.push(Seg::Key(k.get_ref().to_string()));
        if covers(&k.span(), at) || descend(v.get_ref(), at, path) || covers(&v.span(), at) {
            return true;
        }
        path.pop();
    }
    false
}

fn descend(value: &DeValue<'_>, at: usize, path: &mut Vec<Seg>) -> bool {
    match value {
        DeValue::Table(t) => locate(t, at, path),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                path.push(Seg::Index(i));
                if descend(item.get_ref(), at, path) || covers(&item.span(), at) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// The table at `path`, if there is one.
fn table_at<'a, 'i>(mut table: &'a DeTable<'i>, path: &[Seg]) -> Option<&'a DeTable<'i>> {
    let mut segs = path.iter().peekable();
    while let Some(seg) = segs.next() {
        let Seg::Key(k) = seg else { return None };
        let mut value = table.get(k.as_str())?.get_ref();
        if let (DeValue::Array(items), Some(Seg::Index(i))) = (value, segs.peek()) {
            value = items.get(*i)?.get_ref();
            segs.next();
        }
        match value {
            DeValue::Table(t) => table = t,
            _ => return None,
        }
    }
    Some(table)
}

/// Take the entry at `path` (which ends in a key) out of the tree.
fn remove(table: &mut DeTable<'_>, path: &[Seg]) -> bool {
    match path {
        [Seg::Key(k)] => table.remove(k.as_str()).is_some(),
        [Seg::Key(k), rest @ ..] => match (table.get_mut(k.as_str()).map(|v| v.get_mut()), rest) {
            (Some(DeValue::Table(t)), _) => remove(t, rest),
            (Some(DeValue::Array(items)), [Seg::Index(i), rest @ ..]) => {
                match items.get_mut(*i).map(|v| v.get_mut()) {
                    Some(DeValue::Table(t)) => remove(t, rest),
                    _ => false,
                }
            }
            _ => false,
        },
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)] // read through Debug only
    struct Doc {
        name: Option<String>,
        count: Option<u32>,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        id: String,
        size: Option<u32>,
    }

    fn parse(text: &str) -> (Option<Doc>, ConfigErrors, Vec<String>) {
        let mut src = SourceFile::from_text("t.toml", text);
        let mut errors = ConfigErrors::default();
        let doc = src.parse_all::<Doc>(&["name", "count"], &mut errors);
        (doc, errors, src.removed.clone())
    }

    #[test]
    fn every_problem_is_recorded_and_the_rest_is_read() {
        let (doc, errors, removed) = parse(
            "name = 5\ncolor = \"red\"\ncount = 3\n[[items]]\nid = \"a\"\nsize = \"big\"\n[[items]]\nid = \"b\"\nshape = 1\n",
        );
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["name", "color", "items[0].size", "items[1].shape"],
            "{errors}"
        );
        let mut removed = removed;
        removed.sort();
        assert_eq!(
            removed,
            ["color", "items[0].size", "items[1].shape", "name"]
        );
        let doc = doc.expect("the rest parses");
        assert_eq!(doc.count, Some(3));
        assert_eq!(doc.items.len(), 2);
    }

    #[test]
    fn a_required_key_taken_out_is_not_reported_twice() {
        let (_, errors, removed) = parse("[[items]]\nid = 7\n");
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].key, "items[0].id");
        assert_eq!(removed, ["items[0].id", "items"]);
    }

    #[test]
    fn a_top_level_key_after_a_table_header_is_named_as_such() {
        let (_, errors, _) = parse("[[items]]\nid = \"a\"\ncount = 2\n");
        let e = &errors.0[0];
        assert_eq!(e.key, "items[0].count");
        assert_eq!(e.position, Some((3, 1)));
        assert!(e.message.contains("top-level key"), "{e}");
        assert!(e.fix.contains("move it above"), "{e}");
    }

    #[derive(Debug, Deserialize)]
    #[serde(tag = "mode", deny_unknown_fields)]
    #[allow(dead_code)]
    enum Tagged {
        #[serde(rename = "a")]
        A { size: u32, name: String },
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct WithTagged {
        auth: Tagged,
    }

    #[test]
    fn problems_inside_an_internally_tagged_table_point_at_their_key() {
        let mut src = SourceFile::from_text(
            "t.toml",
            "[auth]\nmode = \"a\"\nname = \"n\"\nsize = \"big\"\nextra = 1\n",
        );
        let mut errors = ConfigErrors::default();
        let _ = src.parse_all::<WithTagged>(&[], &mut errors);
        let keys: Vec<&str> = errors.0.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["auth.size", "auth.extra"], "{errors}");
        assert_eq!(errors.0[0].position, Some((4, 1)));
    }

    #[test]
    fn syntax_errors_stop_the_file() {
        let (doc, errors, _) = parse("[items\nid = 1\n");
        assert!(doc.is_none());
        assert_eq!(errors.0.len(), 1, "{errors}");
        assert_eq!(errors.0[0].position, Some((1, 7)));
    }
}

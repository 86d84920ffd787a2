//! Turning TOML and serde wording ("invalid type: integer `30`, expected usize") into a
//! sentence a person reads and a concrete fix.

use super::recover::{Seg, render};

/// `unknown field `x`, expected …` → `x`.
pub(super) fn unknown_field(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix("unknown field `")?;
    rest.split('`').next()
}

/// `missing field `x`` → `x`.
pub(super) fn missing_field(raw: &str) -> Option<&str> {
    let rest = raw.strip_prefix("missing field `")?;
    rest.split('`').next()
}

/// The names between backticks after `expected`: the allowed keys or values.
fn listed(raw: &str) -> Vec<&str> {
    let Some((_, expected)) = raw.split_once("expected") else {
        return vec![];
    };
    expected
        .split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s)
        .collect()
}

/// The message and fix for an error found while reading the file. `path` is where it is:
/// the key itself for unknown keys and bad values, the table for missing keys.
pub(super) fn explain(raw: &str, path: &[Seg], top_level: &[&str]) -> (String, String) {
    let raw = raw.trim();
    let name = match path.last() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "value",
    };
    if let Some(field) = unknown_field(raw) {
        let table = &path[..path.len().saturating_sub(1)];
        if !table.is_empty() && top_level.contains(&field) {
            let header = header_of(table);
            return (
                format!("`{field}` is a top-level key but sits inside {header}"),
                format!(
                    "move it above the first table header of the file: TOML puts every key written after {header} into that table"
                ),
            );
        }
        let allowed = listed(raw);
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
    if let Some(field) = missing_field(raw) {
        let fix = if path.is_empty() {
            format!("add `{field} = …` at the top of the file")
        } else {
            format!("add `{field} = …` to {}", header_of(path))
        };
        return (format!("required key `{field}` is missing"), fix);
    }
    // Our own value types explain themselves as "<what is wrong>; fix: <what to do>".
    if let Some((what, fix)) = raw.split_once("; fix: ") {
        return (what.to_string(), fix.to_string());
    }
    if let Some(rest) = raw.strip_prefix("unknown variant `") {
        let value = rest.split('`').next().unwrap_or(rest);
        let allowed = listed(rest);
        let fix = match closest(value, &allowed) {
            Some(near) => format!("did you mean `{near}`? Allowed: {}", allowed.join(", ")),
            None => format!("use one of: {}", allowed.join(", ")),
        };
        return (format!("`{value}` is not an allowed value here"), fix);
    }
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = raw.strip_prefix(prefix)
            && let Some((found, expected)) = rest.split_once(", expected ")
        {
            let (want, example) = expected_words(expected, name);
            return (
                format!("expected {want}, found {}", found_words(found)),
                example,
            );
        }
    }
    if raw.contains("expected a duration") || raw.contains("time unit") {
        return (
            format!("not a duration: {raw}"),
            format!("write a duration such as `{name} = \"30s\"` (units: ms, s, m, h)"),
        );
    }
    let syntax = [
        "unclosed",
        "expected",
        "invalid",
        "duplicate key",
        "unterminated",
        "missing",
    ]
    .iter()
    .any(|w| raw.contains(w));
    let fix = if syntax {
        "correct the TOML syntax at this position"
    } else {
        "correct this value (docs/configuration.md lists every key with an example)"
    };
    (raw.replace('\n', "; "), fix.to_string())
}

/// How a table is written in the file: `[server]`, `[[inbound.issuers]]`.
fn header_of(table: &[Seg]) -> String {
    match table.last() {
        Some(Seg::Index(_)) => format!("[[{}]]", render(&table[..table.len() - 1])),
        _ => format!("[{}]", render(table)),
    }
}

/// serde's name of the expected type, in TOML words, and an example of the fix.
fn expected_words(expected: &str, name: &str) -> (String, String) {
    let e = expected.trim();
    if e.starts_with("struct ") || e.contains("map") || e.contains("enum") {
        return (
            "a table".into(),
            format!("write `[{name}]` on a line of its own, followed by its keys"),
        );
    }
    if e.contains("sequence") {
        return (
            "a list".into(),
            format!("write a list in brackets, e.g. `{name} = [\"a\", \"b\"]`"),
        );
    }
    if e.contains("duration") {
        return (
            "a duration".into(),
            format!("write a duration in quotes, e.g. `{name} = \"30s\"` (units: ms, s, m, h)"),
        );
    }
    if e.contains("bool") {
        return (
            "`true` or `false`".into(),
            format!("write `{name} = true` or `{name} = false` (no quotes)"),
        );
    }
    if e.contains("string") || e.contains("char") {
        return (
            "a string".into(),
            format!("put the value in double quotes: `{name} = \"…\"`"),
        );
    }
    if ["u8", "u16", "u32", "u64", "usize"].contains(&e) {
        return (
            "a whole number (0 or more)".into(),
            format!("write a number without quotes, e.g. `{name} = 4096`"),
        );
    }
    (
        e.to_string(),
        "correct this value (docs/configuration.md lists every key with an example)".into(),
    )
}

/// serde's description of the value found (`integer `30``), in TOML words.
fn found_words(found: &str) -> String {
    let f = found.trim();
    for (serde, toml) in [
        ("integer ", "the number "),
        ("floating point ", "the number "),
        ("string ", "the string "),
        ("boolean ", ""),
    ] {
        if let Some(rest) = f.strip_prefix(serde) {
            return format!("{toml}{}", rest.trim_matches('`'));
        }
    }
    match f {
        "map" => "a table".into(),
        "sequence" => "a list".into(),
        other => other.to_string(),
    }
}

/// The allowed name nearest to a misspelt one (edit distance ≤ 2), for "did you mean".
pub(super) fn closest<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (edit_distance(word, c), *c))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Levenshtein distance, by characters.
pub(super) fn edit_distance(a: &str, b: &str) -> usize {
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

    fn at(path: &str) -> Vec<Seg> {
        path.split('.').map(|k| Seg::Key(k.to_string())).collect()
    }

    #[test]
    fn suggests_the_nearest_key() {
        assert_eq!(
            closest("comand", &["url", "command", "args"]),
            Some("command")
        );
        assert_eq!(closest("zzzzzz", &["url", "command"]), None);
    }

    #[test]
    fn serde_type_names_become_toml_words() {
        let (m, f) = explain(
            "invalid value: integer `-5`, expected usize",
            &at("server.max_request_bytes"),
            &[],
        );
        assert_eq!(
            m,
            "expected a whole number (0 or more), found the number -5"
        );
        assert!(f.contains("max_request_bytes = 4096"), "{f}");
        let (m, _) = explain(
            "invalid type: string \"x\", expected struct McpSection",
            &at("mcp"),
            &[],
        );
        assert_eq!(m, "expected a table, found the string \"x\"");
        let (m, f) = explain(
            "unknown variant `apikey`, expected one of `none`, `api_key`",
            &at("auth.mode"),
            &[],
        );
        assert_eq!(m, "`apikey` is not an allowed value here");
        assert!(f.starts_with("did you mean `api_key`?"), "{f}");
    }
}

//! Gateway names for upstream tools and prompts, and the MCP rules they must meet.

use std::collections::BTreeMap;

use super::Conflict;

/// MCP: tool names SHOULD be 1–128 characters of `[A-Za-z0-9_.-]`.
pub const MAX_NAME_LEN: usize = 128;

pub fn gateway_name(prefix: &str, separator: &str, upstream: &str) -> String {
    if prefix.is_empty() {
        upstream.to_string()
    } else {
        format!("{prefix}{separator}{upstream}")
    }
}

pub fn valid_name(name: &str) -> bool {
    (1..=MAX_NAME_LEN).contains(&name.len()) && crate::config::valid_tool_chars(name)
}

/// Whether `name` (from `source`) may be published next to those already taken.
pub fn check(name: &str, source: &str, taken: &BTreeMap<String, String>) -> Result<(), Conflict> {
    if let Some(first) = taken.get(name) {
        return Err(Conflict(format!(
            "name `{name}` is claimed twice: by {first} and by {source}; the second is not published. Fix: give one target a different `prefix`"
        )));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(Conflict(format!(
            "name `{name}` from {source} is {} characters, over the MCP limit of {MAX_NAME_LEN}; not published. Fix: shorten that target's `prefix` (or the catalog separator)",
            name.len()
        )));
    }
    if !valid_name(name) {
        return Err(Conflict(format!(
            "name `{name}` from {source} has characters outside [A-Za-z0-9_.-]; not published. Fix: rename the tool upstream"
        )));
    }
    Ok(())
}

/// Longest resource URI the gateway matches against templates.
pub const MAX_URI_LEN: usize = 8 * 1024;

/// RFC 6570 level-1 matching: literal parts must match, each `{var}` matches one or more
/// characters other than `/`. Linear in the URI for the usual one-variable-per-segment
/// templates; character-boundary safe; URIs over [`MAX_URI_LEN`] never match.
pub fn template_matches(template: &str, uri: &str) -> bool {
    fn go(t: &str, u: &str, depth: usize) -> bool {
        if depth > 32 {
            return false;
        }
        let Some(open) = t.find('{') else {
            return t == u;
        };
        let (lit, rest) = t.split_at(open);
        let Some(u) = u.strip_prefix(lit) else {
            return false;
        };
        let Some(close) = rest.find('}') else {
            return false;
        };
        let after = &rest[close + 1..];
        // The variable ends at the latest at the next `/`.
        let limit = u.find('/').unwrap_or(u.len());
        if after.is_empty() {
            return limit == u.len() && limit > 0;
        }
        // The literal that must follow the variable (possibly empty before another `{`).
        let next = &after[..after.find('{').unwrap_or(after.len())];
        u.char_indices()
            .map(|(n, _)| n)
            .chain(std::iter::once(u.len()))
            .skip(1)
            .take_while(|&n| n <= limit)
            .filter(|&n| u[n..].starts_with(next))
            .any(|n| go(after, &u[n..], depth + 1))
    }
    uri.len() <= MAX_URI_LEN && go(template, uri, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_rules() {
        assert_eq!(gateway_name("gh", "__", "list"), "gh__list");
        assert_eq!(gateway_name("", "__", "list"), "list");
        let mut taken = BTreeMap::new();
        taken.insert(
            "gh__list".to_string(),
            "tool `list` of target `gh`".to_string(),
        );
        let err = check("gh__list", "tool `list` of target `gh2`", &taken).unwrap_err();
        assert!(
            err.0.contains("target `gh`") && err.0.contains("target `gh2`"),
            "{}",
            err.0
        );
        let long = "x".repeat(129);
        assert!(
            check(&long, "t", &BTreeMap::new())
                .unwrap_err()
                .0
                .contains("129 characters")
        );
        assert!(check("has space", "t", &BTreeMap::new()).is_err());
        assert!(check(&"x".repeat(128), "t", &BTreeMap::new()).is_ok());
    }

    #[test]
    fn templates() {
        assert!(template_matches(
            "test://template/{id}/data",
            "test://template/42/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://template/4/2/data"
        ));
        assert!(!template_matches(
            "test://template/{id}/data",
            "test://other/42/data"
        ));
        assert!(template_matches("file:///{name}", "file:///a.txt"));
        // Multi-byte characters and long URIs: no panic, bounded work.
        assert!(template_matches("file:///{name}", "file:///é"));
        assert!(!template_matches(
            "file:///{name}",
            &format!("file:///{}/", "a".repeat(200_000))
        ));
        assert!(template_matches("a://{x}-{y}", "a://1-2"));
    }
}

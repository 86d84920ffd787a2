//! Which operations of a specification become tools: the `[openapi.include]` and
//! `[openapi.exclude]` filters of the target file (operationIds, tags, path globs), with a
//! nearest-name suggestion for a name the specification does not have.

use globset::{GlobBuilder, GlobMatcher};

use super::{Filters, Found, Loader, SpecError, Spot, closest};

impl<'a> Loader<'a> {
    /// The indexes of the operations the filters keep; unknown names, unreadable patterns
    /// and filters that keep nothing are errors.
    pub(super) fn select(&mut self, found: &[Found<'a>], filters: &Filters) -> Vec<usize> {
        let ids: Vec<&str> = found
            .iter()
            .filter_map(|f| f.operation_id.as_deref())
            .collect();
        let tags: Vec<&str> = found
            .iter()
            .flat_map(|f| f.tags.iter().map(String::as_str))
            .collect();
        let errors_before = self.errors.len();
        let named = [
            (
                "openapi.include.operations",
                &filters.include_operations,
                &ids,
                "operationId",
            ),
            (
                "openapi.exclude.operations",
                &filters.exclude_operations,
                &ids,
                "operationId",
            ),
            ("openapi.include.tags", &filters.include_tags, &tags, "tag"),
            ("openapi.exclude.tags", &filters.exclude_tags, &tags, "tag"),
        ];
        for (key, wanted, known, what) in named {
            for name in wanted {
                if known.contains(&name.as_str()) {
                    continue;
                }
                let fix = match closest(name, known) {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("name a {what} the specification uses, or remove this one"),
                };
                self.fail(SpecError {
                    at: Spot::Filter(key),
                    message: format!("no operation in the specification has the {what} `{name}`"),
                    fix,
                });
            }
        }
        let include_paths = self.globs("openapi.include.paths", &filters.include_paths);
        let exclude_paths = self.globs("openapi.exclude.paths", &filters.exclude_paths);

        let matches = |f: &Found, ops: &[String], tags: &[String], paths: &[GlobMatcher]| {
            f.operation_id.as_ref().is_some_and(|id| ops.contains(id))
                || f.tags.iter().any(|t| tags.contains(t))
                || paths.iter().any(|g| g.is_match(f.path))
        };
        let any_include = !(filters.include_operations.is_empty()
            && filters.include_tags.is_empty()
            && filters.include_paths.is_empty());
        let kept: Vec<usize> = found
            .iter()
            .enumerate()
            .filter(|(_, f)| {
                let included = !any_include
                    || matches(
                        f,
                        &filters.include_operations,
                        &filters.include_tags,
                        &include_paths,
                    );
                included
                    && !matches(
                        f,
                        &filters.exclude_operations,
                        &filters.exclude_tags,
                        &exclude_paths,
                    )
            })
            .map(|(i, _)| i)
            .collect();
        // An unknown name or an unreadable pattern explains an empty result already.
        if kept.is_empty() && !found.is_empty() && self.errors.len() == errors_before {
            let keys = [
                ("openapi.include.operations", &filters.include_operations),
                ("openapi.include.tags", &filters.include_tags),
                ("openapi.include.paths", &filters.include_paths),
                ("openapi.exclude.operations", &filters.exclude_operations),
                ("openapi.exclude.tags", &filters.exclude_tags),
                ("openapi.exclude.paths", &filters.exclude_paths),
            ];
            if let Some((key, _)) = keys.iter().find(|(_, list)| !list.is_empty()) {
                self.fail(SpecError {
                    at: Spot::Filter(key),
                    message: format!(
                        "the filters leave none of the specification's {} operations",
                        found.len()
                    ),
                    fix: "widen the include lists or shorten the exclude lists".into(),
                });
            }
        }
        kept
    }

    /// Compile a filter's path patterns. Braces are made literal: path templates contain
    /// them, and glob alternation (`{a,b}`) would make `/pets/{petId}` miss itself.
    fn globs(&mut self, key: &'static str, patterns: &[String]) -> Vec<GlobMatcher> {
        let mut out = Vec::new();
        for pattern in patterns {
            let escaped = pattern.replace('{', "[{]").replace('}', "[}]");
            match GlobBuilder::new(&escaped).literal_separator(true).build() {
                Ok(glob) => out.push(glob.compile_matcher()),
                Err(e) => self.fail(SpecError {
                    at: Spot::Filter(key),
                    message: format!("the path pattern `{pattern}` cannot be read: {}", e.kind()),
                    fix: "write a path template with `*` for one segment and `**` for any \
                          number, e.g. `/pets/*` or `/store/**`"
                        .into(),
                }),
            }
        }
        out
    }
}

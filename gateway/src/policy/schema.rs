//! The schema policies are checked against: the base (`policies/schema.cedarschema`, or the
//! built-in one) plus one action per tool of the live catalog, whose `context.input` is typed
//! from the tool's JSON input schema where Cedar can say it. And the check itself.

use std::collections::HashSet;
use std::fmt::Write;
use std::path::PathBuf;

use cedar_policy::{
    ActionConstraint, PolicySet, Schema, ValidationError, ValidationMode, Validator,
};
use serde_json::Value;

use super::Policies;
use super::load::located;
use crate::catalog::View;
use crate::config::{ConfigError, ConfigErrors};

/// The action every tool's action is a member of.
pub const CALL_TOOL: &str = "CallTool";

/// What checking the policies against a catalog found.
#[derive(Debug, Default)]
pub struct Findings {
    /// Each refuses the policy set: at startup the gateway does not start, a reload keeps the
    /// previous set, `check` fails.
    pub errors: ConfigErrors,
    /// Worth saying, not refusing: a policy naming a tool no target offers now, a policy that
    /// can never apply.
    pub warnings: Vec<String>,
}

/// The action a `prompts/get` (and the prompts listing) asks about.
pub const GET_PROMPT: &str = "GetPrompt";
/// The action a `resources/read` (and the resources listing) asks about.
pub const READ_RESOURCE: &str = "ReadResource";

/// Declared only when a policy names `Action::"GetPrompt"`: prompts are governed then.
const PROMPTS: &str = "
// Prompts are governed because a policy names Action::\"GetPrompt\".
entity Prompt in [Target] {
  name: String,
  target: String,
};
action GetPrompt appliesTo {
  principal: User,
  resource: Prompt,
  context: { agent: Agent, scopes: Set<String>, now: datetime }
};
";

/// Declared only when a policy names `Action::"ReadResource"`.
const RESOURCES: &str = "
// Resources are governed because a policy names Action::\"ReadResource\".
entity Resource in [Target] {
  uri: String,
  target: String,
};
action ReadResource appliesTo {
  principal: User,
  resource: Resource,
  context: { agent: Agent, scopes: Set<String>, now: datetime }
};
";

/// What the policies govern besides tools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Governs {
    pub prompts: bool,
    pub resources: bool,
}

/// The whole schema as Cedar text: the base, prompts and resources when governed, then one
/// action per tool of `view`.
pub fn schema_text(base: &str, view: &View, governs: Governs) -> String {
    let mut out = String::with_capacity(base.len() + view.tools.len() * 256);
    out.push_str(base);
    if governs.prompts {
        out.push_str(PROMPTS);
    }
    if governs.resources {
        out.push_str(RESOURCES);
    }
    out.push_str("\n// Generated from the live catalog: one action per tool; `context.input` is typed from\n// the tool's input schema (arguments Cedar cannot type are left out).\n");
    for tool in &view.tools {
        let Some(route) = view.tool_routes.get(tool.name.as_ref()) else {
            continue;
        };
        let input = record_type(&Value::Object((*tool.input_schema).clone()), 2, 0)
            .unwrap_or_else(|| "{}".into());
        let _ = write!(
            out,
            "\n// target {}\naction {} in [{CALL_TOOL}] appliesTo {{\n  principal: User,\n  resource: Tool,\n  context: {{\n    agent: Agent,\n    scopes: Set<String>,\n    now: datetime,\n    input: {input}\n  }}\n}};\n",
            route.target,
            quote(&tool.name)
        );
    }
    out
}

/// The JSON Schema type of `schema`, and whether `null` is allowed too. `None`: not one type.
pub fn json_type(schema: &Value) -> Option<(&str, bool)> {
    match schema.get("type") {
        Some(Value::String(t)) => Some((t.as_str(), false)),
        Some(Value::Array(types)) => {
            let named: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let nullable = named.contains(&"null");
            match named.iter().filter(|t| **t != "null").collect::<Vec<_>>()[..] {
                [one] => Some((one, nullable)),
                _ => None,
            }
        }
        None => match schema.get("enum").or(schema.get("const")) {
            Some(Value::Array(values)) if values.iter().all(Value::is_string) => {
                Some(("string", false))
            }
            Some(Value::String(_)) => Some(("string", false)),
            _ => None,
        },
        _ => None,
    }
}

/// Nesting deeper than this is left out of the schema (and of the arguments policies see).
pub const MAX_DEPTH: usize = 6;

/// The Cedar type of a JSON Schema, as schema text; `None` where Cedar has no equivalent
/// (several types, no type, an object without properties, nesting deeper than `MAX_DEPTH`).
fn cedar_type(schema: &Value, indent: usize, depth: usize) -> Option<String> {
    if depth > MAX_DEPTH {
        return None;
    }
    let (kind, _) = json_type(schema)?;
    Some(match kind {
        "string" => "String".into(),
        "integer" => "Long".into(),
        "boolean" => "Bool".into(),
        // Cedar has no floating point: `decimal` holds four places.
        "number" => "decimal".into(),
        "array" => format!(
            "Set<{}>",
            cedar_type(schema.get("items")?, indent, depth + 1)?
        ),
        "object" => record_type(schema, indent, depth)?,
        _ => return None,
    })
}

fn record_type(schema: &Value, indent: usize, depth: usize) -> Option<String> {
    let properties = schema.get("properties")?.as_object()?;
    let required: HashSet<&str> = schema
        .get("required")
        .and_then(Value::as_array)
        .map(|r| r.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let pad = "  ".repeat(indent + 2);
    let mut fields = Vec::new();
    for (name, property) in properties {
        let Some(t) = cedar_type(property, indent + 1, depth + 1) else {
            continue;
        };
        let nullable = json_type(property).is_some_and(|(_, n)| n);
        let optional = if required.contains(name.as_str()) && !nullable {
            ""
        } else {
            "?"
        };
        fields.push(format!("{pad}{}{optional}: {t}", quote(name)));
    }
    if fields.is_empty() {
        return Some("{}".into());
    }
    Some(format!(
        "{{\n{}\n{}}}",
        fields.join(",\n"),
        "  ".repeat(indent + 1)
    ))
}

/// A Cedar string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.escape_default())
}

impl Policies {
    /// The whole schema for `view`, as `portcullis policy schema` prints it.
    pub fn schema(&self, view: &View) -> String {
        schema_text(&self.schema.0, view, self.governs)
    }

    /// Check every policy against the schema of `view`'s tools.
    pub fn check(&self, view: &View) -> Findings {
        let mut findings = Findings::default();
        let text = self.schema(view);
        let schema = match Schema::from_cedarschema_str(&text) {
            Ok((schema, _)) => schema,
            Err(e) => {
                let path = self.schema_path();
                let mut error = located(
                    &path,
                    &text,
                    &e,
                    "correct the schema; `portcullis policy schema` prints a valid one to start from",
                );
                if error
                    .position
                    .is_some_and(|(line, _)| line > self.schema.0.lines().count())
                {
                    // The error is in the generated part: the base lacks what it refers to.
                    error.position = None;
                    error.fix = "the schema must declare the entity types User, Agent, Target and Tool, and `action CallTool;`, as the built-in one does (docs/policies.md)".into();
                }
                findings.errors.push(error);
                return findings;
            }
        };
        let declared: HashSet<&str> = view
            .tools
            .iter()
            .map(|t| t.name.as_ref())
            .chain([CALL_TOOL])
            .chain(self.governs.prompts.then_some(GET_PROMPT))
            .chain(self.governs.resources.then_some(READ_RESOURCE))
            .collect();
        let mut checked = PolicySet::new();
        for policy in self.set.policies() {
            let named = match policy.action_constraint() {
                ActionConstraint::Any => vec![],
                ActionConstraint::Eq(uid) => vec![uid],
                ActionConstraint::In(uids) => uids,
            };
            let unknown: Vec<String> = named
                .iter()
                .filter(|uid| !declared.contains(uid.id().unescaped()))
                .map(|uid| uid.id().unescaped().to_string())
                .collect();
            if unknown.is_empty() {
                let _ = checked.add(policy.clone());
            } else {
                findings.warnings.push(format!(
                    "{}: policy `{}` names the tool(s) {}, which no target offers now (a misspelled name, or a target that is not connected): it applies to no call until a target offers it, and it was not checked against that tool's input schema",
                    self.place(policy.id()),
                    policy.id(),
                    unknown.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
                ));
            }
        }
        let result = Validator::new(schema).validate(&checked, ValidationMode::Strict);
        for e in result.validation_errors() {
            findings
                .errors
                .push(self.locate(e.policy_id(), e, fix_for(e)));
        }
        for w in result.validation_warnings() {
            findings
                .warnings
                .push(format!("{}: {w}", self.place(w.policy_id())));
        }
        findings
    }

    fn schema_path(&self) -> PathBuf {
        self.schema
            .1
            .clone()
            .unwrap_or_else(|| self.dir.join(super::load::SCHEMA_FILE))
    }

    /// `file:line` of a policy.
    pub fn place(&self, id: &cedar_policy::PolicyId) -> String {
        self.origins.get(id).map_or_else(
            || id.to_string(),
            |o| format!("{}:{}", o.file.display(), o.line),
        )
    }

    fn locate(
        &self,
        id: &cedar_policy::PolicyId,
        e: &dyn miette::Diagnostic,
        fix: &str,
    ) -> ConfigError {
        match self.origins.get(id) {
            Some(o) => {
                // Cedar's message names the policy already.
                located(&o.file, &o.text, e, fix)
            }
            None => ConfigError {
                file: self.dir.clone(),
                position: None,
                key: String::new(),
                message: format!("policy `{id}`: {e}"),
                fix: fix.into(),
            },
        }
    }
}

fn fix_for(e: &ValidationError) -> &'static str {
    match e {
        ValidationError::UnrecognizedEntityType(_) => {
            "use the entity types of the schema (User, Agent, Target, Tool), or declare the type in schema.cedarschema"
        }
        ValidationError::UnrecognizedActionId(_) => {
            "name a tool of the catalog, `Action::\"TOOL\"` (`portcullis check` lists them), or `Action::\"CallTool\"` for every tool"
        }
        ValidationError::UnsafeAttributeAccess(_) => {
            "the schema declares no such attribute here: fix its name, or declare it (User attributes from token claims: schema.cedarschema and `[policies.claims]`; a tool's `context.input`: `portcullis policy schema` prints what each tool has)"
        }
        ValidationError::UnsafeOptionalAttributeAccess(_) => {
            "the attribute is optional: test it first, `… has ATTRIBUTE && …`"
        }
        ValidationError::UnexpectedType(_) | ValidationError::IncompatibleTypes(_) => {
            "compare values of the types the schema declares (`portcullis policy schema` prints them)"
        }
        ValidationError::InvalidActionApplication(_) => {
            "tool actions apply to `User` principals and `Tool` resources: use `principal` / `principal in …` and `resource` / `resource in Target::\"…\"`"
        }
        _ => "see docs/policies.md for the entity model and examples",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn input_schemas_map_to_cedar_types_where_cedar_can_say_them() {
        let schema = json!({
            "type": "object",
            "required": ["repo", "count"],
            "properties": {
                "repo": {"type": "string"},
                "count": {"type": "integer"},
                "ratio": {"type": "number"},
                "labels": {"type": "array", "items": {"type": "string"}},
                "draft": {"type": ["boolean", "null"]},
                "mode": {"enum": ["a", "b"]},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "meta": {"type": "object", "properties": {"owner": {"type": "string"}}, "required": ["owner"]}
            }
        });
        let t = record_type(&schema, 2, 0).unwrap();
        for expected in [
            "\"repo\": String",
            "\"count\": Long",
            "\"ratio\"?: decimal",
            "\"labels\"?: Set<String>",
            "\"draft\"?: Bool",
            "\"mode\"?: String",
            "\"owner\": String",
        ] {
            assert!(t.contains(expected), "{expected} in {t}");
        }
        assert!(!t.contains("either"), "{t}");
    }
}

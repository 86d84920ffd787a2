//! An `[openapi]` target's tools, read from its OpenAPI 3.0 or 3.1 specification.
//!
//! [`parse`] reads the text (JSON or YAML, within fixed budgets so a hostile file cannot
//! exhaust memory); [`load`] turns each operation under `paths` that the target's filters keep
//! into an [`Operation`]. The rule is that a tool's input schema stands alone: every `$ref` is
//! expanded inline into JSON Schema 2020-12 (what MCP clients read), recursion is cut with a
//! placeholder that keeps the type, and the size of one schema is bounded. Operations the
//! gateway cannot call (cookie parameters, non-JSON bodies) are left out with a warning;
//! everything wrong with the document or the filters is reported at once, each with its place
//! and the fix.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use serde_json::{Map, Value, json};

use super::operation::{Body, Location, Operation, Param, Style};
use crate::config::explain::edit_distance;

#[path = "openapi_filters.rs"]
mod filters;
#[path = "openapi_schema.rs"]
mod schema;
use schema::with_description;

/// The HTTP methods a path item may hold, in the order OpenAPI lists them.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
/// The largest specification text read: far above real ones (a large public API's is ~10 MiB),
/// and it bounds the memory a JSON document can take.
const MAX_SPEC_BYTES: usize = 64 * 1024 * 1024;
/// MCP's limit on a tool name's length.
const MAX_TOOL_NAME: usize = 128;
/// Schema nodes one tool's input schema may hold before the rest is cut: a spec whose
/// references fan out (each schema naming several others) would otherwise grow exponentially.
const MAX_SCHEMA_NODES: usize = 20_000;
/// References followed inside one another before the rest is cut: keeps recursion (here and
/// in whoever walks the schema later) far from the stack's limit.
const MAX_REF_DEPTH: usize = 32;
/// References to references (parameters, bodies, path items) followed before giving up.
const MAX_REF_HOPS: usize = 16;
/// Header parameters OpenAPI says to ignore: the gateway sets them itself.
const IGNORED_HEADERS: [&str; 3] = ["accept", "content-type", "authorization"];
/// Keywords that only OpenAPI gives meaning to, or that point at definitions no longer needed
/// once every `$ref` is expanded.
const DROPPED_KEYWORDS: [&str; 8] = [
    "xml",
    "externalDocs",
    "discriminator",
    "$defs",
    "definitions",
    "$schema",
    "$id",
    "$anchor",
];
/// Keywords whose value is one schema.
const ONE_SCHEMA: [&str; 12] = [
    "additionalProperties",
    "not",
    "if",
    "then",
    "else",
    "propertyNames",
    "contains",
    "unevaluatedItems",
    "unevaluatedProperties",
    "contentSchema",
    "additionalItems",
    "items",
];
/// Keywords whose value is a list of schemas.
const SCHEMA_LISTS: [&str; 4] = ["allOf", "anyOf", "oneOf", "prefixItems"];
/// Keywords whose value maps names to schemas.
const SCHEMA_MAPS: [&str; 3] = ["properties", "patternProperties", "dependentSchemas"];
/// Keywords that describe a schema without constraining it: next to a `$ref` they are laid
/// over the referenced schema instead of wrapping it in `allOf`.
const ANNOTATIONS: [&str; 9] = [
    "description",
    "title",
    "summary",
    "default",
    "example",
    "examples",
    "deprecated",
    "readOnly",
    "writeOnly",
];

/// One thing wrong with a specification or with the target's filters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub at: Spot,
    pub message: String,
    /// What to do about it.
    pub fix: String,
}

/// Where a [`SpecError`] is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Spot {
    /// A syntax error in the text (1-based).
    Line { line: usize, column: usize },
    /// A place in the parsed document: `paths › /pets/{petId} › get › parameters › 0`.
    Spec(String),
    /// A key of the target's file: `openapi.include.operations`.
    Filter(&'static str),
}

impl fmt::Display for Spot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Line { line, column } => write!(f, "line {line}, column {column}"),
            Self::Spec(at) if at.is_empty() => write!(f, "the document"),
            Self::Spec(at) => write!(f, "`{at}`"),
            Self::Filter(key) => write!(f, "`{key}`"),
        }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.at, self.message)?;
        if !self.fix.is_empty() {
            write!(f, "\n  fix: {}", self.fix)?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecError {}

/// Which operations become tools. Every list may be empty; no include at all means every
/// operation is included. Path patterns match the path template (`/pets/{petId}`): `*` stays
/// within one segment, `**` spans any number, and braces are plain characters.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Filters {
    pub include_operations: Vec<String>,
    pub include_tags: Vec<String>,
    pub include_paths: Vec<String>,
    pub exclude_operations: Vec<String>,
    pub exclude_tags: Vec<String>,
    pub exclude_paths: Vec<String>,
}

/// A loaded specification: what the target needs to list and call its tools.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    pub title: Option<String>,
    /// The `openapi` version as written: `3.0.3`.
    pub version: String,
    /// Server URLs with `{variables}` replaced by their defaults; may be relative.
    pub servers: Vec<String>,
    pub operations: Vec<Operation>,
    /// Operations left out and other things the operator should know; the load went on.
    pub warnings: Vec<String>,
}

/// Read a specification's text, JSON or YAML. Text that starts with `{` is read as JSON
/// first (faster, and its errors are clearer for JSON); YAML reading is bounded in nodes,
/// depth, aliases and text so a hostile file cannot blow up memory.
pub fn parse(text: &str) -> Result<Value, SpecError> {
    if text.len() > MAX_SPEC_BYTES {
        return Err(SpecError {
            at: Spot::Line { line: 1, column: 1 },
            message: format!(
                "the specification is {} MiB, more than the {} MiB that are read",
                text.len() / (1024 * 1024),
                MAX_SPEC_BYTES / (1024 * 1024)
            ),
            fix: "leave out what the target does not need (e.g. with `redocly split` or a \
                  filtered copy), or check that this is the intended file"
                .into(),
        });
    }
    let json_error = if text.trim_start().starts_with('{') {
        match serde_json::from_str(text) {
            Ok(doc) => return Ok(doc),
            Err(e) => Some(e),
        }
    } else {
        None
    };
    // JSON is almost YAML, so a JSON file with a syntax error is reported in JSON's words.
    let yaml = serde_saphyr::from_str_with_options::<Value>(text, yaml_options());
    match (yaml, json_error) {
        (Ok(doc), _) => Ok(doc),
        (Err(_), Some(e)) => {
            let message = e.to_string();
            let message = message.split(" at line ").next().unwrap_or_default();
            Err(SpecError {
                at: Spot::Line {
                    line: e.line(),
                    column: e.column(),
                },
                message: format!("the specification is not valid JSON: {message}"),
                fix: "correct the JSON syntax at that place".into(),
            })
        }
        (Err(e), None) => Err(yaml_error(&e)),
    }
}

/// A YAML error in plain words: the library's own, or ours for a budget it stopped at (its
/// wording there is a debug dump).
fn yaml_error(e: &serde_saphyr::Error) -> SpecError {
    use serde_saphyr::Error as Yaml;
    let (line, column) = e
        .location()
        .map_or((1, 1), |l| (l.line() as usize, l.column() as usize));
    let at = Spot::Line { line, column };
    // The cause may be wrapped in the alias that led to it.
    let mut cause = e;
    while let Yaml::AliasError { error, .. } | Yaml::WithSnippet { error, .. } = cause {
        cause = error;
    }
    if matches!(
        cause,
        Yaml::Budget { .. }
            | Yaml::AliasReplayLimitExceeded { .. }
            | Yaml::AliasReplayStackDepthExceeded { .. }
            | Yaml::AliasReplayCounterOverflow { .. }
    ) {
        return SpecError {
            at,
            message: "the specification is too large, too deeply nested, or repeats its YAML \
                      anchors (`*name`) too often to be read safely"
                .into(),
            fix: "check that this is the intended file; expand heavily reused anchors, or \
                  convert the specification to JSON"
                .into(),
        };
    }
    let message = e.to_string();
    let message = message.split(" at line ").next().unwrap_or_default();
    // The library's advice names its own options; ours is to fix the file.
    let message = message
        .split(", set DuplicateKeyPolicy")
        .next()
        .unwrap_or_default();
    SpecError {
        at,
        message: format!("the specification is not valid YAML: {message}"),
        fix: "correct the YAML syntax at that place (indentation, quotes, brackets)".into(),
    }
}

/// YAML budgets: the library's defaults except room for large real specifications (a big
/// public API runs to a few hundred thousand nodes) and a tighter cap on text. Scalars are
/// read as YAML 1.2, as OpenAPI requires: `yes`, `no`, `y` and `1_000` stay strings (an
/// `enum: [y, n]` or a country code `NO` must not turn into booleans).
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        strict_booleans: true,
        underscored_numbers_as_strings: true,
        budget: serde_saphyr::budget! {
            max_nodes: 2_000_000,
            max_events: 4_000_000,
            max_total_scalar_bytes: MAX_SPEC_BYTES,
            max_documents: 1,
            max_recorded_anchor_events: 250_000,
        },
        with_snippet: false,
    }
}

/// Turn a parsed specification into the operations the filters keep. Every problem found is
/// returned, not only the first.
pub fn load(doc: &Value, filters: &Filters) -> Result<Spec, Vec<SpecError>> {
    let version = version(doc).map_err(|e| vec![e])?;
    let mut loader = Loader {
        doc,
        errors: Vec::new(),
        warnings: Vec::new(),
    };
    let found = loader.find_operations();
    let kept = loader.select(&found, filters);
    check_operation_ids(&found, &kept, &mut loader.errors);

    let mut operations = Vec::new();
    for f in kept.iter().map(|&i| &found[i]) {
        if let Some(op) = loader.operation(f) {
            operations.push((op, &f.at));
        }
    }
    check_tool_names(&operations, &mut loader.errors);
    if operations.is_empty() && loader.errors.is_empty() {
        let message = if found.is_empty() {
            "the specification has no operations under `paths`"
        } else {
            "none of the operations kept can be called (see the warnings)"
        };
        loader.errors.push(SpecError {
            at: Spot::Spec("paths".into()),
            message: message.into(),
            fix: "point the target at a specification with at least one operation".into(),
        });
    }
    if !loader.errors.is_empty() {
        return Err(loader.errors);
    }
    Ok(Spec {
        title: doc
            .pointer("/info/title")
            .and_then(Value::as_str)
            .map(str::to_string),
        version,
        servers: servers(doc),
        operations: operations.into_iter().map(|(op, _)| op).collect(),
        warnings: loader.warnings,
    })
}

/// The `openapi` version, or why this document is not one we read.
fn version(doc: &Value) -> Result<String, SpecError> {
    let here = |message: String, fix: &str| SpecError {
        at: Spot::Spec(String::new()),
        message,
        fix: fix.into(),
    };
    let Some(top) = doc.as_object() else {
        return Err(here(
            "the specification is not a mapping of keys (`openapi`, `info`, `paths`, …)".into(),
            "point the target at an OpenAPI 3.0 or 3.1 document",
        ));
    };
    if top.contains_key("swagger") {
        return Err(here(
            "this is a Swagger 2.0 document; only OpenAPI 3.0 and 3.1 are read".into(),
            "convert it to OpenAPI 3 first, e.g. with `swagger2openapi`",
        ));
    }
    let version = match top.get("openapi") {
        Some(Value::String(v)) => v.clone(),
        Some(other) => other.to_string(),
        None => {
            return Err(here(
                "the document has no `openapi` key, so it is not an OpenAPI specification".into(),
                "point the target at an OpenAPI 3.0 or 3.1 document (it starts with `openapi: 3.…`)",
            ));
        }
    };
    if version.starts_with("3.0") || version.starts_with("3.1") {
        Ok(version)
    } else {
        Err(SpecError {
            at: Spot::Spec("openapi".into()),
            message: format!("OpenAPI version `{version}` is not supported; 3.0 and 3.1 are"),
            fix: "use an OpenAPI 3.0.x or 3.1.x document".into(),
        })
    }
}

/// Server URLs with each `{variable}` replaced by its default.
fn servers(doc: &Value) -> Vec<String> {
    let Some(list) = doc.get("servers").and_then(Value::as_array) else {
        return Vec::new();
    };
    list.iter()
        .filter_map(|server| {
            let mut url = server.get("url")?.as_str()?.to_string();
            if let Some(vars) = server.get("variables").and_then(Value::as_object) {
                for (name, var) in vars {
                    if let Some(default) = var.get("default").and_then(Value::as_str) {
                        url = url.replace(&format!("{{{name}}}"), default);
                    }
                }
            }
            Some(url)
        })
        .collect()
}

/// A place in the document, as the keys leading to it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct At(Vec<String>);

impl At {
    fn child(&self, key: impl fmt::Display) -> At {
        let mut keys = self.0.clone();
        keys.push(key.to_string());
        At(keys)
    }

    /// The place a local reference (`/components/schemas/a~1b`, decoded) points to.
    fn of_pointer(pointer: &str) -> At {
        At(pointer
            .split('/')
            .skip(1)
            .map(|k| k.replace("~1", "/").replace("~0", "~"))
            .collect())
    }

    fn spot(&self) -> Spot {
        Spot::Spec(self.0.join(" › "))
    }

    fn error(&self, message: impl Into<String>, fix: impl Into<String>) -> SpecError {
        SpecError {
            at: self.spot(),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// One operation as found under `paths`, before it is built.
#[derive(Debug)]
struct Found<'a> {
    path: &'a str,
    method: &'static str,
    op: &'a Map<String, Value>,
    /// The path item's own parameters and where they are.
    shared: Option<(&'a Value, At)>,
    at: At,
    operation_id: Option<String>,
    tags: Vec<String>,
}

impl Found<'_> {
    /// How warnings name it: `uploadFile (POST /pet/{petId}/uploadImage)`.
    fn name(&self) -> String {
        let target = format!("{} {}", self.method.to_uppercase(), self.path);
        match &self.operation_id {
            Some(id) => format!("operation `{id}` ({target})"),
            None => format!("operation {target}"),
        }
    }
}

/// Why an operation did not become a tool.
enum Leave {
    /// It cannot be called by the gateway: the reason goes into a warning.
    Skip(String),
    /// Errors were recorded.
    Broken,
}

/// A parameter object, its place, and its argument's schema.
type ParameterAt<'a> = (&'a Map<String, Value>, At, Value);

/// Per tool: how much schema has been produced and which references are being expanded.
#[derive(Default)]
struct Budget {
    nodes: usize,
    /// The places of the schemas being expanded, outermost first.
    expanding: Vec<At>,
    cut: bool,
}

struct Loader<'a> {
    doc: &'a Value,
    errors: Vec<SpecError>,
    warnings: Vec<String>,
}

impl<'a> Loader<'a> {
    /// Record an error once: a broken component is met by every operation that uses it.
    fn fail(&mut self, e: SpecError) {
        if !self.errors.contains(&e) {
            self.errors.push(e);
        }
    }

    /// Every operation under `paths`, in document order.
    fn find_operations(&mut self) -> Vec<Found<'a>> {
        let mut found = Vec::new();
        let Some(paths) = self.doc.get("paths") else {
            return found;
        };
        let Some(paths) = paths.as_object() else {
            self.fail(At(vec!["paths".into()]).error(
                "`paths` is not a mapping of path templates to path items",
                "write `paths:` with entries like `/pets: {get: …}`",
            ));
            return found;
        };
        for (path, item) in paths {
            if path.starts_with("x-") {
                continue;
            }
            let at = At(vec!["paths".into(), path.clone()]);
            if !path.starts_with('/') {
                self.fail(at.error(
                    format!("the path `{path}` does not start with `/`"),
                    format!("write it as `/{path}`"),
                ));
                continue;
            }
            let Some((item, item_at)) = self.deref(item, &at) else {
                continue;
            };
            let Some(item) = item.as_object() else {
                self.fail(item_at.error(
                    "a path item must be a mapping of methods (`get`, `post`, …)",
                    "write the operations under the path as `get: {…}`",
                ));
                continue;
            };
            let shared = item
                .get("parameters")
                .map(|p| (p, item_at.child("parameters")));
            for (key, op) in item {
                let Some(method) = METHODS.iter().find(|m| **m == key.as_str()) else {
                    continue;
                };
                let op_at = at.child(method);
                let Some(op) = op.as_object() else {
                    self.fail(op_at.error(
                        "an operation must be a mapping (`operationId`, `parameters`, …)",
                        "write the operation's fields under the method",
                    ));
                    continue;
                };
                let operation_id = match op.get("operationId") {
                    None => None,
                    Some(Value::String(id)) if id.is_empty() => None,
                    Some(Value::String(id)) => Some(id.clone()),
                    Some(_) => {
                        self.fail(op_at.child("operationId").error(
                            "`operationId` is not a string",
                            "write the operationId as text, e.g. `operationId: listPets`",
                        ));
                        None
                    }
                };
                let tags = match op.get("tags") {
                    None => Vec::new(),
                    Some(Value::Array(tags)) if tags.iter().all(Value::is_string) => tags
                        .iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect(),
                    Some(_) => {
                        self.fail(op_at.child("tags").error(
                            "`tags` is not a list of names",
                            "write the tags as a list, e.g. `tags: [pets]`",
                        ));
                        Vec::new()
                    }
                };
                found.push(Found {
                    path,
                    method,
                    op,
                    shared: shared.clone(),
                    at: op_at,
                    operation_id,
                    tags,
                });
            }
        }
        found
    }

    /// Follow `$ref`s from a parameter, request body, path item or security scheme to the
    /// object itself and its place.
    fn deref(&mut self, value: &'a Value, at: &At) -> Option<(&'a Value, At)> {
        let (mut value, mut at) = (value, at.clone());
        for _ in 0..MAX_REF_HOPS {
            let Some(reference) = value.get("$ref") else {
                return Some((value, at));
            };
            (value, at) = self.resolve(reference, &at.child("$ref"))?;
        }
        self.fail(at.error(
            "references lead to references more than 16 times (a loop?)",
            "point the `$ref` at the object itself",
        ));
        None
    }

    /// The value a local `$ref` points to, or an error at the `$ref`.
    fn resolve(&mut self, reference: &Value, at: &At) -> Option<(&'a Value, At)> {
        let Some(reference) = reference.as_str() else {
            self.fail(at.error(
                "`$ref` is not a string",
                "write it as `$ref: '#/components/schemas/Name'`",
            ));
            return None;
        };
        let Some(fragment) = reference.strip_prefix('#') else {
            self.fail(at.error(
                format!(
                    "`{reference}` refers to another file or a URL; only references within \
                     the document (`#/…`) are supported"
                ),
                "bundle the specification into one file first, e.g. with `redocly bundle`",
            ));
            return None;
        };
        let pointer = percent_decode(fragment);
        if !pointer.is_empty() && !pointer.starts_with('/') {
            self.fail(at.error(
                format!("`{reference}` is not a JSON pointer (`#/components/…`)"),
                "refer to the object by its path, e.g. `#/components/schemas/Name`",
            ));
            return None;
        }
        if let Some(target) = self.doc.pointer(&pointer) {
            return Some((target, At::of_pointer(&pointer)));
        }
        // Suggest a sibling of the missing last key, the usual cause being a typo.
        let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", ""));
        let last = last.replace("~1", "/").replace("~0", "~");
        let siblings: Vec<&str> = self
            .doc
            .pointer(parent)
            .and_then(Value::as_object)
            .map(|m| m.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let fix = match closest(&last, &siblings) {
            Some(near) => format!("did you mean `{near}`?"),
            None => "refer to something the document defines, e.g. under `components`".into(),
        };
        self.fail(at.error(
            format!("`{reference}` points to nothing in this document"),
            fix,
        ));
        None
    }

    /// Build one operation's tool, or say why it is left out.
    fn operation(&mut self, f: &Found<'a>) -> Option<Operation> {
        let errors_before = self.errors.len();
        match self.build(f) {
            Ok(op) if self.errors.len() == errors_before => Some(op),
            Ok(_) | Err(Leave::Broken) => None,
            Err(Leave::Skip(why)) => {
                self.warnings
                    .push(format!("{} is left out: {why}", f.name()));
                None
            }
        }
    }

    fn build(&mut self, f: &Found<'a>) -> Result<Operation, Leave> {
        let mut budget = Budget::default();
        let mut properties = Map::new();
        let mut required = Vec::new();

        // Each parameter with its argument's schema; `arg` is settled once all are known.
        let mut params: Vec<(Param, Value)> = Vec::new();
        let mut broken = false;
        for (p, at, schema) in self.parameters(f, &mut budget)? {
            let (location, style, explode) = match self.placement(p, &at) {
                Ok(Some(placement)) => placement,
                Ok(None) => continue,
                Err(Leave::Broken) => {
                    // Go on: the other parameters may have problems to report too.
                    broken = true;
                    continue;
                }
                Err(skip) => return Err(skip),
            };
            let name = string_in(p, "name").unwrap_or_default().to_string();
            let required =
                location == Location::Path || p.get("required") == Some(&Value::Bool(true));
            let param = Param {
                arg: name.clone(),
                name,
                location,
                required,
                style,
                explode,
            };
            params.push((param, schema));
        }
        // The path's placeholders must all be filled; one the operation forgot to declare
        // becomes a required string argument.
        // (A path whose braces do not pair has no placeholders to fill.)
        for placeholder in super::placeholders(f.path).unwrap_or_default() {
            let declared = params
                .iter()
                .any(|(p, _)| p.location == Location::Path && p.name == placeholder);
            if !declared {
                self.warnings.push(format!(
                    "{}: the path parameter `{placeholder}` is not declared; it is taken as a \
                     required string",
                    f.name()
                ));
                let param = Param {
                    arg: placeholder.clone(),
                    name: placeholder,
                    location: Location::Path,
                    required: true,
                    style: Style::Simple,
                    explode: false,
                };
                params.push((param, json!({"type": "string"})));
            }
        }
        let names: Vec<String> = params.iter().map(|(p, _)| p.name.clone()).collect();
        for (param, schema) in &mut params {
            if names.iter().filter(|n| **n == param.name).count() > 1 {
                param.arg = format!("{}_{}", param.location.as_str(), param.name);
            }
            if properties.contains_key(&param.arg) {
                return Err(Leave::Skip(format!(
                    "two of its parameters would both be the argument `{}`",
                    param.arg
                )));
            }
            properties.insert(param.arg.clone(), std::mem::take(schema));
            if param.required {
                required.push(Value::String(param.arg.clone()));
            }
        }

        let body = match f.op.get("requestBody") {
            None => None,
            Some(body) => self.body(body, &f.at.child("requestBody"), &mut budget)?,
        };
        if broken {
            return Err(Leave::Broken);
        }
        let body = match body {
            None => None,
            Some((schema, is_required, content_type)) => {
                let Some(arg) = ["body", "request_body"]
                    .into_iter()
                    .find(|a| !properties.contains_key(*a))
                else {
                    return Err(Leave::Skip(
                        "its parameters already use both `body` and `request_body`, which the \
                         request body needs"
                            .into(),
                    ));
                };
                properties.insert(arg.into(), schema);
                if is_required {
                    required.push(Value::String(arg.into()));
                }
                Some(Body {
                    arg: Some(arg.into()),
                    required: is_required,
                    content_type,
                })
            }
        };

        let mut input_schema = Map::new();
        input_schema.insert("type".into(), "object".into());
        input_schema.insert("properties".into(), Value::Object(properties));
        if !required.is_empty() {
            input_schema.insert("required".into(), Value::Array(required));
        }
        let tool = match &f.operation_id {
            Some(id) => tool_name(id),
            None => method_path(f.method, f.path),
        };
        if budget.cut {
            self.warnings.push(format!(
                "{}: its input schema is larger than {MAX_SCHEMA_NODES} nodes or {MAX_REF_DEPTH} \
                 references deep, and is cut short",
                f.name()
            ));
        }
        Ok(Operation {
            tool,
            operation_id: f.operation_id.clone(),
            description: description(f.op),
            method: f.method.to_uppercase(),
            path: f.path.to_string(),
            params: params.into_iter().map(|(p, _)| p).collect(),
            headers: vec![],
            body,
            input_schema: std::sync::Arc::new(input_schema),
            scopes: self.scopes(f),
            tags: f.tags.clone(),
        })
    }

    /// The path item's and the operation's parameters, the operation's replacing the path
    /// item's of the same name and place, each with its argument schema.
    fn parameters(
        &mut self,
        f: &Found<'a>,
        budget: &mut Budget,
    ) -> Result<Vec<ParameterAt<'a>>, Leave> {
        let mut merged: Vec<(&'a Map<String, Value>, At)> = Vec::new();
        let own =
            f.op.get("parameters")
                .map(|p| (p, f.at.child("parameters")));
        for (list, at) in f.shared.iter().cloned().chain(own) {
            let Some(list) = list.as_array() else {
                self.fail(at.error(
                    "`parameters` is not a list",
                    "write each parameter as a list item starting with `- name:`",
                ));
                continue;
            };
            for (i, p) in list.iter().enumerate() {
                let Some((p, p_at)) = self.deref(p, &at.child(i)) else {
                    continue;
                };
                let (Some(p), Some(name), Some(place)) =
                    (p.as_object(), string(p, "name"), string(p, "in"))
                else {
                    self.fail(p_at.error(
                        "a parameter needs a `name` and an `in` (path, query, header or cookie)",
                        "add the missing `name:` or `in:`",
                    ));
                    continue;
                };
                let same = |(q, _): &(&Map<String, Value>, At)| {
                    string_in(q, "name") == Some(name) && string_in(q, "in") == Some(place)
                };
                match merged.iter().position(same) {
                    Some(j) => merged[j] = (p, p_at),
                    None => merged.push((p, p_at)),
                }
            }
        }
        let mut out = Vec::new();
        for (p, at) in merged {
            if string_in(p, "in") == Some("cookie") {
                return Err(Leave::Skip(format!(
                    "its parameter `{}` is a cookie, and cookie parameters are not supported",
                    string_in(p, "name").unwrap_or_default()
                )));
            }
            let schema = match (p.get("schema"), p.get("content")) {
                (Some(schema), _) => self.schema(schema, &at.child("schema"), budget),
                (None, Some(content)) => match pick_media(content) {
                    Some((media, m)) => match m.get("schema") {
                        Some(s) => {
                            let s_at = at.child("content").child(media).child("schema");
                            self.schema(s, &s_at, budget)
                        }
                        None => json!({}),
                    },
                    None => json!({}),
                },
                (None, None) => json!({}),
            };
            let schema = with_description(schema, string_in(p, "description"));
            out.push((p, at, schema));
        }
        Ok(out)
    }

    /// Where a parameter goes and how it is written: `None` for headers the gateway sets.
    fn placement(
        &mut self,
        p: &Map<String, Value>,
        at: &At,
    ) -> Result<Option<(Location, Style, bool)>, Leave> {
        let name = string_in(p, "name").unwrap_or_default();
        let location = match string_in(p, "in").unwrap_or_default() {
            "path" => Location::Path,
            "query" => Location::Query,
            "header" if IGNORED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) => {
                return Ok(None);
            }
            "header" => Location::Header,
            other => {
                self.fail(at.child("in").error(
                    format!("`in: {other}` is not a parameter place"),
                    "use `path`, `query`, `header` or `cookie`",
                ));
                return Err(Leave::Broken);
            }
        };
        let style = match (location, string_in(p, "style")) {
            (Location::Query, None | Some("form")) => Style::Form,
            (Location::Query, Some("spaceDelimited")) => Style::SpaceDelimited,
            (Location::Query, Some("pipeDelimited")) => Style::PipeDelimited,
            (Location::Query, Some("deepObject")) => Style::DeepObject,
            (Location::Path | Location::Header, None | Some("simple")) => Style::Simple,
            (Location::Path, Some(style @ ("matrix" | "label"))) => {
                return Err(Leave::Skip(format!(
                    "its path parameter `{name}` has `style: {style}`, which is not supported"
                )));
            }
            (_, Some(style)) => {
                self.fail(at.child("style").error(
                    format!(
                        "`style: {style}` is not allowed for a {} parameter",
                        location.as_str()
                    ),
                    "use `form`, `spaceDelimited`, `pipeDelimited` or `deepObject` in the \
                     query, `simple` in a path or header, or leave `style` out",
                ));
                return Err(Leave::Broken);
            }
        };
        let explode = p
            .get("explode")
            .and_then(Value::as_bool)
            .unwrap_or(style == Style::Form);
        Ok(Some((location, style, explode)))
    }

    /// A request body's schema (with its description), whether it is required, and the JSON
    /// media type to send; `None` when it declares no content.
    fn body(
        &mut self,
        body: &'a Value,
        at: &At,
        budget: &mut Budget,
    ) -> Result<Option<(Value, bool, String)>, Leave> {
        let Some((body, at)) = self.deref(body, at) else {
            return Err(Leave::Broken);
        };
        let Some(content) = body.get("content").and_then(Value::as_object) else {
            return Ok(None);
        };
        if content.is_empty() {
            return Ok(None);
        }
        let Some((media, m)) = pick_media(body.get("content").unwrap_or(&Value::Null)) else {
            let types: Vec<&str> = content.keys().map(String::as_str).collect();
            return Err(Leave::Skip(format!(
                "its request body can only be {}, and only JSON bodies can be sent",
                types.join(" or ")
            )));
        };
        let schema = match m.get("schema") {
            Some(s) => self.schema(s, &at.child("content").child(media).child("schema"), budget),
            None => json!({}),
        };
        let content_type = if media.contains('*') {
            "application/json".to_string()
        } else {
            media.to_string()
        };
        let schema = with_description(schema, body.get("description").and_then(Value::as_str));
        let required = body.get("required") == Some(&Value::Bool(true));
        Ok(Some((schema, required, content_type)))
    }

    /// The OAuth scopes of the first security requirement that names an OAuth 2 or OpenID
    /// Connect scheme (the operation's `security`, else the document's).
    fn scopes(&mut self, f: &Found<'a>) -> Vec<String> {
        let (security, at) = match f.op.get("security") {
            Some(s) => (s, f.at.child("security")),
            None => match self.doc.get("security") {
                Some(s) => (s, At(vec!["security".into()])),
                None => return Vec::new(),
            },
        };
        let schemes = self.doc.pointer("/components/securitySchemes");
        let scheme_at = At(vec!["components".into(), "securitySchemes".into()]);
        for requirement in security.as_array().into_iter().flatten() {
            let mut scopes = BTreeSet::new();
            let mut oauth = false;
            for (name, listed) in requirement.as_object().into_iter().flatten() {
                let Some(scheme) = schemes.and_then(|s| s.get(name)) else {
                    self.warnings.push(format!(
                        "{}: `{}` names the security scheme `{name}`, which \
                         `components.securitySchemes` does not define",
                        f.name(),
                        at.0.join(" › ")
                    ));
                    continue;
                };
                let Some((scheme, _)) = self.deref(scheme, &scheme_at.child(name)) else {
                    continue;
                };
                if matches!(string(scheme, "type"), Some("oauth2" | "openIdConnect")) {
                    oauth = true;
                    let listed = listed.as_array().into_iter().flatten();
                    scopes.extend(listed.filter_map(Value::as_str).map(str::to_string));
                }
            }
            if oauth {
                return scopes.into_iter().collect();
            }
        }
        Vec::new()
    }
}

/// The JSON media type of a `content` map: `application/json`, else a `…+json` type, else a
/// wildcard (`*/*`, `application/*`) that JSON satisfies.
fn pick_media(content: &Value) -> Option<(&str, &Value)> {
    let content = content.as_object()?;
    let essence = |media: &str| {
        media
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    };
    let find = |ok: &dyn Fn(&str) -> bool| {
        content
            .iter()
            .find(|(media, _)| ok(&essence(media)))
            .map(|(media, m)| (media.as_str(), m))
    };
    find(&|e| e == "application/json")
        .or_else(|| find(&|e| e.ends_with("+json")))
        .or_else(|| find(&|e| e == "*/*" || e == "application/*"))
}

/// Summary and description, joined by a blank line.
fn description(op: &Map<String, Value>) -> Option<String> {
    let parts: Vec<&str> = ["summary", "description"]
        .iter()
        .filter_map(|k| op.get(*k).and_then(Value::as_str))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    (!parts.is_empty()).then(|| parts.join("\n\n"))
}

/// An operationId as an MCP tool name: letters, digits, `_`, `-` and `.`, other characters
/// replaced by `_`, at most 128 characters.
fn tool_name(operation_id: &str) -> String {
    operation_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(MAX_TOOL_NAME)
        .collect()
}

/// The name of an operation without an operationId: `get_pets_petId` for `GET /pets/{petId}`.
fn method_path(method: &str, path: &str) -> String {
    let raw = format!("{method}_{}", path.replace(['{', '}'], ""));
    let mut name = String::new();
    for c in tool_name(&raw).chars() {
        if !(c == '_' && name.ends_with('_')) {
            name.push(c);
        }
    }
    name.trim_end_matches('_')
        .chars()
        .take(MAX_TOOL_NAME)
        .collect()
}

/// An operationId used by two kept operations is ambiguous to filters and to readers.
fn check_operation_ids(found: &[Found], kept: &[usize], errors: &mut Vec<SpecError>) {
    let mut first: HashMap<&str, &At> = HashMap::new();
    for f in kept.iter().map(|&i| &found[i]) {
        let Some(id) = f.operation_id.as_deref() else {
            continue;
        };
        if let Some(earlier) = first.get(id) {
            errors.push(f.at.child("operationId").error(
                format!(
                    "the operationId `{id}` is used twice: at `{}` and at `{}`",
                    earlier.0.join(" › "),
                    f.at.0.join(" › ")
                ),
                "give each operation its own operationId, or leave one out with \
                 `openapi.exclude.paths`",
            ));
        } else {
            first.insert(id, &f.at);
        }
    }
}

/// Two tools of one target cannot share a name (operationIds that differ only in characters
/// MCP does not allow, or a generated name that equals another).
fn check_tool_names(operations: &[(Operation, &At)], errors: &mut Vec<SpecError>) {
    let mut first: HashMap<&str, (&Operation, &At)> = HashMap::new();
    for (op, at) in operations {
        match first.get(op.tool.as_str()) {
            // The same operationId twice is reported already.
            Some((earlier, _))
                if earlier.operation_id.is_some() && earlier.operation_id == op.operation_id => {}
            Some((_, earlier_at)) => errors.push(at.error(
                format!(
                    "two operations would both be the tool `{}`: `{}` and `{}`",
                    op.tool,
                    earlier_at.0.join(" › "),
                    at.0.join(" › ")
                ),
                "give one of them an operationId that differs in letters or digits, or leave \
                 one out with `openapi.exclude.operations` or `openapi.exclude.paths`",
            )),
            None => {
                first.insert(&op.tool, (op, at));
            }
        }
    }
}

/// `%xx` escapes in a URI fragment decoded (`#/paths/~1pets~1%7Bid%7D`); an invalid escape is
/// kept as written, and then points to nothing.
fn percent_decode(fragment: &str) -> String {
    let bytes = fragment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap_or_else(|_| fragment.to_string())
}

fn string<'v>(value: &'v Value, key: &str) -> Option<&'v str> {
    value.get(key).and_then(Value::as_str)
}

fn string_in<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v str> {
    map.get(key).and_then(Value::as_str)
}

/// The candidate nearest to a misspelt name (edit distance at most 2, or a third of its
/// length for long names), for "did you mean".
fn closest<'c>(word: &str, candidates: &[&'c str]) -> Option<&'c str> {
    let limit = (word.chars().count() / 3).max(2);
    candidates
        .iter()
        .map(|c| (edit_distance(&word.to_lowercase(), &c.to_lowercase()), *c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;

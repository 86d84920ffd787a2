//! Schemas of an OpenAPI document as standalone JSON Schema 2020-12, what MCP clients read:
//! every `$ref` expanded inline, recursion cut with a placeholder that keeps the type, one
//! tool's schema bounded in size, OpenAPI 3.0's dialect translated (`nullable`, boolean
//! exclusive bounds, `example`) and OpenAPI-only keywords dropped.

use serde_json::{Map, Value, json};

use super::{
    ANNOTATIONS, At, Budget, DROPPED_KEYWORDS, Loader, MAX_REF_DEPTH, MAX_SCHEMA_NODES, ONE_SCHEMA,
    SCHEMA_LISTS, SCHEMA_MAPS,
};

impl Loader<'_> {
    /// A schema as standalone JSON Schema 2020-12: references expanded, OpenAPI 3.0's
    /// dialect translated, OpenAPI-only keywords dropped.
    pub(super) fn schema(&mut self, schema: &Value, at: &At, budget: &mut Budget) -> Value {
        let Some(m) = schema.as_object() else {
            if !schema.is_boolean() {
                self.fail(at.error(
                    "a schema must be a mapping (`type`, `properties`, …)",
                    "write the schema as a mapping, e.g. `{type: string}`",
                ));
            }
            return schema.clone();
        };
        budget.nodes += 1;
        if budget.nodes > MAX_SCHEMA_NODES {
            budget.cut = true;
            return placeholder(
                schema,
                "The schema is too large to describe in full and is cut here.",
            );
        }
        let mut out = match m.get("$ref") {
            Some(reference) => self.reference(m, reference, at, budget),
            None => self.keywords(m, at, budget),
        };
        if m.get("nullable") == Some(&Value::Bool(true)) {
            out = nullable(out);
        }
        out
    }

    /// A `$ref` schema: its target expanded, with any keywords beside the `$ref` laid over
    /// it (annotations) or combined with it (`allOf`, for constraints).
    fn reference(
        &mut self,
        m: &Map<String, Value>,
        reference: &Value,
        at: &At,
        budget: &mut Budget,
    ) -> Value {
        let Some((target, target_at)) = self.resolve(reference, &at.child("$ref")) else {
            return json!({});
        };
        let name = target_at.0.last().cloned().unwrap_or_default();
        let expanded = if budget.expanding.contains(&target_at) {
            placeholder(
                target,
                &format!(
                    "A `{name}` again: the structure repeats here and is not described further."
                ),
            )
        } else if budget.expanding.len() >= MAX_REF_DEPTH {
            budget.cut = true;
            placeholder(
                target,
                &format!("A `{name}`, nested too deeply to describe further."),
            )
        } else {
            budget.expanding.push(target_at.clone());
            let expanded = self.schema(target, &target_at, budget);
            budget.expanding.pop();
            expanded
        };
        let siblings: Map<String, Value> = m
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "$ref" | "nullable"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if siblings.is_empty() {
            return expanded;
        }
        let siblings = self.keywords(&siblings, at, budget);
        let Value::Object(siblings) = siblings else {
            return expanded;
        };
        if siblings.keys().all(|k| ANNOTATIONS.contains(&k.as_str())) {
            return match expanded {
                Value::Object(mut base) => {
                    base.extend(siblings);
                    Value::Object(base)
                }
                Value::Bool(true) => Value::Object(siblings),
                other => other,
            };
        }
        let mut combined = siblings;
        match combined.get_mut("allOf") {
            Some(Value::Array(all)) => all.push(expanded),
            _ => {
                combined.insert("allOf".into(), Value::Array(vec![expanded]));
            }
        }
        Value::Object(combined)
    }

    /// A schema's keywords, subschemas converted, OpenAPI 3.0's forms translated.
    fn keywords(&mut self, m: &Map<String, Value>, at: &At, budget: &mut Budget) -> Value {
        let mut out = Map::new();
        for (key, value) in m {
            let k = key.as_str();
            let here = at.child(k);
            // `required: true` on a property is a common slip that JSON Schema rejects.
            let misplaced_required = k == "required" && !value.is_array();
            let converted =
                if DROPPED_KEYWORDS.contains(&k) || k == "nullable" || misplaced_required {
                    continue;
                } else if k == "items" && value.is_array() {
                    // The pre-2020 tuple form of `items`.
                    let list = self.schema_list(value, &here, budget);
                    out.insert("prefixItems".into(), list);
                    continue;
                } else if ONE_SCHEMA.contains(&k) {
                    self.schema(value, &here, budget)
                } else if SCHEMA_LISTS.contains(&k) {
                    self.schema_list(value, &here, budget)
                } else if SCHEMA_MAPS.contains(&k) {
                    match value.as_object() {
                        Some(map) => Value::Object(
                            map.iter()
                                .map(|(name, s)| {
                                    (name.clone(), self.schema(s, &here.child(name), budget))
                                })
                                .collect(),
                        ),
                        None => value.clone(),
                    }
                } else {
                    value.clone()
                };
            out.insert(key.clone(), converted);
        }
        // OpenAPI 3.0 writes these differently from JSON Schema 2020-12.
        if let Some(example) = out.remove("example") {
            out.entry("examples").or_insert_with(|| json!([example]));
        }
        for (flag, bound) in [
            ("exclusiveMinimum", "minimum"),
            ("exclusiveMaximum", "maximum"),
        ] {
            match out.get(flag) {
                Some(Value::Bool(true)) => match out.remove(bound) {
                    Some(limit) => {
                        out.insert(flag.into(), limit);
                    }
                    None => {
                        out.remove(flag);
                    }
                },
                Some(Value::Bool(false)) => {
                    out.remove(flag);
                }
                _ => {}
            }
        }
        Value::Object(out)
    }

    fn schema_list(&mut self, list: &Value, at: &At, budget: &mut Budget) -> Value {
        match list.as_array() {
            Some(items) => items
                .iter()
                .enumerate()
                .map(|(i, s)| self.schema(s, &at.child(i), budget))
                .collect(),
            None => list.clone(),
        }
    }
}

/// OpenAPI 3.0's `nullable: true` in JSON Schema: `null` added to the type (and the enum),
/// or, without a type, an `anyOf` with `{"type": "null"}`.
fn nullable(schema: Value) -> Value {
    let Value::Object(mut m) = schema else {
        return schema;
    };
    let null = Value::String("null".into());
    match m.get_mut("type") {
        Some(Value::String(t)) if t == "null" => {}
        Some(Value::String(t)) => {
            let t = std::mem::take(t);
            m.insert("type".into(), json!([t, "null"]));
        }
        Some(Value::Array(types)) => {
            if !types.contains(&null) {
                types.push(null.clone());
            }
        }
        _ => {
            let mut outer = Map::new();
            for key in ["title", "description"] {
                if let Some(v) = m.remove(key) {
                    outer.insert(key.into(), v);
                }
            }
            outer.insert("anyOf".into(), json!([m, {"type": "null"}]));
            return Value::Object(outer);
        }
    }
    if let Some(Value::Array(values)) = m.get_mut("enum")
        && !values.contains(&Value::Null)
    {
        values.push(Value::Null);
    }
    Value::Object(m)
}

/// What stands in for a schema that is not expanded (a repeat, or past the size bound): the
/// same type, so a caller still knows what kind of value goes there.
fn placeholder(target: &Value, why: &str) -> Value {
    let mut m = Map::new();
    if let Some(t) = target.get("type") {
        let t = if target.get("nullable") == Some(&Value::Bool(true)) {
            match nullable(json!({"type": t})) {
                Value::Object(mut n) => n.remove("type").unwrap_or_else(|| t.clone()),
                _ => t.clone(),
            }
        } else {
            t.clone()
        };
        m.insert("type".into(), t);
    }
    m.insert("description".into(), why.into());
    Value::Object(m)
}

/// A schema with an argument's own description in front of the schema's.
pub(super) fn with_description(schema: Value, description: Option<&str>) -> Value {
    let Some(description) = description.filter(|d| !d.trim().is_empty()) else {
        return schema;
    };
    let mut m = match schema {
        Value::Object(m) => m,
        Value::Bool(false) => {
            let mut m = Map::new();
            m.insert("not".into(), json!({}));
            m
        }
        _ => Map::new(),
    };
    m.insert("description".into(), description.into());
    Value::Object(m)
}

use super::*;

const PETSTORE: &str = include_str!("../../../tests/fixtures/openapi/petstore3.yaml");
const CYCLES: &str = include_str!("../../../tests/fixtures/openapi/cycles31.yaml");

fn load_text(text: &str, filters: &Filters) -> Result<Spec, Vec<SpecError>> {
    let doc = parse(text).map_err(|e| vec![e])?;
    load(&doc, filters)
}

fn loaded(text: &str) -> Spec {
    match load_text(text, &Filters::default()) {
        Ok(spec) => spec,
        Err(errors) => panic!("the spec did not load: {errors:#?}"),
    }
}

fn errors(text: &str, filters: &Filters) -> Vec<SpecError> {
    match load_text(text, filters) {
        Ok(spec) => panic!(
            "expected errors, got tools {:?}",
            spec.operations.iter().map(|o| &o.tool).collect::<Vec<_>>()
        ),
        Err(errors) => errors,
    }
}

fn tool<'s>(spec: &'s Spec, name: &str) -> &'s Operation {
    spec.operations
        .iter()
        .find(|o| o.tool == name)
        .unwrap_or_else(|| panic!("no tool {name}"))
}

fn tools(spec: &Spec) -> Vec<&str> {
    spec.operations.iter().map(|o| o.tool.as_str()).collect()
}

fn schema(op: &Operation) -> Value {
    Value::Object((*op.input_schema).clone())
}

/// Every `$ref` key anywhere in a value, and the number of nodes (finite by construction,
/// but counted so an accidental blow-up shows).
fn refs_and_size(v: &Value, refs: &mut Vec<String>) -> usize {
    match v {
        Value::Object(m) => {
            if let Some(r) = m.get("$ref") {
                refs.push(r.to_string());
            }
            1 + m.values().map(|v| refs_and_size(v, refs)).sum::<usize>()
        }
        Value::Array(a) => 1 + a.iter().map(|v| refs_and_size(v, refs)).sum::<usize>(),
        _ => 1,
    }
}

fn assert_valid_2020_12(spec: &Spec) {
    for op in &spec.operations {
        let s = schema(op);
        if let Err(e) = jsonschema::draft202012::meta::validate(&s) {
            panic!(
                "{}: input schema is not valid JSON Schema 2020-12: {e}\n{s:#}",
                op.tool
            );
        }
        let mut refs = Vec::new();
        let size = refs_and_size(&s, &mut refs);
        assert!(refs.is_empty(), "{}: $ref left in {s:#}", op.tool);
        assert!(size < 2_000, "{}: schema has {size} nodes", op.tool);
    }
}

fn accepts(op: &Operation, args: Value) -> bool {
    let validator = jsonschema::draft202012::new(&schema(op)).expect("schema compiles");
    validator.is_valid(&args)
}

// ---- The Swagger Petstore 3.0 ----

#[test]
fn petstore_becomes_one_tool_per_callable_operation() {
    let spec = loaded(PETSTORE);
    assert_eq!(
        spec.title.as_deref(),
        Some("Swagger Petstore - OpenAPI 3.0")
    );
    assert!(spec.version.starts_with("3.0."), "{}", spec.version);
    assert_eq!(spec.servers, ["https://petstore3.swagger.io/api/v3"]);
    let mut names = tools(&spec);
    names.sort_unstable();
    let mut expected = vec![
        "updatePet",
        "addPet",
        "findPetsByStatus",
        "findPetsByTags",
        "getPetById",
        "updatePetWithForm",
        "deletePet",
        "getInventory",
        "placeOrder",
        "getOrderById",
        "deleteOrder",
        "createUser",
        "createUsersWithListInput",
        "loginUser",
        "logoutUser",
        "getUserByName",
        "updateUser",
        "deleteUser",
    ];
    expected.sort_unstable();
    assert_eq!(names, expected);
    // uploadFile takes only application/octet-stream.
    assert_eq!(spec.warnings.len(), 1, "{:?}", spec.warnings);
    assert!(
        spec.warnings[0].contains("uploadFile"),
        "{}",
        spec.warnings[0]
    );
    assert!(
        spec.warnings[0].contains("application/octet-stream"),
        "{}",
        spec.warnings[0]
    );
}

#[test]
fn petstore_operations_carry_method_path_params_body_and_scopes() {
    let spec = loaded(PETSTORE);

    let get = tool(&spec, "getPetById");
    assert_eq!(
        (get.method.as_str(), get.path.as_str()),
        ("GET", "/pet/{petId}")
    );
    assert_eq!(get.operation_id.as_deref(), Some("getPetById"));
    assert_eq!(
        get.params,
        [Param {
            name: "petId".into(),
            arg: "petId".into(),
            location: Location::Path,
            required: true,
            style: Style::Simple,
            explode: false,
        }]
    );
    assert_eq!(get.body, None);
    // `api_key` comes first but is not OAuth; the next requirement is.
    assert_eq!(get.scopes, ["read:pets", "write:pets"]);
    assert_eq!(get.tags, ["pet"]);
    assert!(get.read_only() && !get.destructive());
    assert_eq!(
        schema(get),
        json!({
            "type": "object",
            "properties": {"petId": {"type": "integer", "format": "int64", "description": "ID of pet to return"}},
            "required": ["petId"]
        })
    );

    let add = tool(&spec, "addPet");
    assert_eq!((add.method.as_str(), add.path.as_str()), ("POST", "/pet"));
    assert_eq!(
        add.body,
        Some(Body {
            arg: Some("body".into()),
            required: true,
            content_type: "application/json".into(),
        })
    );
    assert!(!add.read_only() && !add.destructive());
    let body = &add.input_schema["properties"]["body"];
    assert_eq!(body["description"], "Create a new pet in the store");
    assert_eq!(body["required"], json!(["name", "photoUrls"]));
    assert_eq!(
        body["properties"]["category"]["properties"]["name"]["examples"],
        json!(["Dogs"])
    );
    assert!(body.get("xml").is_none() && body["properties"]["photoUrls"].get("xml").is_none());
    assert_eq!(add.input_schema["required"], json!(["body"]));

    let find = tool(&spec, "findPetsByStatus");
    assert_eq!(find.params[0].location, Location::Query);
    assert_eq!(
        (find.params[0].style, find.params[0].explode),
        (Style::Form, true)
    );
    assert!(!find.params[0].required);
    assert!(find.input_schema.get("required").is_none());

    let delete = tool(&spec, "deletePet");
    assert!(delete.destructive() && !delete.read_only());
    let header = &delete.params[0];
    assert_eq!(
        (header.name.as_str(), header.location),
        ("api_key", Location::Header)
    );
    assert_eq!(delete.input_schema["required"], json!(["petId"]));

    let inventory = tool(&spec, "getInventory");
    assert!(inventory.scopes.is_empty(), "api_key only: no scopes");
    let login = tool(&spec, "loginUser");
    assert!(login.scopes.is_empty(), "no security at all");
    assert_eq!(
        login.description.as_deref(),
        Some("Logs user into the system.\n\nLog into the system.")
    );
}

#[test]
fn generated_schemas_are_json_schema_2020_12_and_check_arguments() {
    let petstore = loaded(PETSTORE);
    assert_valid_2020_12(&petstore);
    let cycles = loaded(CYCLES);
    assert_valid_2020_12(&cycles);

    let get = tool(&petstore, "getPetById");
    assert!(accepts(get, json!({"petId": 7})));
    assert!(!accepts(get, json!({"petId": "seven"})));
    assert!(!accepts(get, json!({})));

    let add = tool(&petstore, "addPet");
    assert!(accepts(
        add,
        json!({"body": {"name": "Rex", "photoUrls": [], "status": "sold"}})
    ));
    assert!(!accepts(
        add,
        json!({"body": {"name": "Rex", "photoUrls": [], "status": "lost"}})
    ));
    assert!(!accepts(add, json!({"body": {"name": "Rex"}})));

    let tree = tool(&cycles, "createTree");
    let nested = json!({"body": {"value": "a", "children": [{"value": "b", "children": []}]}});
    assert!(accepts(tree, nested));
    assert!(!accepts(
        tree,
        json!({"body": {"value": "a", "children": ["b"]}})
    ));

    let get_tree = tool(&cycles, "getTree");
    assert!(accepts(get_tree, json!({"treeId": "oak-1", "depth": 9})));
    assert!(
        !accepts(get_tree, json!({"treeId": "oak-1", "depth": 10})),
        "exclusiveMaximum"
    );
    assert!(
        !accepts(get_tree, json!({"treeId": "Oak!", "depth": 1})),
        "pattern from the $ref"
    );
}

// ---- OpenAPI 3.1 with cycles ----

#[test]
fn recursive_schemas_are_cut_where_they_repeat() {
    let spec = loaded(CYCLES);
    assert_eq!(spec.version, "3.1.0");
    assert_eq!(spec.servers, ["https://eu.api.example.test/v2"]);

    let tree = tool(&spec, "createTree");
    let body = &tree.input_schema["properties"]["body"];
    assert_eq!(body["description"], "The tree to store");
    assert_eq!(tree.body.as_ref().map(|b| b.required), Some(true));
    let again = &body["properties"]["children"]["items"];
    assert_eq!(again["type"], "object");
    let why = again["description"].as_str().unwrap_or_default();
    assert!(why.contains("TreeNode") && why.contains("repeats"), "{why}");
    assert!(again.get("properties").is_none());
    assert!(body.get("xml").is_none());

    // Person → Company → Person: the second Person is the placeholder, with Company's
    // `description` sibling laid over the expanded Company.
    let person = tool(&spec, "createPerson");
    let employer = &person.input_schema["properties"]["body"]["properties"]["employer"];
    assert_eq!(employer["description"], "Where the person works");
    assert_eq!(employer["type"], json!(["object", "null"]));
    assert!(employer.get("discriminator").is_none());
    let inner = &employer["properties"]["employees"]["items"];
    assert_eq!(inner["type"], "object");
    assert!(
        inner["description"]
            .as_str()
            .unwrap_or_default()
            .contains("Person")
    );
    assert!(inner.get("properties").is_none());

    // A ref inside a path-level parameter, and a `+json` body of another operation.
    let get = tool(&spec, "getTree");
    assert_eq!(
        get.input_schema["properties"]["treeId"],
        json!({"type": "string", "pattern": "^[a-z0-9-]+$", "description": "The tree to work on"})
    );
    let args: Vec<&str> = get.params.iter().map(|p| p.arg.as_str()).collect();
    assert_eq!(args, ["treeId", "depth"]);
    let replace = tool(&spec, "replaceTree");
    assert_eq!(
        replace.body.as_ref().map(|b| b.content_type.as_str()),
        Some("application/merge-patch+json")
    );
    assert_eq!(
        replace.params.len(),
        1,
        "the path-level parameter is shared"
    );

    // `~1` in a pointer names the schema `a/b`.
    let slashed = tool(&spec, "getSlashed");
    assert_eq!(
        slashed.input_schema["properties"]["filter"]["enum"],
        json!(["x", "y"])
    );
}

#[test]
fn scopes_come_from_the_first_oauth_requirement_or_the_document() {
    let spec = loaded(CYCLES);
    assert_eq!(tool(&spec, "createTree").scopes, ["trees.write"]);
    assert_eq!(
        tool(&spec, "getTree").scopes,
        ["trees.read"],
        "document-level security"
    );
    assert!(
        tool(&spec, "createPerson").scopes.is_empty(),
        "`security: []` means none"
    );
}

#[test]
fn a_schema_that_fans_out_is_bounded() {
    // Each level names the next one twice: 2^40 nodes if expanded in full.
    let mut schemas = Map::new();
    for i in 0..40 {
        schemas.insert(
            format!("L{i}"),
            json!({"type": "object", "properties": {
                "a": {"$ref": format!("#/components/schemas/L{}", i + 1)},
                "b": {"$ref": format!("#/components/schemas/L{}", i + 1)},
            }}),
        );
    }
    schemas.insert("L40".into(), json!({"type": "string"}));
    let doc = json!({
        "openapi": "3.1.0",
        "paths": {"/x": {"post": {"operationId": "x", "requestBody": {"content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/L0"}}}}}}},
        "components": {"schemas": schemas},
    });
    let spec = match load(&doc, &Filters::default()) {
        Ok(spec) => spec,
        Err(e) => panic!("{e:#?}"),
    };
    let mut refs = Vec::new();
    let size = refs_and_size(&schema(&spec.operations[0]), &mut refs);
    assert!(size < 5 * MAX_SCHEMA_NODES, "{size} nodes");
    assert!(refs.is_empty());
    assert!(
        spec.warnings.iter().any(|w| w.contains("cut short")),
        "{:?}",
        spec.warnings
    );
    assert!(jsonschema::draft202012::meta::is_valid(&schema(
        &spec.operations[0]
    )));
}

// ---- Malformed specifications ----

#[test]
fn a_yaml_syntax_error_has_its_line() {
    let text = "openapi: 3.0.3\ninfo:\n  title: x\npaths:\n  /a: [get\n";
    let e = parse(text).expect_err("unclosed bracket");
    assert!(matches!(e.at, Spot::Line { line: 5, .. }), "{e}");
    assert!(e.message.contains("YAML"), "{e}");

    let e = parse("openapi: 3.0.3\nopenapi: 3.1.0\n").expect_err("duplicate key");
    assert!(matches!(e.at, Spot::Line { line: 2, .. }), "{e}");
    assert!(!e.message.contains("DuplicateKeyPolicy"), "{e}");
}

#[test]
fn a_json_syntax_error_has_its_line_and_json_is_read_as_json() {
    let e = parse("{\n  \"openapi\": \"3.1.0\",\n  \"paths\": {,}\n}").expect_err("bad JSON");
    assert_eq!(
        e.at,
        Spot::Line {
            line: 3,
            column: 13
        }
    );
    assert!(
        e.message.contains("JSON") && !e.message.contains("at line"),
        "{e}"
    );
    let doc = parse("{\"openapi\": \"3.1.0\", \"b\": 1, \"a\": 2}").expect("JSON parses");
    let keys: Vec<&String> = doc
        .as_object()
        .map(|m| m.keys().collect())
        .unwrap_or_default();
    assert_eq!(keys, ["openapi", "b", "a"], "key order is kept");
}

#[test]
fn swagger_2_and_non_openapi_documents_are_refused() {
    let e = errors(
        "swagger: '2.0'\ninfo: {title: x}\npaths: {}\n",
        &Filters::default(),
    );
    assert_eq!(e.len(), 1);
    assert!(e[0].message.contains("Swagger 2.0"), "{}", e[0]);
    assert!(e[0].fix.contains("swagger2openapi"), "{}", e[0]);

    let e = errors("info: {title: x}\n", &Filters::default());
    assert!(e[0].message.contains("no `openapi` key"), "{}", e[0]);
    let e = errors("- just\n- a list\n", &Filters::default());
    assert!(e[0].message.contains("not a mapping"), "{}", e[0]);
    let e = errors("openapi: 2.5.0\npaths: {}\n", &Filters::default());
    assert_eq!(e[0].at, Spot::Spec("openapi".into()));
}

const TWO_OPS: &str = r#"
openapi: 3.0.3
paths:
  /a:
    get:
      operationId: same
  /b:
    post:
      operationId: same
"#;

#[test]
fn a_duplicate_operation_id_names_both_places() {
    let e = errors(TWO_OPS, &Filters::default());
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(
        e[0].at,
        Spot::Spec("paths › /b › post › operationId".into())
    );
    assert!(e[0].message.contains("`paths › /a › get`"), "{}", e[0]);
    assert!(e[0].message.contains("`paths › /b › post`"), "{}", e[0]);
    // Leaving one out is a way to load it.
    let filters = Filters {
        exclude_paths: vec!["/b".into()],
        ..Filters::default()
    };
    assert!(load_text(TWO_OPS, &filters).is_ok());
}

#[test]
fn operation_ids_that_sanitise_alike_collide() {
    let text = "openapi: 3.0.3\npaths:\n  /a:\n    get: {operationId: 'list pets'}\n  /b:\n    get: {operationId: 'list/pets'}\n";
    let e = errors(text, &Filters::default());
    assert_eq!(e.len(), 1, "{e:#?}");
    assert!(e[0].message.contains("`list_pets`"), "{}", e[0]);
    assert!(e[0].message.contains("paths › /a › get") && e[0].message.contains("paths › /b › get"));
}

#[test]
fn unresolvable_and_external_refs_are_errors_at_the_ref() {
    let text = r#"
openapi: 3.0.3
paths:
  /pets/{id}:
    get:
      operationId: getPet
      parameters:
        - $ref: '#/components/parameters/Id'
        - name: q
          in: query
          schema:
            $ref: 'other.yaml#/components/schemas/Q'
    post:
      operationId: addPet
      requestBody:
        content:
          application/json:
            schema:
              $ref: '#/components/schemas/Pett'
components:
  schemas:
    Pet: {type: object}
  parameters:
    Id: {name: id, in: path, required: true, schema: {$ref: 'https://example.test/id.json'}}
"#;
    let e = errors(text, &Filters::default());
    let spots: Vec<String> = e.iter().map(|e| e.at.to_string()).collect();
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(
        e[0].at,
        Spot::Spec("components › parameters › Id › schema › $ref".into())
    );
    assert!(e[0].fix.contains("redocly bundle"), "{}", e[0]);
    assert_eq!(
        e[1].at,
        Spot::Spec("paths › /pets/{id} › get › parameters › 1 › schema › $ref".into())
    );
    assert!(e[1].message.contains("another file"), "{}", e[1]);
    assert_eq!(
        e[2].at,
        Spot::Spec(
            "paths › /pets/{id} › post › requestBody › content › application/json › schema › $ref"
                .into()
        ),
        "{spots:?}"
    );
    assert!(e[2].message.contains("points to nothing"), "{}", e[2]);
    assert_eq!(e[2].fix, "did you mean `Pet`?");
}

#[test]
fn unknown_filter_names_suggest_the_nearest() {
    let filters = Filters {
        include_operations: vec!["getPetByID".into()],
        exclude_tags: vec!["stores".into(), "zzz".into()],
        ..Filters::default()
    };
    let e = errors(PETSTORE, &filters);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert_eq!(e[0].at, Spot::Filter("openapi.include.operations"));
    assert!(e[0].message.contains("`getPetByID`"), "{}", e[0]);
    assert_eq!(e[0].fix, "did you mean `getPetById`?");
    assert_eq!(e[1].at, Spot::Filter("openapi.exclude.tags"));
    assert_eq!(e[1].fix, "did you mean `store`?");
    assert!(!e[2].fix.contains("did you mean"), "{}", e[2]);
}

#[test]
fn filters_include_then_exclude() {
    let filters = Filters {
        include_tags: vec!["store".into()],
        include_paths: vec!["/user/*".into()],
        exclude_operations: vec!["deleteOrder".into()],
        exclude_paths: vec!["/user/{username}".into()],
        ..Filters::default()
    };
    let spec = load_text(PETSTORE, &filters).expect("filters load");
    let mut names = tools(&spec);
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "createUsersWithListInput",
            "getInventory",
            "getOrderById",
            "loginUser",
            "logoutUser",
            "placeOrder"
        ]
    );

    let deep = Filters {
        include_paths: vec!["/pet/**".into()],
        ..Filters::default()
    };
    let spec = load_text(PETSTORE, &deep).expect("filters load");
    assert!(tools(&spec).contains(&"getPetById") && !tools(&spec).contains(&"addPet"));
}

#[test]
fn a_filter_that_leaves_nothing_or_cannot_be_read_is_an_error() {
    let nothing = Filters {
        include_tags: vec!["store".into()],
        exclude_paths: vec!["/store/**".into()],
        ..Filters::default()
    };
    let e = errors(PETSTORE, &nothing);
    assert_eq!(e.len(), 1, "{e:#?}");
    assert_eq!(e[0].at, Spot::Filter("openapi.include.tags"));
    assert!(e[0].message.contains("leave none"), "{}", e[0]);

    let unreadable = Filters {
        include_paths: vec!["/pet/[".into()],
        ..Filters::default()
    };
    let e = errors(PETSTORE, &unreadable);
    assert_eq!(e[0].at, Spot::Filter("openapi.include.paths"));
    assert!(e[0].message.contains("`/pet/[`"), "{}", e[0]);
}

// ---- Names, arguments, 3.0 conversions, skipped operations ----

#[test]
fn tool_names_are_sanitised_or_made_from_method_and_path() {
    assert_eq!(tool_name("pets:list v2"), "pets_list_v2");
    assert_eq!(tool_name("ok-name.v1_x"), "ok-name.v1_x");
    assert_eq!(tool_name(&"é".repeat(200)).len(), MAX_TOOL_NAME);
    assert_eq!(method_path("get", "/pets/{petId}"), "get_pets_petId");
    assert_eq!(method_path("delete", "/a//b/{c}/"), "delete_a_b_c");
    assert_eq!(method_path("get", "/"), "get");

    let text = "openapi: 3.1.0\npaths:\n  /pets/{petId}/toys:\n    get:\n      parameters:\n        - {name: petId, in: path, schema: {type: string}}\n";
    let spec = loaded(text);
    assert_eq!(tools(&spec), ["get_pets_petId_toys"]);
    assert_eq!(spec.operations[0].operation_id, None);
}

#[test]
fn parameters_that_share_a_name_get_their_place_in_the_argument() {
    let text = r#"
openapi: 3.0.3
paths:
  /items/{id}:
    parameters:
      - {name: id, in: path, schema: {type: string}, description: from the path item}
      - {name: Accept, in: header, schema: {type: string}}
    put:
      operationId: putItem
      parameters:
        - {name: id, in: query, schema: {type: integer}}
        - {name: id, in: path, schema: {type: string}, description: the operation's own}
        - {name: body, in: query, schema: {type: string}}
        - {name: tags, in: query, style: pipeDelimited, schema: {type: array, items: {type: string}}}
      requestBody:
        content:
          application/json:
            schema: {type: object}
"#;
    let spec = loaded(text);
    let op = &spec.operations[0];
    let args: Vec<(&str, &str)> = op
        .params
        .iter()
        .map(|p| (p.name.as_str(), p.arg.as_str()))
        .collect();
    assert_eq!(
        args,
        [
            ("id", "path_id"),
            ("id", "query_id"),
            ("body", "body"),
            ("tags", "tags")
        ]
    );
    assert_eq!(
        op.input_schema["properties"]["path_id"]["description"],
        "the operation's own"
    );
    assert_eq!(op.params[3].style, Style::PipeDelimited);
    assert!(!op.params[3].explode);
    assert_eq!(
        op.body.as_ref().and_then(|b| b.arg.as_deref()),
        Some("request_body")
    );
    assert_eq!(op.input_schema["required"], json!(["path_id"]));
}

#[test]
fn openapi_3_0_schemas_become_json_schema_2020_12() {
    let text = r#"
openapi: 3.0.3
paths:
  /x:
    post:
      operationId: x
      requestBody:
        content:
          application/json:
            schema:
              type: object
              properties:
                name: {type: string, nullable: true, example: Rex}
                kind: {type: string, enum: [a, b], nullable: true}
                owner:
                  nullable: true
                  description: Who owns it
                  allOf: [{$ref: '#/components/schemas/Owner'}]
                age: {type: integer, minimum: 0, exclusiveMinimum: true, maximum: 30, exclusiveMaximum: false}
components:
  schemas:
    Owner:
      type: object
      externalDocs: {url: 'https://example.test'}
      properties: {id: {type: integer}}
"#;
    let spec = loaded(text);
    let props = &spec.operations[0].input_schema["properties"]["body"]["properties"];
    assert_eq!(
        props["name"],
        json!({"type": ["string", "null"], "examples": ["Rex"]})
    );
    assert_eq!(props["kind"]["enum"], json!(["a", "b", null]));
    assert_eq!(
        props["owner"],
        json!({
            "description": "Who owns it",
            "anyOf": [
                {"allOf": [{"type": "object", "properties": {"id": {"type": "integer"}}}]},
                {"type": "null"}
            ]
        })
    );
    assert_eq!(
        props["age"],
        json!({"type": "integer", "exclusiveMinimum": 0, "maximum": 30})
    );
    assert_valid_2020_12(&spec);
    let op = &spec.operations[0];
    assert!(accepts(
        op,
        json!({"body": {"name": null, "kind": null, "owner": null, "age": 1}})
    ));
    assert!(!accepts(op, json!({"body": {"age": 0}})));
}

#[test]
fn cookie_parameters_and_non_json_bodies_leave_the_operation_out() {
    let text = r#"
openapi: 3.0.3
paths:
  /session:
    get:
      operationId: whoAmI
      parameters:
        - {name: sid, in: cookie, schema: {type: string}}
  /upload:
    post:
      operationId: upload
      requestBody:
        content:
          multipart/form-data:
            schema: {type: object}
  /ok:
    get:
      operationId: ok
"#;
    let spec = loaded(text);
    assert_eq!(tools(&spec), ["ok"]);
    assert_eq!(spec.warnings.len(), 2, "{:?}", spec.warnings);
    assert!(spec.warnings[0].contains("`whoAmI`") && spec.warnings[0].contains("cookie"));
    assert!(
        spec.warnings[1].contains("`upload`") && spec.warnings[1].contains("multipart/form-data")
    );
}

#[test]
fn a_spec_with_nothing_callable_is_an_error() {
    let text =
        "openapi: 3.0.3\npaths:\n  /s:\n    get:\n      parameters: [{name: sid, in: cookie}]\n";
    let e = errors(text, &Filters::default());
    assert_eq!(e[0].at, Spot::Spec("paths".into()));
    let e = errors("openapi: 3.1.0\ninfo: {title: x}\n", &Filters::default());
    assert!(e[0].message.contains("no operations"), "{}", e[0]);
}

#[test]
fn errors_read_as_place_message_and_fix() {
    let e = SpecError {
        at: Spot::Spec("paths › /a › get".into()),
        message: "something is wrong".into(),
        fix: "do this".into(),
    };
    assert_eq!(
        e.to_string(),
        "`paths › /a › get`: something is wrong\n  fix: do this"
    );
    assert_eq!(
        Spot::Line { line: 3, column: 4 }.to_string(),
        "line 3, column 4"
    );
}

#[test]
fn an_alias_bomb_is_refused_not_expanded() {
    // Each level repeats the one before ten times: 10^9 strings if expanded.
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let e = parse(&text).expect_err("the budget stops it");
    assert!(matches!(e.at, Spot::Line { .. }), "{e}");
    assert!(e.message.contains("anchors"), "{e}");
    assert!(!e.message.contains('{'), "no debug dump: {e}");
}

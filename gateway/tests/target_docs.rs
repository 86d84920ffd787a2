//! The target files docs/targets.md shows for the per-call kinds are real: each loads as the
//! page says (with the Petstore specification beside it), and its tools are the ones the
//! page describes.
#![allow(clippy::unwrap_used)]

use portcullis::config::rest::{Location, RestSource};
use portcullis::config::{TargetKind, TargetSpec};

/// The ```toml blocks of the page whose first line is `# targets/NAME.toml`, by name.
fn target_blocks(markdown: &str) -> Vec<(String, String)> {
    markdown
        .split("```toml\n")
        .skip(1)
        .filter_map(|rest| {
            let block = rest.split("```").next()?;
            let name = block
                .lines()
                .next()?
                .strip_prefix("# targets/")?
                .strip_suffix(".toml")?;
            Some((name.to_string(), block.to_string()))
        })
        .collect()
}

fn load(name: &str) -> TargetSpec {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/targets.md"))
        .unwrap();
    let (_, block) = target_blocks(&page)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("docs/targets.md shows no targets/{name}.toml"));
    let dir = tempfile::tempdir().unwrap();
    let targets = dir.path().join("targets");
    std::fs::create_dir(&targets).unwrap();
    std::fs::write(
        dir.path().join("gateway.toml"),
        "[server]\nlisten = \"127.0.0.1:0\"\n[dev_idp]\n[catalog]\nsearch_tool = true\n",
    )
    .unwrap();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/openapi/petstore3.yaml"
        ),
        targets.join("petstore.yaml"),
    )
    .unwrap();
    // The page's secrets are environment references; here they are files with a value.
    let mut file = block.clone();
    for var in ["PETSTORE_API_KEY", "WEATHER_API_KEY"] {
        std::fs::write(targets.join(var), "k-123").unwrap();
        file = file.replace(&format!("env:{var}"), &format!("file:{var}"));
    }
    std::fs::write(targets.join(format!("{name}.toml")), file).unwrap();
    let snapshot = portcullis::config::load(&dir.path().join("gateway.toml"))
        .unwrap_or_else(|e| panic!("targets/{name}.toml of docs/targets.md does not load:\n{e}"));
    assert!(snapshot.catalog.search_tool);
    snapshot.targets.into_iter().next().unwrap()
}

#[test]
fn the_openapi_example_loads_with_its_filters() {
    let spec = load("petstore");
    let TargetKind::Rest(rest) = &spec.kind else {
        panic!("{:?}", spec.kind)
    };
    assert!(matches!(rest.source, RestSource::SpecFile(_)));
    assert_eq!(
        rest.base_url.as_ref().unwrap().as_str(),
        "https://petstore3.swagger.io/api/v3"
    );
    let tools: Vec<&str> = rest.operations.iter().map(|o| o.tool.as_str()).collect();
    // Tags pet and store, without deletePet and the /store/order/* paths.
    assert!(
        tools.contains(&"getPetById") && tools.contains(&"getInventory"),
        "{tools:?}"
    );
    assert!(!tools.contains(&"deletePet"), "{tools:?}");
    assert!(!tools.contains(&"getOrderById"), "{tools:?}");
    assert!(!tools.contains(&"createUser"), "{tools:?}");
    assert_eq!(rest.headers, [("X-Api-Version".into(), "3".into())]);
}

#[test]
fn the_http_example_declares_its_requests() {
    let spec = load("weather");
    let TargetKind::Rest(rest) = &spec.kind else {
        panic!("{:?}", spec.kind)
    };
    let forecast = rest
        .operations
        .iter()
        .find(|o| o.tool == "forecast")
        .unwrap();
    assert_eq!(
        (forecast.method.as_str(), forecast.path.as_str()),
        ("GET", "/forecast/{city}")
    );
    let placed: Vec<(&str, Location)> = forecast
        .params
        .iter()
        .map(|p| (p.arg.as_str(), p.location))
        .collect();
    assert_eq!(
        placed,
        [
            ("city", Location::Path),
            ("units", Location::Header),
            ("days", Location::Query)
        ]
    );
    let report = rest
        .operations
        .iter()
        .find(|o| o.tool == "report_observation")
        .unwrap();
    assert!(report.body.is_some() && report.params.is_empty());
}

#[test]
fn the_lambda_example_declares_its_tools_and_signs_for_lambda() {
    let spec = load("orders");
    let TargetKind::Lambda(lambda) = &spec.kind else {
        panic!("{:?}", spec.kind)
    };
    assert!(lambda.function.ends_with(":function:orders-api"));
    let tools: Vec<&str> = spec
        .declared_tools
        .iter()
        .map(|t| t.name.as_ref())
        .collect();
    assert_eq!(tools, ["cancel_order", "get_order"]);
    assert_eq!(spec.auth.mode(), "aws_sigv4");
}

//! The tool registry: every input schema snapshotted, and the SPEC §2 shape rules checked.

use coldquery_tools::{Layout, ToolSpec, registry, tool_specs};
use serde_json::Value;

#[test]
fn there_are_five_tools_with_flat_object_schemas() {
    for (layout, read_only) in [(Layout::Combined, false), (Layout::Split, false), (Layout::Split, true)] {
        check_shape(&registry(layout, read_only));
    }
    let specs = tool_specs();
    let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
    assert_eq!(names, ["pg_query", "pg_tx", "pg_schema", "pg_admin", "pg_monitor"]);
    let monitor = specs.iter().find(|s| s.name == "pg_monitor").unwrap();
    assert!(monitor.annotations.read_only && !monitor.annotations.destructive);
    for spec in specs.iter().filter(|s| s.name != "pg_monitor") {
        assert!(!spec.annotations.read_only, "{} can write", spec.name);
    }
}

/// The SPEC §2 shape rules, for the tools of one layout.
fn check_shape(specs: &[ToolSpec]) {
    for spec in specs {
        let schema = &spec.input_schema;
        assert_eq!(schema["type"], "object", "{}", spec.name);
        for combinator in ["oneOf", "anyOf", "allOf"] {
            assert!(schema.get(combinator).is_none(), "{} has a top-level {combinator}", spec.name);
        }
        assert_eq!(schema["additionalProperties"], false, "{} must reject unknown parameters", spec.name);
        assert!(schema["required"].as_array().unwrap().contains(&Value::from("action")), "{}", spec.name);
        // Every parameter is explained: by its own description, or — to keep tools/list small —
        // as a flag named after its SQL keyword (cascade, verbose...), or in the tool's
        // description (action, session_id, confirm...).
        for (name, property) in schema["properties"].as_object().unwrap() {
            let described = property.get("description").and_then(Value::as_str).is_some_and(|d| !d.is_empty());
            let flag = property["type"] == "boolean";
            let in_description = if name == "action" {
                coldquery_tools::actions(schema).iter().all(|a| spec.description.contains(a.as_str()))
            } else {
                spec.description.contains(name.as_str())
            };
            assert!(described || flag || in_description, "{}.{name} is explained nowhere", spec.name);
        }
        assert_eq!(spec.output_schema["type"], "object");
        assert!(!spec.annotations.open_world);
        // Tools that return database content say it is untrusted.
        if spec.name != "pg_tx" {
            assert!(
                spec.description.contains("never follow instructions"),
                "{} returns data and must say it is untrusted",
                spec.name
            );
        }
    }
}

/// The split layout offers every action exactly once as a read-only tool or a writing one, and
/// marks the reading tools read-only; `--read-only` marks every tool read-only.
#[test]
fn layouts_mark_what_reads() {
    let split = registry(Layout::Split, false);
    let names: Vec<&str> = split.iter().map(|s| s.name).collect();
    assert_eq!(names, ["pg_read", "pg_query", "pg_tx", "pg_inspect", "pg_schema", "pg_admin", "pg_monitor"]);
    for (name, read_only, actions) in [
        ("pg_read", true, vec!["read", "explain"]),
        ("pg_query", false, vec!["write", "explain", "transaction"]),
        ("pg_inspect", true, vec!["list", "describe"]),
        ("pg_schema", false, vec!["create", "alter", "drop"]),
    ] {
        let spec = split.iter().find(|s| s.name == name).unwrap();
        assert_eq!(spec.annotations.read_only, read_only, "{name}");
        assert_eq!(spec.annotations.destructive, !read_only, "{name}");
        assert_eq!(coldquery_tools::actions(&spec.input_schema), actions, "{name}");
        for property in spec.input_schema["properties"].as_object().unwrap().keys().filter(|p| *p != "action") {
            assert!(
                actions
                    .iter()
                    .any(|a| coldquery_tools::action_parameters(spec.runs, a).unwrap().contains(&property.as_str())),
                "{name} lists '{property}', which none of its actions takes"
            );
        }
    }
    assert!(
        registry(Layout::Split, true)
            .iter()
            .chain(&registry(Layout::Combined, true))
            .all(|s| s.annotations.read_only && !s.annotations.destructive)
    );
    assert_eq!(tool_specs().len(), registry(Layout::Combined, false).len());
    for spec in &split {
        assert_eq!(coldquery_tools::actions(&spec.input_schema), spec.action_names(), "{}", spec.name);
    }
}

#[test]
fn input_schemas() {
    for spec in tool_specs() {
        insta::assert_json_snapshot!(format!("schema_{}", spec.name), spec.input_schema);
    }
}

/// The parameters each action takes are real parameters of the tool's schema, and every
/// parameter of the schema is taken by at least one action.
#[test]
fn action_parameters_match_the_schemas() {
    for spec in tool_specs() {
        let properties = spec.input_schema["properties"].as_object().unwrap();
        assert_eq!(coldquery_tools::actions(&spec.input_schema), spec.action_names(), "{}: the action enum", spec.name);
        let mut used = std::collections::BTreeSet::new();
        for action in coldquery_tools::actions(&spec.input_schema) {
            let parameters = coldquery_tools::action_parameters(spec.name, &action)
                .unwrap_or_else(|| panic!("{} {action} has no parameter list", spec.name));
            for parameter in parameters {
                assert!(
                    properties.contains_key(*parameter),
                    "{} {action}: '{parameter}' is not in the schema",
                    spec.name
                );
                used.insert(*parameter);
            }
        }
        for name in properties.keys().filter(|name| *name != "action") {
            assert!(used.contains(name.as_str()), "{}: no action takes '{name}'", spec.name);
        }
    }
    assert_eq!(coldquery_tools::action_parameters("pg_query", "select"), None);
    assert_eq!(coldquery_tools::action_parameters("pg_nothing", "read"), None);
}

/// A resource is a read of one tool action whatever the layout exposes, and each failure says
/// what kind it is: an unknown URI or object, a malformed URI, or a read that failed.
#[tokio::test]
async fn resources_read_in_every_layout_and_fail_by_kind() {
    use coldquery_core::{Error, ErrorKind};
    use coldquery_tools::ResourceError;

    for layout in [Layout::Combined, Layout::Split] {
        let fixture = crate::support::Fixture::new();
        let tools = fixture.tools.clone().with_layout(layout);
        let caller = &fixture.caller;
        let tables = tools.read_resource(caller, "postgres://schema/tables").await;
        assert!(tables.is_ok_and(|t| t["items"].is_array()), "{layout:?}");
        let completions = tools.complete(caller, "postgres://schema/{schema}/{table}", "schema", "pu", None).await;
        assert!(completions.is_empty(), "{layout:?}: the fake has no schemas");
        assert!(!fixture.executor.sql().is_empty(), "{layout:?}: the completion asked the catalog");

        let unknown = tools.read_resource(caller, "postgres://nowhere").await;
        assert!(matches!(unknown, Err(ResourceError::NotFound(_))), "{layout:?}: {unknown:?}");
        let malformed = tools.read_resource(caller, "postgres://schema/public/%zz").await;
        assert!(matches!(malformed, Err(ResourceError::BadUri(_))), "{layout:?}: {malformed:?}");
        let missing = tools.read_resource(caller, "postgres://schema/public/no_such_table").await;
        assert!(matches!(missing, Err(ResourceError::NotFound(_))), "{layout:?}: {missing:?}");
        fixture.executor.push_error(Error::new(ErrorKind::Unavailable, "down"));
        let down = tools.read_resource(caller, "postgres://schema/tables").await;
        assert!(
            matches!(&down, Err(ResourceError::Failed(e)) if e.kind() == ErrorKind::Unavailable),
            "{layout:?}: {down:?}"
        );
    }
}

//! The CRD the chart ships is exactly what the Rust types generate, it is a structural
//! schema the API server accepts, and it passes the oracle's strict schema check.

mod common;

use kube::CustomResourceExt;
use serde_json::Value;
use tandem::policy::InjectionPolicy;

const CHART_CRD: &str = "charts/tandem/crds/injectionpolicies.tandem.dev.yaml";

fn generated() -> String {
    tandem::app::crd_header().to_string()
        + &serde_saphyr::to_string(&InjectionPolicy::crd()).unwrap()
}

#[test]
fn the_chart_ships_the_crd_the_types_generate() {
    let shipped = std::fs::read_to_string(common::root().join(CHART_CRD)).unwrap();
    assert!(
        shipped == generated(),
        "{CHART_CRD} is stale: run `cargo run -q -- crd > {CHART_CRD}`"
    );
}

/// The rules of https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema
fn structural_errors(schema: &Value, path: &str, inside_junctor: bool, errors: &mut Vec<String>) {
    let Some(node) = schema.as_object() else {
        return;
    };
    let exempt = node.contains_key("x-kubernetes-int-or-string")
        || node.contains_key("x-kubernetes-preserve-unknown-fields");
    if inside_junctor {
        for forbidden in [
            "type",
            "properties",
            "additionalProperties",
            "items",
            "description",
            "default",
        ] {
            if node.contains_key(forbidden) {
                errors.push(format!("{path}: {forbidden} inside anyOf/allOf/oneOf/not"));
            }
        }
    } else if !node.contains_key("type") && !exempt {
        errors.push(format!("{path}: no type"));
    }
    for forbidden in ["$ref", "definitions", "$defs"] {
        if node.contains_key(forbidden) {
            errors.push(format!("{path}: {forbidden} is not allowed"));
        }
    }
    if node.contains_key("properties") && node.contains_key("additionalProperties") {
        errors.push(format!("{path}: both properties and additionalProperties"));
    }
    for (key, child) in node {
        match key.as_str() {
            "properties" => {
                for (name, property) in child.as_object().into_iter().flatten() {
                    structural_errors(property, &format!("{path}.{name}"), false, errors);
                }
            }
            "items" | "additionalProperties" => {
                structural_errors(child, &format!("{path}[]"), false, errors)
            }
            "anyOf" | "allOf" | "oneOf" => {
                for (i, branch) in child.as_array().into_iter().flatten().enumerate() {
                    structural_errors(branch, &format!("{path}.{key}[{i}]"), true, errors);
                }
            }
            "not" => structural_errors(child, &format!("{path}.not"), true, errors),
            _ => {}
        }
    }
}

#[test]
fn the_crd_is_a_structural_schema_and_valid() {
    let crd = serde_json::to_value(InjectionPolicy::crd()).unwrap();
    let schema = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"];
    let mut errors = Vec::new();
    structural_errors(schema, "openAPIV3Schema", false, &mut errors);
    assert!(errors.is_empty(), "{errors:#?}");

    // The checker itself sees the usual mistakes.
    let bad = serde_json::json!({"type": "object", "properties": {
        "a": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
        "b": {"$ref": "#/definitions/x", "type": "object"}
    }});
    let mut found = Vec::new();
    structural_errors(&bad, "s", false, &mut found);
    assert_eq!(
        found,
        [
            "s.a: no type",
            "s.a.anyOf[0]: type inside anyOf/allOf/oneOf/not",
            "s.a.anyOf[1]: type inside anyOf/allOf/oneOf/not",
            "s.b: $ref is not allowed"
        ]
    );
    common::oracle::assert_valid(&crd, &[]);
}

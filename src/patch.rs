//! [`Plan`] → RFC 6902 JSON patch. The only place JSON pointers are built, always from
//! tokens (`tandem.dev/x` → `tandem.dev~1x`), and only `add` operations: a missing parent
//! (`annotations`, `volumes`, `initContainers`, a container's `volumeMounts`) is added whole
//! instead of appended to.

use json_patch::{AddOperation, Patch, PatchOperation};
use jsonptr::PointerBuf;
use serde_json::Value;

use crate::{inject::Plan, pod::Pod};

/// The operations that turn `pod` into `pod` + `plan`.
pub fn render(pod: &Pod<'_>, plan: &Plan) -> Patch {
    let mut ops = Vec::new();
    let mut add = |tokens: &[&str], value: Value| {
        ops.push(PatchOperation::Add(AddOperation {
            path: PointerBuf::from_tokens(tokens.iter().copied()),
            value,
        }));
    };
    if !plan.annotations.is_empty() {
        match &pod.metadata.annotations {
            None => add(&["metadata", "annotations"], json(&plan.annotations)),
            Some(_) => {
                for (key, value) in &plan.annotations {
                    add(
                        &["metadata", "annotations", key],
                        Value::String(value.clone()),
                    );
                }
            }
        }
    }

    if !plan.init_containers.is_empty() {
        match &pod.spec.init_containers {
            None => add(&["spec", "initContainers"], json(&plan.init_containers)),
            Some(_) => {
                // Inserting at 0, 1, 2… keeps the plan's order ahead of the pod's own.
                for (index, container) in plan.init_containers.iter().enumerate() {
                    add(
                        &["spec", "initContainers", &index.to_string()],
                        json(container),
                    );
                }
            }
        }
    }

    for container in &plan.containers {
        add(&["spec", "containers", "-"], json(container));
    }

    if !plan.volumes.is_empty() {
        match &pod.spec.volumes {
            None => add(&["spec", "volumes"], json(&plan.volumes)),
            Some(_) => {
                for volume in &plan.volumes {
                    add(&["spec", "volumes", "-"], json(volume));
                }
            }
        }
    }

    let mut started = Vec::new();
    for (index, mount) in &plan.mounts {
        let index_token = index.to_string();
        let has_mounts =
            pod.spec.containers[*index].volume_mounts.is_some() || started.contains(index);
        if has_mounts {
            add(
                &["spec", "containers", &index_token, "volumeMounts", "-"],
                json(mount),
            );
        } else {
            add(
                &["spec", "containers", &index_token, "volumeMounts"],
                Value::Array(vec![json(mount)]),
            );
            started.push(*index);
        }
    }

    Patch(ops)
}

/// The plan's types (k8s-openapi structs, string maps) always serialize.
fn json<T: serde::Serialize>(value: &T) -> Value {
    serde_json::to_value(value).expect("plan types serialize to JSON")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject;

    fn apply(pod_json: &str, plan: &Plan) -> Value {
        let pod = Pod::parse(pod_json).unwrap();
        let patch = render(&pod, plan);
        let mut doc: Value = serde_json::from_str(pod_json).unwrap();
        json_patch::patch(&mut doc, &patch).unwrap();
        doc
    }

    fn plan_with_annotation(key: &str) -> Plan {
        let mut plan = Plan::default();
        plan.annotations.insert(key.into(), "v".into());
        plan
    }

    #[test]
    fn keys_with_slash_and_tilde_are_escaped() {
        let key = "tandem.dev/a~b/c";
        let pod = Pod::parse(r#"{"metadata": {"annotations": {}}}"#).unwrap();
        let patch = render(&pod, &plan_with_annotation(key));
        let text = serde_json::to_string(&patch).unwrap();
        assert!(
            text.contains("/metadata/annotations/tandem.dev~1a~0b~1c"),
            "{text}"
        );
        let doc = apply(
            r#"{"metadata": {"annotations": {}}}"#,
            &plan_with_annotation(key),
        );
        assert_eq!(doc["metadata"]["annotations"][key], "v");
    }

    proptest::proptest! {
        /// Any key, however many `/`, `~`, `~0` and `~1` it holds, lands as itself.
        #[test]
        fn any_annotation_key_round_trips(
            keys in proptest::collection::btree_set("[a-z/~01.]{1,12}", 1..6),
            existing in proptest::bool::ANY,
        ) {
            let mut plan = Plan::default();
            for key in &keys {
                plan.annotations.insert(key.clone(), format!("value of {key}"));
            }
            let pod = if existing { r#"{"metadata": {"annotations": {"a/b": "c"}}}"# } else { r#"{"metadata": {}}"# };
            let doc = apply(pod, &plan);
            for key in &keys {
                proptest::prop_assert_eq!(&doc["metadata"]["annotations"][key], &format!("value of {key}"));
            }
        }
    }

    #[test]
    fn missing_parents_are_added_whole() {
        let mut plan = plan_with_annotation("tandem.dev/injected");
        plan.init_containers.push(Default::default());
        plan.volumes.push(inject::empty_dir("v".into()));
        plan.mounts.push((0, inject::mount("v", "/x", false)));
        plan.mounts.push((0, inject::mount("v", "/y", false)));
        let doc = apply(
            r#"{"metadata": {}, "spec": {"containers": [{"name": "a"}]}}"#,
            &plan,
        );
        assert_eq!(doc["metadata"]["annotations"]["tandem.dev/injected"], "v");
        assert_eq!(doc["spec"]["initContainers"].as_array().unwrap().len(), 1);
        assert_eq!(doc["spec"]["volumes"][0]["name"], "v");
        let mounts = doc["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .unwrap();
        assert_eq!(mounts.len(), 2);
    }

    #[test]
    fn init_containers_go_first_in_plan_order() {
        let mut plan = Plan::default();
        for name in ["one", "two"] {
            plan.init_containers
                .push(k8s_openapi::api::core::v1::Container {
                    name: name.into(),
                    ..Default::default()
                });
        }
        let doc = apply(
            r#"{"spec": {"containers": [], "initContainers": [{"name": "own"}]}}"#,
            &plan,
        );
        let names: Vec<&str> = doc["spec"]["initContainers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["one", "two", "own"]);
    }
}

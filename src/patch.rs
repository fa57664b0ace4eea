//! [`Plan`] → RFC 6902 JSON patch. The only place JSON pointers are built, always from
//! tokens (`tandem.dev/x` → `tandem.dev~1x`), and only `add` operations: a missing parent
//! (`annotations`, `volumes`, `initContainers`, a container's `volumeMounts`) is added whole
//! instead of appended to.

use serde::Serialize;

use crate::{inject::Plan, pod::Pod};

/// The operations that turn `pod` into `pod` + `plan`, as JSON. Each value is serialized
/// straight into the output, never through an intermediate `serde_json::Value`.
pub fn render(pod: &Pod<'_>, plan: &Plan) -> Vec<u8> {
    // A typical patch is a few kilobytes: start there rather than grow (and copy) to it.
    let mut ops = Ops {
        out: Vec::with_capacity(4096),
        path: String::with_capacity(64),
    };

    if !plan.annotations.is_empty() {
        match &pod.metadata.annotations {
            None => ops.add(&["metadata", "annotations"], &plan.annotations),
            Some(_) => {
                for (key, value) in &plan.annotations {
                    ops.add(&["metadata", "annotations", key], value);
                }
            }
        }
    }

    if !plan.init_containers.is_empty() {
        match &pod.spec.init_containers {
            None => ops.add(&["spec", "initContainers"], &plan.init_containers),
            Some(_) => {
                // Inserting at 0, 1, 2… keeps the plan's order ahead of the pod's own.
                for (index, container) in plan.init_containers.iter().enumerate() {
                    ops.add(&["spec", "initContainers", &index.to_string()], container);
                }
            }
        }
    }

    for container in &plan.containers {
        ops.add(&["spec", "containers", "-"], container);
    }

    if !plan.volumes.is_empty() {
        match &pod.spec.volumes {
            None => ops.add(&["spec", "volumes"], &plan.volumes),
            Some(_) => {
                for volume in &plan.volumes {
                    ops.add(&["spec", "volumes", "-"], volume);
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
            ops.add(
                &["spec", "containers", &index_token, "volumeMounts", "-"],
                mount,
            );
        } else {
            ops.add(
                &["spec", "containers", &index_token, "volumeMounts"],
                std::slice::from_ref(mount),
            );
            started.push(*index);
        }
    }

    ops.finish()
}

/// A JSON array of `add` operations being written.
struct Ops {
    out: Vec<u8>,
    /// The pointer being built, kept between operations so it is allocated once.
    path: String,
}

impl Ops {
    fn add<T: Serialize + ?Sized>(&mut self, tokens: &[&str], value: &T) {
        self.out.push(if self.out.is_empty() { b'[' } else { b',' });
        self.out.extend_from_slice(br#"{"op":"add","path":"#);
        pointer(&mut self.path, tokens);
        // The plan's types (k8s-openapi structs, string maps) and strings always serialize.
        serde_json::to_writer(&mut self.out, self.path.as_str()).expect("a string serializes");
        self.out.extend_from_slice(br#","value":"#);
        serde_json::to_writer(&mut self.out, value).expect("plan types serialize to JSON");
        self.out.push(b'}');
    }

    fn finish(mut self) -> Vec<u8> {
        if self.out.is_empty() {
            self.out.push(b'[');
        }
        self.out.push(b']');
        self.out
    }
}

/// The JSON pointer (RFC 6901) made of `tokens`, into `path`: each token after a `/`, with
/// `~` written `~0` and `/` written `~1`.
fn pointer(path: &mut String, tokens: &[&str]) {
    path.clear();
    for token in tokens {
        path.push('/');
        let mut rest = *token;
        while let Some(at) = rest.find(['~', '/']) {
            path.push_str(&rest[..at]);
            path.push_str(if rest.as_bytes()[at] == b'~' {
                "~0"
            } else {
                "~1"
            });
            rest = &rest[at + 1..];
        }
        path.push_str(rest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject;
    use serde_json::Value;

    fn apply(pod_json: &str, plan: &Plan) -> Value {
        let pod = Pod::parse(pod_json).unwrap();
        let patch = render(&pod, plan);
        let mut doc: Value = serde_json::from_str(pod_json).unwrap();
        crate::engine::apply(&mut doc, &patch).unwrap();
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
        let text = String::from_utf8(patch).unwrap();
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
        /// The pointer written is the one jsonptr builds from the same tokens.
        #[test]
        fn pointers_are_rfc_6901(tokens in proptest::collection::vec("[a-z/~01.]{0,8}", 0..5)) {
            let tokens: Vec<&str> = tokens.iter().map(String::as_str).collect();
            let mut path = String::from("left over");
            pointer(&mut path, &tokens);
            let expected = jsonptr::PointerBuf::from_tokens(tokens.iter().copied());
            proptest::prop_assert_eq!(path.as_str(), expected.as_str());
        }

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

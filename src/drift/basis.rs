//! The pod as the webhook saw it when it was created: what today's policies are applied to
//! again, so that the answer can be compared with what the pod carries.
//!
//! For a pod a controller made, that is its owner's pod template (the ReplicaSet's, the
//! Job's, or the StatefulSet's or DaemonSet's ControllerRevision the pod was made from):
//! exactly what the controller sent, with the pod's own labels (the controller adds a few,
//! and policies may select on them). For a bare pod, nothing but the pod itself is left: it
//! is the stored pod less what tandem adds (containers and volumes named `tandem-…`, the
//! app containers' mounts of those volumes, the `injected` annotation). A template that
//! itself carries tandem's containers (a manifest that went through `tandem inject`) is
//! stripped the same way, and says so: restarting its workload brings back the same pods.

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use serde_json::{Map, Value};

use super::compare::{INJECTED_PREFIX, Names};
use crate::annotations::INJECTED;

/// A pod as it was before mutation.
#[derive(Clone, Debug)]
pub struct Basis {
    /// As JSON, for the engine.
    pub pod: Value,
    pub names: Names,
    /// Where it came from, for the report: `ReplicaSet web-7d9f8b6c5`, `the pod itself`.
    pub source: String,
    /// The template already held tandem's containers (`tandem inject`).
    pub injected_in_template: bool,
}

impl Basis {
    /// The pod `pod` as its controller asked for it: `template`, with the pod's names and
    /// labels.
    pub fn from_template(
        pod: &Pod,
        template: &PodTemplateSpec,
        source: String,
        prefix: &str,
    ) -> Basis {
        let template = serde_json::to_value(template).unwrap_or(Value::Null);
        let mut metadata = Map::new();
        for (key, value) in [
            (
                "name",
                pod.metadata.name.as_ref().map(|n| Value::from(n.as_str())),
            ),
            (
                "generateName",
                pod.metadata
                    .generate_name
                    .as_ref()
                    .map(|n| Value::from(n.as_str())),
            ),
            (
                "namespace",
                pod.metadata
                    .namespace
                    .as_ref()
                    .map(|n| Value::from(n.as_str())),
            ),
            (
                "labels",
                pod.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| serde_json::to_value(l).ok()),
            ),
            (
                "annotations",
                template.pointer("/metadata/annotations").cloned(),
            ),
        ] {
            if let Some(value) = value {
                metadata.insert(key.into(), value);
            }
        }
        let mut basis = serde_json::json!({
            "metadata": metadata,
            "spec": template.get("spec").cloned().unwrap_or_else(|| Value::Object(Map::new())),
        });
        let injected_in_template = strip(&mut basis, prefix);
        Basis {
            names: names(&basis),
            pod: basis,
            source,
            injected_in_template,
        }
    }

    /// A bare pod: the stored pod less what tandem added.
    pub fn stripped(pod: &Pod, source: String, prefix: &str) -> Basis {
        let mut basis = serde_json::to_value(pod).unwrap_or(Value::Null);
        strip(&mut basis, prefix);
        Basis {
            names: names(&basis),
            pod: basis,
            source,
            injected_in_template: false,
        }
    }
}

/// Removes tandem's part from a pod (or template) in place; says whether it had any
/// containers or volumes of tandem's.
fn strip(pod: &mut Value, prefix: &str) -> bool {
    if let Some(annotations) = pod
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(&format!("{prefix}/{INJECTED}"));
    }
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return false;
    };
    let ours = |item: &Value| {
        item.get("name")
            .and_then(Value::as_str)
            .is_some_and(|name| name.starts_with(INJECTED_PREFIX))
    };
    let mut removed = false;
    let mut gone_volumes = Vec::new();
    if let Some(volumes) = spec.get_mut("volumes").and_then(Value::as_array_mut) {
        gone_volumes = volumes
            .iter()
            .filter(|v| ours(v))
            .filter_map(|v| v.get("name").and_then(Value::as_str).map(String::from))
            .collect();
        volumes.retain(|v| !ours(v));
        removed |= !gone_volumes.is_empty();
    }
    for list in ["initContainers", "containers"] {
        let Some(containers) = spec.get_mut(list).and_then(Value::as_array_mut) else {
            continue;
        };
        let before = containers.len();
        containers.retain(|c| !ours(c));
        removed |= containers.len() != before;
        for container in containers {
            if let Some(mounts) = container
                .get_mut("volumeMounts")
                .and_then(Value::as_array_mut)
            {
                mounts.retain(|m| {
                    m.get("name")
                        .and_then(Value::as_str)
                        .is_none_or(|name| !gone_volumes.iter().any(|v| v == name))
                });
            }
        }
    }
    removed
}

fn names(pod: &Value) -> Names {
    let collect = |pointer: &str| {
        pod.pointer(pointer)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|item| item.get("name").and_then(Value::as_str).map(String::from))
    };
    Names {
        containers: collect("/spec/containers")
            .chain(collect("/spec/initContainers"))
            .collect(),
        volumes: collect("/spec/volumes").collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_bare_pod_loses_what_tandem_added_and_keeps_the_rest() {
        let stored = pod(serde_json::json!({
            "metadata": {"name": "lonely", "annotations": {"tandem.dev/injected": "log-shipper", "tandem.dev/log-shipper": "true"}},
            "spec": {
                "initContainers": [{"name": "tandem-log-shipper"}, {"name": "setup"}],
                "containers": [{"name": "app", "volumeMounts": [{"name": "tandem-logs", "mountPath": "/var/log/app"}, {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]}],
                "volumes": [{"name": "tandem-logs", "emptyDir": {}}, {"name": "tandem-log-state", "emptyDir": {}}, {"name": "kube-api-access-x", "projected": {"sources": []}}]
            }
        }));
        let basis = Basis::stripped(&stored, "the pod".into(), "tandem.dev");
        assert_eq!(
            basis.pod["metadata"]["annotations"],
            serde_json::json!({"tandem.dev/log-shipper": "true"})
        );
        assert_eq!(
            basis.pod["spec"]["initContainers"],
            serde_json::json!([{"name": "setup"}])
        );
        assert_eq!(
            basis.pod["spec"]["containers"][0]["volumeMounts"],
            serde_json::json!([{"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}])
        );
        assert_eq!(
            basis.names.volumes.into_iter().collect::<Vec<_>>(),
            ["kube-api-access-x"]
        );
        assert_eq!(
            basis.names.containers.into_iter().collect::<Vec<_>>(),
            ["app", "setup"]
        );
    }

    #[test]
    fn a_template_keeps_the_pods_labels_and_its_own_annotations() {
        let stored = pod(serde_json::json!({
            "metadata": {"generateName": "web-7d9-", "namespace": "shop",
                         "labels": {"app": "web", "pod-template-hash": "7d9"},
                         "annotations": {"tandem.dev/injected": "log-shipper", "tandem.dev/log-shipper": "true", "kubectl.kubernetes.io/default-container": "app"}},
            "spec": {"containers": [{"name": "app"}], "initContainers": [{"name": "tandem-log-shipper"}]}
        }));
        let template: PodTemplateSpec = serde_json::from_value(serde_json::json!({
            "metadata": {"labels": {"app": "web"}, "annotations": {"tandem.dev/log-shipper": "true"}},
            "spec": {"containers": [{"name": "app"}]}
        }))
        .unwrap();
        let basis = Basis::from_template(
            &stored,
            &template,
            "ReplicaSet web-7d9".into(),
            "tandem.dev",
        );
        assert_eq!(basis.pod["metadata"]["labels"]["pod-template-hash"], "7d9");
        assert_eq!(basis.pod["metadata"]["namespace"], "shop");
        assert_eq!(
            basis.pod["metadata"]["annotations"],
            serde_json::json!({"tandem.dev/log-shipper": "true"})
        );
        assert!(!basis.injected_in_template);
        assert_eq!(
            basis.names.containers.into_iter().collect::<Vec<_>>(),
            ["app"]
        );
    }
}

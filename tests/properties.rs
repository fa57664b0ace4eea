//! Property tests over generated pods and annotation sets:
//! - idempotency: a pod tandem has mutated yields no patch when reviewed again;
//! - escaping: whatever keys the pod's annotations have, the patch applies, leaves them as
//!   they were, and adds tandem's own;
//! - every admitted pod is valid for the API server (oracle, "restricted" for what was added).

mod common;

use common::{assert_valid_pod, mutate, snapshot};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// One pattern's annotations, with values drawn from what each option accepts.
fn pattern_annotations() -> impl Strategy<Value = Vec<(String, String)>> {
    let log = (
        prop::sample::select(vec!["true", "fluent-bit-forward", "fluent-bit-loki"]),
        prop::sample::select(vec!["/var/log/app", "/logs", "/srv/app/log"]),
    )
        .prop_map(|(profile, path)| {
            vec![
                ("tandem.dev/log-shipper".into(), profile.into()),
                ("tandem.dev/log-shipper.path".into(), path.into()),
            ]
        });
    let metrics = prop::sample::select(vec!["redis", "nginx", "postgres", "mysql", "statsd"])
        .prop_map(|profile| vec![("tandem.dev/metrics-adapter".into(), profile.into())]);
    let ambassador = (
        prop::sample::select(vec!["tcp", "http"]),
        prop::collection::vec(("[a-z]{1,8}", 1u16..=65535, 1u32..=10), 1..4),
        6000u16..7000,
        any::<bool>(),
    )
        .prop_map(|(profile, upstreams, port, tls)| {
            let upstream = upstreams
                .iter()
                .map(|(host, port, weight)| format!("{host}.db:{port}={weight}"))
                .collect::<Vec<_>>()
                .join(",");
            vec![
                ("tandem.dev/ambassador".into(), profile.into()),
                ("tandem.dev/ambassador.upstream".into(), upstream),
                ("tandem.dev/ambassador.port".into(), port.to_string()),
                ("tandem.dev/ambassador.tls".into(), tls.to_string()),
            ]
        });
    let git = (
        "[a-z]{1,10}",
        prop::option::of(prop::sample::select(vec!["10s", "1m", "1m30s"])),
        prop::sample::select(vec!["/srv/site", "/usr/share/nginx/html", "/data/repo"]),
    )
        .prop_map(|(repo, sync, path)| {
            let mut pairs = vec![
                (
                    "tandem.dev/git-clone".into(),
                    format!("https://github.com/example/{repo}.git"),
                ),
                ("tandem.dev/git-clone.path".into(), path.into()),
            ];
            if let Some(sync) = sync {
                pairs.push(("tandem.dev/git-clone.sync".into(), sync.into()));
            }
            pairs
        });
    (
        prop::option::of(log),
        prop::option::of(metrics),
        prop::option::of(ambassador),
        prop::option::of(git),
    )
        .prop_map(|(a, b, c, d)| [a, b, c, d].into_iter().flatten().flatten().collect())
}

/// Annotation keys as Kubernetes allows them: with and without a `prefix/`, so every
/// pointer to them needs escaping. (Keys with `~` cannot exist in a pod; the patch module's
/// own property test covers them.)
fn other_key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}\\.example\\.com/[a-z]([a-z0-9._-]{0,9}[a-z0-9])?",
        "[a-z]([a-z0-9._-]{0,9}[a-z0-9])?",
        // Not ours: the prefix differs.
        Just("sidecar.tandem.dev/log-shipper".to_string()),
    ]
}

fn generated_pod() -> impl Strategy<Value = Value> {
    (
        pattern_annotations(),
        prop::collection::btree_map(other_key(), "[ -~]{0,12}", 0..4),
        1usize..4,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ours, theirs, containers, with_init, with_volumes)| {
            let mut annotations: Map<String, Value> = theirs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect();
            for (k, v) in ours {
                annotations.insert(k, Value::String(v));
            }
            let containers: Vec<Value> = (0..containers)
                .map(|i| {
                    json!({
                        "name": format!("app-{i}"),
                        "image": "ghcr.io/example/app:1",
                        "ports": [{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}],
                        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}
                    })
                })
                .collect();
            let mut pod = json!({
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "gen-", "namespace": "default"},
                "spec": {"containers": containers}
            });
            if !annotations.is_empty() {
                pod["metadata"]["annotations"] = Value::Object(annotations);
            }
            if with_init {
                pod["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox:1.37"}]);
            }
            if with_volumes {
                pod["spec"]["volumes"] = json!([{"name": "scratch", "emptyDir": {}}]);
                pod["spec"]["containers"][0]["volumeMounts"] =
                    json!([{"name": "scratch", "mountPath": "/scratch"}]);
            }
            pod
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn mutation_is_idempotent_escapes_keys_and_yields_valid_pods(pod in generated_pod()) {
        let snap = snapshot(Vec::new(), None);
        let (evaluation, result) = mutate(&snap, "default", &pod);
        prop_assert!(evaluation.denial().is_none(), "{:?}", evaluation.denial());
        let result = result.unwrap();

        // Their annotations are untouched, ours are there.
        if let Some(before) = pod["metadata"]["annotations"].as_object() {
            for (key, value) in before {
                prop_assert_eq!(&result["metadata"]["annotations"][key], value, "{}", key);
            }
        }
        if !evaluation.patterns().is_empty() {
            let injected = result["metadata"]["annotations"]["tandem.dev/injected"].as_str().unwrap();
            prop_assert_eq!(injected.split(',').count(), evaluation.patterns().len());
        }

        // Reviewing the result again adds nothing.
        let (again, _) = mutate(&snap, "default", &result);
        prop_assert!(again.denial().is_none());
        prop_assert!(again.outcome.plan.is_empty(), "second pass planned {:?}", again.outcome.plan.patterns);

        assert_valid_pod(&result);
    }
}

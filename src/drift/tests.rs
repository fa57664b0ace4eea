//! `check` end to end: pods the engine itself mutated are current under the same
//! policies, stale under changed ones, and denied when today's policies would deny them.

use k8s_openapi::api::core::v1::{Pod as StoredPod, PodTemplateSpec};
use serde_json::{Value, json};

use super::{Verdict, basis::Basis, check, compare::Difference};
use crate::{
    engine,
    pod::Pod,
    policy::{InjectionPolicy, snapshot::Snapshot, source::builtin},
};

const PREFIX: &str = "tandem.dev";

fn snapshot(extra: &[&str]) -> Snapshot {
    let mut policies = builtin::policies();
    for yaml in extra {
        let policy: InjectionPolicy = serde_saphyr::from_str(&format!(
            "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\n{yaml}"
        ))
        .unwrap();
        policies.push(policy);
    }
    let (snapshot, errors) = Snapshot::build(PREFIX, policies, None);
    assert!(errors.is_empty(), "{errors:?}");
    snapshot
}

fn created() -> Value {
    json!({
        "metadata": {"name": "web-1", "namespace": "shop", "labels": {"app": "web"},
                     "annotations": {"tandem.dev/log-shipper": "true", "tandem.dev/metrics-adapter": "redis"}},
        "spec": {"containers": [{"name": "web", "image": "ghcr.io/example/web:1.0"}]}
    })
}

/// `pod` as the webhook would have mutated it under `snapshot`.
fn mutated(snapshot: &Snapshot, pod: &Value) -> StoredPod {
    let json = pod.to_string();
    let parsed = Pod::parse(&json).unwrap();
    let evaluation = engine::evaluate(snapshot, "shop", &parsed);
    let patch = engine::patch(&parsed, &evaluation).expect("something to inject");
    let mut stored = pod.clone();
    engine::apply(&mut stored, &patch).unwrap();
    serde_json::from_value(stored).unwrap()
}

fn verdicts(snapshot: &Snapshot, stored: &StoredPod) -> [Verdict; 2] {
    let template: PodTemplateSpec = serde_json::from_value(json!({
        "metadata": created()["metadata"].clone(), "spec": created()["spec"].clone()
    }))
    .unwrap();
    let spec = stored.spec.clone().unwrap();
    [
        check(
            snapshot,
            "shop",
            &spec,
            &Basis::stripped(stored, "the pod".into(), PREFIX),
        ),
        check(
            snapshot,
            "shop",
            &spec,
            &Basis::from_template(stored, &template, "a template".into(), PREFIX),
        ),
    ]
}

#[test]
fn a_pod_mutated_under_the_same_policies_is_current() {
    let snapshot = snapshot(&[]);
    let stored = mutated(&snapshot, &created());
    assert_eq!(
        verdicts(&snapshot, &stored),
        [Verdict::Current, Verdict::Current]
    );
}

#[test]
fn a_changed_profile_is_named_with_both_values() {
    let stored = mutated(&snapshot(&[]), &created());
    let today = snapshot(&[
        "metadata: {name: newer-shipper}\nspec:\n  priority: 10\n  profiles:\n    log-shipper:\n      fluent-bit:\n        image: cr.fluentbit.io/fluent/fluent-bit:4.3.0\n        args: [\"-i\", \"tail\", \"-p\", \"path={{path}}/*.log\", \"-o\", \"stdout\"]\n        resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}\n",
    ]);
    for verdict in verdicts(&today, &stored) {
        let Verdict::Stale(differences) = verdict else {
            panic!("not stale: {verdict:?}")
        };
        let image = Difference {
            subject: "container tandem-log-shipper".into(),
            field: "image".into(),
            carried: Some("cr.fluentbit.io/fluent/fluent-bit:4.2.4".into()),
            expected: Some("cr.fluentbit.io/fluent/fluent-bit:4.3.0".into()),
        };
        assert!(differences.contains(&image), "{differences:#?}");
        assert!(
            differences
                .iter()
                .all(|d| d.subject == "container tandem-log-shipper"),
            "only the shipper changed: {differences:#?}"
        );
    }
}

#[test]
fn a_pattern_no_longer_switched_on_is_carried_but_not_expected() {
    let mut pod = created();
    let stored = mutated(&snapshot(&[]), &pod);
    // The same pod without the metrics adapter's annotation: as if a policy had switched it
    // on then and no longer does.
    pod["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("tandem.dev/metrics-adapter");
    let mut stripped = stored.clone();
    stripped
        .metadata
        .annotations
        .as_mut()
        .unwrap()
        .remove("tandem.dev/metrics-adapter");
    let basis = Basis::stripped(&stripped, "the pod".into(), PREFIX);
    let Verdict::Stale(differences) = check(
        &snapshot(&[]),
        "shop",
        &stored.spec.clone().unwrap(),
        &basis,
    ) else {
        panic!("not stale")
    };
    let gone: Vec<&str> = differences
        .iter()
        .filter(|d| d.field.is_empty() && d.expected.is_none())
        .map(|d| d.subject.as_str())
        .collect();
    assert_eq!(
        gone,
        ["container tandem-metrics-adapter"],
        "{differences:#?}"
    );
}

#[test]
fn a_pod_todays_policies_would_deny_says_why() {
    let stored = mutated(&snapshot(&[]), &created());
    let today = snapshot(&[
        "metadata: {name: own-registry}\nspec: {priority: 50, allowedImages: [\"registry.example/*\"]}\n",
    ]);
    for verdict in verdicts(&today, &stored) {
        let Verdict::Denied(message) = verdict else {
            panic!("not denied: {verdict:?}")
        };
        assert!(message.contains("own-registry"), "{message}");
    }
}

//! `tandem inject` and `tandem explain`, run as the real binary on YAML: every workload kind,
//! multi-document in and out, stdin, the webhook's own denial message, idempotency. Every
//! object `inject` writes is judged by the oracle, and so is the pod each template makes.

mod common;

use std::{
    io::Write,
    process::{Command, Output, Stdio},
};

use common::{TestServer, assert_valid_pod, container_names, pod, review, root};
use serde_json::{Value, json};

fn tandem(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the tandem binary runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

fn documents(yaml: &[u8]) -> Vec<Value> {
    serde_saphyr::from_multiple(std::str::from_utf8(yaml).unwrap()).expect("inject writes YAML")
}

/// The pod a workload's template makes, as the controller would create it.
fn pod_of(object: &Value) -> Option<Value> {
    let template = match object["kind"].as_str()? {
        "Pod" => return Some(object.clone()),
        "CronJob" => &object["spec"]["jobTemplate"]["spec"]["template"],
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" => {
            &object["spec"]["template"]
        }
        _ => return None,
    };
    let mut metadata = template["metadata"].clone();
    metadata["name"] = json!(format!(
        "{}-0",
        object["metadata"]["name"].as_str().unwrap()
    ));
    Some(json!({"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": template["spec"]}))
}

const WORKLOADS: &str = "tests/data/manifests/workloads.yaml";

#[test]
fn inject_mutates_every_workload_kind_and_leaves_others_alone() {
    let output = tandem(&["inject", "-f", WORKLOADS], None);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let docs = documents(&output.stdout);
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "Pod",
            "Deployment",
            "StatefulSet",
            "DaemonSet",
            "ReplicaSet",
            "Job",
            "CronJob",
            "List",
            "ConfigMap"
        ]
    );
    let expected: [(&str, &str); 8] = [
        ("web", "tandem-log-shipper"),
        ("site", "tandem-git-sync"),
        ("cache", "tandem-metrics-adapter"),
        ("node-agent", "tandem-log-shipper"),
        ("cart", "tandem-ambassador"),
        ("migrate", "tandem-git-clone"),
        ("report", "tandem-log-shipper"),
        ("api", "tandem-ambassador"),
    ];
    let mut objects: Vec<&Value> = docs.iter().filter(|d| d["kind"] != "List").collect();
    objects.extend(docs[7]["items"].as_array().unwrap());
    for (name, injected) in expected {
        let object = objects
            .iter()
            .find(|o| o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in the output"));
        common::oracle::assert_valid(object, &[]);
        let pod = pod_of(object).unwrap();
        assert!(
            container_names(&pod).contains(&injected.to_string()),
            "{name}: {pod}"
        );
        assert_valid_pod(&pod);
    }
    let settings = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "settings")
        .unwrap();
    assert_eq!(
        settings["data"]["tandem.dev/log-shipper"],
        "not an annotation, left alone"
    );
    let untouched = objects
        .iter()
        .find(|o| o["metadata"]["name"] == "untouched")
        .unwrap();
    assert_eq!(untouched["data"], json!({"key": "value"}));
}

#[test]
fn inject_reads_standard_input_and_a_second_pass_changes_nothing() {
    let input = std::fs::read_to_string(root().join(WORKLOADS)).unwrap();
    let first = tandem(&["inject", "-f", "-"], Some(&input));
    assert!(first.status.success());
    let second = tandem(
        &["inject", "-f", "-"],
        Some(std::str::from_utf8(&first.stdout).unwrap()),
    );
    assert!(second.status.success());
    assert_eq!(documents(&first.stdout), documents(&second.stdout));
}

#[tokio::test]
async fn inject_denies_with_the_message_the_webhook_gives() {
    let bad = pod(&[
        ("tandem.dev/log-shipper", "true"),
        ("tandem.dev/log-shipper.path", "logs"),
    ]);
    let server = TestServer::start().await;
    let (_, response) = server
        .post(&server.client(false), &review(&bad, "default"))
        .await;
    let message = response["response"]["status"]["message"]
        .as_str()
        .unwrap()
        .to_string();

    let output = tandem(&["inject", "-f", "-"], Some(&bad.to_string()));
    assert_eq!(output.status.code(), Some(1));
    assert!(output.stdout.is_empty());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.trim(), format!("Pod default/app: denied: {message}"));
}

#[test]
fn inject_runs_the_policies_it_is_given() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("classic.yaml"),
        "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {name: classic}\nspec:\n  sidecarMode: classic\n  defaults:\n    log-shipper: {}\n",
    )
    .unwrap();
    let plain = pod(&[]);
    let output = tandem(
        &[
            "inject",
            "-f",
            "-",
            "--policies",
            dir.path().to_str().unwrap(),
        ],
        Some(&plain.to_string()),
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result = documents(&output.stdout).remove(0);
    assert_eq!(container_names(&result), ["web", "tandem-log-shipper"]);
    assert_valid_pod(&result);
}

#[test]
fn explain_says_what_applies_why_and_what_is_added() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("payments.yaml"),
        r#"apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-logging}
spec:
  priority: 100
  selector:
    namespaces: {matchLabels: {team: payments}}
  defaults:
    log-shipper: {profile: fluent-bit-loki, path: /var/log/payments}
  enforce: [log-shipper]
"#,
    )
    .unwrap();
    let mut annotated = pod(&[
        ("tandem.dev/inject", "false"),
        ("tandem.dev/metrics-adapter", "redis"),
    ]);
    // The namespace comes from -n, as for a manifest applied with kubectl -n.
    annotated["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    let policies = dir.path().to_str().unwrap();
    let args = [
        "explain",
        "-f",
        "-",
        "--policies",
        policies,
        "-n",
        "payments",
        "--namespace-labels",
        "team=payments",
        "-o",
        "json",
    ];
    let output = tandem(&args, Some(&annotated.to_string()));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let explained: Value = serde_json::from_slice(&output.stdout).unwrap();
    let first = &explained[0];
    assert_eq!(first["object"], "Pod payments/app");
    let patterns = first["patterns"].as_array().unwrap();
    // inject: "false" opts the pod out of its own metrics-adapter annotation too; only what
    // the policy enforces stays.
    assert_eq!(patterns.len(), 1, "{patterns:?}");
    assert_eq!(patterns[0]["pattern"], "log-shipper");
    assert_eq!(patterns[0]["why"], "policy \"payments-logging\" (enforce)");
    assert_eq!(patterns[0]["profile"], "fluent-bit-loki");
    let path = patterns[0]["options"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "path")
        .unwrap();
    assert_eq!(path["value"], "/var/log/payments");
    assert_eq!(path["from"], "policy \"payments-logging\"");
    let init: Vec<&str> = first["adds"]["init_containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(init, ["tandem-log-shipper"]);
    assert!(
        first["adds"]["mounts"][0]
            .as_str()
            .unwrap()
            .contains("at /var/log/payments in container web (read-write)")
    );

    // Without the namespace's labels the policy does not apply, and inject: "false" opts the
    // pod out of everything else, its own metrics-adapter annotation included.
    let output = tandem(
        &[
            "explain",
            "-f",
            "-",
            "--policies",
            policies,
            "-n",
            "payments",
        ],
        Some(&annotated.to_string()),
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.starts_with("Pod payments/app:\n  no pattern applies"),
        "{text}"
    );
    assert!(!text.contains("log-shipper —"), "{text}");
    assert!(!text.contains("metrics-adapter —"), "{text}");
}

#[test]
fn explain_shows_denials_and_what_was_already_injected() {
    let input = std::fs::read_to_string(root().join("tests/data/golden/log-shipper.json")).unwrap();
    let output = tandem(&["explain", "-f", "-"], Some(&input));
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("log-shipper — already injected, left alone"),
        "{text}"
    );

    let bad = pod(&[("tandem.dev/ambassador", "tcp")]);
    let output = tandem(&["explain", "-f", "-"], Some(&bad.to_string()));
    assert!(output.status.success());
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(
        text.contains("DENIED: annotation tandem.dev/ambassador.upstream is not set"),
        "{text}"
    );
}

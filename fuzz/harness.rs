//! What the fuzz targets share with the corpus replay (`tests/fuzz_corpus.rs`, which
//! includes this file): turning an input into a review, sending it through tandem's real
//! entry point (`admission::review`, what the webhook handler calls with the body bytes),
//! and checking the properties every answer must have:
//!
//! - the response is an `admission.k8s.io/v1` AdmissionReview naming the request's uid;
//! - a patch applies to the pod it was computed for;
//! - the patched pod keeps the API server's pod rules that the input pod kept (the ones
//!   checked here in Rust; the replay also runs every patched pod through
//!   `tests/validate/podcheck.py`);
//! - a second review of the patched pod yields no patch.
//!
//! A broken property panics, which is what the fuzzer reports as a crash.

#![allow(dead_code)] // each target uses its own part

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::Path,
    sync::OnceLock,
};

use base64::Engine as _;
use serde_json::{Value, json};
use tandem::{
    admission,
    policy::{
        InjectionPolicy,
        snapshot::{NamespaceInfo, Snapshot},
        source::{builtin, document},
    },
};

pub const PREFIX: &str = "tandem.dev";

/// The review fixtures of `tests/data/reviews`, as the API server sends them.
pub const REVIEWS: &[(&str, &str)] = &[
    (
        "all-four",
        include_str!("../tests/data/reviews/all-four.json"),
    ),
    (
        "ambassador-http-tls",
        include_str!("../tests/data/reviews/ambassador-http-tls.json"),
    ),
    (
        "ambassador-tcp",
        include_str!("../tests/data/reviews/ambassador-tcp.json"),
    ),
    (
        "bench-large",
        include_str!("../tests/data/reviews/bench-large.json"),
    ),
    (
        "bench-plain",
        include_str!("../tests/data/reviews/bench-plain.json"),
    ),
    (
        "bench-typical",
        include_str!("../tests/data/reviews/bench-typical.json"),
    ),
    (
        "git-clone-basic",
        include_str!("../tests/data/reviews/git-clone-basic.json"),
    ),
    (
        "git-clone-ssh",
        include_str!("../tests/data/reviews/git-clone-ssh.json"),
    ),
    (
        "git-clone",
        include_str!("../tests/data/reviews/git-clone.json"),
    ),
    (
        "git-sync",
        include_str!("../tests/data/reviews/git-sync.json"),
    ),
    ("job", include_str!("../tests/data/reviews/job.json")),
    (
        "log-shipper-loki",
        include_str!("../tests/data/reviews/log-shipper-loki.json"),
    ),
    (
        "log-shipper",
        include_str!("../tests/data/reviews/log-shipper.json"),
    ),
    (
        "metrics-adapter-json",
        include_str!("../tests/data/reviews/metrics-adapter-json.json"),
    ),
    (
        "metrics-adapter-nginx",
        include_str!("../tests/data/reviews/metrics-adapter-nginx.json"),
    ),
    (
        "metrics-adapter-redis",
        include_str!("../tests/data/reviews/metrics-adapter-redis.json"),
    ),
];

/// Namespace-scoped example policies, and the namespaces they select.
const EXAMPLES: &[&str] = &[
    include_str!("../policies/examples/team-defaults.yaml"),
    include_str!("../policies/examples/enforced-logging.yaml"),
];

pub const NAMESPACES: &[(&str, &[(&str, &str)])] = &[
    ("default", &[]),
    ("shop", &[]),
    ("payments", &[("team", "payments")]),
    ("pci", &[("compliance", "pci")]),
];

fn namespaces() -> HashMap<String, NamespaceInfo> {
    NAMESPACES
        .iter()
        .map(|(name, labels)| {
            let mut labels: BTreeMap<String, String> = labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.insert("kubernetes.io/metadata.name".into(), name.to_string());
            (
                name.to_string(),
                NamespaceInfo {
                    labels,
                    annotations: BTreeMap::new(),
                },
            )
        })
        .collect()
}

/// Built-in policies, the namespace-scoped examples and [`NAMESPACES`].
pub fn snapshot() -> &'static Snapshot {
    static SNAPSHOT: OnceLock<Snapshot> = OnceLock::new();
    SNAPSHOT.get_or_init(|| {
        let examples = EXAMPLES.iter().flat_map(|text| {
            document::parse(Path::new("example.yaml"), text)
                .expect("the examples parse")
                .into_iter()
                .map(|(_, policy)| policy)
        });
        let (snapshot, errors) = Snapshot::build(
            PREFIX,
            builtin::policies().into_iter().chain(examples),
            Some(&namespaces()),
        );
        assert!(errors.is_empty(), "{errors:?}");
        snapshot
    })
}

/// A policy set made of the built-in policies and `extra`, or `None` when `extra` is
/// refused (the server would keep its last good set).
pub fn snapshot_with(extra: Vec<InjectionPolicy>) -> Option<Snapshot> {
    let (snapshot, errors) = Snapshot::build(
        PREFIX,
        builtin::policies().into_iter().chain(extra),
        Some(&namespaces()),
    );
    errors.is_empty().then_some(snapshot)
}

/// The pod of a fixture review.
pub fn fixture_pod(index: usize) -> (String, Value) {
    let (_, text) = REVIEWS[index % REVIEWS.len()];
    let review: Value = serde_json::from_str(text).expect("fixtures are JSON");
    let namespace = review["request"]["namespace"]
        .as_str()
        .unwrap_or("default")
        .to_string();
    (namespace, review["request"]["object"].clone())
}

/// An AdmissionReview for creating `pod` in `namespace`.
pub fn review_of(pod: &Value, namespace: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "fuzz"},
            "object": pod,
            "dryRun": false,
        }
    })
}

/// What a review came to.
#[derive(Debug)]
pub enum Outcome {
    /// HTTP 400: the body is not a review tandem answers.
    Rejected,
    /// Answered without a patch (allowed unchanged, skipped, or denied).
    Unpatched,
    /// Allowed with a patch: the pod after it.
    Patched(Value),
    /// Answered, but the body is JSON only to tandem's reading (see [`review`]): only the
    /// answer's uid was checked.
    Unchecked,
}

/// Sends `body` through `admission::review` under `snapshot` and checks the answer: it
/// names the request's uid, and a patch applies to the request's object. Panics when a
/// property breaks.
pub fn review(body: &[u8], snapshot: &Snapshot) -> Outcome {
    let Ok(reviewed) = admission::review(body, snapshot) else {
        return Outcome::Rejected;
    };
    let answer: Value = serde_json::from_slice(&reviewed.body).expect("the response is JSON");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1", "{answer}");
    assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
    assert_eq!(
        answer["response"]["uid"].as_str(),
        Some(reviewed.uid.as_str())
    );
    // tandem reads only what it needs and skips the rest, checked as JSON's syntax but
    // not for valid UTF-8 or lone UTF-16 surrogate escapes inside skipped strings (as
    // serde_json skips); serde_json's Value refuses those. The API server never sends
    // them (Go's encoder writes neither). Such a body is answered, and only the uid is
    // compared, with what tandem read.
    let Ok(request) = serde_json::from_slice::<Value>(body) else {
        return Outcome::Unchecked;
    };
    assert_eq!(
        answer["response"]["uid"], request["request"]["uid"],
        "the response names another uid"
    );
    assert_eq!(
        answer["response"]["uid"].as_str(),
        Some(reviewed.uid.as_str())
    );
    let Some(patch) = answer["response"]["patch"].as_str() else {
        assert!(answer["response"]["patchType"].is_null(), "{answer}");
        return Outcome::Unpatched;
    };
    assert_eq!(answer["response"]["allowed"], true, "{answer}");
    assert_eq!(answer["response"]["patchType"], "JSONPatch", "{answer}");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .expect("the patch is base64");
    let patch: json_patch::Patch =
        serde_json::from_slice(&bytes).expect("the patch is a JSON patch");
    let mut pod = request["request"]["object"].clone();
    if let Err(error) = json_patch::patch(&mut pod, &patch) {
        panic!(
            "the patch does not apply: {error}\npatch: {}\npod: {}",
            String::from_utf8_lossy(&bytes),
            request["request"]["object"]
        );
    }
    Outcome::Patched(pod)
}

/// Reviews `pod` created in `namespace` and checks every property: those of [`review`],
/// the pod rules the input kept are kept, and a second review adds nothing. The patched
/// pod, if there was a patch.
pub fn round_trip(pod: &Value, namespace: &str, snapshot: &Snapshot) -> Option<Value> {
    let body = review_of(pod, namespace, "fuzz-1").to_string();
    let Outcome::Patched(patched) = review(body.as_bytes(), snapshot) else {
        return None;
    };
    if pod_rules(pod).is_empty() {
        let broken = pod_rules(&patched);
        assert!(
            broken.is_empty(),
            "the patched pod breaks pod rules the input kept: {broken:?}\ninput: {pod}\npatched: {patched}"
        );
    }
    let again = review_of(&patched, namespace, "fuzz-2").to_string();
    match review(again.as_bytes(), snapshot) {
        Outcome::Patched(_) => panic!(
            "a second review of the patched pod patched it again\ninput: {pod}\npatched: {patched}"
        ),
        Outcome::Rejected | Outcome::Unchecked => {
            panic!("a second review of the patched pod was not answered: {patched}")
        }
        Outcome::Unpatched => {}
    }
    Some(patched)
}

/// Errors against the API server's pod rules that are cheap to check here: unique
/// container and volume names, mounts that name volumes, unique mount paths and port
/// names per container, port names of at most 15 characters, names that are DNS labels.
pub fn pod_rules(pod: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    let spec = &pod["spec"];
    let volumes: Vec<&str> = spec["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .collect();
    let mut seen = HashSet::new();
    for name in &volumes {
        if !seen.insert(*name) {
            errors.push(format!("volume {name:?} twice"));
        }
        if !dns_label(name) {
            errors.push(format!("volume {name:?} is not a DNS label"));
        }
    }
    let mut containers = HashSet::new();
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for container in spec[list].as_array().into_iter().flatten() {
            let name = container["name"].as_str().unwrap_or_default();
            if !containers.insert(name.to_string()) {
                errors.push(format!("container {name:?} twice"));
            }
            if !dns_label(name) {
                errors.push(format!("container {name:?} is not a DNS label"));
            }
            let mut paths = HashSet::new();
            for mount in container["volumeMounts"].as_array().into_iter().flatten() {
                let volume = mount["name"].as_str().unwrap_or_default();
                if !volumes.contains(&volume) {
                    errors.push(format!("{name}: mount of {volume:?} names no volume"));
                }
                let path = mount["mountPath"].as_str().unwrap_or_default();
                if !paths.insert(path.to_string()) {
                    errors.push(format!("{name}: mount path {path:?} twice"));
                }
            }
            let mut ports = HashSet::new();
            for port in container["ports"].as_array().into_iter().flatten() {
                if let Some(port_name) = port["name"].as_str() {
                    if port_name.len() > 15 {
                        errors.push(format!("{name}: port name {port_name:?} too long"));
                    }
                    if !ports.insert(port_name.to_string()) {
                        errors.push(format!("{name}: port name {port_name:?} twice"));
                    }
                }
            }
        }
    }
    errors
}

fn dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// The annotations target's input: a first line choosing the pod (a fixture, by number
/// or name) and the namespace (`pod-name@namespace`), then `key=value` lines, which
/// replace the pod's annotations. `\n` in a value stands for a newline.
pub fn annotated(input: &[u8]) -> (Value, String) {
    let text = String::from_utf8_lossy(input);
    let mut lines = text.split('\n');
    let head = lines.next().unwrap_or_default();
    let (which, namespace) = head.split_once('@').unwrap_or((head, ""));
    let index = REVIEWS
        .iter()
        .position(|(name, _)| *name == which.trim())
        .unwrap_or_else(|| which.bytes().map(usize::from).sum());
    let (fixture_namespace, mut pod) = fixture_pod(index);
    let namespace = match namespace.trim() {
        "" => fixture_namespace,
        given => given.to_string(),
    };
    let annotations: serde_json::Map<String, Value> = lines
        .filter_map(|line| line.split_once('='))
        .map(|(key, value)| (key.to_string(), Value::from(value.replace("\\n", "\n"))))
        .collect();
    pod["metadata"]["annotations"] = Value::Object(annotations);
    (pod, namespace)
}

/// The annotations target's seed for a fixture: its own annotations in that form.
pub fn annotated_seed(index: usize) -> String {
    let (namespace, pod) = fixture_pod(index);
    let mut text = format!("{}@{namespace}\n", REVIEWS[index].0);
    for (key, value) in pod["metadata"]["annotations"]
        .as_object()
        .into_iter()
        .flatten()
    {
        let value = value.as_str().unwrap_or_default().replace('\n', "\\n");
        text.push_str(&format!("{key}={value}\n"));
    }
    text
}

/// The policy target: `yaml` loaded as a policy file; when the set is valid, three
/// fixture pods are resolved against it in every namespace of [`NAMESPACES`] and
/// round-tripped. Each pod that was patched, and the pod after the patch.
pub fn policy(yaml: &[u8]) -> Vec<(Value, Value)> {
    let Ok(text) = std::str::from_utf8(yaml) else {
        return Vec::new();
    };
    let Ok(parsed) = document::parse(Path::new("fuzz.yaml"), text) else {
        return Vec::new();
    };
    let Some(snapshot) = snapshot_with(parsed.into_iter().map(|(_, p)| p).collect()) else {
        return Vec::new();
    };
    // Three fixtures per input, chosen by it, so that an execution stays short.
    let first: usize = yaml.iter().map(|&b| usize::from(b)).sum();
    let mut patched = Vec::new();
    for index in first..first + 3 {
        let (_, pod) = fixture_pod(index);
        for (namespace, _) in NAMESPACES {
            if let Some(after) = round_trip(&pod, namespace, &snapshot) {
                patched.push((pod.clone(), after));
            }
        }
        // And without its annotations: what defaults alone add.
        let mut bare = pod.clone();
        if let Some(metadata) = bare["metadata"].as_object_mut() {
            metadata.remove("annotations");
        }
        if let Some(after) = round_trip(&bare, "payments", &snapshot) {
            patched.push((bare, after));
        }
    }
    patched
}

//! The fuzz corpora (`fuzz/corpus/<target>`, seeds and what the long runs kept) and the
//! inputs of every crash they found (`fuzz/regressions/<target>`), replayed through the
//! targets' own checks (`fuzz/harness.rs`) and then through the independent oracle: every
//! pod a patch produced from a pod the oracle accepts must be accepted too
//! (`tests/validate/podcheck.py`, too slow to call from inside a fuzz target).

mod common;

use std::{
    fs,
    panic::{AssertUnwindSafe, catch_unwind},
    path::PathBuf,
};

use serde_json::Value;

#[path = "../fuzz/harness.rs"]
mod harness;

/// Every input of `target`: corpus and regressions.
fn inputs(target: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for dir in ["corpus", "regressions"] {
        let dir = common::root().join("fuzz").join(dir).join(target);
        for entry in fs::read_dir(&dir).into_iter().flatten() {
            let path = entry.unwrap().path();
            if path.is_file() {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// Runs `run` on every input of `target`; the (input pod, patched pod) pairs, each
/// failure naming its file.
fn replay(target: &str, run: impl Fn(&[u8]) -> Vec<(Value, Value)>) -> Vec<(Value, Value)> {
    let inputs = inputs(target);
    assert!(!inputs.is_empty(), "no corpus for {target}");
    let mut pairs = Vec::new();
    let mut failures = Vec::new();
    for path in &inputs {
        let bytes = fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| run(&bytes))) {
            Ok(mut found) => pairs.append(&mut found),
            Err(panic) => failures.push(format!("{}: {}", path.display(), message(&*panic))),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
    pairs
}

fn message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Names of containers in `after` that `before` did not have.
fn added(before: &Value, after: &Value) -> Vec<String> {
    let names = common::container_names(before);
    common::container_names(after)
        .into_iter()
        .filter(|name| !names.contains(name))
        .collect()
}

/// Every patched pod whose input the oracle accepts is accepted too, its added
/// containers held to the "restricted" profile. How many were checked.
fn oracle(target: &str, pairs: &[(Value, Value)]) -> usize {
    let mut checked = 0;
    let mut failures = Vec::new();
    for (before, after) in pairs {
        if !common::oracle::check(before, &[]).is_empty() {
            continue;
        }
        let added = added(before, after);
        let names: Vec<&str> = added.iter().map(String::as_str).collect();
        let errors = common::oracle::check(after, &names);
        if !errors.is_empty() {
            failures.push(format!("{errors:?}\nbefore: {before}\nafter: {after}"));
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{target}:\n{}", failures.join("\n\n"));
    checked
}

#[test]
fn review_corpus() {
    let pairs = replay("review", |body| {
        let request: Option<Value> = serde_json::from_slice(body).ok();
        match harness::review(body, harness::snapshot()) {
            harness::Outcome::Patched(after) => {
                let before = request.expect("a patched body is JSON")["request"]["object"].clone();
                vec![(before, after)]
            }
            _ => Vec::new(),
        }
    });
    assert!(
        oracle("review", &pairs) > 0,
        "no patched pod in the review corpus"
    );
}

#[test]
fn annotations_corpus() {
    let pairs = replay("annotations", |input| {
        let (pod, namespace) = harness::annotated(input);
        harness::round_trip(&pod, &namespace, harness::snapshot())
            .map(|after| (pod, after))
            .into_iter()
            .collect()
    });
    assert!(oracle("annotations", &pairs) > 0);
}

#[test]
fn policy_corpus() {
    let pairs = replay("policy", harness::policy);
    assert!(oracle("policy", &pairs) > 0);
}

#[test]
fn patch_corpus() {
    let pairs = replay("patch", |input| {
        let Ok(pod) = serde_json::from_slice::<Value>(input) else {
            return Vec::new();
        };
        harness::round_trip(&pod, "payments", harness::snapshot())
            .map(|after| (pod, after))
            .into_iter()
            .collect()
    });
    assert!(oracle("patch", &pairs) > 0);
}

/// The seeds are what the corpora started from: each fixture's review, pod and
/// annotations, and every policy file under `policies/` (the annotations of product.md
/// are `fuzz/corpus/annotations/seed-product-md`, written once from it). Regenerating them
/// must give the committed files (run with `TANDEM_WRITE_SEEDS=1` to write them).
#[test]
fn seeds_are_committed() {
    let root = common::root().join("fuzz/corpus");
    let mut seeds: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (index, (name, text)) in harness::REVIEWS.iter().enumerate() {
        seeds.push((
            root.join("review").join(format!("seed-{name}")),
            text.as_bytes().to_vec(),
        ));
        let (_, pod) = harness::fixture_pod(index);
        seeds.push((
            root.join("patch").join(format!("seed-{name}")),
            pod.to_string().into_bytes(),
        ));
        seeds.push((
            root.join("annotations").join(format!("seed-{name}")),
            harness::annotated_seed(index).into_bytes(),
        ));
    }
    for dir in ["policies", "policies/examples"] {
        for entry in fs::read_dir(common::root().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let name = path.file_stem().unwrap().to_string_lossy().to_string();
                seeds.push((
                    root.join("policy").join(format!("seed-{name}")),
                    fs::read(&path).unwrap(),
                ));
            }
        }
    }
    let write = std::env::var_os("TANDEM_WRITE_SEEDS").is_some();
    let mut stale = Vec::new();
    for (path, bytes) in &seeds {
        if write {
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, bytes).unwrap();
        } else if fs::read(path).ok().as_deref() != Some(&bytes[..]) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "seeds missing or stale (TANDEM_WRITE_SEEDS=1 cargo test --test fuzz_corpus seeds): {stale:?}"
    );
}

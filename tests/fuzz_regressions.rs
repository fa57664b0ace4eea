//! Every input with which a fuzz target broke a property, as a test of its own, on the
//! real entry point (`admission::review`, what the webhook's handler calls). The inputs
//! are in `fuzz/regressions/<target>/`, replayed with the corpora by
//! `tests/fuzz_corpus.rs` too.

mod common;

#[path = "../fuzz/harness.rs"]
mod harness;

use serde_json::{Value, json};
use tandem::admission;

fn regression(target: &str, name: &str) -> Vec<u8> {
    let path = common::root()
        .join("fuzz/regressions")
        .join(target)
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn answer(body: &[u8]) -> Value {
    let reviewed = admission::review(body, harness::snapshot()).expect("answered, not a 400");
    serde_json::from_slice(&reviewed.body).unwrap()
}

/// The `review` target's first finding: a body with a byte that is not UTF-8 inside a
/// string tandem skips (a managedFields key) is answered, with its uid. (The harness had
/// assumed every answered body parses as a serde_json `Value`; it does not, and tandem's
/// answer is right: the API server never sends such bytes, and the uid was read.)
#[test]
fn a_body_with_invalid_utf8_in_a_skipped_field_is_answered_with_its_uid() {
    let body = regression("review", "invalid-utf8-in-skipped-field");
    assert!(std::str::from_utf8(&body).is_err());
    let answer = answer(&body);
    assert_eq!(
        answer["response"]["uid"],
        "c1b866a0-c8d2-59be-b63e-d5e7b4490af8"
    );
    assert!(matches!(
        harness::review(&body, harness::snapshot()),
        harness::Outcome::Unchecked
    ));
}

/// The `review` target's second finding: a pod with tandem's annotations but no `spec`
/// got a patch adding `/spec/initContainers`, which cannot apply (no `/spec`). The API
/// server would refuse such a pod anyway; tandem now leaves a pod it could not store
/// (no containers, or no name) unpatched, so that the API server's own message says
/// what is missing.
#[test]
fn a_pod_without_spec_or_containers_or_name_is_allowed_without_a_patch() {
    let body = regression("review", "pod-without-spec");
    let found: Value = serde_json::from_slice(&body).unwrap();
    assert!(found["request"]["object"].get("spec").is_none());
    assert!(matches!(
        harness::review(&body, harness::snapshot()),
        harness::Outcome::Unpatched
    ));

    let annotated = common::pod(&[("tandem.dev/log-shipper", "true")]);
    let mut no_spec = annotated.clone();
    no_spec.as_object_mut().unwrap().remove("spec");
    let mut no_containers = annotated.clone();
    no_containers["spec"]["containers"] = json!([]);
    let mut no_metadata = annotated.clone();
    no_metadata.as_object_mut().unwrap().remove("metadata");
    for pod in [no_spec, no_containers, no_metadata] {
        let review = common::review(&pod, "default");
        let answer = answer(review.to_string().as_bytes());
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        assert!(answer["response"].get("patch").is_none(), "{answer}");
    }
    // The same pod, whole, is patched.
    let review = common::review(&annotated, "default");
    assert!(answer(review.to_string().as_bytes())["response"]["patch"].is_string());
}

//! A pod's whole annotation set (keys and values), on a real pod in a namespace: the
//! review's answer names its uid, its patch applies and keeps the pod rules, and a second
//! review of the patched pod adds nothing. Input: see `harness::annotated`.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|input: &[u8]| {
    let (pod, namespace) = harness::annotated(input);
    harness::round_trip(&pod, &namespace, harness::snapshot());
});

//! The JSON-patch round trip on any pod: whatever tandem emits applies to the pod it was
//! computed for, keeps the pod rules the pod kept, and a second review adds nothing.
//! Input: a pod as JSON, reviewed in the namespace `payments` (where a policy switches
//! log shipping on by default), so even a pod without annotations is mutated.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|pod: &[u8]| {
    let Ok(pod) = serde_json::from_slice::<serde_json::Value>(pod) else {
        return;
    };
    harness::round_trip(&pod, "payments", harness::snapshot());
});

//! An InjectionPolicy file: YAML → load (as `--policies` does) → the compiled set → pods
//! resolved and patched under it, each round trip checked as in the other targets.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|yaml: &[u8]| {
    harness::policy(yaml);
});

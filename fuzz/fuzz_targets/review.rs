//! The AdmissionReview body as it reaches the webhook's handler: bytes in, response out.
//! A response names the request's uid, and a patch applies to the request's object.
#![no_main]

#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|body: &[u8]| {
    harness::review(body, harness::snapshot());
});

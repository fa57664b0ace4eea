//! Runs `admission::review` on one benchmark fixture in a loop, for a profiler:
//!
//!     cargo build --release --example profile_review
//!     valgrind --tool=callgrind target/release/examples/profile_review large 200
//!
//! With `floor` after the count, runs instead the cheapest full check of the same body that
//! serde_json has (`IgnoredAny`): what no review can go below, since a malformed body must
//! be answered 400. Instructions per review: the difference of two runs of different
//! lengths, divided by the difference of their counts (`benches/README.md`).

use tandem::{
    admission,
    policy::{snapshot::Snapshot, source::builtin},
};

// The server's allocator, so that the profile shows what the server spends.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "typical".into());
    let rounds: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10_000);
    let path = format!(
        "{}/tests/data/reviews/bench-{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    if args.next().as_deref() == Some("floor") {
        for _ in 0..rounds {
            serde_json::from_slice::<serde::de::IgnoredAny>(std::hint::black_box(&body))
                .expect("valid JSON");
        }
        println!("{rounds} checks of {name}");
        return;
    }
    let (snapshot, errors) = Snapshot::build("tandem.dev", builtin::policies(), None);
    assert!(errors.is_empty(), "{errors:?}");
    let mut bytes = 0;
    for _ in 0..rounds {
        bytes += admission::review(&body, &snapshot)
            .expect("a valid review")
            .body
            .len();
    }
    println!("{rounds} reviews of {name}: {bytes} response bytes");
}

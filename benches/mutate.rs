//! The mutation itself, without TLS or HTTP: `admission::review` on the benchmark kit's
//! AdmissionReviews (plain: none of our annotations; typical: log shipper + git clone;
//! large: 8 containers, all four patterns), with the built-in policies and with the dozen
//! policies of `benches/policies` loaded.
//!
//!     cargo bench --bench mutate

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem::{
    admission,
    policy::{
        InjectionPolicy,
        snapshot::Snapshot,
        source::{builtin, files},
    },
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/reviews/bench-{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `benches/policies`: a dozen policies of the kinds platform teams write.
fn dozen_policies() -> Vec<InjectionPolicy> {
    let dir = format!("{}/benches/policies", env!("CARGO_MANIFEST_DIR"));
    files::check(dir.as_ref(), "tandem.dev").expect("the benchmark's policies are valid")
}

fn bench(c: &mut Criterion) {
    for (label, extra) in [("builtin", Vec::new()), ("12-policies", dozen_policies())] {
        let (snapshot, errors) = Snapshot::build(
            "tandem.dev",
            builtin::policies().into_iter().chain(extra),
            None,
        );
        assert!(errors.is_empty(), "{errors:?}");
        let mut group = c.benchmark_group(format!("review/{label}"));
        for name in ["plain", "typical", "large"] {
            let body = fixture(name);
            group.throughput(Throughput::Bytes(body.len() as u64));
            group.bench_function(name, |b| {
                b.iter(|| admission::review(black_box(&body), &snapshot).expect("a valid review"))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);

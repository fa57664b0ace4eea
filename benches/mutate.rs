//! The mutation itself, without TLS or HTTP: `admission::review` on the benchmark kit's
//! AdmissionReviews (plain: none of our annotations; typical: log shipper + git clone;
//! large: 8 containers, all four patterns), with the built-in policies and with a dozen
//! policies loaded.
//!
//!     cargo bench --bench mutate

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tandem::{
    admission,
    policy::{InjectionPolicy, builtin, snapshot::Snapshot},
};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/data/reviews/bench-{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Twelve policies of the kinds a platform team writes: namespace- and pod-scoped
/// defaults, overrides, allow-lists, profiles.
fn dozen_policies() -> Vec<InjectionPolicy> {
    (0..12)
        .map(|i| {
            let yaml = format!(
                r#"apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {{name: team-{i}}}
spec:
  priority: {i}
  selector:
    namespaces: {{matchLabels: {{team: team-{i}}}}}
    pods: {{matchExpressions: [{{key: tier, operator: In, values: [backend, frontend]}}]}}
  defaults:
    log-shipper: {{profile: loki-{i}, path: /var/log/team-{i}}}
  overrides:
    log-shipper: [path, containers, profile]
  allowedGitHosts: [github.com, "*.example.com"]
  profiles:
    log-shipper:
      loki-{i}:
        image: cr.fluentbit.io/fluent/fluent-bit:4.2.4
        args: ["-i", "tail", "-p", "path={{{{path}}}}/*.log", "-o", "loki", "-m", "*", "-p", "host=loki-{i}.logging"]
        resources: {{requests: {{cpu: 10m, memory: 32Mi}}, limits: {{memory: 64Mi}}}}
"#
            );
            serde_saphyr::from_str(&yaml).expect("a valid policy")
        })
        .collect()
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

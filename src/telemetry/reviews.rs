//! The two metrics every review touches, reviews by outcome and their duration, counted
//! per thread and summed when scraped.
//!
//! The webhook's connection threads (server/workers.rs) each answer tens of thousands of
//! reviews a second. With one shared counter and one shared histogram (prometheus-client's
//! takes a lock per observation), every review would pull the same cache lines from the
//! other core; here each thread adds to its own shard, and a scrape reads them all.

use std::{
    fmt,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet},
    metrics::{MetricType, counter::ConstCounter},
};

use crate::admission::Verdict;

/// Upper bounds of the duration histogram's buckets, in nanoseconds (`+Inf` follows);
/// exposed in seconds (50 µs is `le="0.00005"`). They reach the API server's longest
/// webhook timeout (30 s), so that a p99 near `timeoutSeconds` can be told apart.
const BUCKETS: [u64; 17] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
    30_000_000_000,
];

/// Shards: threads beyond this many share one (still correct, only slower).
const SHARDS: usize = 16;

/// Review counts and durations, sharded by thread.
#[derive(Debug)]
pub struct Reviews {
    shards: Box<[Shard]>,
}

/// One thread's counts, on cache lines of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard {
    /// By [`Verdict::ALL`] index.
    outcomes: [AtomicU64; Verdict::ALL.len()],
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_nanos: AtomicU64,
}

impl Default for Reviews {
    fn default() -> Self {
        Reviews {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
        }
    }
}

impl Reviews {
    /// Counts one review that ended as `verdict` after `elapsed`.
    pub fn observe(&self, verdict: Verdict, elapsed: Duration) {
        let shard = &self.shards[shard_index()];
        let outcome = Verdict::ALL
            .iter()
            .position(|v| *v == verdict)
            .expect("every verdict has a counter");
        shard.outcomes[outcome].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        let bucket = BUCKETS.partition_point(|&bound| bound < nanos);
        shard.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// The sums over all shards: by outcome, per bucket, and the total duration.
    fn totals(&self) -> Totals {
        let mut totals = Totals::default();
        for shard in &self.shards {
            for (total, count) in totals.outcomes.iter_mut().zip(&shard.outcomes) {
                *total += count.load(Ordering::Relaxed);
            }
            for (total, count) in totals.buckets.iter_mut().zip(&shard.buckets) {
                *total += count.load(Ordering::Relaxed);
            }
            totals.sum_nanos += shard.sum_nanos.load(Ordering::Relaxed);
        }
        totals
    }
}

#[derive(Default)]
struct Totals {
    outcomes: [u64; Verdict::ALL.len()],
    buckets: [u64; BUCKETS.len() + 1],
    sum_nanos: u64,
}

/// This thread's shard: threads are numbered as they first count something.
fn shard_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    SHARD.with(|shard| *shard)
}

impl Collector for Reviews {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), fmt::Error> {
        let totals = self.totals();
        let mut reviews = encoder.encode_descriptor(
            "admission_reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, skipped)",
            None,
            MetricType::Counter,
        )?;
        for (verdict, count) in Verdict::ALL.iter().zip(totals.outcomes) {
            let labels = [("outcome", verdict.label())];
            ConstCounter::new(count).encode(reviews.encode_family(&labels)?)?;
        }
        let mut duration = encoder.encode_descriptor(
            "admission_review_duration_seconds",
            "Time from the first byte of a review's body to the response, in seconds",
            None,
            MetricType::Histogram,
        )?;
        let buckets: Vec<(f64, u64)> = BUCKETS
            .iter()
            .map(|&nanos| nanos as f64 / 1e9)
            .chain([f64::INFINITY])
            .zip(totals.buckets)
            .collect();
        duration.encode_histogram::<NoLabelSet>(
            totals.sum_nanos as f64 / 1e9,
            totals.buckets.iter().sum(),
            &buckets,
            None,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::{encoding::text::encode, registry::Registry};

    use super::*;

    fn exposition(reviews: Arc<Reviews>) -> String {
        let mut registry = Registry::with_prefix("tandem");
        registry.register_collector(Box::new(reviews));
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no {series} in\n{text}"))
            .parse()
            .unwrap()
    }

    #[test]
    fn counts_from_several_threads_are_summed_per_outcome_and_bucket() {
        let reviews = Arc::new(Reviews::default());
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    for _ in 0..100 {
                        reviews.observe(Verdict::Unchanged, Duration::from_micros(40));
                    }
                    reviews.observe(Verdict::Patched, Duration::from_micros(300));
                    reviews.observe(Verdict::Denied, Duration::from_secs(2));
                });
            }
        });
        let text = exposition(reviews);
        let reviews = |outcome: &str| {
            sample(
                &text,
                &format!("tandem_admission_reviews_total{{outcome=\"{outcome}\"}}"),
            )
        };
        assert_eq!(reviews("unchanged"), 400.0);
        assert_eq!(reviews("patched"), 4.0);
        assert_eq!(reviews("denied"), 4.0);
        assert_eq!(reviews("skipped"), 0.0);

        let bucket = |le: &str| {
            sample(
                &text,
                &format!("tandem_admission_review_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        // Cumulative, `le` inclusive: 40 µs falls in the first bucket, 300 µs under
        // 0.0005, 2 s under 2.5.
        assert_eq!(bucket("0.00005"), 400.0);
        assert_eq!(bucket("0.00025"), 400.0);
        assert_eq!(bucket("0.0005"), 404.0);
        assert_eq!(bucket("1.0"), 404.0);
        assert_eq!(bucket("2.5"), 408.0);
        assert_eq!(bucket("30.0"), 408.0);
        assert_eq!(bucket("+Inf"), 408.0);
        assert_eq!(
            sample(&text, "tandem_admission_review_duration_seconds_count"),
            408.0
        );
        let sum = sample(&text, "tandem_admission_review_duration_seconds_sum");
        let expected = 400.0 * 40e-6 + 4.0 * 300e-6 + 4.0 * 2.0;
        assert!((sum - expected).abs() < 1e-9, "{sum} against {expected}");
    }

    #[test]
    fn a_duration_on_a_bound_counts_in_that_bucket() {
        for (index, &nanos) in BUCKETS.iter().enumerate() {
            let reviews = Reviews::default();
            let on_bound = Duration::from_nanos(nanos);
            reviews.observe(Verdict::Skipped, on_bound);
            reviews.observe(Verdict::Skipped, on_bound + Duration::from_nanos(1));
            let totals = reviews.totals();
            assert_eq!(
                totals.buckets[index], 1,
                "the bucket up to {on_bound:?} holds it"
            );
            assert_eq!(totals.buckets[index + 1], 1, "just above {on_bound:?}");
            assert_eq!(totals.outcomes, [0, 0, 0, 2]);
        }
    }
}

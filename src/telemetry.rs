//! Logs (tracing, text or JSON, written off the request path) and Prometheus metrics.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{admission::Verdict, config::LogFormat, invalid::Reason, pattern::Pattern};

/// Installs the global subscriber. Log lines are handed to a writer thread, so a slow
/// terminal or log collector never holds up a review. Keep the guard alive until exit: it
/// flushes what is left.
pub fn init(format: LogFormat) -> WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stdout());
    let filter = EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn,rustls=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    match format {
        LogFormat::Text => registry
            .with(
                fmt::layer()
                    .with_writer(writer)
                    .with_target(false)
                    .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout())),
            )
            .init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false)
                    .with_writer(writer),
            )
            .init(),
    }
    guard
}

type Labels = [(&'static str, &'static str); 1];

/// The server's metrics. Handles for every label value are made up front, so counting is
/// an atomic add, not a map look-up.
pub struct Metrics {
    registry: Registry,
    reviews: Vec<Counter>,
    rejected: Family<[(&'static str, String); 1], Counter>,
    duration: Histogram,
    injections: Vec<Counter>,
    denials: Vec<Counter>,
    warnings: Counter,
    pub policy_reloads: Family<[(&'static str, &'static str); 2], Counter>,
    pub policies: Gauge,
    pub tls_reloads: Family<Labels, Counter>,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("tandem");
        let reviews_family = Family::<Labels, Counter>::default();
        let reviews = Verdict::ALL
            .iter()
            .map(|v| {
                reviews_family
                    .get_or_create(&[("outcome", v.label())])
                    .clone()
            })
            .collect();
        registry.register(
            "admission_reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, skipped)",
            reviews_family,
        );
        let rejected = Family::default();
        registry.register(
            "rejected_requests",
            "Requests to /mutate answered with an HTTP error, by status code",
            rejected.clone(),
        );
        let duration = Histogram::new([
            0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1,
            0.25, 1.0,
        ]);
        registry.register(
            "admission_review_duration_seconds",
            "Time from the first byte of a review's body to the response, in seconds",
            duration.clone(),
        );
        let injections_family = Family::<Labels, Counter>::default();
        let injections = ordered_patterns()
            .map(|p| {
                injections_family
                    .get_or_create(&[("pattern", p.name())])
                    .clone()
            })
            .collect();
        registry.register(
            "injections",
            "Patterns added to pods, by pattern",
            injections_family,
        );
        let denials_family = Family::<Labels, Counter>::default();
        let denials = Reason::ALL
            .iter()
            .map(|r| {
                denials_family
                    .get_or_create(&[("reason", r.label())])
                    .clone()
            })
            .collect();
        registry.register(
            "denials",
            "Problems that denied a pod (or dropped a pattern with a warning), by reason",
            denials_family,
        );
        let warnings = Counter::default();
        registry.register(
            "warnings",
            "Patterns dropped with a warning under onInvalid: warn",
            warnings.clone(),
        );
        let policy_reloads = Family::default();
        registry.register(
            "policy_reloads",
            "Policy set reloads, by source (files, kube) and result (ok, error)",
            policy_reloads.clone(),
        );
        let policies = Gauge::default();
        registry.register(
            "policies",
            "Policies in effect, built-in ones included",
            policies.clone(),
        );
        let tls_reloads = Family::default();
        registry.register(
            "tls_reloads",
            "Certificate reloads, by result (ok, error)",
            tls_reloads.clone(),
        );
        Arc::new(Metrics {
            registry,
            reviews,
            rejected,
            duration,
            injections,
            denials,
            warnings,
            policy_reloads,
            policies,
            tls_reloads,
        })
    }

    pub fn review(&self, reviewed: &crate::admission::Reviewed, elapsed: Duration) {
        let verdict = Verdict::ALL
            .iter()
            .position(|v| *v == reviewed.verdict)
            .expect("every verdict has a counter");
        self.reviews[verdict].inc();
        self.duration.observe(elapsed.as_secs_f64());
        for pattern in &reviewed.patterns {
            self.injections[pattern.index()].inc();
        }
        for reason in &reviewed.reasons {
            let index = Reason::ALL
                .iter()
                .position(|r| r == reason)
                .expect("every reason has a counter");
            self.denials[index].inc();
        }
        self.warnings.inc_by(reviewed.warnings as u64);
    }

    pub fn rejected(&self, status: u16) {
        self.rejected
            .get_or_create(&[("code", status.to_string())])
            .inc();
    }

    pub fn policy_reload(&self, source: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads
            .get_or_create(&[("source", source), ("result", result)])
            .inc();
    }

    pub fn tls_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_reloads.get_or_create(&[("result", result)]).inc();
    }

    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Patterns in [`Pattern::index`] order, so `injections[pattern.index()]` is its counter.
fn ordered_patterns() -> impl Iterator<Item = Pattern> {
    let mut patterns = Pattern::ALL;
    patterns.sort_by_key(|p| p.index());
    patterns.into_iter()
}

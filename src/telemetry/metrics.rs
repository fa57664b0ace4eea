//! The server's Prometheus metrics: what reviews, policy reloads and certificate reloads
//! count, registered once and encoded for `/metrics`.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::reviews;
use crate::{invalid::Reason, pattern::Pattern};

type Labels = [(&'static str, &'static str); 1];

/// The server's metrics. Handles for every label value are made up front, so counting is
/// an atomic add, not a map look-up; what every review counts is counted per thread
/// ([`reviews`]).
pub struct Metrics {
    registry: Registry,
    reviews: Arc<reviews::Reviews>,
    rejected: Family<[(&'static str, String); 1], Counter>,
    injections: Vec<Counter>,
    denials: Vec<Counter>,
    warnings: Counter,
    pub policy_reloads: Family<[(&'static str, &'static str); 2], Counter>,
    pub policies: Gauge,
    pub tls_reloads: Family<Labels, Counter>,
    /// The served certificate's notAfter, Unix seconds.
    pub tls_expiry: Gauge,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("tandem");
        let reviews = Arc::new(reviews::Reviews::default());
        registry.register_collector(Box::new(reviews.clone()));
        let rejected = Family::default();
        registry.register(
            "rejected_requests",
            "Requests to /mutate answered with an HTTP error, by status code",
            rejected.clone(),
        );
        let injections = counters(
            &mut registry,
            "injections",
            "Patterns added to pods, by pattern",
            "pattern",
            ordered_patterns().map(Pattern::name),
        );
        let denials = counters(
            &mut registry,
            "denials",
            "Problems that denied a pod (or dropped a pattern with a warning), by reason",
            "reason",
            Reason::ALL.iter().map(|r| r.label()),
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
        let tls_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served certificate expires (its notAfter), in Unix seconds",
            tls_expiry.clone(),
        );
        Arc::new(Metrics {
            registry,
            reviews,
            rejected,
            injections,
            denials,
            warnings,
            policy_reloads,
            policies,
            tls_reloads,
            tls_expiry,
        })
    }

    pub fn review(&self, reviewed: &crate::admission::Reviewed, elapsed: Duration) {
        self.reviews.observe(reviewed.verdict, elapsed);
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
        if reviewed.warnings > 0 {
            self.warnings.inc_by(reviewed.warnings as u64);
        }
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
    /// The certificate served now ends at `not_after` (Unix seconds).
    pub fn tls_certificate(&self, not_after: i64) {
        self.tls_expiry.set(not_after);
    }

    pub fn encode(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

/// Registers a counter family with one label, and returns a handle for each of `values`,
/// in their order.
fn counters(
    registry: &mut Registry,
    name: &str,
    help: &str,
    label: &'static str,
    values: impl Iterator<Item = &'static str>,
) -> Vec<Counter> {
    let family = Family::<Labels, Counter>::default();
    let handles = values
        .map(|value| family.get_or_create(&[(label, value)]).clone())
        .collect();
    registry.register(name, help, family);
    handles
}

/// Patterns in [`Pattern::index`] order, so `injections[pattern.index()]` is its counter.
fn ordered_patterns() -> impl Iterator<Item = Pattern> {
    let mut patterns = Pattern::ALL;
    patterns.sort_by_key(|p| p.index());
    patterns.into_iter()
}

//! The server's Prometheus metrics: what reviews, policy reloads, certificate reloads and
//! faults (`faults`) count, registered once and encoded for `/metrics`.

use std::{sync::Arc, time::Duration};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge},
    registry::Registry,
};

use super::reviews;
use crate::{invalid::Reason, opt_in::Findings, pattern::Pattern};

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
    policy_reload_ok: Family<Labels, Gauge>,
    pub policies: Gauge,
    pub tls_reloads: Family<Labels, Counter>,
    /// Pods `tandem drift` would call stale, by workload kind (`drift::metric`).
    pub stale_pods: Family<Labels, Gauge>,
    pub drift_scans: Family<Labels, Counter>,
    /// The served certificate's notAfter, Unix seconds.
    pub tls_expiry: Gauge,
    ready: Gauge,
    namespaces_not_opted_in: Gauge,
    policy_namespaces_not_opted_in: Family<[(&'static str, String); 1], Gauge>,
    /// The policies `policy_namespaces_not_opted_in` has a series for.
    policy_names: std::sync::Mutex<std::collections::BTreeSet<String>>,
    pub faults: super::faults::Faults,
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
        // Every source and result from the start, so that rates and alerts see zeros
        // rather than nothing.
        for source in ["files", "kube"] {
            for result in ["ok", "error"] {
                let _ = policy_reloads.get_or_create(&[("source", source), ("result", result)]);
            }
        }
        registry.register(
            "policy_reloads",
            "Policy set reloads, by source (files, kube) and result (ok, error)",
            policy_reloads.clone(),
        );
        let policy_reload_ok = Family::default();
        registry.register(
            "policy_last_reload_successful",
            "Whether the last load of a policy source (files, kube) succeeded (1) or failed and left the last good set in force (0)",
            policy_reload_ok.clone(),
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
        let stale_pods = Family::default();
        registry.register(
            "stale_pods",
            "Injected pods whose injected containers differ from what today's policies inject, by owning workload kind (as tandem drift counts them)",
            stale_pods.clone(),
        );
        let drift_scans = Family::default();
        registry.register(
            "drift_scans",
            "Counts of stale pods, by result (ok, error)",
            drift_scans.clone(),
        );
        let tls_expiry = Gauge::default();
        registry.register(
            "tls_certificate_expiry_timestamp_seconds",
            "When the served certificate expires (its notAfter), in Unix seconds",
            tls_expiry.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "ready",
            "1 while /readyz answers ok (synced with the API server under --kube, not shutting down), else 0",
            ready.clone(),
        );
        let namespaces_not_opted_in = Gauge::default();
        registry.register(
            "namespaces_not_opted_in",
            "Namespaces with tandem annotations but without the <prefix>/inject=enabled label: their pods without annotations are not sent to tandem (--kube)",
            namespaces_not_opted_in.clone(),
        );
        let policy_namespaces_not_opted_in = Family::default();
        registry.register(
            "policy_namespaces_not_opted_in",
            "Namespaces without the <prefix>/inject=enabled label that a policy's defaults or enforce select, by policy (--kube)",
            policy_namespaces_not_opted_in.clone(),
        );
        let faults = super::faults::Faults::register(&mut registry);
        Arc::new(Metrics {
            registry,
            reviews,
            rejected,
            injections,
            denials,
            warnings,
            policy_reloads,
            policy_reload_ok,
            policies,
            tls_reloads,
            stale_pods,
            drift_scans,
            tls_expiry,
            ready,
            namespaces_not_opted_in,
            policy_namespaces_not_opted_in,
            policy_names: Default::default(),
            faults,
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

    /// Counts a reload of `source`'s policies, and records whether it succeeded.
    pub fn policy_reload(&self, source: &'static str, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.policy_reloads
            .get_or_create(&[("source", source), ("result", result)])
            .inc();
        self.policy_loaded(source, ok);
    }

    /// Counts a failed attempt to read `source` (a watch that broke and will retry) that
    /// leaves the policies loaded last in force and says nothing about them.
    pub fn policy_read_failed(&self, source: &'static str) {
        self.policy_reloads
            .get_or_create(&[("source", source), ("result", "error")])
            .inc();
    }

    /// Records whether the last load of `source` succeeded, without counting a reload
    /// (the first load, at startup).
    pub fn policy_loaded(&self, source: &'static str, ok: bool) {
        self.policy_reload_ok
            .get_or_create(&[("source", source)])
            .set(i64::from(ok));
    }

    pub fn tls_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.tls_reloads.get_or_create(&[("result", result)]).inc();
    }

    /// Whether `/readyz` answers ok, as of this scrape.
    pub fn ready(&self, ready: bool) {
        self.ready.set(i64::from(ready));
    }

    /// What counts on pods that are never sent: namespaces with annotations, and per
    /// policy the namespaces it selects, without the opt-in label. Policies no longer
    /// found lose their series.
    pub fn not_opted_in(&self, findings: &Findings) {
        self.namespaces_not_opted_in
            .set(findings.namespaces.len() as i64);
        let family = &self.policy_namespaces_not_opted_in;
        let mut gone = Vec::new();
        // prometheus-client has no iteration over a family: keep the names it was given.
        let mut known = self
            .policy_names
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for name in known.iter() {
            if !findings.policies.contains_key(name) {
                gone.push(name.clone());
            }
        }
        for name in gone {
            family.remove(&[("policy", name.clone())]);
            known.remove(&name);
        }
        for (name, namespaces) in &findings.policies {
            family
                .get_or_create(&[("policy", name.clone())])
                .set(namespaces.len() as i64);
            known.insert(name.clone());
        }
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

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    fn value(metrics: &Metrics, series: &str) -> Option<f64> {
        metrics.encode().lines().find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().unwrap())
        })
    }

    #[test]
    fn policy_reloads_start_at_zero_and_the_last_result_is_kept_per_source() {
        let metrics = Metrics::new();
        for source in ["files", "kube"] {
            for result in ["ok", "error"] {
                let series = format!(
                    r#"tandem_policy_reloads_total{{source="{source}",result="{result}"}}"#
                );
                assert_eq!(value(&metrics, &series), Some(0.0), "{series}");
            }
        }
        let files = r#"tandem_policy_last_reload_successful{source="files"}"#;
        assert_eq!(
            value(&metrics, files),
            None,
            "no series before a first load"
        );
        metrics.policy_loaded("files", true);
        assert_eq!(value(&metrics, files), Some(1.0));
        metrics.policy_reload("files", false);
        assert_eq!(value(&metrics, files), Some(0.0));
        // A broken watch counts, but says nothing about the policies in force.
        metrics.policy_reload("kube", true);
        metrics.policy_read_failed("kube");
        let kube = r#"tandem_policy_last_reload_successful{source="kube"}"#;
        assert_eq!(value(&metrics, kube), Some(1.0));
        let errors = r#"tandem_policy_reloads_total{source="kube",result="error"}"#;
        assert_eq!(value(&metrics, errors), Some(1.0));
    }

    #[test]
    fn certificate_expiry_and_readiness() {
        let metrics = Metrics::new();
        metrics.tls_certificate(1_900_000_000);
        assert_eq!(
            value(&metrics, "tandem_tls_certificate_expiry_timestamp_seconds"),
            Some(1_900_000_000.0)
        );
        metrics.ready(true);
        assert_eq!(value(&metrics, "tandem_ready"), Some(1.0));
        metrics.ready(false);
        assert_eq!(value(&metrics, "tandem_ready"), Some(0.0));
    }

    #[test]
    fn not_opted_in_series_follow_the_findings() {
        let metrics = Metrics::new();
        let mut findings = Findings::default();
        findings
            .namespaces
            .insert("apps".into(), vec!["tandem.dev/log-shipper".into()]);
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        findings.policies = BTreeMap::from([
            ("a".to_string(), set(&["apps", "web"])),
            ("b".to_string(), set(&["web"])),
        ]);
        metrics.not_opted_in(&findings);
        assert_eq!(value(&metrics, "tandem_namespaces_not_opted_in"), Some(1.0));
        let series =
            |policy: &str| format!(r#"tandem_policy_namespaces_not_opted_in{{policy="{policy}"}}"#);
        assert_eq!(value(&metrics, &series("a")), Some(2.0));
        assert_eq!(value(&metrics, &series("b")), Some(1.0));

        findings.namespaces.clear();
        findings.policies.remove("a");
        metrics.not_opted_in(&findings);
        assert_eq!(value(&metrics, "tandem_namespaces_not_opted_in"), Some(0.0));
        assert_eq!(
            value(&metrics, &series("a")),
            None,
            "a policy no longer found loses its series"
        );
        assert_eq!(value(&metrics, &series("b")), Some(1.0));
    }
}

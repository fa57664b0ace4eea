//! Logs (tracing, text or JSON, written out in batches off the request path) and
//! Prometheus metrics.

mod lines;

use std::{
    io::Write,
    sync::{Arc, Mutex},
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::{admission::Verdict, config::LogFormat, invalid::Reason, pattern::Pattern};

/// Installs the global subscriber. Log lines are formatted by the thread that logs them
/// into a shared buffer, which a background thread writes out in batches: a review never
/// waits for the terminal or the log collector, and never wakes another thread per line.
/// Keep the returned guard alive until exit: dropping it writes what is left.
pub fn init(format: LogFormat) -> LogGuard {
    let writer = BatchWriter::start(std::io::stdout());
    let filter = EnvFilter::try_from_env("TANDEM_LOG")
        .unwrap_or_else(|_| EnvFilter::new("info,kube=warn,hyper=warn,rustls=warn"));
    tracing_subscriber::registry()
        .with(filter)
        .with(
            fmt::layer()
                .event_format(lines::Lines(format))
                .with_writer(writer.clone()),
        )
        .init();
    LogGuard(writer)
}

/// Writes what is still buffered when dropped.
pub struct LogGuard(BatchWriter);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

/// How often buffered log lines are written out while lines keep coming…
const FLUSH_EVERY: Duration = Duration::from_millis(10);
/// …and how long the writer sleeps at most when they do not (it backs off to this).
const IDLE_FLUSH_EVERY: Duration = Duration::from_millis(250);
/// A buffer this full is written out at once by the thread that filled it.
const FLUSH_AT: usize = 1024 * 1024;
/// What each of the two buffers starts with; they keep what they grow to.
const CAPACITY: usize = 256 * 1024;

/// A log sink that collects lines in memory and writes them out every [`FLUSH_EVERY`]
/// (or when [`FLUSH_AT`] bytes are waiting), from a thread of its own. Two buffers take
/// turns, so after warming up no line costs an allocation or a page fault.
#[derive(Clone)]
pub struct BatchWriter {
    inner: Arc<BatchInner>,
}

struct BatchInner {
    /// Where lines are appended.
    filling: Mutex<Vec<u8>>,
    /// The buffer being written out, and the destination; held only while writing.
    draining: Mutex<(Vec<u8>, Box<dyn Write + Send>)>,
}

impl BatchWriter {
    pub fn start(out: impl Write + Send + 'static) -> BatchWriter {
        let writer = BatchWriter {
            inner: Arc::new(BatchInner {
                filling: Mutex::new(Vec::with_capacity(CAPACITY)),
                draining: Mutex::new((Vec::with_capacity(CAPACITY), Box::new(out))),
            }),
        };
        let weak = Arc::downgrade(&writer.inner);
        std::thread::Builder::new()
            .name("tandem-logs".into())
            .spawn(move || {
                let mut pause = FLUSH_EVERY;
                while let Some(inner) = weak.upgrade() {
                    let wrote = BatchWriter { inner }.flush();
                    pause = if wrote {
                        FLUSH_EVERY
                    } else {
                        (pause * 2).min(IDLE_FLUSH_EVERY)
                    };
                    std::thread::sleep(pause);
                }
            })
            .expect("starting the log writer thread");
        writer
    }

    /// Writes out everything buffered so far; says whether there was anything.
    pub fn flush(&self) -> bool {
        let mut draining = lock(&self.inner.draining);
        let (spare, out) = &mut *draining;
        {
            let mut filling = lock(&self.inner.filling);
            if filling.is_empty() {
                return false;
            }
            std::mem::swap(&mut *filling, spare);
        }
        // Nowhere to report a failing log destination; the lines are dropped.
        let _ = out.write_all(spare).and_then(|()| out.flush());
        spare.clear();
        true
    }
}

/// A poisoned lock only means a thread panicked while logging; the bytes are still fine.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One log line's writer: the formatter writes the line in pieces, appended here.
pub struct LineWriter<'a>(&'a BatchWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let full = {
            let mut buffer = lock(&self.0.inner.filling);
            buffer.extend_from_slice(bytes);
            buffer.len() >= FLUSH_AT
        };
        if full {
            self.0.flush();
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> fmt::MakeWriter<'a> for BatchWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
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
        let reviews = counters(
            &mut registry,
            "admission_reviews",
            "AdmissionReviews answered, by outcome (patched, unchanged, denied, skipped)",
            "outcome",
            Verdict::ALL.iter().map(|v| v.label()),
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

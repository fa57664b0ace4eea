//! Logs (tracing, text or JSON, written out in batches off the request path) and
//! Prometheus metrics.
//!
//! Here: installing the log subscriber. The line formats are in `lines`, the per-thread
//! buffers and the thread that writes them out in `batch`; the metrics in `metrics`, with
//! the two every review counts sharded per thread in `reviews`, and what clients and
//! bugs cost (connections cut, review panics) in `faults`.

mod batch;
mod faults;
mod lines;
mod metrics;
mod reviews;

pub use batch::{BatchWriter, LineWriter};
pub use metrics::Metrics;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Installs the global subscriber. Log lines are formatted by the thread that logs them
/// into a buffer of that thread's own, and a background thread writes all the buffers out
/// in batches: a review never waits for the terminal or the log collector, never wakes
/// another thread per line, and does not wait for other threads that log.
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

/// Writes what is still buffered, by every thread, when dropped.
pub struct LogGuard(BatchWriter);

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.0.flush();
    }
}

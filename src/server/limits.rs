//! What the webhook listener allows one client: how long it may take over the TLS
//! handshake, a request head, a request body and an idle keep-alive connection; how many
//! connections may be open; how many HTTP/2 streams each may run; how many bytes of request
//! bodies are held at once. Each is a `serve` flag (README, "Limits").
//!
//! The API server keeps a few connections open per replica and sends one review at a time
//! on each, within its own webhook timeout (10 s by default, 30 s at most): every limit
//! here is far above what it needs, and well below what a client that stalls on purpose
//! would like.

use std::time::Duration;

/// The limits; [`Limits::default`] is what the flags default to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once. A connection beyond it takes the place of the one that
    /// has done nothing for longest (still in its handshake, or idle); when every open
    /// connection has a request in flight, it is closed at once.
    pub max_connections: usize,
    /// From accepting a connection to the end of its TLS handshake.
    pub handshake_timeout: Duration,
    /// HTTP/1.1: from the first byte of a request head to its end.
    pub header_read_timeout: Duration,
    /// From the end of a request head to the end of its body.
    pub body_read_timeout: Duration,
    /// A connection with no request for this long is closed (gracefully: HTTP/2 gets a
    /// GOAWAY). Longer than the API server's own idle timeout for webhook connections
    /// (Go's 90 s), so that it is the API server that closes an idle connection: closing
    /// it here first races with a review it is about to send on it.
    pub idle_timeout: Duration,
    /// HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub http2_max_streams: u32,
    /// Bytes of request bodies held at once, over all connections. A body that would pass
    /// it waits for room, within its `body_read_timeout`.
    pub max_body_memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 1024,
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            http2_max_streams: 256,
            max_body_memory: 64 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// How often each connection's watchdog looks at it: a quarter of the shortest
    /// timeout it enforces, between 10 ms and 1 s. A timeout fires at most this late.
    pub fn tick(&self) -> Duration {
        (self.header_read_timeout.min(self.idle_timeout) / 4)
            .clamp(Duration::from_millis(10), Duration::from_secs(1))
    }
}

//! The open webhook connections, and what cuts one short: the cap on how many are open
//! (a new one takes the place of the one that has done nothing for longest), and each
//! connection's watchdog (its request head too slow, idle too long, stalled mid-answer).
//!
//! A connection's [`Activity`] is counted as it goes (bytes read and written, requests in
//! flight and served: a few uncontended atomic adds, on the thread serving it) and looked
//! at by its watchdog every [`Limits::tick`]: no timer is set or reset per request.

use std::{
    collections::HashMap,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use prometheus_client::metrics::gauge::Gauge;
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    sync::Notify,
    time::Instant,
};

use super::limits::Limits;

/// Why a connection was closed by tandem rather than by its client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cut {
    /// At the cap, with no connection to give way: closed as soon as accepted.
    Refused,
    /// Gave way to a new connection at the cap.
    Evicted,
    /// The TLS handshake took longer than `--tls-handshake-timeout`.
    HandshakeTimeout,
    /// An HTTP/1.1 request head took longer than `--header-read-timeout`.
    HeaderTimeout,
    /// No request for `--idle-timeout`.
    Idle,
    /// A request in flight, and not a byte either way for `--idle-timeout`; or a graceful
    /// close that did not finish within `--header-read-timeout`.
    Stalled,
}

impl Cut {
    pub const ALL: [Cut; 6] = [
        Cut::Refused,
        Cut::Evicted,
        Cut::HandshakeTimeout,
        Cut::HeaderTimeout,
        Cut::Idle,
        Cut::Stalled,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Cut::Refused => "refused",
            Cut::Evicted => "evicted",
            Cut::HandshakeTimeout => "handshake_timeout",
            Cut::HeaderTimeout => "header_timeout",
            Cut::Idle => "idle",
            Cut::Stalled => "stalled",
        }
    }

    pub const fn index(self) -> usize {
        self as usize
    }
}

/// What one connection has done so far.
#[derive(Debug)]
pub struct Activity {
    /// Milliseconds since [`Connections`] started: when the connection was accepted.
    opened_ms: u64,
    /// Milliseconds since [`Connections`] started: when its watchdog last saw a request
    /// in flight or just served (`opened_ms` until then).
    busy_ms: AtomicU64,
    handshaken: AtomicBool,
    read: AtomicU64,
    written: AtomicU64,
    in_flight: AtomicUsize,
    served: AtomicU64,
    evicted: AtomicBool,
    /// Woken on eviction, for a connection still in its handshake.
    evict: Notify,
}

impl Activity {
    fn new(now_ms: u64) -> Activity {
        Activity {
            opened_ms: now_ms,
            busy_ms: AtomicU64::new(now_ms),
            handshaken: AtomicBool::new(false),
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            evicted: AtomicBool::new(false),
            evict: Notify::new(),
        }
    }

    pub fn handshaken(&self) {
        self.handshaken.store(true, Ordering::Relaxed);
    }

    /// Resolves once the connection has been chosen to give way to a new one.
    pub async fn evicted(&self) {
        let notified = self.evict.notified();
        if !self.evicted.load(Ordering::Acquire) {
            notified.await;
        }
    }

    /// Counts a request from now until the returned guard is dropped.
    pub fn request(self: &Arc<Self>) -> Request {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Request(self.clone())
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }
}

/// A request in flight on its connection.
pub struct Request(Arc<Activity>);

impl Drop for Request {
    fn drop(&mut self) {
        self.0.served.fetch_add(1, Ordering::Relaxed);
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The open connections, and the cap on them.
pub struct Connections {
    max: usize,
    started: Instant,
    table: Mutex<Table>,
    /// `tandem_open_connections`.
    gauge: Gauge,
}

#[derive(Default)]
struct Table {
    next: u64,
    open: HashMap<u64, Arc<Activity>>,
}

/// What [`Connections::admit`] decided about a new connection.
pub enum Admitted {
    /// Serve it (and perhaps another gave way).
    Open { open: Open, evicted: bool },
    /// Close it: the cap is reached and every open connection has a request in flight.
    Refused,
}

/// One admitted connection, in the table until dropped.
pub struct Open {
    id: u64,
    pub activity: Arc<Activity>,
    connections: Arc<Connections>,
}

impl Drop for Open {
    fn drop(&mut self) {
        lock(&self.connections.table).open.remove(&self.id);
        self.connections.gauge.dec();
    }
}

impl Connections {
    /// At most `max` open (at least one); `gauge` follows how many are.
    pub fn new(max: usize, gauge: Gauge) -> Arc<Connections> {
        Arc::new(Connections {
            max: max.max(1),
            started: Instant::now(),
            table: Mutex::default(),
            gauge,
        })
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// How many are open (given-way ones that have not closed yet included).
    #[cfg(test)]
    fn count(&self) -> usize {
        lock(&self.table).open.len()
    }

    /// Takes a new connection in. At the cap, an open connection with no request in
    /// flight gives way: first one that has been in its TLS handshake for more than
    /// [`HANDSHAKE_GRACE`] (oldest first), then the one quiet longest of those that never
    /// sent a request and are quiet for [`IDLE_GRACE`], then a younger one still in (or
    /// just out of) its handshake, and only then a client's keep-alive connection quiet
    /// for [`IDLE_GRACE`] (closing one races with a request the client may be sending).
    /// One that served a request within [`IDLE_GRACE`] never gives way: when only those
    /// are left, the new connection is refused. A client that is served keeps its
    /// connection; one that only holds a socket open loses it to the next that comes.
    pub fn admit(self: &Arc<Self>) -> Admitted {
        self.admit_at(self.now_ms())
    }

    fn admit_at(self: &Arc<Self>, now_ms: u64) -> Admitted {
        let mut table = lock(&self.table);
        let evicting = table
            .open
            .values()
            .filter(|a| a.evicted.load(Ordering::Relaxed))
            .count();
        let mut evicted = false;
        if table.open.len() - evicting >= self.max {
            let grace = HANDSHAKE_GRACE.as_millis() as u64;
            let idle_grace = IDLE_GRACE.as_millis() as u64;
            let victim = table
                .open
                .values()
                .filter(|a| !a.evicted.load(Ordering::Relaxed) && a.in_flight() == 0)
                .filter_map(|a| {
                    let quiet = now_ms.saturating_sub(a.busy_ms.load(Ordering::Relaxed));
                    if !a.handshaken.load(Ordering::Relaxed) {
                        let old = now_ms.saturating_sub(a.opened_ms) >= grace;
                        Some((if old { 0 } else { 2 }, a.opened_ms, a))
                    } else if quiet >= idle_grace && a.served.load(Ordering::Relaxed) == 0 {
                        // Through its handshake and never a request: a socket held open.
                        Some((1, a.busy_ms.load(Ordering::Relaxed), a))
                    } else if quiet >= idle_grace {
                        // A client's pooled connection, quiet for a while: the last
                        // resort, since a client may be sending on it as it closes.
                        Some((3, a.busy_ms.load(Ordering::Relaxed), a))
                    } else if a.served.load(Ordering::Relaxed) == 0 {
                        // Just through its handshake, its first request yet to come.
                        Some((2, a.opened_ms, a))
                    } else {
                        // Served a request within IDLE_GRACE: a client in use (a pooled
                        // keep-alive connection between two reviews) never gives way.
                        None
                    }
                })
                .min_by_key(|(tier, since, _)| (*tier, *since))
                .map(|(_, _, a)| a);
            match victim {
                Some(victim) => {
                    victim.evicted.store(true, Ordering::Release);
                    victim.evict.notify_waiters();
                    evicted = true;
                }
                None => return Admitted::Refused,
            }
        }
        let id = table.next;
        table.next += 1;
        let activity = Arc::new(Activity::new(now_ms));
        table.open.insert(id, activity.clone());
        self.gauge.inc();
        Admitted::Open {
            open: Open {
                id,
                activity,
                connections: self.clone(),
            },
            evicted,
        }
    }
}

/// A TLS handshake takes milliseconds; one still going after this long is the first to
/// give way at the cap.
pub const HANDSHAKE_GRACE: Duration = Duration::from_secs(1);

/// A connection that served a request this recently is in use and never gives way (the
/// watchdog marks it busy once a tick, so this is a few ticks).
pub const IDLE_GRACE: Duration = Duration::from_secs(5);

/// A poisoned table only means a thread panicked while holding it; the map is fine.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What a watchdog says to do with its connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Ask it to finish (HTTP/2: GOAWAY; HTTP/1.1: close once the answer is written).
    Finish(Cut),
    /// Close it now.
    Close(Cut),
}

/// Looks at one connection's [`Activity`] every tick and says when to cut it short.
pub struct Watchdog {
    limits: Limits,
    http2: bool,
    served: u64,
    /// Bytes read when the connection was last seen busy.
    read: u64,
    progress: u64,
    idle_since: Instant,
    progress_since: Instant,
    /// When bytes of a new HTTP/1.1 request head were first seen.
    head_since: Option<Instant>,
    finishing_since: Option<Instant>,
}

impl Watchdog {
    pub fn new(limits: Limits, http2: bool, now: Instant) -> Watchdog {
        Watchdog {
            limits,
            http2,
            served: 0,
            read: 0,
            progress: 0,
            idle_since: now,
            progress_since: now,
            head_since: None,
            finishing_since: None,
        }
    }

    /// The verdict at `now`, if any. A [`Verdict::Finish`] is given once; the connection
    /// is closed if it has not finished `header_read_timeout` later.
    pub fn check(
        &mut self,
        activity: &Activity,
        connections: &Connections,
        now: Instant,
    ) -> Option<Verdict> {
        let in_flight = activity.in_flight();
        if in_flight == 0 && activity.evicted.load(Ordering::Relaxed) {
            return Some(Verdict::Close(Cut::Evicted));
        }
        if let Some(since) = self.finishing_since
            && now - since >= self.limits.header_read_timeout
        {
            return Some(Verdict::Close(Cut::Stalled));
        }
        let served = activity.served.load(Ordering::Relaxed);
        let read = activity.read.load(Ordering::Relaxed);
        let progress = read + activity.written.load(Ordering::Relaxed);
        if progress != self.progress {
            self.progress = progress;
            self.progress_since = now;
        }
        if in_flight > 0 || served != self.served {
            self.served = served;
            self.read = read;
            self.idle_since = now;
            self.head_since = None;
            activity
                .busy_ms
                .store(connections.now_ms(), Ordering::Relaxed);
            if in_flight > 0 && now - self.progress_since >= self.limits.idle_timeout {
                return Some(Verdict::Close(Cut::Stalled));
            }
            return None;
        }
        // HTTP/2 has frames of its own between requests (PING, SETTINGS, WINDOW_UPDATE):
        // there, bytes read while idle are not a request head, and only the idle timeout
        // applies, as in Go's HTTP/2 server.
        if !self.http2 && read != self.read {
            let since = *self.head_since.get_or_insert(now);
            if now - since >= self.limits.header_read_timeout {
                return Some(Verdict::Close(Cut::HeaderTimeout));
            }
            return None;
        }
        if self.finishing_since.is_none() && now - self.idle_since >= self.limits.idle_timeout {
            self.finishing_since = Some(now);
            return Some(Verdict::Finish(Cut::Idle));
        }
        None
    }
}

/// A connection's stream, counting the bytes that pass for its [`Activity`].
pub struct Tracked<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    pub fn new(inner: S, activity: Arc<Activity>) -> Self {
        Tracked { inner, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            self.activity.read.fetch_add(read as u64, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(written)) = polled {
            self.activity
                .written
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(written)) = polled {
            self.activity
                .written
                .fetch_add(written as u64, Ordering::Relaxed);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            ..Limits::default()
        }
    }

    fn admit(connections: &Arc<Connections>, at_ms: u64) -> (Open, bool) {
        match connections.admit_at(at_ms) {
            Admitted::Open { open, evicted } => (open, evicted),
            Admitted::Refused => panic!("refused"),
        }
    }

    #[test]
    fn at_the_cap_an_old_handshake_gives_way_first_then_the_longest_idle_and_busy_ones_never() {
        let connections = Connections::new(4, Gauge::default());
        let (busy, _) = admit(&connections, 0);
        busy.activity.handshaken();
        let _request = busy.activity.request();
        let (stuck, _) = admit(&connections, 100);
        let (idle, _) = admit(&connections, 200);
        idle.activity.handshaken();
        let (young, _) = admit(&connections, 4_900);
        assert_eq!(connections.count(), 4);
        let evicted = |open: &Open| open.activity.evicted.load(Ordering::Relaxed);

        // At 5 s: `stuck` has been in its handshake for 4.9 s.
        let (_fifth, gave_way) = admit(&connections, 5_000);
        assert!(gave_way);
        assert!(evicted(&stuck));
        assert!(!evicted(&idle) && !evicted(&young) && !evicted(&busy));
        // Until it has closed, it is not counted against the cap, nor chosen again.
        let (_sixth, gave_way) = admit(&connections, 5_001);
        assert!(gave_way);
        assert!(evicted(&idle), "then the one idle longest");
        drop((stuck, idle));
        assert_eq!(connections.count(), 4);

        // Left: busy, young (0.1 s into its handshake), fifth and sixth (just opened).
        let (_seventh, gave_way) = admit(&connections, 5_002);
        assert!(gave_way);
        assert!(
            evicted(&young),
            "a young handshake only when nothing else can go"
        );
        assert!(
            !evicted(&busy),
            "a connection with a request in flight never gives way"
        );
    }

    #[test]
    fn a_connection_in_use_between_two_requests_never_gives_way() {
        let connections = Connections::new(2, Gauge::default());
        let (pooled, _) = admit(&connections, 0);
        pooled.activity.handshaken();
        drop(pooled.activity.request());
        // As its watchdog marks it at a tick.
        pooled.activity.busy_ms.store(9_000, Ordering::Relaxed);
        let (young, _) = admit(&connections, 9_500);
        // At 10 s: the pooled connection served a request a second ago; the young
        // handshake gives way instead, and then the next new one.
        let (next, gave_way) = admit(&connections, 10_000);
        assert!(gave_way);
        assert!(young.activity.evicted.load(Ordering::Relaxed));
        assert!(!pooled.activity.evicted.load(Ordering::Relaxed));
        drop(young);
        next.activity.handshaken();
        drop(next.activity.request());
        next.activity.busy_ms.store(13_500, Ordering::Relaxed);
        // Quiet for IDLE_GRACE, it is idle like any other.
        let (_later, gave_way) = admit(&connections, 14_000);
        assert!(gave_way);
        assert!(pooled.activity.evicted.load(Ordering::Relaxed));
    }

    #[test]
    fn a_quiet_client_connection_outlasts_sockets_that_never_sent_a_request() {
        let connections = Connections::new(3, Gauge::default());
        let (pooled, _) = admit(&connections, 0);
        pooled.activity.handshaken();
        drop(pooled.activity.request());
        let (silent, _) = admit(&connections, 1_000);
        silent.activity.handshaken();
        let (young, _) = admit(&connections, 19_900);
        // At 20 s: `pooled` has been quiet for 20 s, `silent` for 19 s without a request,
        // `young` is 0.1 s into its handshake.
        let evicted = |open: &Open| open.activity.evicted.load(Ordering::Relaxed);
        let (_fourth, gave_way) = admit(&connections, 20_000);
        assert!(gave_way);
        assert!(
            evicted(&silent),
            "a socket that never sent a request goes first"
        );
        drop(silent);
        let (_fifth, _) = admit(&connections, 20_001);
        assert!(evicted(&young), "then a young handshake");
        assert!(!evicted(&pooled), "a client's connection last");
    }

    #[test]
    fn a_refusal_comes_only_when_every_connection_is_busy() {
        let connections = Connections::new(2, Gauge::default());
        let Admitted::Open { open: a, .. } = connections.admit() else {
            panic!()
        };
        let Admitted::Open { open: b, .. } = connections.admit() else {
            panic!()
        };
        let (_ra, _rb) = (a.activity.request(), b.activity.request());
        assert!(matches!(connections.admit(), Admitted::Refused));
        drop(_ra);
        assert!(matches!(
            connections.admit(),
            Admitted::Open { evicted: true, .. }
        ));
        assert!(a.activity.evicted.load(Ordering::Relaxed));
    }

    #[test]
    fn a_slow_http1_head_is_closed_after_the_header_timeout_and_an_idle_one_finished_later() {
        let connections = Connections::new(10, Gauge::default());
        let Admitted::Open { open, .. } = connections.admit() else {
            panic!()
        };
        let activity = &open.activity;
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut dog = Watchdog::new(limits(), false, start);
        // Idle for a while: nothing.
        assert_eq!(dog.check(activity, &connections, at(60)), None);
        // A byte of a head arrives, then more, slowly.
        activity.read.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.check(activity, &connections, at(61)), None);
        activity.read.fetch_add(1, Ordering::Relaxed);
        assert_eq!(dog.check(activity, &connections, at(70)), None);
        assert_eq!(
            dog.check(activity, &connections, at(71)),
            Some(Verdict::Close(Cut::HeaderTimeout))
        );

        // The same bytes on HTTP/2 are frames between requests: only idleness counts.
        let mut dog = Watchdog::new(limits(), true, start);
        assert_eq!(dog.check(activity, &connections, at(71)), None);
        assert_eq!(
            dog.check(activity, &connections, at(120)),
            Some(Verdict::Finish(Cut::Idle))
        );
        assert_eq!(dog.check(activity, &connections, at(125)), None);
        assert_eq!(
            dog.check(activity, &connections, at(130)),
            Some(Verdict::Close(Cut::Stalled)),
            "a graceful finish that does not end is cut"
        );
    }

    #[test]
    fn served_requests_keep_a_connection_alive_and_a_stalled_one_is_closed() {
        let connections = Connections::new(10, Gauge::default());
        let Admitted::Open { open, .. } = connections.admit() else {
            panic!()
        };
        let activity = &open.activity;
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut dog = Watchdog::new(limits(), false, start);
        for minute in 1..10 {
            activity.read.fetch_add(500, Ordering::Relaxed);
            drop(activity.request());
            assert_eq!(dog.check(activity, &connections, at(minute * 60)), None);
        }
        // Idle 120 s after the last one: finished.
        assert_eq!(
            dog.check(activity, &connections, at(9 * 60 + 120)),
            Some(Verdict::Finish(Cut::Idle))
        );

        let mut dog = Watchdog::new(limits(), false, start);
        let request = activity.request();
        assert_eq!(dog.check(activity, &connections, at(1)), None);
        assert_eq!(dog.check(activity, &connections, at(100)), None);
        assert_eq!(
            dog.check(activity, &connections, at(121)),
            Some(Verdict::Close(Cut::Stalled))
        );
        drop(request);
    }
}

//! The two listeners and their lifecycle: HTTPS for the webhook (HTTP/1.1 keep-alive and
//! HTTP/2 by ALPN, `TCP_NODELAY`; each connection served by one of the `workers`
//! threads), plain HTTP for metrics and probes, and a graceful shutdown: readiness false
//! first, then stop accepting, then let in-flight reviews finish. The only async HTTP code
//! in tandem.

mod connections;
pub mod limits;
pub mod routes;
pub mod tls;
mod workers;

pub use workers::on_connections_closed;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    pin::{Pin, pin},
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use hyper::{
    body::Incoming,
    server::conn::{http1, http2},
    service::{HttpService, service_fn},
};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls::ServerConfig;
use tokio::{net::TcpListener, sync::watch, task::JoinSet, time::Instant};
use tokio_rustls::TlsAcceptor;

pub use connections::Cut;
use connections::{Activity, Admitted, Connections, Tracked, Verdict, Watchdog};
use limits::Limits;
use routes::{AppState, ThreadState};
use workers::Workers;

/// Both listeners, bound and not yet serving.
pub struct Server {
    webhook: TcpListener,
    operations: TcpListener,
    tls: Arc<ServerConfig>,
    state: Arc<AppState>,
    workers: Workers,
}

/// How shutdown proceeds after the signal.
#[derive(Clone, Copy, Debug)]
pub struct Shutdown {
    /// Readiness is false and reviews are still answered for this long.
    pub delay: Duration,
    /// Then in-flight reviews get this long.
    pub timeout: Duration,
}

impl Server {
    /// Binds both listeners and starts `workers` connection threads.
    pub async fn bind(
        webhook: SocketAddr,
        operations: SocketAddr,
        tls: Arc<ServerConfig>,
        state: Arc<AppState>,
        workers: NonZeroUsize,
    ) -> io::Result<Server> {
        Ok(Server {
            webhook: TcpListener::bind(webhook).await?,
            operations: TcpListener::bind(operations).await?,
            tls,
            state,
            workers: Workers::start(workers)?,
        })
    }

    pub fn webhook_addr(&self) -> io::Result<SocketAddr> {
        self.webhook.local_addr()
    }

    pub fn operations_addr(&self) -> io::Result<SocketAddr> {
        self.operations.local_addr()
    }

    /// Serves until `signal` resolves, then shuts down as `shutdown` says.
    pub async fn run(self, signal: impl Future<Output = ()>, shutdown: Shutdown) {
        let Server {
            webhook,
            operations,
            tls,
            state,
            workers,
        } = self;
        let operations_router = routes::operations(state.clone());
        let operations_task = tokio::spawn(async move {
            // Probes and scrapes: plain HTTP/1.1, no TLS, nothing to drain.
            if let Err(error) = axum::serve(operations, operations_router).await {
                tracing::error!(%error, "the metrics listener failed");
            }
        });

        let limits = state.limits;
        let connections = Connections::new(
            limits.max_connections,
            state.metrics.faults.open_connections.clone(),
        );
        // Every connection holds a receiver; a send asks them all to finish, and the
        // sender's `closed` resolves once the last is gone.
        let (drain, draining) = watch::channel(());
        // Owns every connection task, so that those still open at the drain deadline can
        // be closed: the drain signal only asks them to finish.
        let mut tasks = JoinSet::new();
        let acceptor = TlsAcceptor::from(tls);
        let builder = Protocols::new(&limits);
        let per_thread: Vec<Arc<ThreadState>> = (0..workers.count())
            .map(|_| Arc::new(ThreadState::new(state.clone(), workers.count())))
            .collect();

        tokio::pin!(signal);
        let mut stopping = false;
        let delay = tokio::time::sleep(Duration::MAX);
        tokio::pin!(delay);
        loop {
            tokio::select! {
                accepted = webhook.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let open = match connections.admit() {
                            Admitted::Open { open, evicted } => {
                                if evicted {
                                    state.metrics.faults.cut(Cut::Evicted);
                                }
                                open
                            }
                            Admitted::Refused => {
                                state.metrics.faults.cut(Cut::Refused);
                                tracing::debug!(%peer, "at --max-connections with every connection busy: closed");
                                continue;
                            }
                        };
                        let _ = stream.set_nodelay(true);
                        // The socket leaves this runtime; the connection thread's runtime
                        // takes it on the task's first poll.
                        match stream.into_std() {
                            Ok(stream) => {
                                let connection = Connection {
                                    stream,
                                    peer,
                                    activity: open.activity.clone(),
                                    acceptor: acceptor.clone(),
                                    builder: builder.clone(),
                                    limits,
                                    connections: connections.clone(),
                                    draining: draining.clone(),
                                };
                                workers.spawn(&mut tasks, |thread| {
                                    let state = per_thread[thread].clone();
                                    async move {
                                        let _open = open;
                                        connection.serve(state).await;
                                    }
                                });
                            }
                            Err(error) => tracing::warn!(%peer, %error, "handing a connection over failed"),
                        }
                    }
                    Err(error) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(%error, "accepting a connection failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                () = &mut signal, if !stopping => {
                    stopping = true;
                    state.stopping.store(true, Ordering::Relaxed);
                    tracing::info!(delay = ?shutdown.delay, "shutting down: readiness is false, still serving");
                    delay.as_mut().reset(tokio::time::Instant::now() + shutdown.delay);
                }
                () = &mut delay, if stopping => break,
                Some(finished) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Err(error) = finished
                        && error.is_panic()
                    {
                        tracing::error!(%error, "a connection task panicked");
                    }
                }
            }
        }
        drop(webhook);
        drop(draining);
        let open = drain.receiver_count();
        tracing::info!(connections = open, timeout = ?shutdown.timeout, "stopped accepting; draining");
        let _ = drain.send(());
        match tokio::time::timeout(shutdown.timeout, drain.closed()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!("drain deadline passed; closing the remaining connections");
                tasks.shutdown().await;
            }
        }
        operations_task.abort();
        drop(workers);
    }
}

/// HTTP/1.1 and HTTP/2 as the webhook serves them.
#[derive(Clone)]
struct Protocols {
    http1: http1::Builder,
    http2: http2::Builder<TokioExecutor>,
}

impl Protocols {
    fn new(limits: &Limits) -> Self {
        let mut http1 = http1::Builder::new();
        // hyper's own header-read timer would run from the end of one request to the end
        // of the next head, idle time included, and costs a timer per request: the
        // connection's watchdog times heads from their first byte instead.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(None)
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.http2_max_streams)
            // hyper's and h2's defaults, stated so that an upgrade cannot loosen them: a
            // client that opens and resets streams faster than they are served ("rapid
            // reset", CVE-2023-44487) gets a GOAWAY after 20 such streams pending, and
            // one whose streams keep failing after 1024 resets of ours.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024);
        Protocols { http1, http2 }
    }
}

/// One accepted webhook connection, not yet served.
struct Connection {
    stream: std::net::TcpStream,
    peer: SocketAddr,
    activity: Arc<Activity>,
    acceptor: TlsAcceptor,
    builder: Protocols,
    limits: Limits,
    connections: Arc<Connections>,
    draining: watch::Receiver<()>,
}

impl Connection {
    /// TLS handshake, then HTTP until it closes, on the connection thread `state` is
    /// for.
    async fn serve(self, state: Arc<ThreadState>) {
        let Connection {
            stream,
            peer,
            activity,
            acceptor,
            builder,
            limits,
            connections,
            draining,
        } = self;
        let metrics = state.app.metrics.clone();
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%peer, %error, "taking a connection on failed");
                return;
            }
        };
        let handshake = tokio::time::timeout(limits.handshake_timeout, acceptor.accept(stream));
        let tls = tokio::select! {
            finished = handshake => match finished {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%peer, %error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    metrics.faults.cut(Cut::HandshakeTimeout);
                    tracing::debug!(%peer, "TLS handshake timed out");
                    return;
                }
            },
            () = activity.evicted() => {
                tracing::debug!(%peer, "closed in its TLS handshake to make room (--max-connections)");
                return;
            }
        };
        activity.handshaken();
        // ALPN already said which protocol the client speaks: no need to sniff the
        // first bytes of every connection (hyper-util's auto builder), which also wraps
        // every read that follows.
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(Tracked::new(tls, activity.clone()));
        let counted = activity.clone();
        let service = service_fn(move |request| {
            let request_guard = counted.request();
            let state = state.clone();
            async move {
                let answer = routes::webhook(state, request).await;
                drop(request_guard);
                answer
            }
        });
        let watchdog = Watchdog::new(limits, h2, Instant::now());
        let guard = Guard {
            activity: &activity,
            connections: &connections,
            watchdog,
            tick: limits.tick(),
            draining,
            metrics: &metrics,
            peer,
        };
        let result = if h2 {
            let connection = pin!(builder.http2.serve_connection(io, service));
            guard.drive(connection).await
        } else {
            let connection = pin!(builder.http1.serve_connection(io, service));
            guard.drive(connection).await
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

/// A hyper connection that can be asked to finish.
trait Finish: Future<Output = hyper::Result<()>> {
    fn finish(self: Pin<&mut Self>);
}

impl<I, S> Finish for http1::Connection<I, S>
where
    S: HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: hyper::body::Body + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, E> Finish for http2::Connection<I, S, E>
where
    S: HttpService<Incoming>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    S::ResBody: hyper::body::Body + Send + 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    E: hyper::rt::bounds::Http2ServerConnExec<S::Future, S::ResBody>,
{
    fn finish(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs a connection under its watchdog and the server's drain signal.
struct Guard<'a> {
    activity: &'a Activity,
    connections: &'a Connections,
    watchdog: Watchdog,
    tick: Duration,
    draining: watch::Receiver<()>,
    metrics: &'a crate::telemetry::Metrics,
    peer: SocketAddr,
}

impl Guard<'_> {
    async fn drive<C: Finish>(mut self, mut connection: Pin<&mut C>) -> hyper::Result<()> {
        let mut next_look = pin!(tokio::time::sleep(self.tick));
        let mut drained = false;
        loop {
            tokio::select! {
                biased;
                result = connection.as_mut() => return result,
                changed = self.draining.changed(), if !drained => {
                    drained = true;
                    if changed.is_ok() {
                        connection.as_mut().finish();
                    }
                }
                () = next_look.as_mut() => {
                    let now = Instant::now();
                    next_look.as_mut().reset(now + self.tick);
                    match self.watchdog.check(self.activity, self.connections, now) {
                        None => {}
                        Some(Verdict::Finish(cut)) => {
                            self.metrics.faults.cut(cut);
                            tracing::debug!(peer = %self.peer, reason = cut.label(), "finishing the connection");
                            connection.as_mut().finish();
                        }
                        Some(Verdict::Close(cut)) => {
                            self.metrics.faults.cut(cut);
                            tracing::debug!(peer = %self.peer, reason = cut.label(), "closing the connection");
                            return Ok(());
                        }
                    }
                }
            }
        }
    }
}

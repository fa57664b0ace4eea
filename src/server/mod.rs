//! The two listeners and their lifecycle: HTTPS for the webhook (HTTP/1.1 keep-alive and
//! HTTP/2 by ALPN, `TCP_NODELAY`; each connection served by one of the `workers`
//! threads), plain HTTP for metrics and probes, and a graceful shutdown: readiness false
//! first, then stop accepting, then let in-flight reviews finish. The only async HTTP code
//! in tandem.

pub mod routes;
pub mod tls;
mod workers;

use std::{
    future::Future,
    io,
    net::SocketAddr,
    num::NonZeroUsize,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use hyper::{
    server::conn::{http1, http2},
    service::service_fn,
};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::graceful::GracefulShutdown,
};
use rustls::ServerConfig;
use tokio::{net::TcpListener, task::JoinSet};
use tokio_rustls::TlsAcceptor;

use routes::{AppState, ThreadState};
use workers::Workers;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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

        let graceful = GracefulShutdown::new();
        // Owns every connection task, so that those still open at the drain deadline can
        // be closed: GracefulShutdown only asks them to finish.
        let mut connections = JoinSet::new();
        let acceptor = TlsAcceptor::from(tls);
        let builder = Protocols::new();
        let per_thread: Vec<Arc<ThreadState>> = (0..workers.count())
            .map(|_| Arc::new(ThreadState(state.clone())))
            .collect();

        tokio::pin!(signal);
        let mut stopping = false;
        let delay = tokio::time::sleep(Duration::MAX);
        tokio::pin!(delay);
        loop {
            tokio::select! {
                accepted = webhook.accept() => match accepted {
                    Ok((stream, peer)) => {
                        let _ = stream.set_nodelay(true);
                        // The socket leaves this runtime; the connection thread's runtime
                        // takes it on the task's first poll.
                        match stream.into_std() {
                            Ok(stream) => workers.spawn(&mut connections, |thread| serve_connection(
                                stream, peer, &acceptor, &builder, &per_thread[thread], &graceful,
                            )),
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
                Some(finished) = connections.join_next(), if !connections.is_empty() => {
                    if let Err(error) = finished
                        && error.is_panic()
                    {
                        tracing::error!(%error, "a connection task panicked");
                    }
                }
            }
        }
        drop(webhook);
        let open = graceful.count();
        tracing::info!(connections = open, timeout = ?shutdown.timeout, "stopped accepting; draining");
        match tokio::time::timeout(shutdown.timeout, graceful.shutdown()).await {
            Ok(()) => tracing::info!("all connections closed"),
            Err(_) => {
                tracing::warn!("drain deadline passed; closing the remaining connections");
                connections.shutdown().await;
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
    fn new() -> Self {
        let mut http1 = http1::Builder::new();
        // A stalled client is dropped, but only after the API server's own idle timeout
        // for webhook connections (Go's default, 90 s): closing an idle keep-alive
        // connection first races with a request the API server is about to send on it.
        http1
            .timer(TokioTimer::new())
            .header_read_timeout(Duration::from_secs(120))
            .keep_alive(true);
        let mut http2 = http2::Builder::new(TokioExecutor::new());
        http2.timer(TokioTimer::new()).max_concurrent_streams(256);
        Protocols { http1, http2 }
    }
}

/// The task that serves one accepted connection: TLS handshake, then HTTP until it closes.
fn serve_connection(
    stream: std::net::TcpStream,
    peer: SocketAddr,
    acceptor: &TlsAcceptor,
    builder: &Protocols,
    state: &Arc<ThreadState>,
    graceful: &GracefulShutdown,
) -> impl Future<Output = ()> + Send + 'static {
    let acceptor = acceptor.clone();
    let builder = builder.clone();
    let state = state.clone();
    let service = service_fn(move |request| routes::webhook(state.clone(), request));
    let watcher = graceful.watcher();
    async move {
        let stream = match tokio::net::TcpStream::from_std(stream) {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%peer, %error, "taking a connection on failed");
                return;
            }
        };
        let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(error)) => {
                tracing::debug!(%peer, %error, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        // ALPN already said which protocol the client speaks: no need to sniff the
        // first bytes of every connection (hyper-util's auto builder), which also wraps
        // every read that follows.
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let result = if h2 {
            watcher
                .watch(builder.http2.serve_connection(io, service))
                .await
        } else {
            watcher
                .watch(builder.http1.serve_connection(io, service))
                .await
        };
        if let Err(error) = result {
            tracing::debug!(%peer, %error, "connection ended with an error");
        }
    }
}

//! The HTTP routes: `POST /mutate` on the webhook listener; `/metrics`, `/healthz` and
//! `/readyz` on the plain-HTTP one. Handlers are thin: decode, call
//! [`admission::review`], count, log one line, answer.
//!
//! The webhook listener has one route and is served by hyper directly ([`webhook`]): a
//! router would only match one path, and axum's costs a few allocations and shared
//! reference counts on every review. The operations listener uses axum.

use std::{
    convert::Infallible,
    future::Future,
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::Poll,
    time::{Duration, Instant},
};

use axum::{
    Router,
    extract::State,
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, body::Incoming};
use tokio::sync::{Semaphore, SemaphorePermit, watch};

use super::limits::Limits;
use crate::{
    admission,
    policy::{snapshot::Snapshot, source::store::Store},
    telemetry::Metrics,
};

/// What the webhook answers with: a body in one piece.
pub type Answer = hyper::Response<Full<Bytes>>;

/// What answers one review body under a policy snapshot: [`admission::review`]. A field
/// of [`AppState`] so that a test can put in one that fails, to prove what the handler
/// does with a review that panics (tests/panic_net.rs); no review tandem knows of panics.
pub type Review = fn(&[u8], &Snapshot) -> Result<admission::Reviewed, admission::BadReview>;

/// What the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
    /// What one client may take (timeouts, connections, body memory).
    pub limits: Limits,
    /// True once the API server's policies and namespaces are synced (always true without
    /// `--kube`).
    pub synced: watch::Receiver<bool>,
    /// Set on SIGTERM: readiness goes false while reviews are still answered.
    pub stopping: AtomicBool,
    /// [`admission::review`].
    pub review: Review,
}

/// A connection thread's own handle to the [`AppState`]. Every request holds one while it
/// runs; with one handle per thread, that reference count stays in the thread's own cache
/// instead of moving between cores on every request.
pub struct ThreadState {
    pub app: Arc<AppState>,
    /// This thread's share of `--max-body-memory`, in KiB: taken as body bytes arrive,
    /// given back when the review is answered. Per thread, so that taking it is an
    /// uncontended atomic operation.
    bodies: Semaphore,
}

impl ThreadState {
    /// The state of one of `threads` connection threads.
    pub fn new(app: Arc<AppState>, threads: usize) -> ThreadState {
        let share = (app.limits.max_body_memory / threads.max(1)).max(app.max_body);
        let kib = share.div_ceil(1024).min(Semaphore::MAX_PERMITS);
        ThreadState {
            app,
            bodies: Semaphore::new(kib),
        }
    }
}

impl AppState {
    pub fn ready(&self) -> bool {
        *self.synced.borrow() && !self.stopping.load(Ordering::Relaxed)
    }
}

/// Answers one request to the webhook listener: `POST /mutate` (any query, such as the
/// API server's `?timeout=10s`) reviews; another method there is a 405, another path a 404.
pub async fn webhook(
    state: Arc<ThreadState>,
    request: Request<Incoming>,
) -> Result<Answer, Infallible> {
    Ok(if request.uri().path() != "/mutate" {
        error(
            StatusCode::NOT_FOUND,
            "no such path; accepted: POST /mutate",
        )
    } else if request.method() != hyper::Method::POST {
        let mut answer = reject(
            &state.app,
            StatusCode::METHOD_NOT_ALLOWED,
            "only POST is accepted on /mutate",
        );
        answer
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        answer
    } else {
        mutate(&state, request).await
    })
}

/// The operations listener's routes.
pub fn operations(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    if state.ready() {
        "ok\n".into_response()
    } else if state.stopping.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "waiting for the first sync with the API server\n",
        )
            .into_response()
    }
}

async fn metrics(State(state): State<Arc<AppState>>) -> Response {
    state.metrics.ready(state.ready());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn mutate(thread: &ThreadState, request: Request<Incoming>) -> Answer {
    let state = &*thread.app;
    let started = Instant::now();
    let (parts, body) = request.into_parts();

    let json = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"));
    if !json {
        return reject(
            state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json",
        );
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > state.max_body.saturating_mul(DISCARD_UP_TO)) {
        return too_large(state);
    }
    let waiting = AtomicBool::new(false);
    let read = read_body(body, state.max_body, &thread.bodies, &waiting);
    let (body, _room) = match within(state.limits.body_read_timeout, read).await {
        Some(Ok(body)) => body,
        Some(Err(ReadError::TooLarge)) => return too_large(state),
        Some(Err(ReadError::Failed(error))) => {
            return reject(
                state,
                StatusCode::BAD_REQUEST,
                &format!("reading the body failed: {error}"),
            );
        }
        None if waiting.load(Ordering::Relaxed) => {
            let message = format!(
                "tandem is holding --max-body-memory ({} bytes) of request bodies and had no room for this one within --body-read-timeout ({:?}); accepted: the same review again",
                state.limits.max_body_memory, state.limits.body_read_timeout
            );
            return reject(state, StatusCode::SERVICE_UNAVAILABLE, &message);
        }
        None => {
            let message = format!(
                "the body did not arrive within --body-read-timeout ({:?}); accepted: a whole body within that time",
                state.limits.body_read_timeout
            );
            return reject(state, StatusCode::REQUEST_TIMEOUT, &message);
        }
    };

    let snapshot = state.store.snapshot();
    // A bug must not take the connection down with it: the API server would only see a
    // reset. The review is plain synchronous code, so a panic can be caught here and
    // answered like any other failure.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        (state.review)(&body, &snapshot)
    }));
    let Ok(outcome) = outcome else {
        state.metrics.faults.panicked();
        let uid = admission::uid(&body).unwrap_or_default();
        tracing::error!(%uid, "a review panicked (the panic message is above)");
        let message = format!(
            "tandem failed on review {uid:?} (a bug: the log has the panic); the API server applies the webhook's failurePolicy"
        );
        return reject(state, StatusCode::INTERNAL_SERVER_ERROR, &message);
    };
    match outcome {
        Ok(reviewed) => {
            let elapsed = started.elapsed();
            state.metrics.review(&reviewed, elapsed);
            let patterns: Vec<&str> = reviewed.patterns.iter().map(|p| p.name()).collect();
            let reasons: Vec<&str> = reviewed.reasons.iter().map(|r| r.label()).collect();
            tracing::info!(
                uid = %reviewed.uid,
                namespace = %reviewed.namespace,
                pod = %reviewed.name,
                patterns = %patterns.join(","),
                outcome = reviewed.verdict.label(),
                reasons = %reasons.join(","),
                warnings = reviewed.warnings,
                patch_bytes = reviewed.patch_bytes,
                dry_run = reviewed.dry_run,
                duration_us = elapsed.as_micros() as u64,
                "review"
            );
            json_answer(StatusCode::OK, reviewed.body.into())
        }
        Err(bad) => reject(state, StatusCode::BAD_REQUEST, &bad.to_string()),
    }
}

/// A body up to this many times `--max-body` is read to its end, and dropped, before it
/// is answered 413; a larger one (by its Content-Length, or once that much has come) is
/// answered at once and its connection closed. A client still sending when the answer
/// comes may see the connection reset instead of reading it; reading on lets it finish
/// sending and read the 413, on a connection that stays open.
const DISCARD_UP_TO: usize = 2;

enum ReadError {
    TooLarge,
    Failed(hyper::Error),
}

/// `future`'s output, or `None` if it takes longer than `limit`. Most bodies arrive with
/// their head: the first poll finishes those, and no timer is set for them.
async fn within<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let first = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx))).await;
    match first {
        Poll::Ready(output) => Some(output),
        Poll::Pending => tokio::time::timeout(limit, future).await.ok(),
    }
}

/// The whole body, if it is at most `max` bytes, and the room it takes in `bodies` (KiB),
/// held until the answer is written. `waiting` is set while there is no room.
async fn read_body<'a>(
    mut body: Incoming,
    max: usize,
    bodies: &'a Semaphore,
    waiting: &AtomicBool,
) -> Result<(Bytes, Option<SemaphorePermit<'a>>), ReadError> {
    let mut chunks: Vec<Bytes> = Vec::new();
    let mut length = 0usize;
    let mut room: Option<SemaphorePermit<'a>> = None;
    while let Some(frame) = body.frame().await {
        let Ok(data) = frame.map_err(ReadError::Failed)?.into_data() else {
            continue; // trailers
        };
        length = length.saturating_add(data.len());
        if length > max.saturating_mul(DISCARD_UP_TO) {
            return Err(ReadError::TooLarge);
        }
        if length <= max {
            let held = room.as_ref().map_or(0, |r| r.num_permits());
            // Beyond u32 KiB (4 TiB), no room will do: the wait ends at the timeout.
            let needed =
                u32::try_from(length.div_ceil(1024).saturating_sub(held)).unwrap_or(u32::MAX);
            if needed > 0 {
                let more = match bodies.try_acquire_many(needed) {
                    Ok(more) => more,
                    Err(_) => {
                        waiting.store(true, Ordering::Relaxed);
                        let more = bodies
                            .acquire_many(needed)
                            .await
                            .expect("the semaphore is never closed");
                        waiting.store(false, Ordering::Relaxed);
                        more
                    }
                };
                match &mut room {
                    Some(room) => room.merge(more),
                    None => room = Some(more),
                }
            }
            chunks.push(data);
        }
    }
    if length > max {
        return Err(ReadError::TooLarge);
    }
    let body = match chunks.len() {
        1 => chunks.pop().unwrap_or_default(),
        _ => chunks.concat().into(),
    };
    Ok((body, room))
}

fn too_large(state: &AppState) -> Answer {
    let message = format!(
        "the body is larger than {} bytes; accepted: up to --max-body bytes",
        state.max_body
    );
    reject(state, StatusCode::PAYLOAD_TOO_LARGE, &message)
}

fn reject(state: &AppState, status: StatusCode, message: &str) -> Answer {
    state.metrics.rejected(status.as_u16());
    tracing::info!(
        status = status.as_u16(),
        error = message,
        "request rejected"
    );
    error(status, message)
}

/// A one-line JSON error body.
fn error(status: StatusCode, message: &str) -> Answer {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    json_answer(status, body.into())
}

fn json_answer(status: StatusCode, body: Bytes) -> Answer {
    let mut answer = hyper::Response::new(Full::new(body));
    *answer.status_mut() = status;
    answer.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    answer
}

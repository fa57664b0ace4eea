//! The HTTP routes: `POST /mutate` on the webhook listener; `/metrics`, `/healthz` and
//! `/readyz` on the plain-HTTP one. Handlers are thin: decode, call
//! [`admission::review`], count, log one line, answer.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Instant,
};

use axum::{
    Router,
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get, post},
};
use http_body_util::{BodyExt, Limited};
use tokio::sync::watch;

use crate::{admission, policy::store::Store, telemetry::Metrics};

/// What the handlers share.
pub struct AppState {
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub max_body: usize,
    /// True once the API server's policies and namespaces are synced (always true without
    /// `--kube`).
    pub synced: watch::Receiver<bool>,
    /// Set on SIGTERM: readiness goes false while reviews are still answered.
    pub stopping: AtomicBool,
}

impl AppState {
    pub fn ready(&self) -> bool {
        *self.synced.borrow() && !self.stopping.load(Ordering::Relaxed)
    }
}

/// The webhook listener's routes.
pub fn webhook(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/mutate", post(mutate).fallback(method_not_allowed))
        .fallback(any(|| async {
            error(
                StatusCode::NOT_FOUND,
                "no such path; accepted: POST /mutate",
            )
        }))
        .with_state(state)
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
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
        .into_response()
}

async fn mutate(State(state): State<Arc<AppState>>, request: Request) -> Response {
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
            &state,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "content type must be application/json",
        );
    }
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|length| length > state.max_body) {
        return too_large(&state);
    }
    let body: Bytes = match Limited::new(body, state.max_body).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => return too_large(&state),
        Err(error) => {
            return reject(
                &state,
                StatusCode::BAD_REQUEST,
                &format!("reading the body failed: {error}"),
            );
        }
    };

    let snapshot = state.store.snapshot();
    // A bug must not take the connection down with it: the API server would only see a
    // reset. The review is plain synchronous code, so a panic can be caught here and
    // answered like any other failure.
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        admission::review(&body, &snapshot)
    }));
    let Ok(outcome) = outcome else {
        return reject(
            &state,
            StatusCode::INTERNAL_SERVER_ERROR,
            "tandem failed on this review (a bug: the log has the panic); the API server applies the webhook's failurePolicy",
        );
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
            (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                Body::from(reviewed.body),
            )
                .into_response()
        }
        Err(bad) => reject(&state, StatusCode::BAD_REQUEST, &bad.to_string()),
    }
}

async fn method_not_allowed(State(state): State<Arc<AppState>>) -> Response {
    let mut response = reject(
        &state,
        StatusCode::METHOD_NOT_ALLOWED,
        "only POST is accepted on /mutate",
    );
    response
        .headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static("POST"));
    response
}

fn too_large(state: &AppState) -> Response {
    let message = format!(
        "the body is larger than {} bytes; accepted: up to --max-body bytes",
        state.max_body
    );
    reject(state, StatusCode::PAYLOAD_TOO_LARGE, &message)
}

fn reject(state: &AppState, status: StatusCode, message: &str) -> Response {
    state.metrics.rejected(status.as_u16());
    tracing::info!(
        status = status.as_u16(),
        error = message,
        "request rejected"
    );
    error(status, message)
}

/// A one-line JSON error body.
fn error(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string() + "\n";
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

//! tandem: a Kubernetes mutating admission webhook for the classic multi-container pod
//! patterns — log shipper, metrics adapter, proxy ambassador, git clone — one annotation each.
//!
//! A review flows through plain functions of data; only the server and the policy sources
//! are async:
//!
//! ```text
//! HTTPS → admission::review → annotations::parse → policy::resolve → inject::plan
//!       → patch::render → response
//! ```
//!
//! - [`server`]: listeners, TLS (reloaded when the files change), shutdown.
//! - [`admission`]: AdmissionReview in, AdmissionReview out.
//! - [`engine`]: one pod from JSON to patch; shared with `tandem inject` and `explain`.
//! - [`annotations`]: the `tandem.dev/*` keys users type, parsed once.
//! - [`pattern`]: the four patterns, the options each accepts, and the kinds of value an
//!   option takes with their parsers.
//! - [`policy`]: in three layers, each using only those below: `source` (the built-in
//!   catalog, files, the API server, and the store they feed), what a review reads (the
//!   compiled `snapshot`, and `resolve`), and `model` (InjectionPolicy, its CRD, selectors).
//! - [`inject`]: one module per pattern, each turning a resolved pattern into containers,
//!   volumes and mounts, with a shared plan builder and container parts.
//! - [`patch`]: the plan as RFC 6902 operations; the only place JSON pointers are built.
//! - [`offline`]: `inject` and `explain` over YAML files.
//! - [`telemetry`]: log lines (batched per thread) and Prometheus metrics.
//! - [`tls_manager`]: `tls.mode: auto`, tandem's own CA and the caBundle kept in step.

#![forbid(unsafe_code)]

pub mod admission;
pub mod annotations;
pub mod app;
pub mod certs;
pub mod config;
pub mod engine;
pub mod inject;
pub mod invalid;
pub mod offline;
pub mod patch;
pub mod pattern;
pub mod pod;
pub mod policy;
pub mod server;
pub mod telemetry;
pub mod tls_manager;
pub mod watch;

//! Policies, in three layers read top-down:
//!
//! - [`model`]: the `InjectionPolicy` type (and its CRD) and label selectors.
//! - [`source`]: where policies come from (the built-in catalog, files, the API server) and
//!   the store that keeps the current snapshot.
//! - what a review reads: the compiled [`snapshot`] and [`resolve`], which decides what a
//!   pod gets from it.

pub mod model;
pub mod resolve;
pub mod snapshot;
pub mod source;

pub use model::types::{InjectionPolicy, InjectionPolicySpec};

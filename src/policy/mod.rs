//! Policies, in three layers; each uses only the ones below it:
//!
//! - [`source`]: where policies come from (the built-in catalog, YAML files, the API
//!   server) and the [`source::store`] that keeps the snapshot they compile to.
//! - what a review reads: the compiled [`snapshot`] (policies, profiles, namespace views),
//!   and [`resolve`], which decides from it what one pod gets.
//! - [`model`]: the `InjectionPolicy` type (and its CRD) and label selectors.

pub mod model;
pub mod resolve;
pub mod snapshot;
pub mod source;

pub use model::types::{InjectionPolicy, InjectionPolicySpec};

//! Policies: the `InjectionPolicy` type (and CRD), the built-in catalog, the sources that
//! feed them (files, the API server), the compiled snapshot a review reads, and resolution.

pub mod builtin;
pub mod files;
pub mod kube;
pub mod resolve;
pub mod selector;
pub mod snapshot;
pub mod store;
pub mod types;

pub use types::{InjectionPolicy, InjectionPolicySpec};

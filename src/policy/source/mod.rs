//! Where policies come from: the built-in catalog, YAML files and the API server; and the
//! [`store`] that keeps the snapshot they compile to.
//!
//! Listed top-down, each module using only those below it: `files` and `kube` feed the
//! `store`; `store` and `files` start from the `builtin` policies; `builtin` and `files`
//! parse with `document`, which finds a field's line with `field`.

pub mod files;
pub mod kube;

pub mod store;

pub mod builtin;

pub mod document;
mod field;

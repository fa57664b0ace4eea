//! Where policies come from: the built-in catalog, YAML files and the API server; and the
//! [`store`] that keeps the snapshot they compile to.
//!
//! Read top-down, each module using only those below it: `kube` and `files` feed the
//! `store`; `store` and `files` start from the `builtin` policies; `builtin` and `files`
//! parse with `document`, which finds lines with `field`.

pub mod kube;

pub mod files;
pub mod store;

pub mod builtin;

pub mod document;
mod field;

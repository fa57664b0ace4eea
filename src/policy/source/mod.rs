//! Where policies come from: the built-in catalog, YAML files (parsed with `file:line` in
//! every error, loaded, checked and watched), and the API server; the [`store`] keeps the
//! snapshot they compile to.
//!
//! Top-down: `kube` and `files` feed the `store`; the store and `files` start from the
//! `builtin` policies; `builtin` and `files` parse with `document`.

pub mod builtin;
pub mod files;
pub mod kube;
pub mod store;

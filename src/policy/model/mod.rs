//! The policy model: the `InjectionPolicy` document platform teams write (and the CRD derived
//! from it), and the label selectors in it. Depends on nothing else in `policy`.

pub mod selector;
pub mod types;

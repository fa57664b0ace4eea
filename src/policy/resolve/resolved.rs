//! What resolution gives: each pattern switched on, with its profile, its options and where
//! each came from, and why it is on; and the problems that drop a pattern or deny the pod.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    invalid::{Invalid, Source},
    pattern::Pattern,
    policy::{
        model::types::{OnInvalid, SidecarMode},
        snapshot::ProfileEntry,
    },
};

/// Where an option's value came from, for `explain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The pattern's built-in default.
    Pattern,
    /// The profile's `options`.
    Profile,
    Policy(Arc<str>),
    /// A pod or namespace annotation.
    Annotation(Source),
}

/// An option value and its origin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Setting {
    pub value: String,
    pub origin: Origin,
}

/// Why a pattern is on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Why {
    /// The pod's own annotation.
    Pod,
    /// The namespace's annotation.
    Namespace,
    /// A policy's `defaults`.
    Policy(Arc<str>),
    /// A policy's `enforce` (even if the pod or namespace said no).
    Enforced(Arc<str>),
}

/// A pattern switched on for a pod, with everything its injector needs.
#[derive(Clone, Debug)]
pub struct Resolved {
    pub pattern: Pattern,
    pub profile_name: String,
    pub profile: ProfileEntry,
    /// The options policies and annotations set; the rest come from the profile and the
    /// pattern's defaults (see [`Resolved::option`] and [`Resolved::settings`]).
    pub set: BTreeMap<String, Setting>,
    pub why: Why,
    pub sidecar_mode: SidecarMode,
    /// What a problem found later (by the injector) does to this pattern.
    pub on_invalid: OnInvalid,
}

impl Resolved {
    /// An option's value: set by a policy or annotation, else the profile's, else the
    /// pattern's default; `None` when unset.
    pub fn option(&self, name: &str) -> Option<&str> {
        if name == "profile" {
            return Some(&self.profile_name);
        }
        match self.set.get(name) {
            Some(setting) => Some(&setting.value),
            None => match self.profile.profile.options.get(name) {
                Some(value) => Some(&value.0),
                None => self.pattern.option(name).and_then(|spec| spec.default),
            },
        }
    }

    /// Where an option's value comes from; `None` when unset.
    pub fn origin(&self, name: &str) -> Option<Origin> {
        match self.set.get(name) {
            Some(setting) => Some(setting.origin.clone()),
            None if self.profile.profile.options.contains_key(name) => Some(Origin::Profile),
            None => self
                .pattern
                .option(name)
                .and_then(|spec| spec.default)
                .map(|_| Origin::Pattern),
        }
    }

    /// Every option with a value, sorted by name, with where it came from (for `explain`).
    pub fn settings(&self) -> Vec<(String, Setting)> {
        let mut names: Vec<&str> = self.pattern.options().iter().map(|o| o.name).collect();
        names.extend(self.profile.profile.options.keys().map(String::as_str));
        names.extend(self.set.keys().map(String::as_str));
        names.sort_unstable();
        names.dedup();
        names
            .into_iter()
            .filter(|name| *name != "profile")
            .filter_map(|name| {
                let value = self.option(name)?.to_string();
                let origin = self.origin(name)?;
                Some((name.to_string(), Setting { value, origin }))
            })
            .collect()
    }

    /// An option that resolution guarantees is set (required, or with a default).
    pub fn require(&self, name: &str) -> &str {
        self.option(name).unwrap_or_default()
    }

    /// Where `name` was set, for messages about its value.
    pub fn source(&self, prefix: &str, name: &str) -> Source {
        match self.origin(name).as_ref() {
            Some(Origin::Annotation(source)) => source.clone(),
            Some(Origin::Policy(policy)) => Source::Policy {
                name: policy.to_string(),
                field: format!("spec.defaults.{}.{name}", self.pattern),
            },
            Some(Origin::Profile) => Source::Profile {
                pattern: self.pattern,
                name: self.profile_name.clone(),
            },
            _ => Source::Pod {
                key: format!("{prefix}/{}.{name}", self.pattern),
            },
        }
    }
}

/// The outcome of resolution for one pod.
#[derive(Clone, Debug, Default)]
pub struct Resolution {
    pub patterns: Vec<Resolved>,
    /// Problems that deny the pod.
    pub denied: Vec<Invalid>,
    /// Problems that dropped a pattern under `onInvalid: warn`.
    pub warned: Vec<Invalid>,
    /// Patterns a previous review already added (skipped).
    pub already: Vec<Pattern>,
    /// Of those, the ones that still resolve as they would for a new pod: what they give
    /// every app container is owed to app containers added since (a later webhook's, on
    /// the API server's reinvocation).
    pub covering: Vec<Resolved>,
}

//! The four patterns: their names, the order their containers are added, and a value per
//! pattern. What options each accepts is in `options`; what values an option accepts, in
//! `kind` and `values`. Annotations, policies and the injectors all read these tables.

mod kind;
mod options;
mod values;

use std::{fmt, str::FromStr};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use kind::Kind;
pub use options::OptionSpec;
use options::{AMBASSADOR, GIT_CLONE, LOG_SHIPPER, METRICS_ADAPTER};
pub use values::{
    GitUrl, Upstream, check_dns_label, check_dns_subdomain, parse_bool, parse_duration,
    parse_host_port, parse_port, parse_upstreams, sum_durations,
};

/// A multi-container pattern tandem knows how to add to a pod.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Pattern {
    /// A log agent tailing the files the app writes into a shared emptyDir.
    LogShipper,
    /// An exporter that turns the app's own metrics into Prometheus metrics.
    MetricsAdapter,
    /// A local proxy the app reaches on localhost, forwarding to remote upstreams.
    Ambassador,
    /// A one-time clone into a shared emptyDir before the app starts, optionally kept in sync.
    GitClone,
}

impl Pattern {
    /// Every pattern, in the order their containers are added.
    pub const ALL: [Pattern; 4] = [
        Pattern::GitClone,
        Pattern::LogShipper,
        Pattern::MetricsAdapter,
        Pattern::Ambassador,
    ];

    /// The name users type: the annotation key and the policy field.
    pub const fn name(self) -> &'static str {
        match self {
            Pattern::LogShipper => "log-shipper",
            Pattern::MetricsAdapter => "metrics-adapter",
            Pattern::Ambassador => "ambassador",
            Pattern::GitClone => "git-clone",
        }
    }

    /// Index into per-pattern arrays.
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The options of this pattern (profiles may declare more).
    pub fn options(self) -> &'static [OptionSpec] {
        match self {
            Pattern::LogShipper => LOG_SHIPPER,
            Pattern::MetricsAdapter => METRICS_ADAPTER,
            Pattern::Ambassador => AMBASSADOR,
            Pattern::GitClone => GIT_CLONE,
        }
    }

    /// The option spec called `name`, if the pattern itself defines it.
    pub fn option(self, name: &str) -> Option<&'static OptionSpec> {
        self.options().iter().find(|spec| spec.name == name)
    }

    /// The profile `"true"` selects when neither a policy nor the annotation names one.
    pub const fn default_profile(self) -> Option<&'static str> {
        match self {
            Pattern::LogShipper => Some("fluent-bit"),
            Pattern::MetricsAdapter => None,
            Pattern::Ambassador => Some("tcp"),
            Pattern::GitClone => Some("git-sync"),
        }
    }

    /// The name of the (first) container this pattern injects.
    pub const fn container_name(self) -> &'static str {
        match self {
            Pattern::LogShipper => "tandem-log-shipper",
            Pattern::MetricsAdapter => "tandem-metrics-adapter",
            Pattern::Ambassador => "tandem-ambassador",
            Pattern::GitClone => "tandem-git-clone",
        }
    }

    /// For error messages: the accepted pattern names.
    pub fn accepted() -> String {
        let mut names: Vec<_> = Pattern::ALL.iter().map(|p| p.name()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Pattern {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        Pattern::ALL.into_iter().find(|p| p.name() == s).ok_or(())
    }
}

/// One value per pattern, indexed by [`Pattern::index`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PerPattern<T>(pub [T; 4]);

impl<T> PerPattern<T> {
    pub fn get(&self, pattern: Pattern) -> &T {
        &self.0[pattern.index()]
    }

    pub fn get_mut(&mut self, pattern: Pattern) -> &mut T {
        &mut self.0[pattern.index()]
    }
}

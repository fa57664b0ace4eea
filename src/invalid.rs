//! Why a pod is denied (or a pattern skipped with a warning): which key or policy field,
//! which value, what is wrong and what would be accepted. Every check in tandem reports
//! through this one type, so every message has the same shape.

use std::fmt;

use crate::pattern::Pattern;

/// Where a rejected value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// `annotation tandem.dev/log-shipper.path` on the pod.
    Pod { key: String },
    /// The same key on the pod's namespace.
    Namespace { namespace: String, key: String },
    /// A policy field such as `defaults.log-shipper.path`.
    Policy { name: String, field: String },
    /// A profile, through the value it was given.
    Profile { pattern: Pattern, name: String },
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Pod { key } => write!(f, "annotation {key}"),
            Source::Namespace { namespace, key } => {
                write!(f, "namespace {namespace}: annotation {key}")
            }
            Source::Policy { name, field } => write!(f, "policy {name:?} {field}"),
            Source::Profile { pattern, name } => write!(f, "{pattern} profile {name:?}"),
        }
    }
}

/// The kind of problem, for the `tandem_denials_total{reason}` metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reason {
    InvalidValue,
    UnknownKey,
    UnknownProfile,
    MissingOption,
    NotOverridable,
    ImageNotAllowed,
    GitHostNotAllowed,
    Conflict,
}

impl Reason {
    pub const ALL: [Reason; 8] = [
        Reason::InvalidValue,
        Reason::UnknownKey,
        Reason::UnknownProfile,
        Reason::MissingOption,
        Reason::NotOverridable,
        Reason::ImageNotAllowed,
        Reason::GitHostNotAllowed,
        Reason::Conflict,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Reason::InvalidValue => "invalid_value",
            Reason::UnknownKey => "unknown_key",
            Reason::UnknownProfile => "unknown_profile",
            Reason::MissingOption => "missing_option",
            Reason::NotOverridable => "not_overridable",
            Reason::ImageNotAllowed => "image_not_allowed",
            Reason::GitHostNotAllowed => "git_host_not_allowed",
            Reason::Conflict => "conflict",
        }
    }
}

/// A rejected value. `Display` is the message users read in `kubectl`'s error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub source: Source,
    pub value: String,
    /// What is wrong, phrased to follow the value: `is not an absolute path`.
    pub problem: Box<str>,
    /// What would be accepted instead.
    pub accepted: Box<str>,
    pub reason: Reason,
    /// The pattern the value belongs to; `None` for keys that name no pattern.
    pub pattern: Option<Pattern>,
}

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A missing value has nothing to quote: `annotation tandem.dev/x.port is not set`.
        if self.value.is_empty() && self.reason == Reason::MissingOption {
            return write!(
                f,
                "{} {}; accepted: {}",
                self.source, self.problem, self.accepted
            );
        }
        write!(
            f,
            "{}={:?} {}; accepted: {}",
            self.source, self.value, self.problem, self.accepted
        )
    }
}

impl std::error::Error for Invalid {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_names_key_value_and_what_is_accepted() {
        let invalid = Invalid {
            source: Source::Pod {
                key: "tandem.dev/log-shipper.path".into(),
            },
            value: "var/log".into(),
            problem: "is not an absolute path".into(),
            accepted: "an absolute path such as /var/log/app".into(),
            reason: Reason::InvalidValue,
            pattern: Some(Pattern::LogShipper),
        };
        assert_eq!(
            invalid.to_string(),
            "annotation tandem.dev/log-shipper.path=\"var/log\" is not an absolute path; \
             accepted: an absolute path such as /var/log/app"
        );
    }
}

//! One policy compiled: its selectors and globs, its defaults, `enforce` and `overrides`
//! checked against the profiles in effect. A policy that does not compile is a
//! [`PolicyError`] naming the field.

use std::{collections::BTreeMap, sync::Arc};

use super::profile::{ProfileEntry, option_kind, option_names, profile_names};
use crate::{
    pattern::{Kind, PerPattern},
    policy::{
        model::selector::Selector,
        model::types::{InjectionPolicySpec, OptionValue},
    },
};

/// A policy that failed to load: which one, which field, what is wrong.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("policy {policy:?}: {field}: {message}")]
pub struct PolicyError {
    pub policy: String,
    /// A path into the document, such as `spec.profiles.log-shipper.loki.args[3]`.
    pub field: String,
    pub message: String,
}

/// A policy with its selectors and globs compiled.
#[derive(Debug)]
pub struct Compiled {
    pub name: Arc<str>,
    pub spec: InjectionPolicySpec,
    pub(super) namespaces: Selector,
    pub(super) pods: Selector,
    pub(super) overrides: PerPattern<Option<Arc<[String]>>>,
    pub(super) allowed_images: Option<Arc<[glob::Pattern]>>,
    pub(super) allowed_git_hosts: Option<Arc<[String]>>,
}

pub(super) fn compile(
    name: &str,
    spec: InjectionPolicySpec,
    profiles: &PerPattern<BTreeMap<String, ProfileEntry>>,
) -> Result<Compiled, PolicyError> {
    let error = |field: String, message: String| PolicyError {
        policy: name.to_string(),
        field,
        message,
    };
    let namespaces = Selector::compile(spec.selector.namespaces.as_ref())
        .map_err(|e| error(format!("spec.selector.namespaces.{}", e.field), e.message))?;
    let pods = Selector::compile(spec.selector.pods.as_ref())
        .map_err(|e| error(format!("spec.selector.pods.{}", e.field), e.message))?;

    for (pattern, options) in spec.defaults.iter() {
        let profile_name = match options.get("profile") {
            Some(OptionValue(name)) => Some(name.as_str()),
            None => pattern.default_profile(),
        };
        let profile = match profile_name {
            Some(profile_name) => {
                Some(profiles.get(pattern).get(profile_name).ok_or_else(|| {
                    error(
                        format!("spec.defaults.{pattern}.profile"),
                        format!(
                            "no {pattern} profile is called {profile_name:?}; accepted: {}",
                            profile_names(profiles, pattern)
                        ),
                    )
                })?)
            }
            None => {
                // Switched on for every matching pod, with nothing to say which exporter.
                return Err(error(
                    format!("spec.defaults.{pattern}"),
                    format!(
                        "{pattern} has no default profile, so the policy must name one; accepted: profile set to one of {}",
                        profile_names(profiles, pattern)
                    ),
                ));
            }
        };
        for (key, OptionValue(value)) in options {
            let field = format!("spec.defaults.{pattern}.{key}");
            match option_kind(pattern, profile.map(|p| &*p.profile), key) {
                Some(Kind::Profile) => {}
                Some(kind) => kind.check(value).map_err(|problem| {
                    error(
                        field,
                        format!("{value:?} {problem}; accepted: {}", kind.accepted()),
                    )
                })?,
                None => {
                    return Err(error(
                        field,
                        format!(
                            "{pattern} has no option {key:?}; accepted: {}",
                            option_names(pattern, profile.map(|p| &*p.profile))
                        ),
                    ));
                }
            }
        }
    }

    for (i, pattern) in spec.enforce.iter().enumerate() {
        let named = pattern.default_profile().is_some()
            || spec
                .defaults
                .get(*pattern)
                .is_some_and(|d| d.contains_key("profile"));
        if !named {
            return Err(error(
                format!("spec.enforce[{i}]"),
                format!(
                    "{pattern} has no default profile, so enforcing it needs spec.defaults.{pattern}.profile; accepted: one of {}",
                    profile_names(profiles, *pattern)
                ),
            ));
        }
    }

    for (pattern, allowed) in spec.overrides.iter() {
        for (i, key) in allowed.iter().enumerate() {
            let declared = pattern.option(key).is_some()
                || profiles
                    .get(pattern)
                    .values()
                    .any(|entry| entry.profile.options.contains_key(key));
            if !declared {
                return Err(error(
                    format!("spec.overrides.{pattern}[{i}]"),
                    format!(
                        "{pattern} has no option {key:?}; accepted: {}",
                        option_names(pattern, None)
                    ),
                ));
            }
        }
    }

    let allowed_images = match &spec.allowed_images {
        None => None,
        Some(globs) => Some(
            globs
                .iter()
                .enumerate()
                .map(|(i, glob)| {
                    glob::Pattern::new(glob).map_err(|e| {
                        error(format!("spec.allowedImages[{i}]"), format!("{glob:?}: {e}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        ),
    };
    for (i, host) in spec.allowed_git_hosts.iter().flatten().enumerate() {
        let bare = host.strip_prefix("*.").unwrap_or(host);
        crate::pattern::check_dns_subdomain(bare).map_err(|problem| {
            error(
                format!("spec.allowedGitHosts[{i}]"),
                format!(
                    "{host:?} {problem}; accepted: a host name such as github.com, or *.example.com"
                ),
            )
        })?;
    }

    let mut overrides = PerPattern::default();
    for (pattern, allowed) in spec.overrides.iter() {
        *overrides.get_mut(pattern) = Some(allowed.as_slice().into());
    }
    let allowed_git_hosts = spec.allowed_git_hosts.as_deref().map(Into::into);
    Ok(Compiled {
        name: name.into(),
        spec,
        namespaces,
        pods,
        overrides,
        allowed_images,
        allowed_git_hosts,
    })
}

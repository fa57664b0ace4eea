//! The checks resolution makes on what a pod or namespace sets: the option exists and its
//! value is of its kind, the policies let it be overridden, every option the profile needs
//! has a value, and the image and git host are on the policies' allow-lists.

use super::{Context, Resolved};
use crate::{
    annotations::OptionAnnotation,
    invalid::{Invalid, Reason, Source},
    pattern::{GitUrl, Kind},
    policy::snapshot::{ProfileEntry, option_kind, option_names},
};

impl Context<'_> {
    pub(super) fn check_option(
        &self,
        option: &OptionAnnotation,
        profile: &ProfileEntry,
    ) -> Result<(), Invalid> {
        let pattern = self.pattern;
        let invalid = |problem: String, accepted: String, reason| Invalid {
            source: option.source.clone(),
            value: option.value.clone(),
            problem: problem.into(),
            accepted: accepted.into(),
            reason,
            pattern: Some(pattern),
        };
        let Some(kind) = option_kind(pattern, Some(&profile.profile), &option.name) else {
            return Err(invalid(
                format!("names no option of {pattern}"),
                option_names(pattern, Some(&profile.profile)),
                Reason::UnknownKey,
            ));
        };
        self.check_overridable(&option.name, &option.value, &option.source)?;
        kind.check(&option.value)
            .map_err(|problem| invalid(problem, kind.accepted().into(), Reason::InvalidValue))
    }

    pub(super) fn check_overridable(
        &self,
        name: &str,
        value: &str,
        source: &Source,
    ) -> Result<(), Invalid> {
        let Some(overrides) = self.effective.overrides.get(self.pattern) else {
            return Ok(());
        };
        if overrides.value.iter().any(|allowed| allowed == name) {
            return Ok(());
        }
        Err(Invalid {
            source: source.clone(),
            value: value.to_string(),
            problem: format!(
                "sets {name:?}, which policy {:?} does not let pods or namespaces override",
                overrides.policy
            )
            .into(),
            accepted: if overrides.value.is_empty() {
                format!("no {} options", self.pattern).into()
            } else {
                format!("the options {}", overrides.value.join(", ")).into()
            },
            reason: Reason::NotOverridable,
            pattern: Some(self.pattern),
        })
    }

    /// Options the pattern cannot do without, and every placeholder the profile uses.
    pub(super) fn check_required(&self, resolved: &Resolved) -> Result<(), Invalid> {
        let pattern = self.pattern;
        let required = pattern
            .options()
            .iter()
            .filter(|o| o.required)
            .map(|o| o.name);
        let used = resolved.profile.placeholders.iter().map(String::as_str);
        for name in required.chain(used) {
            if resolved.option(name).is_none() {
                let accepted = match pattern.option(name) {
                    Some(spec) => spec.kind.accepted(),
                    None => Kind::Text.accepted(),
                };
                return Err(Invalid {
                    source: Source::Pod {
                        key: format!("{}/{pattern}.{name}", self.snapshot.prefix),
                    },
                    value: String::new(),
                    problem: format!(
                        "is not set, and the {} profile needs it",
                        resolved.profile_name
                    )
                    .into(),
                    accepted: accepted.into(),
                    reason: Reason::MissingOption,
                    pattern: Some(pattern),
                });
            }
        }
        Ok(())
    }

    /// The policies' allow-lists for images and git hosts.
    pub(super) fn check_allowed(&self, resolved: &Resolved) -> Result<(), Invalid> {
        let pattern = self.pattern;
        let image = &resolved.profile.profile.image;
        if let Some(allowed) = &self.effective.allowed_images
            && !allowed.value.iter().any(|glob| glob.matches(image))
        {
            return Err(Invalid {
                source: Source::Profile {
                    pattern,
                    name: resolved.profile_name.clone(),
                },
                value: image.clone(),
                problem: format!("is an image policy {:?} does not allow", allowed.policy).into(),
                accepted: allowed
                    .value
                    .iter()
                    .map(glob::Pattern::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
                    .into(),
                reason: Reason::ImageNotAllowed,
                pattern: Some(pattern),
            });
        }
        if let (Some(allowed), Some(repo)) =
            (&self.effective.allowed_git_hosts, resolved.option("repo"))
        {
            let host = GitUrl::parse(repo).map(|url| url.host).unwrap_or_default();
            let permitted = allowed
                .value
                .iter()
                .any(|pattern| match pattern.strip_prefix("*.") {
                    Some(domain) => host
                        .strip_suffix(domain)
                        .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                    None => pattern.eq_ignore_ascii_case(host),
                });
            if !permitted {
                return Err(Invalid {
                    source: resolved.source(&self.snapshot.prefix, "repo"),
                    value: repo.to_string(),
                    problem: format!(
                        "clones from host {host:?}, which policy {:?} does not allow",
                        allowed.policy
                    )
                    .into(),
                    accepted: format!("repositories on {}", allowed.value.join(", ")).into(),
                    reason: Reason::GitHostNotAllowed,
                    pattern: Some(pattern),
                });
            }
        }
        Ok(())
    }
}

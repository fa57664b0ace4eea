//! Resolution: which patterns a pod gets, with which profile and option values, and why.
//!
//! Precedence, lowest first: the pattern's built-in defaults, the profile's, policies by
//! ascending priority, the namespace's annotations, the pod's. Namespace and pod may set
//! only what the policies' `overrides` permit, and may not switch off what they `enforce`.
//! A pure function of its inputs: the server, `inject` and `explain` all call it.

use std::{collections::BTreeMap, sync::Arc};

use crate::{
    annotations::{Annotations, OptionAnnotation, PatternAnnotations, Switch},
    invalid::{Invalid, Reason, Source},
    pattern::{GitUrl, Kind, Pattern},
    policy::{
        model::selector::Labels,
        model::types::{OnInvalid, SidecarMode},
        snapshot::{Effective, ProfileEntry, Snapshot, option_kind, option_names, profile_names},
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
}

/// The pod as resolution sees it.
pub struct PodInput<'a, L: Labels + ?Sized> {
    pub namespace: &'a str,
    pub labels: &'a L,
    pub annotations: &'a Annotations,
    /// Patterns whose container is already in the pod (idempotency beyond the annotation).
    pub present: &'a [Pattern],
}

/// Resolves which patterns `pod` gets under `snapshot`.
pub fn resolve<L: Labels + ?Sized>(snapshot: &Snapshot, pod: &PodInput<'_, L>) -> Resolution {
    let namespace = snapshot.namespace(pod.namespace);
    let mut resolution = Resolution::default();
    if pod.annotations.is_empty() && !snapshot.switches_on(&namespace, pod.labels) {
        return resolution;
    }
    let effective = snapshot.effective(&namespace, pod.labels);
    let on_invalid = effective.on_invalid();

    // Keys that name no pattern cannot be dropped with a pattern: they always deny.
    resolution.denied.extend(
        pod.annotations
            .errors
            .iter()
            .chain(&namespace.annotations.errors)
            .cloned(),
    );

    for pattern in Pattern::ALL {
        if pod.annotations.injected.contains(&pattern) || pod.present.contains(&pattern) {
            resolution.already.push(pattern);
            continue;
        }
        let context = Context {
            snapshot,
            effective: &effective,
            pattern,
            pod: pod.annotations,
            namespace: &namespace.annotations,
        };
        match context.resolve() {
            Ok(None) => {}
            Ok(Some(resolved)) => resolution.patterns.push(resolved),
            Err(invalid) if on_invalid == OnInvalid::Warn => resolution.warned.push(invalid),
            Err(invalid) => resolution.denied.push(invalid),
        }
    }
    resolution
}

struct Context<'a> {
    snapshot: &'a Snapshot,
    effective: &'a Effective,
    pattern: Pattern,
    pod: &'a Annotations,
    namespace: &'a Annotations,
}

impl Context<'_> {
    fn pod_pattern(&self) -> &PatternAnnotations {
        self.pod.patterns.get(self.pattern)
    }

    fn namespace_pattern(&self) -> &PatternAnnotations {
        self.namespace.patterns.get(self.pattern)
    }

    /// Whether the pattern is on, and why; `None` when off.
    fn switched_on(&self) -> Option<Why> {
        let pattern = self.pattern;
        let decided = match (&self.pod_pattern().switch, self.pod.inject) {
            (Some(Switch::Off), _) | (None, Some(false)) => Some(false),
            (Some(_), _) => Some(true),
            (None, _) => None,
        };
        let on = match decided {
            Some(on) => on.then_some(Why::Pod),
            None => match (&self.namespace_pattern().switch, self.namespace.inject) {
                (Some(Switch::Off), _) | (None, Some(false)) => None,
                (Some(_), _) => Some(Why::Namespace),
                (None, _) => self
                    .effective
                    .defaults
                    .get(pattern)
                    .as_ref()
                    .map(|defaults| Why::Policy(defaults.policy.clone())),
            },
        };
        match self.effective.enforce.get(pattern) {
            Some(policy) => Some(Why::Enforced(policy.clone())),
            None => on,
        }
    }

    fn resolve(&self) -> Result<Option<Resolved>, Invalid> {
        let Some(why) = self.switched_on() else {
            return Ok(None);
        };
        let pattern = self.pattern;
        let (profile_name, profile) = self.profile()?;
        let mut options: BTreeMap<String, Setting> = BTreeMap::new();
        if let Some(defaults) = self.effective.defaults.get(pattern) {
            for (key, value) in &defaults.value {
                // A default for another profile's own option does not apply to this one.
                if key != "profile" && option_kind(pattern, Some(&profile.profile), key).is_some() {
                    options.insert(
                        key.clone(),
                        setting(&value.value, Origin::Policy(value.policy.clone())),
                    );
                }
            }
        }
        for annotations in [self.namespace_pattern(), self.pod_pattern()] {
            for option in &annotations.options {
                if option.name == "profile" {
                    continue;
                }
                self.check_option(option, &profile)?;
                let origin = Origin::Annotation(option.source.clone());
                options.insert(option.name.clone(), setting(&option.value, origin));
            }
        }
        let resolved = Resolved {
            pattern,
            profile_name,
            profile,
            set: options,
            why,
            sidecar_mode: self.effective.sidecar_mode(),
            on_invalid: self.effective.on_invalid(),
        };
        self.check_required(&resolved)?;
        self.check_allowed(&resolved)?;
        Ok(Some(resolved))
    }

    /// The profile: the pod's choice, else the namespace's, else the policies', else the
    /// pattern's default.
    fn profile(&self) -> Result<(String, ProfileEntry), Invalid> {
        let pattern = self.pattern;
        let prefix = &self.snapshot.prefix;
        let chosen = |annotations: &PatternAnnotations| -> Option<(String, Source)> {
            let by_option = annotations
                .options
                .iter()
                .rev()
                .find(|o| o.name == "profile")
                .map(|o| (o.value.clone(), o.source.clone()));
            let by_switch = match (&annotations.switch, &annotations.switch_source) {
                (Some(Switch::Profile(name)), Some(source)) => Some((name.clone(), source.clone())),
                _ => None,
            };
            by_option.or(by_switch)
        };
        let bare_key = format!("{prefix}/{pattern}");
        let from_annotations =
            chosen(self.pod_pattern()).or_else(|| chosen(self.namespace_pattern()));
        let (name, source) = match from_annotations {
            Some((name, source)) => {
                self.check_overridable("profile", &name, &source)?;
                (name, source)
            }
            None => match self
                .effective
                .defaults
                .get(pattern)
                .as_ref()
                .and_then(|d| d.value.get("profile"))
            {
                Some(by_policy) => (
                    by_policy.value.clone(),
                    Source::Policy {
                        name: by_policy.policy.to_string(),
                        field: format!("spec.defaults.{pattern}.profile"),
                    },
                ),
                None => match pattern.default_profile() {
                    Some(name) => (name.to_string(), Source::Pod { key: bare_key }),
                    None => {
                        // Only an annotation can get here: policies must name a profile
                        // for a pattern without a default one.
                        let source = self
                            .pod_pattern()
                            .switch_source
                            .clone()
                            .or_else(|| self.namespace_pattern().switch_source.clone())
                            .unwrap_or(Source::Pod { key: bare_key });
                        return Err(Invalid {
                            source,
                            value: "true".into(),
                            problem: "does not name a profile, and this pattern has no default"
                                .into(),
                            accepted: profile_names(&self.snapshot.profiles, pattern).into(),
                            reason: Reason::MissingOption,
                            pattern: Some(pattern),
                        });
                    }
                },
            },
        };
        match self.snapshot.profiles.get(pattern).get(&name) {
            Some(entry) => Ok((name, entry.clone())),
            None => Err(Invalid {
                source,
                value: name,
                problem: format!("is not a {pattern} profile").into(),
                accepted: profile_names(&self.snapshot.profiles, pattern).into(),
                reason: Reason::UnknownProfile,
                pattern: Some(pattern),
            }),
        }
    }

    fn check_option(
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

    fn check_overridable(&self, name: &str, value: &str, source: &Source) -> Result<(), Invalid> {
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
    fn check_required(&self, resolved: &Resolved) -> Result<(), Invalid> {
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
    fn check_allowed(&self, resolved: &Resolved) -> Result<(), Invalid> {
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

fn setting(value: &str, origin: Origin) -> Setting {
    Setting {
        value: value.to_string(),
        origin,
    }
}

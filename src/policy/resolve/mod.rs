//! Resolution: which patterns a pod gets, with which profile and option values, and why.
//!
//! Precedence, lowest first: the pattern's built-in defaults, the profile's, policies by
//! ascending priority, the namespace's annotations, the pod's. Namespace and pod may set
//! only what the policies' `overrides` permit, and may not switch off what they `enforce`.
//! A pure function of its inputs: the server, `inject` and `explain` all call it.
//!
//! Here: which patterns are on and why, which profile, and the options merged in order.
//! What resolution gives is in `resolved`; the checks a value must pass (its kind,
//! `overrides`, required options, allow-lists) in `checks`.

mod checks;
mod resolved;

use std::collections::BTreeMap;

pub use resolved::{Origin, Resolution, Resolved, Setting, Why};

use crate::{
    annotations::{Annotations, PatternAnnotations, Switch},
    invalid::{Invalid, Reason, Source},
    pattern::Pattern,
    policy::{
        model::selector::Labels,
        model::types::OnInvalid,
        snapshot::{Effective, ProfileEntry, Snapshot, option_kind, profile_names},
    },
};

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
        let context = Context {
            snapshot,
            effective: &effective,
            pattern,
            pod: pod.annotations,
            namespace: &namespace.annotations,
        };
        if pod.annotations.injected.contains(&pattern) || pod.present.contains(&pattern) {
            resolution.already.push(pattern);
            // The review that added it decided; a value that no longer resolves changes
            // nothing now.
            if let Ok(Some(resolved)) = context.resolve() {
                resolution.covering.push(resolved);
            }
            continue;
        }
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
        // `inject: "false"` opts out of everything no policy enforces, the pattern's own
        // annotations included (as `sidecar.istio.io/inject: "false"` does in Istio).
        let decided = match (&self.pod_pattern().switch, self.pod.inject) {
            (Some(Switch::Off), _) | (_, Some(false)) => Some(false),
            (Some(_), _) => Some(true),
            (None, _) => None,
        };
        let on = match decided {
            Some(on) => on.then_some(Why::Pod),
            None => match (&self.namespace_pattern().switch, self.namespace.inject) {
                (Some(Switch::Off), _) | (_, Some(false)) => None,
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
}

fn setting(value: &str, origin: Origin) -> Setting {
    Setting {
        value: value.to_string(),
        origin,
    }
}

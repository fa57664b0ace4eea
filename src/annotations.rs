//! The `tandem.dev/*` annotations of a pod or namespace, parsed once into [`Annotations`].
//!
//! One key turns a pattern on and picks a profile; dotted keys set its options
//! (`tandem.dev/log-shipper.path`). The option names per pattern live in
//! [`crate::pattern`]; whether an option may be set at all is decided by the policies, in
//! [`crate::policy::resolve`]. Here only the shape of the keys is checked.

use crate::{
    invalid::{Invalid, Reason, Source},
    pattern::{Pattern, PerPattern, parse_bool},
};

/// The prefix of every key unless `--annotation-prefix` says otherwise.
pub const DEFAULT_PREFIX: &str = "tandem.dev";

/// `tandem.dev/inject: "false"` opts the pod out of every pattern a policy does not enforce.
pub const INJECT: &str = "inject";

/// `tandem.dev/injected: "log-shipper,git-clone"`: written by tandem, read to stay idempotent.
pub const INJECTED: &str = "injected";

/// `tandem.dev/log-shipper: "true"` (or a profile name, or `"false"`).
pub const LOG_SHIPPER: &str = Pattern::LogShipper.name();

/// `tandem.dev/metrics-adapter: redis` (a profile name, or `"false"`).
pub const METRICS_ADAPTER: &str = Pattern::MetricsAdapter.name();

/// `tandem.dev/ambassador: tcp` (or `http`, `"true"`, a policy profile, or `"false"`).
pub const AMBASSADOR: &str = Pattern::Ambassador.name();

/// `tandem.dev/git-clone: https://github.com/example/site.git` (or `"false"`).
pub const GIT_CLONE: &str = Pattern::GitClone.name();

/// Well-known annotations tandem sets, outside its own prefix.
pub const DEFAULT_CONTAINER: &str = "kubectl.kubernetes.io/default-container";
pub const PROMETHEUS_SCRAPE: &str = "prometheus.io/scrape";
pub const PROMETHEUS_PORT: &str = "prometheus.io/port";
pub const PROMETHEUS_PATH: &str = "prometheus.io/path";

/// What the bare pattern key says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Switch {
    /// `"true"`, or for git-clone a repository URL (then also set as the `repo` option).
    On,
    /// `"false"`: turns off a pattern a policy or the namespace switched on.
    Off,
    /// A profile name: on, with that profile.
    Profile(String),
}

/// The annotations of one pattern.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PatternAnnotations {
    pub switch: Option<Switch>,
    /// Where the switch was set.
    pub switch_source: Option<Source>,
    /// The options set, in key order; validated during resolution.
    pub options: Vec<OptionAnnotation>,
}

/// One option set by an annotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OptionAnnotation {
    /// The option, such as `path`.
    pub name: String,
    pub value: String,
    /// Where it was set, for messages: `annotation tandem.dev/log-shipper.path`.
    pub source: Source,
}

/// Everything tandem reads from one object's annotations.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Annotations {
    /// `tandem.dev/inject`: `Some(false)` opts out.
    pub inject: Option<bool>,
    /// `tandem.dev/injected`: patterns a previous review already added.
    pub injected: Vec<Pattern>,
    pub patterns: PerPattern<PatternAnnotations>,
    /// Keys under the prefix that are not tandem's, or values of the wrong shape.
    pub errors: Vec<Invalid>,
}

impl Annotations {
    /// Parses the keys under `prefix` (`tandem.dev`), ignoring all others. `source` says
    /// where a key came from, for error messages.
    pub fn parse<'a>(
        prefix: &str,
        annotations: impl IntoIterator<Item = (&'a str, &'a str)>,
        source: impl Fn(&str) -> Source,
    ) -> Annotations {
        let mut parsed = Annotations::default();
        for (key, value) in annotations {
            let Some(rest) = key
                .strip_prefix(prefix)
                .and_then(|rest| rest.strip_prefix('/'))
            else {
                continue;
            };
            if let Err(invalid) = parsed.add(rest, value, &|| source(key)) {
                parsed.errors.push(invalid);
            }
        }
        parsed
    }

    /// Whether any key of ours was present (a fast way to skip pods that have none).
    pub fn is_empty(&self) -> bool {
        self.inject.is_none()
            && self.injected.is_empty()
            && self.errors.is_empty()
            && self
                .patterns
                .0
                .iter()
                .all(|p| p.switch.is_none() && p.options.is_empty())
    }

    fn add(&mut self, rest: &str, value: &str, source: &dyn Fn() -> Source) -> Result<(), Invalid> {
        let invalid = |problem: String, accepted: String, reason, pattern| Invalid {
            source: source(),
            value: value.to_string(),
            problem: problem.into(),
            accepted: accepted.into(),
            reason,
            pattern,
        };
        match rest {
            INJECT => {
                let inject = parse_bool(value).map_err(|problem| {
                    invalid(
                        problem,
                        "\"false\" to opt out, \"true\"".into(),
                        Reason::InvalidValue,
                        None,
                    )
                })?;
                self.inject = Some(inject);
                return Ok(());
            }
            INJECTED => {
                // Written by tandem itself; names it does not know are ignored, not denied,
                // so that a newer tandem's annotation never blocks an older one.
                self.injected = value
                    .split(',')
                    .filter_map(|name| name.trim().parse().ok())
                    .collect();
                return Ok(());
            }
            _ => {}
        }
        let (name, option) = match rest.split_once('.') {
            Some((name, option)) => (name, Some(option)),
            None => (rest, None),
        };
        let Ok(pattern) = name.parse::<Pattern>() else {
            let accepted = format!("{}, {INJECT}", Pattern::accepted());
            return Err(invalid(
                format!("names no pattern of tandem{}", suggestion(name)),
                accepted,
                Reason::UnknownKey,
                None,
            ));
        };
        let entry = self.patterns.get_mut(pattern);
        match option {
            Some(option) => entry.options.push(OptionAnnotation {
                name: option.to_string(),
                value: value.to_string(),
                source: source(),
            }),
            None => {
                entry.switch_source = Some(source());
                entry.switch = Some(match (value, pattern) {
                    ("true", _) => Switch::On,
                    ("false", _) => Switch::Off,
                    (repo, Pattern::GitClone) => {
                        entry.options.push(OptionAnnotation {
                            name: "repo".into(),
                            value: repo.to_string(),
                            source: source(),
                        });
                        Switch::On
                    }
                    (profile, _) => Switch::Profile(profile.to_string()),
                });
            }
        }
        Ok(())
    }
}

/// ` (did you mean log-shipper?)` when `name` is a near miss of a known key.
fn suggestion(name: &str) -> String {
    Pattern::ALL
        .iter()
        .map(|p| p.name())
        .chain([INJECT])
        .map(|known| (strsim::levenshtein(name, known), known))
        .filter(|(distance, _)| *distance <= 2)
        .min()
        .map(|(_, known)| format!(" (did you mean {known}?)"))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(pairs: &[(&'static str, &'static str)]) -> Annotations {
        Annotations::parse(DEFAULT_PREFIX, pairs.iter().copied(), |key| Source::Pod {
            key: key.to_string(),
        })
    }

    #[test]
    fn pattern_keys_options_and_other_prefixes() {
        let parsed = parse(&[
            ("tandem.dev/log-shipper", "true"),
            ("tandem.dev/log-shipper.path", "/var/log/app"),
            ("tandem.dev/metrics-adapter", "redis"),
            (
                "tandem.dev/git-clone",
                "https://github.com/example/site.git",
            ),
            ("tandem.dev/ambassador", "false"),
            ("other.tandem.dev/log-shipper", "x"),
            ("tandem.devx/log-shipper", "x"),
            ("app.kubernetes.io/name", "web"),
        ]);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        let log = parsed.patterns.get(Pattern::LogShipper);
        assert_eq!(log.switch, Some(Switch::On));
        assert_eq!(log.options[0].name, "path");
        assert_eq!(log.options[0].value, "/var/log/app");
        assert_eq!(
            parsed.patterns.get(Pattern::MetricsAdapter).switch,
            Some(Switch::Profile("redis".into()))
        );
        let git = parsed.patterns.get(Pattern::GitClone);
        assert_eq!(git.switch, Some(Switch::On));
        assert_eq!(git.options[0].name, "repo");
        assert_eq!(git.options[0].value, "https://github.com/example/site.git");
        assert_eq!(
            git.options[0].source,
            Source::Pod {
                key: "tandem.dev/git-clone".into()
            }
        );
        assert_eq!(
            parsed.patterns.get(Pattern::Ambassador).switch,
            Some(Switch::Off)
        );
    }

    #[test]
    fn typo_is_an_error_with_a_suggestion() {
        let parsed = parse(&[("tandem.dev/log-shiper", "true")]);
        let message = parsed.errors[0].to_string();
        assert_eq!(
            message,
            "annotation tandem.dev/log-shiper=\"true\" names no pattern of tandem \
             (did you mean log-shipper?); accepted: ambassador, git-clone, log-shipper, \
             metrics-adapter, inject"
        );
        assert_eq!(parsed.errors[0].reason, Reason::UnknownKey);
    }

    #[test]
    fn inject_and_injected() {
        let parsed = parse(&[
            ("tandem.dev/inject", "false"),
            (
                "tandem.dev/injected",
                "log-shipper,git-clone,future-pattern",
            ),
        ]);
        assert_eq!(parsed.inject, Some(false));
        assert_eq!(
            parsed.injected,
            vec![Pattern::LogShipper, Pattern::GitClone]
        );
        let bad = parse(&[("tandem.dev/inject", "no")]);
        assert_eq!(bad.errors[0].reason, Reason::InvalidValue);
    }

    #[test]
    fn custom_prefix() {
        let parsed = Annotations::parse(
            "sidecars.example.com",
            [
                ("sidecars.example.com/log-shipper", "true"),
                ("tandem.dev/ambassador", "tcp"),
            ],
            |key| Source::Pod { key: key.into() },
        );
        assert_eq!(
            parsed.patterns.get(Pattern::LogShipper).switch,
            Some(Switch::On)
        );
        assert_eq!(parsed.patterns.get(Pattern::Ambassador).switch, None);
    }
}

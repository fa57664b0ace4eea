//! The namespace opt-in label, `<prefix>/inject=enabled`, and what goes unseen without it.
//!
//! Under the chart's default webhook configuration the API server sends tandem only the
//! pods that carry one of its annotations (a CEL condition sees the pod alone), except in
//! namespaces labelled `<prefix>/inject=enabled`, where it sends every pod. So a
//! namespace's own tandem annotations, and a policy's `defaults` or `enforce`, reach
//! pods without annotations only where the namespace has opted in. This module finds the
//! namespaces and policies that count on pods that never arrive, and says so: a log line
//! once for each, gauges, and a sentence for `tandem explain`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::{
    policy::{
        InjectionPolicy,
        model::selector::Selector,
        snapshot::{NAMESPACE_NAME_LABEL, NamespaceInfo},
    },
    telemetry::Metrics,
};

/// The value of the inject label that opts a namespace in: every pod is sent.
pub const ENABLED: &str = "enabled";
/// The value of the inject label that opts a namespace out: no pod is sent.
pub const DISABLED: &str = "disabled";
/// Namespaces the chart never sends, labelled or not (besides its own release namespace,
/// which tandem does not know).
pub const NEVER_SENT: [&str; 2] = ["kube-system", "kube-node-lease"];

/// The namespace label that opts in or out: `tandem.dev/inject`.
pub fn label(prefix: &str) -> String {
    format!("{prefix}/inject")
}

/// The command that opts namespace `name` in.
pub fn fix(prefix: &str, name: &str) -> String {
    format!("kubectl label namespace {name} {}={ENABLED}", label(prefix))
}

/// Which pods of a namespace the chart's webhook configuration sends to tandem.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Standing {
    /// Labelled `<prefix>/inject=enabled`: every pod.
    OptedIn,
    /// Not labelled: only pods with a tandem annotation of their own (by default).
    NotOptedIn,
    /// Labelled `<prefix>/inject=disabled`: none.
    OptedOut,
    /// kube-system or kube-node-lease: none, labelled or not.
    NeverSent,
}

impl Standing {
    /// The standing of namespace `name` with `labels`.
    pub fn of(prefix: &str, name: &str, labels: &BTreeMap<String, String>) -> Standing {
        if NEVER_SENT.contains(&name) {
            return Standing::NeverSent;
        }
        match labels.get(&label(prefix)).map(String::as_str) {
            Some(ENABLED) => Standing::OptedIn,
            Some(DISABLED) => Standing::OptedOut,
            _ => Standing::NotOptedIn,
        }
    }
}

/// The keys of a namespace's annotations that pods would inherit: every `<prefix>/` key
/// but `<prefix>/inject` (an opt-out switches nothing on).
pub fn inherited_keys<'a>(
    prefix: &str,
    annotations: impl IntoIterator<Item = &'a str>,
) -> Vec<&'a str> {
    let inject = label(prefix);
    annotations
        .into_iter()
        .filter(|key| {
            key.strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/') && rest.len() > 1)
                && *key != inject
        })
        .collect()
}

/// Whether a pod with these annotation keys passes the chart's CEL condition: it carries
/// some `<prefix>/` annotation (the same test as the chart's expression).
pub fn pod_is_annotated<'a>(prefix: &str, mut keys: impl Iterator<Item = &'a str>) -> bool {
    keys.any(|key| {
        key.strip_prefix(prefix)
            .is_some_and(|rest| rest.starts_with('/'))
    })
}

/// Namespaces and policies that switch patterns on for pods which, under the chart's
/// default configuration, never reach tandem.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Findings {
    /// A namespace with tandem annotations but not the label, with those annotations' keys.
    pub namespaces: BTreeMap<String, Vec<String>>,
    /// A policy with `defaults` or `enforce`, with the namespaces without the label that
    /// its namespace selector selects.
    pub policies: BTreeMap<String, BTreeSet<String>>,
}

/// Looks through `namespaces` (as the API server describes them) and the policies in
/// effect for what counts on pods that are not sent. A later policy replaces an earlier
/// one of the same name, as the sources do; a policy whose selector does not compile is
/// skipped (it is not in effect; its loading said why).
pub fn find<'a>(
    prefix: &str,
    policies: impl IntoIterator<Item = &'a InjectionPolicy>,
    namespaces: &HashMap<String, NamespaceInfo>,
) -> Findings {
    let by_name: BTreeMap<&str, &InjectionPolicy> = policies
        .into_iter()
        .map(|policy| (policy.metadata.name.as_deref().unwrap_or_default(), policy))
        .collect();
    let mut findings = Findings::default();
    // Each namespace's labels as selectors see them: with the name label, which every
    // namespace carries (the API server sets it).
    let mut not_opted_in: Vec<(&str, BTreeMap<String, String>)> = Vec::new();
    for (name, info) in namespaces {
        if Standing::of(prefix, name, &info.labels) != Standing::NotOptedIn {
            continue;
        }
        let keys = inherited_keys(prefix, info.annotations.keys().map(String::as_str));
        if !keys.is_empty() {
            findings
                .namespaces
                .insert(name.clone(), keys.into_iter().map(str::to_string).collect());
        }
        let mut labels = info.labels.clone();
        labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| name.clone());
        not_opted_in.push((name, labels));
    }
    for (name, policy) in by_name {
        let spec = &policy.spec;
        if spec.defaults.is_empty() && spec.enforce.is_empty() {
            continue;
        }
        let Ok(selector) = Selector::compile(spec.selector.namespaces.as_ref()) else {
            continue;
        };
        let selected: BTreeSet<String> = not_opted_in
            .iter()
            .filter(|(_, labels)| selector.matches(labels))
            .map(|(name, _)| name.to_string())
            .collect();
        if !selected.is_empty() {
            findings.policies.insert(name.to_string(), selected);
        }
    }
    findings
}

/// How many namespaces a log line names before it says how many more there are.
const NAMED_IN_A_LINE: usize = 10;

/// What has been logged already, so each namespace and each policy's namespace is said
/// once (again only if it goes away and comes back).
#[derive(Debug, Default)]
pub struct Notices {
    namespaces: BTreeSet<String>,
    policies: BTreeMap<String, BTreeSet<String>>,
}

impl Notices {
    /// Finds what counts on pods that are not sent ([`find`]), logs what is new and sets
    /// the gauges.
    pub fn update<'a>(
        &mut self,
        prefix: &str,
        policies: impl IntoIterator<Item = &'a InjectionPolicy>,
        namespaces: &HashMap<String, NamespaceInfo>,
        metrics: Option<&Metrics>,
    ) {
        let findings = find(prefix, policies, namespaces);
        self.log(prefix, &findings);
        if let Some(metrics) = metrics {
            metrics.not_opted_in(&findings);
        }
    }

    /// Logs what `findings` holds that was not logged before, and forgets what it no
    /// longer holds.
    pub fn log(&mut self, prefix: &str, findings: &Findings) {
        for (name, keys) in &findings.namespaces {
            if self.namespaces.insert(name.clone()) {
                tracing::warn!(
                    namespace = %name,
                    annotations = %keys.join(","),
                    why = "pods without a tandem annotation of their own are not sent to tandem \
                           (the webhook's CEL filter), so they do not get the namespace's annotations",
                    fix = %fix(prefix, name),
                    "namespace has tandem annotations but is not opted in"
                );
            }
        }
        self.namespaces.retain(|name| {
            let still = findings.namespaces.contains_key(name);
            if !still {
                tracing::info!(
                    namespace = %name,
                    "namespace is opted in now, or has no tandem annotations left (or is gone)"
                );
            }
            still
        });

        for (policy, namespaces) in &findings.policies {
            let logged = self.policies.entry(policy.clone()).or_default();
            let new: Vec<&str> = namespaces
                .iter()
                .filter(|name| !logged.contains(*name))
                .map(String::as_str)
                .collect();
            if !new.is_empty() {
                let mut named = new
                    .iter()
                    .take(NAMED_IN_A_LINE)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(",");
                if new.len() > NAMED_IN_A_LINE {
                    named.push_str(&format!(" and {} more", new.len() - NAMED_IN_A_LINE));
                }
                tracing::warn!(
                    policy = %policy,
                    namespaces = %named,
                    why = "pods without a tandem annotation of their own in these namespaces are not \
                           sent to tandem (the webhook's CEL filter), so the policy's defaults and \
                           enforce do not reach them",
                    fix = %fix(prefix, "NAME"),
                    "policy switches patterns on in namespaces that are not opted in"
                );
            }
            *logged = namespaces.clone();
        }
        self.policies
            .retain(|policy, _| findings.policies.contains_key(policy));
    }
}

/// Whether the chart's webhook sends a pod to tandem, as `tandem explain` tells it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reach {
    /// It does not, and why.
    NotSent(String),
    /// The namespace's labels are not known: what sending it depends on.
    Depends(String),
}

/// Whether a pod in namespace `name` reaches tandem, when that is in doubt: `None` when it
/// does. `labels` are the namespace's, if known; `annotated` says whether the pod carries a
/// tandem annotation of its own; `switched_on` names what (the namespace's annotations, a
/// policy) turns patterns on for it without one.
pub fn reach(
    prefix: &str,
    name: &str,
    labels: Option<&BTreeMap<String, String>>,
    annotated: bool,
    switched_on: &[String],
) -> Option<Reach> {
    let label = label(prefix);
    let Some(labels) = labels else {
        return (!annotated && !switched_on.is_empty()).then(|| {
            Reach::Depends(format!(
                "this pod has no {prefix}/ annotation, so the patterns from {} reach it only if namespace {name} is labelled {label}={ENABLED} (elsewhere the chart sends only annotated pods); pass --namespace-labels to check, or opt the namespace in: {}",
                switched_on.join(" and "),
                fix(prefix, name)
            ))
        });
    };
    let why = match Standing::of(prefix, name, labels) {
        Standing::NeverSent => format!(
            "namespace {name} is never sent to tandem by the chart's webhook, labelled or not"
        ),
        Standing::OptedOut => format!(
            "namespace {name} is labelled {label}={DISABLED}: the API server sends none of its pods to tandem"
        ),
        Standing::NotOptedIn if !annotated && !switched_on.is_empty() => format!(
            "namespace {name} is not opted in (no label {label}={ENABLED}) and this pod has no {prefix}/ annotation of its own: the API server does not send it to tandem (the chart's CEL filter), so the patterns from {} do not apply; to apply them to every pod there: {}",
            switched_on.join(" and "),
            fix(prefix, name)
        ),
        Standing::NotOptedIn | Standing::OptedIn => return None,
    };
    Some(Reach::NotSent(why))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn namespace(labels_: &[(&str, &str)], annotations: &[(&str, &str)]) -> NamespaceInfo {
        NamespaceInfo {
            labels: labels(labels_),
            annotations: labels(annotations),
        }
    }

    fn policy(yaml: &str) -> InjectionPolicy {
        serde_saphyr::from_str(&format!(
            "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\n{yaml}"
        ))
        .unwrap()
    }

    const PREFIX: &str = "tandem.dev";

    #[test]
    fn standing_by_label_and_name() {
        let of = |name, pairs: &[(&str, &str)]| Standing::of(PREFIX, name, &labels(pairs));
        assert_eq!(of("apps", &[]), Standing::NotOptedIn);
        assert_eq!(
            of("apps", &[("tandem.dev/inject", "enabled")]),
            Standing::OptedIn
        );
        assert_eq!(
            of("apps", &[("tandem.dev/inject", "disabled")]),
            Standing::OptedOut
        );
        assert_eq!(
            of("apps", &[("tandem.dev/inject", "yes")]),
            Standing::NotOptedIn
        );
        assert_eq!(
            of("apps", &[("other.io/inject", "enabled")]),
            Standing::NotOptedIn
        );
        assert_eq!(
            of("kube-system", &[("tandem.dev/inject", "enabled")]),
            Standing::NeverSent
        );
        assert_eq!(of("kube-node-lease", &[]), Standing::NeverSent);
    }

    #[test]
    fn inherited_keys_are_the_prefixed_ones_but_inject() {
        let keys = inherited_keys(
            PREFIX,
            [
                "tandem.dev/log-shipper",
                "tandem.dev/inject",
                "tandem.devx/log-shipper",
                "tandem.dev/",
                "team",
                "tandem.dev/log-shipper.path",
            ],
        );
        assert_eq!(
            keys,
            ["tandem.dev/log-shipper", "tandem.dev/log-shipper.path"]
        );
    }

    #[test]
    fn annotated_pods_as_the_chart_filter_sees_them() {
        assert!(pod_is_annotated(
            PREFIX,
            ["team", "tandem.dev/inject"].into_iter()
        ));
        assert!(!pod_is_annotated(
            PREFIX,
            ["team", "tandem.devx/a"].into_iter()
        ));
        assert!(!pod_is_annotated(PREFIX, std::iter::empty()));
    }

    #[test]
    fn finds_annotated_namespaces_and_policies_without_the_label() {
        let namespaces = HashMap::from([
            (
                "plain".to_string(),
                namespace(&[("team", "pay")], &[("tandem.dev/log-shipper", "true")]),
            ),
            (
                "opted-in".to_string(),
                namespace(
                    &[("team", "pay"), ("tandem.dev/inject", "enabled")],
                    &[("tandem.dev/log-shipper", "true")],
                ),
            ),
            (
                "opted-out".to_string(),
                namespace(
                    &[("tandem.dev/inject", "disabled")],
                    &[("tandem.dev/log-shipper", "true")],
                ),
            ),
            (
                "kube-system".to_string(),
                namespace(&[], &[("tandem.dev/log-shipper", "true")]),
            ),
            (
                "inject-only".to_string(),
                namespace(&[("team", "search")], &[("tandem.dev/inject", "false")]),
            ),
        ]);
        let policies = [
            policy(
                "metadata: {name: payments}\nspec: {selector: {namespaces: {matchLabels: {team: pay}}}, defaults: {log-shipper: {}}}",
            ),
            policy("metadata: {name: everywhere}\nspec: {enforce: [log-shipper]}"),
            policy("metadata: {name: limits-only}\nspec: {allowedGitHosts: [github.com]}"),
            policy(
                "metadata: {name: by-name}\nspec: {selector: {namespaces: {matchLabels: {kubernetes.io/metadata.name: inject-only}}}, defaults: {log-shipper: {}}}",
            ),
        ];
        let findings = find(PREFIX, &policies, &namespaces);
        assert_eq!(
            findings.namespaces,
            BTreeMap::from([(
                "plain".to_string(),
                vec!["tandem.dev/log-shipper".to_string()]
            )])
        );
        let set = |names: &[&str]| names.iter().map(|n| n.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(
            findings.policies,
            BTreeMap::from([
                ("payments".to_string(), set(&["plain"])),
                ("everywhere".to_string(), set(&["inject-only", "plain"])),
                ("by-name".to_string(), set(&["inject-only"])),
            ])
        );
    }

    #[test]
    fn notices_remember_what_was_said_and_forget_what_went_away() {
        let mut notices = Notices::default();
        let mut findings = Findings::default();
        findings
            .namespaces
            .insert("a".into(), vec!["tandem.dev/ambassador".into()]);
        findings
            .policies
            .insert("p".into(), BTreeSet::from(["a".to_string()]));
        notices.log(PREFIX, &findings);
        assert!(notices.namespaces.contains("a"));
        assert_eq!(notices.policies["p"], BTreeSet::from(["a".to_string()]));

        notices.log(PREFIX, &Findings::default());
        assert!(notices.namespaces.is_empty() && notices.policies.is_empty());
    }

    #[test]
    fn explains_why_a_pod_is_not_sent() {
        let switched = ["the namespace's annotations".to_string()];
        let none = labels(&[]);
        let not_sent =
            |name, labels: &BTreeMap<String, String>, annotated, switched: &[String]| match reach(
                PREFIX,
                name,
                Some(labels),
                annotated,
                switched,
            ) {
                Some(Reach::NotSent(why)) => Some(why),
                None => None,
                Some(other) => panic!("labels known, but {other:?}"),
            };
        let message = not_sent("apps", &none, false, &switched).unwrap();
        assert!(message.contains("not opted in"), "{message}");
        assert!(
            message.contains("kubectl label namespace apps tandem.dev/inject=enabled"),
            "{message}"
        );
        // Annotated pods are sent anyway; opted-in namespaces send every pod.
        assert_eq!(not_sent("apps", &none, true, &switched), None);
        let enabled = labels(&[("tandem.dev/inject", "enabled")]);
        assert_eq!(not_sent("apps", &enabled, false, &switched), None);
        // Nothing switched on: nothing missed.
        assert_eq!(not_sent("apps", &none, false, &[]), None);
        let disabled = labels(&[("tandem.dev/inject", "disabled")]);
        assert!(
            not_sent("apps", &disabled, true, &[])
                .unwrap()
                .contains("tandem.dev/inject=disabled")
        );
        assert!(
            not_sent("kube-system", &enabled, true, &[])
                .unwrap()
                .contains("never sent")
        );
        // Labels unknown: what it depends on.
        let Some(Reach::Depends(message)) = reach(PREFIX, "apps", None, false, &switched) else {
            panic!("labels unknown: depends");
        };
        assert!(
            message.contains("only if namespace apps is labelled"),
            "{message}"
        );
        assert_eq!(reach(PREFIX, "apps", None, true, &switched), None);
    }
}

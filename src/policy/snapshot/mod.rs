//! The compiled, immutable view of every policy and namespace that a review reads.
//!
//! Built when policies or namespaces change: selectors and globs compiled, profiles merged
//! into one table, and for each namespace the API server described the policies that apply
//! to it merged in advance. What depends on a pod's labels, or on a namespace only a review
//! names (without `--kube`), is merged on first use and kept, so a review does a map
//! look-up or two.
//!
//! Here: the snapshot and its namespace views. Compiling one policy is in `compiled`,
//! checking a profile and its placeholders in `profile`, merging the policies that match a
//! pod in `effective`.

mod compiled;
mod effective;
mod profile;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, PoisonError, RwLock},
};

pub use compiled::{Compiled, PolicyError};
pub use effective::{ByPolicy, DefaultOptions, Effective};
pub use profile::{
    PlaceholderError, ProfileEntry, computed_placeholders, option_kind, option_names, placeholders,
    profile_names,
};

use compiled::compile;
use profile::{check_profile, used_options};

use crate::{
    annotations::Annotations,
    invalid::Source,
    pattern::PerPattern,
    policy::{
        model::selector::Labels,
        model::types::{InjectionPolicy, InjectionPolicySpec},
    },
};

/// The label every namespace carries since Kubernetes 1.21; known even without `--kube`.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// A namespace as the API server (or `explain --namespace-labels`) describes it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NamespaceInfo {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

/// A namespace with the policies that apply to it already chosen (and merged, when none of
/// them looks at pod labels).
#[derive(Debug)]
pub struct NamespaceView {
    pub annotations: Annotations,
    /// Indices into [`Snapshot::policies`] whose namespace selector matches.
    candidates: Vec<usize>,
    /// The merge of all candidates, when none of them has a pod selector.
    merged: Option<Arc<Effective>>,
    /// The candidates that switch patterns on by themselves (`defaults`, `enforce`).
    switching: Vec<usize>,
    /// When some candidates select pods: the merge for each set of matching candidates
    /// met so far (one flag per candidate).
    by_pods: RwLock<HashMap<Vec<bool>, Arc<Effective>>>,
}

/// Everything a review needs from the policies, immutable once built.
#[derive(Debug)]
pub struct Snapshot {
    pub prefix: String,
    /// Searches a review body for the prefix, set up once instead of per review.
    prefix_finder: memchr::memmem::Finder<'static>,
    /// Ascending by (priority, name).
    policies: Vec<Compiled>,
    pub profiles: PerPattern<BTreeMap<String, ProfileEntry>>,
    namespaces: HashMap<String, Arc<NamespaceView>>,
    /// Whether namespaces come from the API server (`--kube`); without it a namespace is
    /// known only by its name label.
    namespaces_known: bool,
    /// The view of every namespace the API server has not described, when no policy
    /// selects namespaces (then they all look alike): built once, not per review.
    unknown: Option<Arc<NamespaceView>>,
    /// Views of namespaces the API server has not described, built on first use: without
    /// `--kube` every namespace is one of these. Bounded by [`SEEN_LIMIT`].
    seen: RwLock<HashMap<String, Arc<NamespaceView>>>,
}

/// A namespace's view, as [`Snapshot::namespace`] gives it.
pub enum View<'a> {
    /// One of the snapshot's own.
    Kept(&'a NamespaceView),
    /// Built for a namespace first seen by a review.
    Seen(Arc<NamespaceView>),
}

impl std::ops::Deref for View<'_> {
    type Target = NamespaceView;

    fn deref(&self) -> &NamespaceView {
        match self {
            View::Kept(view) => view,
            View::Seen(view) => view,
        }
    }
}

/// How many namespaces' views a snapshot keeps beyond the known ones.
const SEEN_LIMIT: usize = 4096;

impl Snapshot {
    /// Compiles `policies` (replacing same-named ones in order) and `namespaces`.
    ///
    /// Returns the snapshot built from the policies that are valid, and the errors of the
    /// others. Callers that load a whole set at once (files) reject the set on any error;
    /// callers that get policies one by one (the API server) skip just the bad ones.
    pub fn build(
        prefix: &str,
        policies: impl IntoIterator<Item = InjectionPolicy>,
        namespaces: Option<&HashMap<String, NamespaceInfo>>,
    ) -> (Snapshot, Vec<PolicyError>) {
        let mut by_name = BTreeMap::new();
        for policy in policies {
            let name = policy.metadata.name.clone().unwrap_or_default();
            by_name.insert(name, policy.spec);
        }
        let mut errors = Vec::new();
        let mut ordered: Vec<(String, InjectionPolicySpec)> = by_name.into_iter().collect();
        ordered.sort_by(|(a, x), (b, y)| x.priority.cmp(&y.priority).then(a.cmp(b)));

        // Profiles first: defaults and overrides are checked against the merged table.
        let mut profiles: PerPattern<BTreeMap<String, ProfileEntry>> = PerPattern::default();
        let mut bad = vec![false; ordered.len()];
        for (index, (name, spec)) in ordered.iter().enumerate() {
            let policy: Arc<str> = name.as_str().into();
            for (pattern, named) in spec.profiles.iter() {
                for (profile_name, profile) in named {
                    if let Err((below, message)) = check_profile(pattern, profile_name, profile) {
                        errors.push(PolicyError {
                            policy: name.clone(),
                            field: format!("spec.profiles.{pattern}.{profile_name}{below}"),
                            message,
                        });
                        bad[index] = true;
                    }
                }
            }
            if bad[index] {
                continue;
            }
            for (pattern, named) in spec.profiles.iter() {
                for (profile_name, profile) in named {
                    profiles.get_mut(pattern).insert(
                        profile_name.clone(),
                        ProfileEntry {
                            placeholders: used_options(pattern, profile),
                            profile: Arc::new(profile.clone()),
                            policy: policy.clone(),
                        },
                    );
                }
            }
        }

        let mut compiled = Vec::new();
        for (index, (name, spec)) in ordered.into_iter().enumerate() {
            if bad[index] {
                continue;
            }
            match compile(&name, spec, &profiles) {
                Ok(policy) => compiled.push(policy),
                Err(error) => errors.push(error),
            }
        }

        let mut snapshot = Snapshot {
            prefix: prefix.to_string(),
            prefix_finder: memchr::memmem::Finder::new(prefix).into_owned(),
            policies: compiled,
            profiles,
            namespaces: HashMap::new(),
            namespaces_known: namespaces.is_some(),
            unknown: None,
            seen: RwLock::default(),
        };
        if snapshot.policies.iter().all(|p| p.namespaces.is_empty()) {
            let view = snapshot.view("", &NamespaceInfo::default());
            snapshot.unknown = Some(Arc::new(view));
        }
        if let Some(namespaces) = namespaces {
            snapshot.namespaces = namespaces
                .iter()
                .map(|(name, info)| (name.clone(), Arc::new(snapshot.view(name, info))))
                .collect();
        }
        (snapshot, errors)
    }

    /// The policies in ascending priority, for `explain` and tests.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> {
        self.policies.iter().map(|p| &*p.name)
    }

    /// Whether `bytes` contain the annotation prefix anywhere (a review body that does not
    /// cannot carry any of tandem's annotations).
    pub fn mentions_prefix(&self, bytes: &[u8]) -> bool {
        self.prefix_finder.find(bytes).is_some()
    }

    /// The view of namespace `name`: precomputed when namespaces are known, else built from
    /// the name label alone. A precomputed view is lent, not shared: every review asks, and
    /// a reference count taken on every review would move between the connection threads'
    /// caches.
    pub fn namespace(&self, name: &str) -> View<'_> {
        if let Some(view) = self.namespaces.get(name) {
            return View::Kept(view);
        }
        if let Some(view) = &self.unknown {
            return View::Kept(view);
        }
        View::Seen(self.seen_namespace(name))
    }

    /// The view of a namespace the API server has not described, built once and kept.
    fn seen_namespace(&self, name: &str) -> Arc<NamespaceView> {
        let seen = self.seen.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(view) = seen.get(name) {
            return view.clone();
        }
        drop(seen);
        if self.namespaces_known {
            // A namespace the reflector has not seen yet (created a moment ago): the
            // API server created it before the pod, so this is rare and short-lived.
            tracing::debug!(namespace = name, "namespace not in the store yet");
        }
        let info = NamespaceInfo {
            labels: BTreeMap::from([(NAMESPACE_NAME_LABEL.to_string(), name.to_string())]),
            annotations: BTreeMap::new(),
        };
        let view = Arc::new(self.view(name, &info));
        let mut seen = self.seen.write().unwrap_or_else(PoisonError::into_inner);
        if seen.len() < SEEN_LIMIT {
            seen.insert(name.to_string(), view.clone());
        }
        view
    }

    fn view(&self, name: &str, info: &NamespaceInfo) -> NamespaceView {
        let mut labels = info.labels.clone();
        labels
            .entry(NAMESPACE_NAME_LABEL.to_string())
            .or_insert_with(|| name.to_string());
        let candidates: Vec<usize> = (0..self.policies.len())
            .filter(|&i| self.policies[i].namespaces.matches(&labels))
            .collect();
        let annotations = Annotations::parse(
            &self.prefix,
            info.annotations
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
            |key| Source::Namespace {
                namespace: name.to_string(),
                key: key.to_string(),
            },
        );
        let any_pod_selector = candidates
            .iter()
            .any(|&i| !self.policies[i].pods.is_empty());
        let switching = candidates
            .iter()
            .copied()
            .filter(|&i| {
                let spec = &self.policies[i].spec;
                !spec.defaults.is_empty() || !spec.enforce.is_empty()
            })
            .collect();
        let merged = (!any_pod_selector).then(|| Arc::new(self.merge(candidates.iter().copied())));
        NamespaceView {
            annotations,
            candidates,
            merged,
            switching,
            by_pods: RwLock::default(),
        }
    }

    fn merge(&self, indices: impl Iterator<Item = usize>) -> Effective {
        let mut effective = Effective::default();
        for index in indices {
            effective.merge(&self.policies[index]);
        }
        effective
    }

    /// Whether a pod with `labels` and no annotation of ours gets anything in `namespace`:
    /// the namespace's annotations, or a policy switching a pattern on for it.
    pub fn switches_on(&self, namespace: &NamespaceView, labels: &(impl Labels + ?Sized)) -> bool {
        !namespace.annotations.is_empty()
            || namespace
                .switching
                .iter()
                .any(|&i| self.policies[i].pods.matches(labels))
    }

    /// What the policies decide for a pod with `labels` in namespace view `namespace`.
    pub fn effective(
        &self,
        namespace: &NamespaceView,
        labels: &(impl Labels + ?Sized),
    ) -> Arc<Effective> {
        if let Some(merged) = &namespace.merged {
            return merged.clone();
        }
        // Which candidates' pod selectors match: a few distinct sets per namespace, each
        // merged once and kept.
        let matched: Vec<bool> = namespace
            .candidates
            .iter()
            .map(|&i| self.policies[i].pods.matches(labels))
            .collect();
        let memo = namespace
            .by_pods
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(merged) = memo.get(&matched) {
            return merged.clone();
        }
        drop(memo);
        let merged = Arc::new(
            self.merge(
                namespace
                    .candidates
                    .iter()
                    .zip(&matched)
                    .filter_map(|(&i, &matches)| matches.then_some(i)),
            ),
        );
        let mut memo = namespace
            .by_pods
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if memo.len() < SEEN_LIMIT {
            memo.insert(matched, merged.clone());
        }
        merged
    }
}

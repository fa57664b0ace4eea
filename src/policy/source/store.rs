//! The current [`Snapshot`], rebuilt whenever a source changes: the built-in policies,
//! policy files, and (with `--kube`) InjectionPolicy objects and Namespaces. Reviews read it
//! without locking; sources replace it whole.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
};

use arc_swap::ArcSwap;

use crate::{
    policy::{
        model::types::InjectionPolicy,
        snapshot::{NamespaceInfo, PolicyError, Snapshot},
        source::builtin,
    },
    telemetry::Metrics,
};

/// What the snapshot is built from.
#[derive(Default)]
struct Inputs {
    files: Vec<InjectionPolicy>,
    kube: BTreeMap<String, InjectionPolicy>,
    /// `None` until namespaces come from the API server.
    namespaces: Option<HashMap<String, NamespaceInfo>>,
}

pub struct Store {
    prefix: String,
    builtin: Vec<InjectionPolicy>,
    current: ArcSwap<Snapshot>,
    inputs: Mutex<Inputs>,
    metrics: Option<Arc<Metrics>>,
}

impl Store {
    /// A store holding the built-in policies only.
    pub fn new(prefix: &str, metrics: Option<Arc<Metrics>>) -> Arc<Store> {
        let builtin = builtin::policies();
        let (snapshot, errors) = Snapshot::build(prefix, builtin.clone(), None);
        assert!(
            errors.is_empty(),
            "built-in policies are invalid: {errors:?}"
        );
        Arc::new(Store {
            prefix: prefix.to_string(),
            builtin,
            current: ArcSwap::from_pointee(snapshot),
            inputs: Mutex::default(),
            metrics,
        })
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The snapshot to answer a review with.
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// Replaces the policies from files (already checked by [`super::files::check`]).
    pub fn set_files(&self, policies: Vec<InjectionPolicy>) {
        self.update(|inputs| inputs.files = policies);
    }

    /// Replaces what the API server says: its policies and its namespaces. Invalid
    /// policies are skipped (one bad object must not stop the others from applying) and
    /// returned.
    pub fn set_cluster(
        &self,
        policies: impl IntoIterator<Item = InjectionPolicy>,
        namespaces: HashMap<String, NamespaceInfo>,
    ) -> Vec<PolicyError> {
        self.update(|inputs| {
            inputs.kube = policies
                .into_iter()
                .map(|p| (p.metadata.name.clone().unwrap_or_default(), p))
                .collect();
            inputs.namespaces = Some(namespaces);
        })
    }

    fn update(&self, change: impl FnOnce(&mut Inputs)) -> Vec<PolicyError> {
        let mut inputs = self
            .inputs
            .lock()
            .expect("no panics while the lock is held");
        change(&mut inputs);
        let (snapshot, errors) = self.build(&inputs);
        for error in &errors {
            tracing::warn!(%error, "skipping an invalid policy");
        }
        if let Some(metrics) = &self.metrics {
            metrics.policies.set(snapshot.policy_names().count() as i64);
        }
        self.current.store(Arc::new(snapshot));
        errors
    }

    /// Files first, then the API server: an object in the cluster replaces a file (or a
    /// built-in policy) of the same name, as the newer and more specific source. An invalid
    /// object is left out altogether, as if it did not exist: the policy it would have
    /// replaced stays in force (a broken `tandem-catalog` object must not take the
    /// built-in profiles with it), and no profile of it is used.
    fn build(&self, inputs: &Inputs) -> (Snapshot, Vec<PolicyError>) {
        let compile = |left_out: &BTreeMap<&str, Vec<PolicyError>>, namespaces| {
            let cluster = inputs
                .kube
                .iter()
                .filter(|(name, _)| !left_out.contains_key(name.as_str()))
                .map(|(_, policy)| policy);
            let policies = self
                .builtin
                .iter()
                .chain(&inputs.files)
                .chain(cluster)
                .cloned();
            Snapshot::build(&self.prefix, policies, namespaces)
        };
        let mut left_out: BTreeMap<&str, Vec<PolicyError>> = BTreeMap::new();
        loop {
            let (snapshot, errors) = compile(&left_out, inputs.namespaces.as_ref());
            // An error naming a cluster object that is in: leave it out and build again.
            // (One naming an object already left out is the file or built-in policy of
            // that name.)
            let (cluster, others): (Vec<_>, Vec<_>) = errors.into_iter().partition(|e| {
                inputs.kube.contains_key(&e.policy) && !left_out.contains_key(e.policy.as_str())
            });
            if !cluster.is_empty() {
                for error in cluster {
                    if let Some((name, _)) = inputs.kube.get_key_value(&error.policy) {
                        left_out.entry(name.as_str()).or_default().push(error);
                    }
                }
                continue;
            }
            // Some may have been invalid only because of another one (a broken
            // `tandem-catalog` makes every policy using a built-in profile fail): bring
            // back, one at a time, those that add no error to the valid set.
            let known: Vec<&str> = others.iter().map(|e| e.policy.as_str()).collect();
            let mut back = None;
            for name in left_out.keys().copied().collect::<Vec<_>>() {
                let mut trial = left_out.clone();
                trial.remove(name);
                let (_, errors) = compile(&trial, None);
                let new: Vec<PolicyError> = errors
                    .into_iter()
                    .filter(|e| {
                        !trial.contains_key(e.policy.as_str())
                            && !known.contains(&e.policy.as_str())
                    })
                    .collect();
                if new.is_empty() {
                    back = Some(name);
                    break;
                }
                let own: Vec<PolicyError> = new.into_iter().filter(|e| e.policy == name).collect();
                if !own.is_empty() {
                    left_out.insert(name, own);
                }
            }
            match back {
                Some(name) => {
                    left_out.remove(name);
                }
                None => {
                    let mut errors: Vec<PolicyError> = left_out.into_values().flatten().collect();
                    errors.extend(others);
                    return (snapshot, errors);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(yaml: &str) -> InjectionPolicy {
        serde_saphyr::from_str(&format!(
            "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\n{yaml}"
        ))
        .unwrap()
    }

    fn names(store: &Store) -> Vec<String> {
        store.snapshot().policy_names().map(String::from).collect()
    }

    const PROFILE: &str = "{image: cr.fluentbit.io/fluent/fluent-bit:4.2.4, args: [\"{{path}}\"], resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {memory: 1Mi}}}";

    #[test]
    fn an_invalid_cluster_object_leaves_the_policy_of_its_name_in_force() {
        let store = Store::new("tandem.dev", None);
        store.set_files(vec![policy(
            "metadata: {name: shared}\nspec: {priority: 5}",
        )]);
        let errors = store.set_cluster(
            [
                // Replaces the built-in catalog with a broken one: the built-in one stays.
                policy("metadata: {name: tandem-catalog}\nspec: {allowedGitHosts: [\"not a host\"]}"),
                // Valid on its own, using a built-in profile: applies.
                policy("metadata: {name: logs}\nspec: {defaults: {log-shipper: {profile: fluent-bit}}}"),
                // Replaces the file policy with a broken one: the file one stays.
                policy("metadata: {name: shared}\nspec: {selector: {pods: {matchExpressions: [{key: a, operator: Is}]}}}"),
            ],
            HashMap::new(),
        );
        let failed: Vec<&str> = errors.iter().map(|e| e.policy.as_str()).collect();
        assert_eq!(failed, ["shared", "tandem-catalog"], "{errors:#?}");
        let snapshot = store.snapshot();
        assert!(
            snapshot
                .profiles
                .get(crate::pattern::Pattern::LogShipper)
                .contains_key("fluent-bit")
        );
        assert_eq!(
            names(&store),
            ["tandem-catalog", "tandem-default", "logs", "shared"]
        );
    }

    #[test]
    fn a_policy_using_a_profile_of_an_invalid_object_is_left_out_too() {
        let store = Store::new("tandem.dev", None);
        let errors = store.set_cluster(
            [
                policy(&format!(
                    "metadata: {{name: defines}}\nspec: {{allowedImages: [\"[\"], profiles: {{log-shipper: {{custom: {PROFILE}}}}}}}"
                )),
                policy("metadata: {name: uses}\nspec: {defaults: {log-shipper: {profile: custom}}}"),
            ],
            HashMap::new(),
        );
        let failed: Vec<&str> = errors.iter().map(|e| e.policy.as_str()).collect();
        assert_eq!(failed, ["defines", "uses"], "{errors:#?}");
        assert!(
            store
                .snapshot()
                .profiles
                .get(crate::pattern::Pattern::LogShipper)
                .get("custom")
                .is_none()
        );
    }
}

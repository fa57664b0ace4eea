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
        builtin,
        snapshot::{NamespaceInfo, PolicyError, Snapshot},
        types::InjectionPolicy,
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
        // Files first, then the API server: an object in the cluster replaces a file of the
        // same name, as the newer and more specific source.
        let policies = self
            .builtin
            .iter()
            .chain(&inputs.files)
            .chain(inputs.kube.values())
            .cloned();
        let (snapshot, errors) =
            Snapshot::build(&self.prefix, policies, inputs.namespaces.as_ref());
        for error in &errors {
            tracing::warn!(%error, "skipping an invalid policy");
        }
        if let Some(metrics) = &self.metrics {
            metrics.policies.set(snapshot.policy_names().count() as i64);
        }
        self.current.store(Arc::new(snapshot));
        errors
    }
}

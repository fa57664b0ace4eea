//! Drift: pods that carry what an older tandem or older policies injected.
//!
//! Only pod creation is mutated, so after an upgrade of tandem or a change of policy every
//! pod made before keeps what it got then. For every pod tandem injected (the `injected`
//! annotation), drift rebuilds the pod as it was before mutation ([`basis`]), runs the
//! webhook's own engine on it under today's policies, and compares the result with what
//! the pod carries ([`compare`]). `tandem drift` reports the stale pods by owning workload
//! ([`report`]) and restarts workloads on request; `tandem serve --kube` exports the count
//! ([`metric`]). The API server is read in [`cluster`].
//!
//! ```text
//! pods (API) → owner's template or stripped pod → engine::evaluate → plan
//!                                   pod's tandem-… containers, volumes, mounts ┘→ differences
//! ```
//!
//! Pods being deleted (a `deletionTimestamp`) and pods that have finished (`Succeeded`,
//! `Failed`) are not checked: they are on their way out, or run nothing.

pub mod basis;
pub mod cluster;
pub mod command;
pub mod compare;
pub mod metric;
pub mod report;
#[cfg(test)]
mod tests;

use serde::Serialize;

use crate::{engine, pod::Pod, policy::snapshot::Snapshot};
use basis::Basis;
use compare::{Difference, Injected};

/// What owns a pod, as a user names it: the Deployment (not its ReplicaSet), the
/// StatefulSet, DaemonSet or Job, or the pod itself.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// `Deployment`, `StatefulSet`, `DaemonSet`, `Job`, `ReplicaSet` (one no Deployment
    /// owns), `Pod` (a bare pod), or the kind of another controller.
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// The kinds `kubectl rollout restart` restarts (and so does `tandem drift --restart`):
/// their controllers replace pods when the pod template changes.
pub const RESTARTABLE: [&str; 3] = ["Deployment", "StatefulSet", "DaemonSet"];

/// The workload kinds the metric counts by; others count as `other`.
pub const KINDS: [&str; 6] = [
    "Deployment",
    "StatefulSet",
    "DaemonSet",
    "Job",
    "ReplicaSet",
    "Pod",
];

impl Workload {
    pub fn restartable(&self) -> bool {
        RESTARTABLE.contains(&self.kind.as_str())
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// One pod's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "details")]
pub enum Verdict {
    /// What it carries is what would be injected today.
    Current,
    /// It differs.
    Stale(Vec<Difference>),
    /// Today's policies would deny the pod: a restart would leave its workload unable to
    /// make new pods.
    Denied(String),
}

impl Verdict {
    pub fn is_current(&self) -> bool {
        matches!(self, Verdict::Current)
    }
}

/// Checks one stored pod, in `namespace`, against `snapshot`, from its `basis`.
pub fn check(
    snapshot: &Snapshot,
    namespace: &str,
    pod: &k8s_openapi::api::core::v1::PodSpec,
    basis: &Basis,
) -> Verdict {
    let json = basis.pod.to_string();
    let parsed = match Pod::parse(&json) {
        Ok(parsed) => parsed,
        Err(error) => {
            return Verdict::Denied(format!(
                "the pod cannot be read as the webhook reads it: {error}"
            ));
        }
    };
    let evaluation = engine::evaluate(snapshot, namespace, &parsed);
    if let Some(denial) = evaluation.denial() {
        return Verdict::Denied(denial);
    }
    let apps: Vec<String> = parsed
        .spec
        .containers
        .iter()
        .map(|c| c.name.to_string())
        .collect();
    let expected = Injected::planned(&evaluation.outcome.plan, &apps);
    let carried = Injected::carried(pod, &basis.names);
    let differences = compare::differences(&carried, &expected);
    if differences.is_empty() {
        Verdict::Current
    } else {
        Verdict::Stale(differences)
    }
}

/// Errors of `tandem drift`.
#[derive(Debug, thiserror::Error)]
pub enum DriftError {
    #[error("reading the kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("{what}: {source}")]
    Api {
        what: String,
        #[source]
        source: kube::Error,
    },
    #[error("invalid policies:\n{0}")]
    Policies(String),
}

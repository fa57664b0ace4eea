//! What drift reads from the API server, and the restarts it writes: today's policies and
//! namespaces (read as `serve --kube` reads them), the pods page by page, each pod's owner
//! (read once per owner), and the `restartedAt` patches of `--restart`.
//!
//! Reads: list pods; get replicasets, jobs, replicationcontrollers and controllerrevisions
//! (the owners' templates); list injectionpolicies and namespaces. An owner that cannot be
//! read (gone, or forbidden) is not an error: the pod is then compared as a bare pod, and
//! the report says so. `--restart` also gets and patches deployments, statefulsets and
//! daemonsets.

use std::{collections::HashMap, path::Path, sync::Arc};

use k8s_openapi::{
    api::{
        apps::v1::{ControllerRevision, DaemonSet, Deployment, ReplicaSet, StatefulSet},
        batch::v1::Job,
        core::v1::{Namespace, Pod, PodTemplateSpec, ReplicationController},
    },
    apimachinery::pkg::apis::meta::v1::OwnerReference,
    jiff::Timestamp,
};
use kube::{
    Api, Client, Config,
    api::{ListParams, Patch, PatchParams},
    config::{KubeConfigOptions, Kubeconfig},
    core::DeserializeGuard,
};
use serde::Serialize;

use super::{DriftError, Verdict, Workload, basis::Basis, check};
use crate::policy::{
    InjectionPolicy,
    snapshot::{NamespaceInfo, Snapshot},
    source::store::Store,
};

/// Pods asked for per page: a large cluster is checked a page at a time.
const PAGE: u32 = 500;

/// The annotation `kubectl rollout restart` sets on the pod template.
pub const RESTARTED_AT: &str = "kubectl.kubernetes.io/restartedAt";

/// The Deployment controller's revision annotation, on Deployments and their ReplicaSets.
const REVISION: &str = "deployment.kubernetes.io/revision";

/// A client as kubectl would make one: `kubeconfig` (default: `$KUBECONFIG`,
/// `~/.kube/config`, or the in-cluster service account), with `context` (default: the
/// current one).
pub async fn client(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> Result<Client, DriftError> {
    let options = KubeConfigOptions {
        context: context.map(String::from),
        ..Default::default()
    };
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .map_err(|e| DriftError::Kubeconfig(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(file, &options)
                .await
                .map_err(|e| DriftError::Kubeconfig(e.to_string()))?
        }
        None if context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| DriftError::Kubeconfig(e.to_string()))?,
        None => Config::infer().await.map_err(|e| {
            DriftError::Kubeconfig(format!("{e}; give --kubeconfig or set KUBECONFIG"))
        })?,
    };
    Client::try_from(config).map_err(|source| DriftError::Api {
        what: "making a client".into(),
        source,
    })
}

/// Today's policies, as the server would hold them: the built-in ones, `files`, and the
/// cluster's InjectionPolicy objects and namespaces. Returns notes for the report
/// (policies left out, a missing CRD).
pub async fn store(
    client: &Client,
    prefix: &str,
    files: Vec<InjectionPolicy>,
) -> Result<(Arc<Store>, Vec<String>), DriftError> {
    let store = Store::new(prefix, None);
    store.set_files(files);
    let mut notes = Vec::new();
    let listed = Api::<DeserializeGuard<InjectionPolicy>>::all(client.clone())
        .list(&ListParams::default())
        .await;
    let policies = match listed {
        Ok(list) => list
            .items
            .into_iter()
            .filter_map(|DeserializeGuard(policy)| match policy {
                Ok(policy) => {
                    let name = policy.metadata.name.clone()?;
                    Some(InjectionPolicy::new(&name, policy.spec))
                }
                Err(invalid) => {
                    notes.push(format!(
                        "InjectionPolicy {} cannot be read and was left out: {}",
                        invalid.metadata.name.unwrap_or_default(),
                        invalid.error
                    ));
                    None
                }
            })
            .collect(),
        Err(kube::Error::Api(status)) if status.code == 404 => {
            notes.push(
                "the InjectionPolicy CRD is not installed: built-in and --policies policies only"
                    .into(),
            );
            Vec::new()
        }
        Err(source) => {
            return Err(DriftError::Api {
                what: "listing injectionpolicies.tandem.dev".into(),
                source,
            });
        }
    };
    let namespaces = Api::<Namespace>::all(client.clone())
        .list_metadata(&ListParams::default())
        .await
        .map_err(|source| DriftError::Api {
            what: "listing namespaces".into(),
            source,
        })?
        .items
        .into_iter()
        .filter_map(|ns| {
            Some((
                ns.metadata.name?,
                NamespaceInfo {
                    labels: ns.metadata.labels.unwrap_or_default(),
                    annotations: ns.metadata.annotations.unwrap_or_default(),
                },
            ))
        })
        .collect();
    for error in store.set_cluster(policies, namespaces) {
        notes.push(format!("left out: {error}"));
    }
    Ok((store, notes))
}

/// One injected pod, checked.
#[derive(Clone, Debug, Serialize)]
pub struct Checked {
    pub name: String,
    #[serde(skip)]
    pub workload: Workload,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// What the pod was compared from: `ReplicaSet web-7d9f8b6c5`, `the pod itself`…
    pub basis: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The owner's template itself holds tandem's containers (`tandem inject`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub injected_in_template: bool,
    /// The template revision the pod was made from: the ReplicaSet's Deployment revision,
    /// or the ControllerRevision's name.
    #[serde(skip)]
    pub revision: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<Timestamp>,
}

/// Every injected pod checked, and what was not.
#[derive(Debug, Default)]
pub struct Scan {
    pub pods: Vec<Checked>,
    /// Pods with a `deletionTimestamp`: on their way out, not checked.
    pub terminating: usize,
    /// Pods that have finished (`Succeeded`, `Failed`): they run nothing, not checked.
    pub finished: usize,
    pub notes: Vec<String>,
}

/// Checks every pod tandem injected, in `namespace` or all of them, against `snapshot`.
pub async fn scan(
    client: &Client,
    snapshot: &Snapshot,
    namespace: Option<&str>,
) -> Result<Scan, DriftError> {
    let pods: Api<Pod> = match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    };
    let injected_key = format!("{}/{}", snapshot.prefix, crate::annotations::INJECTED);
    let mut owners = Owners::new(client.clone());
    let mut scan = Scan::default();
    let mut token: Option<String> = None;
    loop {
        let mut params = ListParams::default().limit(PAGE);
        if let Some(token) = &token {
            params = params.continue_token(token);
        }
        let page = pods.list(&params).await.map_err(|source| DriftError::Api {
            what: "listing pods".into(),
            source,
        })?;
        for pod in page.items {
            if !pod
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key(&injected_key))
            {
                continue;
            }
            if pod.metadata.deletion_timestamp.is_some() {
                scan.terminating += 1;
                continue;
            }
            let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
            if matches!(phase, Some("Succeeded" | "Failed")) {
                scan.finished += 1;
                continue;
            }
            scan.pods.push(owners.check(snapshot, &pod).await);
        }
        token = page.metadata.continue_.filter(|t| !t.is_empty());
        if token.is_none() {
            break;
        }
    }
    Ok(scan)
}

/// What a pod's owner says: the workload to report it under, and the template it was made
/// from.
#[derive(Clone)]
struct Owner {
    workload: Workload,
    template: Option<PodTemplateSpec>,
    source: String,
    note: Option<String>,
    revision: Option<String>,
}

/// Owners read so far in one scan, by namespace, kind and name.
struct Owners {
    client: Client,
    seen: HashMap<(String, String, String), Owner>,
}

impl Owners {
    fn new(client: Client) -> Owners {
        Owners {
            client,
            seen: HashMap::new(),
        }
    }

    async fn check(&mut self, snapshot: &Snapshot, pod: &Pod) -> Checked {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let owner = self.owner(pod, &namespace, &name).await;
        let basis = match &owner.template {
            Some(template) => {
                Basis::from_template(pod, template, owner.source.clone(), &snapshot.prefix)
            }
            None => Basis::stripped(pod, owner.source.clone(), &snapshot.prefix),
        };
        let spec = pod.spec.clone().unwrap_or_default();
        Checked {
            name,
            verdict: check(snapshot, &namespace, &spec, &basis),
            workload: owner.workload,
            basis: basis.source,
            note: owner.note,
            injected_in_template: basis.injected_in_template,
            revision: owner.revision,
            created: pod.metadata.creation_timestamp.as_ref().map(|t| t.0),
        }
    }

    async fn owner(&mut self, pod: &Pod, namespace: &str, name: &str) -> Owner {
        let controller = pod
            .metadata
            .owner_references
            .iter()
            .flatten()
            .find(|r| r.controller == Some(true));
        let Some(controller) = controller else {
            return Owner {
                workload: workload("Pod", namespace, name),
                template: None,
                source: "the pod itself, less what tandem added".into(),
                note: None,
                revision: None,
            };
        };
        // StatefulSets and DaemonSets keep each template revision as a ControllerRevision
        // and label their pods with its name.
        let revision_name = pod
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("controller-revision-hash"))
            .cloned();
        let key_name = match (controller.kind.as_str(), &revision_name) {
            ("StatefulSet" | "DaemonSet", Some(revision)) => revision.clone(),
            _ => controller.name.clone(),
        };
        let key = (namespace.to_string(), controller.kind.clone(), key_name);
        if let Some(owner) = self.seen.get(&key) {
            return owner.clone();
        }
        let owner = self.read(controller, namespace, revision_name).await;
        self.seen.insert(key, owner.clone());
        owner
    }

    async fn read(
        &self,
        controller: &OwnerReference,
        namespace: &str,
        revision_name: Option<String>,
    ) -> Owner {
        let kind = controller.kind.as_str();
        let name = controller.name.as_str();
        let client = self.client.clone();
        let found: Result<Owner, String> = match kind {
            "ReplicaSet" => get::<ReplicaSet>(client, namespace, name).await.map(|rs| {
                let deployment = rs
                    .metadata
                    .owner_references
                    .iter()
                    .flatten()
                    .find(|r| r.controller == Some(true) && r.kind == "Deployment");
                Owner {
                    workload: match deployment {
                        Some(d) => workload("Deployment", namespace, &d.name),
                        None => workload("ReplicaSet", namespace, name),
                    },
                    revision: rs
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get(REVISION))
                        .cloned(),
                    template: rs.spec.template,
                    source: format!("ReplicaSet {name}"),
                    note: None,
                }
            }),
            "StatefulSet" | "DaemonSet" => match &revision_name {
                Some(revision) => get::<ControllerRevision>(client, namespace, revision)
                    .await
                    .and_then(|cr| {
                        // The revision's data is a patch that replaces the whole template.
                        let template =
                            cr.data
                                .0
                                .pointer("/spec/template")
                                .cloned()
                                .ok_or_else(|| {
                                    format!("ControllerRevision {revision} holds no pod template")
                                })?;
                        let template: PodTemplateSpec = serde_json::from_value(template)
                            .map_err(|e| format!("ControllerRevision {revision}: {e}"))?;
                        Ok(Owner {
                            workload: workload(kind, namespace, name),
                            template: Some(template),
                            source: format!("{kind} {name}, ControllerRevision {revision}"),
                            note: None,
                            revision: Some(revision.clone()),
                        })
                    }),
                None => Err("the pod has no controller-revision-hash label".into()),
            },
            "Job" => get::<Job>(client, namespace, name).await.map(|job| Owner {
                workload: workload("Job", namespace, name),
                template: job.spec.map(|s| s.template),
                source: format!("Job {name}"),
                note: None,
                revision: None,
            }),
            "ReplicationController" => get::<ReplicationController>(client, namespace, name)
                .await
                .map(|rc| Owner {
                    workload: workload(kind, namespace, name),
                    template: rc.spec.and_then(|s| s.template),
                    source: format!("ReplicationController {name}"),
                    note: None,
                    revision: None,
                }),
            other => Err(format!("tandem does not read {other} objects")),
        };
        found.unwrap_or_else(|problem| Owner {
            workload: workload(kind, namespace, name),
            template: None,
            source: "the pod itself, less what tandem added".into(),
            note: Some(format!(
                "its {kind} {name} could not be read ({problem}): compared with the pod less tandem's containers and volumes"
            )),
            revision: None,
        })
    }
}

fn workload(kind: &str, namespace: &str, name: &str) -> Workload {
    Workload {
        kind: kind.into(),
        namespace: namespace.into(),
        name: name.into(),
    }
}

async fn get<K>(client: Client, namespace: &str, name: &str) -> Result<K, String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    Api::<K>::namespaced(client, namespace)
        .get(name)
        .await
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 404 => "not found".into(),
            kube::Error::Api(status) if status.code == 403 => {
                format!("forbidden: {}", status.message)
            }
            other => other.to_string(),
        })
}

/// What `--restart` did with a workload that has stale pods.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "action", content = "reason")]
pub enum Restart {
    /// Its pod template got a new `restartedAt`: its controller replaces the pods.
    Restarted,
    /// `--dry-run`: the API server accepted the patch and changed nothing.
    WouldRestart,
    /// A newer template (a restart, an edit) is already replacing these pods.
    RollingOut(String),
    /// Left alone, and why: not a kind that restarts, pods today's policies would deny,
    /// a template that carries tandem's containers itself, or the limit.
    Skipped(String),
    Failed(String),
}

impl std::fmt::Display for Restart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restart::Restarted => f.write_str("restarted"),
            Restart::WouldRestart => {
                f.write_str("would restart (dry run: the API server accepted the patch)")
            }
            Restart::RollingOut(why) => write!(f, "not restarted: already rolling out ({why})"),
            Restart::Skipped(why) => write!(f, "not restarted: {why}"),
            Restart::Failed(why) => write!(f, "restart failed: {why}"),
        }
    }
}

/// Restarts `workload`, whose stale pods are `pods`, unless that would not help; `budget`
/// is how many more restarts this run may make.
pub async fn restart(
    client: &Client,
    workload: &Workload,
    pods: &[&Checked],
    dry_run: bool,
    budget: &mut usize,
) -> Restart {
    if !workload.restartable() {
        return Restart::Skipped(match workload.kind.as_str() {
            "Pod" => {
                "a bare pod: nothing would make it again; delete and recreate it yourself".into()
            }
            "Job" => {
                "a Job's pods are not replaced; they get today's sidecars when the Job runs again"
                    .into()
            }
            kind => format!(
                "{kind} is not restarted (only {})",
                super::RESTARTABLE.join(", ")
            ),
        });
    }
    if let Some(denied) = pods.iter().find_map(|p| match &p.verdict {
        Verdict::Denied(message) => Some(message),
        _ => None,
    }) {
        return Restart::Skipped(format!(
            "today's policies would deny its new pods: {denied}"
        ));
    }
    if pods.iter().any(|p| p.injected_in_template) {
        return Restart::Skipped(
            "its pod template itself holds tandem's containers (tandem inject): run tandem inject on its manifest again and apply it".into(),
        );
    }
    let current = match current(client, workload).await {
        Ok(current) => current,
        Err(error) => return Restart::Failed(error),
    };
    let pending = |pod: &&Checked| {
        let newer_revision = match (&current.revision, &pod.revision) {
            (Some(now), Some(then)) => now != then,
            _ => false,
        };
        let restarted_since = match (current.restarted_at, pod.created) {
            (Some(restarted), Some(created)) => restarted > created,
            _ => false,
        };
        newer_revision || restarted_since
    };
    if pods.iter().all(pending) {
        return Restart::RollingOut(match &current.revision {
            Some(revision) => {
                format!("the pods are from an older template than revision {revision}")
            }
            None => "the template was restarted after these pods were made".into(),
        });
    }
    if *budget == 0 {
        return Restart::Skipped(
            "the --max-restarts limit was reached; run again for the rest".into(),
        );
    }
    *budget -= 1;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let at = Timestamp::from_second(i64::try_from(now).unwrap_or_default())
        .unwrap_or(Timestamp::UNIX_EPOCH);
    let patch = serde_json::json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT: at.to_string()}}}}});
    let params = PatchParams {
        dry_run,
        field_manager: Some("tandem-drift".into()),
        ..Default::default()
    };
    let patched = match workload.kind.as_str() {
        "Deployment" => patch_as::<Deployment>(client, workload, &params, &patch).await,
        "StatefulSet" => patch_as::<StatefulSet>(client, workload, &params, &patch).await,
        _ => patch_as::<DaemonSet>(client, workload, &params, &patch).await,
    };
    match patched {
        Ok(()) if dry_run => Restart::WouldRestart,
        Ok(()) => Restart::Restarted,
        Err(error) => Restart::Failed(error),
    }
}

/// A workload's current template revision and restart time.
struct Current {
    revision: Option<String>,
    restarted_at: Option<Timestamp>,
}

async fn current(client: &Client, workload: &Workload) -> Result<Current, String> {
    let (ns, name) = (workload.namespace.as_str(), workload.name.as_str());
    let restarted = |template: Option<&PodTemplateSpec>| {
        template
            .and_then(|t| t.metadata.as_ref())
            .and_then(|m| m.annotations.as_ref())
            .and_then(|a| a.get(RESTARTED_AT))
            .and_then(|at| at.parse::<Timestamp>().ok())
    };
    let read = |e: String| format!("reading {workload}: {e}");
    Ok(match workload.kind.as_str() {
        "Deployment" => {
            let d = get::<Deployment>(client.clone(), ns, name)
                .await
                .map_err(read)?;
            Current {
                revision: d
                    .metadata
                    .annotations
                    .as_ref()
                    .and_then(|a| a.get(REVISION))
                    .cloned(),
                restarted_at: restarted(Some(&d.spec.template)),
            }
        }
        "StatefulSet" => {
            let s = get::<StatefulSet>(client.clone(), ns, name)
                .await
                .map_err(read)?;
            Current {
                revision: s.status.as_ref().and_then(|s| s.update_revision.clone()),
                restarted_at: restarted(Some(&s.spec.template)),
            }
        }
        _ => {
            let d = get::<DaemonSet>(client.clone(), ns, name)
                .await
                .map_err(read)?;
            Current {
                revision: None,
                restarted_at: restarted(Some(&d.spec.template)),
            }
        }
    })
}

async fn patch_as<K>(
    client: &Client,
    workload: &Workload,
    params: &PatchParams,
    patch: &serde_json::Value,
) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
    <K as kube::Resource>::DynamicType: Default,
{
    Api::<K>::namespaced(client.clone(), &workload.namespace)
        .patch(&workload.name, params, &Patch::Strategic(patch))
        .await
        .map(drop)
        .map_err(|error| match error {
            kube::Error::Api(status) if status.code == 403 => {
                format!(
                    "forbidden: patching {workload} needs the patch verb on it ({})",
                    status.message
                )
            }
            other => other.to_string(),
        })
}

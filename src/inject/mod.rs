//! From resolved patterns to a [`Plan`]: the containers, volumes, mounts and annotations to
//! add to one pod. One file per pattern; what they share is apart: the `builder` that
//! keeps names and ports unique, and the `container` parts (profile rendering, security
//! context, volumes, mounts). Pure functions of data.

mod ambassador;
mod builder;
mod container;
mod cover;
mod git_clone;
mod log_shipper;
mod metrics_adapter;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Volume, VolumeMount};

pub(crate) use builder::Builder;
pub use container::{DEFAULT_USER, empty_dir, mount, port, render, restricted};

use crate::{
    invalid::Invalid,
    pattern::Pattern,
    pod::Pod,
    policy::{
        model::types::OnInvalid,
        resolve::{Resolution, Resolved},
    },
};

/// What to add to a pod. [`crate::patch::render`] turns it into JSON patch operations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// The patterns added, in order.
    pub patterns: Vec<Pattern>,
    /// Inserted, in this order, before the pod's own init containers: a one-time clone
    /// first, then native sidecars.
    pub init_containers: Vec<Container>,
    /// Appended to `containers` (classic sidecars).
    pub containers: Vec<Container>,
    pub volumes: Vec<Volume>,
    /// Mounts added to app containers, by index into `spec.containers`.
    pub mounts: Vec<(usize, VolumeMount)>,
    /// Annotations to set; keys the pod already has are left alone, except `injected`.
    pub annotations: BTreeMap<String, String>,
}

impl Plan {
    /// Nothing to add: no pattern, and no mount owed to a container added since.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty() && self.mounts.is_empty()
    }
}

/// A plan, or why the pod is denied, with the warnings to return either way.
#[derive(Debug, Default)]
pub struct Outcome {
    pub plan: Plan,
    pub denied: Vec<Invalid>,
    pub warned: Vec<Invalid>,
    /// Patterns a previous review already added.
    pub already: Vec<Pattern>,
}

/// Plans every resolved pattern; a pattern whose injector finds a problem is dropped with
/// a warning or denies the pod, as its policy's `onInvalid` says.
pub fn plan(pod: &Pod<'_>, prefix: &str, resolution: &Resolution) -> Outcome {
    let mut outcome = Outcome {
        plan: Plan::default(),
        denied: resolution.denied.clone(),
        warned: resolution.warned.clone(),
        already: resolution.already.clone(),
    };
    let mut builder = Builder::new(pod, prefix);
    for resolved in &resolution.patterns {
        let checkpoint = builder.checkpoint();
        match plan_pattern(&mut builder, resolved) {
            Ok(()) => builder.plan.patterns.push(resolved.pattern),
            Err(invalid) => {
                // Whatever the pattern added before it failed goes, names and ports included.
                builder.rollback(checkpoint);
                match resolved.on_invalid {
                    OnInvalid::Warn => outcome.warned.push(invalid),
                    OnInvalid::Deny => outcome.denied.push(invalid),
                }
            }
        }
    }
    let owed: Vec<(usize, VolumeMount)> = resolution
        .covering
        .iter()
        .flat_map(|resolved| cover::mounts(pod, prefix, resolved))
        .collect();
    if !outcome.denied.is_empty() || (builder.plan.patterns.is_empty() && owed.is_empty()) {
        return outcome;
    }
    if !builder.plan.patterns.is_empty() {
        builder.finish(&outcome.already);
    }
    for (index, mount) in owed {
        let planned = &builder.plan.mounts;
        if !planned
            .iter()
            .any(|(i, m)| *i == index && m.mount_path == mount.mount_path)
        {
            builder.plan.mounts.push((index, mount));
        }
    }
    outcome.plan = builder.plan;
    outcome
}

/// Plans one pattern into `builder`.
fn plan_pattern(builder: &mut Builder<'_>, resolved: &Resolved) -> Result<(), Invalid> {
    match resolved.pattern {
        Pattern::LogShipper => log_shipper::plan(builder, resolved),
        Pattern::MetricsAdapter => metrics_adapter::plan(builder, resolved),
        Pattern::Ambassador => ambassador::plan(builder, resolved),
        Pattern::GitClone => git_clone::plan(builder, resolved),
    }
}

/// Patterns whose containers the pod already has: a second review of a mutated pod (the
/// API server's reinvocation, or a pod copied with its injected containers) adds nothing.
pub fn present(pod: &Pod<'_>) -> Vec<Pattern> {
    Pattern::ALL
        .into_iter()
        .filter(|pattern| {
            let names: &[&str] = match pattern {
                Pattern::GitClone => &[
                    Pattern::GitClone.container_name(),
                    git_clone::SYNC_CONTAINER,
                ],
                other => &[other.container_name()],
            };
            pod.container_names().any(|name| names.contains(&name))
        })
        .collect()
}

//! Reinvocation: what a previous review added, owed to app containers added since.
//!
//! With `reinvocationPolicy: IfNeeded` the API server calls tandem again when a later
//! webhook changed the pod, for example added a container. tandem's own containers and
//! volumes are there already; what a new app container lacks is what the pattern gives
//! every app container (the log directory, the clone). Each such pattern is planned again
//! as for a new pod, and of that plan only the app mounts are kept, for the containers that
//! lack them, under the volume names the pod already uses: matched through the mounts of
//! the helper container the earlier review added.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, VolumeMount};

use super::{Builder, plan_pattern};
use crate::{pod::Pod, policy::resolve::Resolved};

/// The mounts `resolved` (a pattern the pod already has) owes to app containers that lack
/// them, by index into `spec.containers`.
pub(super) fn mounts(
    pod: &Pod<'_>,
    prefix: &str,
    resolved: &Resolved,
) -> Vec<(usize, VolumeMount)> {
    let mut builder = Builder::covering(pod, prefix);
    if plan_pattern(&mut builder, resolved).is_err() || builder.plan.mounts.is_empty() {
        return Vec::new();
    }
    let plan = builder.plan;
    // The planned volumes' names (`tandem-logs-2`: the pod has `tandem-logs`) -> the pod's.
    let mut names = BTreeMap::new();
    for helper in plan.init_containers.iter().chain(&plan.containers) {
        let Some(twin) = twin(pod, helper) else {
            continue;
        };
        for planned in helper.volume_mounts.iter().flatten() {
            let existing = twin.volume_mounts.iter().flatten();
            if let Some(mount) = existing
                .into_iter()
                .find(|m| m.mount_path == planned.mount_path)
            {
                names.insert(planned.name.clone(), mount.name.to_string());
            }
        }
    }
    plan.mounts
        .into_iter()
        .filter_map(|(index, mut mount)| {
            mount.name = names.get(&mount.name)?.clone();
            Some((index, mount))
        })
        .collect()
}

/// The container an earlier review added for the same job as `helper`: named as the
/// builder names them (`base`, `base-2`, …) and mounting at least the same paths.
fn twin<'a>(pod: &'a Pod<'a>, helper: &Container) -> Option<&'a crate::pod::Container<'a>> {
    let base = base_name(&helper.name);
    let paths = || {
        helper
            .volume_mounts
            .iter()
            .flatten()
            .map(|m| m.mount_path.as_str())
    };
    pod.spec
        .init_containers
        .iter()
        .flatten()
        .chain(&pod.spec.containers)
        .filter(|c| base_name(&c.name) == base)
        .find(|c| {
            paths().all(|path| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == path)
            })
        })
}

/// `tandem-log-shipper` of `tandem-log-shipper-2`.
fn base_name(name: &str) -> &str {
    match name.rsplit_once('-') {
        Some((base, n)) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => base,
        _ => name,
    }
}

#[cfg(test)]
mod tests {
    use super::base_name;

    #[test]
    fn base_names() {
        assert_eq!(base_name("tandem-log-shipper"), "tandem-log-shipper");
        assert_eq!(base_name("tandem-log-shipper-2"), "tandem-log-shipper");
        assert_eq!(base_name("tandem-git-sync-10"), "tandem-git-sync");
        assert_eq!(base_name("web-"), "web-");
    }
}

//! From resolved patterns to a [`Plan`]: the containers, volumes, mounts and annotations to
//! add to one pod. One file per pattern; what they share (names, security context, profile
//! rendering, mounts into app containers) is here. Pure functions of data.

mod ambassador;
mod git_clone;
mod log_shipper;
mod metrics_adapter;

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvVar, SeccompProfile, SecurityContext, Volume,
    VolumeMount,
};

use crate::{
    annotations::{self, DEFAULT_CONTAINER},
    invalid::{Invalid, Reason, Source},
    pattern::Pattern,
    pod::Pod,
    policy::{
        resolve::{Resolution, Resolved},
        types::{OnInvalid, SidecarMode},
    },
};

/// The non-root user injected containers run as when the profile does not say.
pub const DEFAULT_USER: i64 = 65532;

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
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
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
        let result = match resolved.pattern {
            Pattern::LogShipper => log_shipper::plan(&mut builder, resolved),
            Pattern::MetricsAdapter => metrics_adapter::plan(&mut builder, resolved),
            Pattern::Ambassador => ambassador::plan(&mut builder, resolved),
            Pattern::GitClone => git_clone::plan(&mut builder, resolved),
        };
        match result {
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
    if !outcome.denied.is_empty() || builder.plan.patterns.is_empty() {
        return outcome;
    }
    builder.finish(&outcome.already);
    outcome.plan = builder.plan;
    outcome
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

/// A plan under construction, with the names and ports already taken in the pod.
pub(crate) struct Builder<'p> {
    pod: &'p Pod<'p>,
    prefix: &'p str,
    containers: BTreeSet<String>,
    volumes: BTreeSet<String>,
    /// Container ports in use in the pod's network namespace, with who uses them.
    ports: BTreeMap<u16, String>,
    /// Names, ports and annotations taken since the pod was read, newest last, so that a
    /// failed pattern can give back what it took.
    taken: Vec<Taken>,
    pub plan: Plan,
}

/// Something a pattern claimed in the builder.
enum Taken {
    Container(String),
    Volume(String),
    Port(u16),
    Annotation(String),
}

/// Where the builder stood before a pattern: see [`Builder::rollback`].
pub(crate) struct Checkpoint {
    taken: usize,
    init_containers: usize,
    containers: usize,
    volumes: usize,
    mounts: usize,
}

impl<'p> Builder<'p> {
    fn new(pod: &'p Pod<'p>, prefix: &'p str) -> Self {
        let mut ports = BTreeMap::new();
        for container in pod
            .spec
            .containers
            .iter()
            .chain(pod.spec.init_containers.iter().flatten())
        {
            for port in container.ports.iter().flatten() {
                if let Ok(number) = u16::try_from(port.container_port) {
                    ports.insert(number, container.name.to_string());
                }
            }
        }
        Builder {
            pod,
            prefix,
            containers: pod.container_names().map(str::to_string).collect(),
            volumes: pod.volume_names().map(str::to_string).collect(),
            ports,
            taken: Vec::new(),
            plan: Plan::default(),
        }
    }

    fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            taken: self.taken.len(),
            init_containers: self.plan.init_containers.len(),
            containers: self.plan.containers.len(),
            volumes: self.plan.volumes.len(),
            mounts: self.plan.mounts.len(),
        }
    }

    /// Undoes everything since `checkpoint`.
    fn rollback(&mut self, checkpoint: Checkpoint) {
        for taken in self.taken.drain(checkpoint.taken..) {
            match taken {
                Taken::Container(name) => self.containers.remove(&name),
                Taken::Volume(name) => self.volumes.remove(&name),
                Taken::Port(port) => self.ports.remove(&port).is_some(),
                Taken::Annotation(key) => self.plan.annotations.remove(&key).is_some(),
            };
        }
        self.plan
            .init_containers
            .truncate(checkpoint.init_containers);
        self.plan.containers.truncate(checkpoint.containers);
        self.plan.volumes.truncate(checkpoint.volumes);
        self.plan.mounts.truncate(checkpoint.mounts);
    }

    /// `base`, or `base-2`, `base-3`… if the pod already has a container of that name.
    pub fn container_name(&mut self, base: &str) -> String {
        let name = unique(&mut self.containers, base);
        self.taken.push(Taken::Container(name.clone()));
        name
    }

    pub fn volume_name(&mut self, base: &str) -> String {
        let name = unique(&mut self.volumes, base);
        self.taken.push(Taken::Volume(name.clone()));
        name
    }

    /// Claims `port` in the pod's network namespace for `container`.
    pub fn claim_port(
        &mut self,
        port: u16,
        container: &str,
        resolved: &Resolved,
        option: &str,
    ) -> Result<(), Invalid> {
        if let Some(user) = self.ports.get(&port) {
            return Err(conflict(
                resolved,
                self.prefix,
                option,
                format!("is already used by container {user} of this pod"),
                "a port no other container of the pod uses",
            ));
        }
        self.ports.insert(port, container.to_string());
        self.taken.push(Taken::Port(port));
        Ok(())
    }

    /// A port no container uses, `preferred` or the next free one, claimed for
    /// `container`. A pod could declare every unprivileged port: then it is refused.
    pub fn free_port(
        &mut self,
        preferred: u16,
        container: &str,
        resolved: &Resolved,
    ) -> Result<u16, Invalid> {
        let Some(port) = (preferred..=u16::MAX)
            .chain(1024..preferred)
            .find(|p| !self.ports.contains_key(p))
        else {
            return Err(Invalid {
                source: Source::Pod {
                    key: format!("{}/{}", self.prefix, resolved.pattern),
                },
                value: resolved.profile_name.clone(),
                problem: format!(
                    "needs a free port for container {container}, and the pod declares every port from 1024 to 65535"
                )
                .into(),
                accepted: "a pod that leaves a port free".into(),
                reason: Reason::Conflict,
                pattern: Some(resolved.pattern),
            });
        };
        self.ports.insert(port, container.to_string());
        self.taken.push(Taken::Port(port));
        Ok(port)
    }

    pub fn add_volume(&mut self, volume: Volume) {
        self.plan.volumes.push(volume);
    }

    /// A one-time init container, run before the pod's own.
    pub fn add_init(&mut self, container: Container) {
        self.plan.init_containers.push(container);
    }

    /// A sidecar: a native one (init container with `restartPolicy: Always`) or a classic
    /// one (appended to `containers`).
    pub fn add_sidecar(&mut self, mut container: Container, mode: SidecarMode) {
        match mode {
            SidecarMode::Native => {
                container.restart_policy = Some("Always".into());
                self.plan.init_containers.push(container);
            }
            SidecarMode::Classic => {
                // Probes other than readiness would restart a classic sidecar needlessly,
                // and a startup probe cannot hold the app back: keep readiness only.
                container.startup_probe = None;
                self.plan.containers.push(container);
            }
        }
    }

    /// Mounts `volume` at `path` in the app containers the `containers` option names (all
    /// by default), refusing a path a container already mounts something at.
    pub fn mount_in_apps(
        &mut self,
        resolved: &Resolved,
        mount: VolumeMount,
        path_option: &str,
    ) -> Result<(), Invalid> {
        let targets = self.app_containers(resolved)?;
        for index in targets {
            let container = &self.pod.spec.containers[index];
            let taken = container
                .volume_mounts
                .iter()
                .flatten()
                .any(|m| m.mount_path == mount.mount_path)
                || self
                    .plan
                    .mounts
                    .iter()
                    .any(|(i, m)| *i == index && m.mount_path == mount.mount_path);
            if taken {
                return Err(conflict(
                    resolved,
                    self.prefix,
                    path_option,
                    format!(
                        "is a path container {} already mounts a volume at",
                        container.name
                    ),
                    "a path no volume is mounted at in that container",
                ));
            }
            self.plan.mounts.push((index, mount.clone()));
        }
        Ok(())
    }

    /// Indices of the app containers named by the `containers` option (all by default).
    fn app_containers(&self, resolved: &Resolved) -> Result<Vec<usize>, Invalid> {
        let containers = &self.pod.spec.containers;
        let Some(names) = resolved.option("containers") else {
            return Ok((0..containers.len()).collect());
        };
        names
            .split(',')
            .map(str::trim)
            .map(|name| {
                containers
                    .iter()
                    .position(|c| c.name == name)
                    .ok_or_else(|| Invalid {
                        source: resolved.source(self.prefix, "containers"),
                        value: names.to_string(),
                        problem: format!(
                            "names {name:?}, which is not an app container of this pod"
                        )
                        .into(),
                        accepted: containers
                            .iter()
                            .map(|c| &*c.name)
                            .collect::<Vec<_>>()
                            .join(", ")
                            .into(),
                        reason: Reason::InvalidValue,
                        pattern: Some(resolved.pattern),
                    })
            })
            .collect()
    }

    /// Sets an annotation unless the pod (or an earlier pattern) has set it.
    pub fn annotate_if_unset(&mut self, key: &str, value: impl Into<String>) {
        if self.pod.annotation(key).is_none() && !self.plan.annotations.contains_key(key) {
            self.plan.annotations.insert(key.to_string(), value.into());
            self.taken.push(Taken::Annotation(key.to_string()));
        }
    }

    /// The annotations every mutated pod gets.
    fn finish(&mut self, already: &[Pattern]) {
        let mut injected: Vec<Pattern> = already.to_vec();
        injected.extend(&self.plan.patterns);
        injected.sort_by_key(|p| Pattern::ALL.iter().position(|q| q == p));
        injected.dedup();
        let names: Vec<&str> = injected.iter().map(|p| p.name()).collect();
        self.plan.annotations.insert(
            format!("{}/{}", self.prefix, annotations::INJECTED),
            names.join(","),
        );
        // `kubectl logs` and `exec` pick this container when none is named; without it
        // they would complain about the injected ones.
        if let Some(first) = self.pod.spec.containers.first() {
            let name = first.name.to_string();
            self.annotate_if_unset(DEFAULT_CONTAINER, name);
        }
    }
}

fn unique(taken: &mut BTreeSet<String>, base: &str) -> String {
    let name = std::iter::once(base.to_string())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|candidate| !taken.contains(candidate))
        .expect("an unused name exists");
    taken.insert(name.clone());
    name
}

/// The Pod Security Standard "restricted" context, with a read-only root filesystem.
pub fn restricted(user: i64, group: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(group),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The container a profile describes, named `name`, with `{{option}}` placeholders filled
/// from the resolved options and `computed` values.
pub fn render(name: String, resolved: &Resolved, computed: &[(&str, &str)]) -> Container {
    let profile = &resolved.profile.profile;
    let fill = |text: &String| fill(text, resolved, computed);
    let user = profile.run_as_user.unwrap_or(DEFAULT_USER);
    Container {
        name,
        image: Some(profile.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: (!profile.command.is_empty()).then(|| profile.command.iter().map(fill).collect()),
        args: (!profile.args.is_empty()).then(|| profile.args.iter().map(fill).collect()),
        env: (!profile.env.is_empty()).then(|| {
            profile
                .env
                .iter()
                .map(|env| EnvVar {
                    value: env.value.as_ref().map(fill),
                    ..env.clone()
                })
                .collect()
        }),
        ports: (!profile.ports.is_empty()).then(|| profile.ports.clone()),
        resources: Some(profile.resources.clone()),
        security_context: Some(restricted(user, profile.run_as_group.unwrap_or(user))),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

fn fill(text: &str, resolved: &Resolved, computed: &[(&str, &str)]) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // Placeholders were checked when the profile was loaded: every `{{` is closed.
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = computed
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .or_else(|| resolved.option(name))
            .unwrap_or_default();
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A named container port.
pub fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// An emptyDir volume.
pub fn empty_dir(name: String) -> Volume {
    Volume {
        name,
        empty_dir: Some(Default::default()),
        ..Default::default()
    }
}

pub fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// An option's value that clashes with what the pod already has.
fn conflict(
    resolved: &Resolved,
    prefix: &str,
    option: &str,
    problem: String,
    accepted: &str,
) -> Invalid {
    Invalid {
        source: resolved.source(prefix, option),
        value: resolved.option(option).unwrap_or_default().to_string(),
        problem: problem.into(),
        accepted: accepted.into(),
        reason: Reason::Conflict,
        pattern: Some(resolved.pattern),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{builtin, snapshot::Snapshot};

    /// A resolved log shipper, for the builder's bookkeeping.
    fn resolved() -> Resolved {
        let (snapshot, _) = Snapshot::build("tandem.dev", builtin::policies(), None);
        let pod = Pod::parse(
            r#"{"metadata": {"annotations": {"tandem.dev/log-shipper": "true"}},
                "spec": {"containers": [{"name": "web"}]}}"#,
        )
        .unwrap();
        let mut evaluation = crate::engine::evaluate(&snapshot, "default", &pod);
        evaluation.resolution.patterns.remove(0)
    }

    #[test]
    fn a_rolled_back_pattern_gives_its_names_and_ports_back() {
        let pod = Pod::parse(r#"{"spec": {"containers": [{"name": "web"}]}}"#).unwrap();
        let mut builder = Builder::new(&pod, "tandem.dev");
        assert_eq!(builder.container_name("tandem-x"), "tandem-x");
        let checkpoint = builder.checkpoint();
        assert_eq!(builder.container_name("tandem-x"), "tandem-x-2");
        assert_eq!(builder.volume_name("tandem-v"), "tandem-v");
        assert_eq!(builder.free_port(9000, "tandem-x-2", &resolved()), Ok(9000));
        builder.annotate_if_unset("a/b", "c");
        builder.add_volume(empty_dir("tandem-v".into()));
        builder.rollback(checkpoint);
        assert_eq!(builder.container_name("tandem-x"), "tandem-x-2");
        assert_eq!(builder.volume_name("tandem-v"), "tandem-v");
        assert_eq!(builder.free_port(9000, "y", &resolved()), Ok(9000));
        assert!(builder.plan.annotations.is_empty());
        assert!(builder.plan.volumes.is_empty());
    }
}

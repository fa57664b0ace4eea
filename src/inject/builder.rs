//! A plan under construction: the names, ports and annotations a pod already has, what each
//! pattern claims on top of them, and how a failed pattern gives its claims back.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Container, Volume, VolumeMount};

use super::Plan;
use crate::{
    annotations::{self, DEFAULT_CONTAINER},
    invalid::{Invalid, Reason, Source},
    pattern::Pattern,
    pod::Pod,
    policy::{model::types::SidecarMode, resolve::Resolved},
};

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
    /// Planning again what a previous review added (see `cover`): an app container that
    /// already mounts something at a pattern's path is passed over, not refused.
    covering: bool,
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
    pub(super) fn new(pod: &'p Pod<'p>, prefix: &'p str) -> Self {
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
            covering: false,
            plan: Plan::default(),
        }
    }

    /// A builder that plans what a previous review added, for the mounts it owes to app
    /// containers that do not have them yet.
    pub(super) fn covering(pod: &'p Pod<'p>, prefix: &'p str) -> Self {
        Builder {
            covering: true,
            ..Builder::new(pod, prefix)
        }
    }

    pub(super) fn checkpoint(&self) -> Checkpoint {
        Checkpoint {
            taken: self.taken.len(),
            init_containers: self.plan.init_containers.len(),
            containers: self.plan.containers.len(),
            volumes: self.plan.volumes.len(),
            mounts: self.plan.mounts.len(),
        }
    }

    /// Undoes everything since `checkpoint`.
    pub(super) fn rollback(&mut self, checkpoint: Checkpoint) {
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
    /// by default), refusing a path a container already mounts something at (passing it
    /// over when covering).
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
            if taken && self.covering {
                continue;
            }
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
    pub(super) fn finish(&mut self, already: &[Pattern]) {
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
        self.mount_service_account_token();
    }

    /// Gives the injected containers the service account token mount the API server's
    /// ServiceAccount admission plugin gave the app containers before this review, as that
    /// plugin would give it to them after it: it runs again once a webhook has changed the
    /// pod, mounts the token into every container without one, and a pod it changes sends
    /// the API server back to every webhook with `reinvocationPolicy: IfNeeded`. Mounted
    /// here, the stored pod is the same and tandem is called once per pod instead of twice.
    /// Nothing is mounted when the pod has no token volume (automounting is off).
    fn mount_service_account_token(&mut self) {
        let Some(volume) = self
            .pod
            .spec
            .volumes
            .iter()
            .flatten()
            .map(|v| &*v.name)
            .find(|name| name.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX))
        else {
            return;
        };
        // The plugin's own mount, on an app container: the token is automounted.
        let mounted = self.pod.spec.containers.iter().any(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == volume && m.mount_path == SERVICE_ACCOUNT_TOKEN_PATH)
        });
        if !mounted {
            return;
        }
        let token = VolumeMount {
            name: volume.to_string(),
            mount_path: SERVICE_ACCOUNT_TOKEN_PATH.to_string(),
            read_only: Some(true),
            ..VolumeMount::default()
        };
        for container in self
            .plan
            .init_containers
            .iter_mut()
            .chain(self.plan.containers.iter_mut())
        {
            let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
            if !mounts
                .iter()
                .any(|m| m.mount_path == SERVICE_ACCOUNT_TOKEN_PATH)
            {
                mounts.push(token.clone());
            }
        }
    }
}

/// Where the ServiceAccount admission plugin mounts the token, and the prefix of the
/// projected volume it adds (`kube-api-access-<random>`).
const SERVICE_ACCOUNT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";

fn unique(taken: &mut BTreeSet<String>, base: &str) -> String {
    let name = std::iter::once(base.to_string())
        .chain((2..).map(|n| format!("{base}-{n}")))
        .find(|candidate| !taken.contains(candidate))
        .expect("an unused name exists");
    taken.insert(name.clone());
    name
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
    use crate::inject::empty_dir;
    use crate::policy::{snapshot::Snapshot, source::builtin};

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

    /// The token mounts of the injected containers of a log-shipper pod whose app
    /// container mounts `app_mounts`, with `volumes` in the pod.
    fn token_mounts(volumes: &str, app_mounts: &str) -> Vec<Vec<String>> {
        let (snapshot, _) = Snapshot::build("tandem.dev", builtin::policies(), None);
        let json = format!(
            r#"{{"metadata": {{"annotations": {{"tandem.dev/log-shipper": "true"}}}},
                "spec": {{"volumes": {volumes},
                          "containers": [{{"name": "web", "volumeMounts": {app_mounts}}}]}}}}"#
        );
        let pod = Pod::parse(&json).unwrap();
        let evaluation = crate::engine::evaluate(&snapshot, "default", &pod);
        let outcome = crate::inject::plan(&pod, "tandem.dev", &evaluation.resolution);
        assert!(!outcome.plan.init_containers.is_empty());
        outcome
            .plan
            .init_containers
            .iter()
            .map(|c| {
                c.volume_mounts
                    .iter()
                    .flatten()
                    .filter(|m| m.mount_path == SERVICE_ACCOUNT_TOKEN_PATH)
                    .map(|m| format!("{} ro={:?}", m.name, m.read_only))
                    .collect()
            })
            .collect()
    }

    #[test]
    fn injected_containers_get_the_token_mount_the_app_got_from_the_api_server() {
        let token = r#"[{"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]"#;
        let volume = r#"[{"name": "kube-api-access-x7k2p", "projected": {"sources": []}}]"#;
        assert_eq!(
            token_mounts(volume, token),
            vec![vec!["kube-api-access-x7k2p ro=Some(true)".to_string()]]
        );
        // Automounting off: no token volume, nothing mounted.
        assert_eq!(token_mounts("[]", "[]"), vec![Vec::<String>::new()]);
        // A volume of that name the app does not mount at the token path is not the
        // plugin's: nothing mounted.
        let elsewhere = r#"[{"name": "kube-api-access-x7k2p", "mountPath": "/token"}]"#;
        assert_eq!(token_mounts(volume, elsewhere), vec![Vec::<String>::new()]);
    }
}

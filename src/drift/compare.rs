//! What a pod carries of tandem's against what today's policies would inject: containers
//! (where they sit, image, command, args, env, resources, ports, probes, security
//! context, mounts), volumes, and the mounts added to app containers. Pure functions of
//! data.
//!
//! The carried side comes from a pod the API server stored, so both sides are brought to
//! the same form before they are compared: the defaults the API server fills in (a probe's
//! periods, a port's protocol, a Secret volume's `defaultMode`, an env `fieldRef`'s
//! `apiVersion`, requests copied from limits) and quantities in any notation (`0.5` is
//! `500m`). Resources the pod carries beyond those tandem sets (a LimitRange's defaults)
//! and mounts of volumes that are not tandem's (the service account token the API server
//! mounts into every container) are not compared, nor the app containers another webhook
//! added after the pod was created (tandem mounts its volumes into them on reinvocation).

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt,
};

use k8s_openapi::{
    api::core::v1::{Container, EnvVar, Probe, ResourceRequirements, Volume, VolumeMount},
    apimachinery::pkg::api::resource::Quantity,
};
use serde::Serialize;
use serde_json::Value;

use crate::inject::Plan;

/// Injected names start with this (product contract): it tells tandem's containers and
/// volumes from those other admission plugins add to a stored pod.
pub const INJECTED_PREFIX: &str = "tandem-";

/// Where an injected container sits in the pod.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Place {
    /// An init container that runs once (a one-time git clone).
    Init,
    /// A native sidecar: an init container with `restartPolicy: Always`.
    Sidecar,
    /// A classic sidecar: an app container (`sidecarMode: classic`).
    Classic,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Place::Init => "init container",
            Place::Sidecar => "native sidecar",
            Place::Classic => "classic sidecar",
        })
    }
}

/// tandem's part of a pod: its containers, volumes, and the mounts it added to app
/// containers (by the app container's name).
#[derive(Clone, Debug, Default)]
pub struct Injected {
    pub containers: BTreeMap<String, (Place, Container)>,
    pub volumes: BTreeMap<String, Volume>,
    pub mounts: BTreeMap<String, Vec<VolumeMount>>,
}

impl Injected {
    /// What a plan adds to the pod whose app containers are `apps` (in order).
    pub fn planned(plan: &Plan, apps: &[String]) -> Injected {
        let mut injected = Injected::default();
        for container in &plan.init_containers {
            let place = if container.restart_policy.as_deref() == Some("Always") {
                Place::Sidecar
            } else {
                Place::Init
            };
            injected
                .containers
                .insert(container.name.clone(), (place, container.clone()));
        }
        for container in &plan.containers {
            injected
                .containers
                .insert(container.name.clone(), (Place::Classic, container.clone()));
        }
        for volume in &plan.volumes {
            injected.volumes.insert(volume.name.clone(), volume.clone());
        }
        for (index, mount) in &plan.mounts {
            if let Some(app) = apps.get(*index) {
                injected
                    .mounts
                    .entry(app.clone())
                    .or_default()
                    .push(mount.clone());
            }
        }
        injected
    }

    /// What tandem added to a stored pod: the containers and volumes with tandem's prefix
    /// that the pod as it was before mutation (`basis`) did not have, and the app
    /// containers' mounts of those volumes.
    pub fn carried(pod: &k8s_openapi::api::core::v1::PodSpec, basis: &Names) -> Injected {
        let ours = |name: &str, existing: &BTreeSet<String>| {
            name.starts_with(INJECTED_PREFIX) && !existing.contains(name)
        };
        let mut injected = Injected::default();
        for container in pod.init_containers.iter().flatten() {
            if ours(&container.name, &basis.containers) {
                let place = if container.restart_policy.as_deref() == Some("Always") {
                    Place::Sidecar
                } else {
                    Place::Init
                };
                injected
                    .containers
                    .insert(container.name.clone(), (place, container.clone()));
            }
        }
        for container in &pod.containers {
            if ours(&container.name, &basis.containers) {
                injected
                    .containers
                    .insert(container.name.clone(), (Place::Classic, container.clone()));
            }
        }
        for volume in pod.volumes.iter().flatten() {
            if ours(&volume.name, &basis.volumes) {
                injected.volumes.insert(volume.name.clone(), volume.clone());
            }
        }
        // Only the app containers the pod was created with: one another webhook added
        // later gets tandem's mounts on reinvocation, and today's plan for the pod as it
        // was created cannot know it.
        for container in &pod.containers {
            if !basis.containers.contains(&container.name) {
                continue;
            }
            let mounts: Vec<VolumeMount> = container
                .volume_mounts
                .iter()
                .flatten()
                .filter(|m| injected.volumes.contains_key(&m.name))
                .cloned()
                .collect();
            if !mounts.is_empty() {
                injected.mounts.insert(container.name.clone(), mounts);
            }
        }
        injected
    }
}

/// The container and volume names of a pod as it was before mutation.
#[derive(Clone, Debug, Default)]
pub struct Names {
    pub containers: BTreeSet<String>,
    pub volumes: BTreeSet<String>,
}

/// One thing that differs between what a pod carries and what would be injected today.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Difference {
    /// `container tandem-log-shipper`, `volume tandem-logs`, `mounts of container web`.
    pub subject: String,
    /// `image`, `args[3]`, `env LOG_LEVEL`, `resources.limits.memory`…; empty when the
    /// subject itself is missing on one side.
    pub field: String,
    /// What the pod carries; `None`: nothing.
    pub carried: Option<String>,
    /// What today's policies would inject; `None`: nothing.
    pub expected: Option<String>,
}

impl fmt::Display for Difference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let show = |value: &Option<String>| match value {
            Some(value) => shorten(value),
            None => "(none)".into(),
        };
        match (self.field.as_str(), &self.carried, &self.expected) {
            ("", None, Some(expected)) => write!(
                f,
                "{}: not carried; today's policies add it ({})",
                self.subject,
                shorten(expected)
            ),
            ("", Some(carried), None) => write!(
                f,
                "{}: carried ({}); today's policies do not add it",
                self.subject,
                shorten(carried)
            ),
            (field, carried, expected) => write!(
                f,
                "{} {field}: {} → {}",
                self.subject,
                show(carried),
                show(expected)
            ),
        }
    }
}

/// Long values (an ambassador's inline Envoy configuration) cut for the table; `-o json`
/// has them whole.
fn shorten(value: &str) -> String {
    const MAX: usize = 100;
    let value = value.replace('\n', "\\n");
    match value.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &value[..cut]),
        None => value,
    }
}

/// Every difference between what a pod carries and what would be injected, in a stable
/// order.
pub fn differences(carried: &Injected, expected: &Injected) -> Vec<Difference> {
    let mut out = Vec::new();
    let names: BTreeSet<&String> = carried
        .containers
        .keys()
        .chain(expected.containers.keys())
        .collect();
    for name in names {
        let subject = format!("container {name}");
        match (carried.containers.get(name), expected.containers.get(name)) {
            (Some((place, c)), None) => out.push(whole(subject, Some(describe(*place, c)), None)),
            (None, Some((place, c))) => out.push(whole(subject, None, Some(describe(*place, c)))),
            (Some(have), Some(want)) => {
                container(&subject, have, want, carried, expected, &mut out)
            }
            (None, None) => {}
        }
    }
    let volumes: BTreeSet<&String> = carried
        .volumes
        .keys()
        .chain(expected.volumes.keys())
        .collect();
    for name in volumes {
        let subject = format!("volume {name}");
        let source = |v: &Volume| normalized_volume(v).to_string();
        match (carried.volumes.get(name), expected.volumes.get(name)) {
            (Some(have), None) => out.push(whole(subject, Some(source(have)), None)),
            (None, Some(want)) => out.push(whole(subject, None, Some(source(want)))),
            (Some(have), Some(want)) => {
                if normalized_volume(have) != normalized_volume(want) {
                    out.push(field(
                        subject,
                        "source",
                        Some(source(have)),
                        Some(source(want)),
                    ));
                }
            }
            (None, None) => {}
        }
    }
    let apps: BTreeSet<&String> = carried
        .mounts
        .keys()
        .chain(expected.mounts.keys())
        .collect();
    for app in apps {
        let have = mount_set(carried.mounts.get(app).into_iter().flatten(), &|_| true);
        let want = mount_set(expected.mounts.get(app).into_iter().flatten(), &|_| true);
        mounts(
            &format!("mounts of container {app}"),
            &have,
            &want,
            &mut out,
        );
    }
    out
}

fn whole(subject: String, carried: Option<String>, expected: Option<String>) -> Difference {
    Difference {
        subject,
        field: String::new(),
        carried,
        expected,
    }
}

fn field(
    subject: String,
    field: &str,
    carried: Option<String>,
    expected: Option<String>,
) -> Difference {
    Difference {
        subject,
        field: field.to_string(),
        carried,
        expected,
    }
}

fn describe(place: Place, container: &Container) -> String {
    format!(
        "{place}, image {}",
        container.image.as_deref().unwrap_or("(none)")
    )
}

fn container(
    subject: &str,
    (have_place, have): &(Place, Container),
    (want_place, want): &(Place, Container),
    carried: &Injected,
    expected: &Injected,
    out: &mut Vec<Difference>,
) {
    let mut differ = |name: &str, carried: Option<String>, expected: Option<String>| {
        out.push(field(subject.to_string(), name, carried, expected));
    };
    if have_place != want_place {
        differ(
            "placement",
            Some(have_place.to_string()),
            Some(want_place.to_string()),
        );
    }
    if have.image != want.image {
        differ("image", have.image.clone(), want.image.clone());
    }
    if want.image_pull_policy.is_some() && have.image_pull_policy != want.image_pull_policy {
        differ(
            "imagePullPolicy",
            have.image_pull_policy.clone(),
            want.image_pull_policy.clone(),
        );
    }
    for (name, have_list, want_list) in [
        ("command", &have.command, &want.command),
        ("args", &have.args, &want.args),
    ] {
        list(
            name,
            have_list.as_deref().unwrap_or_default(),
            want_list.as_deref().unwrap_or_default(),
            &mut differ,
        );
    }
    env(
        have.env.as_deref().unwrap_or_default(),
        want.env.as_deref().unwrap_or_default(),
        &mut differ,
    );
    resources(
        have.resources.as_ref(),
        want.resources.as_ref(),
        &mut differ,
    );
    let ports = |c: &Container| -> BTreeMap<String, String> {
        c.ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name
                        .clone()
                        .unwrap_or_else(|| p.container_port.to_string()),
                    format!(
                        "{}/{}",
                        p.container_port,
                        p.protocol.as_deref().unwrap_or("TCP")
                    ),
                )
            })
            .collect()
    };
    keyed("port", &ports(have), &ports(want), &mut differ);
    for (name, have_probe, want_probe) in [
        ("startupProbe", &have.startup_probe, &want.startup_probe),
        (
            "readinessProbe",
            &have.readiness_probe,
            &want.readiness_probe,
        ),
        ("livenessProbe", &have.liveness_probe, &want.liveness_probe),
    ] {
        let (h, w) = (
            have_probe.as_ref().map(probe),
            want_probe.as_ref().map(probe),
        );
        if h != w {
            differ(name, h.map(|v| v.to_string()), w.map(|v| v.to_string()));
        }
    }
    let context = |c: &Container| {
        c.security_context
            .as_ref()
            .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
    };
    if context(have) != context(want) {
        differ(
            "securityContext",
            context(have).map(|v| v.to_string()),
            context(want).map(|v| v.to_string()),
        );
    }
    // Only mounts of tandem's volumes: the API server mounts the service account's token
    // into every container, tandem's included.
    let tandem_volume =
        |name: &str| carried.volumes.contains_key(name) || expected.volumes.contains_key(name);
    let have_mounts = mount_set(have.volume_mounts.iter().flatten(), &tandem_volume);
    let want_mounts = mount_set(want.volume_mounts.iter().flatten(), &tandem_volume);
    mounts(subject, &have_mounts, &want_mounts, out);
}

/// Element by element, at most a few shown (the rest counted).
fn list(
    name: &str,
    have: &[String],
    want: &[String],
    differ: &mut impl FnMut(&str, Option<String>, Option<String>),
) {
    const SHOWN: usize = 3;
    let mut differing = (0..have.len().max(want.len())).filter(|&i| have.get(i) != want.get(i));
    for i in differing.by_ref().take(SHOWN) {
        differ(
            &format!("{name}[{i}]"),
            have.get(i).cloned(),
            want.get(i).cloned(),
        );
    }
    let more = differing.count();
    if more > 0 {
        differ(
            &format!("{name} (and {more} more elements)"),
            Some(format!("{} elements", have.len())),
            Some(format!("{} elements", want.len())),
        );
    }
}

fn keyed(
    name: &str,
    have: &BTreeMap<String, String>,
    want: &BTreeMap<String, String>,
    differ: &mut impl FnMut(&str, Option<String>, Option<String>),
) {
    let keys: BTreeSet<&String> = have.keys().chain(want.keys()).collect();
    for key in keys {
        if have.get(key) != want.get(key) {
            differ(
                &format!("{name} {key}"),
                have.get(key).cloned(),
                want.get(key).cloned(),
            );
        }
    }
}

fn env(
    have: &[EnvVar],
    want: &[EnvVar],
    differ: &mut impl FnMut(&str, Option<String>, Option<String>),
) {
    // Values, not text: JSON objects compare by their keys whatever their order.
    let map = |vars: &[EnvVar]| -> BTreeMap<String, Value> {
        vars.iter()
            .map(|var| {
                let value = match (&var.value, &var.value_from) {
                    (_, Some(from)) => {
                        let mut from = serde_json::to_value(from).unwrap_or(Value::Null);
                        // The API server's default.
                        if let Some(field_ref) =
                            from.get_mut("fieldRef").and_then(Value::as_object_mut)
                        {
                            field_ref.entry("apiVersion").or_insert_with(|| "v1".into());
                        }
                        serde_json::json!({ "valueFrom": from })
                    }
                    (Some(value), None) => Value::from(value.as_str()),
                    (None, None) => Value::from(""),
                };
                (var.name.clone(), value)
            })
            .collect()
    };
    let (have, want) = (map(have), map(want));
    let keys: BTreeSet<&String> = have.keys().chain(want.keys()).collect();
    for key in keys {
        if have.get(key) != want.get(key) {
            let show = |v: Option<&Value>| {
                v.map(|v| match v {
                    Value::String(text) => text.clone(),
                    other => other.to_string(),
                })
            };
            differ(
                &format!("env {key}"),
                show(have.get(key)),
                show(want.get(key)),
            );
        }
    }
}

/// Requests and limits tandem sets, compared as quantities. A limit without a request is
/// also a request of the same amount (the API server's default).
fn resources(
    have: Option<&ResourceRequirements>,
    want: Option<&ResourceRequirements>,
    differ: &mut impl FnMut(&str, Option<String>, Option<String>),
) {
    let table = |r: Option<&ResourceRequirements>| -> BTreeMap<String, Quantity> {
        let mut table = BTreeMap::new();
        if let Some(r) = r {
            for (key, value) in r.limits.iter().flatten() {
                table.insert(format!("limits.{key}"), value.clone());
                table.insert(format!("requests.{key}"), value.clone());
            }
            for (key, value) in r.requests.iter().flatten() {
                table.insert(format!("requests.{key}"), value.clone());
            }
        }
        table
    };
    let (have, want) = (table(have), table(want));
    for (key, wanted) in &want {
        let held = have.get(key);
        if !held.is_some_and(|held| same_quantity(&held.0, &wanted.0)) {
            differ(
                &format!("resources.{key}"),
                held.map(|q| q.0.clone()),
                Some(wanted.0.clone()),
            );
        }
    }
}

/// Whether two Kubernetes quantities are the same amount (`0.5` and `500m`, `1Gi` and
/// `1024Mi`); text that is not a quantity is compared as text.
pub fn same_quantity(a: &str, b: &str) -> bool {
    match (quantity(a), quantity(b)) {
        (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
        _ => a == b,
    }
}

/// A quantity's amount: a decimal number with a binary (`Ki`…`Ei`) or decimal (`n`…`E`)
/// suffix, or an exponent (`1e3`).
fn quantity(text: &str) -> Option<f64> {
    let text = text.trim();
    let end = text
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | '+' | '-')))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(end);
    let number: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 2f64.powi(10),
        "Mi" => 2f64.powi(20),
        "Gi" => 2f64.powi(30),
        "Ti" => 2f64.powi(40),
        "Pi" => 2f64.powi(50),
        "Ei" => 2f64.powi(60),
        exponent if exponent.starts_with(['e', 'E']) => 10f64.powi(exponent[1..].parse().ok()?),
        _ => return None,
    };
    Some(number * factor)
}

/// A probe with the API server's defaults filled in.
fn probe(probe: &Probe) -> Value {
    let mut value = serde_json::to_value(probe).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        for (key, default) in [
            ("timeoutSeconds", 1),
            ("periodSeconds", 10),
            ("successThreshold", 1),
            ("failureThreshold", 3),
        ] {
            object.entry(key).or_insert_with(|| default.into());
        }
        if let Some(get) = object.get_mut("httpGet").and_then(Value::as_object_mut) {
            get.entry("scheme").or_insert_with(|| "HTTP".into());
        }
    }
    value
}

/// A volume's source with the API server's defaults filled in, without its name.
fn normalized_volume(volume: &Volume) -> Value {
    let mut value = serde_json::to_value(volume).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.remove("name");
        for source in ["secret", "configMap", "projected", "downwardAPI"] {
            if let Some(source) = object.get_mut(source).and_then(Value::as_object_mut) {
                source.entry("defaultMode").or_insert_with(|| 0o644.into());
            }
        }
    }
    value
}

/// Mounts as `volume at path (read-only)` lines, of the volumes `keep` accepts.
fn mount_set<'a>(
    mounts: impl Iterator<Item = &'a VolumeMount>,
    keep: &dyn Fn(&str) -> bool,
) -> BTreeSet<String> {
    mounts
        .filter(|m| keep(&m.name))
        .map(|m| {
            let mut line = format!("{} at {}", m.name, m.mount_path);
            if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
                line.push_str(&format!(" (subPath {sub})"));
            }
            line.push_str(if m.read_only == Some(true) {
                " read-only"
            } else {
                " read-write"
            });
            line
        })
        .collect()
}

fn mounts(
    subject: &str,
    have: &BTreeSet<String>,
    want: &BTreeSet<String>,
    out: &mut Vec<Difference>,
) {
    for gone in have.difference(want) {
        out.push(field(
            subject.to_string(),
            "mount",
            Some(gone.clone()),
            None,
        ));
    }
    for new in want.difference(have) {
        out.push(field(subject.to_string(), "mount", None, Some(new.clone())));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_amount() {
        for (a, b) in [
            ("500m", "0.5"),
            ("1Gi", "1024Mi"),
            ("1k", "1000"),
            ("1e3", "1k"),
            ("64Mi", "67108864"),
        ] {
            assert!(same_quantity(a, b), "{a} == {b}");
        }
        for (a, b) in [("64Mi", "128Mi"), ("1M", "1Mi"), ("20m", "20"), ("x", "y")] {
            assert!(!same_quantity(a, b), "{a} != {b}");
        }
        assert!(same_quantity("odd", "odd"));
    }

    fn container(json: Value) -> Container {
        serde_json::from_value(json).unwrap()
    }

    fn injected(containers: Vec<(Place, Container)>, volumes: Vec<Value>) -> Injected {
        Injected {
            containers: containers
                .into_iter()
                .map(|(p, c)| (c.name.clone(), (p, c)))
                .collect(),
            volumes: volumes
                .into_iter()
                .map(|v| serde_json::from_value::<Volume>(v).unwrap())
                .map(|v| (v.name.clone(), v))
                .collect(),
            mounts: BTreeMap::new(),
        }
    }

    #[test]
    fn what_the_api_server_fills_in_is_no_difference() {
        let planned = container(serde_json::json!({
            "name": "tandem-x", "image": "a:1", "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "E", "value": ""}],
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "0.02"}},
            "ports": [{"name": "metrics", "containerPort": 9121}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 9121}},
            "volumeMounts": [{"name": "tandem-v", "mountPath": "/v", "readOnly": true}]
        }));
        let stored = container(serde_json::json!({
            "name": "tandem-x", "image": "a:1", "imagePullPolicy": "IfNotPresent",
            "env": [{"name": "POD", "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}}}, {"name": "E"}],
            "resources": {"limits": {"memory": "64Mi", "cpu": "1"}, "requests": {"cpu": "20m", "memory": "64Mi"}},
            "ports": [{"name": "metrics", "containerPort": 9121, "protocol": "TCP"}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 9121, "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3},
            "terminationMessagePath": "/dev/termination-log",
            "volumeMounts": [{"name": "tandem-v", "mountPath": "/v", "readOnly": true},
                             {"name": "kube-api-access-x", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}]
        }));
        let volume = serde_json::json!({"name": "tandem-v", "secret": {"secretName": "s"}});
        let mut stored_volume = volume.clone();
        stored_volume["secret"]["defaultMode"] = 420.into();
        let want = injected(vec![(Place::Sidecar, planned)], vec![volume]);
        let have = injected(vec![(Place::Sidecar, stored)], vec![stored_volume]);
        assert_eq!(differences(&have, &want), []);
    }

    #[test]
    fn differences_name_the_field_and_both_values() {
        let base = serde_json::json!({"name": "tandem-log-shipper", "image": "fluent-bit:4.2.4",
            "args": ["-i", "tail", "-p", "path=/var/log/app/*.log"],
            "resources": {"limits": {"memory": "64Mi"}, "requests": {"cpu": "20m", "memory": "32Mi"}}});
        let mut newer = base.clone();
        newer["image"] = "fluent-bit:4.2.5".into();
        newer["args"][3] = "path=/var/log/web/*.log".into();
        newer["resources"]["limits"]["memory"] = "128Mi".into();
        let have = injected(vec![(Place::Sidecar, container(base))], vec![]);
        let want = injected(
            vec![
                (Place::Classic, container(newer)),
                (
                    Place::Init,
                    container(
                        serde_json::json!({"name": "tandem-git-clone", "image": "git-sync:v4"}),
                    ),
                ),
            ],
            vec![],
        );
        let lines: Vec<String> = differences(&have, &want)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            lines,
            [
                "container tandem-git-clone: not carried; today's policies add it (init container, image git-sync:v4)",
                "container tandem-log-shipper placement: native sidecar → classic sidecar",
                "container tandem-log-shipper image: fluent-bit:4.2.4 → fluent-bit:4.2.5",
                "container tandem-log-shipper args[3]: path=/var/log/app/*.log → path=/var/log/web/*.log",
                "container tandem-log-shipper resources.limits.memory: 64Mi → 128Mi",
            ]
        );
    }
}

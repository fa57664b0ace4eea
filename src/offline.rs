//! `tandem inject` and `tandem explain`: the webhook's engine run over YAML files, on Pods
//! and on the pod templates of workloads, so a manifest can be mutated (or explained)
//! before it reaches a cluster.

use std::{collections::HashMap, io::Read, path::Path, process::ExitCode};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::Value;

use crate::{
    config::{ExplainArgs, InjectArgs, OutputFormat, PolicyArgs},
    engine::{self, Evaluation},
    inject::Plan,
    pattern::Pattern,
    pod::Pod,
    policy::{
        resolve::{Origin, Why},
        snapshot::{NamespaceInfo, Snapshot},
        source::{builtin, files},
    },
};

/// Where a pod spec sits in a document: the JSON pointer of its object (`""` for a Pod,
/// `/spec/template` for a Deployment…), and a name for messages.
struct Site {
    pointer: String,
    describe: String,
    namespace: String,
}

/// The pod objects in `doc`, recursing into `List`s.
fn sites(doc: &Value, pointer: &str, default_namespace: &str, out: &mut Vec<Site>) {
    let kind = doc.get("kind").and_then(Value::as_str).unwrap_or_default();
    let metadata = doc.get("metadata");
    let name = metadata
        .and_then(|m| m.get("name").or_else(|| m.get("generateName")))
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>");
    let namespace = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_string();
    let describe = format!("{kind} {namespace}/{name}");
    let template = match kind {
        "Pod" => Some(""),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some("/spec/template"),
        "PodTemplate" => Some("/template"),
        "CronJob" => Some("/spec/jobTemplate/spec/template"),
        _ => None,
    };
    if let Some(path) = template {
        if doc.pointer(path).is_some() {
            out.push(Site {
                pointer: format!("{pointer}{path}"),
                describe: if path.is_empty() {
                    describe
                } else {
                    format!("{describe} (pod template)")
                },
                namespace,
            });
        }
    } else if kind.ends_with("List") {
        for (i, item) in doc
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            sites(
                item,
                &format!("{pointer}/items/{i}"),
                &namespace_of_list(doc, default_namespace),
                out,
            );
        }
    }
}

fn namespace_of_list<'a>(list: &'a Value, default_namespace: &'a str) -> String {
    list.pointer("/metadata/namespace")
        .and_then(Value::as_str)
        .unwrap_or(default_namespace)
        .to_string()
}

fn read_input(file: &Path) -> anyhow::Result<String> {
    if file == Path::new("-") {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}

fn documents(text: &str, file: &Path) -> anyhow::Result<Vec<Value>> {
    let docs: Vec<Value> = serde_saphyr::from_multiple(text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            file.display(),
            e.to_string().lines().next().unwrap_or_default()
        )
    })?;
    Ok(docs.into_iter().filter(|d| !d.is_null()).collect())
}

fn snapshot(
    args: &PolicyArgs,
    namespaces: Option<&HashMap<String, NamespaceInfo>>,
) -> anyhow::Result<Snapshot> {
    let mut policies = builtin::policies();
    if let Some(path) = &args.policies {
        let loaded = files::check(path, &args.annotation_prefix).map_err(|errors| {
            let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
            anyhow::anyhow!("invalid policies:\n{}", lines.join("\n"))
        })?;
        policies.extend(loaded);
    }
    let (snapshot, errors) = Snapshot::build(&args.annotation_prefix, policies, namespaces);
    anyhow::ensure!(errors.is_empty(), "invalid policies: {errors:?}");
    Ok(snapshot)
}

/// Evaluates the pod at `site` in `doc`.
fn evaluate_site(
    snapshot: &Snapshot,
    doc: &Value,
    site: &Site,
) -> anyhow::Result<(String, Evaluation)> {
    let object = doc
        .pointer(&site.pointer)
        .expect("sites point into their document");
    let json = object.to_string();
    let pod = Pod::parse(&json).with_context(|| format!("{}: reading the pod", site.describe))?;
    let evaluation = engine::evaluate(snapshot, &site.namespace, &pod);
    Ok((json, evaluation))
}

/// `tandem inject`: YAML in, mutated YAML out.
pub fn inject(args: &InjectArgs) -> anyhow::Result<ExitCode> {
    let text = read_input(&args.file)?;
    let snapshot = snapshot(&args.policy, None)?;
    let mut docs = documents(&text, &args.file)?;
    let mut denied = false;
    for doc in &mut docs {
        let mut found = Vec::new();
        sites(doc, "", &args.namespace, &mut found);
        for site in found {
            let (json, evaluation) = evaluate_site(&snapshot, doc, &site)?;
            for warning in evaluation.warnings() {
                eprintln!("{}: warning: {warning}", site.describe);
            }
            if let Some(message) = evaluation.denial() {
                eprintln!("{}: denied: {message}", site.describe);
                denied = true;
                continue;
            }
            let pod = Pod::parse(&json).expect("parsed once already");
            if let Some(patch) = engine::patch(&pod, &evaluation) {
                let object = doc
                    .pointer_mut(&site.pointer)
                    .expect("sites point into their document");
                engine::apply(object, &patch)
                    .map_err(|e| anyhow::anyhow!("{}: applying the patch: {e}", site.describe))?;
            }
        }
    }
    if denied {
        return Ok(ExitCode::from(1));
    }
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        out.push_str(&serde_saphyr::to_string(doc).context("writing YAML")?);
    }
    print!("{out}");
    Ok(ExitCode::SUCCESS)
}

/// One pod's explanation, as `--output json` prints it.
#[derive(Serialize)]
struct Explained {
    object: String,
    namespace: String,
    patterns: Vec<ExplainedPattern>,
    already_injected: Vec<Pattern>,
    denied: Vec<String>,
    warnings: Vec<String>,
    adds: Adds,
}

#[derive(Serialize)]
struct ExplainedPattern {
    pattern: Pattern,
    why: String,
    profile: String,
    profile_from: String,
    options: Vec<ExplainedOption>,
}

#[derive(Serialize)]
struct ExplainedOption {
    name: String,
    value: String,
    from: String,
}

#[derive(Serialize, Default)]
struct Adds {
    init_containers: Vec<AddedContainer>,
    containers: Vec<AddedContainer>,
    volumes: Vec<String>,
    mounts: Vec<String>,
    annotations: Vec<String>,
}

#[derive(Serialize)]
struct AddedContainer {
    name: String,
    image: String,
    kind: &'static str,
}

/// `tandem explain`: which patterns apply to each pod, why, and what would be added.
pub fn explain(args: &ExplainArgs) -> anyhow::Result<ExitCode> {
    let text = read_input(&args.file)?;
    let namespaces = (!args.namespace_labels.0.is_empty()
        || !args.namespace_annotations.0.is_empty())
    .then(|| {
        // The namespace given with -n has these labels and annotations; objects that name
        // another namespace are explained as in a namespace known only by its name.
        let info = NamespaceInfo {
            labels: args.namespace_labels.0.iter().cloned().collect(),
            annotations: args.namespace_annotations.0.iter().cloned().collect(),
        };
        HashMap::from([(args.namespace.clone(), info)])
    });
    let snapshot = snapshot(&args.policy, namespaces.as_ref())?;
    let docs = documents(&text, &args.file)?;
    let mut explained = Vec::new();
    for doc in &docs {
        let mut found = Vec::new();
        sites(doc, "", &args.namespace, &mut found);
        for site in found {
            let (json, evaluation) = evaluate_site(&snapshot, doc, &site)?;
            let pod = Pod::parse(&json).expect("parsed once already");
            explained.push(describe(&site, &pod, &evaluation));
        }
    }
    match args.output {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&explained)?),
        OutputFormat::Text => print!("{}", render_text(&explained)),
    }
    Ok(ExitCode::SUCCESS)
}

fn describe(site: &Site, pod: &Pod<'_>, evaluation: &Evaluation) -> Explained {
    let plan: &Plan = &evaluation.outcome.plan;
    let patterns = evaluation
        .resolution
        .patterns
        .iter()
        .filter(|r| plan.patterns.contains(&r.pattern) || !evaluation.outcome.denied.is_empty())
        .map(|r| ExplainedPattern {
            pattern: r.pattern,
            why: match &r.why {
                Why::Pod => "the pod's annotation".into(),
                Why::Namespace => "the namespace's annotation".into(),
                Why::Policy(name) => format!("policy {name:?} (defaults)"),
                Why::Enforced(name) => format!("policy {name:?} (enforce)"),
            },
            profile: r.profile_name.clone(),
            profile_from: format!("policy {:?}", r.profile.policy),
            options: r
                .settings()
                .into_iter()
                .map(|(name, setting)| ExplainedOption {
                    name,
                    value: setting.value,
                    from: match &setting.origin {
                        Origin::Pattern => "built-in default".into(),
                        Origin::Profile => format!("profile {}", r.profile_name),
                        Origin::Policy(name) => format!("policy {name:?}"),
                        Origin::Annotation(source) => source.to_string(),
                    },
                })
                .collect(),
        })
        .collect();
    let container = |c: &k8s_openapi::api::core::v1::Container, native: bool| AddedContainer {
        name: c.name.clone(),
        image: c.image.clone().unwrap_or_default(),
        kind: match (native, c.restart_policy.as_deref()) {
            (true, Some("Always")) => "native sidecar (init container, restartPolicy Always)",
            (true, _) => "init container, runs once before the app",
            (false, _) => "container (classic sidecar)",
        },
    };
    let adds = Adds {
        init_containers: plan
            .init_containers
            .iter()
            .map(|c| container(c, true))
            .collect(),
        containers: plan
            .containers
            .iter()
            .map(|c| container(c, false))
            .collect(),
        volumes: plan
            .volumes
            .iter()
            .map(|v| format!("{}{}", v.name, volume_kind(v)))
            .collect(),
        mounts: plan
            .mounts
            .iter()
            .map(|(index, mount)| {
                format!(
                    "{} at {}{} in container {} ({})",
                    mount.name,
                    mount.mount_path,
                    mount
                        .sub_path
                        .as_ref()
                        .map(|s| format!(" (subPath {s})"))
                        .unwrap_or_default(),
                    pod.spec.containers[*index].name,
                    if mount.read_only == Some(true) {
                        "read-only"
                    } else {
                        "read-write"
                    }
                )
            })
            .collect(),
        annotations: plan
            .annotations
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
    };
    Explained {
        object: site.describe.clone(),
        namespace: site.namespace.clone(),
        patterns,
        already_injected: evaluation.outcome.already.clone(),
        denied: evaluation
            .outcome
            .denied
            .iter()
            .map(ToString::to_string)
            .collect(),
        warnings: evaluation.warnings(),
        adds,
    }
}

fn volume_kind(volume: &k8s_openapi::api::core::v1::Volume) -> &'static str {
    if volume.secret.is_some() {
        " (secret)"
    } else if volume.config_map.is_some() {
        " (configMap)"
    } else {
        " (emptyDir)"
    }
}

fn render_text(explained: &[Explained]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    for e in explained {
        let _ = writeln!(out, "{}:", e.object);
        if e.patterns.is_empty() && e.denied.is_empty() {
            let _ = writeln!(out, "  no pattern applies");
        }
        for p in &e.patterns {
            let _ = writeln!(
                out,
                "  {} — on by {}; profile {} ({})",
                p.pattern, p.why, p.profile, p.profile_from
            );
            for o in &p.options {
                let _ = writeln!(out, "      {} = {}    ({})", o.name, o.value, o.from);
            }
        }
        for pattern in &e.already_injected {
            let _ = writeln!(out, "  {pattern} — already injected, left alone");
        }
        for d in &e.denied {
            let _ = writeln!(out, "  DENIED: {d}");
        }
        for w in &e.warnings {
            let _ = writeln!(out, "  warning: {w}");
        }
        let adds = &e.adds;
        if !adds.init_containers.is_empty() || !adds.containers.is_empty() {
            let _ = writeln!(out, "  adds:");
            for c in adds.init_containers.iter().chain(&adds.containers) {
                let _ = writeln!(out, "    {} {} — {}", c.name, c.image, c.kind);
            }
            for v in &adds.volumes {
                let _ = writeln!(out, "    volume {v}");
            }
            for m in &adds.mounts {
                let _ = writeln!(out, "    mount {m}");
            }
            for a in &adds.annotations {
                let _ = writeln!(out, "    annotation {a}");
            }
        }
    }
    out
}

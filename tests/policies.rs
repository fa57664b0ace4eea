//! Policy resolution end to end through the engine: precedence (built-in < policies by
//! priority < namespace < pod), `overrides`, `enforce`, selectors, allow-lists, `sidecarMode`
//! and `onInvalid`. Every pod produced is judged by the independent oracle.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::{assert_valid_pod, container, container_names, mutate, pod, policies, snapshot};
use serde_json::Value;
use tandem::{pattern::Pattern, policy::snapshot::NamespaceInfo};

fn log_path(pod: &Value) -> String {
    let shipper = container(pod, "tandem-log-shipper");
    shipper["volumeMounts"][0]["mountPath"]
        .as_str()
        .unwrap()
        .to_string()
}

/// A namespace for the tests: name, labels, annotations.
type Namespace<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a [(&'a str, &'a str)]);

fn namespaces(entries: &[Namespace<'_>]) -> HashMap<String, NamespaceInfo> {
    let map = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    entries
        .iter()
        .map(|(name, labels, annotations)| {
            (
                name.to_string(),
                NamespaceInfo {
                    labels: map(labels),
                    annotations: map(annotations),
                },
            )
        })
        .collect()
}

const TWO_PRIORITIES: &str = r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: low}
spec:
  priority: 10
  defaults:
    log-shipper: {path: /var/log/low}
---
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: high}
spec:
  priority: 20
  defaults:
    log-shipper: {path: /var/log/high}
"#;

#[test]
fn built_in_then_policies_by_priority_then_namespace_then_pod() {
    // Built-in default alone.
    let builtin = snapshot(Vec::new(), None);
    let (_, result) = mutate(
        &builtin,
        "default",
        &pod(&[("tandem.dev/log-shipper", "true")]),
    );
    let result = result.unwrap();
    assert_eq!(log_path(&result), "/var/log/app");
    assert_valid_pod(&result);

    // Policies: the higher priority wins, and switches the pattern on without annotations.
    let namespace_annotated = namespaces(&[
        ("plain", &[], &[]),
        (
            "annotated",
            &[],
            &[("tandem.dev/log-shipper.path", "/var/log/ns")],
        ),
    ]);
    let snap = snapshot(policies(TWO_PRIORITIES), Some(&namespace_annotated));
    let (_, result) = mutate(&snap, "plain", &pod(&[]));
    let result = result.unwrap();
    assert_eq!(log_path(&result), "/var/log/high");
    assert_valid_pod(&result);

    // The namespace's annotation beats the policies.
    let (_, result) = mutate(&snap, "annotated", &pod(&[]));
    assert_eq!(log_path(&result.unwrap()), "/var/log/ns");

    // The pod's own annotation beats the namespace's.
    let (_, result) = mutate(
        &snap,
        "annotated",
        &pod(&[("tandem.dev/log-shipper.path", "/var/log/pod")]),
    );
    let result = result.unwrap();
    assert_eq!(log_path(&result), "/var/log/pod");
    assert_valid_pod(&result);
}

#[test]
fn a_policy_default_patches_a_pod_without_annotations_volumes_or_init_containers() {
    let snap = snapshot(policies(TWO_PRIORITIES), None);
    let bare = pod(&[]);
    assert!(bare["metadata"].get("annotations").is_none());
    assert!(bare["spec"].get("volumes").is_none());
    assert!(bare["spec"].get("initContainers").is_none());
    let (evaluation, result) = mutate(&snap, "default", &bare);
    let result = result.unwrap();
    assert_eq!(evaluation.patterns(), [Pattern::LogShipper]);
    assert_eq!(
        result["metadata"]["annotations"]["tandem.dev/injected"],
        "log-shipper"
    );
    assert_eq!(
        result["metadata"]["annotations"]["kubectl.kubernetes.io/default-container"],
        "web"
    );
    assert_valid_pod(&result);
}

#[test]
fn the_pod_opts_out_unless_the_policy_enforces() {
    let optional = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: logging}
spec:
  defaults:
    log-shipper: {}
    metrics-adapter: {profile: redis}
"#,
    );
    let snap = snapshot(optional, None);
    for opt_out in [
        ("tandem.dev/log-shipper", "false"),
        ("tandem.dev/inject", "false"),
    ] {
        let (evaluation, result) = mutate(&snap, "default", &pod(&[opt_out]));
        assert!(
            !evaluation.patterns().contains(&Pattern::LogShipper),
            "{opt_out:?}"
        );
        assert_valid_pod(&result.unwrap());
    }
    // inject: "false" wins over the pod's own pattern annotations too, as Istio's does.
    let (evaluation, result) = mutate(
        &snap,
        "default",
        &pod(&[
            ("tandem.dev/inject", "false"),
            ("tandem.dev/log-shipper", "true"),
            ("tandem.dev/metrics-adapter", "redis"),
        ]),
    );
    assert!(
        evaluation.patterns().is_empty(),
        "{:?}",
        evaluation.patterns()
    );
    let result = result.unwrap();
    assert!(
        container_names(&result)
            .iter()
            .all(|n| !n.starts_with("tandem-")),
        "{result:#}"
    );

    let enforced = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-logging}
spec:
  defaults:
    log-shipper: {}
    metrics-adapter: {profile: redis}
  enforce: [log-shipper]
"#,
    );
    let snap = snapshot(enforced, None);
    let (evaluation, result) = mutate(&snap, "default", &pod(&[("tandem.dev/inject", "false")]));
    // inject: "false" removes what is not enforced, keeps what is.
    assert_eq!(evaluation.patterns(), [Pattern::LogShipper]);
    assert_valid_pod(&result.unwrap());
    let (evaluation, _) = mutate(
        &snap,
        "default",
        &pod(&[("tandem.dev/log-shipper", "false")]),
    );
    assert!(evaluation.patterns().contains(&Pattern::LogShipper));
}

#[test]
fn overrides_limit_what_pods_and_namespaces_may_set_and_name_the_policy() {
    let restricted = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-logging}
spec:
  priority: 100
  overrides:
    log-shipper: [containers]
"#,
    );
    let ns = namespaces(&[(
        "payments",
        &[],
        &[("tandem.dev/log-shipper.path", "/var/log/ns")],
    )]);
    let snap = snapshot(restricted, Some(&ns));

    let allowed = pod(&[
        ("tandem.dev/log-shipper", "true"),
        ("tandem.dev/log-shipper.containers", "web"),
    ]);
    let (_, result) = mutate(&snap, "default", &allowed);
    assert_valid_pod(&result.unwrap());

    let (evaluation, result) = mutate(
        &snap,
        "default",
        &pod(&[
            ("tandem.dev/log-shipper", "true"),
            ("tandem.dev/log-shipper.path", "/logs"),
        ]),
    );
    assert!(result.is_none());
    let message = evaluation.denial().unwrap();
    assert_eq!(
        message,
        "annotation tandem.dev/log-shipper.path=\"/logs\" sets \"path\", which policy \
         \"payments-logging\" does not let pods or namespaces override; accepted: the options containers"
    );

    // The namespace is held to the same rule.
    let (evaluation, _) = mutate(
        &snap,
        "payments",
        &pod(&[("tandem.dev/log-shipper", "true")]),
    );
    let message = evaluation.denial().unwrap();
    assert!(
        message.starts_with(
            "namespace payments: annotation tandem.dev/log-shipper.path=\"/var/log/ns\""
        ),
        "{message}"
    );
    assert!(message.contains("payments-logging"), "{message}");

    // Choosing a profile is an override too.
    let (evaluation, _) = mutate(
        &snap,
        "default",
        &pod(&[("tandem.dev/log-shipper", "fluent-bit-loki")]),
    );
    assert!(evaluation.denial().unwrap().contains("sets \"profile\""));
}

#[test]
fn selectors_pick_namespaces_by_label_and_pods_by_label() {
    let scoped = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-logging}
spec:
  selector:
    namespaces: {matchLabels: {team: payments}}
    pods: {matchExpressions: [{key: app, operator: In, values: [web]}]}
  defaults:
    log-shipper: {}
"#,
    );
    let ns = namespaces(&[
        ("payments", &[("team", "payments")], &[]),
        ("search", &[("team", "search")], &[]),
    ]);
    let snap = snapshot(scoped, Some(&ns));
    let web = pod(&[]);
    let (evaluation, result) = mutate(&snap, "payments", &web);
    assert_eq!(evaluation.patterns(), [Pattern::LogShipper]);
    assert_valid_pod(&result.unwrap());
    let (evaluation, _) = mutate(&snap, "search", &web);
    assert!(
        evaluation.patterns().is_empty(),
        "the namespace selector must not match"
    );
    let mut other = pod(&[]);
    other["metadata"]["labels"]["app"] = "batch".into();
    let (evaluation, _) = mutate(&snap, "payments", &other);
    assert!(
        evaluation.patterns().is_empty(),
        "the pod selector must not match"
    );
}

#[test]
fn without_the_api_server_a_namespace_is_known_by_its_name_label() {
    let by_name = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-only}
spec:
  selector:
    namespaces: {matchLabels: {kubernetes.io/metadata.name: payments}}
  defaults:
    log-shipper: {}
"#,
    );
    let snap = snapshot(by_name, None);
    assert_eq!(
        mutate(&snap, "payments", &pod(&[])).0.patterns(),
        [Pattern::LogShipper]
    );
    assert!(mutate(&snap, "search", &pod(&[])).0.patterns().is_empty());
}

#[test]
fn allowed_images_are_checked_and_the_highest_priority_list_wins() {
    let own_profile = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: vector-profile}
spec:
  profiles:
    log-shipper:
      vector:
        image: docker.io/timberio/vector:0.43.0-distroless-libc
        args: ["--config-yaml", "/etc/vector/{{path}}"]
        resources: {requests: {cpu: 10m, memory: 32Mi}, limits: {memory: 64Mi}}
"#,
    );
    // The default policy allows only the built-in catalog's images.
    let snap = snapshot(own_profile.clone(), None);
    let (evaluation, _) = mutate(
        &snap,
        "default",
        &pod(&[("tandem.dev/log-shipper", "vector")]),
    );
    assert_eq!(
        evaluation.denial().unwrap(),
        "log-shipper profile \"vector\"=\"docker.io/timberio/vector:0.43.0-distroless-libc\" is an image \
         policy \"tandem-default\" does not allow; accepted: cr.fluentbit.io/fluent/fluent-bit:*, \
         oliver006/redis_exporter:*, nginx/nginx-prometheus-exporter:*, \
         quay.io/prometheuscommunity/postgres-exporter:*, prom/mysqld-exporter:*, \
         prom/statsd-exporter:*, quay.io/prometheuscommunity/json-exporter:*, envoyproxy/envoy:*, \
         registry.k8s.io/git-sync/git-sync:*"
    );
    // A policy of higher priority replaces the list.
    let mut widened = own_profile;
    widened.extend(policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: registries}
spec:
  allowedImages: ["docker.io/timberio/vector:*", "cr.fluentbit.io/fluent/*"]
"#,
    ));
    let snap = snapshot(widened, None);
    let (_, result) = mutate(
        &snap,
        "default",
        &pod(&[("tandem.dev/log-shipper", "vector")]),
    );
    let result = result.unwrap();
    assert_eq!(
        container(&result, "tandem-log-shipper")["args"][1],
        "/etc/vector//var/log/app"
    );
    assert_valid_pod(&result);
}

#[test]
fn allowed_git_hosts_accept_exact_names_and_wildcards() {
    let hosts = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: git-hosts}
spec:
  allowedGitHosts: [github.com, "*.corp.example.com"]
"#,
    );
    let snap = snapshot(hosts, None);
    for (repo, ok) in [
        ("https://github.com/example/site.git", true),
        ("git@github.com:example/site.git", true),
        ("https://git.corp.example.com/team/site.git", true),
        ("https://corp.example.com/team/site.git", false),
        ("https://gitlab.com/example/site.git", false),
        ("https://github.com.evil.example/x/y.git", false),
    ] {
        let (evaluation, result) =
            mutate(&snap, "default", &pod(&[("tandem.dev/git-clone", repo)]));
        assert_eq!(result.is_some(), ok, "{repo}: {:?}", evaluation.denial());
        match result {
            Some(result) => assert_valid_pod(&result),
            None => {
                let message = evaluation.denial().unwrap();
                assert!(
                    message.contains("policy \"git-hosts\" does not allow"),
                    "{message}"
                );
                assert!(
                    message.contains("accepted: repositories on github.com, *.corp.example.com"),
                    "{message}"
                );
            }
        }
    }
}

#[test]
fn on_invalid_warn_admits_the_pod_without_the_bad_pattern() {
    let warn = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: lenient}
spec:
  onInvalid: warn
"#,
    );
    let snap = snapshot(warn, None);
    let bad = pod(&[
        ("tandem.dev/log-shipper", "true"),
        ("tandem.dev/log-shipper.path", "var/log"),
        ("tandem.dev/metrics-adapter", "redis"),
    ]);
    let (evaluation, result) = mutate(&snap, "default", &bad);
    let result = result.expect("admitted");
    assert_eq!(evaluation.patterns(), [Pattern::MetricsAdapter]);
    assert_eq!(
        evaluation.warnings(),
        [
            "tandem skipped log-shipper: annotation tandem.dev/log-shipper.path=\"var/log\" is not an \
          absolute path; accepted: an absolute path such as /var/log/app"
        ]
    );
    assert!(!container_names(&result).contains(&"tandem-log-shipper".to_string()));
    assert_valid_pod(&result);

    // A key that names no pattern cannot be dropped with one: it still denies.
    let (evaluation, _) = mutate(&snap, "default", &pod(&[("tandem.dev/log-shiper", "true")]));
    assert!(evaluation.denial().is_some());
}

#[test]
fn classic_sidecar_mode_appends_containers_and_clones_before_syncing() {
    let classic = policies(
        r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: old-cluster}
spec:
  sidecarMode: classic
"#,
    );
    let snap = snapshot(classic, None);
    let (_, result) = mutate(
        &snap,
        "default",
        &pod(&[
            ("tandem.dev/log-shipper", "true"),
            ("tandem.dev/ambassador", "tcp"),
            ("tandem.dev/ambassador.upstream", "redis.db:6379"),
            ("tandem.dev/ambassador.port", "6380"),
            (
                "tandem.dev/git-clone",
                "https://github.com/example/site.git",
            ),
            ("tandem.dev/git-clone.sync", "1m"),
        ]),
    );
    let result = result.unwrap();
    let init: Vec<&str> = result["spec"]["initContainers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(init, ["tandem-git-clone"]);
    let containers: Vec<&str> = result["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        containers,
        [
            "web",
            "tandem-git-sync",
            "tandem-log-shipper",
            "tandem-ambassador"
        ]
    );
    for name in &containers[1..] {
        let c = container(&result, name);
        assert!(c.get("restartPolicy").is_none(), "{name}");
        assert!(c.get("startupProbe").is_none(), "{name}");
    }
    assert_valid_pod(&result);
}

#[test]
fn invalid_policies_are_reported_with_the_field_and_what_is_accepted() {
    let cases = [
        (
            "spec:\n  profiles:\n    log-shipper:\n      bad:\n        image: x\n        args: [\"{{nope}}\"]\n        resources: {requests: {cpu: 1m, memory: 1Mi}, limits: {memory: 1Mi}}\n",
            "spec.profiles.log-shipper.bad.args[0]: {{nope}} in \"{{nope}}\" names no option of log-shipper",
        ),
        (
            "spec:\n  profiles:\n    log-shipper:\n      bad:\n        image: x\n        resources: {requests: {cpu: 1m}}\n",
            "resources.requests.memory is missing",
        ),
        (
            "spec:\n  defaults:\n    log-shipper: {paht: /x}\n",
            "spec.defaults.log-shipper.paht: log-shipper has no option \"paht\"",
        ),
        (
            "spec:\n  defaults:\n    log-shipper: {path: x}\n",
            "\"x\" is not an absolute path",
        ),
        (
            "spec:\n  defaults:\n    ambassador: {profile: grpc}\n",
            "no ambassador profile is called \"grpc\"; accepted: http, tcp",
        ),
        (
            "spec:\n  overrides:\n    git-clone: [branch]\n",
            "git-clone has no option \"branch\"",
        ),
        (
            "spec:\n  allowedGitHosts: [\"https://github.com\"]\n",
            "spec.allowedGitHosts[0]",
        ),
        (
            "spec:\n  selector:\n    pods: {matchExpressions: [{key: a, operator: Equals, values: [b]}]}\n",
            "spec.selector.pods.matchExpressions[0].operator: matchExpressions key \"a\": operator \"Equals\" is not In, NotIn, Exists or DoesNotExist",
        ),
        (
            "spec:\n  defaults:\n    metrics-adapter: {target: localhost:9000}\n",
            "spec.defaults.metrics-adapter: metrics-adapter has no default profile, so the policy must name one; accepted: profile set to one of json, mysql, nginx, postgres, redis, statsd",
        ),
        (
            "spec:\n  enforce: [metrics-adapter]\n",
            "spec.enforce[0]: metrics-adapter has no default profile, so enforcing it needs spec.defaults.metrics-adapter.profile",
        ),
    ];
    for (spec, expected) in cases {
        let yaml = format!(
            "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {{name: broken}}\n{spec}"
        );
        let all = tandem::policy::source::builtin::policies()
            .into_iter()
            .chain(policies(&yaml));
        let (_, errors) = tandem::policy::snapshot::Snapshot::build("tandem.dev", all, None);
        let messages: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "expected {expected:?} in {messages:#?}"
        );
    }
}

/// The API server's reinvocation after a later webhook added a container: tandem adds
/// nothing twice, and the new app container gets what each pattern gives every app
/// container, on the volumes the first review added.
#[rstest::rstest]
#[case::log_shipper(&[("tandem.dev/log-shipper", "true")], &["/var/log/app"])]
#[case::one_time_clone(&[("tandem.dev/git-clone", "https://github.com/example/site.git"), ("tandem.dev/git-clone.path", "/srv/site")], &["/srv/site"])]
#[case::synced_clone_and_logs(&[
    ("tandem.dev/git-clone", "https://github.com/example/site.git"),
    ("tandem.dev/git-clone.sync", "30s"),
    ("tandem.dev/log-shipper", "true"),
    ("tandem.dev/log-shipper.path", "/logs"),
    ("tandem.dev/metrics-adapter", "redis"),
], &["/git", "/logs"])]
fn reinvocation_covers_a_container_added_by_a_later_webhook(
    #[case] annotations: &[(&str, &str)],
    #[case] paths: &[&str],
) {
    let snap = snapshot(Vec::new(), None);
    let (_, first) = mutate(&snap, "default", &pod(annotations));
    let mut first = first.unwrap();
    let names_before = container_names(&first);
    let volumes_before = first["spec"]["volumes"].clone();
    first["spec"]["containers"]
        .as_array_mut()
        .unwrap()
        .push(serde_json::json!({"name": "late", "image": "ghcr.io/example/late:1.0"}));

    let (evaluation, second) = mutate(&snap, "default", &first);
    assert!(evaluation.patterns().is_empty(), "nothing is added twice");
    let second = second.unwrap();
    assert_valid_pod(&second);
    let mut names_after = names_before.clone();
    names_after.push("late".into());
    assert_eq!(container_names(&second), names_after);
    assert_eq!(second["spec"]["volumes"], volumes_before);
    let web = container(&second, "web");
    let late = container(&second, "late");
    for path in paths {
        let mount_of = |c: &Value| {
            c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|m| m["mountPath"] == *path)
                .cloned()
        };
        assert_eq!(
            mount_of(late),
            mount_of(web),
            "the late container mounts {path} as the first app container does"
        );
        assert!(mount_of(late).is_some(), "{path}");
    }

    // A third review of the now complete pod adds nothing.
    let (_, third) = mutate(&snap, "default", &second);
    assert_eq!(third.unwrap(), second);
}

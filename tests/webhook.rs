//! The mutation contract through the real server (HTTPS, HTTP/1.1 and HTTP/2): bad
//! annotation values are denied with HTTP 200, `allowed: false`, `status.code: 400` and a
//! message naming the key, the value and what is accepted — and the next request is
//! answered normally; conflicts with what the pod already has are denied the same way;
//! names never collide.

mod common;

use common::{
    Options, TestServer, assert_valid_pod, container, container_names, patched, pod, policies,
    review,
};
use rstest::rstest;
use serde_json::Value;

const GIT_HOSTS: &str = r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: git-hosts}
spec:
  allowedGitHosts: [github.com]
"#;

async fn server() -> TestServer {
    TestServer::start_with(Options {
        policies: policies(GIT_HOSTS),
        ..Options::default()
    })
    .await
}

#[rstest]
#[case::relative_path(
    &[("tandem.dev/log-shipper", "true"), ("tandem.dev/log-shipper.path", "var/log/app")],
    "annotation tandem.dev/log-shipper.path=\"var/log/app\" is not an absolute path; accepted: an absolute path such as /var/log/app"
)]
#[case::port_out_of_range(
    &[("tandem.dev/ambassador", "tcp"), ("tandem.dev/ambassador.upstream", "redis.db:6379"), ("tandem.dev/ambassador.port", "70000")],
    "annotation tandem.dev/ambassador.port=\"70000\" is not a port number from 1 to 65535; accepted: a port number from 1 to 65535"
)]
#[case::unknown_profile(
    &[("tandem.dev/metrics-adapter", "mongodb")],
    "annotation tandem.dev/metrics-adapter=\"mongodb\" is not a metrics-adapter profile; accepted: json, mysql, nginx, postgres, redis, statsd"
)]
#[case::upstream_without_port(
    &[("tandem.dev/ambassador", "tcp"), ("tandem.dev/ambassador.upstream", "redis.db"), ("tandem.dev/ambassador.port", "6380")],
    "annotation tandem.dev/ambassador.upstream=\"redis.db\" entry \"redis.db\" has no port; accepted: host:port[=weight], comma separated, such as redis-a.db:6379=3,redis-b.db:6379=1"
)]
#[case::git_scheme(
    &[("tandem.dev/git-clone", "http://github.com/example/site.git")],
    "annotation tandem.dev/git-clone=\"http://github.com/example/site.git\" uses scheme \"http\", not https or ssh; accepted: an https:// or ssh:// URL, or user@host:path, such as https://github.com/example/site.git"
)]
#[case::git_host_not_allowed(
    &[("tandem.dev/git-clone", "https://gitlab.com/example/site.git")],
    "annotation tandem.dev/git-clone=\"https://gitlab.com/example/site.git\" clones from host \"gitlab.com\", which policy \"git-hosts\" does not allow; accepted: repositories on github.com"
)]
#[case::unknown_pattern(
    &[("tandem.dev/log-shiper", "true")],
    "annotation tandem.dev/log-shiper=\"true\" names no pattern of tandem (did you mean log-shipper?); accepted: ambassador, git-clone, log-shipper, metrics-adapter, inject"
)]
#[case::unknown_option(
    &[("tandem.dev/log-shipper", "true"), ("tandem.dev/log-shipper.paht", "/logs")],
    "annotation tandem.dev/log-shipper.paht=\"/logs\" names no option of log-shipper; accepted: containers, path, profile, secret"
)]
#[case::missing_required(
    &[("tandem.dev/ambassador", "tcp"), ("tandem.dev/ambassador.port", "6380")],
    "annotation tandem.dev/ambassador.upstream is not set, and the tcp profile needs it; accepted: host:port[=weight], comma separated, such as redis-a.db:6379=3,redis-b.db:6379=1"
)]
#[case::no_profile(
    &[("tandem.dev/metrics-adapter", "true")],
    "annotation tandem.dev/metrics-adapter=\"true\" does not name a profile, and this pattern has no default; accepted: json, mysql, nginx, postgres, redis, statsd"
)]
#[case::bad_duration(
    &[("tandem.dev/git-clone", "https://github.com/example/site.git"), ("tandem.dev/git-clone.sync", "30")],
    "annotation tandem.dev/git-clone.sync=\"30\" is not a duration; accepted: a duration such as 500ms, 30s, 5m or 1h"
)]
#[case::unknown_container(
    &[("tandem.dev/log-shipper", "true"), ("tandem.dev/log-shipper.containers", "api")],
    "annotation tandem.dev/log-shipper.containers=\"api\" names \"api\", which is not an app container of this pod; accepted: web"
)]
#[case::port_taken(
    &[("tandem.dev/metrics-adapter", "redis"), ("tandem.dev/metrics-adapter.port", "8080")],
    "annotation tandem.dev/metrics-adapter.port=\"8080\" is already used by container web of this pod; accepted: a port no other container of the pod uses"
)]
#[tokio::test]
async fn bad_values_are_denied_with_a_message_and_the_next_request_is_served(
    #[case] annotations: &[(&str, &str)],
    #[case] message: &str,
) {
    let server = server().await;
    for http2 in [false, true] {
        let client = server.client(http2);
        let request = review(&pod(annotations), "default");
        let (status, response) = server.post(&client, &request).await;
        assert_eq!(status, 200);
        let answer = &response["response"];
        assert_eq!(answer["uid"], request["request"]["uid"]);
        assert_eq!(answer["allowed"], false, "{response}");
        assert_eq!(answer["status"]["code"], 400);
        assert_eq!(answer["status"]["message"], message);
        assert!(answer.get("patch").is_none());

        let good = review(&pod(&[("tandem.dev/log-shipper", "true")]), "default");
        let (status, response) = server.post(&client, &good).await;
        assert_eq!(status, 200);
        assert_valid_pod(&patched(&good, &response));
    }
}

#[tokio::test]
async fn a_path_the_app_already_mounts_is_denied() {
    let server = server().await;
    let mut taken = pod(&[("tandem.dev/log-shipper", "true")]);
    taken["spec"]["volumes"] = serde_json::json!([{"name": "logs", "emptyDir": {}}]);
    taken["spec"]["containers"][0]["volumeMounts"] =
        serde_json::json!([{"name": "logs", "mountPath": "/var/log/app"}]);
    let (_, response) = server
        .post(&server.client(false), &review(&taken, "default"))
        .await;
    assert_eq!(
        response["response"]["status"]["message"],
        "annotation tandem.dev/log-shipper.path=\"/var/log/app\" is a path container web already \
         mounts a volume at; accepted: a path no volume is mounted at in that container"
    );
}

#[tokio::test]
async fn injected_names_never_collide_with_the_pods_own() {
    let server = server().await;
    let mut crowded = pod(&[
        ("tandem.dev/log-shipper", "true"),
        (
            "tandem.dev/git-clone",
            "https://github.com/example/site.git",
        ),
        ("tandem.dev/git-clone.path", "/srv/site"),
    ]);
    crowded["spec"]["volumes"] = serde_json::json!([
        {"name": "tandem-logs", "emptyDir": {}},
        {"name": "tandem-git", "configMap": {"name": "mine"}},
        {"name": "tandem-git-2", "emptyDir": {}}
    ]);
    crowded["spec"]["containers"][0]["volumeMounts"] = serde_json::json!([
        {"name": "tandem-logs", "mountPath": "/data"},
        {"name": "tandem-git", "mountPath": "/etc/mine"},
        {"name": "tandem-git-2", "mountPath": "/cache"}
    ]);
    let request = review(&crowded, "default");
    let (_, response) = server.post(&server.client(true), &request).await;
    let result = patched(&request, &response);
    let volumes: Vec<&str> = result["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        volumes,
        [
            "tandem-logs",
            "tandem-git",
            "tandem-git-2",
            "tandem-git-3",
            "tandem-git-tmp",
            "tandem-logs-2",
            "tandem-log-state"
        ]
    );
    // The user's own volumes keep their mounts; ours go where the annotations say.
    let web = container(&result, "web");
    let mounts: Vec<(&str, &str)> = web["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert!(
        mounts.contains(&("tandem-git-3", "/srv/site")),
        "{mounts:?}"
    );
    assert!(
        mounts.contains(&("tandem-logs-2", "/var/log/app")),
        "{mounts:?}"
    );
    assert_valid_pod(&result);
}

#[tokio::test]
async fn dry_run_gets_the_same_answer() {
    let server = server().await;
    let client = server.client(false);
    let request = review(&pod(&[("tandem.dev/log-shipper", "true")]), "default");
    let mut dry = request.clone();
    dry["request"]["dryRun"] = Value::Bool(true);
    let (_, normal) = server.post(&client, &request).await;
    let (_, dry_answer) = server.post(&client, &dry).await;
    assert_eq!(normal, dry_answer);
}

#[tokio::test]
async fn the_default_container_and_scrape_annotations_the_user_set_are_kept() {
    let server = server().await;
    let request = review(
        &pod(&[
            ("tandem.dev/metrics-adapter", "redis"),
            ("kubectl.kubernetes.io/default-container", "web"),
            ("prometheus.io/port", "8080"),
        ]),
        "default",
    );
    let (_, response) = server.post(&server.client(false), &request).await;
    let result = patched(&request, &response);
    let annotations = &result["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], "8080");
    assert_eq!(annotations["prometheus.io/scrape"], "true");
    assert_eq!(annotations["prometheus.io/path"], "/metrics");
    assert_eq!(
        annotations["kubectl.kubernetes.io/default-container"],
        "web"
    );
    assert_eq!(
        container(&result, "tandem-metrics-adapter")["ports"][0],
        serde_json::json!({"containerPort": 9121, "name": "metrics", "protocol": "TCP"})
    );
    assert!(container_names(&result).contains(&"tandem-metrics-adapter".to_string()));
    assert_valid_pod(&result);
}

#[tokio::test]
async fn a_pod_without_annotations_gets_what_its_namespace_policy_switches_on() {
    let server = TestServer::start_with(Options {
        policies: policies(
            r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-logging}
spec:
  selector:
    namespaces: {matchLabels: {kubernetes.io/metadata.name: payments}}
  defaults:
    log-shipper: {}
"#,
        ),
        ..Options::default()
    })
    .await;
    let client = server.client(false);
    for (namespace, expected) in [("payments", true), ("search", false), ("payments", true)] {
        let request = review(&pod(&[]), namespace);
        let (status, response) = server.post(&client, &request).await;
        assert_eq!(status, 200);
        let result = patched(&request, &response);
        let shipped = container_names(&result).contains(&"tandem-log-shipper".to_string());
        assert_eq!(shipped, expected, "{namespace}: {response}");
        assert_valid_pod(&result);
    }
}

#[tokio::test]
async fn a_pod_declaring_every_port_is_denied_not_a_crash() {
    let server = server().await;
    let client = server.client(false);
    let mut greedy = pod(&[
        ("tandem.dev/ambassador", "tcp"),
        ("tandem.dev/ambassador.upstream", "redis.db:6379"),
        ("tandem.dev/ambassador.port", "80"),
    ]);
    let ports: Vec<Value> = (1024..=65535u32)
        .map(|port| serde_json::json!({"containerPort": port}))
        .collect();
    greedy["spec"]["containers"][0]["ports"] = Value::Array(ports);
    let (status, response) = server.post(&client, &review(&greedy, "default")).await;
    assert_eq!(status, 200);
    assert_eq!(response["response"]["allowed"], false);
    assert_eq!(
        response["response"]["status"]["message"],
        "annotation tandem.dev/ambassador=\"tcp\" needs a free port for container \
         tandem-ambassador, and the pod declares every port from 1024 to 65535; \
         accepted: a pod that leaves a port free"
    );

    let good = review(&pod(&[("tandem.dev/log-shipper", "true")]), "default");
    let (status, response) = server.post(&client, &good).await;
    assert_eq!(status, 200);
    assert_valid_pod(&patched(&good, &response));
}

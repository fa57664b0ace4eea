//! Cluster mode (`--kube`) against a scripted API server on 127.0.0.1: what the store
//! resolves for a pod after lists, watch events, expired watches and outages, and when
//! `/readyz` turns true.

mod common;
mod fake_api;

use std::{
    sync::{Arc, Once},
    time::Duration,
};

use fake_api::{FakeApi, Kind};
use serde_json::{Value, json};
use tandem::{
    pattern::Pattern,
    policy::{
        source::kube::{Options, run_with},
        source::store::Store,
    },
    telemetry::Metrics,
};
use tokio::sync::watch;

/// Short enough that tests wait milliseconds, not the production seconds.
fn options() -> Options {
    Options {
        settle: Duration::from_millis(20),
        retry_every: Some(Duration::from_millis(50)),
    }
}

const DEADLINE: Duration = Duration::from_secs(15);

/// tandem following a fake API server.
struct Tandem {
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    ready: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Tandem {
    fn follow(api: &FakeApi) -> Tandem {
        static CRYPTO: Once = Once::new();
        CRYPTO.call_once(|| {
            let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        });
        let metrics = Metrics::new();
        let store = Store::new("tandem.dev", Some(metrics.clone()));
        let (ready_tx, ready) = watch::channel(false);
        let task = tokio::spawn(run_with(
            api.client(),
            store.clone(),
            ready_tx,
            metrics.clone(),
            options(),
        ));
        Tandem {
            store,
            metrics,
            ready,
            task,
        }
    }

    fn ready(&self) -> bool {
        *self.ready.borrow()
    }

    /// The patterns a plain pod (label app=web, no annotations unless given) gets in
    /// `namespace`; panics on a denial.
    fn patterns(&self, namespace: &str, annotations: Value) -> Vec<Pattern> {
        let pod = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "labels": {"app": "web"}, "annotations": annotations},
            "spec": {"containers": [{"name": "web", "image": "nginx"}]},
        });
        let (evaluation, result) = common::mutate(&self.store.snapshot(), namespace, &pod);
        assert_eq!(evaluation.denial(), None, "pod in {namespace} denied");
        // Every pod the cluster would get is one the API server accepts.
        common::assert_valid_pod(&result.expect("admitted"));
        evaluation.patterns().to_vec()
    }

    fn plain(&self, namespace: &str) -> Vec<Pattern> {
        self.patterns(namespace, json!({}))
    }

    fn policy_names(&self) -> Vec<String> {
        self.store
            .snapshot()
            .policy_names()
            .map(String::from)
            .collect()
    }

    /// `tandem_policy_reloads_total{source="kube",result=...}`.
    fn reloads(&self, result: &str) -> u64 {
        let wanted = format!(r#"tandem_policy_reloads_total{{source="kube",result="{result}"}} "#);
        self.metrics
            .encode()
            .lines()
            .find_map(|line| line.strip_prefix(&wanted))
            .map_or(0, |n| n.trim().parse().expect("a counter value"))
    }

    /// Polls `check` until it holds; panics after [`DEADLINE`] with `what`.
    async fn until(&self, what: &str, check: impl Fn(&Tandem) -> bool) {
        let start = tokio::time::Instant::now();
        while !check(self) {
            assert!(start.elapsed() < DEADLINE, "timed out waiting until {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn policy(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "InjectionPolicy",
        "metadata": {"name": name, "uid": format!("uid-{name}")},
        "spec": spec,
    })
}

/// Log shipping on by default in namespaces labelled team=`team`.
fn logging_for(team: &str) -> Value {
    json!({
        "priority": 100,
        "selector": {"namespaces": {"matchLabels": {"team": team}}},
        "defaults": {"log-shipper": {"path": "/var/log/app"}},
    })
}

fn namespace(name: &str, labels: Value, annotations: Value) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "uid": format!("uid-{name}"), "labels": labels, "annotations": annotations},
    })
}

const LOG: &[Pattern] = &[Pattern::LogShipper];
const NONE: &[Pattern] = &[];

/// The cluster of most scenarios: payments (team=payments), shop (team=shop), and
/// annotated (log shipping switched on by a namespace annotation).
fn cluster() -> FakeApi {
    let api = FakeApi::new();
    api.apply(
        Kind::Policies,
        policy("payments-logging", logging_for("payments")),
    );
    api.apply(
        Kind::Namespaces,
        namespace("payments", json!({"team": "payments"}), json!({})),
    );
    api.apply(
        Kind::Namespaces,
        namespace("shop", json!({"team": "shop"}), json!({})),
    );
    api.apply(
        Kind::Namespaces,
        namespace(
            "annotated",
            json!({}),
            json!({"tandem.dev/log-shipper": "true"}),
        ),
    );
    api
}

#[tokio::test]
async fn ready_once_both_are_listed_and_policies_follow_namespace_labels() {
    let api = cluster();
    api.fail(Kind::Namespaces, Some(500));
    api.start().await;
    let tandem = Tandem::follow(&api);

    // Policies listed, namespaces failing: not ready.
    tandem
        .until("policies are listed", |_| api.lists(Kind::Policies) > 0)
        .await;
    tandem
        .until("the namespace list failed twice", |t| {
            t.reloads("error") >= 2
        })
        .await;
    assert!(!tandem.ready(), "ready before namespaces were listed");

    api.fail(Kind::Namespaces, None);
    tandem.until("ready", Tandem::ready).await;
    assert!(
        tandem
            .policy_names()
            .contains(&"payments-logging".to_string())
    );
    assert_eq!(
        tandem.plain("payments"),
        LOG,
        "the selector matches team=payments"
    );
    assert_eq!(
        tandem.plain("shop"),
        NONE,
        "the selector does not match team=shop"
    );
    assert_eq!(tandem.plain("unknown"), NONE);
    assert_eq!(
        tandem.plain("annotated"),
        LOG,
        "namespace annotations are inherited"
    );
    assert_eq!(
        tandem.patterns("annotated", json!({"tandem.dev/log-shipper": "false"})),
        NONE,
        "the pod's own annotation wins"
    );
}

#[tokio::test]
async fn watch_events_for_policies_change_the_outcome() {
    let api = cluster();
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;
    assert_eq!(tandem.plain("shop"), NONE);

    api.apply(Kind::Policies, policy("shop-logging", logging_for("shop")));
    tandem
        .until("an ADDED policy applies", |t| t.plain("shop") == LOG)
        .await;

    // MODIFIED: the payments policy now selects nothing but team=none.
    api.apply(
        Kind::Policies,
        policy("payments-logging", logging_for("none")),
    );
    tandem
        .until("a MODIFIED selector applies", |t| {
            t.plain("payments") == NONE
        })
        .await;
    assert_eq!(tandem.plain("shop"), LOG);

    api.delete(Kind::Policies, "shop-logging");
    tandem
        .until("a DELETED policy no longer applies", |t| {
            t.plain("shop") == NONE
        })
        .await;
    assert!(!tandem.policy_names().contains(&"shop-logging".to_string()));
}

#[tokio::test]
async fn watch_events_for_namespaces_change_the_outcome() {
    let api = cluster();
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;

    // ADDED: a new namespace of team payments.
    assert_eq!(tandem.plain("payments-2"), NONE);
    api.apply(
        Kind::Namespaces,
        namespace("payments-2", json!({"team": "payments"}), json!({})),
    );
    tandem
        .until("a new namespace's labels apply", |t| {
            t.plain("payments-2") == LOG
        })
        .await;

    // MODIFIED: relabelled, then annotated.
    api.apply(
        Kind::Namespaces,
        namespace("payments", json!({"team": "shop"}), json!({})),
    );
    tandem
        .until("a relabelled namespace leaves the selector", |t| {
            t.plain("payments") == NONE
        })
        .await;
    api.apply(
        Kind::Namespaces,
        namespace(
            "shop",
            json!({"team": "shop"}),
            json!({"tandem.dev/metrics-adapter": "redis"}),
        ),
    );
    tandem
        .until("a new namespace annotation is inherited", |t| {
            t.plain("shop") == [Pattern::MetricsAdapter]
        })
        .await;

    // DELETED: only its name is known now.
    api.delete(Kind::Namespaces, "annotated");
    tandem
        .until("a deleted namespace's annotations are gone", |t| {
            t.plain("annotated") == NONE
        })
        .await;
}

#[tokio::test]
async fn an_expired_watch_relists_and_drops_what_was_deleted_meanwhile() {
    let api = cluster();
    api.apply(Kind::Policies, policy("shop-logging", logging_for("shop")));
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;
    assert_eq!(tandem.plain("shop"), LOG);
    assert_eq!(tandem.plain("annotated"), LOG);
    let lists = (api.lists(Kind::Policies), api.lists(Kind::Namespaces));
    tandem
        .until("both watches are open", |_| {
            api.open_watches(Kind::Policies) == 1 && api.open_watches(Kind::Namespaces) == 1
        })
        .await;

    // Policies: deleted unseen, then the open watch gets a 410 Gone ERROR event.
    api.delete_unseen(Kind::Policies, "shop-logging");
    api.expire_watches(Kind::Policies);
    tandem
        .until("the deleted policy is gone", |t| t.plain("shop") == NONE)
        .await;
    assert!(
        api.lists(Kind::Policies) > lists.0,
        "recovered by a re-list"
    );

    // Namespaces: deleted unseen, then the watch just ends; resuming it gets 410.
    api.delete_unseen(Kind::Namespaces, "annotated");
    api.end_watches(Kind::Namespaces);
    tandem
        .until("the deleted namespace is gone", |t| {
            t.plain("annotated") == NONE
        })
        .await;
    assert!(
        api.lists(Kind::Namespaces) > lists.1,
        "recovered by a re-list"
    );

    // What was not deleted is still there, and the watches carry on.
    assert_eq!(tandem.plain("payments"), LOG);
    assert!(tandem.ready());
    api.apply(Kind::Policies, policy("shop-logging", logging_for("shop")));
    tandem
        .until("the new watch delivers events", |t| t.plain("shop") == LOG)
        .await;
    assert_eq!(
        tandem.reloads("error"),
        0,
        "an expired watch is routine, not an error"
    );
}

#[tokio::test]
async fn a_watch_that_ends_resumes_without_a_relist() {
    let api = cluster();
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;
    tandem
        .until("the policy watch is open", |_| {
            api.open_watches(Kind::Policies) == 1
        })
        .await;
    let lists = api.lists(Kind::Policies);

    // Ends (timeoutSeconds); events meanwhile are replayed from the history.
    api.end_watches(Kind::Policies);
    api.delete(Kind::Policies, "payments-logging");
    tandem
        .until("the deletion is seen", |t| t.plain("payments") == NONE)
        .await;
    assert_eq!(
        api.lists(Kind::Policies),
        lists,
        "resumed from its resourceVersion"
    );
}

#[tokio::test]
async fn unreachable_at_start_serves_builtins_until_the_api_server_answers() {
    let api = cluster();
    // Not started: connections are refused.
    let tandem = Tandem::follow(&api);
    tandem
        .until("a few attempts failed", |t| t.reloads("error") >= 3)
        .await;
    assert!(!tandem.ready());
    assert_eq!(tandem.plain("payments"), NONE);
    assert_eq!(
        tandem.patterns("payments", json!({"tandem.dev/log-shipper": "true"})),
        LOG,
        "the built-in catalog serves meanwhile"
    );

    api.start().await;
    tandem.until("ready", Tandem::ready).await;
    assert_eq!(tandem.plain("payments"), LOG);
}

#[tokio::test]
async fn an_outage_keeps_the_last_state_and_recovers() {
    let api = cluster();
    api.apply(Kind::Policies, policy("shop-logging", logging_for("shop")));
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;
    assert_eq!(tandem.plain("shop"), LOG);

    api.stop().await;
    tandem
        .until("reconnecting fails", |t| t.reloads("error") >= 2)
        .await;
    assert!(
        tandem.ready(),
        "an outage after the sync does not flip readiness"
    );
    assert_eq!(tandem.plain("shop"), LOG, "the last synced state serves");
    assert_eq!(tandem.plain("payments"), LOG);

    // Changed during the outage, and the API server's history is gone by the time it
    // returns.
    api.delete_unseen(Kind::Policies, "shop-logging");
    api.apply(
        Kind::Namespaces,
        namespace("payments", json!({}), json!({})),
    );
    api.start().await;
    tandem
        .until("the deleted policy is gone", |t| t.plain("shop") == NONE)
        .await;
    tandem
        .until("the relabelled namespace is seen", |t| {
            t.plain("payments") == NONE
        })
        .await;
    assert!(tandem.ready());
}

#[tokio::test]
async fn invalid_objects_are_skipped_and_the_others_apply() {
    let api = cluster();
    // A profile placeholder naming no option: fails validation.
    let bad_placeholder = json!({
        "profiles": {"log-shipper": {"custom": {
            "image": "cr.fluentbit.io/fluent/fluent-bit:4.2.4",
            "args": ["-p", "path={{nope}}"],
            "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}},
        }}},
        "selector": {"namespaces": {"matchLabels": {"team": "shop"}}},
        "defaults": {"log-shipper": {"profile": "custom"}},
    });
    api.apply(Kind::Policies, policy("bad-placeholder", bad_placeholder));
    // A field this version does not know (a newer CRD): fails to deserialize.
    let mut unknown_field = logging_for("shop");
    unknown_field["rollout"] = json!("gradual");
    api.apply(Kind::Policies, policy("from-the-future", unknown_field));
    // Replacing the built-in catalog with something invalid must not lose the catalog.
    api.apply(
        Kind::Policies,
        policy("tandem-catalog", json!({"selector": {"pods": {"matchExpressions": [{"key": "a", "operator": "Equals", "values": ["b"]}]}}})),
    );
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;

    assert_eq!(tandem.plain("payments"), LOG, "the valid policy applies");
    assert_eq!(tandem.plain("shop"), NONE, "the invalid ones do not");
    assert_eq!(
        tandem.patterns("shop", json!({"tandem.dev/metrics-adapter": "redis"})),
        [Pattern::MetricsAdapter],
        "the built-in catalog is still there"
    );
    let names = tandem.policy_names();
    assert!(!names.contains(&"bad-placeholder".to_string()), "{names:?}");
    assert!(!names.contains(&"from-the-future".to_string()), "{names:?}");
    assert!(
        tandem.reloads("error") >= 1,
        "a sync with invalid objects counts as an error"
    );

    // Fixed by a MODIFIED event: now it applies.
    api.apply(
        Kind::Policies,
        policy("from-the-future", logging_for("shop")),
    );
    tandem
        .until("the fixed policy applies", |t| t.plain("shop") == LOG)
        .await;
}

#[tokio::test]
async fn a_cluster_policy_replaces_a_file_policy_of_the_same_name_unless_invalid() {
    let api = FakeApi::new();
    api.apply(
        Kind::Namespaces,
        namespace("payments", json!({"team": "payments"}), json!({})),
    );
    api.apply(
        Kind::Namespaces,
        namespace("shop", json!({"team": "shop"}), json!({})),
    );
    api.start().await;
    let tandem = Tandem::follow(&api);
    let from_file: tandem::policy::InjectionPolicy =
        serde_json::from_value(policy("shared", logging_for("shop"))).unwrap();
    tandem.store.set_files(vec![from_file]);
    tandem.until("ready", Tandem::ready).await;
    assert_eq!(tandem.plain("shop"), LOG, "the file policy applies");

    api.apply(Kind::Policies, policy("shared", logging_for("payments")));
    tandem
        .until("the cluster object replaces it", |t| {
            t.plain("shop") == NONE
        })
        .await;
    assert_eq!(tandem.plain("payments"), LOG);

    let mut broken = logging_for("payments");
    broken["defaults"]["log-shipper"]["path"] = json!("relative/path");
    api.apply(Kind::Policies, policy("shared", broken));
    tandem
        .until(
            "an invalid cluster object leaves the file policy in force",
            |t| t.plain("shop") == LOG && t.plain("payments") == NONE,
        )
        .await;
}

#[tokio::test]
async fn a_steady_stream_of_changes_does_not_hold_back_the_rebuild() {
    let api = Arc::new(cluster());
    api.start().await;
    let tandem = Tandem::follow(&api);
    tandem.until("ready", Tandem::ready).await;

    // A namespace relabelled far more often than the settle time, for ever.
    let busy = {
        let api = api.clone();
        tokio::spawn(async move {
            for generation in 0u64.. {
                let labels = json!({"generation": generation.to_string()});
                api.apply(Kind::Namespaces, namespace("busy", labels, json!({})));
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
    };
    api.apply(Kind::Policies, policy("shop-logging", logging_for("shop")));
    tandem
        .until("a new policy applies while namespaces keep changing", |t| {
            t.plain("shop") == LOG
        })
        .await;
    busy.abort();
}

//! Policies and namespaces from the API server (`--kube`): InjectionPolicy objects and
//! Namespace metadata, each followed with a kube-runtime watcher (list, then watch; a broken
//! watch resumes or re-lists by itself, with backoff). Events are applied to local maps and
//! the store's snapshot is rebuilt at most every [`Options::settle`], never on the review
//! path.
//!
//! `/readyz` turns true once both have been listed in full. If the API server goes away
//! afterwards, reviews go on with the last synced state while the watchers retry.

use std::{collections::HashMap, sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{WatchStreamExt, utils::Backoff, watcher},
};
use tokio::{sync::watch, time::Instant};

use crate::{
    policy::{model::types::InjectionPolicy, snapshot::NamespaceInfo, source::store::Store},
    telemetry::Metrics,
};

/// How long events may gather before the snapshot is rebuilt, by default.
pub const SETTLE: Duration = Duration::from_millis(100);

/// How [`run_with`] follows the API server; the default is what `tandem serve --kube` uses.
#[derive(Clone, Debug)]
pub struct Options {
    /// The snapshot is rebuilt this long after the first change since the last rebuild: at
    /// most this often however busy the cluster is, and at most this late.
    pub settle: Duration,
    /// The delay between retries after an API error. `None`: kube's default backoff, as
    /// client-go's reflector (0.8 s doubling up to 30 s, with jitter).
    pub retry_every: Option<Duration>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            settle: SETTLE,
            retry_every: None,
        }
    }
}

/// An InjectionPolicy as listed: one that does not deserialize (a field this version does
/// not know, a CRD newer than the binary) is kept as its error, so that it cannot fail the
/// whole list.
type ListedPolicy = DeserializeGuard<InjectionPolicy>;

#[allow(
    clippy::large_enum_variant,
    reason = "one event at a time, moved straight into the maps"
)]
enum Change {
    Policy(watcher::Event<ListedPolicy>),
    Namespace(watcher::Event<PartialObjectMeta<Namespace>>),
}

/// Local state: what has been listed and watched so far.
#[derive(Default)]
struct State {
    /// By name; `Err` holds why the object could not be read.
    policies: HashMap<String, Result<InjectionPolicy, String>>,
    policies_listing: Option<HashMap<String, Result<InjectionPolicy, String>>>,
    policies_synced: bool,
    namespaces: HashMap<String, NamespaceInfo>,
    namespaces_listing: Option<HashMap<String, NamespaceInfo>>,
    namespaces_synced: bool,
}

impl State {
    /// Applies one event; returns whether the visible state changed.
    fn apply(&mut self, change: Change) -> bool {
        match change {
            Change::Policy(event) => apply(
                event,
                &mut self.policies,
                &mut self.policies_listing,
                &mut self.policies_synced,
                |DeserializeGuard(policy): ListedPolicy| match policy {
                    // Only the name and the spec matter: keeping nothing else makes an
                    // update that changes neither (a resourceVersion, managedFields) a
                    // no-op rather than a rebuild.
                    Ok(policy) => {
                        let name = policy.metadata.name?;
                        Some((name.clone(), Ok(InjectionPolicy::new(&name, policy.spec))))
                    }
                    Err(invalid) => Some((invalid.metadata.name?, Err(invalid.error))),
                },
            ),
            Change::Namespace(event) => apply(
                event,
                &mut self.namespaces,
                &mut self.namespaces_listing,
                &mut self.namespaces_synced,
                |ns: PartialObjectMeta<Namespace>| {
                    let name = ns.metadata.name?;
                    Some((
                        name,
                        NamespaceInfo {
                            labels: ns.metadata.labels.unwrap_or_default(),
                            annotations: ns.metadata.annotations.unwrap_or_default(),
                        },
                    ))
                },
            ),
        }
    }

    fn synced(&self) -> bool {
        self.policies_synced && self.namespaces_synced
    }
}

/// A watcher event applied to a map: Init starts a fresh listing, InitDone replaces the map
/// with it (objects deleted while disconnected disappear), Apply and Delete edit in place.
/// Returns whether what tandem sees changed: an update to fields it does not read is not a
/// change, so a busy cluster does not rebuild the snapshot for nothing.
fn apply<V: PartialEq, E>(
    event: watcher::Event<E>,
    map: &mut HashMap<String, V>,
    listing: &mut Option<HashMap<String, V>>,
    synced: &mut bool,
    entry: impl Fn(E) -> Option<(String, V)>,
) -> bool {
    match event {
        watcher::Event::Init => {
            *listing = Some(HashMap::new());
            false
        }
        watcher::Event::InitApply(object) => {
            if let (Some(listing), Some((key, value))) = (listing.as_mut(), entry(object)) {
                listing.insert(key, value);
            }
            false
        }
        watcher::Event::InitDone => {
            let first = !*synced;
            *synced = true;
            match listing.take() {
                Some(listed) if listed != *map => {
                    *map = listed;
                    true
                }
                _ => first,
            }
        }
        watcher::Event::Apply(object) => entry(object).is_some_and(|(key, value)| {
            map.get(&key) != Some(&value) && {
                map.insert(key, value);
                true
            }
        }),
        watcher::Event::Delete(object) => {
            entry(object).is_some_and(|(key, _)| map.remove(&key).is_some())
        }
    }
}

/// Retries at a fixed interval.
struct Every(Duration);

impl Iterator for Every {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(self.0)
    }
}

impl Backoff for Every {
    fn reset(&mut self) {}
}

fn backoff(options: &Options) -> Box<dyn Backoff> {
    match options.retry_every {
        Some(delay) => Box::new(Every(delay)),
        None => Box::new(watcher::DefaultBackoff::default()),
    }
}

/// Follows policies and namespaces with the default [`Options`] until the task is dropped.
/// `ready` becomes true once both have been listed.
pub async fn run(
    client: Client,
    store: Arc<Store>,
    ready: watch::Sender<bool>,
    metrics: Arc<Metrics>,
) {
    run_with(client, store, ready, metrics, Options::default()).await;
}

/// [`run`] with explicit [`Options`].
pub async fn run_with(
    client: Client,
    store: Arc<Store>,
    ready: watch::Sender<bool>,
    metrics: Arc<Metrics>,
    options: Options,
) {
    let config = watcher::Config::default();
    let policies = watcher(Api::<ListedPolicy>::all(client.clone()), config.clone())
        .backoff(backoff(&options))
        .map(|event| event.map(Change::Policy).map_err(|e| (Source::Policies, e)));
    // Labels and annotations are all tandem needs of a namespace: metadata-only requests.
    let namespaces = watcher(Api::<PartialObjectMeta<Namespace>>::all(client), config)
        .backoff(backoff(&options))
        .map(|event| {
            event
                .map(Change::Namespace)
                .map_err(|e| (Source::Namespaces, e))
        });
    let mut changes = stream::select(policies.boxed(), namespaces.boxed());

    let mut state = State::default();
    // When the snapshot is due to be rebuilt: `settle` after the first change since the
    // last rebuild. A deadline, not a quiet period, so that a steady trickle of namespace
    // updates cannot postpone it for ever.
    let mut due: Option<Instant> = None;
    loop {
        let next = match due {
            Some(deadline) => match tokio::time::timeout_at(deadline, changes.next()).await {
                Ok(next) => next,
                Err(_) => {
                    publish(&state, &store, &metrics);
                    due = None;
                    if state.synced()
                        && ready.send_if_modified(|ready| !std::mem::replace(ready, true))
                    {
                        tracing::info!("policies and namespaces synced from the API server; ready");
                    }
                    continue;
                }
            },
            None => changes.next().await,
        };
        match next {
            Some(Ok(change)) => {
                if state.apply(change) && due.is_none() {
                    due = Some(Instant::now() + options.settle);
                }
            }
            Some(Err((source, error))) => report(source, &error, &metrics),
            None => return,
        }
    }
}

#[derive(Clone, Copy, Debug)]
enum Source {
    Policies,
    Namespaces,
}

/// Logs a watcher error with what to do about it. The watcher backs off and resumes or
/// re-lists by itself; serving goes on meanwhile with the last state.
fn report(source: Source, error: &watcher::Error, metrics: &Metrics) {
    let what = match source {
        Source::Policies => "injectionpolicies.tandem.dev",
        Source::Namespaces => "namespaces",
    };
    let status = match error {
        watcher::Error::WatchError(status) => Some(status.code),
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status))
        | watcher::Error::WatchFailed(kube::Error::Api(status)) => Some(status.code),
        _ => None,
    };
    if matches!(error, watcher::Error::WatchError(_)) && status == Some(410) {
        // The API server no longer has the history to resume from: routine, re-list.
        tracing::info!(resource = what, "watch expired; listing again");
        return;
    }
    metrics.policy_reload("kube", false);
    let hint = match (source, status) {
        (_, Some(401)) => "the service account token was rejected",
        (_, Some(403)) => {
            "RBAC: the service account needs get, list and watch on namespaces and injectionpolicies.tandem.dev"
        }
        (Source::Policies, Some(404)) => {
            "is the InjectionPolicy CRD installed? (tandem crd | kubectl apply -f -)"
        }
        _ => "retrying; reviews use the last synced policies meanwhile",
    };
    tracing::warn!(resource = what, %error, hint, "watching the API server failed");
}

fn publish(state: &State, store: &Store, metrics: &Metrics) {
    let mut unreadable = 0;
    let readable = state.policies.iter().filter_map(|(name, policy)| match policy {
        Ok(policy) => Some(policy.clone()),
        Err(error) => {
            tracing::warn!(policy = name, %error, "skipping an InjectionPolicy that cannot be read");
            unreadable += 1;
            None
        }
    });
    let readable: Vec<InjectionPolicy> = readable.collect();
    let invalid = store.set_cluster(readable, state.namespaces.clone());
    metrics.policy_reload("kube", invalid.is_empty() && unreadable == 0);
    tracing::info!(
        policies = state.policies.len(),
        namespaces = state.namespaces.len(),
        skipped = invalid.len() + unreadable,
        "policies and namespaces from the API server applied"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::{Resource, core::ObjectMeta};

    fn policy(yaml: &str) -> ListedPolicy {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn named(name: &str) -> ListedPolicy {
        policy(&format!(
            "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {{name: {name}}}\nspec: {{priority: 1}}\n"
        ))
    }

    fn namespace(name: &str) -> PartialObjectMeta<Namespace> {
        PartialObjectMeta {
            types: None,
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            _phantom: Default::default(),
        }
    }

    /// The policies held, by name, sorted (the map has no order).
    fn names(state: &State) -> Vec<&str> {
        let mut names: Vec<&str> = state.policies.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    #[test]
    fn updates_to_fields_tandem_does_not_read_are_not_changes() {
        let mut state = State::default();
        for change in [
            Change::Policy(watcher::Event::Init),
            Change::Policy(watcher::Event::InitDone),
            Change::Namespace(watcher::Event::Init),
            Change::Namespace(watcher::Event::InitDone),
        ] {
            state.apply(change);
        }
        let versioned = |version: &str, priority: i32| {
            policy(&format!(
                "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {{name: a, resourceVersion: \"{version}\"}}\nspec: {{priority: {priority}}}\n"
            ))
        };
        assert!(state.apply(Change::Policy(watcher::Event::Apply(versioned("1", 1)))));
        assert!(!state.apply(Change::Policy(watcher::Event::Apply(versioned("2", 1)))));
        assert!(state.apply(Change::Policy(watcher::Event::Apply(versioned("3", 2)))));

        let mut labelled = namespace("web");
        assert!(state.apply(Change::Namespace(watcher::Event::Apply(labelled.clone()))));
        labelled.metadata.resource_version = Some("7".into());
        assert!(!state.apply(Change::Namespace(watcher::Event::Apply(labelled.clone()))));
        labelled.metadata.labels = Some([("team".to_string(), "web".to_string())].into());
        assert!(state.apply(Change::Namespace(watcher::Event::Apply(labelled.clone()))));
        assert!(state.apply(Change::Namespace(watcher::Event::Delete(labelled.clone()))));
        assert!(!state.apply(Change::Namespace(watcher::Event::Delete(labelled))));
    }

    #[test]
    fn synced_only_after_both_lists() {
        let mut state = State::default();
        for event in [watcher::Event::Init, watcher::Event::InitApply(named("a"))] {
            assert!(!state.apply(Change::Policy(event)));
        }
        assert!(state.apply(Change::Policy(watcher::Event::InitDone)));
        assert!(!state.synced());
        state.apply(Change::Namespace(watcher::Event::Init));
        state.apply(Change::Namespace(watcher::Event::InitApply(namespace(
            "apps",
        ))));
        state.apply(Change::Namespace(watcher::Event::InitDone));
        assert!(state.synced());
        assert_eq!(names(&state), ["a"]);
        assert!(state.namespaces.contains_key("apps"));
    }

    #[test]
    fn a_relist_replaces_everything_only_when_done() {
        let mut state = State::default();
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(named("a")),
            watcher::Event::InitApply(named("b")),
            watcher::Event::InitDone,
        ] {
            state.apply(Change::Policy(event));
        }
        state.apply(Change::Policy(watcher::Event::Init));
        state.apply(Change::Policy(watcher::Event::InitApply(named("b"))));
        assert_eq!(
            names(&state),
            ["a", "b"],
            "the old set serves until the list is complete"
        );
        state.apply(Change::Policy(watcher::Event::InitDone));
        assert_eq!(names(&state), ["b"]);
    }

    #[test]
    fn unreadable_objects_are_kept_as_errors_and_deleted_by_name() {
        let bad = policy(
            "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {name: bad}\nspec: {priority: high}\n",
        );
        assert_eq!(bad.meta().name.as_deref(), Some("bad"));
        let mut state = State::default();
        state.apply(Change::Policy(watcher::Event::Apply(named("good"))));
        state.apply(Change::Policy(watcher::Event::Apply(bad.clone())));
        assert!(state.policies["good"].is_ok());
        let error = state.policies["bad"].as_ref().unwrap_err();
        assert!(
            error.contains("priority") || error.contains("high"),
            "{error}"
        );
        state.apply(Change::Policy(watcher::Event::Delete(bad)));
        assert_eq!(names(&state), ["good"]);
    }
}

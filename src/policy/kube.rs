//! Policies and namespaces from the API server (`--kube`): InjectionPolicy objects and
//! Namespace metadata, each followed with a kube-runtime watcher (list, then watch; a broken
//! watch re-lists by itself with backoff). Events are applied to local maps and the store's
//! snapshot is rebuilt at most every [`SETTLE`], never on the review path.
//!
//! `/readyz` turns true once both have been listed in full. If the API server goes away
//! afterwards, reviews go on with the last synced state while the watchers retry.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::{StreamExt, stream};
use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, Client,
    core::{DeserializeGuard, PartialObjectMeta},
    runtime::{WatchStreamExt, watcher},
};
use tokio::sync::watch;

use crate::{
    policy::{snapshot::NamespaceInfo, store::Store, types::InjectionPolicy},
    telemetry::Metrics,
};

/// How long events may gather before the snapshot is rebuilt.
pub const SETTLE: Duration = Duration::from_millis(100);

/// An InjectionPolicy as listed: one that does not deserialize (a field this version does
/// not know, a CRD newer than the binary) is kept as its error, so that it cannot fail the
/// whole list.
type ListedPolicy = DeserializeGuard<InjectionPolicy>;

enum Change {
    Policy(watcher::Event<ListedPolicy>),
    Namespace(watcher::Event<PartialObjectMeta<Namespace>>),
}

/// Local state: what has been listed and watched so far.
#[derive(Default)]
struct State {
    /// By name; `Err` holds why the object could not be read.
    policies: BTreeMap<String, Result<InjectionPolicy, String>>,
    policies_listing: Option<BTreeMap<String, Result<InjectionPolicy, String>>>,
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
                    Ok(policy) => Some((policy.metadata.name.clone()?, Ok(policy))),
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
fn apply<K: Ord + std::hash::Hash + Eq, V, M, E>(
    event: watcher::Event<E>,
    map: &mut M,
    listing: &mut Option<M>,
    synced: &mut bool,
    entry: impl Fn(E) -> Option<(K, V)>,
) -> bool
where
    M: Default + Extend<(K, V)> + Remove<K>,
{
    match event {
        watcher::Event::Init => {
            *listing = Some(M::default());
            false
        }
        watcher::Event::InitApply(object) => {
            if let (Some(listing), Some(pair)) = (listing.as_mut(), entry(object)) {
                listing.extend([pair]);
            }
            false
        }
        watcher::Event::InitDone => {
            if let Some(listed) = listing.take() {
                *map = listed;
            }
            *synced = true;
            true
        }
        watcher::Event::Apply(object) => {
            if let Some(pair) = entry(object) {
                map.extend([pair]);
            }
            true
        }
        watcher::Event::Delete(object) => {
            if let Some((key, _)) = entry(object) {
                map.remove_key(&key);
            }
            true
        }
    }
}

/// `remove` for both map types.
trait Remove<K> {
    fn remove_key(&mut self, key: &K);
}

impl<K: Ord, V> Remove<K> for BTreeMap<K, V> {
    fn remove_key(&mut self, key: &K) {
        self.remove(key);
    }
}

impl<K: std::hash::Hash + Eq, V> Remove<K> for HashMap<K, V> {
    fn remove_key(&mut self, key: &K) {
        self.remove(key);
    }
}

/// Follows policies and namespaces until the task is dropped. `ready` becomes true once
/// both have been listed.
pub async fn run(client: Client, store: Arc<Store>, ready: watch::Sender<bool>, metrics: Arc<Metrics>) {
    let config = watcher::Config::default();
    let policies = watcher(Api::<ListedPolicy>::all(client.clone()), config.clone())
        .default_backoff()
        .map(|event| event.map(Change::Policy));
    // Labels and annotations are all tandem needs of a namespace: metadata-only requests.
    let namespaces = watcher(Api::<PartialObjectMeta<Namespace>>::all(client), config)
        .default_backoff()
        .map(|event| event.map(Change::Namespace));
    let mut changes = stream::select(policies.boxed(), namespaces.boxed());

    let mut state = State::default();
    let mut dirty = false;
    loop {
        let next = if dirty {
            match tokio::time::timeout(SETTLE, changes.next()).await {
                Ok(next) => next,
                Err(_) => {
                    publish(&state, &store, &metrics);
                    dirty = false;
                    if state.synced() {
                        ready.send_replace(true);
                    }
                    continue;
                }
            }
        } else {
            changes.next().await
        };
        match next {
            Some(Ok(change)) => dirty |= state.apply(change),
            Some(Err(error)) => {
                // The watcher backs off and re-lists by itself; serving goes on meanwhile.
                metrics.policy_reload("kube", false);
                tracing::warn!(%error, "watching the API server failed; retrying");
            }
            None => return,
        }
    }
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

    fn names(state: &State) -> Vec<&str> {
        state.policies.keys().map(String::as_str).collect()
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
        state.apply(Change::Namespace(watcher::Event::InitApply(namespace("apps"))));
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
        assert_eq!(names(&state), ["a", "b"], "the old set serves until the list is complete");
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
        assert!(error.contains("priority") || error.contains("high"), "{error}");
        state.apply(Change::Policy(watcher::Event::Delete(bad)));
        assert_eq!(names(&state), ["good"]);
    }
}

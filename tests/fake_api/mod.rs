//! A scripted Kubernetes API server on 127.0.0.1: list and watch of InjectionPolicies and
//! Namespaces (metadata-only too), enough for kube-runtime's watcher. The test changes the
//! objects; open watches get the events, resumed watches get the history since their
//! resourceVersion, or `410 Gone` once that history is forgotten, as a real API server does.

use std::{
    collections::BTreeMap,
    convert::Infallible,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use bytes::Bytes;
use futures::{StreamExt, channel::mpsc};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::{Request, Response, StatusCode, body::Frame};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

/// The two resources tandem follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Policies,
    Namespaces,
}

const POLICIES_PATH: &str = "/apis/tandem.dev/v1alpha1/injectionpolicies";
const NAMESPACES_PATH: &str = "/api/v1/namespaces";

struct Watch {
    metadata_only: bool,
    events: mpsc::UnboundedSender<Bytes>,
}

#[derive(Default)]
struct Collection {
    objects: BTreeMap<String, Value>,
    /// Events (resourceVersion, type, object) newer than `forgotten`.
    history: Vec<(u64, &'static str, Value)>,
    /// Watches from a resourceVersion below this get 410 Gone.
    forgotten: u64,
    watches: Vec<Watch>,
    lists: usize,
    watch_requests: usize,
    /// Answer every request with this status code.
    failing: Option<u16>,
}

#[derive(Default)]
struct State {
    resource_version: u64,
    policies: Collection,
    namespaces: Collection,
}

impl State {
    fn collection(&mut self, kind: Kind) -> &mut Collection {
        match kind {
            Kind::Policies => &mut self.policies,
            Kind::Namespaces => &mut self.namespaces,
        }
    }
}

/// The fake API server. Created stopped (its port refuses connections) until
/// [`FakeApi::start`].
pub struct FakeApi {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    server: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl FakeApi {
    /// A fake on a free port, not listening yet.
    pub fn new() -> FakeApi {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
        let addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        drop(listener);
        FakeApi {
            addr,
            state: Arc::default(),
            server: Mutex::new(None),
        }
    }

    /// A kube client for this server (plain HTTP, no credentials).
    pub fn client(&self) -> kube::Client {
        let url = format!("http://{}", self.addr)
            .parse()
            .expect("a valid URL");
        kube::Client::try_from(kube::Config::new(url)).expect("a client for a plain-HTTP URL")
    }

    /// Starts answering on the port.
    pub async fn start(&self) {
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .expect("binding the fake API server's port again");
        let state = self.state.clone();
        let task = tokio::spawn(async move {
            // Connections live in the set, so that stopping the server cuts them too.
            let mut connections = tokio::task::JoinSet::new();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = state.clone();
                connections.spawn(async move {
                    let service = hyper::service::service_fn(move |request| {
                        let response = handle(&state, &request);
                        async move { Ok::<_, Infallible>(response) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        *self.server.lock().unwrap() = Some(task);
    }

    /// Stops listening and cuts every connection: the API server is gone.
    pub async fn stop(&self) {
        let task = self.server.lock().unwrap().take();
        if let Some(task) = task {
            task.abort();
            let _ = task.await;
        }
        let mut state = self.state.lock().unwrap();
        for kind in [Kind::Policies, Kind::Namespaces] {
            state.collection(kind).watches.clear();
        }
    }

    /// Creates or replaces an object (ADDED or MODIFIED to open watches).
    pub fn apply(&self, kind: Kind, mut object: Value) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let rv = state.resource_version;
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        let name = object["metadata"]["name"]
            .as_str()
            .expect("objects have a name")
            .to_string();
        let collection = state.collection(kind);
        let kind = if collection.objects.contains_key(&name) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        collection.objects.insert(name, object.clone());
        collection.event(rv, kind, object);
    }

    /// Deletes an object (DELETED to open watches).
    pub fn delete(&self, kind: Kind, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let rv = state.resource_version;
        let collection = state.collection(kind);
        let mut object = collection
            .objects
            .remove(name)
            .expect("deleting an object that exists");
        object["metadata"]["resourceVersion"] = json!(rv.to_string());
        collection.event(rv, "DELETED", object);
    }

    /// Deletes an object without telling anyone, and forgets the history: as if it was
    /// deleted while the watch was down and the API server compacted since. Only a re-list
    /// can find out.
    pub fn delete_unseen(&self, kind: Kind, name: &str) {
        let mut state = self.state.lock().unwrap();
        state.resource_version += 1;
        let rv = state.resource_version;
        let collection = state.collection(kind);
        collection
            .objects
            .remove(name)
            .expect("deleting an object that exists");
        collection.history.clear();
        collection.forgotten = rv;
    }

    /// Sends `410 Gone` ("too old resource version") on the open watches and forgets the
    /// history, so that resuming fails too and the client must re-list.
    pub fn expire_watches(&self, kind: Kind) {
        let mut state = self.state.lock().unwrap();
        let rv = state.resource_version;
        let collection = state.collection(kind);
        for watch in collection.watches.drain(..) {
            let _ = watch.events.unbounded_send(gone(rv));
        }
        collection.history.clear();
        collection.forgotten = rv + 1;
    }

    /// Ends the open watches' responses, as the API server does at `timeoutSeconds`.
    pub fn end_watches(&self, kind: Kind) {
        self.state.lock().unwrap().collection(kind).watches.clear();
    }

    /// Answer every request for `kind` with `status` (`None`: answer normally again).
    pub fn fail(&self, kind: Kind, status: Option<u16>) {
        let mut state = self.state.lock().unwrap();
        let collection = state.collection(kind);
        collection.failing = status;
        if status.is_some() {
            collection.watches.clear();
        }
    }

    /// How many list requests for `kind` were answered with a list.
    pub fn lists(&self, kind: Kind) -> usize {
        self.state.lock().unwrap().collection(kind).lists
    }

    /// How many watches of `kind` are open.
    pub fn open_watches(&self, kind: Kind) -> usize {
        let mut state = self.state.lock().unwrap();
        let collection = state.collection(kind);
        collection.watches.retain(|w| !w.events.is_closed());
        collection.watches.len()
    }
}

impl Drop for FakeApi {
    fn drop(&mut self) {
        if let Some(task) = self.server.lock().unwrap().take() {
            task.abort();
        }
    }
}

impl Collection {
    fn event(&mut self, rv: u64, kind: &'static str, object: Value) {
        self.watches.retain(|watch| {
            watch
                .events
                .unbounded_send(event_line(kind, &object, watch.metadata_only))
                .is_ok()
        });
        self.history.push((rv, kind, object));
    }
}

fn event_line(kind: &str, object: &Value, metadata_only: bool) -> Bytes {
    let object = if metadata_only {
        metadata(object)
    } else {
        object.clone()
    };
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).expect("JSON");
    line.push(b'\n');
    line.into()
}

fn gone(rv: u64) -> Bytes {
    let status = json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("too old resource version: 1 ({rv})"), "reason": "Expired", "code": 410,
    });
    let mut line = serde_json::to_vec(&json!({"type": "ERROR", "object": status})).expect("JSON");
    line.push(b'\n');
    line.into()
}

/// An object as a metadata-only (`as=PartialObjectMetadata`) request gets it.
fn metadata(object: &Value) -> Value {
    json!({
        "apiVersion": "meta.k8s.io/v1",
        "kind": "PartialObjectMetadata",
        "metadata": object["metadata"],
    })
}

type Body = BoxBody<Bytes, Infallible>;

fn json_response(status: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .expect("a valid response")
}

fn status(code: u16, reason: &str, message: &str) -> Response<Body> {
    json_response(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code,
        }),
    )
}

fn handle(state: &Mutex<State>, request: &Request<hyper::body::Incoming>) -> Response<Body> {
    let kind = match request.uri().path() {
        POLICIES_PATH => Kind::Policies,
        NAMESPACES_PATH => Kind::Namespaces,
        other => {
            return status(
                404,
                "NotFound",
                &format!("the server could not find {other}"),
            );
        }
    };
    let query: BTreeMap<&str, &str> = request
        .uri()
        .query()
        .unwrap_or_default()
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .collect();
    let metadata_only = request
        .headers()
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("as=PartialObjectMetadata"));
    let watch = matches!(query.get("watch"), Some(&"true" | &"1"));

    let mut state = state.lock().unwrap();
    let current = state.resource_version;
    let collection = state.collection(kind);
    if let Some(code) = collection.failing {
        return status(
            code,
            "InternalError",
            "the fake API server was told to fail",
        );
    }
    if !watch {
        collection.lists += 1;
        let items: Vec<Value> = collection
            .objects
            .values()
            .map(|o| {
                if metadata_only {
                    metadata(o)
                } else {
                    o.clone()
                }
            })
            .collect();
        let (api_version, list_kind) = match (metadata_only, kind) {
            (true, _) => ("meta.k8s.io/v1", "PartialObjectMetadataList"),
            (false, Kind::Policies) => ("tandem.dev/v1alpha1", "InjectionPolicyList"),
            (false, Kind::Namespaces) => ("v1", "NamespaceList"),
        };
        return json_response(
            200,
            &json!({
                "apiVersion": api_version, "kind": list_kind,
                "metadata": {"resourceVersion": current.to_string()},
                "items": items,
            }),
        );
    }

    collection.watch_requests += 1;
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|rv| rv.parse().ok())
        .unwrap_or(current);
    let (events, body) = mpsc::unbounded::<Bytes>();
    if from < collection.forgotten {
        let _ = events.unbounded_send(gone(current));
        drop(events);
    } else {
        for (rv, kind, object) in &collection.history {
            if *rv > from {
                let _ = events.unbounded_send(event_line(kind, object, metadata_only));
            }
        }
        collection.watches.push(Watch {
            metadata_only,
            events,
        });
    }
    let body = StreamBody::new(body.map(|bytes| Ok::<_, Infallible>(Frame::data(bytes))));
    Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .expect("a valid response")
}

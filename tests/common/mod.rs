//! What the integration tests share: the real server started on 127.0.0.1 with a real
//! certificate, HTTPS clients for HTTP/1.1 and HTTP/2, fixtures, and applying a response's
//! patch to get the pod the API server would store.

#![allow(dead_code)] // each test binary uses its own part of this module

pub mod binary;
pub mod load;
pub mod oracle;
pub mod volume;

use std::{
    net::SocketAddr,
    num::NonZeroUsize,
    path::{Path, PathBuf},
    sync::{Arc, Once},
    time::Duration,
};

use base64::Engine as _;
use serde_json::{Value, json};
use tandem::{
    policy::{InjectionPolicy, source::store::Store},
    server::{
        Server, Shutdown,
        limits::Limits,
        routes::{AppState, Review},
        tls::{self, Files, Reloading},
    },
    telemetry::Metrics,
};
use tokio::sync::{oneshot, watch};

/// The repository root (fixtures, policies, examples).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn install_crypto() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    });
}

/// How to start a test server.
pub struct Options {
    pub policies: Vec<InjectionPolicy>,
    pub max_body: usize,
    pub synced: bool,
    pub shutdown: Shutdown,
    /// Serve these files (and trust this CA in [`TestServer::client`]) instead of a fresh
    /// pair for `localhost` and `127.0.0.1`.
    pub certificate: Option<(Files, PathBuf)>,
    /// Require client certificates signed by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
    /// Connection threads; two, so that connections are spread over more than one.
    pub workers: NonZeroUsize,
    /// Timeouts and caps on connections.
    pub limits: Limits,
    /// What answers a review body (`admission::review`).
    pub review: Review,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            policies: Vec::new(),
            max_body: 3 * 1024 * 1024,
            synced: true,
            shutdown: Shutdown {
                delay: Duration::ZERO,
                timeout: Duration::from_secs(5),
            },
            certificate: None,
            client_ca: None,
            workers: NonZeroUsize::new(2).unwrap(),
            limits: Limits::default(),
            review: tandem::admission::review,
        }
    }
}

/// A real tandem server on 127.0.0.1 (ephemeral ports), in this process.
pub struct TestServer {
    pub addr: SocketAddr,
    pub operations: SocketAddr,
    /// The CA that signed the server's certificate (for `localhost` and `127.0.0.1`, unless
    /// [`Options::certificate`] said otherwise).
    pub ca: PathBuf,
    /// The directory of the served certificate file.
    pub cert_dir: PathBuf,
    pub store: Arc<Store>,
    pub metrics: Arc<Metrics>,
    pub resolver: Arc<Reloading>,
    pub synced: watch::Sender<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
    _tls_watch: tls::TlsWatch,
    _dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> TestServer {
        Self::start_with(Options::default()).await
    }

    pub async fn start_with(options: Options) -> TestServer {
        install_crypto();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let (files, ca) = match options.certificate {
            Some(given) => given,
            None => {
                let names = ["localhost", "127.0.0.1"].map(String::from);
                let written = tandem::certs::write(&dir.path().join("tls"), &names, 2)
                    .expect("test certificates");
                let files = Files {
                    cert: written.cert,
                    key: written.key,
                };
                (files, written.ca_cert)
            }
        };
        let cert_dir = files
            .cert
            .parent()
            .expect("the certificate is in a directory")
            .to_path_buf();
        let metrics = Metrics::new();
        let store = Store::new("tandem.dev", Some(metrics.clone()));
        if !options.policies.is_empty() {
            store.set_files(options.policies);
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .expect("installed above");
        let resolver = Reloading::new(files, provider).expect("the certificate loads");
        let config = tls::server_config(resolver.clone(), options.client_ca.as_deref())
            .expect("a TLS config");
        let tls_watch =
            tls::watch(resolver.clone(), metrics.clone()).expect("watching the certificate");
        let (synced_tx, synced) = watch::channel(options.synced);
        let state = Arc::new(AppState {
            store: store.clone(),
            metrics: metrics.clone(),
            max_body: options.max_body,
            limits: options.limits,
            synced,
            stopping: Default::default(),
            review: options.review,
        });
        let localhost: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let server = Server::bind(localhost, localhost, config, state, options.workers)
            .await
            .expect("binding to 127.0.0.1");
        let addr = server.webhook_addr().unwrap();
        let operations = server.operations_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = options.shutdown;
        let task = tokio::spawn(async move {
            server
                .run(
                    async {
                        let _ = stopped.await;
                    },
                    shutdown,
                )
                .await;
        });
        TestServer {
            addr,
            operations,
            ca,
            cert_dir,
            store,
            metrics,
            resolver,
            synced: synced_tx,
            stop: Some(stop),
            task: Some(task),
            _tls_watch: tls_watch,
            _dir: dir,
        }
    }

    /// `https://localhost:<port>/mutate`.
    pub fn url(&self) -> String {
        format!("https://localhost:{}/mutate", self.addr.port())
    }

    pub fn operations_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.operations)
    }

    /// A client that trusts only the test CA, speaking HTTP/1.1 or (by prior knowledge
    /// through ALPN) HTTP/2.
    pub fn client(&self, http2: bool) -> reqwest::Client {
        client(&self.ca, http2)
    }

    /// POSTs `review` and returns the status and the parsed body.
    pub async fn post(&self, client: &reqwest::Client, review: &Value) -> (u16, Value) {
        let response = client
            .post(self.url())
            .header("content-type", "application/json")
            .body(review.to_string())
            .send()
            .await
            .expect("the server answers");
        let status = response.status().as_u16();
        let body = response.json().await.expect("a JSON body");
        (status, body)
    }

    /// Signals shutdown and waits for the server to finish.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Starts shutdown without waiting for it.
    pub fn signal_stop(&mut self) -> tokio::task::JoinHandle<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.take().expect("not stopped yet")
    }
}

/// A client trusting `ca` only.
pub fn client(ca: &Path, http2: bool) -> reqwest::Client {
    client_builder(ca, http2).build().expect("a client")
}

/// [`client`]'s builder, to add to (`resolve`, `tls_info`, `identity`…).
pub fn client_builder(ca: &Path, http2: bool) -> reqwest::ClientBuilder {
    install_crypto();
    let pem = std::fs::read(ca).expect("the CA file");
    let certificate = reqwest::Certificate::from_pem(&pem).expect("a PEM CA");
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(certificate)
        .timeout(Duration::from_secs(10));
    if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    }
}

/// One of the benchmark kit's fixtures (AdmissionReviews as the API server sends them),
/// as copied into `tests/data/reviews/bench-<name>.json`.
pub fn bench_fixture(name: &str) -> Value {
    let path = root()
        .join("tests/data/reviews")
        .join(format!("bench-{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

/// An AdmissionReview for creating `pod` in `namespace`.
pub fn review(pod: &Value, namespace: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"},
        }
    })
}

/// The pod the API server would store: the response's patch applied to the request's pod.
/// Panics unless the response is an allowed v1 AdmissionReview for the request's uid.
pub fn patched(request: &Value, response: &Value) -> Value {
    assert_eq!(response["apiVersion"], "admission.k8s.io/v1", "{response}");
    assert_eq!(response["kind"], "AdmissionReview", "{response}");
    assert_eq!(
        response["response"]["uid"], request["request"]["uid"],
        "uid must be echoed"
    );
    assert_eq!(response["response"]["allowed"], true, "{response}");
    let mut pod = request["request"]["object"].clone();
    if let Some(patch) = response["response"]["patch"].as_str() {
        assert_eq!(response["response"]["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .expect("the patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("the patch is a JSON patch");
        json_patch::patch(&mut pod, &patch).expect("the patch applies to the pod");
    }
    pod
}

/// Names of the containers tandem added (for the restricted-profile check).
pub fn injected_containers(pod: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .filter(|name| name.starts_with("tandem-"))
        .map(String::from)
        .collect()
}

/// Asserts the oracle accepts `pod` and that tandem's containers are "restricted".
pub fn assert_valid_pod(pod: &Value) {
    let injected = injected_containers(pod);
    let names: Vec<&str> = injected.iter().map(String::as_str).collect();
    oracle::assert_valid(pod, &names);
}

/// Policies from YAML text (one or more InjectionPolicy documents).
pub fn policies(yaml: &str) -> Vec<InjectionPolicy> {
    serde_saphyr::from_multiple(yaml).expect("test policies parse")
}

/// A snapshot of the built-in policies plus `extra`, with `namespaces` known as the API
/// server would report them. Panics if a policy is invalid.
pub fn snapshot(
    extra: Vec<InjectionPolicy>,
    namespaces: Option<&std::collections::HashMap<String, tandem::policy::snapshot::NamespaceInfo>>,
) -> tandem::policy::snapshot::Snapshot {
    let all = tandem::policy::source::builtin::policies()
        .into_iter()
        .chain(extra);
    let (snapshot, errors) =
        tandem::policy::snapshot::Snapshot::build("tandem.dev", all, namespaces);
    assert!(errors.is_empty(), "{errors:#?}");
    snapshot
}

/// Runs the engine on `pod` in `namespace`: the evaluation and, when allowed, the pod with
/// the patch applied (the original when there is nothing to add).
pub fn mutate(
    snapshot: &tandem::policy::snapshot::Snapshot,
    namespace: &str,
    pod: &Value,
) -> (tandem::engine::Evaluation, Option<Value>) {
    let json = pod.to_string();
    let parsed = tandem::pod::Pod::parse(&json).expect("the pod parses");
    let evaluation = tandem::engine::evaluate(snapshot, namespace, &parsed);
    if evaluation.denial().is_some() {
        return (evaluation, None);
    }
    let mut result = pod.clone();
    if let Some(patch) = tandem::engine::patch(&parsed, &evaluation) {
        tandem::engine::apply(&mut result, &patch).expect("the patch applies");
    }
    (evaluation, Some(result))
}

/// A small valid pod with `annotations` (none: no `annotations` object at all) and no
/// volumes or init containers.
pub fn pod(annotations: &[(&str, &str)]) -> Value {
    let mut pod = json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "app", "namespace": "default", "labels": {"app": "web"}},
        "spec": {"containers": [{
            "name": "web",
            "image": "ghcr.io/example/web:1.0",
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
        }]}
    });
    if !annotations.is_empty() {
        let map: serde_json::Map<String, Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect();
        pod["metadata"]["annotations"] = Value::Object(map);
    }
    pod
}

/// The names of a pod's init containers and containers.
pub fn container_names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .map(|c| c["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The container called `name` (init or app).
pub fn container<'a>(pod: &'a Value, name: &str) -> &'a Value {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|list| pod["spec"][list].as_array().into_iter().flatten())
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no container {name} in {pod}"))
}

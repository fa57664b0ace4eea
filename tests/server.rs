//! The webhook's transport and error contract (product.md §3 and §5), over HTTP/1.1 and
//! HTTP/2 against the real server: what a good review gets, what each kind of bad request
//! gets and that the next good one is still served, connection reuse, TLS versions, probes
//! and metrics.

mod common;

use std::{
    net::SocketAddr,
    process::{Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use common::{Options, TestServer, bench_fixture, patched};
use futures::channel::mpsc;
use reqwest::{Method, StatusCode, Version};
use rstest::rstest;
use rustls::{
    ClientConfig, ProtocolVersion, RootCertStore, SupportedProtocolVersion,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::TlsConnector;

/// A review the built-in policy patches: the benchmark kit's typical pod (log shipper and
/// git clone).
fn good() -> Value {
    bench_fixture("typical")
}

fn expected_version(http2: bool) -> Version {
    if http2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    }
}

/// POSTs `body` as JSON to /mutate.
async fn post_raw(
    server: &TestServer,
    client: &reqwest::Client,
    body: impl Into<reqwest::Body>,
) -> reqwest::Response {
    client
        .post(server.url())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("the server answers")
}

/// Sends the good review and checks it is patched, over the expected protocol.
async fn assert_patched(server: &TestServer, client: &reqwest::Client, http2: bool) {
    let request = good();
    let response = post_raw(server, client, request.to_string()).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.version(), expected_version(http2));
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(body["response"]["uid"], request["request"]["uid"]);
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(body["response"]["patchType"], "JSONPatch", "{body}");
    let pod = patched(&request, &body);
    let names = common::injected_containers(&pod);
    assert!(!names.is_empty(), "nothing was injected: {body}");
}

/// Checks the answer is `status` with a one-line JSON `{"error": …}` mentioning `mentions`.
async fn assert_error(response: reqwest::Response, status: u16, mentions: &str) -> String {
    let got = response.status().as_u16();
    let content_type = response.headers().get("content-type").cloned();
    let text = response.text().await.expect("an error body");
    assert_eq!(got, status, "{text}");
    assert_eq!(
        content_type.as_ref().and_then(|v| v.to_str().ok()),
        Some("application/json"),
        "{text}"
    );
    let line = text
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("ends with a newline: {text:?}"));
    assert!(!line.contains('\n'), "one line: {text:?}");
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let object = value.as_object().expect("a JSON object");
    assert_eq!(object.len(), 1, "only `error`: {text}");
    let message = object["error"]
        .as_str()
        .expect("a string error")
        .to_string();
    assert!(
        message.contains(mentions),
        "{message:?} should mention {mentions:?}"
    );
    message
}

/// A body sent with `Content-Length`, or streamed without one (chunked in HTTP/1.1, plain
/// DATA frames in HTTP/2).
#[derive(Clone, Copy, Debug)]
enum Framing {
    Length,
    Chunked,
}

fn framed(bytes: Vec<u8>, framing: Framing) -> reqwest::Body {
    match framing {
        Framing::Length => bytes.into(),
        Framing::Chunked => {
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                bytes.chunks(16 * 1024).map(|c| Ok(c.to_vec())).collect();
            reqwest::Body::wrap_stream(futures::stream::iter(chunks))
        }
    }
}

/// The good review, padded with trailing whitespace (valid JSON) to exactly `size` bytes.
fn good_of_size(size: usize) -> Vec<u8> {
    let mut body = good().to_string().into_bytes();
    assert!(body.len() <= size);
    body.resize(size, b' ');
    body
}

#[rstest]
#[tokio::test]
async fn a_good_review_is_patched_over_the_negotiated_protocol(#[values(false, true)] http2: bool) {
    let server = TestServer::start().await;
    let client = server.client(http2);
    assert_patched(&server, &client, http2).await;
    server.stop().await;
}

/// One request of a bad-request table: what is sent and what must come back.
struct Bad {
    name: &'static str,
    method: Method,
    path: &'static str,
    content_type: Option<&'static str>,
    body: Vec<u8>,
    framing: Framing,
    status: u16,
    mentions: &'static str,
}

fn bad_requests(max_body: usize) -> Vec<Bad> {
    let json = Some("application/json");
    let review = |value: Value| value.to_string().into_bytes();
    let mut without_request = good();
    without_request.as_object_mut().unwrap().remove("request");
    let mut v1beta1 = good();
    v1beta1["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let mut without_uid = good();
    without_uid["request"]
        .as_object_mut()
        .unwrap()
        .remove("uid");
    let mut wrong_kind = good();
    wrong_kind["kind"] = json!("Pod");
    let post = |name, body, status, mentions| Bad {
        name,
        method: Method::POST,
        path: "/mutate",
        content_type: json,
        body,
        framing: Framing::Length,
        status,
        mentions,
    };
    vec![
        post(
            "malformed JSON",
            br#"{"apiVersion": "admission.k8s.io/v1", "kind": "#.to_vec(),
            400,
            "not valid JSON",
        ),
        post("empty body", Vec::new(), 400, "not valid JSON"),
        post(
            "a JSON array",
            b"[1, 2]".to_vec(),
            400,
            "not an AdmissionReview: invalid type",
        ),
        post(
            "a request without a uid",
            review(without_uid),
            400,
            "not an AdmissionReview: missing field `uid`",
        ),
        post(
            "a request that is not an object",
            review(
                json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": "pods"}),
            ),
            400,
            "not an AdmissionReview: invalid type: string",
        ),
        post(
            "not an AdmissionReview",
            review(wrong_kind),
            400,
            "accepted: kind AdmissionReview",
        ),
        post(
            "a review without a request",
            review(without_request),
            400,
            "has no request",
        ),
        post(
            "admission.k8s.io/v1beta1",
            review(v1beta1),
            400,
            "accepted: admission.k8s.io/v1",
        ),
        Bad {
            name: "GET /mutate",
            method: Method::GET,
            body: Vec::new(),
            content_type: None,
            ..post("", Vec::new(), 405, "only POST")
        },
        Bad {
            name: "PUT /mutate",
            method: Method::PUT,
            ..post("", review(good()), 405, "only POST")
        },
        Bad {
            name: "text/plain",
            content_type: Some("text/plain"),
            ..post("", review(good()), 415, "application/json")
        },
        Bad {
            name: "no content type",
            content_type: None,
            ..post("", review(good()), 415, "application/json")
        },
        Bad {
            name: "unknown path",
            path: "/validate",
            ..post("", review(good()), 404, "POST /mutate")
        },
        Bad {
            name: "the root path",
            method: Method::GET,
            path: "/",
            ..post("", Vec::new(), 404, "POST /mutate")
        },
        post(
            "above max_body, with Content-Length",
            vec![b' '; max_body + 1],
            413,
            "larger than",
        ),
        Bad {
            name: "above max_body, chunked",
            framing: Framing::Chunked,
            ..post("", vec![b' '; 2 * max_body], 413, "larger than")
        },
    ]
}

#[rstest]
#[tokio::test]
async fn each_bad_request_gets_a_one_line_json_error_and_the_next_review_is_served(
    #[values(false, true)] http2: bool,
) {
    let max_body = 64 * 1024;
    let server = TestServer::start_with(Options {
        max_body,
        ..Options::default()
    })
    .await;
    let client = server.client(http2);
    let base = format!("https://localhost:{}", server.addr.port());
    for bad in bad_requests(max_body) {
        let mut request = client.request(bad.method.clone(), format!("{base}{}", bad.path));
        if let Some(content_type) = bad.content_type {
            request = request.header("content-type", content_type);
        }
        if !bad.body.is_empty() || bad.method == Method::POST {
            request = request.body(framed(bad.body, bad.framing));
        }
        let response = request
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e:?}", bad.name));
        assert_eq!(response.version(), expected_version(http2), "{}", bad.name);
        let allow = response.headers().get("allow").cloned();
        let message = assert_error(response, bad.status, bad.mentions).await;
        if bad.status == 405 {
            assert_eq!(allow.expect("405 carries Allow"), "POST", "{}", bad.name);
        }
        eprintln!("{}: {} {message}", bad.name, bad.status);
        // The same client, and where the connection survived the same connection.
        assert_patched(&server, &client, http2).await;
    }
    server.stop().await;
}

#[rstest]
#[tokio::test]
async fn a_body_of_exactly_max_body_is_read_and_one_byte_more_is_refused(
    #[values(false, true)] http2: bool,
    #[values(Framing::Length, Framing::Chunked)] framing: Framing,
) {
    // The default limit (3 MiB) is above axum's own default body limit (2 MB): the whole
    // limit must be usable.
    let server = TestServer::start().await;
    let max_body = Options::default().max_body;
    let client = server.client(http2);
    let response = post_raw(&server, &client, framed(good_of_size(max_body), framing)).await;
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["response"]["patchType"], "JSONPatch");

    let response = post_raw(
        &server,
        &client,
        framed(good_of_size(max_body + 1), framing),
    )
    .await;
    assert_error(response, 413, &format!("larger than {max_body} bytes")).await;
    assert_patched(&server, &client, http2).await;
    server.stop().await;
}

#[tokio::test]
async fn a_body_declared_far_above_max_body_is_refused_before_it_is_sent() {
    let server = TestServer::start().await;
    let declared = 3 * Options::default().max_body;
    let mut tls = connect(&server, &rustls::version::TLS13).await.unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {declared}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    // Not one byte of the body is sent: the answer must come anyway, and the connection
    // end, since the body will not be read.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), tls.read_to_end(&mut answer))
        .await
        .expect("answered without the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 413 "), "{answer}");
    assert!(answer.contains("larger than"), "{answer}");
    let client = server.client(false);
    assert_patched(&server, &client, false).await;
    server.stop().await;
}

/// A TCP relay in front of the server that counts the connections clients open.
struct CountingRelay {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
}

impl CountingRelay {
    async fn start(target: SocketAddr) -> CountingRelay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut outbound = TcpStream::connect(target).await.unwrap();
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                });
            }
        });
        CountingRelay { addr, connections }
    }

    /// A client for `server` that reaches it through this relay.
    fn client(&self, server: &TestServer, http2: bool) -> (reqwest::Client, String) {
        let client = common::client_builder(&server.ca, http2)
            .resolve("localhost", self.addr)
            .build()
            .unwrap();
        let url = format!("https://localhost:{}/mutate", self.addr.port());
        (client, url)
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

#[rstest]
#[tokio::test]
async fn many_reviews_travel_over_one_kept_alive_connection(#[values(false, true)] http2: bool) {
    let server = TestServer::start().await;
    let relay = CountingRelay::start(server.addr).await;
    let (client, url) = relay.client(&server, http2);
    let request = good();
    for _ in 0..25 {
        let response = client
            .post(&url)
            .header("content-type", "application/json")
            .body(request.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(response.version(), expected_version(http2));
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        patched(&request, &body);
    }
    assert_eq!(
        relay.connections(),
        1,
        "every review reused the first connection"
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_reviews_are_streams_of_one_http2_connection() {
    const STREAMS: usize = 16;
    let server = TestServer::start().await;
    let relay = CountingRelay::start(server.addr).await;
    let (client, url) = relay.client(&server, true);
    let body = good().to_string().into_bytes();
    let (first, second) = body.split_at(body.len() / 2);

    // Each request sends half its body now and the rest only after every request has
    // started: none can be answered before all of them are open at once.
    let mut senders = Vec::new();
    let mut pending = Vec::new();
    for _ in 0..STREAMS {
        let (tx, rx) = mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
        tx.unbounded_send(Ok(first.to_vec())).unwrap();
        senders.push(tx);
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(rx))
            .send();
        pending.push(tokio::spawn(request));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        pending.iter().all(|p| !p.is_finished()),
        "answered before the body was complete"
    );
    for tx in senders {
        tx.unbounded_send(Ok(second.to_vec())).unwrap();
    }
    let request = good();
    for answer in futures::future::join_all(pending).await {
        let response = answer.unwrap().expect("an answer");
        assert_eq!(response.version(), Version::HTTP_2);
        assert_eq!(response.status(), StatusCode::OK);
        patched(&request, &response.json().await.unwrap());
    }
    assert_eq!(relay.connections(), 1, "all streams shared one connection");
    server.stop().await;
}

/// Reviews tandem must let through untouched, each with the typical pod's annotations
/// (which would otherwise be patched).
fn untouched() -> Vec<(&'static str, Value)> {
    let base = good();
    let mut deployment = base.clone();
    deployment["request"]["kind"] = json!({"group": "apps", "version": "v1", "kind": "Deployment"});
    deployment["request"]["resource"] =
        json!({"group": "apps", "version": "v1", "resource": "deployments"});
    deployment["request"]["object"] = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "site", "namespace": "web", "annotations": base["request"]["object"]["metadata"]["annotations"]},
        "spec": {"selector": {"matchLabels": {"app": "site"}}, "template": base["request"]["object"]},
    });
    let mut update = base.clone();
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = base["request"]["object"].clone();
    update["request"]["options"] = json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"});
    let mut ephemeral = update.clone();
    ephemeral["request"]["subResource"] = json!("ephemeralcontainers");
    ephemeral["request"]["requestSubResource"] = json!("ephemeralcontainers");
    // Not what an API server sends, but it isolates the rule: a subresource alone skips.
    let mut ephemeral_create = base.clone();
    ephemeral_create["request"]["subResource"] = json!("ephemeralcontainers");
    let mut delete = base.clone();
    delete["request"]["operation"] = json!("DELETE");
    delete["request"]["oldObject"] = base["request"]["object"].clone();
    delete["request"]["object"] = Value::Null;
    vec![
        ("a Deployment", deployment),
        ("a pod UPDATE", update),
        ("pods/ephemeralcontainers", ephemeral),
        ("a CREATE on a subresource", ephemeral_create),
        ("a pod DELETE", delete),
    ]
}

#[rstest]
#[tokio::test]
async fn other_kinds_operations_and_subresources_are_allowed_without_a_patch(
    #[values(false, true)] http2: bool,
) {
    let server = TestServer::start().await;
    let client = server.client(http2);
    let cases = untouched();
    for (name, request) in &cases {
        let (status, body) = server.post(&client, request).await;
        assert_eq!(status, 200, "{name}: {body}");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1", "{name}");
        assert_eq!(body["kind"], "AdmissionReview", "{name}");
        assert_eq!(body["response"]["uid"], request["request"]["uid"], "{name}");
        assert_eq!(body["response"]["allowed"], true, "{name}: {body}");
        assert!(body["response"].get("patch").is_none(), "{name}: {body}");
        assert!(
            body["response"].get("patchType").is_none(),
            "{name}: {body}"
        );
    }
    let metrics = server.metrics.encode();
    assert_eq!(
        metric(
            &metrics,
            r#"tandem_admission_reviews_total{outcome="skipped"}"#
        ),
        Some(cases.len() as f64),
        "{metrics}"
    );
    server.stop().await;
}

#[rstest]
#[tokio::test]
async fn a_dry_run_gets_the_same_answer(#[values(false, true)] http2: bool) {
    let server = TestServer::start().await;
    let client = server.client(http2);
    let mut dry = good();
    dry["request"]["dryRun"] = json!(true);
    let (status, wet_answer) = server.post(&client, &good()).await;
    assert_eq!(status, 200);
    let (status, dry_answer) = server.post(&client, &dry).await;
    assert_eq!(status, 200);
    assert_eq!(dry_answer, wet_answer);
    assert_eq!(dry_answer["response"]["patchType"], "JSONPatch");
    server.stop().await;
}

/// A TLS client that speaks only `version`, trusting the server's CA; returns the version
/// negotiated and the status of one review sent over the connection.
async fn handshake(
    server: &TestServer,
    version: &'static SupportedProtocolVersion,
) -> Result<(ProtocolVersion, u16), std::io::Error> {
    let mut tls = connect(server, version).await?;
    let negotiated = tls
        .get_ref()
        .1
        .protocol_version()
        .expect("after the handshake");
    let status = raw_post(&mut tls, good().to_string().as_bytes()).await?;
    Ok((negotiated, status))
}

/// An HTTP/1.1 connection over TLS `version`, trusting the server's CA.
async fn connect(
    server: &TestServer,
    version: &'static SupportedProtocolVersion,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(&server.ca).unwrap();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder_with_protocol_versions(&[version])
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(server.addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

/// One HTTP/1.1 POST /mutate with `Connection: close`; the status code.
async fn raw_post<S>(stream: &mut S, body: &[u8]) -> Result<u16, std::io::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(body).await?;
    stream.flush().await?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await?;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP/1.1 answer: {answer:?}"));
    Ok(status)
}

#[tokio::test]
async fn tls_1_2_and_1_3_are_each_accepted() {
    let server = TestServer::start().await;
    let (version, status) = handshake(&server, &rustls::version::TLS12).await.unwrap();
    assert_eq!((version, status), (ProtocolVersion::TLSv1_2, 200));
    let (version, status) = handshake(&server, &rustls::version::TLS13).await.unwrap();
    assert_eq!((version, status), (ProtocolVersion::TLSv1_3, 200));
    server.stop().await;
}

/// `openssl s_client` limited to one protocol version: whether the handshake succeeded and
/// what it printed. `None` without an openssl binary.
async fn s_client(server: &TestServer, flag: &'static str) -> Option<(bool, String)> {
    let port = server.addr.port();
    tokio::task::spawn_blocking(move || {
        let output = Command::new("openssl")
            .args(["s_client", "-connect", &format!("127.0.0.1:{port}")])
            .args(["-servername", "localhost", flag])
            // Let the client offer old versions and ciphers at all: refusing must be the
            // server's doing, not the local OpenSSL policy's.
            .args(["-cipher", "DEFAULT:@SECLEVEL=0"])
            .env("OPENSSL_CONF", "/dev/null")
            .stdin(Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        Some((output.status.success(), text))
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn tls_1_1_and_older_are_refused_by_the_server() {
    let server = TestServer::start().await;
    let Some((ok, text)) = s_client(&server, "-tls1_2").await else {
        eprintln!("skipped: no openssl binary to offer TLS 1.1 with (rustls cannot)");
        return;
    };
    // The control: the same client, allowed TLS 1.2, gets through.
    assert!(ok && text.contains("TLSv1.2"), "{text}");
    for old in ["-tls1_1", "-tls1"] {
        let (ok, text) = s_client(&server, old).await.unwrap();
        assert!(!ok, "{old} was accepted:\n{text}");
        // An alert received from the server (rustls answers an offer without TLS 1.2 or
        // 1.3 with handshake_failure), not a local refusal to offer the version.
        assert!(
            text.contains("SSL alert number 40") || text.contains("SSL alert number 70"),
            "{old} must fail with an alert from the server:\n{text}"
        );
    }
    // And the server is still there for everyone else.
    assert_patched(&server, &server.client(true), true).await;
    server.stop().await;
}

#[tokio::test]
async fn healthz_and_readyz_follow_the_sync_state() {
    let server = TestServer::start_with(Options {
        synced: false,
        ..Options::default()
    })
    .await;
    let http = reqwest::Client::new();
    let get = |path: &'static str| {
        let url = server.operations_url(path);
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            let status = response.status().as_u16();
            (status, response.text().await.unwrap())
        }
    };
    assert_eq!(get("/healthz").await.0, 200);
    let (status, text) = get("/readyz").await;
    assert_eq!(status, 503);
    assert!(text.contains("sync"), "{text}");
    // Reviews are answered all the same (readiness only steers the Service).
    assert_patched(&server, &server.client(false), false).await;

    server.synced.send(true).unwrap();
    assert_eq!(get("/readyz").await, (200, "ok\n".to_string()));
    assert_eq!(get("/healthz").await.0, 200);
    assert_eq!(get("/nope").await.0, 404);
    server.stop().await;
}

/// The value of the sample `series` (name and labels exactly as exposed).
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map(|value| value.trim().parse().expect("a number"))
}

#[tokio::test]
async fn metrics_count_the_reviews_sent() {
    let server = TestServer::start().await;
    let client = server.client(true);
    const PATCHED: usize = 3;
    for _ in 0..PATCHED {
        assert_patched(&server, &client, true).await;
    }
    let mut denied = good();
    denied["request"]["object"]["metadata"]["annotations"]["tandem.dev/log-shipper.path"] =
        json!("var/log/app");
    let (status, answer) = server.post(&client, &denied).await;
    assert_eq!(status, 200);
    assert_eq!(answer["response"]["allowed"], false, "{answer}");
    assert_eq!(answer["response"]["status"]["code"], 400, "{answer}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(message.contains("tandem.dev/log-shipper.path"), "{message}");
    for body in ["{", "[]"] {
        let response = post_raw(&server, &client, body).await;
        assert_error(response, 400, "").await;
    }
    let response = client.get(server.url()).send().await.unwrap();
    assert_error(response, 405, "").await;
    let response = client.post(server.url()).body("{}").send().await.unwrap();
    assert_error(response, 415, "").await;

    let response = reqwest::get(server.operations_url("/metrics"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let reviews = (PATCHED + 1) as f64;
    for (series, value) in [
        (
            r#"tandem_admission_reviews_total{outcome="patched"}"#,
            PATCHED as f64,
        ),
        (r#"tandem_admission_reviews_total{outcome="denied"}"#, 1.0),
        (
            r#"tandem_admission_reviews_total{outcome="unchanged"}"#,
            0.0,
        ),
        (r#"tandem_admission_reviews_total{outcome="skipped"}"#, 0.0),
        ("tandem_admission_review_duration_seconds_count", reviews),
        (
            r#"tandem_admission_review_duration_seconds_bucket{le="+Inf"}"#,
            reviews,
        ),
        (
            r#"tandem_injections_total{pattern="log-shipper"}"#,
            PATCHED as f64,
        ),
        (
            r#"tandem_injections_total{pattern="git-clone"}"#,
            PATCHED as f64,
        ),
        (r#"tandem_injections_total{pattern="ambassador"}"#, 0.0),
        (r#"tandem_denials_total{reason="invalid_value"}"#, 1.0),
        (r#"tandem_rejected_requests_total{code="400"}"#, 2.0),
        (r#"tandem_rejected_requests_total{code="405"}"#, 1.0),
        (r#"tandem_rejected_requests_total{code="415"}"#, 1.0),
    ] {
        assert_eq!(metric(&text, series), Some(value), "{series}\n{text}");
    }
    assert!(
        text.contains("# TYPE tandem_admission_review_duration_seconds histogram"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("# EOF"), "{text}");
    server.stop().await;
}

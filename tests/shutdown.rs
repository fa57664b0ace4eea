//! Graceful shutdown: after the signal readiness turns false while reviews are still
//! answered, a review in flight when draining starts gets its answer, and after the
//! deadline the server and its connections are gone. Also the real binary on SIGTERM.

mod common;

use std::{future::Future, time::Duration};

use common::{Options, TestServer, bench_fixture, binary::Tandem, patched};
use futures::{StreamExt as _, channel::mpsc};
use reqwest::StatusCode;
use rstest::rstest;
use serde_json::Value;
use tandem::server::Shutdown;
use tokio::{net::TcpStream, sync::oneshot, time::Instant};

fn good() -> Value {
    bench_fixture("typical")
}

/// Polls `check` every 20 ms until it returns true; panics after `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "not within {within:?}: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readyz(server: &TestServer) -> Option<u16> {
    let response = reqwest::get(server.operations_url("/readyz")).await.ok()?;
    Some(response.status().as_u16())
}

async fn refuses_connections(server: &TestServer) -> bool {
    TcpStream::connect(server.addr).await.is_err()
}

/// A review whose body is sent in two halves: the first as soon as the request starts,
/// the second when the test says so.
struct HalfSent {
    answer: tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
    rest: Vec<u8>,
    sender: mpsc::UnboundedSender<Result<Vec<u8>, std::io::Error>>,
}

impl HalfSent {
    /// Starts the request and returns once the client has handed out the first half (so
    /// the request head is on its way).
    async fn start(server: &TestServer, client: &reqwest::Client) -> HalfSent {
        let body = good().to_string().into_bytes();
        let (first, rest) = body.split_at(body.len() / 2);
        let (sender, receiver) = mpsc::unbounded();
        sender.unbounded_send(Ok(first.to_vec())).unwrap();
        let (taken_tx, taken) = oneshot::channel();
        let mut taken_tx = Some(taken_tx);
        let stream = receiver.inspect(move |_| {
            if let Some(tx) = taken_tx.take() {
                let _ = tx.send(());
            }
        });
        let request = client
            .post(server.url())
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(stream))
            .send();
        let answer = tokio::spawn(request);
        taken.await.expect("the client reads the body");
        HalfSent {
            answer,
            rest: rest.to_vec(),
            sender,
        }
    }

    async fn finish(self) -> reqwest::Result<reqwest::Response> {
        // The request may already have failed and dropped the receiver.
        let _ = self.sender.unbounded_send(Ok(self.rest));
        drop(self.sender);
        self.answer.await.expect("the request task")
    }
}

async fn assert_patched(server: &TestServer, client: &reqwest::Client) {
    let (status, body) = server.post(client, &good()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"]["patchType"], "JSONPatch", "{body}");
}

#[rstest]
#[tokio::test]
async fn while_draining_readiness_is_false_and_reviews_are_answered(
    #[values(false, true)] http2: bool,
) {
    let shutdown = Shutdown {
        delay: Duration::from_secs(3),
        timeout: Duration::from_secs(5),
    };
    let mut server = TestServer::start_with(Options {
        shutdown,
        ..Options::default()
    })
    .await;
    let client = server.client(http2);
    assert_patched(&server, &client).await;
    assert_eq!(readyz(&server).await, Some(200));

    let stopped = server.signal_stop();
    let response = reqwest::get(server.operations_url("/readyz"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.text().await.unwrap(), "shutting down\n");
    // Liveness is not readiness: the kubelet must not restart a draining pod.
    let healthz = reqwest::get(server.operations_url("/healthz"))
        .await
        .unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    // Reviews keep being answered, on the open connection and on new ones: the API server
    // still sends them until the endpoint is gone.
    assert_patched(&server, &client).await;
    assert_patched(&server, &server.client(http2)).await;
    assert!(!stopped.is_finished(), "the delay is not over yet");

    tokio::time::timeout(
        shutdown.delay + shutdown.timeout + Duration::from_secs(5),
        stopped,
    )
    .await
    .expect("the server stops after the delay and the drain")
    .unwrap();
    assert!(
        refuses_connections(&server).await,
        "the webhook listener is closed"
    );
    assert_eq!(
        readyz(&server).await,
        None,
        "the operations listener is closed"
    );
}

#[rstest]
#[tokio::test]
async fn a_review_in_flight_when_draining_starts_gets_its_answer(
    #[values(false, true)] http2: bool,
) {
    let mut server = TestServer::start_with(Options {
        shutdown: Shutdown {
            delay: Duration::from_millis(300),
            timeout: Duration::from_secs(10),
        },
        ..Options::default()
    })
    .await;
    let client = server.client(http2);
    // Open the connection first, so that the slow review surely rides an accepted one.
    assert_patched(&server, &client).await;
    let slow = HalfSent::start(&server, &client).await;

    let stopped = server.signal_stop();
    // Draining has begun once the listener is closed; only then does the body complete.
    eventually(Duration::from_secs(5), "the listener closes", || {
        refuses_connections(&server)
    })
    .await;
    assert!(
        !stopped.is_finished(),
        "the drain waits for the review in flight"
    );
    let response = slow
        .finish()
        .await
        .expect("the review in flight is answered");
    assert_eq!(response.status(), StatusCode::OK);
    patched(&good(), &response.json().await.unwrap());

    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("once the last review is answered, the drain ends")
        .unwrap();
}

#[rstest]
#[tokio::test]
async fn after_the_drain_deadline_the_server_and_its_connections_are_gone(
    #[values(false, true)] http2: bool,
) {
    let shutdown = Shutdown {
        delay: Duration::ZERO,
        timeout: Duration::from_millis(300),
    };
    let mut server = TestServer::start_with(Options {
        shutdown,
        ..Options::default()
    })
    .await;
    let client = server.client(http2);
    assert_patched(&server, &client).await;
    // A client that stops sending half-way through its body.
    let stuck = HalfSent::start(&server, &client).await;

    let stopped = server.signal_stop();
    tokio::time::timeout(Duration::from_secs(10), stopped)
        .await
        .expect("the server gives up on the stuck review at the deadline")
        .unwrap();
    assert!(refuses_connections(&server).await);
    // Its connection was closed with the server: finishing the body now gets no answer.
    match tokio::time::timeout(Duration::from_secs(10), stuck.finish()).await {
        Ok(Ok(response)) => panic!(
            "the server answered {} after it was stopped",
            response.status()
        ),
        Ok(Err(_)) => {}
        Err(_) => panic!("the connection was left open after the server stopped"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_drains_and_exits_0_on_sigterm() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let names = ["localhost", "127.0.0.1"].map(String::from);
    let written = tandem::certs::write(dir.path(), &names, 1).unwrap();
    let (delay, timeout) = (Duration::from_secs(1), Duration::from_secs(3));
    let mut tandem = Tandem::spawn(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--tls-cert",
        written.cert.to_str().unwrap(),
        "--tls-key",
        written.key.to_str().unwrap(),
        "--shutdown-delay",
        "1s",
        "--shutdown-timeout",
        "3s",
        "--log-format",
        "json",
    ]);
    let serving = tokio::task::block_in_place(|| {
        tandem.wait_for_line(Duration::from_secs(20), |line| {
            common::binary::field(line, "message").as_deref() == Some("tandem is serving")
        })
    });
    let webhook = common::binary::field(&serving, "webhook").expect("the webhook URL is logged");
    let metrics = common::binary::field(&serving, "metrics").expect("the metrics URL is logged");
    let port = webhook
        .strip_prefix("https://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/mutate"))
        .unwrap_or_else(|| panic!("{webhook}"));
    let readyz = metrics.replace("/metrics", "/readyz");

    let client = common::client(&written.ca_cert, true);
    let request = good();
    let response = client
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .body(request.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    patched(&request, &response.json().await.unwrap());
    assert_eq!(
        reqwest::get(&readyz).await.unwrap().status(),
        StatusCode::OK
    );

    tandem.terminate();
    eventually(delay * 5, "/readyz turns 503 after SIGTERM", || {
        let readyz = readyz.clone();
        async move {
            match reqwest::get(&readyz).await {
                Ok(response) => response.status() == StatusCode::SERVICE_UNAVAILABLE,
                Err(_) => panic!("/readyz went away before reporting not ready"),
            }
        }
    })
    .await;
    let status =
        tokio::task::block_in_place(|| tandem.wait(delay + timeout + Duration::from_secs(5)));
    let output = tandem.output();
    assert!(status.success(), "exit status {status}:\n{output}");
    for message in [
        "shutting down: readiness is false, still serving",
        "stopped accepting; draining",
        "all connections closed",
    ] {
        assert!(
            output
                .lines()
                .any(|line| common::binary::field(line, "message").as_deref() == Some(message)),
            "no {message:?} in the log:\n{output}"
        );
    }
}

//! The limits on hostile or broken clients (`--max-connections`, the handshake, header,
//! body and idle timeouts, HTTP/2 streams, `--max-body-memory`), each against the real
//! server with raw TCP and TLS clients, while a well-behaved HTTPS client keeps being
//! served, and counted in the metrics.

mod common;

use std::{sync::Arc, time::Duration};

use common::{Options, TestServer, bench_fixture, patched};
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde_json::Value;
use tandem::server::limits::Limits;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::TcpStream,
    time::Instant,
};
use tokio_rustls::{TlsConnector, client::TlsStream};

fn good() -> Value {
    bench_fixture("typical")
}

/// Short limits, so that each test takes about a second.
fn short() -> Limits {
    Limits {
        handshake_timeout: Duration::from_millis(500),
        header_read_timeout: Duration::from_millis(800),
        body_read_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_millis(1500),
        ..Limits::default()
    }
}

async fn start(limits: Limits) -> TestServer {
    TestServer::start_with(Options {
        limits,
        ..Options::default()
    })
    .await
}

/// A TLS connection to the server, ALPN `alpn`, trusting its CA.
async fn tls(server: &TestServer, alpn: &[u8]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(&server.ca).unwrap();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    let tcp = TcpStream::connect(server.addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake completes")
}

/// Reads until the server closes the connection (or `within` passes: then panics); what
/// it sent before closing.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, within: Duration) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => panic!(
                "still open after {within:?}; it sent {:?}",
                String::from_utf8_lossy(&seen)
            ),
            Ok(Ok(0)) | Ok(Err(_)) => return String::from_utf8_lossy(&seen).into_owned(),
            Ok(Ok(n)) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A well-behaved review on a new connection, checked by applying its patch.
async fn served(server: &TestServer, http2: bool) {
    let request = good();
    let (status, body) = server.post(&server.client(http2), &request).await;
    assert_eq!(status, 200, "{body}");
    common::assert_valid_pod(&patched(&request, &body));
}

fn metric(server: &TestServer, series: &str) -> f64 {
    server
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

fn cut(server: &TestServer, reason: &str) -> f64 {
    metric(
        server,
        &format!(r#"tandem_connections_cut_total{{reason="{reason}"}}"#),
    )
}

#[tokio::test]
async fn a_connection_that_never_starts_tls_is_closed_after_the_handshake_timeout() {
    let server = start(short()).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let started = Instant::now();
    served(&server, false).await;
    until_closed(&mut silent, Duration::from_secs(5)).await;
    assert!(started.elapsed() >= Duration::from_millis(450));
    // Counted as the task ends, just after the socket is closed.
    common::load::eventually(Duration::from_secs(2), "the cut is counted", || {
        cut(&server, "handshake_timeout") == 1.0
    })
    .await;
    server.stop().await;
}

#[tokio::test]
async fn a_request_head_sent_a_byte_at_a_time_is_cut_and_others_are_served_meanwhile() {
    let server = start(short()).await;
    let mut slow = tls(&server, b"http/1.1").await;
    let head = b"POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n";
    let trickle = async {
        for byte in head {
            if slow.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the whole head went through a byte at a time");
    };
    // Meanwhile, reviews on other connections are answered.
    let others = async {
        for _ in 0..5 {
            served(&server, false).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::join!(trickle, others);
    let answer = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert_eq!(answer, "", "cut without an answer");
    assert_eq!(cut(&server, "header_timeout"), 1.0);
    server.stop().await;
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_gets_408_and_the_connection_closes() {
    let server = start(short()).await;
    let mut slow = tls(&server, b"http/1.1").await;
    let body = good().to_string();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    slow.write_all(&body.as_bytes()[..100]).await.unwrap();
    let answer = until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    assert!(answer.contains("--body-read-timeout"), "{answer}");
    assert_eq!(
        metric(&server, r#"tandem_rejected_requests_total{code="408"}"#),
        1.0
    );
    served(&server, true).await;
    server.stop().await;
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_idle_timeout_but_not_before() {
    let server = start(short()).await;
    let mut kept = tls(&server, b"http/1.1").await;
    let body = good().to_string();
    let request = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    // Requests 1 s apart (longer than the header timeout, shorter than the idle timeout)
    // keep the connection: idle time between requests is not a slow head.
    for _ in 0..3 {
        kept.write_all(request.as_bytes()).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = kept.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let idle = Instant::now();
    until_closed(&mut kept, Duration::from_secs(5)).await;
    assert!(idle.elapsed() >= Duration::from_millis(400));
    assert_eq!(cut(&server, "idle"), 1.0);
    assert_eq!(cut(&server, "header_timeout"), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn an_idle_http2_connection_gets_a_goaway_and_is_closed() {
    let server = start(short()).await;
    let mut h2 = tls(&server, b"h2").await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let sent = until_closed(&mut h2, Duration::from_secs(5)).await;
    let frames = frames(sent.as_bytes());
    assert!(
        frames.iter().any(|(kind, _)| *kind == GOAWAY),
        "no GOAWAY in {frames:?}"
    );
    assert_eq!(cut(&server, "idle"), 1.0);
    server.stop().await;
}

const SETTINGS: u8 = 0x4;
const GOAWAY: u8 = 0x7;

/// HTTP/2 frames as (type, payload).
fn frames(mut bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut frames = Vec::new();
    while bytes.len() >= 9 {
        let length = u32::from_be_bytes([0, bytes[0], bytes[1], bytes[2]]) as usize;
        let kind = bytes[3];
        let Some(payload) = bytes.get(9..9 + length) else {
            break;
        };
        frames.push((kind, payload.to_vec()));
        bytes = &bytes[9 + length..];
    }
    frames
}

#[tokio::test]
async fn http2_announces_its_stream_limit() {
    let server = start(Limits {
        http2_max_streams: 7,
        ..short()
    })
    .await;
    let mut h2 = tls(&server, b"h2").await;
    h2.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = h2.read(&mut buf).await.unwrap();
    let (kind, payload) = frames(&buf[..n]).into_iter().next().expect("a frame");
    assert_eq!(kind, SETTINGS);
    let settings: Vec<(u16, u32)> = payload
        .chunks(6)
        .map(|s| {
            (
                u16::from_be_bytes([s[0], s[1]]),
                u32::from_be_bytes([s[2], s[3], s[4], s[5]]),
            )
        })
        .collect();
    // SETTINGS_MAX_CONCURRENT_STREAMS is 0x3.
    assert!(settings.contains(&(0x3, 7)), "{settings:?}");
    server.stop().await;
}

#[tokio::test]
async fn beyond_max_connections_silent_sockets_give_way_and_reviews_are_still_served() {
    const CAP: usize = 16;
    let server = start(Limits {
        max_connections: CAP,
        // Long enough that no silent socket is closed by its own timeout here.
        handshake_timeout: Duration::from_secs(30),
        ..short()
    })
    .await;
    let mut silent = Vec::new();
    for _ in 0..4 * CAP {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // The oldest silent ones give way once past the handshake grace; a review on a new
    // connection then finds room.
    tokio::time::sleep(tandem_grace()).await;
    for _ in 0..3 {
        served(&server, false).await;
        served(&server, true).await;
    }
    let mut closed = 0;
    for mut socket in silent {
        let mut byte = [0u8; 1];
        if let Ok(Ok(0) | Err(_)) =
            tokio::time::timeout(Duration::from_millis(50), socket.read(&mut byte)).await
        {
            closed += 1;
        }
    }
    assert!(
        closed >= 3 * CAP,
        "only {closed} silent sockets were closed"
    );
    assert!(cut(&server, "evicted") >= (3 * CAP) as f64);
    let open = metric(&server, "tandem_open_connections");
    assert!(open <= (CAP + 1) as f64, "{open} open");
    server.stop().await;
}

fn tandem_grace() -> Duration {
    Duration::from_millis(1100)
}

#[tokio::test]
async fn when_every_connection_has_a_request_in_flight_a_new_one_is_refused() {
    let server = start(Limits {
        max_connections: 2,
        body_read_timeout: Duration::from_secs(30),
        ..short()
    })
    .await;
    let body = good().to_string();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let mut busy = Vec::new();
    for _ in 0..2 {
        let mut stream = tls(&server, b"http/1.1").await;
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(&body.as_bytes()[..10]).await.unwrap();
        busy.push(stream);
    }
    // Both requests are in flight once their heads are read.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut refused = TcpStream::connect(server.addr).await.unwrap();
    until_closed(&mut refused, Duration::from_secs(2)).await;
    assert_eq!(cut(&server, "refused"), 1.0);
    // The busy ones finish normally.
    for stream in &mut busy {
        stream.write_all(&body.as_bytes()[10..]).await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let n = stream.read(&mut buf).await.unwrap();
        assert!(buf[..n].starts_with(b"HTTP/1.1 200 "));
    }
    server.stop().await;
}

#[tokio::test]
async fn a_body_finding_no_room_under_max_body_memory_waits_for_it_then_gets_503() {
    let body = good().to_string();
    let server = TestServer::start_with(Options {
        // One thread, whose share of body memory is one body.
        workers: std::num::NonZeroUsize::MIN,
        max_body: body.len(),
        limits: Limits {
            max_body_memory: body.len(),
            ..short()
        },
        ..Options::default()
    })
    .await;
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let half = body.len() / 2;
    // `waiter` takes room for half its body…
    let mut waiter = tls(&server, b"http/1.1").await;
    waiter.write_all(head.as_bytes()).await.unwrap();
    waiter.write_all(&body.as_bytes()[..half]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // …`holder` takes most of the rest and never finishes…
    let mut holder = tls(&server, b"http/1.1").await;
    holder.write_all(head.as_bytes()).await.unwrap();
    holder
        .write_all(&body.as_bytes()[..half - 2048])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // …so the rest of `waiter`'s body finds no room before its time is up.
    waiter.write_all(&body.as_bytes()[half..]).await.unwrap();
    let answer = until_closed(&mut waiter, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503 "), "{answer}");
    assert!(answer.contains("--max-body-memory"), "{answer}");
    // The holder's time runs out too; its room is given back and the next review is served.
    let answer = until_closed(&mut holder, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408 "), "{answer}");
    served(&server, false).await;
    served(&server, true).await;
    server.stop().await;
}

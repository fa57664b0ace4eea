//! Zero failed reviews while the server changes under steady load from real HTTPS
//! clients: the certificate rotated by the Secret volume's `..data` swap, the policy
//! directory swapped the same way (valid, then invalid, then valid again), and SIGTERM
//! to the real binary. Each test prints how many reviews were answered and failed.

mod common;

use std::{fs, path::PathBuf, sync::Arc, time::Duration};

use common::{
    Options, TestServer, bench_fixture,
    binary::{Tandem, field},
    load::{self, Load, Spec, eventually},
    volume::Volume,
};
use rustls::pki_types::{CertificateDer, pem::PemObject};
use serde_json::{Value, json};
use tandem::{certs, policy::source::files, server::tls::Files};

const WORKERS: usize = 6;

fn report(scenario: &str, tally: &load::Tally) {
    println!(
        "{scenario}: {} reviews answered, {} failed",
        tally.answered,
        tally.failed.len()
    );
    assert!(
        tally.failed.is_empty(),
        "{scenario}: {} of {} reviews failed; the first: {:#?}",
        tally.failed.len(),
        tally.answered + tally.failed.len(),
        &tally.failed[..tally.failed.len().min(5)]
    );
    assert!(tally.answered > 0, "{scenario}: no review was answered");
}

fn der(pem: &[u8]) -> Vec<u8> {
    CertificateDer::pem_slice_iter(pem)
        .next()
        .expect("a certificate")
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotations_by_symlink_swap_fail_no_review() {
    const ROTATIONS: usize = 4;
    let pairs = tempfile::tempdir().unwrap();
    let names = ["localhost", "127.0.0.1"].map(String::from);
    // A pair per generation, each under its own CA, all trusted by the load's clients:
    // so a review fails only if the server fails it, and which pair a handshake got
    // is plain.
    let generations: Vec<certs::Written> = (0..=ROTATIONS)
        .map(|n| certs::write(&pairs.path().join(n.to_string()), &names, 2).unwrap())
        .collect();
    let files_of = |written: &certs::Written| {
        vec![
            ("tls.crt", fs::read(&written.cert).unwrap()),
            ("tls.key", fs::read(&written.key).unwrap()),
        ]
    };
    let dir = tempfile::tempdir().unwrap();
    let mut volume = Volume::new(dir.path(), &files_of(&generations[0]));
    let server = TestServer::start_with(Options {
        certificate: Some((
            Files {
                cert: volume.path("tls.crt"),
                key: volume.path("tls.key"),
            },
            generations[0].ca_cert.clone(),
        )),
        ..Options::default()
    })
    .await;
    let cas: Vec<PathBuf> = generations.iter().map(|w| w.ca_cert.clone()).collect();
    let load = Load::start(Spec {
        url: server.url(),
        cas: cas.clone(),
        review: bench_fixture("typical"),
        workers: WORKERS,
        reconnect: 20,
        check: load::patched_and(|_| Ok(())),
    });
    for generation in &generations[1..] {
        tokio::time::sleep(Duration::from_millis(400)).await;
        volume.swap(&files_of(generation));
        // A new connection is served the new certificate, soon.
        let expected = der(&fs::read(&generation.cert).unwrap());
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let client = common::client_builder(&generation.ca_cert, false)
                .tls_info(true)
                .build()
                .unwrap();
            let served = client
                .post(server.url())
                .header("content-type", "application/json")
                .body(bench_fixture("plain").to_string())
                .send()
                .await
                .ok()
                .and_then(|r| {
                    r.extensions()
                        .get::<reqwest::tls::TlsInfo>()
                        .and_then(|i| i.peer_certificate())
                        .map(<[u8]>::to_vec)
                });
            if served.as_deref() == Some(&expected[..]) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the new certificate is not served"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
    tokio::time::sleep(Duration::from_millis(400)).await;
    let tally = load.stop().await;
    report("certificate rotation", &tally);
    assert!(
        server.metrics.encode().contains(&format!(
            r#"tandem_tls_reloads_total{{result="ok"}} {ROTATIONS}"#
        )),
        "{}",
        server.metrics.encode()
    );
    server.stop().await;
}

/// A policy turning `pattern` on (with `options`) for every pod in namespace `payments`.
fn policy(pattern: &str, options: Value) -> Vec<u8> {
    let spec = json!({
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "InjectionPolicy",
        "metadata": {"name": "payments-under-load"},
        "spec": {
            "priority": 10,
            "selector": {"namespaces": {"matchLabels": {"kubernetes.io/metadata.name": "payments"}}},
            "defaults": {pattern: options},
        }
    });
    // JSON is YAML.
    serde_json::to_vec_pretty(&spec).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_directory_swaps_take_valid_sets_refuse_invalid_ones_and_fail_no_review() {
    let dir = tempfile::tempdir().unwrap();
    let logging = policy("log-shipper", json!({"path": "/var/log/app"}));
    let metrics = policy("metrics-adapter", json!({"profile": "redis"}));
    // A profile with a placeholder no option fills: refused when loaded.
    let invalid = br#"{"apiVersion": "tandem.dev/v1alpha1", "kind": "InjectionPolicy",
        "metadata": {"name": "payments-under-load"},
        "spec": {"priority": 10, "profiles": {"log-shipper": {"broken": {"image": "cr.fluentbit.io/fluent/fluent-bit:4.2.4", "args": ["{{nope}}"]}}}}}"#
        .to_vec();
    let mut volume = Volume::new(dir.path(), &[("policies.yaml", logging.clone())]);
    let server = TestServer::start().await;
    let loaded = files::check(dir.path(), "tandem.dev").expect("the first set is valid");
    server.store.set_files(loaded);
    let _watch = files::watch(
        dir.path().to_path_buf(),
        server.store.clone(),
        server.metrics.clone(),
    )
    .unwrap();

    // A pod without annotations in `payments`: what it gets is the policies' doing.
    let mut pod = common::pod(&[]);
    pod["metadata"]["namespace"] = json!("payments");
    let review = common::review(&pod, "payments");
    let seen = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let recorder = seen.clone();
    let load = Load::start(Spec {
        url: server.url(),
        cas: vec![server.ca.clone()],
        review,
        workers: WORKERS,
        reconnect: 50,
        check: load::patched_and(move |pod| {
            let injected = pod["metadata"]["annotations"]["tandem.dev/injected"]
                .as_str()
                .ok_or_else(|| format!("nothing injected: {pod}"))?
                .to_string();
            if injected != "log-shipper" && injected != "metrics-adapter" {
                return Err(format!("a mix of two sets: {injected}"));
            }
            let mut seen = recorder.lock().unwrap();
            if seen.last() != Some(&injected) {
                seen.push(injected);
            }
            Ok(())
        }),
    });
    let last_seen = || seen.lock().unwrap().last().cloned().unwrap_or_default();
    let reloads = |result: &str| {
        let series = format!(r#"tandem_policy_reloads_total{{source="files",result="{result}"}} "#);
        server
            .metrics
            .encode()
            .lines()
            .find_map(|l| l.strip_prefix(series.as_str())?.trim().parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    eventually(
        Duration::from_secs(10),
        "log shipping under the first set",
        || last_seen() == "log-shipper",
    )
    .await;

    volume.swap(&[("policies.yaml", metrics.clone())]);
    eventually(
        Duration::from_secs(10),
        "the second set takes effect",
        || last_seen() == "metrics-adapter",
    )
    .await;

    let errors_before = reloads("error");
    volume.swap(&[("policies.yaml", invalid)]);
    eventually(
        Duration::from_secs(10),
        "the invalid set is refused and counted",
        || reloads("error") > errors_before,
    )
    .await;
    // The last good set keeps serving.
    let answered = load.answered();
    eventually(Duration::from_secs(10), "reviews go on", || {
        load.answered() > answered + 100
    })
    .await;
    assert_eq!(last_seen(), "metrics-adapter");

    volume.swap(&[("policies.yaml", logging)]);
    eventually(
        Duration::from_secs(10),
        "a valid set after the invalid one",
        || last_seen() == "log-shipper",
    )
    .await;
    let tally = load.stop().await;
    report("policy reloads", &tally);
    // Each set took effect in turn (answers in flight across a swap may interleave).
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.first().map(String::as_str), Some("log-shipper"));
    assert_eq!(seen.last().map(String::as_str), Some("log-shipper"));
    assert!(seen.iter().any(|s| s == "metrics-adapter"), "{seen:?}");
    assert!(reloads("ok") >= 2.0);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_turns_readiness_false_first_finishes_reviews_and_exits_0() {
    common::install_crypto();
    let dir = tempfile::tempdir().unwrap();
    let names = ["localhost", "127.0.0.1"].map(String::from);
    let written = certs::write(dir.path(), &names, 1).unwrap();
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
        "2s",
        "--shutdown-timeout",
        "10s",
        "--log-format",
        "json",
    ]);
    let serving = tokio::task::block_in_place(|| {
        tandem.wait_for_line(Duration::from_secs(20), |line| {
            field(line, "message").as_deref() == Some("tandem is serving")
        })
    });
    let webhook = field(&serving, "webhook").unwrap();
    let port: u16 = webhook
        .strip_prefix("https://127.0.0.1:")
        .and_then(|rest| rest.strip_suffix("/mutate"))
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("{webhook}"));
    let url = format!("https://localhost:{port}/mutate");
    let readyz = field(&serving, "metrics")
        .unwrap()
        .replace("/metrics", "/readyz");

    let review = bench_fixture("typical");
    let load = Load::start(Spec {
        url: url.clone(),
        cas: vec![written.ca_cert.clone()],
        review: review.clone(),
        workers: WORKERS,
        reconnect: 50,
        check: load::patched_and(|_| Ok(())),
    });
    // Reviews whose bodies are half sent before the signal and finished during the
    // drain, after the listener has closed.
    let client = common::client(&written.ca_cert, false);
    let mut in_flight = Vec::new();
    let body = review.to_string().into_bytes();
    let (first, rest) = body.split_at(body.len() / 2);
    for _ in 0..4 {
        let (sender, receiver) =
            futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
        sender.unbounded_send(Ok(first.to_vec())).unwrap();
        let request = client
            .post(&url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(receiver))
            .send();
        in_flight.push((tokio::spawn(request), sender));
    }
    eventually(Duration::from_secs(10), "load is flowing", || {
        load.answered() > 200
    })
    .await;

    tandem.terminate();
    // Readiness goes false while reviews are still answered…
    let mut not_ready = false;
    for _ in 0..100 {
        if let Ok(r) = reqwest::get(&readyz).await
            && r.status() == 503
        {
            not_ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(not_ready, "/readyz did not turn 503 after SIGTERM");
    let answered = load.answered();
    eventually(
        Duration::from_secs(1),
        "reviews go on while not ready",
        || load.answered() > answered + 50,
    )
    .await;
    // …then the endpoint is gone and the API server stops sending (here: the load ends
    // well within --shutdown-delay).
    let tally = load.stop().await;
    // The listener closes after the delay; the reviews in flight are then finished.
    eventually(Duration::from_secs(10), "the listener closes", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err()
    })
    .await;
    let mut slow_answered = 0;
    for (answer, sender) in in_flight {
        sender.unbounded_send(Ok(rest.to_vec())).unwrap();
        drop(sender);
        let response = answer
            .await
            .unwrap()
            .expect("the review in flight is answered");
        assert_eq!(response.status(), 200);
        common::patched(&review, &response.json().await.unwrap());
        slow_answered += 1;
    }
    let status = tokio::task::block_in_place(|| tandem.wait(Duration::from_secs(15)));
    report("SIGTERM", &tally);
    println!("SIGTERM: {slow_answered} reviews in flight through the drain answered");
    assert!(
        status.success(),
        "exit status {status}:\n{}",
        tandem.output()
    );
    let output = tandem.output();
    let order: Vec<String> = output
        .lines()
        .filter_map(|line| field(line, "message"))
        .filter(|m| {
            [
                "shutting down: readiness is false, still serving",
                "stopped accepting; draining",
                "all connections closed",
            ]
            .contains(&m.as_str())
        })
        .collect();
    assert_eq!(
        order,
        [
            "shutting down: readiness is false, still serving",
            "stopped accepting; draining",
            "all connections closed"
        ],
        "{output}"
    );
}

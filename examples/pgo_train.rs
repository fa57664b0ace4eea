//! The training load for a profile-guided build (`benches/pgo`): sends AdmissionReviews to
//! a running `tandem serve`, over HTTP/1.1 and HTTP/2, 16 requests in flight, and fails if
//! any answer is not a 200.
//!
//!     pgo_train HOST:PORT CA.CRT REVIEW.json...
//!
//! The certificate is the one `tandem certs --service tandem --namespace training` writes,
//! so the server is called by that name, resolved to HOST:PORT. Each review is sent as it
//! is and also with its pod's annotations removed (the pass-through case, which is most of
//! what a cluster sends): the profile should weigh both.

use std::{net::SocketAddr, time::Instant};

use bytes::Bytes;
use serde_json::Value;

const NAME: &str = "tandem.training.svc";
const IN_FLIGHT: usize = 16;
const ROUNDS: usize = 2_000;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: pgo_train HOST:PORT CA.CRT REVIEW.json...";
    let addr: SocketAddr = args
        .next()
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("{usage}"));
    let ca = args.next().unwrap_or_else(|| panic!("{usage}"));
    let mut bodies = Vec::new();
    for path in args {
        let text = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        let mut review: Value =
            serde_json::from_slice(&text).unwrap_or_else(|e| panic!("{path}: {e}"));
        bodies.push(Bytes::from(text));
        if let Some(metadata) = review.pointer_mut("/request/object/metadata")
            && let Some(metadata) = metadata.as_object_mut()
            && metadata.remove("annotations").is_some()
        {
            bodies.push(
                serde_json::to_vec(&review)
                    .expect("a review serializes")
                    .into(),
            );
        }
    }
    assert!(!bodies.is_empty(), "{usage}");

    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let pem = std::fs::read(&ca).unwrap_or_else(|e| panic!("{ca}: {e}"));
    let root = reqwest::Certificate::from_pem(&pem).expect("a PEM CA");
    let url = format!("https://{NAME}:{}/mutate", addr.port());
    let started = Instant::now();
    let mut sent = 0;
    for http2 in [false, true] {
        let builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root.clone())
            .resolve(NAME, addr);
        let client = if http2 {
            builder.http2_prior_knowledge()
        } else {
            builder.http1_only()
        }
        .build()
        .expect("a client");
        for body in &bodies {
            let workers: Vec<_> = (0..IN_FLIGHT)
                .map(|_| {
                    let (client, url, body) = (client.clone(), url.clone(), body.clone());
                    tokio::spawn(async move {
                        for _ in 0..ROUNDS / IN_FLIGHT {
                            let response = client
                                .post(&url)
                                .header("content-type", "application/json")
                                .body(body.clone())
                                .send()
                                .await
                                .expect("the server answers");
                            assert_eq!(response.status(), 200, "{:?}", response.text().await);
                            response.bytes().await.expect("a response body");
                        }
                    })
                })
                .collect();
            for worker in workers {
                worker.await.expect("a training worker");
            }
            sent += ROUNDS / IN_FLIGHT * IN_FLIGHT;
        }
    }
    eprintln!(
        "pgo_train: {sent} reviews ({} bodies, HTTP/1.1 and HTTP/2) in {:.1} s",
        bodies.len(),
        started.elapsed().as_secs_f64()
    );
}

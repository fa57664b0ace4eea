//! The handler's panic net: a review that panics is answered HTTP 500 with a one-line
//! JSON error naming the request's uid, counted in `tandem_review_panics_total`, and the
//! next review, on the same connection, is answered normally; over HTTP/1.1 and HTTP/2,
//! against the real server with real TLS.
//!
//! No input makes tandem's review panic (the fuzz targets found none: see the report in
//! fuzz/run.sh's runs), so the server is given a review function that panics on one
//! marked uid and otherwise is `admission::review` itself (`AppState::review`, the one
//! seam; the binary always uses `admission::review`).

mod common;

use common::{Options, TestServer, bench_fixture, patched};
use rstest::rstest;
use serde_json::{Value, json};
use tandem::{
    admission::{self, BadReview, Reviewed},
    policy::snapshot::Snapshot,
};

const MARKED: &str = "7d1c5c7e-panic-0000-0000-000000000000";

/// `admission::review`, except that a review whose uid is [`MARKED`] panics, as a bug in
/// it would.
fn buggy(body: &[u8], snapshot: &Snapshot) -> Result<Reviewed, BadReview> {
    if admission::uid(body).as_deref() == Some(MARKED) {
        panic!("a bug planted by tests/panic_net.rs");
    }
    admission::review(body, snapshot)
}

fn metric(server: &TestServer, series: &str) -> f64 {
    server
        .metrics
        .encode()
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

#[rstest]
#[tokio::test]
async fn a_review_that_panics_gets_a_500_naming_its_uid_is_counted_and_the_next_is_served(
    #[values(false, true)] http2: bool,
) {
    let server = TestServer::start_with(Options {
        review: buggy,
        ..Options::default()
    })
    .await;
    let client = server.client(http2);
    let good = bench_fixture("typical");
    let mut marked = good.clone();
    marked["request"]["uid"] = json!(MARKED);

    for round in 1..=3 {
        let response = client
            .post(server.url())
            .header("content-type", "application/json")
            .body(marked.to_string())
            .send()
            .await
            .expect("answered, not reset");
        assert_eq!(response.status(), 500);
        let text = response.text().await.unwrap();
        let line = text.strip_suffix('\n').expect("one line");
        let error: Value = serde_json::from_str(line).unwrap();
        let message = error["error"].as_str().unwrap();
        assert!(message.contains(MARKED), "{message}");
        assert!(message.contains("failurePolicy"), "{message}");
        assert_eq!(
            metric(&server, "tandem_review_panics_total"),
            f64::from(round)
        );
        assert_eq!(
            metric(&server, r#"tandem_rejected_requests_total{code="500"}"#),
            f64::from(round)
        );

        // The next review, on the same client (the same kept-alive connection), is
        // answered normally.
        let (status, answer) = server.post(&client, &good).await;
        assert_eq!(status, 200, "{answer}");
        common::assert_valid_pod(&patched(&good, &answer));
    }
    server.stop().await;
}

//! Golden fixtures: AdmissionReview requests as the API server sends them
//! (`tests/data/reviews`, written by `tests/data/gen.py`, plus the benchmark's three) sent
//! to the real server over HTTPS, HTTP/1.1 and HTTP/2; the patch applied; the resulting pod
//! compared structurally with `tests/data/golden/<name>.json`, judged by the independent
//! oracle (strict schema, API-server pod rules, "restricted" for what tandem added), and
//! reviewed a second time to prove that a mutated pod yields no patch.
//!
//! `TANDEM_BLESS=1 cargo test --test golden` rewrites the golden files; review the diff.

mod common;

use std::path::PathBuf;

use common::{TestServer, assert_valid_pod, patched, root};
use serde_json::Value;

fn reviews() -> Vec<(String, Value)> {
    let dir = root().join("tests/data/reviews");
    let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/data/reviews")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    found.sort();
    assert!(
        found.len() >= 15,
        "the fixtures are missing from {}",
        dir.display()
    );
    found
        .into_iter()
        .map(|path| {
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            let review = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            (name, review)
        })
        .collect()
}

fn golden_path(name: &str) -> PathBuf {
    root()
        .join("tests/data/golden")
        .join(format!("{name}.json"))
}

#[tokio::test]
async fn every_fixture_matches_its_golden_pod_over_h1_and_h2() {
    let server = TestServer::start().await;
    let bless = std::env::var_os("TANDEM_BLESS").is_some();
    let mut mismatched = Vec::new();
    for (name, review) in reviews() {
        let mut results = Vec::new();
        for http2 in [false, true] {
            let (status, response) = server.post(&server.client(http2), &review).await;
            assert_eq!(status, 200, "{name}: {response}");
            results.push(patched(&review, &response));
        }
        assert_eq!(
            results[0], results[1],
            "{name}: HTTP/1.1 and HTTP/2 disagree"
        );
        let pod = results.pop().unwrap();

        let path = golden_path(&name);
        if bless {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, serde_json::to_string_pretty(&pod).unwrap() + "\n").unwrap();
        } else {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (TANDEM_BLESS=1 writes it)", path.display()));
            let golden: Value = serde_json::from_str(&text).unwrap();
            if golden != pod {
                mismatched.push(name.clone());
            }
        }
        assert_valid_pod(&pod);
    }
    assert!(
        mismatched.is_empty(),
        "these pods differ from their golden files (TANDEM_BLESS=1 to accept, then review the diff): {mismatched:?}"
    );
}

#[tokio::test]
async fn a_mutated_pod_reviewed_again_gets_no_patch() {
    let server = TestServer::start().await;
    let client = server.client(false);
    for (name, review) in reviews() {
        let (_, response) = server.post(&client, &review).await;
        let pod = patched(&review, &response);
        let mut again = review.clone();
        again["request"]["object"] = pod;
        let (status, second) = server.post(&client, &again).await;
        assert_eq!(status, 200);
        assert_eq!(second["response"]["allowed"], true, "{name}: {second}");
        assert!(
            second["response"].get("patch").is_none(),
            "{name}: a second review patched again: {second}"
        );
    }
}

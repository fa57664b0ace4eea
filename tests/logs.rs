//! The log: one line per review, as the real binary writes it, in both formats, with the
//! uid, namespace, pod name (or `generateName*`), patterns, outcome and duration.

mod common;

use std::time::Duration;

use common::{bench_fixture, binary::Tandem};
use serde_json::Value;

/// `tandem serve` with `--log-format FORMAT`: the child, its webhook port, the CA to trust.
fn start(dir: &std::path::Path, format: &str) -> (Tandem, u16, std::path::PathBuf) {
    let dev = dir.join("dev");
    let (tandem, port) = common::binary::serve_dev(&dev, format);
    (tandem, port, dev.join("ca.crt"))
}

async fn post(ca: &std::path::Path, port: u16, review: &Value) {
    let response = common::client(ca, false)
        .post(format!("https://localhost:{port}/mutate"))
        .header("content-type", "application/json")
        .body(review.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

fn uid(review: &Value) -> String {
    review["request"]["uid"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_have_one_line_per_review_with_what_happened() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tandem, port, ca) = tokio::task::block_in_place(|| start(dir.path(), "json"));

    let patched = bench_fixture("typical");
    let plain = bench_fixture("plain");
    let mut denied = bench_fixture("typical");
    denied["request"]["uid"] = "denied-1".into();
    denied["request"]["object"]["metadata"]["annotations"]["tandem.dev/log-shipper.path"] =
        "relative".into();
    for review in [&patched, &plain, &denied] {
        post(&ca, port, review).await;
    }

    // The lines are written in batches: wait for the last one.
    let line_of = |review: &Value| -> Value {
        let uid = uid(review);
        let line = tokio::task::block_in_place(|| {
            tandem.wait_for_line(Duration::from_secs(5), |line| {
                common::binary::field(line, "message").as_deref() == Some("review")
                    && common::binary::field(line, "uid").as_deref() == Some(&*uid)
            })
        });
        serde_json::from_str(&line).unwrap()
    };

    let line = line_of(&patched);
    let object = &patched["request"]["object"]["metadata"];
    assert_eq!(line["level"], "INFO");
    assert_eq!(line["namespace"], patched["request"]["namespace"]);
    assert_eq!(
        line["pod"].as_str().unwrap(),
        format!("{}*", object["generateName"].as_str().unwrap())
    );
    let mut patterns: Vec<&str> = line["patterns"].as_str().unwrap().split(',').collect();
    patterns.sort();
    assert_eq!(patterns, ["git-clone", "log-shipper"]);
    assert_eq!(line["outcome"], "patched");
    assert!(line["patch_bytes"].as_u64().unwrap() > 0, "{line}");
    assert!(line["duration_us"].is_u64(), "{line}");
    assert!(line["timestamp"].as_str().unwrap().ends_with('Z'), "{line}");

    let line = line_of(&plain);
    assert_eq!(line["outcome"], "unchanged");
    assert_eq!(line["patterns"], "");
    assert_eq!(line["patch_bytes"], 0);

    let line = line_of(&denied);
    assert_eq!(line["outcome"], "denied");
    assert_eq!(line["patterns"], "");
    assert_eq!(line["reasons"], "invalid_value");

    // Exactly one line per review.
    let output = tandem.output();
    let reviews = output
        .lines()
        .filter(|line| common::binary::field(line, "message").as_deref() == Some("review"))
        .count();
    assert_eq!(reviews, 3, "{output}");

    tandem.terminate();
    assert!(tokio::task::block_in_place(|| tandem.wait(Duration::from_secs(30))).success());
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_have_the_same_fields() {
    let dir = tempfile::tempdir().unwrap();
    let (mut tandem, port, ca) = tokio::task::block_in_place(|| start(dir.path(), "text"));
    let review = bench_fixture("typical");
    post(&ca, port, &review).await;
    let uid = uid(&review);
    let line = tokio::task::block_in_place(|| {
        tandem.wait_for_line(Duration::from_secs(5), |line| {
            line.contains(" review ") && line.contains(&format!("uid={uid}"))
        })
    });
    // `TIMESTAMP  INFO review uid=… namespace=… pod=… patterns=… outcome="patched" …`,
    // without colour codes when not writing to a terminal.
    assert!(!line.contains('\u{1b}'), "{line}");
    let fields: Vec<(&str, &str)> = line
        .split(' ')
        .filter_map(|word| word.split_once('='))
        .collect();
    let field = |name: &str| {
        fields
            .iter()
            .find(|(key, _)| *key == name)
            .map(|(_, value)| *value)
            .unwrap_or_else(|| panic!("no {name} in {line}"))
    };
    assert_eq!(field("namespace"), review["request"]["namespace"]);
    assert!(field("pod").ends_with('*'), "{line}");
    assert_eq!(field("outcome"), "\"patched\"");
    assert!(field("patterns").contains("log-shipper"), "{line}");
    assert!(field("duration_us").parse::<u64>().is_ok(), "{line}");

    tandem.terminate();
    assert!(tokio::task::block_in_place(|| tandem.wait(Duration::from_secs(30))).success());
}

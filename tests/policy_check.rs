//! `tandem policy check DIR`, the real binary: exit 0 on a valid directory, exit 1 with
//! `file:line: ...` on errors, the line being the one to fix.

use std::{fs, path::Path, process::Command};

use rstest::rstest;

const VALID: &str = "apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata:
  name: payments-logging
spec:
  priority: 100
  selector:
    namespaces: {matchLabels: {team: payments}}
    pods:
      matchExpressions:
        - key: app
          operator: Exists
  defaults:
    log-shipper: {profile: loki, path: /var/log/app}
  enforce: [log-shipper]
  allowedImages: [\"cr.fluentbit.io/fluent/*\"]
  profiles:
    log-shipper:
      loki:
        image: cr.fluentbit.io/fluent/fluent-bit:3.2
        args:
          - -i
          - tail
          - -p
          - path={{path}}/*.log
          - -o
          - loki
        resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}
";

/// Runs `tandem policy check` on a directory holding `files`.
fn check(files: &[(&str, &str)]) -> (i32, String, String) {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        fs::write(dir.path().join(name), text).unwrap();
    }
    let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .expect("running tandem");
    let strip = |bytes: &[u8]| {
        String::from_utf8_lossy(bytes).replace(&format!("{}/", dir.path().display()), "")
    };
    (
        output.status.code().expect("tandem exits"),
        strip(&output.stdout),
        strip(&output.stderr),
    )
}

/// The 1-based line of the first line of `text` containing `needle`.
fn line(text: &str, needle: &str) -> usize {
    1 + text
        .lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} is not in the text"))
}

#[test]
fn a_valid_directory_passes() {
    let second = VALID.replace("payments-logging", "search-logging");
    let (code, stdout, stderr) = check(&[("a.yaml", VALID), ("b.yml", &second)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("2 policies, all valid"), "{stdout}");
    assert_eq!(stderr, "");
}

#[test]
fn the_shipped_policies_and_examples_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for dir in ["policies", "examples/policies"] {
        let dir = root.join(dir);
        if !dir.is_dir() {
            continue;
        }
        let output = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(["policy", "check"])
            .arg(&dir)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[rstest]
// YAML syntax: a mapping value where none may be.
#[case::syntax(
    "  priority: 100",
    "  priority: 100: 200",
    "priority: 100: 200",
    "mapping values are not allowed"
)]
// A field the schema does not have.
#[case::unknown_field(
    "  enforce: [log-shipper]",
    "  enforce: [log-shipper]\n  enforcee: [git-clone]",
    "enforcee",
    "unknown field `enforcee`"
)]
// A placeholder naming no option, in the sixth item of a block sequence.
#[case::placeholder(
    "          - loki\n",
    "          - loki\n          - -p\n          - host={{lokihost}}\n",
    "host={{lokihost}}",
    "{{lokihost}}"
)]
// An operator label selectors do not have.
#[case::selector_operator(
    "          operator: Exists",
    "          operator: Equals\n          values: [web]",
    "operator: Equals",
    "operator \"Equals\" is not In, NotIn, Exists or DoesNotExist"
)]
// An option log-shipper does not have, in defaults.
#[case::unknown_option(
    "profile: loki, path: /var/log/app}",
    "profile: loki, pth: /var/log/app}",
    "pth:",
    "has no option \"pth\""
)]
fn errors_name_the_file_and_the_offending_line(
    #[case] from: &str,
    #[case] to: &str,
    #[case] offending: &str,
    #[case] message: &str,
) {
    let broken = VALID.replacen(from, to, 1);
    assert_ne!(broken, VALID, "the case changes the file");
    let (code, stdout, stderr) = check(&[
        ("ok.yaml", &VALID.replace("payments", "search")),
        ("broken.yaml", &broken),
    ]);
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let expected = format!("broken.yaml:{}: ", line(&broken, offending));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one error: {stderr}");
    assert!(
        lines[0].starts_with(&expected),
        "expected {expected}...: {stderr}"
    );
    assert!(lines[0].contains(message), "expected {message:?}: {stderr}");
}

#[test]
fn a_policy_name_defined_twice_across_files_points_at_both() {
    let other = format!(
        "# another team's file\n{}\n---\n{}",
        VALID.replace("payments-logging", "other"),
        VALID
    );
    let (code, _, stderr) = check(&[("a.yaml", VALID), ("b.yaml", &other)]);
    assert_eq!(code, 1, "{stderr}");
    // The second `name: payments-logging` of b.yaml, the first of a.yaml.
    let second = other
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains("name: payments-logging"))
        .map(|(i, _)| i + 1)
        .next()
        .unwrap();
    let expected = format!(
        "b.yaml:{second}: policy \"payments-logging\" is already defined at a.yaml:{}",
        line(VALID, "name: payments-logging")
    );
    assert!(
        stderr.lines().any(|l| l.starts_with(&expected)),
        "expected {expected}: {stderr}"
    );
}

#[test]
fn every_error_of_every_file_is_reported() {
    // Parse errors in two files.
    let unknown = VALID.replacen("  priority: 100", "  prority: 100", 1);
    let syntax = VALID.replace("payments-logging", "other").replacen(
        "  enforce: [log-shipper]",
        "  enforce: [log-shipper",
        1,
    );
    let (code, _, stderr) = check(&[("a.yaml", &unknown), ("b.yaml", &syntax)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!("a.yaml:{}: ", line(&unknown, "prority"))),
        "{stderr}"
    );
    assert!(stderr.contains("b.yaml:"), "{stderr}");

    // Policies that parse but are invalid, in two files.
    let bad_selector = VALID.replacen(
        "operator: Exists",
        "operator: Equals\n          values: [x]",
        1,
    );
    let bad_placeholder = VALID
        .replace("payments-logging", "other")
        .replace("loki", "loki2")
        .replacen("path={{path}}/*.log", "path={{pth}}/*.log", 1);
    let (code, _, stderr) = check(&[("a.yaml", &bad_selector), ("b.yaml", &bad_placeholder)]);
    assert_eq!(code, 1);
    assert!(
        stderr.contains(&format!(
            "a.yaml:{}: ",
            line(&bad_selector, "operator: Equals")
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("b.yaml:{}: ", line(&bad_placeholder, "{{pth}}"))),
        "{stderr}"
    );
}

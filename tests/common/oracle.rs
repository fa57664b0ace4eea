//! The independent test oracle, from Rust: would a real API server accept this object?
//!
//! The judge is `tests/validate/podcheck.py` (strict OpenAPI schema for the newest
//! Kubernetes and 1.29, the API server's pod validation rules, and on request the Pod
//! Security Standard "restricted" plus tandem's own rules for the named containers). It
//! shares no code with the webhook. One `podcheck.py --serve` child runs per test
//! process; each call sends it one JSON line and reads one JSON line back.
//!
//! ```ignore
//! let pod = apply(&review_patch, &original_pod);
//! oracle::assert_valid(&pod, &["tandem-log-shipper"]);
//! ```
//!
//! The interpreter is `python3`, or `$TANDEM_ORACLE_PYTHON` (e.g. a virtualenv's).
#![allow(dead_code)] // each test crate uses a different part of `common`

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{self, JoinHandle};

use serde_json::{Value, json};

const HOW_TO_FIX: &str = "run `bash tests/run.sh` once: it installs the oracle's Python \
     requirements (tests/requirements.txt)";

/// Errors the independent oracle finds in `object`; empty when a real API server would
/// accept it. `restricted` names containers (usually the injected ones) that must also
/// meet the Pod Security Standard "restricted", run with a read-only root filesystem and
/// carry cpu/memory requests and a memory limit.
pub fn check(object: &Value, restricted: &[&str]) -> Vec<String> {
    let request = json!({ "object": object, "restricted": restricted });
    let mut oracle = ORACLE
        .get_or_init(|| Mutex::new(Oracle::start()))
        .lock()
        // A test that panicked mid-call leaves the pipe in an unknown state; the next
        // call then fails loudly on its own, so the poison itself carries no news.
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    oracle.ask(&request)
}

/// Panics with every error, pretty-printed object included, when the oracle rejects it.
pub fn assert_valid(object: &Value, restricted: &[&str]) {
    let errors = check(object, restricted);
    if !errors.is_empty() {
        let pretty = serde_json::to_string_pretty(object).unwrap_or_else(|_| object.to_string());
        panic!(
            "the oracle rejects this object ({} error{}):\n  - {}\n\nobject:\n{pretty}",
            errors.len(),
            if errors.len() == 1 { "" } else { "s" },
            errors.join("\n  - "),
        );
    }
}

static ORACLE: OnceLock<Mutex<Oracle>> = OnceLock::new();

/// The `podcheck.py --serve` child and its pipes.
struct Oracle {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    /// Everything the child wrote to stderr (a traceback when it cannot start).
    stderr: Arc<Mutex<String>>,
    /// The thread that drains stderr into `stderr`; it ends when the child does.
    drain: Option<JoinHandle<()>>,
}

impl Oracle {
    fn start() -> Self {
        let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/validate/podcheck.py");
        let python = std::env::var("TANDEM_ORACLE_PYTHON").unwrap_or_else(|_| "python3".into());
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("--serve")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start `{python} {}`: {e}; {HOW_TO_FIX}",
                    script.display()
                )
            });
        let stdin = child.stdin.take().expect("stdin is piped");
        let stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut pipe = child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&stderr);
        // Drain stderr continuously so the child can never block on a full pipe.
        let drain = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                sink.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Oracle {
            child,
            stdin,
            stdout,
            stderr,
            drain: Some(drain),
        }
    }

    /// Sends one request line, reads one answer line.
    fn ask(&mut self, request: &Value) -> Vec<String> {
        let mut line = request.to_string();
        line.push('\n');
        if self
            .stdin
            .write_all(line.as_bytes())
            .and_then(|()| self.stdin.flush())
            .is_err()
        {
            self.died("could not send it a request");
        }
        let mut answer = String::new();
        match self.stdout.read_line(&mut answer) {
            Ok(0) | Err(_) => self.died("it closed its output"),
            Ok(_) => {}
        }
        let parsed: Value = serde_json::from_str(&answer)
            .unwrap_or_else(|e| panic!("the test oracle answered {answer:?}, not JSON: {e}"));
        match parsed.get("errors").and_then(Value::as_array) {
            Some(errors) => errors
                .iter()
                .map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_owned))
                .collect(),
            None => panic!("the test oracle answered {answer:?}, without an `errors` list"),
        }
    }

    fn died(&mut self, what: &str) -> ! {
        let status = self
            .child
            .wait()
            .map_or_else(|e| e.to_string(), |s| s.to_string());
        if let Some(drain) = self.drain.take() {
            let _ = drain.join(); // the child has exited: its traceback is complete
        }
        let stderr = self
            .stderr
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        panic!(
            "the test oracle (tests/validate/podcheck.py --serve) failed: {what} ({status}); {HOW_TO_FIX}\n{stderr}"
        );
    }
}

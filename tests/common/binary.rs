//! The real `tandem` binary as a child process: its output collected line by line (stdout
//! and stderr together), waited on with deadlines, stopped with SIGTERM like the kubelet
//! does.

use std::{
    io::{BufRead, BufReader, Read},
    process::{Child, Command, ExitStatus, Stdio},
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

/// A running `tandem` child. Killed (by its own pid) if still running when dropped.
pub struct Tandem {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    readers: Vec<thread::JoinHandle<()>>,
}

impl Tandem {
    /// Starts `tandem ARGS…` with the log filter at `info`.
    pub fn spawn(args: &[&str]) -> Tandem {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tandem"))
            .args(args)
            .env("TANDEM_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("the tandem binary starts");
        let lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        let stdout = child.stdout.take().expect("piped");
        let stderr = child.stderr.take().expect("piped");
        let readers = vec![
            collect(stdout, lines.clone()),
            collect(stderr, lines.clone()),
        ];
        Tandem {
            child,
            lines,
            readers,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The first output line that satisfies `matches`, waiting up to `within` for it.
    /// Panics with everything printed so far when none comes.
    pub fn wait_for_line(&self, within: Duration, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + within;
        let (lines, changed) = &*self.lines;
        let mut seen = lines.lock().unwrap();
        loop {
            if let Some(line) = seen.iter().find(|line| matches(line)) {
                return line.clone();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "no such line from tandem within {within:?}; it printed:\n{}",
                seen.join("\n")
            );
            seen = changed.wait_timeout(seen, left).unwrap().0;
        }
    }

    /// Everything printed so far.
    pub fn output(&self) -> String {
        self.lines.0.lock().unwrap().join("\n")
    }

    /// Sends SIGTERM to this child (by its pid).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("running kill");
        assert!(status.success(), "kill -TERM {} failed", self.pid());
    }

    /// Waits up to `within` for the child to exit; panics (after killing it) if it does not.
    /// Returns the exit status once all its output has been read.
    pub fn wait(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().expect("waiting for tandem") {
                for reader in self.readers.drain(..) {
                    let _ = reader.join();
                }
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "tandem did not exit within {within:?}; it printed:\n{}",
                    self.output()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Tandem {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `tandem serve` on 127.0.0.1 with a development certificate kept in `dev`, logging in
/// `format` (`text` or `json`); returns it once it says it is serving, with its webhook port.
pub fn serve_dev(dev: &std::path::Path, format: &str) -> (Tandem, u16) {
    let tandem = Tandem::spawn(&[
        "serve",
        "--addr",
        "127.0.0.1:0",
        "--metrics-addr",
        "127.0.0.1:0",
        "--dev-cert-dir",
        dev.to_str().expect("a UTF-8 path"),
        "--shutdown-delay",
        "0s",
        "--log-format",
        format,
    ]);
    let serving = tandem.wait_for_line(Duration::from_secs(20), |line| {
        line.contains("tandem is serving")
    });
    // Both formats print the URL: `"webhook":"https://…"` or `webhook=https://…`.
    let port = serving
        .split("https://127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split("/mutate").next())
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no webhook URL in {serving}"));
    (tandem, port)
}

fn collect(
    stream: impl Read + Send + 'static,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            let (seen, changed) = &*lines;
            seen.lock().unwrap().push(line);
            changed.notify_all();
        }
    })
}

/// A `--log-format json` line's field, as a string.
pub fn field(line: &str, name: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    value.get(name)?.as_str().map(String::from)
}

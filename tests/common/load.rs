//! Steady load from real HTTPS clients, for tests that change something under it
//! (certificate rotation, policy reloads, shutdown): a few workers, each sending reviews
//! one after the other and checking each answer (HTTP 200, the request's uid, a patch
//! that applies), every `reconnect` reviews with a new client, so that new connections
//! (and handshakes) keep coming; HTTP/1.1 and HTTP/2 alternate.

use std::{
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde_json::Value;
use tokio::task::JoinSet;

/// What the workers saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub answered: usize,
    /// Every failed review: what went wrong.
    pub failed: Vec<String>,
}

/// What an answer must be, beyond HTTP 200 and the uid: `Ok` or why not.
pub type Check = Arc<dyn Fn(&Value, &Value) -> Result<(), String> + Send + Sync>;

/// A running load; [`Load::stop`] ends it and returns the tally.
pub struct Load {
    stop: Arc<AtomicBool>,
    tasks: JoinSet<()>,
    tally: Arc<Mutex<Tally>>,
}

/// How to load.
pub struct Spec {
    pub url: String,
    /// PEM files of every CA to trust (all the CAs a rotation goes through).
    pub cas: Vec<PathBuf>,
    pub review: Value,
    pub workers: usize,
    /// Reviews per client before a new one (a new connection).
    pub reconnect: usize,
    pub check: Check,
}

impl Load {
    pub fn start(spec: Spec) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = JoinSet::new();
        let spec = Arc::new(spec);
        for worker in 0..spec.workers {
            let (stop, tally, spec) = (stop.clone(), tally.clone(), spec.clone());
            tasks.spawn(async move {
                let body = spec.review.to_string();
                let mut sent = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let http2 = (worker + sent / spec.reconnect) % 2 == 1;
                    let client = client(&spec.cas, http2);
                    for _ in 0..spec.reconnect {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        sent += 1;
                        let result = one(&client, &spec, &body).await;
                        let mut tally = tally.lock().unwrap();
                        match result {
                            Ok(()) => tally.answered += 1,
                            Err(error) => tally.failed.push(error),
                        }
                    }
                }
            });
        }
        Load { stop, tasks, tally }
    }

    /// Reviews answered so far.
    pub fn answered(&self) -> usize {
        self.tally.lock().unwrap().answered
    }

    /// Stops sending, waits for the reviews in flight, returns the tally.
    pub async fn stop(mut self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        while let Some(done) = self.tasks.join_next().await {
            done.expect("a load worker");
        }
        std::mem::take(&mut *self.tally.lock().unwrap())
    }
}

fn client(cas: &[PathBuf], http2: bool) -> reqwest::Client {
    let mut builder = super::client_builder(&cas[0], http2);
    for ca in &cas[1..] {
        let pem = std::fs::read(ca).expect("a CA file");
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap());
    }
    builder.build().expect("a client")
}

async fn one(client: &reqwest::Client, spec: &Spec, body: &str) -> Result<(), String> {
    let response = client
        .post(&spec.url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| format!("sending: {e:?}"))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .map_err(|e| format!("reading the answer: {e:?}"))?;
    if status != 200 {
        return Err(format!("HTTP {status}: {answer}"));
    }
    if answer["response"]["uid"] != spec.review["request"]["uid"] {
        return Err(format!("another uid: {answer}"));
    }
    (spec.check)(&spec.review, &answer)
}

/// The check of an answer that must be allowed with a patch that applies; the patched pod
/// is handed to `more`.
pub fn patched_and(more: impl Fn(&Value) -> Result<(), String> + Send + Sync + 'static) -> Check {
    Arc::new(move |request, answer| {
        let pod = std::panic::catch_unwind(|| super::patched(request, answer))
            .map_err(|_| format!("not an allowed answer whose patch applies: {answer}"))?;
        more(&pod)
    })
}

/// Polls `check` every 20 ms until it is true; panics after `within`.
pub async fn eventually(within: Duration, what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not within {within:?}: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

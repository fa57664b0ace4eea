//! The soak: drives a `tandem serve` (the release binary, started here on 127.0.0.1 with
//! a certificate of its own) for minutes with well-behaved clients and, in a second
//! phase, with a hostile share too, and reports what the well-behaved clients saw and
//! what the server's memory and file descriptors did. `benches/soak` builds and runs it.
//!
//! Well-behaved: reviews of every pattern (`tests/data/reviews`) over HTTP/1.1 keep-alive
//! and HTTP/2, each answer checked for HTTP 200 and its uid, a sample checked by applying
//! the patch and asking the oracle (`tests/validate/podcheck.py`); and requests that must
//! be refused as the contract says (malformed JSON, wrong kind, wrong apiVersion: 400; a
//! body over --max-body: 413) or answered (a 3 MiB review: 200).
//! Hostile: TCP connections that never start TLS, TLS connections that never send,
//! request heads sent a byte a second, bodies sent a byte a second, clients that vanish
//! mid-body. Only 127.0.0.1 is dialled.

#[path = "../tests/common/oracle.rs"]
mod oracle;

use std::{
    io::{BufRead, BufReader},
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

use base64::Engine as _;
use clap::Parser;
use rustls::{
    ClientConfig, RootCertStore,
    pki_types::{CertificateDer, ServerName, pem::PemObject},
};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::TlsConnector;

#[derive(Parser, Debug, Clone)]
#[command(about = "soak a tandem binary under well-behaved and hostile load (127.0.0.1 only)")]
struct Args {
    /// The tandem binary.
    #[arg(long, default_value = "target/release/tandem")]
    tandem: PathBuf,
    /// Seconds of well-behaved load alone.
    #[arg(long, default_value_t = 60)]
    baseline: u64,
    /// Seconds of well-behaved load with the hostile share.
    #[arg(long, default_value_t = 120)]
    hostile: u64,
    /// Seconds after the load, before the end figures are read.
    #[arg(long, default_value_t = 15)]
    cooldown: u64,
    /// HTTP/1.1 well-behaved clients (one keep-alive connection each).
    #[arg(long, default_value_t = 16)]
    h1: usize,
    /// HTTP/2 well-behaved connections…
    #[arg(long, default_value_t = 2)]
    h2: usize,
    /// …each with this many streams at a time.
    #[arg(long, default_value_t = 8)]
    h2_streams: usize,
    /// Hostile: TCP connections that never start TLS, kept open (reopened when closed).
    #[arg(long, default_value_t = 2000)]
    raw: usize,
    /// Hostile: TLS connections that never send a request.
    #[arg(long, default_value_t = 500)]
    tls_idle: usize,
    /// Hostile: request heads sent a byte a second.
    #[arg(long, default_value_t = 300)]
    slow_head: usize,
    /// Hostile: bodies sent a byte a second after a whole head.
    #[arg(long, default_value_t = 200)]
    slow_body: usize,
    /// Hostile: clients sending half a body and vanishing, one after the other.
    #[arg(long, default_value_t = 4)]
    vanish: usize,
    /// Check one answer in this many by applying its patch and asking the oracle.
    #[arg(long, default_value_t = 100)]
    sample: u64,
    /// Write the report as JSON here too.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Extra arguments for `tandem serve`.
    #[arg(last = true)]
    serve_args: Vec<String>,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The review fixtures, as bodies, with their uids.
fn fixtures() -> Vec<(String, Value)> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(root().join("tests/data/reviews"))
        .expect("tests/data/reviews")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    found.sort();
    found
        .iter()
        .map(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            let value: Value = serde_json::from_str(&text).unwrap();
            (value.to_string(), value)
        })
        .collect()
}

/// What the well-behaved clients saw, per phase.
#[derive(Default)]
struct Seen {
    answered: AtomicU64,
    failed_5xx: AtomicU64,
    /// Transport errors: resets, closed connections, timeouts.
    resets: AtomicU64,
    /// Any other wrong answer (status or uid).
    wrong: AtomicU64,
    latencies: Mutex<Vec<u32>>,
    /// Requests that must be refused (or the 3 MiB one answered): as expected / not.
    contract_ok: AtomicU64,
    contract_wrong: AtomicU64,
    first_errors: Mutex<Vec<String>>,
}

impl Seen {
    fn error(&self, what: String) {
        let mut errors = self.first_errors.lock().unwrap();
        if errors.len() < 10 {
            errors.push(what);
        }
    }

    fn percentile(&self, p: f64) -> f64 {
        let mut all = self.latencies.lock().unwrap().clone();
        if all.is_empty() {
            return 0.0;
        }
        all.sort_unstable();
        let index = ((all.len() as f64 - 1.0) * p).round() as usize;
        f64::from(all[index]) / 1000.0
    }
}

/// Sampled answers for the oracle: (pod after the patch, added container names).
type Sample = (Value, Vec<String>);

struct Shared {
    url: String,
    port: u16,
    ca: PathBuf,
    fixtures: Vec<(String, Value)>,
    stop: AtomicBool,
    hostile_stop: AtomicBool,
    phase: Mutex<Arc<Seen>>,
    samples: mpsc::SyncSender<Sample>,
    sample_every: u64,
    counter: AtomicU64,
    hostile_opened: AtomicU64,
    hostile_cut: AtomicU64,
}

fn http_client(ca: &Path, http2: bool) -> reqwest::Client {
    let pem = std::fs::read(ca).unwrap();
    let builder = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .timeout(Duration::from_secs(15))
        .pool_max_idle_per_host(64);
    if http2 {
        builder.http2_prior_knowledge().build().unwrap()
    } else {
        builder.http1_only().build().unwrap()
    }
}

async fn good_review(shared: &Shared, client: &reqwest::Client, index: usize) {
    let seen = shared.phase.lock().unwrap().clone();
    let (body, review) = &shared.fixtures[index % shared.fixtures.len()];
    let started = Instant::now();
    let sent = client
        .post(&shared.url)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(error) => {
            seen.resets.fetch_add(1, Ordering::Relaxed);
            seen.error(format!("review: {error:?}"));
            return;
        }
    };
    let status = response.status().as_u16();
    let bytes = match response.bytes().await {
        Ok(bytes) => bytes,
        Err(error) => {
            seen.resets.fetch_add(1, Ordering::Relaxed);
            seen.error(format!("review body: {error:?}"));
            return;
        }
    };
    let micros = started.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
    if status >= 500 {
        seen.failed_5xx.fetch_add(1, Ordering::Relaxed);
        seen.error(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&bytes)
        ));
        return;
    }
    let answer: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    if status != 200 || answer["response"]["uid"] != review["request"]["uid"] {
        seen.wrong.fetch_add(1, Ordering::Relaxed);
        seen.error(format!("HTTP {status}: {answer}"));
        return;
    }
    seen.answered.fetch_add(1, Ordering::Relaxed);
    seen.latencies.lock().unwrap().push(micros);
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    if n.is_multiple_of(shared.sample_every) {
        let mut pod = review["request"]["object"].clone();
        let before: Vec<String> = names(&pod);
        if let Some(patch) = answer["response"]["patch"].as_str() {
            let applied = base64::engine::general_purpose::STANDARD
                .decode(patch)
                .ok()
                .and_then(|bytes| serde_json::from_slice::<json_patch::Patch>(&bytes).ok())
                .map(|patch| json_patch::patch(&mut pod, &patch));
            if !matches!(applied, Some(Ok(()))) {
                seen.wrong.fetch_add(1, Ordering::Relaxed);
                seen.error(format!("a patch that does not apply: {answer}"));
                return;
            }
        }
        let added = names(&pod)
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        let _ = shared.samples.try_send((pod, added));
    }
}

fn names(pod: &Value) -> Vec<String> {
    ["initContainers", "containers"]
        .iter()
        .flat_map(|l| pod["spec"][l].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str().map(String::from))
        .collect()
}

/// Requests with a contract answer other than a patch; (body, expected status).
fn contract_requests(fixtures: &[(String, Value)]) -> Vec<(Vec<u8>, u16)> {
    let typical = &fixtures
        .iter()
        .find(|(_, v)| v["request"]["object"]["metadata"]["annotations"].is_object())
        .expect("an annotated fixture")
        .1;
    let mut wrong_kind = typical.clone();
    wrong_kind["kind"] = json!("ConfigMap");
    let mut wrong_version = typical.clone();
    wrong_version["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let max = 3 * 1024 * 1024;
    let mut big = typical.to_string().into_bytes();
    big.resize(max - 1024, b' ');
    let mut over = typical.to_string().into_bytes();
    over.resize(max + 1024, b' ');
    vec![
        (
            b"{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": ".to_vec(),
            400,
        ),
        (b"not json at all".to_vec(), 400),
        (wrong_kind.to_string().into_bytes(), 400),
        (wrong_version.to_string().into_bytes(), 400),
        (big, 200),
        (over, 413),
    ]
}

async fn contract_worker(shared: Arc<Shared>, http2: bool) {
    let requests = contract_requests(&shared.fixtures);
    let client = http_client(&shared.ca, http2);
    let mut n = 0usize;
    while !shared.stop.load(Ordering::Relaxed) {
        let seen = shared.phase.lock().unwrap().clone();
        let (body, expected) = &requests[n % requests.len()];
        n += 1;
        let result = client
            .post(&shared.url)
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await;
        match result {
            Ok(response) => {
                let status = response.status().as_u16();
                let _ = response.bytes().await;
                if status == *expected {
                    seen.contract_ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    if status >= 500 {
                        seen.failed_5xx.fetch_add(1, Ordering::Relaxed);
                    }
                    seen.contract_wrong.fetch_add(1, Ordering::Relaxed);
                    seen.error(format!("expected {expected}, got {status}"));
                }
            }
            Err(error) => {
                seen.resets.fetch_add(1, Ordering::Relaxed);
                seen.error(format!("contract request ({expected}): {error:?}"));
            }
        }
    }
}

fn tls_connector(ca: &Path, alpn: &[u8]) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        roots.add(cert.unwrap()).unwrap();
    }
    let mut config = ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![alpn.to_vec()];
    TlsConnector::from(Arc::new(config))
}

#[derive(Clone, Copy)]
enum Hostile {
    Raw,
    TlsIdle,
    SlowHead,
    SlowBody,
    Vanish,
}

/// One hostile client, reconnecting until the hostile phase ends.
async fn hostile(shared: Arc<Shared>, kind: Hostile, index: usize) {
    let connector = tls_connector(
        &shared.ca,
        if index.is_multiple_of(2) {
            b"http/1.1"
        } else {
            b"h2"
        },
    );
    let head = "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: 100000\r\n\r\n";
    while !shared.hostile_stop.load(Ordering::Relaxed) {
        // A full accept queue leaves a SYN unanswered for seconds: bounded, so that the
        // phase ends on time.
        let connect = TcpStream::connect(("127.0.0.1", shared.port));
        let Ok(Ok(tcp)) = tokio::time::timeout(Duration::from_secs(2), connect).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        shared.hostile_opened.fetch_add(1, Ordering::Relaxed);
        let stop = || shared.hostile_stop.load(Ordering::Relaxed);
        match kind {
            Hostile::Raw => {
                let mut tcp = tcp;
                hold(&mut tcp, stop).await;
            }
            _ => {
                let name = ServerName::try_from("localhost").unwrap();
                let Ok(mut tls) = connector.connect(name, tcp).await else {
                    shared.hostile_cut.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                match kind {
                    Hostile::TlsIdle => hold(&mut tls, stop).await,
                    Hostile::SlowHead | Hostile::SlowBody => {
                        let mut bytes = Vec::new();
                        if matches!(kind, Hostile::SlowBody) {
                            if tls.write_all(head.as_bytes()).await.is_err() {
                                continue;
                            }
                            bytes.extend_from_slice(&shared.fixtures[0].0.as_bytes()[..200]);
                        } else {
                            bytes.extend_from_slice(head.as_bytes());
                        }
                        for byte in bytes {
                            if stop() || tls.write_all(&[byte]).await.is_err() {
                                break;
                            }
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                    Hostile::Vanish => {
                        let body = &shared.fixtures[index % shared.fixtures.len()].0;
                        let _ = tls.write_all(head.as_bytes()).await;
                        let _ = tls.write_all(&body.as_bytes()[..body.len() / 2]).await;
                        // Gone without a word: the socket closed under TLS, no
                        // close_notify.
                        let (tcp, _) = tls.into_inner();
                        drop(tcp);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                    Hostile::Raw => unreachable!("handled above"),
                }
            }
        }
        shared.hostile_cut.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Holds a connection open without sending until the server closes it or `stop`.
async fn hold<S: tokio::io::AsyncRead + Unpin>(stream: &mut S, stop: impl Fn() -> bool) {
    let mut buf = [0u8; 1024];
    while !stop() {
        let read = tokio::time::timeout(Duration::from_millis(500), stream.read(&mut buf));
        if let Ok(Ok(0) | Err(_)) = read.await {
            return;
        }
    }
}

fn rss_kib(pid: u32) -> u64 {
    status_field(pid, "VmRSS:")
}

fn status_field(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

struct Server {
    child: Child,
    port: u16,
    metrics: String,
    _dir: tempfile::TempDir,
    ca: PathBuf,
}

/// The server's process group is killed if the soak ends early (a panic).
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

fn start_server(args: &Args) -> Server {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    let names = ["localhost", "127.0.0.1"].map(String::from);
    let written = tandem::certs::write(dir.path(), &names, 2).unwrap();
    let mut child = Command::new(&args.tandem)
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--metrics-addr",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&written.cert)
        .arg("--tls-key")
        .arg(&written.key)
        .args(["--log-format", "json", "--shutdown-delay", "1s"])
        .args(&args.serve_args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", args.tandem.display()));
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let serving = loop {
        let line = lines
            .next()
            .expect("tandem printed its serving line")
            .unwrap();
        if line.contains("tandem is serving") {
            break line;
        }
    };
    // The log goes on: drained and dropped (one line a review).
    std::thread::spawn(move || for _ in lines {});
    let line: Value = serde_json::from_str(&serving).unwrap();
    let webhook = line["webhook"].as_str().unwrap();
    let port = webhook
        .trim_start_matches("https://127.0.0.1:")
        .trim_end_matches("/mutate")
        .parse()
        .unwrap();
    let metrics = line["metrics"].as_str().unwrap().to_string();
    Server {
        child,
        port,
        metrics,
        _dir: dir,
        ca: written.ca_cert,
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = Args::parse();
    let mut server = start_server(&args);
    let pid = server.child.id();
    let (samples, sampled) = mpsc::sync_channel::<Sample>(64);
    let shared = Arc::new(Shared {
        url: format!("https://localhost:{}/mutate", server.port),
        port: server.port,
        ca: server.ca.clone(),
        fixtures: fixtures(),
        stop: AtomicBool::new(false),
        hostile_stop: AtomicBool::new(false),
        phase: Mutex::new(Arc::new(Seen::default())),
        samples,
        sample_every: args.sample.max(1),
        counter: AtomicU64::new(0),
        hostile_opened: AtomicU64::new(0),
        hostile_cut: AtomicU64::new(0),
    });

    // The oracle checks sampled pods on a thread of its own.
    let verified = Arc::new((AtomicU64::new(0), AtomicU64::new(0), Mutex::new(Vec::new())));
    let oracle_thread = {
        let verified = verified.clone();
        std::thread::spawn(move || {
            for (pod, added) in sampled {
                let names: Vec<&str> = added.iter().map(String::as_str).collect();
                let errors = oracle::check(&pod, &names);
                if errors.is_empty() {
                    verified.0.fetch_add(1, Ordering::Relaxed);
                } else {
                    verified.1.fetch_add(1, Ordering::Relaxed);
                    verified.2.lock().unwrap().push(errors);
                }
            }
        })
    };

    // Warm up, then the starting figures.
    let warm = http_client(&shared.ca, false);
    for index in 0..shared.fixtures.len() {
        good_review(&shared, &warm, index).await;
    }
    drop(warm);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start_rss = rss_kib(pid);
    let start_fds = fds(pid);
    let peak = Arc::new(AtomicU64::new(0));
    {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                peak.fetch_max(rss_kib(pid), Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        });
    }

    let baseline = Arc::new(Seen::default());
    *shared.phase.lock().unwrap() = baseline.clone();
    let mut tasks = tokio::task::JoinSet::new();
    for worker in 0..args.h1 {
        let shared = shared.clone();
        tasks.spawn(async move {
            let mut n = worker;
            while !shared.stop.load(Ordering::Relaxed) {
                // A new client (a new connection) every 500 reviews.
                let client = http_client(&shared.ca, false);
                for _ in 0..500 {
                    if shared.stop.load(Ordering::Relaxed) {
                        break;
                    }
                    good_review(&shared, &client, n).await;
                    n += 1;
                }
            }
        });
    }
    for connection in 0..args.h2 {
        let shared = shared.clone();
        let streams = args.h2_streams;
        tasks.spawn(async move {
            while !shared.stop.load(Ordering::Relaxed) {
                let client = http_client(&shared.ca, true);
                let mut streams_set = tokio::task::JoinSet::new();
                for stream in 0..streams {
                    let (shared, client) = (shared.clone(), client.clone());
                    streams_set.spawn(async move {
                        for n in 0..500 {
                            if shared.stop.load(Ordering::Relaxed) {
                                break;
                            }
                            good_review(&shared, &client, connection * 1000 + stream * 7 + n).await;
                        }
                    });
                }
                while streams_set.join_next().await.is_some() {}
            }
        });
    }
    for http2 in [false, true] {
        tasks.spawn(contract_worker(shared.clone(), http2));
    }
    tokio::time::sleep(Duration::from_secs(args.baseline)).await;
    let baseline_peak = peak.swap(0, Ordering::Relaxed);

    let loaded = Arc::new(Seen::default());
    *shared.phase.lock().unwrap() = loaded.clone();
    let mut hostiles = tokio::task::JoinSet::new();
    for (kind, count) in [
        (Hostile::Raw, args.raw),
        (Hostile::TlsIdle, args.tls_idle),
        (Hostile::SlowHead, args.slow_head),
        (Hostile::SlowBody, args.slow_body),
        (Hostile::Vanish, args.vanish),
    ] {
        for index in 0..count {
            hostiles.spawn(hostile(shared.clone(), kind, index));
            if index % 100 == 99 {
                tokio::task::yield_now().await;
            }
        }
    }
    tokio::time::sleep(Duration::from_secs(args.hostile)).await;
    let hostile_peak = peak.swap(0, Ordering::Relaxed);
    shared.stop.store(true, Ordering::Relaxed);
    shared.hostile_stop.store(true, Ordering::Relaxed);
    // Well-behaved clients finish the request they are in; hostile ones are dropped
    // wherever they are (their sockets close).
    hostiles.abort_all();
    while hostiles.join_next().await.is_some() {}
    while tasks.join_next().await.is_some() {}
    let after_load_rss = rss_kib(pid);
    tokio::time::sleep(Duration::from_secs(args.cooldown)).await;
    let end_rss = rss_kib(pid);
    let end_fds = fds(pid);
    let metrics = reqwest::get(&server.metrics)
        .await
        .unwrap()
        .text()
        .await
        .unwrap();

    // Stop the server (SIGTERM, as the kubelet does) and the oracle.
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let exit = server.child.wait().unwrap();
    let hostile_opened = shared.hostile_opened.load(Ordering::Relaxed);
    let hostile_closed = shared.hostile_cut.load(Ordering::Relaxed);
    drop(shared);
    let _ = oracle_thread.join();

    let series = |prefix: &str| -> Vec<(String, f64)> {
        metrics
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| {
                let (name, value) = l.rsplit_once(' ')?;
                Some((name.to_string(), value.parse().ok()?))
            })
            .collect()
    };
    let phase = |seen: &Seen, secs: u64| {
        json!({
            "reviews_answered": seen.answered.load(Ordering::Relaxed),
            "reviews_per_second": seen.answered.load(Ordering::Relaxed) as f64 / secs as f64,
            "5xx": seen.failed_5xx.load(Ordering::Relaxed),
            "resets_and_transport_errors": seen.resets.load(Ordering::Relaxed),
            "wrong_answers": seen.wrong.load(Ordering::Relaxed),
            "contract_requests_as_expected": seen.contract_ok.load(Ordering::Relaxed),
            "contract_requests_otherwise": seen.contract_wrong.load(Ordering::Relaxed),
            "p50_ms": seen.percentile(0.50),
            "p99_ms": seen.percentile(0.99),
            "p999_ms": seen.percentile(0.999),
            "first_errors": *seen.first_errors.lock().unwrap(),
        })
    };
    let report = json!({
        "settings": format!("{args:?}"),
        "baseline": phase(&baseline, args.baseline),
        "hostile": phase(&loaded, args.hostile),
        "hostile_connections_opened": hostile_opened,
        "hostile_connections_closed_by_the_server": hostile_closed,
        "verified_by_oracle": verified.0.load(Ordering::Relaxed),
        "rejected_by_oracle": verified.1.load(Ordering::Relaxed),
        "oracle_errors": *verified.2.lock().unwrap(),
        "rss_mib": {
            "start": start_rss as f64 / 1024.0,
            "peak_baseline": baseline_peak as f64 / 1024.0,
            "peak_hostile": hostile_peak as f64 / 1024.0,
            "after_load": after_load_rss as f64 / 1024.0,
            "end": end_rss as f64 / 1024.0,
        },
        "fds": {"start": start_fds, "end": end_fds},
        "server_exit": exit.code(),
        "connections_cut": series("tandem_connections_cut_total"),
        "rejected_requests": series("tandem_rejected_requests_total"),
        "review_panics": series("tandem_review_panics_total"),
    });
    print_table(&report);
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_string_pretty(&report).unwrap()).unwrap();
    }
    let clean = ["baseline", "hostile"].iter().all(|p| {
        report[p]["5xx"] == 0
            && report[p]["resets_and_transport_errors"] == 0
            && report[p]["wrong_answers"] == 0
            && report[p]["contract_requests_otherwise"] == 0
    }) && report["rejected_by_oracle"] == 0
        && exit.success();
    std::process::exit(if clean { 0 } else { 1 });
}

fn print_table(report: &Value) {
    println!("\n| | baseline (well-behaved only) | with the hostile share |");
    println!("|---|---|---|");
    for (label, key) in [
        ("reviews answered", "reviews_answered"),
        ("reviews per second", "reviews_per_second"),
        ("5xx seen by well-behaved clients", "5xx"),
        ("resets / transport errors", "resets_and_transport_errors"),
        ("wrong answers (status, uid, patch)", "wrong_answers"),
        (
            "contract requests answered as specified",
            "contract_requests_as_expected",
        ),
        (
            "contract requests answered otherwise",
            "contract_requests_otherwise",
        ),
        ("p50 ms", "p50_ms"),
        ("p99 ms", "p99_ms"),
        ("p99.9 ms", "p999_ms"),
    ] {
        let cell = |p: &str| match &report[p][key] {
            Value::Number(n) if n.is_f64() => format!("{:.2}", n.as_f64().unwrap()),
            other => other.to_string(),
        };
        println!("| {label} | {} | {} |", cell("baseline"), cell("hostile"));
    }
    let rss = &report["rss_mib"];
    println!(
        "\nRSS MiB: start {:.1}, peak baseline {:.1}, peak hostile {:.1}, right after the load {:.1}, end {:.1}",
        rss["start"].as_f64().unwrap_or(0.0),
        rss["peak_baseline"].as_f64().unwrap_or(0.0),
        rss["peak_hostile"].as_f64().unwrap_or(0.0),
        rss["after_load"].as_f64().unwrap_or(0.0),
        rss["end"].as_f64().unwrap_or(0.0),
    );
    println!(
        "open fds: start {}, end {}",
        report["fds"]["start"], report["fds"]["end"]
    );
    println!(
        "sampled answers checked by applying the patch and the oracle: {} passed, {} rejected",
        report["verified_by_oracle"], report["rejected_by_oracle"]
    );
    println!(
        "hostile connections opened: {}, ended (closed by the server, or at the end): {}",
        report["hostile_connections_opened"], report["hostile_connections_closed_by_the_server"]
    );
    println!("server exit code: {}", report["server_exit"]);
    println!("connections cut: {}", report["connections_cut"]);
    println!("rejected requests: {}", report["rejected_requests"]);
    println!("review panics: {}", report["review_panics"]);
    if let Some(errors) = report["hostile"]["first_errors"].as_array()
        && !errors.is_empty()
    {
        println!("first errors with the hostile share: {errors:#?}");
    }
}

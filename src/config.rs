//! The command line (every `serve` flag also an environment variable), parsed by clap and
//! checked into plain values before anything starts.

use std::{net::SocketAddr, num::NonZeroUsize, path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand, ValueEnum, builder::TypedValueParser as _};

use crate::{annotations::DEFAULT_PREFIX, server::limits::Limits};

/// tandem: one annotation, and the pod gets its log shipper, metrics adapter, ambassador or
/// git clone, done right.
#[derive(Debug, Parser)]
#[command(name = "tandem", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start; serve's flags are most of it"
)]
pub enum Command {
    /// Serve the mutating admission webhook (HTTPS) and the metrics and health endpoints.
    Serve(ServeArgs),
    /// Mutate Pods and workload pod templates offline: YAML in, YAML out.
    Inject(InjectArgs),
    /// Say which patterns apply to each pod, why, and what would be added.
    Explain(ExplainArgs),
    /// Work with policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Write a CA and a serving certificate for the webhook's Service.
    Certs(CertsArgs),
    /// Print the InjectionPolicy CustomResourceDefinition.
    Crd,
    /// List pods whose injected containers differ from what today's policies inject, by
    /// owning workload; exit 1 if any. `--restart` restarts their workloads.
    Drift(DriftArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate policy files; errors carry file and line. Exits non-zero on any.
    Check {
        /// A directory of YAML files, or one file.
        path: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the HTTPS webhook listener.
    #[arg(long, env = "TANDEM_ADDR", default_value = "0.0.0.0:8443")]
    pub addr: SocketAddr,

    /// PEM certificate chain; reloaded when the file changes. Without it (and --tls-key), a
    /// self-signed development certificate is generated under --dev-cert-dir.
    #[arg(long, env = "TANDEM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key; reloaded when the file changes.
    #[arg(long, env = "TANDEM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// PEM CA bundle: require client certificates signed by it (mTLS from the API server).
    #[arg(long, env = "TANDEM_CLIENT_CA")]
    pub client_ca: Option<PathBuf>,

    /// Where the development certificate goes when no --tls-cert is given.
    #[arg(long, env = "TANDEM_DEV_CERT_DIR", default_value = "certs/dev")]
    pub dev_cert_dir: PathBuf,

    /// A directory of InjectionPolicy YAML files, watched and reloaded.
    #[arg(long, env = "TANDEM_POLICIES")]
    pub policies: Option<PathBuf>,

    /// Watch InjectionPolicy objects and Namespaces through the API server.
    #[arg(long, env = "TANDEM_KUBE")]
    pub kube: bool,

    /// Address of the plain-HTTP listener for /metrics, /healthz and /readyz.
    #[arg(long, env = "TANDEM_METRICS_ADDR", default_value = "0.0.0.0:9090")]
    pub metrics_addr: SocketAddr,

    #[arg(long, env = "TANDEM_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// The prefix of tandem's annotation keys.
    #[arg(long, env = "TANDEM_ANNOTATION_PREFIX", default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub annotation_prefix: String,

    /// The largest request body accepted, in bytes (the API server's own limit is 3 MiB).
    #[arg(long, env = "TANDEM_MAX_BODY", default_value_t = 3 * 1024 * 1024)]
    pub max_body: usize,

    /// After SIGTERM: how long /readyz reports false while serving on, so that endpoints
    /// are removed before the listener closes.
    #[arg(long, env = "TANDEM_SHUTDOWN_DELAY", default_value = "5s", value_parser = parse_duration)]
    pub shutdown_delay: Duration,

    /// Then: how long in-flight reviews get to finish.
    #[arg(long, env = "TANDEM_SHUTDOWN_TIMEOUT", default_value = "20s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,

    /// Webhook connections open at once. Beyond it, a new connection takes the place of
    /// one still in its TLS handshake or idle (the one quiet longest); when every open one
    /// has a request in flight, the new one is closed.
    #[arg(long, env = "TANDEM_MAX_CONNECTIONS", default_value_t = Limits::default().max_connections, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub max_connections: usize,

    /// How long a client may take over the TLS handshake.
    #[arg(long, env = "TANDEM_TLS_HANDSHAKE_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub tls_handshake_timeout: Duration,

    /// HTTP/1.1: how long a request head may take from its first byte.
    #[arg(long, env = "TANDEM_HEADER_READ_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub header_read_timeout: Duration,

    /// How long a request body may take after its head (HTTP 408 after it).
    #[arg(long, env = "TANDEM_BODY_READ_TIMEOUT", default_value = "10s", value_parser = parse_timeout)]
    pub body_read_timeout: Duration,

    /// A connection with no request for this long is closed; keep it above the API
    /// server's own idle timeout for webhook connections (90 s).
    #[arg(long, env = "TANDEM_IDLE_TIMEOUT", default_value = "120s", value_parser = parse_timeout)]
    pub idle_timeout: Duration,

    /// HTTP/2 streams one connection may have open at once.
    #[arg(long, env = "TANDEM_HTTP2_MAX_STREAMS", default_value_t = Limits::default().http2_max_streams, value_parser = clap::value_parser!(u32).range(1..))]
    pub http2_max_streams: u32,

    /// Bytes of request bodies held at once over all connections; a body that finds no
    /// room waits, within --body-read-timeout (then HTTP 503). At least --max-body per
    /// connection thread is kept.
    #[arg(long, env = "TANDEM_MAX_BODY_MEMORY", default_value_t = Limits::default().max_body_memory)]
    pub max_body_memory: usize,

    /// Threads serving webhook connections, each connection on one of them for its whole
    /// life. Default: the CPUs the process may use (its cgroup CPU limit included).
    #[arg(long, env = "TANDEM_WORKERS")]
    pub workers: Option<NonZeroUsize>,

    /// With --kube: how often stale pods are counted for the `tandem_stale_pods` metric
    /// (as `tandem drift` counts them), when the service account may list pods; `0s`: never.
    #[arg(long, env = "TANDEM_DRIFT_INTERVAL", default_value = "5m", value_parser = parse_duration)]
    pub drift_interval: Duration,
    #[command(flatten)]
    pub tls_auto: TlsAutoArgs,
}

/// TLS managed by tandem itself (the chart's `tls.mode: auto`): a CA and a serving
/// certificate kept in a Secret, the webhook configuration's caBundle kept in step by
/// server-side apply, one replica writing (elected on a Lease). Instead of --tls-cert.
#[derive(Debug, Args)]
pub struct TlsAutoArgs {
    /// The Secret holding the CA and the serving certificate (created if missing). Turns
    /// self-managed TLS on; needs --tls-webhook and --tls-service.
    #[arg(long, env = "TANDEM_TLS_SECRET", conflicts_with_all = ["tls_cert", "tls_key"], requires_all = ["tls_webhook", "tls_service"])]
    pub tls_secret: Option<String>,

    /// The MutatingWebhookConfiguration whose caBundle tandem keeps (in every entry that
    /// calls this server).
    #[arg(long, env = "TANDEM_TLS_WEBHOOK", requires = "tls_secret")]
    pub tls_webhook: Option<String>,

    /// The webhook's Service: the certificate is made for `<service>.<namespace>.svc` and
    /// the Service's other DNS names.
    #[arg(long, env = "TANDEM_TLS_SERVICE", requires = "tls_secret")]
    pub tls_service: Option<String>,

    /// The namespace of the Secret, the Service and the Lease. Default: the API client's
    /// (the pod's own in a cluster).
    #[arg(long, env = "TANDEM_TLS_NAMESPACE", requires = "tls_secret")]
    pub tls_namespace: Option<String>,

    /// More DNS names or IP addresses for the certificate, comma-separated: the host of a
    /// webhook URL (`webhook.url`), a developer machine's name.
    #[arg(long, env = "TANDEM_TLS_EXTRA_NAMES", value_delimiter = ',', requires = "tls_secret", value_parser = parse_san)]
    pub tls_extra_names: Vec<String>,

    /// Lifetime of the CA; a new one is made when a third of it is left.
    #[arg(long, env = "TANDEM_TLS_CA_DURATION", default_value = "43800h", value_parser = parse_lifetime)]
    pub tls_ca_duration: Duration,

    /// Lifetime of the serving certificate; renewed when a third of it is left (and never
    /// past the CA's end).
    #[arg(long, env = "TANDEM_TLS_CERT_DURATION", default_value = "2160h", value_parser = parse_lifetime)]
    pub tls_cert_duration: Duration,

    /// How often the Secret and the caBundle are checked, and each replica reports what it
    /// serves (a replica silent for three intervals is taken as gone).
    #[arg(long, env = "TANDEM_TLS_CHECK_INTERVAL", default_value = "1m", value_parser = parse_lifetime)]
    pub tls_check_interval: Duration,

    /// How long a new CA is in the caBundle before a certificate it signs is served: the
    /// time every API server gets to pick up the new bundle.
    #[arg(long, env = "TANDEM_TLS_TRUST_DELAY", default_value = "10s", value_parser = parse_lifetime)]
    pub tls_trust_delay: Duration,

    /// The Lease of the leader election. Default: the Secret's name.
    #[arg(long, env = "TANDEM_TLS_LEASE", requires = "tls_secret")]
    pub tls_lease: Option<String>,

    /// How long the leader's Lease lasts without renewal (whole seconds, at least 2): how
    /// soon another replica takes over from one that died.
    #[arg(long, env = "TANDEM_TLS_LEASE_DURATION", default_value = "15s", value_parser = parse_lifetime)]
    pub tls_lease_duration: Duration,
}

impl TlsAutoArgs {
    /// The settings of self-managed TLS, if --tls-secret turns it on.
    pub fn settings(&self) -> Result<Option<crate::tls_manager::Settings>, String> {
        let Some(secret) = self.tls_secret.clone() else {
            return Ok(None);
        };
        let required = |value: &Option<String>, flag: &str| {
            value
                .clone()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("--tls-secret needs {flag}"))
        };
        if self.tls_cert_duration > self.tls_ca_duration {
            return Err(format!(
                "--tls-cert-duration ({:?}) is longer than --tls-ca-duration ({:?}); accepted: a certificate no longer-lived than its CA",
                self.tls_cert_duration, self.tls_ca_duration
            ));
        }
        if self.tls_lease_duration < Duration::from_secs(2) {
            return Err(format!(
                "--tls-lease-duration {:?} is too short; accepted: 2s or more",
                self.tls_lease_duration
            ));
        }
        Ok(Some(crate::tls_manager::Settings {
            lease: self.tls_lease.clone().unwrap_or_else(|| secret.clone()),
            secret,
            webhook: required(&self.tls_webhook, "--tls-webhook")?,
            service: required(&self.tls_service, "--tls-service")?,
            namespace: self.tls_namespace.clone(),
            extra_names: self.tls_extra_names.clone(),
            ca_duration: self.tls_ca_duration,
            cert_duration: self.tls_cert_duration,
            check_interval: self.tls_check_interval,
            trust_delay: self.tls_trust_delay,
            lease_duration: self.tls_lease_duration,
        }))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// A YAML or JSON file (multi-document), or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,

    /// The namespace of objects that do not name one.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,

    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,

    /// Labels of the namespace, for policies that select namespaces: `team=payments,env=prod`.
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub namespace_labels: Labels,

    /// Annotations of the namespace (tandem.dev/* keys are inherited by its pods).
    #[arg(long, value_parser = parse_labels, default_value = "")]
    pub namespace_annotations: Labels,

    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Debug, Args)]
pub struct PolicyArgs {
    /// A directory (or file) of InjectionPolicy YAML, on top of the built-in ones.
    #[arg(long)]
    pub policies: Option<PathBuf>,

    #[arg(long, default_value = DEFAULT_PREFIX, value_parser = parse_prefix)]
    pub annotation_prefix: String,
}

#[derive(Debug, Args)]
pub struct DriftArgs {
    /// The kubeconfig file (default: $KUBECONFIG, then ~/.kube/config, then the in-cluster
    /// service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,

    /// Only pods in this namespace (default: all namespaces).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,

    #[arg(short = 'o', long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// Restart the Deployments, StatefulSets and DaemonSets that have stale pods, as
    /// `kubectl rollout restart` does (never bare pods or Jobs).
    #[arg(long)]
    pub restart: bool,

    /// With --restart: send each restart as a server-side dry run; nothing changes.
    #[arg(long, requires = "restart")]
    pub dry_run: bool,

    /// With --restart: restart at most this many workloads in one run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_restarts: u32,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// The longest `--days`: a century (its CA then ends in the year ~3000, well inside what
/// X.509 dates can say).
pub const MAX_DAYS: i64 = 36_500;

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// The webhook's Service name.
    #[arg(long)]
    pub service: String,
    /// The Service's namespace.
    #[arg(long)]
    pub namespace: String,
    /// Where ca.crt, ca.key, tls.crt and tls.key are written.
    #[arg(long)]
    pub out: PathBuf,
    /// Validity of the serving certificate in days, 1 to 36500 (the CA gets ten times as
    /// long).
    #[arg(long, default_value_t = 365, value_parser = clap::value_parser!(u32).range(1..=MAX_DAYS))]
    pub days: u32,
}

/// `k=v,k2=v2` as an ordered list.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Labels(pub Vec<(String, String)>);

fn parse_labels(text: &str) -> Result<Labels, String> {
    let mut pairs = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{item:?} is not key=value"))?;
        pairs.push((key.trim().to_string(), value.trim().to_string()));
    }
    Ok(Labels(pairs))
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    if text == "0" || text == "0s" {
        return Ok(Duration::ZERO);
    }
    crate::pattern::parse_duration(text)
        .map_err(|problem| format!("{text:?} {problem}; accepted: 0s, 500ms, 5s, 1m"))
}

/// A timeout: a positive duration.
fn parse_timeout(text: &str) -> Result<Duration, String> {
    match parse_duration(text)? {
        Duration::ZERO => Err(format!(
            "{text:?} is zero; accepted: a positive duration such as 500ms, 10s, 2m"
        )),
        duration => Ok(duration),
    }
}

impl ServeArgs {
    /// The connection limits the flags set.
    pub fn limits(&self) -> Limits {
        Limits {
            max_connections: self.max_connections,
            handshake_timeout: self.tls_handshake_timeout,
            header_read_timeout: self.header_read_timeout,
            body_read_timeout: self.body_read_timeout,
            idle_timeout: self.idle_timeout,
            http2_max_streams: self.http2_max_streams,
            max_body_memory: self.max_body_memory,
        }
    }
}

/// A lifetime or interval: whole numbers with `d`, `h`, `m`, `s` or `ms`, e.g. `2160h`,
/// `90d`, `1h30m`, `500ms`; positive, at most 100 years.
pub fn parse_lifetime(text: &str) -> Result<Duration, String> {
    let total = crate::pattern::sum_durations(text.trim(), true).ok_or_else(|| {
        format!("{text:?} is not a duration; accepted: 90d, 2160h, 1h30m, 10s, 500ms")
    })?;
    if total.is_zero() {
        return Err(format!("{text:?} is zero; accepted: a positive duration"));
    }
    if total > Duration::from_secs(100 * 365 * 86_400) {
        return Err(format!("{text:?} is longer than 100 years"));
    }
    Ok(total)
}

/// A DNS name or an IP address for a certificate.
fn parse_san(text: &str) -> Result<String, String> {
    let text = text.trim();
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(text.to_string());
    }
    crate::pattern::check_dns_subdomain(text)
        .map(|()| text.to_string())
        .map_err(|problem| {
            format!(
                "{text:?} {problem}; accepted: a DNS name such as dev.example.com or an IP address"
            )
        })
}

fn parse_prefix(text: &str) -> Result<String, String> {
    crate::pattern::check_dns_subdomain(text)
        .map(|()| text.to_string())
        .map_err(|problem| format!("{text:?} {problem}; accepted: a DNS name such as tandem.dev"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn serve_defaults() {
        let cli = Cli::try_parse_from(["tandem", "serve"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.addr.to_string(), "0.0.0.0:8443");
        assert_eq!(args.metrics_addr.to_string(), "0.0.0.0:9090");
        assert_eq!(args.annotation_prefix, "tandem.dev");
        assert_eq!(args.max_body, 3 * 1024 * 1024);
        assert!(args.tls_cert.is_none());
        assert!(
            args.workers.is_none(),
            "workers default to the CPUs available"
        );
        assert_eq!(args.limits(), Limits::default());
        assert_eq!(args.drift_interval, Duration::from_secs(300));
    }

    #[test]
    fn limits_come_from_flags_and_timeouts_must_be_positive() {
        let cli = Cli::try_parse_from([
            "tandem",
            "serve",
            "--max-connections",
            "10",
            "--tls-handshake-timeout",
            "2s",
            "--header-read-timeout",
            "500ms",
            "--body-read-timeout",
            "3s",
            "--idle-timeout",
            "2m",
            "--http2-max-streams",
            "8",
            "--max-body-memory",
            "1000000",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(
            args.limits(),
            Limits {
                max_connections: 10,
                handshake_timeout: Duration::from_secs(2),
                header_read_timeout: Duration::from_millis(500),
                body_read_timeout: Duration::from_secs(3),
                idle_timeout: Duration::from_secs(120),
                http2_max_streams: 8,
                max_body_memory: 1_000_000,
            }
        );
        for (flag, value) in [
            ("--header-read-timeout", "0s"),
            ("--max-connections", "0"),
            ("--http2-max-streams", "0"),
        ] {
            let error = Cli::try_parse_from(["tandem", "serve", flag, value]).unwrap_err();
            assert!(error.to_string().contains(flag), "{error}");
        }
    }

    #[test]
    fn workers_are_a_positive_count() {
        let cli = Cli::try_parse_from(["tandem", "serve", "--workers", "3"]).unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(args.workers.map(NonZeroUsize::get), Some(3));
        let error = Cli::try_parse_from(["tandem", "serve", "--workers", "0"]).unwrap_err();
        assert!(error.to_string().contains("--workers"), "{error}");
        assert!(error.to_string().contains("zero"), "{error}");
    }

    #[test]
    fn drift_dry_run_needs_restart() {
        let error = Cli::try_parse_from(["tandem", "drift", "--dry-run"]).unwrap_err();
        assert!(error.to_string().contains("--restart"), "{error}");
        let error = Cli::try_parse_from(["tandem", "drift", "--restart", "--max-restarts", "0"])
            .unwrap_err();
        assert!(error.to_string().contains("--max-restarts"), "{error}");
    }

    #[test]
    fn tls_auto_flags_make_settings() {
        let cli = Cli::try_parse_from([
            "tandem",
            "serve",
            "--tls-secret=tandem-tls",
            "--tls-webhook=tandem",
            "--tls-service=tandem",
            "--tls-extra-names=127.0.0.1,dev.example.com",
            "--tls-cert-duration=1h",
            "--tls-ca-duration=90d",
        ])
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let settings = args.tls_auto.settings().unwrap().unwrap();
        assert_eq!(
            settings.lease, "tandem-tls",
            "the lease defaults to the Secret's name"
        );
        assert_eq!(settings.extra_names, ["127.0.0.1", "dev.example.com"]);
        assert_eq!(settings.cert_duration, Duration::from_secs(3600));
        assert_eq!(settings.ca_duration, Duration::from_secs(90 * 86_400));
        assert_eq!(settings.check_interval, Duration::from_secs(60));
        assert_eq!(settings.lease_duration, Duration::from_secs(15));

        let none = Cli::try_parse_from(["tandem", "serve"]).unwrap();
        let Command::Serve(args) = none.command else {
            panic!("not serve")
        };
        assert_eq!(args.tls_auto.settings(), Ok(None));
    }

    #[test]
    fn tls_auto_flags_are_checked() {
        let base = [
            "tandem",
            "serve",
            "--tls-secret=s",
            "--tls-webhook=w",
            "--tls-service=v",
        ];
        let error = Cli::try_parse_from(["tandem", "serve", "--tls-secret=s"]).unwrap_err();
        assert!(error.to_string().contains("--tls-webhook"), "{error}");
        let error = Cli::try_parse_from([&base[..], &["--tls-cert=a", "--tls-key=b"]].concat())
            .unwrap_err();
        assert!(error.to_string().contains("cannot be used with"), "{error}");
        let error = Cli::try_parse_from([&base[..], &["--tls-extra-names=not a name"]].concat())
            .unwrap_err();
        assert!(
            error.to_string().contains("accepted: a DNS name"),
            "{error}"
        );
        let error =
            Cli::try_parse_from([&base[..], &["--tls-ca-duration=5x"]].concat()).unwrap_err();
        assert!(error.to_string().contains("accepted: 90d"), "{error}");
        let cli = Cli::try_parse_from(
            [
                &base[..],
                &["--tls-ca-duration=1h", "--tls-cert-duration=2h"],
            ]
            .concat(),
        )
        .unwrap();
        let Command::Serve(args) = cli.command else {
            panic!("not serve")
        };
        let error = args.tls_auto.settings().unwrap_err();
        assert!(error.contains("longer than --tls-ca-duration"), "{error}");
    }

    #[test]
    fn lifetimes_parse() {
        assert_eq!(parse_lifetime("90d"), Ok(Duration::from_secs(90 * 86_400)));
        assert_eq!(parse_lifetime("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_lifetime("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_lifetime("0s").unwrap_err().contains("zero"));
        assert!(parse_lifetime("").is_err());
        assert!(parse_lifetime("h").is_err());
        assert!(parse_lifetime("99999d").unwrap_err().contains("100 years"));
    }

    #[test]
    fn cert_needs_key() {
        let error = Cli::try_parse_from(["tandem", "serve", "--tls-cert", "a.crt"]).unwrap_err();
        assert!(error.to_string().contains("--tls-key"), "{error}");
    }

    #[test]
    fn labels_parse() {
        assert_eq!(
            parse_labels("team=payments, env=prod").unwrap().0,
            vec![
                ("team".into(), "payments".into()),
                ("env".into(), "prod".into())
            ]
        );
        assert!(parse_labels("team").is_err());
    }
}

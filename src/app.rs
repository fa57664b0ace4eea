//! Composition: each subcommand wired from its parts. Errors here are start-up errors,
//! reported once and turned into the exit code.

use std::{process::ExitCode, sync::Arc};

use anyhow::Context as _;
use kube::CustomResourceExt;
use tokio::sync::watch;

use crate::{
    certs,
    config::{CertsArgs, Cli, Command, PolicyCommand, ServeArgs},
    offline,
    policy::{
        self, InjectionPolicy,
        source::{files, store::Store},
    },
    server::{
        Server, Shutdown,
        routes::AppState,
        tls::{self, Files, Reloading},
    },
    telemetry::{self, Metrics},
    tls_manager::TlsManager,
};

pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Inject(args) => offline::inject(&args),
        Command::Explain(args) => offline::explain(&args),
        Command::Policy {
            command: PolicyCommand::Check { path },
        } => policy_check(&path),
        Command::Certs(args) => write_certs(&args),
        Command::Crd => print_crd(),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("tandem: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let _logs = telemetry::init(args.log_format);
    // Accepting, policies, certificates and the operations listener; the webhook's
    // connections are served on their own threads (server::workers).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(serve_async(args))?;
    Ok(ExitCode::SUCCESS)
}

async fn serve_async(args: ServeArgs) -> anyhow::Result<()> {
    let metrics = Metrics::new();
    let store = Store::new(&args.annotation_prefix, Some(metrics.clone()));

    let _policy_watch = match &args.policies {
        Some(path) => {
            let policies = files::check(path, &args.annotation_prefix).map_err(|errors| {
                let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
                anyhow::anyhow!("invalid policies:\n{}", lines.join("\n"))
            })?;
            tracing::info!(policies = policies.len(), dir = %path.display(), "loaded policy files");
            store.set_files(policies);
            Some(
                files::watch(path.clone(), store.clone(), metrics.clone())
                    .with_context(|| format!("watching {}", path.display()))?,
            )
        }
        None => None,
    };

    let (synced_tx, synced) = watch::channel(!args.kube);
    let _kube_task = if args.kube {
        let client = kube::Client::try_default()
            .await
            .context("connecting to the API server (--kube)")?;
        let task = tokio::spawn(policy::source::kube::run(
            client,
            store.clone(),
            synced_tx,
            metrics.clone(),
        ));
        Some(AbortOnDrop(task))
    } else {
        None
    };

    let provider = rustls::crypto::CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()));
    let tls_auto = args
        .tls_auto
        .settings()
        .map_err(|problem| anyhow::anyhow!("{problem}"))?;
    let (tls_config, _tls_watch, tls_manager) = match tls_auto {
        Some(settings) => {
            let (served, manager) =
                TlsManager::start(settings, provider.clone(), metrics.clone()).await?;
            let config = tls::server_config_with(served, provider, args.client_ca.as_deref())?;
            (config, None, Some(manager))
        }
        None => {
            let files = tls_files(&args)?;
            let resolver =
                Reloading::new(files, provider).context("loading the TLS certificate")?;
            let config = tls::server_config(resolver.clone(), args.client_ca.as_deref())?;
            (config, Some(tls::watch(resolver, metrics.clone())?), None)
        }
    };
    // Ready once the policies are synced and, with self-managed TLS, once the served
    // certificate is one the webhook's caBundle trusts.
    let synced = match &tls_manager {
        Some(manager) => both(synced, manager.ready.clone()),
        None => synced,
    };

    let state = Arc::new(AppState {
        store,
        metrics,
        max_body: args.max_body,
        synced,
        stopping: Default::default(),
    });
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism().unwrap_or(std::num::NonZeroUsize::MIN)
    });
    let server = Server::bind(args.addr, args.metrics_addr, tls_config, state, workers)
        .await
        .with_context(|| format!("binding {} and {}", args.addr, args.metrics_addr))?;
    tracing::info!(
        webhook = %format!("https://{}/mutate", server.webhook_addr()?),
        metrics = %format!("http://{}/metrics", server.operations_addr()?),
        workers,
        "tandem is serving"
    );
    server
        .run(
            terminated(),
            Shutdown {
                delay: args.shutdown_delay,
                timeout: args.shutdown_timeout,
            },
        )
        .await;
    if let Some(manager) = tls_manager {
        manager.stop().await;
    }
    Ok(())
}

/// The certificate files: --tls-cert and --tls-key, or a development pair.
fn tls_files(args: &ServeArgs) -> anyhow::Result<Files> {
    Ok(match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Files {
            cert: cert.clone(),
            key: key.clone(),
        },
        _ => {
            let written = certs::development(&args.dev_cert_dir).with_context(|| {
                format!(
                    "writing a development certificate to {}",
                    args.dev_cert_dir.display()
                )
            })?;
            tracing::warn!(
                cert = %written.cert.display(),
                ca = %written.ca_cert.display(),
                "no --tls-cert given: serving a self-signed development certificate for localhost; \
                 trust the CA file to call the webhook"
            );
            Files {
                cert: written.cert,
                key: written.key,
            }
        }
    })
}

/// A receiver that is true while both are (a closed one keeps its last value).
fn both(a: watch::Receiver<bool>, b: watch::Receiver<bool>) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(*a.borrow() && *b.borrow());
    tokio::spawn(async move {
        let (mut a, mut b) = (a, b);
        let (mut a_open, mut b_open) = (true, true);
        while a_open || b_open {
            tokio::select! {
                changed = a.changed(), if a_open => a_open = changed.is_ok(),
                changed = b.changed(), if b_open => b_open = changed.is_ok(),
                () = tx.closed() => return,
            }
            let value = *a.borrow_and_update() && *b.borrow_and_update();
            tx.send_replace(value);
        }
    });
    rx
}
/// SIGTERM (what the kubelet sends) or Ctrl-C.
async fn terminated() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("installing a SIGTERM handler works on unix");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn policy_check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    match files::check(path, crate::annotations::DEFAULT_PREFIX) {
        Ok(policies) => {
            println!("{}: {} policies, all valid", path.display(), policies.len());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for error in &errors {
                eprintln!("{error}");
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn write_certs(args: &CertsArgs) -> anyhow::Result<ExitCode> {
    let names = certs::service_names(&args.service, &args.namespace);
    let written = certs::write(&args.out, &names, args.days)?;
    println!("CA certificate:      {}", written.ca_cert.display());
    println!("CA key:              {}", written.ca_key.display());
    println!(
        "serving certificate: {} ({})",
        written.cert.display(),
        names.join(", ")
    );
    println!("serving key:         {}", written.key.display());
    println!("caBundle:");
    println!("{}", written.ca_bundle);
    Ok(ExitCode::SUCCESS)
}

fn print_crd() -> anyhow::Result<ExitCode> {
    let yaml = serde_saphyr::to_string(&InjectionPolicy::crd()).context("serializing the CRD")?;
    print!("{}", crd_header());
    print!("{yaml}");
    Ok(ExitCode::SUCCESS)
}

/// The comment at the top of the generated CRD file.
pub fn crd_header() -> &'static str {
    "# Generated by `tandem crd` from src/policy/model/types.rs. Do not edit: a test compares it.\n"
}

//! TLS that manages itself (`tls.mode: auto`): tandem keeps its own CA and serving
//! certificate in one Secret and the webhook's caBundle in step with it, through the API
//! server; nothing TLS-related is rendered by the chart.
//!
//! - Every replica serves the Secret's certificate, swapped in when the Secret changes, and
//!   is ready only while the caBundle trusts it ([`serving`]).
//! - One replica, elected on a Lease ([`leader`]), writes: it creates the Secret if
//!   missing, keeps it while valid, renews the certificate and the CA when a third of their
//!   lifetime is left, and server-side applies the caBundle ([`writer`], deciding with
//!   [`plan`]). During a CA rotation the bundle holds the old and the new CA until every
//!   replica serves the new one.
//! - The certificates themselves: [`material`].

pub mod leader;
pub mod material;
pub mod plan;
pub mod serving;
pub mod writer;

use std::{sync::Arc, time::Duration};

use kube::Client;
use rustls::crypto::CryptoProvider;
use tokio::{
    sync::{Notify, watch},
    task::JoinHandle,
};

use crate::telemetry::Metrics;

pub use serving::Served;

/// The field manager of everything tandem writes: the Secret and the caBundle.
pub const FIELD_MANAGER: &str = "tandem-tls";
/// Set on the Secret (any value) to have the leader rotate the CA now; it removes it.
pub const ROTATE_ANNOTATION: &str = "tandem.dev/rotate-ca";
/// The prefix of the Lease annotations on which each replica reports what it serves.
pub const REPORT_PREFIX: &str = "serving.tandem.dev/";

/// What `--tls-secret` and the flags around it say (see `config::TlsAutoArgs`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub secret: String,
    pub webhook: String,
    pub service: String,
    /// `None`: the namespace of the kube client (the pod's, in a cluster).
    pub namespace: Option<String>,
    pub extra_names: Vec<String>,
    pub ca_duration: Duration,
    pub cert_duration: Duration,
    pub check_interval: Duration,
    pub trust_delay: Duration,
    pub lease: String,
    pub lease_duration: Duration,
}

/// What the parts share.
pub struct Context {
    pub settings: Settings,
    pub client: Client,
    pub namespace: String,
    /// What the serving certificate names: the Service's DNS names, then the extra ones.
    pub names: Vec<String>,
    /// This replica in the election and in reports: `<hostname>-<pid>`.
    pub identity: String,
    pub metrics: Arc<Metrics>,
}

/// The running parts; [`TlsManager::stop`] releases the Lease.
pub struct TlsManager {
    /// True while the served certificate is trusted by the webhook's caBundle.
    pub ready: watch::Receiver<bool>,
    election: leader::Election,
    tasks: Vec<JoinHandle<()>>,
}

impl TlsManager {
    /// Starts serving from the Secret, campaigning and (when leading) writing. Returns the
    /// resolver to serve with; it holds a throwaway certificate until the Secret's arrives.
    pub async fn start(
        settings: Settings,
        provider: Arc<CryptoProvider>,
        metrics: Arc<Metrics>,
    ) -> anyhow::Result<(Arc<Served>, TlsManager)> {
        use anyhow::Context as _;
        let client = Client::try_default()
            .await
            .context("connecting to the API server (--tls-secret)")?;
        let namespace = settings
            .namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string());
        let mut names = crate::certs::service_names(&settings.service, &namespace);
        for name in &settings.extra_names {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let identity = identity();
        tracing::info!(
            secret = %settings.secret, %namespace, webhook = %settings.webhook,
            lease = %settings.lease, %identity, names = %names.join(","),
            "TLS managed by tandem (tls.mode auto)"
        );
        let context = Arc::new(Context {
            settings,
            client,
            namespace,
            names,
            identity,
            metrics,
        });
        let served = Served::placeholder(&provider)
            .map_err(|e| anyhow::anyhow!("making the placeholder certificate: {e}"))?;
        let (ready_tx, ready) = watch::channel(false);
        let nudge = Arc::new(Notify::new());
        let election = leader::Election::start(
            context.client.clone(),
            context.namespace.clone(),
            context.settings.lease.clone(),
            context.identity.clone(),
            context.settings.lease_duration,
        );
        let tasks = vec![
            tokio::spawn(serving::run(
                context.clone(),
                served.clone(),
                provider,
                ready_tx,
                nudge.clone(),
            )),
            tokio::spawn(
                writer::Writer::new(context.clone(), served.clone())
                    .run(election.leading.clone(), nudge),
            ),
        ];
        Ok((
            served,
            TlsManager {
                ready,
                election,
                tasks,
            },
        ))
    }

    /// Stops writing and watching, and releases the Lease so another replica takes over
    /// at once.
    pub async fn stop(self) {
        for task in &self.tasks {
            task.abort();
        }
        self.election.stop().await;
    }
}

/// `<hostname>-<pid>`, cut to what an annotation key's name part may hold (63 characters of
/// letters, digits, `-`, `_` and `.`, alphanumeric at both ends).
fn identity() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .unwrap_or_else(|| "tandem".into());
    let pid = std::process::id().to_string();
    let host: String = host
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let room = 63 - pid.len() - 1;
    let host = host[..host.len().min(room)].trim_matches(|c: char| !c.is_ascii_alphanumeric());
    let host = if host.is_empty() { "tandem" } else { host };
    format!("{host}-{pid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_fits_an_annotation_key() {
        let id = identity();
        assert!(id.len() <= 63, "{id}");
        assert!(id.ends_with(&format!("-{}", std::process::id())), "{id}");
        assert!(id.chars().next().unwrap().is_ascii_alphanumeric());
        assert!(
            id.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        );
    }
}

//! What every replica does: serve the certificate in the Secret (watched through the API
//! server, swapped in without a restart), follow the webhook's caBundle to know whether
//! the API server trusts what it serves (readiness), and report what it serves on the
//! Lease so that the leader knows when an old CA can go.
//!
//! A replica that loses the API server keeps serving the certificate it has; the watches
//! retry with backoff. Before the first certificate arrives it serves a throwaway
//! self-signed one, and is not ready.

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use arc_swap::ArcSwap;
use futures::StreamExt;
use k8s_openapi::api::{
    admissionregistration::v1::MutatingWebhookConfiguration, coordination::v1::Lease,
    core::v1::Secret,
};
use kube::{
    Api,
    api::{Patch, PatchParams},
    runtime::{WatchStreamExt, watcher},
};
use rustls::{
    crypto::CryptoProvider,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
    server::{ClientHello, ResolvesServerCert},
    sign::CertifiedKey,
};
use tokio::sync::{Notify, watch};

use super::{
    Context, FIELD_MANAGER, REPORT_PREFIX,
    material::{Cert, Material, TLS_CERT, TLS_KEY},
};

/// The certificate served now, and what tandem knows about it.
#[derive(Debug)]
pub struct Served {
    current: ArcSwap<CertifiedKey>,
    info: ArcSwap<Option<ServedInfo>>,
}

/// The served certificate and the CA of the Secret's that signed it.
#[derive(Clone, Debug)]
pub struct ServedInfo {
    pub leaf: Cert,
    pub issuer: Option<Cert>,
}

impl Served {
    /// A resolver serving a throwaway self-signed certificate until the Secret's arrives.
    pub fn placeholder(provider: &CryptoProvider) -> Result<Arc<Served>, String> {
        let made = rcgen::generate_simple_self_signed(vec!["tandem.invalid".to_string()])
            .map_err(|e| e.to_string())?;
        let key =
            PrivateKeyDer::try_from(made.signing_key.serialize_der()).map_err(|e| e.to_string())?;
        let certified = CertifiedKey::from_der(vec![made.cert.der().clone()], key, provider)
            .map_err(|e| e.to_string())?;
        Ok(Arc::new(Served {
            current: ArcSwap::from_pointee(certified),
            info: ArcSwap::from_pointee(None),
        }))
    }

    /// What is served, if it came from the Secret.
    pub fn info(&self) -> Option<ServedInfo> {
        self.info.load().as_ref().clone()
    }

    /// Serves the Secret's certificate; `Ok(false)` when it is the one already served.
    fn load(&self, secret: &Secret, provider: &CryptoProvider) -> Result<bool, String> {
        let data = secret.data.clone().unwrap_or_default();
        let get = |key: &str| data.get(key).map(|bytes| bytes.0.clone());
        let (Some(cert_pem), Some(key_pem)) = (get(TLS_CERT), get(TLS_KEY)) else {
            return Err(format!("{TLS_CERT} or {TLS_KEY} is missing"));
        };
        let chain = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("{TLS_CERT}: {e}"))?;
        let Some(first) = chain.first() else {
            return Err(format!("{TLS_CERT} holds no certificate"));
        };
        if self
            .info()
            .is_some_and(|info| info.leaf.der == first.as_ref())
        {
            return Ok(false);
        }
        let leaf = Cert::from_der(first.to_vec()).map_err(|e| e.to_string())?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| format!("{TLS_KEY}: {e}"))?;
        let certified = CertifiedKey::from_der(chain, key, provider)
            .map_err(|e| format!("{TLS_KEY} does not fit {TLS_CERT}: {e}"))?;
        let material = Material::read(get);
        let issuer = material.cas.iter().find(|ca| leaf.issued_by(ca)).cloned();
        self.current.store(Arc::new(certified));
        self.info.store(Arc::new(Some(ServedInfo { leaf, issuer })));
        Ok(true)
    }
}

impl ResolvesServerCert for Served {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The caBundles of the webhook entries that call tandem, by entry name.
pub type Bundles = BTreeMap<String, Vec<Cert>>;

/// The entries of `config` that call tandem: through its Service, or by a URL whose host
/// the serving certificate names.
pub fn calling_entries(
    config: &MutatingWebhookConfiguration,
    context: &Context,
) -> Vec<(String, Option<Vec<u8>>)> {
    config
        .webhooks
        .iter()
        .flatten()
        .filter(|entry| {
            let client = &entry.client_config;
            match (&client.service, &client.url) {
                (Some(service), _) => {
                    service.name == context.settings.service
                        && service.namespace == context.namespace
                }
                (None, Some(url)) => url_host(url).is_some_and(|host| {
                    context
                        .names
                        .iter()
                        .any(|name| name.eq_ignore_ascii_case(&host))
                }),
                (None, None) => false,
            }
        })
        .map(|entry| {
            (
                entry.name.clone(),
                entry.client_config.ca_bundle.as_ref().map(|b| b.0.clone()),
            )
        })
        .collect()
}

/// The host of an https URL, without brackets around an IPv6 address.
pub fn url_host(url: &str) -> Option<String> {
    let uri: http::Uri = url.parse().ok()?;
    let host = uri.host()?;
    Some(
        host.trim_start_matches('[')
            .trim_end_matches(']')
            .to_string(),
    )
}

/// Parses each entry's caBundle; an unreadable one counts as empty.
pub fn bundles(entries: &[(String, Option<Vec<u8>>)]) -> Bundles {
    entries
        .iter()
        .map(|(name, pem)| {
            let cas = pem
                .as_ref()
                .and_then(|pem| Cert::parse_pem(pem, "the caBundle").ok())
                .unwrap_or_default();
            (name.clone(), cas)
        })
        .collect()
}

/// Ready: what is served came from the Secret, is valid, and every entry that calls tandem
/// trusts it.
pub fn trusted(info: Option<&ServedInfo>, bundles: &Bundles, now: i64) -> bool {
    let Some(info) = info else { return false };
    !bundles.is_empty()
        && info.leaf.not_before <= now
        && !info.leaf.expired(now)
        && bundles
            .values()
            .all(|cas| cas.iter().any(|ca| info.leaf.issued_by(ca)))
}

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Watches the Secret and the webhook configuration, serves, reports, and keeps `ready`.
pub async fn run(
    context: Arc<Context>,
    served: Arc<Served>,
    provider: Arc<CryptoProvider>,
    ready: watch::Sender<bool>,
    nudge: Arc<Notify>,
) {
    let settings = &context.settings;
    let secrets: Api<Secret> = Api::namespaced(context.client.clone(), &context.namespace);
    let webhooks: Api<MutatingWebhookConfiguration> = Api::all(context.client.clone());
    let leases: Api<Lease> = Api::namespaced(context.client.clone(), &context.namespace);
    let by_name = |name: &str| watcher::Config::default().fields(&format!("metadata.name={name}"));
    let secret_events = watcher(secrets, by_name(&settings.secret)).default_backoff();
    let webhook_events = watcher(webhooks, by_name(&settings.webhook)).default_backoff();
    tokio::pin!(secret_events, webhook_events);

    let mut bundles = Bundles::new();
    let mut tick = tokio::time::interval(settings.check_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let mut report = false;
        tokio::select! {
            Some(event) = secret_events.next() => match event {
                Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => {
                    match served.load(&secret, &provider) {
                        Ok(true) => {
                            context.metrics.tls_reload(true);
                            let info = served.info();
                            if let Some(info) = &info {
                                context.metrics.tls_certificate(info.leaf.not_after);
                            }
                            tracing::info!(
                                secret = %settings.secret,
                                certificate = info.as_ref().map_or("", |i| i.leaf.short()),
                                ca = info.as_ref().and_then(|i| i.issuer.as_ref()).map_or("unknown", |ca| ca.short()),
                                "serving the certificate from the Secret"
                            );
                            report = true;
                        }
                        Ok(false) => {}
                        Err(error) => {
                            context.metrics.tls_reload(false);
                            tracing::warn!(secret = %settings.secret, %error, "kept the served certificate: the Secret's is unusable");
                        }
                    }
                    nudge.notify_one();
                }
                Ok(watcher::Event::Delete(_)) => {
                    tracing::warn!(secret = %settings.secret, "the TLS Secret was deleted; serving the certificate in memory until it is back");
                    nudge.notify_one();
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(secret = %settings.secret, %error, "watching the TLS Secret (retrying; serving on)"),
            },
            Some(event) = webhook_events.next() => match event {
                Ok(watcher::Event::Apply(config) | watcher::Event::InitApply(config)) => {
                    bundles = self::bundles(&calling_entries(&config, &context));
                    if bundles.is_empty() {
                        tracing::warn!(webhook = %settings.webhook, "no entry of the webhook configuration calls this server (by its Service or a URL whose host the certificate names)");
                    }
                    nudge.notify_one();
                }
                Ok(watcher::Event::Delete(_)) => {
                    bundles.clear();
                    nudge.notify_one();
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(webhook = %settings.webhook, %error, "watching the webhook configuration (retrying)"),
            },
            _ = tick.tick() => report = true,
        }
        let now = unix_now();
        let is_trusted = trusted(served.info().as_ref(), &bundles, now);
        ready.send_if_modified(|ready| {
            let changed = *ready != is_trusted;
            if changed {
                if is_trusted {
                    tracing::info!("the webhook's caBundle trusts the served certificate: ready");
                } else {
                    tracing::warn!("the webhook's caBundle does not trust the served certificate (yet): not ready");
                }
            }
            *ready = is_trusted;
            changed
        });
        if report && let Some(info) = served.info() {
            send_report(&leases, &context, &info, now).await;
        }
    }
}

/// The Lease annotation a replica reports on, and what it says: the CA that signed what it
/// serves, and when it said so.
async fn send_report(leases: &Api<Lease>, context: &Context, info: &ServedInfo, now: i64) {
    let issuer = info
        .issuer
        .as_ref()
        .map_or("unknown", |ca| ca.fingerprint.as_str());
    let patch = serde_json::json!({
        "metadata": {"annotations": {report_key(&context.identity): format!("{issuer} {now}")}}
    });
    let params = PatchParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PatchParams::default()
    };
    if let Err(error) = leases
        .patch(&context.settings.lease, &params, &Patch::Merge(&patch))
        .await
    {
        // The Lease may not be there yet (the election makes it): the next tick retries.
        tracing::debug!(%error, lease = %context.settings.lease, "reporting the served certificate on the Lease");
    }
}

/// The annotation key of a replica's report.
pub fn report_key(identity: &str) -> String {
    format!("{REPORT_PREFIX}{identity}")
}

/// The reports on a Lease heard within `fresh` before `now`; the others are stale (the
/// replica is gone or cut off) and returned apart, for pruning.
pub fn reports(
    lease: &Lease,
    now: i64,
    fresh: Duration,
) -> (Vec<super::plan::Report>, Vec<String>) {
    let mut live = Vec::new();
    let mut stale = Vec::new();
    for (key, value) in lease.metadata.annotations.iter().flatten() {
        let Some(identity) = key.strip_prefix(REPORT_PREFIX) else {
            continue;
        };
        let mut parts = value.split(' ');
        let (Some(issuer), Some(at)) = (
            parts.next(),
            parts.next().and_then(|t| t.parse::<i64>().ok()),
        ) else {
            stale.push(key.clone());
            continue;
        };
        if now - at <= fresh.as_secs() as i64 {
            live.push(super::plan::Report {
                identity: identity.to_string(),
                issuer: issuer.to_string(),
            });
        } else {
            stale.push(key.clone());
        }
    }
    (live, stale)
}

/// How long to wait before a certificate's end to look again (for timers).
pub fn until(unix: i64) -> Duration {
    Duration::from_secs(u64::try_from(unix - unix_now()).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls_manager::material::{issue_ca, issue_leaf};

    #[test]
    fn url_hosts() {
        assert_eq!(
            url_host("https://127.0.0.1:8443/mutate").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(
            url_host("https://[::1]:8443/mutate").as_deref(),
            Some("::1")
        );
        assert_eq!(
            url_host("https://dev.example/mutate").as_deref(),
            Some("dev.example")
        );
        assert_eq!(url_host("not a url"), None);
    }

    #[test]
    fn trusted_needs_every_calling_entry_to_trust_the_leaf() {
        let now = unix_now();
        let ca = issue_ca(now, 86_400).unwrap();
        let other = issue_ca(now, 86_400).unwrap();
        let leaf = issue_leaf(&ca, &["a.b.svc".into()], now, 3600).unwrap();
        let info = ServedInfo {
            leaf: leaf.cert,
            issuer: Some(ca.cert.clone()),
        };
        let both = Bundles::from([
            ("pods.tandem.dev".into(), vec![ca.cert.clone()]),
            (
                "labelled.tandem.dev".into(),
                vec![other.cert.clone(), ca.cert.clone()],
            ),
        ]);
        assert!(trusted(Some(&info), &both, now));
        let one_stale = Bundles::from([
            ("pods.tandem.dev".into(), vec![ca.cert.clone()]),
            ("labelled.tandem.dev".into(), vec![other.cert.clone()]),
        ]);
        assert!(!trusted(Some(&info), &one_stale, now));
        assert!(
            !trusted(Some(&info), &Bundles::new(), now),
            "no entry calls tandem"
        );
        assert!(
            !trusted(None, &both, now),
            "the placeholder is never trusted"
        );
        assert!(!trusted(Some(&info), &both, now + 3600), "expired");
    }

    #[test]
    fn stale_and_garbled_reports_are_set_apart() {
        let mut lease = Lease::default();
        lease.metadata.annotations = Some(BTreeMap::from([
            (report_key("a"), "abc 1000".to_string()),
            (report_key("b"), "def 900".to_string()),
            (report_key("c"), "garbled".to_string()),
            ("other/annotation".to_string(), "x".to_string()),
        ]));
        let (live, stale) = reports(&lease, 1010, Duration::from_secs(30));
        assert_eq!(
            live,
            vec![super::super::plan::Report {
                identity: "a".into(),
                issuer: "abc".into()
            }]
        );
        assert_eq!(stale, vec![report_key("b"), report_key("c")]);
    }
}

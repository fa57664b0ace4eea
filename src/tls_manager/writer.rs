//! The leader's loop: observe the Secret, the webhook configuration and the replicas'
//! reports through the API server, ask [`plan`] for the next step, carry it out, and again
//! until the plan says wait. Writes are guarded: the Secret is replaced with the
//! resourceVersion it was read at (a conflict means observe again), the caBundle is
//! server-side applied with tandem's own field manager, touching only `caBundle` in the
//! entries that call tandem.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::Duration,
};

use k8s_openapi::{
    ByteString,
    api::{
        admissionregistration::v1::MutatingWebhookConfiguration, coordination::v1::Lease,
        core::v1::Secret,
    },
    apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference},
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use tokio::{
    sync::{Notify, watch},
    time::Instant,
};

use super::{
    Context, FIELD_MANAGER, ROTATE_ANNOTATION,
    material::{self, Ca, Cert, Material, issue_ca, issue_leaf},
    plan::{Observed, Rules, SecretView, Step, plan},
    serving::{Served, bundles, calling_entries, reports, unix_now},
};

/// Steps carried out in one go before the loop waits (a safety net; a rotation needs four).
const MAX_STEPS: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{action}: {source}")]
    Api { action: String, source: kube::Error },
    #[error(transparent)]
    Material(#[from] material::MaterialError),
    #[error(
        "the webhook configuration {0} was not found; tandem only keeps the caBundle of a configuration that exists (the chart's)"
    )]
    NoWebhook(String),
    #[error(
        "no entry of the webhook configuration {0} calls this server (its Service, or a URL whose host is among --tls-extra-names)"
    )]
    NoEntry(String),
}

pub struct Writer {
    context: Arc<Context>,
    served: Arc<Served>,
    secrets: Api<Secret>,
    webhooks: Api<MutatingWebhookConfiguration>,
    leases: Api<Lease>,
    rules: Rules,
    pending: Option<Ca>,
    /// When this leader first saw each CA (by fingerprint) in the caBundle.
    trusted_since: HashMap<String, Instant>,
}

impl Writer {
    pub fn new(context: Arc<Context>, served: Arc<Served>) -> Writer {
        let client = context.client.clone();
        let rules = Rules {
            names: context.names.clone(),
            trust_delay: context.settings.trust_delay,
        };
        Writer {
            secrets: Api::namespaced(client.clone(), &context.namespace),
            webhooks: Api::all(client.clone()),
            leases: Api::namespaced(client, &context.namespace),
            context,
            served,
            rules,
            pending: None,
            trusted_since: HashMap::new(),
        }
    }

    /// Writes while leading, until `leading`'s sender is gone.
    pub async fn run(mut self, mut leading: watch::Receiver<bool>, nudge: Arc<Notify>) {
        let interval = self.context.settings.check_interval;
        loop {
            while !*leading.borrow_and_update() {
                if leading.changed().await.is_err() {
                    return;
                }
            }
            // What an earlier leader saw is not known: every CA in the bundle counts as
            // trusted from now on.
            self.trusted_since.clear();
            while *leading.borrow_and_update() {
                let wait = match self.tick().await {
                    Ok(wait) => wait.min(interval),
                    Err(error) => {
                        tracing::warn!(%error, retry_in = ?interval, "keeping TLS in step failed");
                        interval
                    }
                };
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = nudge.notified() => {}
                    changed = leading.changed() => if changed.is_err() { return },
                }
            }
        }
    }

    /// Observes and acts until the plan says wait; returns how long.
    async fn tick(&mut self) -> Result<Duration, WriteError> {
        for _ in 0..MAX_STEPS {
            let settings = &self.context.settings;
            let secret = self
                .secrets
                .get_opt(&settings.secret)
                .await
                .map_err(|source| api(format!("reading the Secret {}", settings.secret), source))?;
            let config = self
                .webhooks
                .get_opt(&settings.webhook)
                .await
                .map_err(|source| {
                    api(
                        format!("reading the webhook configuration {}", settings.webhook),
                        source,
                    )
                })?
                .ok_or_else(|| WriteError::NoWebhook(settings.webhook.clone()))?;
            let entries = calling_entries(&config, &self.context);
            if entries.is_empty() {
                return Err(WriteError::NoEntry(settings.webhook.clone()));
            }
            let per_entry = bundles(&entries);
            let mut distinct = per_entry.values();
            let bundle = distinct.next().cloned().unwrap_or_default();
            let entries_agree = per_entry.values().all(|cas| *cas == bundle)
                && entries
                    .iter()
                    .all(|(_, pem)| pem.is_some() || bundle.is_empty());

            let instant = Instant::now();
            self.trusted_since
                .retain(|fp, _| bundle.iter().any(|ca| &ca.fingerprint == fp));
            for ca in &bundle {
                self.trusted_since
                    .entry(ca.fingerprint.clone())
                    .or_insert(instant);
            }
            let live = self.reports().await;

            let view = match &secret {
                None => SecretView::Missing,
                Some(secret) => SecretView::Present {
                    material: read(secret),
                    rotate_requested: secret
                        .metadata
                        .annotations
                        .as_ref()
                        .is_some_and(|a| a.contains_key(ROTATE_ANNOTATION)),
                },
            };
            if let SecretView::Present { material, .. } = &view
                && !material.problems.is_empty()
            {
                tracing::debug!(problems = ?material.problems, "parts of the TLS Secret are unusable");
            }
            let since = &self.trusted_since;
            let trusted_for = |ca: &Cert| {
                since
                    .get(&ca.fingerprint)
                    .map_or(Duration::ZERO, |t| instant.duration_since(*t))
            };
            let pending = self.pending.as_ref().map(|ca| ca.cert.clone());
            let step = plan(
                &Observed {
                    secret: &view,
                    bundle: &bundle,
                    entries_agree,
                    reports: &live,
                    trusted_for: &trusted_for,
                    pending: pending.as_ref(),
                    now: unix_now(),
                },
                &self.rules,
            );
            match step {
                Step::Wait { for_, why } => {
                    tracing::debug!(?for_, why, "TLS: waiting");
                    return Ok(for_);
                }
                Step::Idle => return Ok(Duration::MAX),
                step => {
                    self.act(step, secret, &config, &entries, &view).await?;
                }
            }
        }
        Ok(Duration::ZERO)
    }

    async fn act(
        &mut self,
        step: Step,
        secret: Option<Secret>,
        config: &MutatingWebhookConfiguration,
        entries: &[(String, Option<Vec<u8>>)],
        view: &SecretView,
    ) -> Result<(), WriteError> {
        let settings = &self.context.settings;
        let now = unix_now();
        let ca_lifetime = settings.ca_duration.as_secs() as i64;
        let leaf_lifetime = settings.cert_duration.as_secs() as i64;
        match step {
            Step::MakeCa => {
                let ca = issue_ca(now, ca_lifetime)?;
                tracing::info!(ca = ca.cert.short(), "made a new CA");
                self.pending = Some(ca);
            }
            Step::ApplyBundle(cas) => {
                let pem = material::bundle_pem(&cas);
                let encoded = base64_simd::STANDARD.encode_to_string(pem.as_bytes());
                let webhooks: Vec<_> = entries
                    .iter()
                    .map(|(name, _)| {
                        serde_json::json!({"name": name, "clientConfig": {"caBundle": encoded}})
                    })
                    .collect();
                let patch = serde_json::json!({
                    "apiVersion": "admissionregistration.k8s.io/v1",
                    "kind": "MutatingWebhookConfiguration",
                    "metadata": {"name": settings.webhook},
                    "webhooks": webhooks,
                });
                self.webhooks
                    .patch(
                        &settings.webhook,
                        &PatchParams::apply(FIELD_MANAGER),
                        &Patch::Apply(&patch),
                    )
                    .await
                    .map_err(|source| {
                        api(
                            format!("applying the caBundle of {}", settings.webhook),
                            source,
                        )
                    })?;
                let cas: Vec<&str> = cas.iter().map(Cert::short).collect();
                let names: Vec<&str> = entries.iter().map(|(name, _)| name.as_str()).collect();
                tracing::info!(webhook = %settings.webhook, entries = ?names, cas = ?cas, "applied the caBundle");
            }
            Step::CreateSecret { trust } => {
                let ca = self
                    .pending
                    .take()
                    .expect("the plan asks for a pending CA first");
                let leaf = issue_leaf(&ca, &self.context.names, now, leaf_lifetime)?;
                let mut secret = Secret {
                    metadata: ObjectMeta {
                        name: Some(settings.secret.clone()),
                        namespace: Some(self.context.namespace.clone()),
                        labels: Some(BTreeMap::from([
                            ("app.kubernetes.io/managed-by".into(), "tandem".into()),
                            ("app.kubernetes.io/part-of".into(), "tandem".into()),
                        ])),
                        // Deleted with the webhook configuration (helm uninstall).
                        owner_references: owner(config).map(|o| vec![o]),
                        ..ObjectMeta::default()
                    },
                    type_: Some("kubernetes.io/tls".into()),
                    ..Secret::default()
                };
                set_data(&mut secret, Material::data(&trust, &ca, &leaf));
                let params = post_params();
                match self.secrets.create(&params, &secret).await {
                    Ok(_) => tracing::info!(
                        secret = %settings.secret, ca = ca.cert.short(), certificate = leaf.cert.short(),
                        "created the TLS Secret"
                    ),
                    // Someone else made it meanwhile: observe again.
                    Err(kube::Error::Api(status)) if status.code == 409 => {
                        self.pending = Some(ca);
                    }
                    Err(source) => {
                        self.pending = Some(ca);
                        return Err(api(
                            format!("creating the Secret {}", settings.secret),
                            source,
                        ));
                    }
                }
            }
            Step::BeginRotation { trust } => {
                let ca = self
                    .pending
                    .take()
                    .expect("the plan asks for a pending CA first");
                let mut secret = secret.expect("a rotation starts from a Secret");
                let SecretView::Present { material, .. } = view else {
                    unreachable!("a rotation starts from a Secret")
                };
                let mut cas = vec![ca.cert.clone()];
                cas.extend(trust);
                let mut data = vec![
                    (material::CA_CERT, material::bundle_pem(&cas).into_bytes()),
                    (material::CA_KEY, ca.key_pem.clone().into_bytes()),
                ];
                if let Some(leaf) = &material.leaf {
                    data.push((material::TLS_CERT, leaf.cert.pem().into_bytes()));
                    data.push((material::TLS_KEY, leaf.key_pem.clone().into_bytes()));
                }
                set_data(&mut secret, data);
                if let Some(annotations) = secret.metadata.annotations.as_mut() {
                    annotations.remove(ROTATE_ANNOTATION);
                }
                let why = if material.problems.is_empty() {
                    "the CA is due for renewal or a rotation was asked for"
                } else {
                    "the Secret's CA is unusable"
                };
                self.replace(secret, "began a CA rotation: the new CA is trusted first")
                    .await
                    .inspect_err(|_| self.pending = Some(ca.clone()))?;
                tracing::info!(ca = ca.cert.short(), why, "began a CA rotation");
            }
            Step::IssueLeaf => {
                let mut secret = secret.expect("a certificate is issued into a Secret");
                let SecretView::Present { material, .. } = view else {
                    unreachable!("a certificate is issued into a Secret")
                };
                let ca = material
                    .signer(now)
                    .expect("the plan issues only with a usable CA");
                let leaf = issue_leaf(&ca, &self.context.names, now, leaf_lifetime)?;
                set_data(
                    &mut secret,
                    vec![
                        (material::TLS_CERT, leaf.cert.pem().into_bytes()),
                        (material::TLS_KEY, leaf.key_pem.clone().into_bytes()),
                    ],
                );
                self.replace(secret, "issued a serving certificate").await?;
                tracing::info!(
                    certificate = leaf.cert.short(),
                    ca = ca.cert.short(),
                    "issued a serving certificate"
                );
            }
            Step::Retire { keep } => {
                let mut secret = secret.expect("CAs are retired from a Secret");
                set_data(
                    &mut secret,
                    vec![(material::CA_CERT, material::bundle_pem(&keep).into_bytes())],
                );
                let kept: Vec<&str> = keep.iter().map(Cert::short).collect();
                self.replace(secret, "retired the older CAs").await?;
                tracing::info!(kept = ?kept, "retired the older CAs: every replica serves the newest CA's certificate");
            }
            Step::Wait { .. } | Step::Idle => {}
        }
        Ok(())
    }

    /// Replaces the Secret as read (its resourceVersion guards against a concurrent write).
    async fn replace(&self, secret: Secret, what: &str) -> Result<(), WriteError> {
        let name = &self.context.settings.secret;
        match self.secrets.replace(name, &post_params(), &secret).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                tracing::debug!(what, "the Secret changed meanwhile; observing again");
                Ok(())
            }
            Err(source) => Err(api(format!("{what} (replacing the Secret {name})"), source)),
        }
    }

    /// The live reports on the Lease; stale ones are removed (best effort).
    async fn reports(&self) -> Vec<super::plan::Report> {
        let settings = &self.context.settings;
        let Ok(Some(lease)) = self.leases.get_opt(&settings.lease).await else {
            return Vec::new();
        };
        let fresh = settings.check_interval * 3;
        let (mut live, stale) = reports(&lease, unix_now(), fresh);
        if !stale.is_empty() {
            let nulls: serde_json::Map<String, serde_json::Value> = stale
                .iter()
                .map(|k| (k.clone(), serde_json::Value::Null))
                .collect();
            let patch = serde_json::json!({"metadata": {"annotations": nulls}});
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_string()),
                ..PatchParams::default()
            };
            if self
                .leases
                .patch(&settings.lease, &params, &Patch::Merge(&patch))
                .await
                .is_ok()
            {
                tracing::info!(replicas = ?stale, "forgot replicas not heard from");
            }
        }
        // The leader's own state counts whether or not its report has landed.
        if let Some(info) = self.served.info() {
            let issuer = info.issuer.map(|ca| ca.fingerprint).unwrap_or_default();
            live.retain(|report| report.identity != self.context.identity);
            live.push(super::plan::Report {
                identity: self.context.identity.clone(),
                issuer,
            });
        }
        live
    }
}

fn api(action: String, source: kube::Error) -> WriteError {
    WriteError::Api { action, source }
}

fn post_params() -> PostParams {
    PostParams {
        field_manager: Some(FIELD_MANAGER.to_string()),
        ..PostParams::default()
    }
}

fn read(secret: &Secret) -> Material {
    let data = secret.data.as_ref();
    Material::read(|key| data.and_then(|d| d.get(key)).map(|b| b.0.clone()))
}

fn set_data(secret: &mut Secret, entries: Vec<(&'static str, Vec<u8>)>) {
    let data = secret.data.get_or_insert_with(BTreeMap::new);
    for (key, value) in entries {
        data.insert(key.to_string(), ByteString(value));
    }
}

fn owner(config: &MutatingWebhookConfiguration) -> Option<OwnerReference> {
    Some(OwnerReference {
        api_version: "admissionregistration.k8s.io/v1".into(),
        kind: "MutatingWebhookConfiguration".into(),
        name: config.metadata.name.clone()?,
        uid: config.metadata.uid.clone()?,
        ..OwnerReference::default()
    })
}

//! `tandem serve --kube`: the stale pods `tandem drift` would list, counted by workload
//! kind as the `tandem_stale_pods` gauge, every `--drift-interval`, with the policies the
//! server is serving with.
//!
//! Only when the service account may list pods (asked with a SelfSubjectAccessReview
//! before each count, so a permission granted or taken away later is followed): the
//! chart grants it only when asked to. Without it the gauge is not exported, and the
//! server says so once. Owners it may not read are handled as `tandem drift` handles
//! them (compared as bare pods).

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SelfSubjectAccessReview, SelfSubjectAccessReviewSpec,
};
use kube::{Api, Client, api::PostParams};
use tokio::sync::watch;

use super::{KINDS, cluster, report::Report};
use crate::{policy::source::store::Store, telemetry::Metrics};

/// Counts stale pods every `every` until the task is dropped, once `synced` (the
/// server's policies and namespaces from the API server) is true.
pub async fn run(
    client: Client,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    mut synced: watch::Receiver<bool>,
    every: Duration,
) {
    if synced.wait_for(|synced| *synced).await.is_err() {
        return;
    }
    let mut allowed_before = None;
    loop {
        match may_list_pods(&client).await {
            Ok(allowed) => {
                if allowed_before != Some(allowed) {
                    if allowed {
                        tracing::info!(every = ?every, "counting stale pods for tandem_stale_pods");
                    } else {
                        tracing::info!(
                            "the service account may not list pods: tandem_stale_pods is not exported \
                             (the chart's drift.metric value grants it)"
                        );
                    }
                    allowed_before = Some(allowed);
                }
                if allowed {
                    count(&client, &store, &metrics).await;
                } else {
                    metrics.stale_pods.clear();
                }
            }
            Err(error) => {
                tracing::warn!(%error, "asking the API server whether tandem may list pods failed; retrying");
                metrics
                    .drift_scans
                    .get_or_create(&[("result", "error")])
                    .inc();
            }
        }
        tokio::time::sleep(every).await;
    }
}

async fn count(client: &Client, store: &Store, metrics: &Metrics) {
    let snapshot = store.snapshot().clone();
    match cluster::scan(client, &snapshot, None).await {
        Ok(scan) => {
            let report = Report::new(scan);
            let by_kind = &report.summary.stale_by_kind;
            for kind in KINDS {
                let stale = by_kind.get(kind).copied().unwrap_or_default();
                metrics
                    .stale_pods
                    .get_or_create(&[("kind", kind)])
                    .set(stale as i64);
            }
            let other: usize = by_kind
                .iter()
                .filter(|(kind, _)| !KINDS.contains(&kind.as_str()))
                .map(|(_, n)| n)
                .sum();
            metrics
                .stale_pods
                .get_or_create(&[("kind", "other")])
                .set(other as i64);
            metrics.drift_scans.get_or_create(&[("result", "ok")]).inc();
            tracing::info!(
                checked = report.summary.checked,
                stale = report.summary.stale,
                workloads = report.summary.workloads,
                "counted stale pods"
            );
        }
        Err(error) => {
            tracing::warn!(%error, "counting stale pods failed; the gauge keeps the last count");
            metrics
                .drift_scans
                .get_or_create(&[("result", "error")])
                .inc();
        }
    }
}

/// Whether this server's identity may list pods in every namespace.
async fn may_list_pods(client: &Client) -> Result<bool, kube::Error> {
    let review = SelfSubjectAccessReview {
        spec: SelfSubjectAccessReviewSpec {
            resource_attributes: Some(ResourceAttributes {
                verb: Some("list".into()),
                resource: Some("pods".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SelfSubjectAccessReview>::all(client.clone())
        .create(&PostParams::default(), &review)
        .await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

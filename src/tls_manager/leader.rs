//! Leader election on a `coordination.k8s.io` Lease (kube-lease-manager): one replica at a
//! time writes the Secret and the caBundle. The holder renews the Lease a third of its
//! duration before it runs out; the others take it over once it has run out (plus the
//! crate's random 0.1–1 s back-off against two taking it at once). A replica that stops
//! releases the Lease, so the next takes over at once.

use std::time::Duration;

use kube::Client;
use kube_lease_manager::{LeaseManager, LeaseManagerBuilder};
use tokio::{
    sync::{oneshot, watch},
    task::JoinHandle,
};

/// Whether this replica leads, kept up to date until [`Election::stop`].
pub struct Election {
    pub leading: watch::Receiver<bool>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Election {
    /// Starts campaigning in the background: the Lease is made if missing, and an API server
    /// that cannot be reached is retried.
    pub fn start(
        client: Client,
        namespace: String,
        lease: String,
        identity: String,
        duration: Duration,
    ) -> Election {
        let (tx, leading) = watch::channel(false);
        let (stop, mut stopped) = oneshot::channel();
        let seconds = duration.as_secs().max(2);
        let grace = (seconds / 3).max(1);
        let task = tokio::spawn(async move {
            let mut retry = Duration::from_secs(1);
            let manager = loop {
                let built = LeaseManagerBuilder::new(client.clone(), &lease)
                    .with_namespace(&namespace)
                    .with_identity(&identity)
                    .with_duration(seconds)
                    .with_grace(grace)
                    .with_field_manager(format!("tandem-lease-{identity}"))
                    .build();
                tokio::select! {
                    built = built => match built {
                        Ok(manager) => break manager,
                        Err(error) => {
                            tracing::warn!(%error, %lease, retry_in = ?retry, "cannot take part in the leader election yet");
                        }
                    },
                    _ = &mut stopped => return,
                }
                tokio::select! {
                    _ = tokio::time::sleep(retry) => {}
                    _ = &mut stopped => return,
                }
                retry = (retry * 2).min(Duration::from_secs(30));
            };
            campaign(manager, tx, stopped, &identity).await;
        });
        Election {
            leading,
            stop: Some(stop),
            task,
        }
    }

    /// Stops campaigning and releases the Lease if held (waiting at most a few seconds).
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

async fn campaign(
    manager: LeaseManager,
    tx: watch::Sender<bool>,
    mut stopped: oneshot::Receiver<()>,
    identity: &str,
) {
    let (mut changes, task) = manager.watch().await;
    loop {
        tokio::select! {
            changed = changes.changed() => {
                if changed.is_err() {
                    break;
                }
                let leading = *changes.borrow_and_update();
                if leading {
                    tracing::info!(%identity, "leading: this replica writes the TLS Secret and the caBundle");
                } else {
                    tracing::info!(%identity, "following: another replica writes the TLS Secret and the caBundle");
                }
                tx.send_replace(leading);
            }
            _ = &mut stopped => break,
        }
    }
    tx.send_replace(false);
    // Dropping the last receiver tells the manager to release the Lease and end.
    drop(changes);
    match task.await {
        Ok(Ok(_)) => tracing::info!(%identity, "left the leader election; the Lease is released"),
        Ok(Err(error)) => {
            tracing::warn!(%identity, %error, "releasing the Lease failed; it runs out by itself")
        }
        Err(error) => tracing::warn!(%identity, %error, "the leader election task failed"),
    }
}

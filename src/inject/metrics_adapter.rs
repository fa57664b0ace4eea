//! Metrics adapter: an exporter sidecar that reads the app's own metrics (`target`) and
//! serves them to Prometheus on a port named `metrics`, plus the usual `prometheus.io/*`
//! scrape annotations (never overwriting ones the pod has).

use k8s_openapi::api::core::v1::{ConfigMapVolumeSource, Volume};

use crate::{
    annotations::{PROMETHEUS_PATH, PROMETHEUS_PORT, PROMETHEUS_SCRAPE},
    invalid::Invalid,
    pattern::{Pattern, parse_port},
    policy::resolve::Resolved,
};

use super::{Builder, container::fill, env_from_secret, mount, port, render};

/// The port name Prometheus' service monitors and users look for.
pub const PORT_NAME: &str = "metrics";

pub fn plan(builder: &mut Builder<'_>, resolved: &Resolved) -> Result<(), Invalid> {
    let number = parse_port(resolved.require("port")).expect("checked during resolution");
    let name = builder.container_name(Pattern::MetricsAdapter.container_name());
    builder.claim_port(number, &name, resolved, "port")?;

    let mut exporter = render(name, resolved, &[]);
    exporter
        .ports
        .get_or_insert_with(Vec::new)
        .push(port(PORT_NAME, number));
    if let Some(secret) = resolved.option("secret") {
        // The exporters read credentials from well-known variables (REDIS_PASSWORD,
        // DATA_SOURCE_PASS, MYSQLD_EXPORTER_PASSWORD): the Secret's keys become them.
        exporter.env_from = Some(vec![env_from_secret(secret)]);
    }
    if let Some(config) = resolved.option("config") {
        // Exporters configured by a file (json) read it from /etc/tandem/<configmap>.
        let volume = builder.volume_name("tandem-exporter-config");
        exporter
            .volume_mounts
            .get_or_insert_with(Vec::new)
            .push(mount(&volume, &format!("/etc/tandem/{config}"), true));
        builder.add_volume(Volume {
            name: volume,
            config_map: Some(ConfigMapVolumeSource {
                name: config.to_string(),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    builder.add_sidecar(exporter, resolved.sidecar_mode);

    for (key, value) in &resolved.profile.profile.annotations {
        builder.annotate_if_unset(key, fill(value, resolved, &[]));
    }
    builder.annotate_if_unset(PROMETHEUS_SCRAPE, "true");
    builder.annotate_if_unset(PROMETHEUS_PORT, number.to_string());
    builder.annotate_if_unset(PROMETHEUS_PATH, resolved.require("path"));
    Ok(())
}

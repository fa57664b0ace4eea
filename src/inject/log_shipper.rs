//! Log shipper: an emptyDir the app writes its log files into (read-write in the app
//! containers, read-only in the shipper), a second small emptyDir for the shipper's file
//! positions and buffer, and the shipper itself as a sidecar, with a Secret's keys in its
//! environment if `secret` names one. Native sidecars stop after the app, so the shipper
//! gets to flush what the app wrote last.

use crate::{invalid::Invalid, pattern::Pattern, policy::resolve::Resolved};

use super::{Builder, empty_dir, env_from_secret, mount, render};

/// Where the shipper keeps its positions database and buffer (see `policies/catalog.yaml`).
pub const STATE_DIR: &str = "/fluent-bit/state";

pub fn plan(builder: &mut Builder<'_>, resolved: &Resolved) -> Result<(), Invalid> {
    let path = resolved.require("path");
    let logs = builder.volume_name("tandem-logs");
    builder.mount_in_apps(resolved, mount(&logs, path, false), "path")?;
    let state = builder.volume_name("tandem-log-state");

    let name = builder.container_name(Pattern::LogShipper.container_name());
    let mut shipper = render(name, resolved, &[]);
    shipper.volume_mounts = Some(vec![
        mount(&logs, path, true),
        mount(&state, STATE_DIR, false),
    ]);
    if let Some(secret) = resolved.option("secret") {
        // Fluent Bit's outputs read credentials from the environment (AWS_ACCESS_KEY_ID and
        // AWS_SECRET_ACCESS_KEY for S3), and a profile's arguments may name any as ${KEY}.
        shipper.env_from = Some(vec![env_from_secret(secret)]);
    }
    builder.add_volume(empty_dir(logs));
    builder.add_volume(empty_dir(state));
    builder.add_sidecar(shipper, resolved.sidecar_mode);
    Ok(())
}

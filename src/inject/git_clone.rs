//! Git clone: git-sync v4 checks the repository out into a shared emptyDir.
//!
//! - One-time (no `sync`): an init container (`--one-time`) runs before the pod's own init
//!   containers; the app containers mount the checkout itself (`subPath` of the link), so the
//!   repository's files are directly at `path`.
//! - Sync (`sync: 30s`): a git-sync sidecar keeps pulling. The app containers mount the
//!   whole volume at `path`; the files are at `path/<link>` (default `current`), a symlink
//!   git-sync swaps atomically to each new commit. A native sidecar holds the app back until
//!   the first sync (startup probe); in classic mode a one-time clone runs first instead.
//!
//! git-sync runs as its image's user 65533 (known to `/etc/passwd`, which SSH needs) with
//! a read-only root filesystem and an emptyDir at `/tmp` (its HOME). Credentials come from
//! the `secret`; a private git server's CA from the `ca` ConfigMap's `ca.crt`, which git
//! trusts for https instead of the image's CA bundle.

use k8s_openapi::{
    api::core::v1::{
        ConfigMapVolumeSource, Container, EnvVar, EnvVarSource, HTTPGetAction, KeyToPath, Probe,
        SecretKeySelector, SecretVolumeSource, Volume, VolumeMount,
    },
    apimachinery::pkg::util::intstr::IntOrString,
};

use crate::{
    invalid::Invalid,
    pattern::{GitUrl, Pattern},
    policy::{model::types::SidecarMode, resolve::Resolved},
};

use super::{Builder, empty_dir, mount, port, render};

pub const SYNC_CONTAINER: &str = "tandem-git-sync";
/// git-sync's `--root` inside its own containers.
pub const ROOT: &str = "/git";
/// Where an ssh Secret is mounted: git-sync's default key and known_hosts location.
pub const SECRET_DIR: &str = "/etc/git-secret";
/// Where the `ca` ConfigMap is mounted; git reads `ca.crt` there (GIT_SSL_CAINFO).
pub const CA_DIR: &str = "/etc/tandem/git-ca";
/// The ConfigMap key holding the CA certificate(s), as in `kube-root-ca.crt`.
pub const CA_KEY: &str = "ca.crt";
/// git-sync's HTTP port in sync mode, for the startup probe.
pub const HTTP_PORT: u16 = 8730;
pub const HTTP_PORT_NAME: &str = "git-sync";

pub fn plan(builder: &mut Builder<'_>, resolved: &Resolved) -> Result<(), Invalid> {
    let path = resolved.require("path");
    let link = resolved.require("link");
    let sync = resolved.option("sync");
    let writable = resolved.option("writable") == Some("true");
    let volume = builder.volume_name("tandem-git");
    let tmp = builder.volume_name("tandem-git-tmp");

    // What the app containers see: the checkout itself, or the volume with the link in it.
    let mut app_mount = mount(&volume, path, !writable);
    if sync.is_none() {
        app_mount.sub_path = Some(link.to_string());
    }
    builder.mount_in_apps(resolved, app_mount, "path")?;

    let secret = credentials(builder, resolved);
    let mounts = |extra: &[VolumeMount]| {
        let mut mounts = vec![mount(&volume, ROOT, false), mount(&tmp, "/tmp", false)];
        mounts.extend_from_slice(extra);
        mounts
    };
    let secret_mounts = secret.mounts.clone();

    let one_time = |builder: &mut Builder<'_>| {
        let name = builder.container_name(Pattern::GitClone.container_name());
        let mut clone = git_sync(name, resolved, &secret);
        clone
            .args
            .get_or_insert_with(Vec::new)
            .push("--one-time".into());
        clone.volume_mounts = Some(mounts(&secret_mounts));
        builder.add_init(clone);
    };
    match sync {
        None => one_time(builder),
        Some(period) => {
            if resolved.sidecar_mode == SidecarMode::Classic {
                // A classic sidecar cannot hold the app back: clone once before it starts.
                one_time(builder);
            }
            let name = builder.container_name(SYNC_CONTAINER);
            let http = builder.free_port(HTTP_PORT, &name, resolved)?;
            let mut syncer = git_sync(name, resolved, &secret);
            syncer
                .args
                .get_or_insert_with(Vec::new)
                .extend([format!("--period={period}"), format!("--http-bind=:{http}")]);
            syncer.ports = Some(vec![port(HTTP_PORT_NAME, http)]);
            syncer.volume_mounts = Some(mounts(&secret_mounts));
            // git-sync answers 503 on / until the first sync is done, then 200.
            syncer.startup_probe = Some(Probe {
                http_get: Some(HTTPGetAction {
                    path: Some("/".into()),
                    port: IntOrString::String(HTTP_PORT_NAME.into()),
                    ..Default::default()
                }),
                period_seconds: Some(2),
                failure_threshold: Some(150),
                timeout_seconds: Some(1),
                ..Default::default()
            });
            builder.add_sidecar(syncer, resolved.sidecar_mode);
        }
    }
    builder.add_volume(empty_dir(volume));
    builder.add_volume(empty_dir(tmp));
    for volume in secret.volumes {
        builder.add_volume(volume);
    }
    Ok(())
}

/// How credentials and trust reach git-sync: environment variables, arguments, and the
/// Secret or ConfigMap volumes they name.
#[derive(Clone, Default)]
struct Credentials {
    env: Vec<EnvVar>,
    args: Vec<String>,
    mounts: Vec<VolumeMount>,
    volumes: Vec<Volume>,
}

fn credentials(builder: &mut Builder<'_>, resolved: &Resolved) -> Credentials {
    let mut credentials = secret_credentials(builder, resolved);
    if let Some(config_map) = resolved.option("ca") {
        let volume = builder.volume_name("tandem-git-ca");
        credentials.env.push(EnvVar {
            name: "GIT_SSL_CAINFO".into(),
            value: Some(format!("{CA_DIR}/{CA_KEY}")),
            ..Default::default()
        });
        credentials.mounts.push(mount(&volume, CA_DIR, true));
        credentials.volumes.push(Volume {
            name: volume,
            config_map: Some(ConfigMapVolumeSource {
                name: config_map.to_string(),
                // Named, so a ConfigMap without the key stops the pod with a clear event.
                items: Some(vec![KeyToPath {
                    key: CA_KEY.into(),
                    path: CA_KEY.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    credentials
}

fn secret_credentials(builder: &mut Builder<'_>, resolved: &Resolved) -> Credentials {
    let Some(secret) = resolved.option("secret") else {
        return Credentials::default();
    };
    let repo = resolved.require("repo");
    let ssh = match resolved.option("auth") {
        Some(auth) => auth == "ssh",
        None => GitUrl::parse(repo).is_ok_and(|url| url.ssh),
    };
    if ssh {
        let volume = builder.volume_name("tandem-git-secret");
        Credentials {
            env: Vec::new(),
            // Host keys are checked against the Secret's known_hosts: no trust on first use.
            args: vec![
                format!("--ssh-key-file={SECRET_DIR}/ssh"),
                "--ssh-known-hosts=true".into(),
                format!("--ssh-known-hosts-file={SECRET_DIR}/known_hosts"),
            ],
            mounts: vec![mount(&volume, SECRET_DIR, true)],
            volumes: vec![Volume {
                name: volume,
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.to_string()),
                    // Root-owned and world-readable: git-sync's user can read the key, and
                    // OpenSSH accepts a key file owned by another user whatever its mode.
                    // (0400 would need an fsGroup on the whole pod.)
                    default_mode: Some(0o444),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }
    } else {
        let from_secret = |name: &str, key: &str| EnvVar {
            name: name.into(),
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret.to_string(),
                    key: key.into(),
                    optional: Some(false),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        Credentials {
            env: vec![
                from_secret("GITSYNC_USERNAME", "username"),
                from_secret("GITSYNC_PASSWORD", "password"),
            ],
            ..Default::default()
        }
    }
}

/// A git-sync container with the options every mode shares.
fn git_sync(name: String, resolved: &Resolved, credentials: &Credentials) -> Container {
    let mut container = render(name, resolved, &[]);
    let args = container.args.get_or_insert_with(Vec::new);
    args.extend([
        format!("--repo={}", resolved.require("repo")),
        format!("--ref={}", resolved.require("ref")),
        format!("--root={ROOT}"),
        format!("--link={}", resolved.require("link")),
        format!("--depth={}", resolved.require("depth")),
    ]);
    args.extend(credentials.args.iter().cloned());
    let env = container.env.get_or_insert_with(Vec::new);
    env.push(EnvVar {
        name: "HOME".into(),
        value: Some("/tmp".into()),
        ..Default::default()
    });
    env.extend(credentials.env.iter().cloned());
    container
}

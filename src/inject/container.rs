//! The containers and the small parts patterns assemble: a profile rendered with its
//! `{{option}}` placeholders filled, the restricted security context, ports, emptyDir
//! volumes and mounts.

use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EnvFromSource, EnvVar, SeccompProfile, SecretEnvSource,
    SecurityContext, Volume, VolumeMount,
};

use crate::policy::resolve::Resolved;

/// The non-root user injected containers run as when the profile does not say.
pub const DEFAULT_USER: i64 = 65532;

/// The Pod Security Standard "restricted" context, with a read-only root filesystem.
pub fn restricted(user: i64, group: i64) -> SecurityContext {
    SecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(user),
        run_as_group: Some(group),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            add: None,
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// The container a profile describes, named `name`, with `{{option}}` placeholders filled
/// from the resolved options and `computed` values.
pub fn render(name: String, resolved: &Resolved, computed: &[(&str, &str)]) -> Container {
    let profile = &resolved.profile.profile;
    let fill = |text: &String| fill(text, resolved, computed);
    let user = profile.run_as_user.unwrap_or(DEFAULT_USER);
    Container {
        name,
        image: Some(profile.image.clone()),
        image_pull_policy: Some("IfNotPresent".into()),
        command: (!profile.command.is_empty()).then(|| profile.command.iter().map(fill).collect()),
        args: (!profile.args.is_empty()).then(|| profile.args.iter().map(fill).collect()),
        env: (!profile.env.is_empty()).then(|| {
            profile
                .env
                .iter()
                .map(|env| EnvVar {
                    value: env.value.as_ref().map(fill),
                    ..env.clone()
                })
                .collect()
        }),
        ports: (!profile.ports.is_empty()).then(|| profile.ports.clone()),
        resources: Some(profile.resources.clone()),
        security_context: Some(restricted(user, profile.run_as_group.unwrap_or(user))),
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    }
}

pub(super) fn fill(text: &str, resolved: &Resolved, computed: &[(&str, &str)]) -> String {
    if !text.contains("{{") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        // Placeholders were checked when the profile was loaded: every `{{` is closed.
        let Some(end) = after.find("}}") else {
            out.push_str(&rest[start..]);
            return out;
        };
        let name = after[..end].trim();
        let value = computed
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| *v)
            .or_else(|| resolved.option(name))
            .unwrap_or_default();
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    out
}

/// A named container port.
pub fn port(name: &str, number: u16) -> ContainerPort {
    ContainerPort {
        name: Some(name.into()),
        container_port: i32::from(number),
        protocol: Some("TCP".into()),
        ..Default::default()
    }
}

/// Every key of the Secret as an environment variable (the Secret must exist).
pub fn env_from_secret(secret: &str) -> EnvFromSource {
    EnvFromSource {
        secret_ref: Some(SecretEnvSource {
            name: secret.to_string(),
            optional: Some(false),
        }),
        ..Default::default()
    }
}

/// An emptyDir volume.
pub fn empty_dir(name: String) -> Volume {
    Volume {
        name,
        empty_dir: Some(Default::default()),
        ..Default::default()
    }
}

pub fn mount(volume: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: volume.into(),
        mount_path: path.into(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

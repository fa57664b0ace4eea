//! What the policies that match a pod decide, merged by priority, each setting with the
//! policy it came from.

use std::{collections::BTreeMap, sync::Arc};

use super::Compiled;
use crate::{
    pattern::{Pattern, PerPattern},
    policy::model::types::{OnInvalid, SidecarMode},
};

/// A setting and the policy it came from.
#[derive(Clone, Debug, PartialEq)]
pub struct ByPolicy<T> {
    pub value: T,
    pub policy: Arc<str>,
}

/// A pattern's default options, each with the policy that set it.
pub type DefaultOptions = BTreeMap<String, ByPolicy<String>>;

/// What the matching policies decide for one pod, merged by ascending priority: for each
/// setting the last (highest-priority) policy that sets it wins; `defaults` merge option by
/// option, `enforce` accumulates.
#[derive(Clone, Debug, Default)]
pub struct Effective {
    /// Patterns switched on by default (by the highest-priority policy listing them), with
    /// their options (`profile` among them), each from the policy that set it.
    pub defaults: PerPattern<Option<ByPolicy<DefaultOptions>>>,
    pub overrides: PerPattern<Option<ByPolicy<Arc<[String]>>>>,
    pub enforce: PerPattern<Option<Arc<str>>>,
    pub allowed_images: Option<ByPolicy<Arc<[glob::Pattern]>>>,
    pub allowed_git_hosts: Option<ByPolicy<Arc<[String]>>>,
    pub sidecar_mode: Option<ByPolicy<SidecarMode>>,
    pub on_invalid: Option<ByPolicy<OnInvalid>>,
}

impl Effective {
    /// Lays `policy` over what lower-priority policies decided. Everything a policy sets
    /// was compiled into shared values when it loaded: merging copies pointers.
    pub(super) fn merge(&mut self, policy: &Compiled) {
        let name = &policy.name;
        for (pattern, options) in policy.spec.defaults.iter() {
            let merged = self
                .defaults
                .get_mut(pattern)
                .get_or_insert_with(|| by(BTreeMap::new(), name));
            merged.policy = name.clone();
            for (key, value) in options {
                merged.value.insert(key.clone(), by(value.0.clone(), name));
            }
        }
        for pattern in Pattern::ALL {
            if let Some(allowed) = policy.overrides.get(pattern) {
                *self.overrides.get_mut(pattern) = Some(by(allowed.clone(), name));
            }
        }
        for pattern in &policy.spec.enforce {
            *self.enforce.get_mut(*pattern) = Some(name.clone());
        }
        if let Some(images) = &policy.allowed_images {
            self.allowed_images = Some(by(images.clone(), name));
        }
        if let Some(hosts) = &policy.allowed_git_hosts {
            self.allowed_git_hosts = Some(by(hosts.clone(), name));
        }
        if let Some(mode) = policy.spec.sidecar_mode {
            self.sidecar_mode = Some(by(mode, name));
        }
        if let Some(on_invalid) = policy.spec.on_invalid {
            self.on_invalid = Some(by(on_invalid, name));
        }
    }
}

impl Effective {
    /// What a bad value does: `deny` unless a policy says `warn`.
    pub fn on_invalid(&self) -> OnInvalid {
        self.on_invalid
            .as_ref()
            .map_or(OnInvalid::Deny, |o| o.value)
    }

    /// Native sidecars unless a policy says `classic`.
    pub fn sidecar_mode(&self) -> SidecarMode {
        self.sidecar_mode
            .as_ref()
            .map_or(SidecarMode::Native, |m| m.value)
    }
}

/// A setting of policy `name`.
fn by<T>(value: T, name: &Arc<str>) -> ByPolicy<T> {
    ByPolicy {
        value,
        policy: name.clone(),
    }
}

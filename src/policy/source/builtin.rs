//! The policies compiled into the binary: the profile catalog and the default policy, kept
//! as YAML under `policies/` so they read like any other policy.

use crate::policy::{model::types::InjectionPolicy, source::document};

/// `policies/catalog.yaml`: the built-in profiles of every pattern.
pub const CATALOG: &str = include_str!("../../../policies/catalog.yaml");

/// `policies/default.yaml`: the defaults every pod gets unless a policy says otherwise.
pub const DEFAULT: &str = include_str!("../../../policies/default.yaml");

/// The built-in policies, lowest priority first.
pub fn policies() -> Vec<InjectionPolicy> {
    [
        ("policies/catalog.yaml", CATALOG),
        ("policies/default.yaml", DEFAULT),
    ]
    .into_iter()
    .flat_map(|(name, text)| {
        document::parse(name.as_ref(), text)
            .unwrap_or_else(|errors| panic!("built-in {name} is invalid: {errors:?}"))
    })
    .map(|(_, policy)| policy)
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{pattern::Pattern, policy::snapshot::Snapshot};

    #[test]
    fn builtin_policies_compile_without_errors() {
        let (snapshot, errors) = Snapshot::build("tandem.dev", policies(), None);
        assert!(errors.is_empty(), "{errors:#?}");
        for pattern in Pattern::ALL {
            assert!(
                !snapshot.profiles.get(pattern).is_empty(),
                "no built-in profile for {pattern}"
            );
            if let Some(default) = pattern.default_profile() {
                assert!(
                    snapshot.profiles.get(pattern).contains_key(default),
                    "{pattern}'s default profile {default} is not in the catalog"
                );
            }
        }
    }

    #[test]
    fn metrics_profiles_named_in_the_product_contract_exist() {
        let (snapshot, _) = Snapshot::build("tandem.dev", policies(), None);
        for name in ["redis", "nginx", "postgres", "mysql", "statsd", "json"] {
            let entry = snapshot.profiles.get(Pattern::MetricsAdapter).get(name);
            let profile = &entry
                .unwrap_or_else(|| panic!("no metrics-adapter profile {name}"))
                .profile;
            assert!(
                profile.options.contains_key("port"),
                "{name} has no default port"
            );
            assert!(
                profile.options.contains_key("target"),
                "{name} has no default target"
            );
        }
        for name in ["tcp", "http"] {
            assert!(
                snapshot
                    .profiles
                    .get(Pattern::Ambassador)
                    .contains_key(name)
            );
        }
    }
}

//! `InjectionPolicy` (`tandem.dev/v1alpha1`, cluster-scoped): the document platform teams
//! write, read from YAML files and from the API server alike. The CRD is derived from these
//! types (`tandem crd`); the chart ships its output.

use std::{borrow::Cow, collections::BTreeMap, fmt};

use k8s_openapi::api::core::v1::{ContainerPort, EnvVar, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::pattern::Pattern;

/// Cluster-wide defaults and limits for tandem's injections.
#[derive(CustomResource, Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[kube(
    group = "tandem.dev",
    version = "v1alpha1",
    kind = "InjectionPolicy",
    plural = "injectionpolicies",
    shortname = "injpol",
    category = "tandem",
    doc = "Cluster-wide defaults and limits for the helper containers tandem injects into pods.",
    printcolumn(name = "Priority", type_ = "integer", json_path = ".spec.priority"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionPolicySpec {
    /// Policies apply in ascending priority; for each setting the highest priority that sets
    /// it wins. Ties are broken by name.
    #[serde(default)]
    pub priority: i32,

    /// Which pods the policy applies to. Both selectors are optional; empty matches all.
    #[serde(default, skip_serializing_if = "PolicySelector::is_empty")]
    pub selector: PolicySelector,

    /// Patterns switched on for matching pods without any annotation, with option values
    /// (`profile` picks the profile).
    #[serde(default, skip_serializing_if = "PatternMap::is_empty")]
    pub defaults: PatternMap<BTreeMap<String, OptionValue>>,

    /// Named container templates per pattern, usable as `tandem.dev/<pattern>: <name>`. A
    /// profile replaces a built-in or lower-priority one of the same name.
    #[serde(default, skip_serializing_if = "PatternMap::is_empty")]
    pub profiles: PatternMap<BTreeMap<String, Profile>>,

    /// The options pods (and namespaces) may set per pattern; `profile` lets them pick a
    /// profile. A pattern not listed here may be tuned freely.
    #[serde(default, skip_serializing_if = "PatternMap::is_empty")]
    pub overrides: PatternMap<Vec<String>>,

    /// Patterns a pod cannot opt out of, neither with `"false"` nor with `tandem.dev/inject`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enforce: Vec<Pattern>,

    /// Image globs (`cr.fluentbit.io/fluent/*`) injected containers may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_images: Option<Vec<String>>,

    /// Hosts git-clone may clone from (`github.com`, `*.example.com`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_git_hosts: Option<Vec<String>>,

    /// `native` (init containers with restartPolicy Always, Kubernetes 1.29+) or `classic`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sidecar_mode: Option<SidecarMode>,

    /// `deny` the pod on a bad value, or `warn`: admit it without that pattern.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_invalid: Option<OnInvalid>,
}

/// The pods a policy applies to.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySelector {
    /// Labels of the pod's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = selector_rules()))]
    pub namespaces: Option<LabelSelector>,
    /// Labels of the pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = selector_rules()))]
    pub pods: Option<LabelSelector>,
}

/// What the OpenAPI schema of a label selector cannot say, checked by the API server (CEL),
/// so that `kubectl apply` refuses such a policy instead of tandem skipping it later.
fn selector_rules() -> serde_json::Value {
    serde_json::json!([
        {
            "rule": "!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn', 'Exists', 'DoesNotExist'])",
            "message": "matchExpressions[].operator must be In, NotIn, Exists or DoesNotExist",
        },
        {
            "rule": "!has(self.matchExpressions) || self.matchExpressions.all(e, e.operator in ['In', 'NotIn'] ? (has(e.values) && size(e.values) > 0) : (!has(e.values) || size(e.values) == 0))",
            "message": "matchExpressions[]: In and NotIn need values, Exists and DoesNotExist take none",
        },
    ])
}

impl PolicySelector {
    fn is_empty(&self) -> bool {
        self.namespaces.is_none() && self.pods.is_none()
    }
}

/// One optional entry per pattern, under the names users type.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PatternMap<T> {
    #[serde(
        rename = "log-shipper",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub log_shipper: Option<T>,
    #[serde(
        rename = "metrics-adapter",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub metrics_adapter: Option<T>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ambassador: Option<T>,
    #[serde(rename = "git-clone", default, skip_serializing_if = "Option::is_none")]
    pub git_clone: Option<T>,
}

impl<T> Default for PatternMap<T> {
    fn default() -> Self {
        PatternMap {
            log_shipper: None,
            metrics_adapter: None,
            ambassador: None,
            git_clone: None,
        }
    }
}

impl<T> PatternMap<T> {
    pub fn get(&self, pattern: Pattern) -> Option<&T> {
        match pattern {
            Pattern::LogShipper => self.log_shipper.as_ref(),
            Pattern::MetricsAdapter => self.metrics_adapter.as_ref(),
            Pattern::Ambassador => self.ambassador.as_ref(),
            Pattern::GitClone => self.git_clone.as_ref(),
        }
    }

    /// The entries that are set, in [`Pattern::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Pattern, &T)> {
        Pattern::ALL
            .into_iter()
            .filter_map(|pattern| Some((pattern, self.get(pattern)?)))
    }

    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }
}

/// A named container template for one pattern. `{{option}}` in `command`, `args` and env
/// values is replaced by the option's value.
#[derive(Clone, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    /// What the profile does, shown by `tandem explain`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub image: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// Ports besides the ones the pattern adds itself (the metrics port, the health port).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ContainerPort>,
    /// Must carry cpu and memory requests and a memory limit.
    pub resources: ResourceRequirements,
    /// Pod annotations the profile sets unless the pod has them (values take
    /// placeholders), such as `prometheus.io/param_target` for a probing exporter.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Options this profile adds to its pattern's, with their defaults; also defaults for
    /// the pattern's own options (`port`, `target`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, OptionValue>,
    /// The non-root user the image runs as (default 65532).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_user: Option<i64>,
    /// The group (default: the user).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as_group: Option<i64>,
}

/// `native` or `classic` sidecars.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum SidecarMode {
    /// Init containers with `restartPolicy: Always` (Kubernetes 1.29+).
    #[default]
    Native,
    /// Plain containers appended to `containers`, for older clusters.
    Classic,
}

/// What a bad value does to the pod.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum OnInvalid {
    /// Deny the pod with a message naming the key, the value and what is accepted.
    #[default]
    Deny,
    /// Admit the pod without that pattern, the reason in the response's warnings.
    Warn,
}

/// An option value. Written as a string or a number in YAML (`port: 9121`), kept as the
/// string an annotation would carry.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct OptionValue(pub String);

impl fmt::Display for OptionValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OptionValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = OptionValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E>(self, v: &str) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
            fn visit_bool<E>(self, v: bool) -> Result<OptionValue, E> {
                Ok(OptionValue(v.to_string()))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

impl JsonSchema for OptionValue {
    fn schema_name() -> Cow<'static, str> {
        "OptionValue".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        // The structural-schema way to say "string or integer"; the API server supplies
        // the anyOf itself.
        schemars::json_schema!({
            "x-kubernetes-int-or-string": true,
        })
    }
}

impl From<&str> for OptionValue {
    fn from(value: &str) -> Self {
        OptionValue(value.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn the_product_example_parses() {
        let yaml = r#"
apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata:
  name: payments-logging
spec:
  priority: 100
  selector:
    namespaces: {matchLabels: {team: payments}}
    pods: {matchExpressions: [{key: app, operator: Exists}]}
  defaults:
    log-shipper: {profile: fluent-bit, path: /var/log/app}
  enforce: [log-shipper]
  overrides:
    log-shipper: [path, containers]
  allowedImages: ["cr.fluentbit.io/fluent/*", "registry.k8s.io/git-sync/*"]
  allowedGitHosts: [github.com, gitlab.example.com]
  sidecarMode: native
  onInvalid: deny
  profiles:
    log-shipper:
      fluent-bit-loki:
        image: cr.fluentbit.io/fluent/fluent-bit:3.2
        args: ["-i", "tail", "-p", "path={{path}}/*.log", "-o", "loki", "-p", "host=loki.logging"]
        resources: {requests: {cpu: 20m, memory: 32Mi}, limits: {memory: 64Mi}}
        options: {port: 3100}
"#;
        let policy: InjectionPolicy = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(policy.spec.priority, 100);
        assert_eq!(policy.spec.enforce, vec![Pattern::LogShipper]);
        let defaults = policy.spec.defaults.get(Pattern::LogShipper).unwrap();
        assert_eq!(defaults["path"], OptionValue::from("/var/log/app"));
        let profile = &policy.spec.profiles.log_shipper.as_ref().unwrap()["fluent-bit-loki"];
        assert_eq!(profile.options["port"], OptionValue::from("3100"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let yaml = "apiVersion: tandem.dev/v1alpha1\nkind: InjectionPolicy\nmetadata: {name: x}\nspec: {prority: 1}\n";
        let error = serde_saphyr::from_str::<InjectionPolicy>(yaml).unwrap_err();
        assert!(error.to_string().contains("prority"), "{error}");
    }

    #[test]
    fn crd_is_cluster_scoped_and_structural_for_option_values() {
        let crd = InjectionPolicy::crd();
        assert_eq!(crd.spec.scope, "Cluster");
        assert_eq!(crd.spec.names.plural, "injectionpolicies");
        let json = serde_json::to_string(&crd).unwrap();
        assert!(json.contains("x-kubernetes-int-or-string"));
    }
}

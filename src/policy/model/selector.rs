//! Kubernetes label selectors (`matchLabels`, `matchExpressions`), checked once when a policy
//! is loaded and then matched against namespace and pod labels.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Something labels can be looked up in.
pub trait Labels {
    fn label(&self, key: &str) -> Option<&str>;
}

impl<K: AsRef<str>, V: AsRef<str>> Labels for [(K, V)] {
    fn label(&self, key: &str) -> Option<&str> {
        self.iter()
            .find(|(k, _)| k.as_ref() == key)
            .map(|(_, v)| v.as_ref())
    }
}

impl Labels for std::collections::BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A selector the API server would reject: where in it, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SelectorError {
    /// The path below the selector, such as `matchExpressions[1].operator`.
    pub field: String,
    pub message: String,
}

/// A compiled selector; the empty selector matches everything, as in Kubernetes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selector {
    requirements: Vec<Requirement>,
}

impl Selector {
    /// Checks operators and value lists the way the API server does for `LabelSelector`.
    pub fn compile(selector: Option<&LabelSelector>) -> Result<Selector, SelectorError> {
        let mut requirements = Vec::new();
        let Some(selector) = selector else {
            return Ok(Selector { requirements });
        };
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for (index, expression) in selector.match_expressions.iter().flatten().enumerate() {
            let error = |field: &str, message: String| SelectorError {
                field: format!("matchExpressions[{index}].{field}"),
                message,
            };
            let key = expression.key.clone();
            let values = expression.values.clone().unwrap_or_default();
            let requirement = match expression.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Err(error(
                        "operator",
                        format!(
                            "matchExpressions key {key:?}: operator {} needs values",
                            expression.operator
                        ),
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Err(error(
                        "values",
                        format!(
                            "matchExpressions key {key:?}: operator {} takes no values",
                            expression.operator
                        ),
                    ));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Err(error(
                        "operator",
                        format!(
                            "matchExpressions key {key:?}: operator {other:?} is not In, NotIn, Exists or DoesNotExist"
                        ),
                    ));
                }
            };
            requirements.push(requirement);
        }
        Ok(Selector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &(impl Labels + ?Sized)) -> bool {
        self.requirements
            .iter()
            .all(|requirement| match requirement {
                Requirement::In(key, values) => labels
                    .label(key)
                    .is_some_and(|v| values.iter().any(|w| w == v)),
                Requirement::NotIn(key, values) => labels
                    .label(key)
                    .is_none_or(|v| values.iter().all(|w| w != v)),
                Requirement::Exists(key) => labels.label(key).is_some(),
                Requirement::DoesNotExist(key) => labels.label(key).is_none(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    fn selector(yaml: &str) -> Selector {
        let parsed: LabelSelector = serde_saphyr::from_str(yaml).unwrap();
        Selector::compile(Some(&parsed)).unwrap()
    }

    #[rstest]
    #[case("{}", &[], true)]
    #[case("{matchLabels: {team: payments}}", &[("team", "payments")], true)]
    #[case("{matchLabels: {team: payments}}", &[("team", "search")], false)]
    #[case("{matchLabels: {team: payments}}", &[], false)]
    #[case("{matchExpressions: [{key: app, operator: Exists}]}", &[("app", "x")], true)]
    #[case("{matchExpressions: [{key: app, operator: Exists}]}", &[], false)]
    #[case("{matchExpressions: [{key: app, operator: DoesNotExist}]}", &[], true)]
    #[case("{matchExpressions: [{key: tier, operator: In, values: [web, api]}]}", &[("tier", "api")], true)]
    #[case("{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}", &[], true)]
    #[case("{matchExpressions: [{key: tier, operator: NotIn, values: [web]}]}", &[("tier", "web")], false)]
    #[case("{matchLabels: {a: '1'}, matchExpressions: [{key: b, operator: Exists}]}", &[("a", "1")], false)]
    fn matching(#[case] yaml: &str, #[case] labels: &[(&str, &str)], #[case] expected: bool) {
        assert_eq!(selector(yaml).matches(labels), expected);
    }

    #[rstest]
    #[case(
        "{matchExpressions: [{key: a, operator: Equals, values: [x]}]}",
        "matchExpressions[0].operator",
        "operator \"Equals\""
    )]
    #[case(
        "{matchExpressions: [{key: a, operator: Exists}, {key: b, operator: In}]}",
        "matchExpressions[1].operator",
        "needs values"
    )]
    #[case(
        "{matchExpressions: [{key: a, operator: Exists, values: [x]}]}",
        "matchExpressions[0].values",
        "takes no values"
    )]
    fn bad_selectors(#[case] yaml: &str, #[case] field: &str, #[case] problem: &str) {
        let parsed: LabelSelector = serde_saphyr::from_str(yaml).unwrap();
        let error = Selector::compile(Some(&parsed)).unwrap_err();
        assert_eq!(error.field, field);
        assert!(error.message.contains(problem), "{error}");
    }
}

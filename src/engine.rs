//! The mutation of one pod, from its JSON to a patch: the pipeline the webhook, `inject`
//! and `explain` share.
//!
//! ```text
//! annotations::parse → policy::resolve → inject::plan → patch::render
//! ```

use crate::{
    annotations::Annotations,
    inject::{self, Outcome},
    invalid::{Invalid, Source},
    patch,
    pattern::Pattern,
    pod::{Pairs, Pod},
    policy::{
        resolve::{self, PodInput, Resolution},
        snapshot::Snapshot,
    },
};

/// Everything decided about one pod: what resolution chose and what the injectors planned.
#[derive(Debug)]
pub struct Evaluation {
    pub resolution: Resolution,
    pub outcome: Outcome,
}

impl Evaluation {
    /// The patterns that will be added.
    pub fn patterns(&self) -> &[Pattern] {
        &self.outcome.plan.patterns
    }

    /// The message a denied pod gets: every problem, in order.
    pub fn denial(&self) -> Option<String> {
        (!self.outcome.denied.is_empty()).then(|| join(&self.outcome.denied))
    }

    /// One warning per pattern dropped under `onInvalid: warn`.
    pub fn warnings(&self) -> Vec<String> {
        self.outcome
            .warned
            .iter()
            .map(|invalid| match invalid.pattern {
                Some(pattern) => format!("tandem skipped {pattern}: {invalid}"),
                None => format!("tandem: {invalid}"),
            })
            .collect()
    }
}

/// Applies a patch from [`patch`] to `document` (for `inject` and tests; the API server
/// applies the webhook's itself).
pub fn apply(document: &mut serde_json::Value, patch: &[u8]) -> Result<(), String> {
    let patch: json_patch::Patch = serde_json::from_slice(patch).map_err(|e| e.to_string())?;
    json_patch::patch(document, &patch).map_err(|e| e.to_string())
}

/// Evaluates `pod`, created in `namespace`, under `snapshot`.
pub fn evaluate(snapshot: &Snapshot, namespace: &str, pod: &Pod<'_>) -> Evaluation {
    let empty = Pairs::default();
    let annotations = Annotations::parse(
        &snapshot.prefix,
        pod.metadata.annotations.iter().flat_map(Pairs::iter),
        |key| Source::Pod {
            key: key.to_string(),
        },
    );
    let present = inject::present(pod);
    let input = PodInput {
        namespace,
        labels: pod.metadata.labels.as_ref().unwrap_or(&empty),
        annotations: &annotations,
        present: &present,
    };
    let resolution = resolve::resolve(snapshot, &input);
    let outcome = inject::plan(pod, &snapshot.prefix, &resolution);
    Evaluation {
        resolution,
        outcome,
    }
}

/// The JSON patch for an evaluated pod (or pod template); `None` when denied, when there is
/// nothing to add, or when it has no containers (so perhaps no `spec` to add into: the API
/// server refuses such a pod itself, saying why).
pub fn patch(pod: &Pod<'_>, evaluation: &Evaluation) -> Option<Vec<u8>> {
    let plan = &evaluation.outcome.plan;
    (evaluation.outcome.denied.is_empty() && !plan.is_empty() && !pod.spec.containers.is_empty())
        .then(|| patch::render(pod, plan))
}

fn join(problems: &[Invalid]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

//! AdmissionReview in, AdmissionReview out.
//!
//! tandem reads only what it needs from the review (uid, kind, operation, namespace and the
//! pod), borrowing from the request bytes, and writes the response with the patch in
//! base64 as the API server expects. kube-core's admission types would deserialize the whole
//! review (userInfo, oldObject, options) and serialize the patch as an array of numbers
//! (3.5× its size), so they are not used here; the wire format is the one of
//! `k8s.io/api/admission/v1`, tested against fixtures as the API server sends them.

use std::borrow::Cow;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    engine::{self, Evaluation},
    invalid::Reason,
    pattern::Pattern,
    pod::Pod,
    policy::snapshot::Snapshot,
};

/// The only version the API server sends when the webhook lists `admissionReviewVersions: [v1]`.
pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// A body that is not an AdmissionReview tandem can answer: HTTP 400.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BadReview {
    #[error("the body is not valid JSON: {0}")]
    Json(String),
    #[error(
        "the body is not an AdmissionReview: {0}; accepted: an {API_VERSION} AdmissionReview whose request has a uid, kind, operation and object"
    )]
    Shape(String),
    #[error("kind {0:?} is not an AdmissionReview; accepted: kind AdmissionReview")]
    Kind(String),
    #[error("apiVersion {0:?} is not supported; accepted: {API_VERSION}")]
    ApiVersion(String),
    #[error(
        "the AdmissionReview has no request; accepted: a review with a request, as the API server sends"
    )]
    NoRequest,
}

#[derive(Deserialize)]
struct ReviewIn<'a> {
    #[serde(borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<RequestIn<'a>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn<'a> {
    #[serde(borrow)]
    uid: Cow<'a, str>,
    #[serde(borrow)]
    kind: Option<Gvk<'a>>,
    #[serde(borrow, default)]
    sub_resource: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    operation: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    object: Option<&'a RawValue>,
    #[serde(default)]
    dry_run: Option<bool>,
}

#[derive(Deserialize)]
struct Gvk<'a> {
    #[serde(borrow, default)]
    group: Cow<'a, str>,
    #[serde(borrow)]
    kind: Cow<'a, str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<StatusOut>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    warnings: &'a [String],
}

/// A `metav1.Status` as the API server reads it from a denial.
#[derive(Serialize)]
struct StatusOut {
    metadata: Empty,
    status: &'static str,
    message: String,
    reason: &'static str,
    code: u16,
}

#[derive(Serialize)]
struct Empty {}

/// How a review ended, for the log line and the metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Allowed with a patch.
    Patched,
    /// Allowed, nothing to add (no pattern applies, or all were already added).
    Unchanged,
    /// Denied with a message.
    Denied,
    /// Not a pod CREATE: allowed without looking.
    Skipped,
}

impl Verdict {
    pub const ALL: [Verdict; 4] = [
        Verdict::Patched,
        Verdict::Unchanged,
        Verdict::Denied,
        Verdict::Skipped,
    ];

    pub const fn label(self) -> &'static str {
        match self {
            Verdict::Patched => "patched",
            Verdict::Unchanged => "unchanged",
            Verdict::Denied => "denied",
            Verdict::Skipped => "skipped",
        }
    }
}

/// A review answered: the response body and what to log and count about it.
#[derive(Debug)]
pub struct Reviewed {
    pub body: Vec<u8>,
    pub uid: String,
    pub namespace: String,
    /// The pod's name, or `generateName*`.
    pub name: String,
    pub verdict: Verdict,
    pub patterns: Vec<Pattern>,
    pub reasons: Vec<Reason>,
    pub warnings: usize,
    pub patch_bytes: usize,
    pub dry_run: bool,
}

/// Answers one AdmissionReview body under `snapshot`.
pub fn review(body: &[u8], snapshot: &Snapshot) -> Result<Reviewed, BadReview> {
    let review: ReviewIn<'_> = serde_json::from_slice(body).map_err(|e| match e.classify() {
        // Well-formed JSON of another shape: `[]`, a request without a uid, a number
        // where a string belongs.
        serde_json::error::Category::Data => BadReview::Shape(e.to_string()),
        _ => BadReview::Json(e.to_string()),
    })?;
    match review.kind.as_deref() {
        Some(KIND) => {}
        other => return Err(BadReview::Kind(other.unwrap_or_default().to_string())),
    }
    match review.api_version.as_deref() {
        Some(API_VERSION) => {}
        other => return Err(BadReview::ApiVersion(other.unwrap_or_default().to_string())),
    }
    let request = review.request.ok_or(BadReview::NoRequest)?;
    let namespace = request.namespace.as_deref().unwrap_or_default();
    let mut reviewed = Reviewed {
        body: Vec::new(),
        uid: request.uid.to_string(),
        namespace: namespace.to_string(),
        name: String::new(),
        verdict: Verdict::Skipped,
        patterns: Vec::new(),
        reasons: Vec::new(),
        warnings: 0,
        patch_bytes: 0,
        dry_run: request.dry_run.unwrap_or(false),
    };

    let is_pod = request
        .kind
        .as_ref()
        .is_some_and(|gvk| gvk.group.is_empty() && gvk.kind == "Pod");
    let is_create = request.operation.as_deref() == Some("CREATE");
    let object = match request.object {
        Some(object) if is_pod && is_create && request.sub_resource.is_none() => object,
        _ => {
            reviewed.body = respond(&request.uid, Answer::Allow(None), &[]);
            return Ok(reviewed);
        }
    };

    let pod = match Pod::parse(object.get()) {
        Ok(pod) => pod,
        Err(error) => {
            reviewed.verdict = Verdict::Denied;
            reviewed.reasons.push(Reason::InvalidValue);
            let message = format!(
                "tandem could not read the pod: {error}; accepted: a Pod as the API server sends it"
            );
            reviewed.body = respond(&request.uid, Answer::Deny(message), &[]);
            return Ok(reviewed);
        }
    };
    reviewed.name = pod.display_name();
    let evaluation = engine::evaluate(snapshot, namespace, &pod);
    let warnings = evaluation.warnings();
    reviewed.warnings = warnings.len();
    reviewed.reasons = evaluation
        .outcome
        .denied
        .iter()
        .chain(&evaluation.outcome.warned)
        .map(|invalid| invalid.reason)
        .collect();
    reviewed.body = answer(&request.uid, &pod, &evaluation, &warnings, &mut reviewed);
    Ok(reviewed)
}

fn answer(
    uid: &str,
    pod: &Pod<'_>,
    evaluation: &Evaluation,
    warnings: &[String],
    reviewed: &mut Reviewed,
) -> Vec<u8> {
    if let Some(message) = evaluation.denial() {
        reviewed.verdict = Verdict::Denied;
        return respond(uid, Answer::Deny(message), warnings);
    }
    match engine::patch(pod, evaluation) {
        Some(patch) => {
            let bytes = serde_json::to_vec(&patch).expect("a JSON patch serializes");
            reviewed.verdict = Verdict::Patched;
            reviewed.patterns = evaluation.patterns().to_vec();
            reviewed.patch_bytes = bytes.len();
            respond(uid, Answer::Allow(Some(&bytes)), warnings)
        }
        None => {
            reviewed.verdict = Verdict::Unchanged;
            respond(uid, Answer::Allow(None), warnings)
        }
    }
}

enum Answer<'a> {
    Allow(Option<&'a [u8]>),
    Deny(String),
}

fn respond(uid: &str, answer: Answer<'_>, warnings: &[String]) -> Vec<u8> {
    let response = match answer {
        Answer::Allow(patch) => ResponseOut {
            uid,
            allowed: true,
            patch_type: patch.map(|_| "JSONPatch"),
            patch: patch.map(|bytes| base64::engine::general_purpose::STANDARD.encode(bytes)),
            status: None,
            warnings,
        },
        Answer::Deny(message) => ResponseOut {
            uid,
            allowed: false,
            patch_type: None,
            patch: None,
            status: Some(StatusOut {
                metadata: Empty {},
                status: "Failure",
                message,
                reason: "BadRequest",
                code: 400,
            }),
            warnings,
        },
    };
    serde_json::to_vec(&ReviewOut {
        api_version: API_VERSION,
        kind: KIND,
        response,
    })
    .expect("a review response serializes")
}

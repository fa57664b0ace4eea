//! AdmissionReview in, AdmissionReview out.
//!
//! tandem reads only what it needs from the review (uid, kind, operation, namespace and the
//! pod), borrowing from the request bytes, and writes the response with the patch in
//! base64 as the API server expects. kube-core's admission types would deserialize the whole
//! review (userInfo, oldObject, options) and serialize the patch as an array of numbers
//! (3.5× its size), so they are not used here; the wire format is the one of
//! `k8s.io/api/admission/v1`, tested against fixtures as the API server sends them.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::{
    engine::{self, Evaluation},
    invalid::Reason,
    pattern::Pattern,
    pod::{Identity, Pod},
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

/// The review, with the object read as `O`: straight into a [`Pod`] on the fast path, kept
/// raw when that fails (an object of another kind that does not fit a pod's shape).
#[derive(Deserialize)]
#[serde(bound(deserialize = "O: Deserialize<'de>"))]
struct ReviewIn<'a, O> {
    #[serde(borrow, rename = "apiVersion")]
    api_version: Option<Cow<'a, str>>,
    #[serde(borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    request: Option<RequestIn<'a, O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", bound(deserialize = "O: Deserialize<'de>"))]
struct RequestIn<'a, O> {
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
    #[serde(default = "none")]
    object: Option<O>,
    #[serde(default)]
    dry_run: Option<bool>,
}

fn none<O>() -> Option<O> {
    None
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
    // Every string kept from the review is borrowed from the body, and read from bytes the
    // parser checks each one is UTF-8 (a hundred-odd checks per pod). One check of the
    // whole body is cheaper; a body that fails it is read as bytes, as the parser would.
    let body = match std::str::from_utf8(body) {
        Ok(text) => Body::Text(text),
        Err(_) => Body::Bytes(body),
    };
    // Most pods carry nothing of ours. When the prefix appears nowhere in the body and
    // nothing in the pod's namespace switches a pattern on without annotations, the pod is
    // not read: the review is checked whole (it is still parsed, so a broken body is still
    // a 400), and only the pod's name is kept for the log line.
    if !snapshot.mentions_prefix(body.bytes())
        && let Ok(review) = body.read::<ReviewIn<'_, Identity<'_>>>()
    {
        let request = accept(review.api_version, review.kind, review.request)?;
        let namespace = snapshot.namespace(request.namespace.as_deref().unwrap_or_default());
        let labels = request.object.as_ref().map(Identity::labels);
        if !labels.is_some_and(|labels| snapshot.switches_on(&namespace, labels)) {
            return Ok(decide(request, snapshot, |identity| {
                Ok(Read::Unannotated(identity))
            }));
        }
    }
    // One pass over the body reads the review and the pod together. Only when that fails
    // is it read again, with the object kept raw, to tell a bad review from an object that
    // is not shaped like a pod.
    match body.read::<ReviewIn<'_, Pod<'_>>>() {
        Ok(review) => {
            let request = accept(review.api_version, review.kind, review.request)?;
            Ok(decide(request, snapshot, |pod| Ok(Read::Pod(pod))))
        }
        Err(_) => {
            let review: ReviewIn<'_, &RawValue> = body.read().map_err(|e| match e.classify() {
                // Well-formed JSON of another shape: `[]`, a request without a uid, a
                // number where a string belongs.
                serde_json::error::Category::Data => BadReview::Shape(e.to_string()),
                _ => BadReview::Json(e.to_string()),
            })?;
            let request = accept(review.api_version, review.kind, review.request)?;
            Ok(decide(request, snapshot, |raw: &RawValue| {
                Pod::parse(raw.get()).map(Read::Pod)
            }))
        }
    }
}

/// The request's uid, if the body is JSON with one: for answering a review that could not
/// be answered otherwise (a panic) with the uid it asked about.
pub fn uid(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Review<'a> {
        #[serde(borrow)]
        request: Option<Request<'a>>,
    }
    #[derive(Deserialize)]
    struct Request<'a> {
        #[serde(borrow)]
        uid: Option<Cow<'a, str>>,
    }
    let review: Review<'_> = serde_json::from_slice(body).ok()?;
    Some(review.request?.uid?.into_owned())
}

/// A review body: text when it is valid UTF-8 (as the API server sends), else bytes.
#[derive(Clone, Copy)]
enum Body<'a> {
    Text(&'a str),
    Bytes(&'a [u8]),
}

impl<'a> Body<'a> {
    fn bytes(self) -> &'a [u8] {
        match self {
            Body::Text(text) => text.as_bytes(),
            Body::Bytes(bytes) => bytes,
        }
    }

    /// Parses the body as `T`; the same parser either way, only the UTF-8 checks differ.
    fn read<T: Deserialize<'a>>(self) -> Result<T, serde_json::Error> {
        match self {
            Body::Text(text) => serde_json::from_str(text),
            Body::Bytes(bytes) => serde_json::from_slice(bytes),
        }
    }
}

/// Checks the review's kind and version, and that it has a request.
fn accept<'a, O>(
    api_version: Option<Cow<'_, str>>,
    kind: Option<Cow<'_, str>>,
    request: Option<RequestIn<'a, O>>,
) -> Result<RequestIn<'a, O>, BadReview> {
    match kind.as_deref() {
        Some(KIND) => {}
        other => return Err(BadReview::Kind(other.unwrap_or_default().to_string())),
    }
    match api_version.as_deref() {
        Some(API_VERSION) => {}
        other => return Err(BadReview::ApiVersion(other.unwrap_or_default().to_string())),
    }
    request.ok_or(BadReview::NoRequest)
}

/// What was read of the object of a pod CREATE.
enum Read<'a> {
    Pod(Pod<'a>),
    /// A pod nothing can apply to: only its names were read.
    Unannotated(Identity<'a>),
}

/// Answers a request whose object `read` turns into a pod.
fn decide<'a, O>(
    request: RequestIn<'a, O>,
    snapshot: &Snapshot,
    read: impl FnOnce(O) -> Result<Read<'a>, serde_json::Error>,
) -> Reviewed {
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
            return reviewed;
        }
    };

    let pod = match read(object) {
        Ok(Read::Pod(pod)) => pod,
        Ok(Read::Unannotated(identity)) => {
            reviewed.name = identity.display_name();
            reviewed.verdict = Verdict::Unchanged;
            reviewed.body = respond(&request.uid, Answer::Allow(None), &[]);
            return reviewed;
        }
        Err(error) => {
            reviewed.verdict = Verdict::Denied;
            reviewed.reasons.push(Reason::InvalidValue);
            let message = format!(
                "tandem could not read the pod: {error}; accepted: a Pod as the API server sends it"
            );
            reviewed.body = respond(&request.uid, Answer::Deny(message), &[]);
            return reviewed;
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
    reviewed
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
    // A pod the API server could not store (no name, or no containers; perhaps no
    // `metadata` or `spec` to add into) is left for it to refuse, with its own message.
    match engine::patch(pod, evaluation).filter(|_| pod.is_storable()) {
        Some(bytes) => {
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
        Answer::Allow(Some(patch)) if warnings.is_empty() => return patched(uid, patch),
        Answer::Allow(patch) => ResponseOut {
            uid,
            allowed: true,
            patch_type: patch.map(|_| "JSONPatch"),
            patch: patch.map(|bytes| base64_simd::STANDARD.encode_to_string(bytes)),
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

/// The common answer, written directly: allowed, with a patch. Base64 needs no JSON
/// escaping, so the encoder (SIMD, chosen for the CPU at run time) writes into the
/// response as it is, instead of the serializer scanning kilobytes of it for quotes and
/// backslashes.
fn patched(uid: &str, patch: &[u8]) -> Vec<u8> {
    let base64 = base64_simd::STANDARD;
    let encoded = base64.encoded_length(patch.len());
    let mut out = Vec::with_capacity(160 + uid.len() + encoded);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    serde_json::to_writer(&mut out, uid).expect("a string serializes");
    out.extend_from_slice(br#","allowed":true,"patchType":"JSONPatch","patch":""#);
    let start = out.len();
    out.resize(start + encoded, 0);
    let written = base64
        .encode(patch, base64_simd::Out::from_slice(&mut out[start..]))
        .len();
    out.truncate(start + written);
    out.extend_from_slice(br#""}}"#);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_answer_is_the_serialized_one() {
        let patch = br#"[{"op":"add","path":"/metadata/annotations","value":{"a":"\"q\""}}]"#;
        let uid = "705ab4f5-\"6393\"";
        let direct: serde_json::Value = serde_json::from_slice(&patched(uid, patch)).unwrap();
        let general = serde_json::to_vec(&ReviewOut {
            api_version: API_VERSION,
            kind: KIND,
            response: ResponseOut {
                uid,
                allowed: true,
                patch_type: Some("JSONPatch"),
                patch: Some(base64_simd::STANDARD.encode_to_string(patch)),
                status: None,
                warnings: &[],
            },
        })
        .unwrap();
        let general: serde_json::Value = serde_json::from_slice(&general).unwrap();
        assert_eq!(direct, general);
    }
}

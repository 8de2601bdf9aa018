//! AdmissionReview in, AdmissionReview out: the one code path behind `POST /validate`,
//! `POST /mutate` and `sts-guard review`.

use crate::config::Config;
use crate::engine::{Decision, Endpoint, evaluate};
use crate::inventory::Inventory;
use kube_core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use kube_core::{DynamicObject, Status};

/// A body that is not an AdmissionReview (answered with HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadReview(pub String);

impl BadReview {
    /// The reason, with what it quotes from the body cut short: a client must not be able to
    /// have a megabyte of its own input echoed into the response and the log.
    fn new(reason: String) -> BadReview {
        BadReview(crate::model::clip(&reason, MAX_ECHOED))
    }
}

/// The most characters of a reason that quotes the body.
const MAX_ECHOED: usize = 512;

/// What the server logs and counts for one review.
pub struct Reviewed {
    pub uid: String,
    pub kind: String,
    pub operation: String,
    pub namespace: String,
    pub name: String,
    pub user: String,
    pub decision: Decision,
    /// The serialized response AdmissionReview.
    pub body: Vec<u8>,
}

/// Decodes an AdmissionReview, evaluates it and encodes the response.
pub fn review(
    body: &[u8],
    inventory: &dyn Inventory,
    config: &Config,
    endpoint: Endpoint,
) -> Result<Reviewed, BadReview> {
    let request = decode(body)?;
    let decision = evaluate(&request, inventory, config, endpoint);
    encode(&request, decision)
}

/// Reads an AdmissionReview body into its request.
pub fn decode(body: &[u8]) -> Result<AdmissionRequest<DynamicObject>, BadReview> {
    let mut value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| BadReview::new(format!("body is not an AdmissionReview: {e}")))?;
    // The objects are decoded apart from the envelope: kube's types decode them through
    // serde's `flatten` buffering, which costs as much again as the parse itself.
    let (object, old_object) = match value.get_mut("request").and_then(|r| r.as_object_mut()) {
        Some(request) => (request.remove("object"), request.remove("oldObject")),
        None => (None, None),
    };
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(value)
        .map_err(|e| BadReview::new(format!("body is not an AdmissionReview: {e}")))?;
    if !matches!(
        review.types.api_version.as_str(),
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    ) || review.types.kind != "AdmissionReview"
    {
        return Err(BadReview::new(format!(
            "expected kind AdmissionReview of admission.k8s.io/v1, got {:?} of {:?}",
            review.types.kind, review.types.api_version
        )));
    }
    let mut request: AdmissionRequest<DynamicObject> = review
        .try_into()
        .map_err(|_| BadReview("AdmissionReview has no request".into()))?;
    request.object = decode_object(object, "request.object")?;
    request.old_object = decode_object(old_object, "request.oldObject")?;
    if request.uid.is_empty() {
        return Err(BadReview("request.uid is empty".into()));
    }
    Ok(request)
}

/// The answer to a review the server will not evaluate: a denial with `message` and code 413,
/// echoing the uid. Only the envelope is read (the objects are skipped, never built).
pub fn refuse_unevaluated(body: &[u8], message: &str) -> Result<Vec<u8>, BadReview> {
    #[derive(serde::Deserialize)]
    struct Envelope {
        request: Option<EnvelopeRequest>,
    }
    #[derive(serde::Deserialize)]
    struct EnvelopeRequest {
        #[serde(default)]
        uid: String,
    }
    let envelope: Envelope = serde_json::from_slice(body)
        .map_err(|e| BadReview::new(format!("body is not an AdmissionReview: {e}")))?;
    let uid = envelope
        .request
        .map(|r| r.uid)
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| BadReview("AdmissionReview has no request.uid".into()))?;
    let review = serde_json::json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {
            "uid": uid,
            "allowed": false,
            "status": {"status": "Failure", "code": 413, "reason": "RequestEntityTooLarge", "message": message},
        },
    });
    serde_json::to_vec(&review)
        .map_err(|e| BadReview::new(format!("cannot encode the response: {e}")))
}

/// Builds and serializes the response AdmissionReview for a decision.
pub fn encode(
    request: &AdmissionRequest<DynamicObject>,
    decision: Decision,
) -> Result<Reviewed, BadReview> {
    let response = respond(request, &decision);
    let body = encode_review(response)
        .map_err(|e| BadReview::new(format!("cannot encode the response: {e}")))?;
    Ok(Reviewed {
        uid: request.uid.clone(),
        kind: request.kind.kind.clone(),
        operation: format!("{:?}", request.operation).to_uppercase(),
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request.name.clone(),
        user: request.user_info.username.clone().unwrap_or_default(),
        decision,
        body,
    })
}

/// The AdmissionResponse for a decision: uid echoed, denials as 403 with every message,
/// warnings one per rule, the patch when something changed.
pub fn respond(
    request: &AdmissionRequest<DynamicObject>,
    decision: &Decision,
) -> AdmissionResponse {
    let mut response = AdmissionResponse::from(request);
    let warnings = decision.warnings();
    if !warnings.is_empty() {
        response.warnings = Some(warnings);
    }
    if !decision.allowed() {
        let (code, reason) = match decision.invalid {
            Some(_) => (400, "BadRequest"),
            None => (403, "Forbidden"),
        };
        let message = decision.denial_message();
        let mut denied = response.deny(&message);
        denied.result = Status::failure(&message, reason).with_code(code);
        return denied;
    }
    match &decision.patch {
        Some(patch) => match response.clone().with_patch(patch.clone()) {
            Ok(patched) => patched,
            // A patch that cannot be encoded is a bug; admit unchanged rather than block.
            Err(err) => {
                tracing::error!(%err, "cannot encode patch; admitting unchanged");
                response
            }
        },
        None => response,
    }
}

fn decode_object(
    value: Option<serde_json::Value>,
    field: &str,
) -> Result<Option<DynamicObject>, BadReview> {
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(v) => crate::manifest::to_dynamic(v)
            .map(Some)
            .map_err(|e| BadReview::new(format!("{field}: {e}"))),
    }
}

/// Serializes the response AdmissionReview. kube-core writes `patch` as an array of numbers;
/// the API defines it as base64 (Go's `[]byte`), so it is re-encoded here.
fn encode_review(response: AdmissionResponse) -> Result<Vec<u8>, serde_json::Error> {
    use base64::Engine;
    let mut response = response;
    let patch = response.patch.take();
    let mut value = serde_json::to_value(response.into_review())?;
    if let (Some(patch), Some(response)) = (
        patch,
        value.get_mut("response").and_then(|r| r.as_object_mut()),
    ) {
        let encoded = base64::engine::general_purpose::STANDARD.encode(patch);
        response.insert("patch".into(), serde_json::Value::String(encoded));
    }
    serde_json::to_vec(&value)
}

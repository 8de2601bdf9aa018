//! AdmissionReview in, AdmissionReview out: the one code path behind `POST /validate`,
//! `POST /mutate` and `sts-guard review`.
//!
//! The body is read once ([`crate::request`]): the envelope into borrowed fields, the objects
//! into just what the handler reads. Requests no handler takes are answered from the envelope.
//! The response is written straight from borrowed fields, without an intermediate tree.

use crate::config::Config;
use crate::engine::{Decision, Endpoint, Skip, evaluate_review};
use crate::inventory::Inventory;
use crate::request::{
    Envelope, GroupVersion, Handler, Operation, RequestEnvelope, Review, read_envelope,
};
use serde::Serialize;
use std::borrow::Cow;

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

/// Who asked what, for the decision log and the metrics; borrowed from the body.
#[derive(Debug, Clone)]
pub struct Summary<'a> {
    pub uid: Cow<'a, str>,
    /// The review's own apiVersion, echoed in the response.
    pub api_version: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub operation: Operation,
    pub namespace: Cow<'a, str>,
    pub name: Cow<'a, str>,
    pub user: Cow<'a, str>,
    /// Who judges the request, as the decoder planned it (`None`: no handler of the endpoint
    /// takes it, and it is answered from the envelope).
    pub handler: Option<Handler>,
}

/// What the server logs and counts for one review.
pub struct Reviewed<'a> {
    pub summary: Summary<'a>,
    pub decision: Decision,
    /// The serialized response AdmissionReview.
    pub body: Vec<u8>,
}

/// A request body, read.
pub enum Decoded<'a> {
    /// A request a handler of the endpoint judges: evaluate it, then [`encode`].
    Evaluate(Box<Review<'a>>, Summary<'a>),
    /// No handler of the endpoint reads it: already answered (allowed, unchanged).
    Answered(Box<Reviewed<'a>>),
}

/// Decodes an AdmissionReview, evaluates it and encodes the response.
pub fn review<'a>(
    body: &'a [u8],
    inventory: &dyn Inventory,
    config: &Config,
    endpoint: Endpoint,
) -> Result<Reviewed<'a>, BadReview> {
    match decode(body, endpoint)? {
        Decoded::Evaluate(review, summary) => {
            let decision = evaluate_review(&review, inventory, config);
            encode(summary, decision.in_mode(config.mode))
        }
        Decoded::Answered(reviewed) => Ok(*reviewed),
    }
}

/// Reads an AdmissionReview body for `endpoint`: the request a handler judges, or the answer
/// when none does.
pub fn decode(body: &[u8], endpoint: Endpoint) -> Result<Decoded<'_>, BadReview> {
    let envelope = read_envelope(body, Some(endpoint)).map_err(|e| BadReview::new(e.0))?;
    let (api_version, request) = checked(envelope)?;
    let kind = request.kind.clone().unwrap_or_default();
    let operation = request.operation.unwrap_or(Operation::Connect);
    let summary = summary(&request, api_version, &kind, operation);
    match request.plan() {
        Some(_) => {
            let review = request.into_review().map_err(BadReview::new)?;
            Ok(Decoded::Evaluate(Box::new(review), summary))
        }
        None => {
            let decision = Decision {
                skipped: Some(Skip::NotHandled),
                ..Decision::default()
            };
            encode(summary, decision).map(|r| Decoded::Answered(Box::new(r)))
        }
    }
}

/// The envelope's checks: an AdmissionReview of admission.k8s.io/v1 (or v1beta1) with a
/// request that has a uid, kind, resource, operation and userInfo.
fn checked(envelope: Envelope<'_>) -> Result<(Cow<'_, str>, RequestEnvelope<'_>), BadReview> {
    let api_version = envelope.api_version.ok_or_else(|| {
        BadReview("body is not an AdmissionReview: missing field `apiVersion`".into())
    })?;
    let kind = envelope
        .kind
        .ok_or_else(|| BadReview("body is not an AdmissionReview: missing field `kind`".into()))?;
    if !matches!(
        &*api_version,
        "admission.k8s.io/v1" | "admission.k8s.io/v1beta1"
    ) || kind != "AdmissionReview"
    {
        return Err(BadReview::new(format!(
            "expected kind AdmissionReview of admission.k8s.io/v1, got {kind:?} of {api_version:?}"
        )));
    }
    let request = envelope
        .request
        .ok_or_else(|| BadReview("AdmissionReview has no request".into()))?;
    let missing = [
        ("uid", request.uid.is_none()),
        ("kind", request.kind.is_none()),
        ("resource", request.resource.is_none()),
        ("operation", request.operation.is_none()),
        ("userInfo", !request.user_info_seen),
    ];
    if let Some((field, _)) = missing.iter().find(|(_, absent)| *absent) {
        return Err(BadReview(format!(
            "body is not an AdmissionReview: request.{field} is missing"
        )));
    }
    if request.uid.as_deref() == Some("") {
        return Err(BadReview("request.uid is empty".into()));
    }
    Ok((api_version, request))
}

fn summary<'a>(
    request: &RequestEnvelope<'a>,
    api_version: Cow<'a, str>,
    kind: &GroupVersion<'a>,
    operation: Operation,
) -> Summary<'a> {
    Summary {
        uid: request.uid.clone().unwrap_or_default(),
        api_version,
        kind: kind.name.clone(),
        operation,
        namespace: request.namespace.clone().unwrap_or_default(),
        name: request.name.clone().unwrap_or_default(),
        user: request.username.clone().unwrap_or_default(),
        handler: request.plan().map(|plan| plan.handler),
    }
}

/// The answer to a review the server will not evaluate: a denial with `message` and code 413,
/// echoing the uid. Only the envelope is read (the objects are skipped, never built).
pub fn refuse_unevaluated(body: &[u8], message: &str) -> Result<Vec<u8>, BadReview> {
    let envelope = read_envelope(body, None).map_err(|e| BadReview::new(e.0))?;
    let api_version = envelope
        .api_version
        .unwrap_or(Cow::Borrowed("admission.k8s.io/v1"));
    let uid = envelope
        .request
        .and_then(|r| r.uid)
        .filter(|uid| !uid.is_empty())
        .ok_or_else(|| BadReview("AdmissionReview has no request.uid".into()))?;
    write_review(&ReviewOut {
        api_version: &api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            allowed: false,
            patch: None,
            patch_type: None,
            status: StatusOut {
                code: 413,
                message,
                reason: "RequestEntityTooLarge",
                status: Some("Failure"),
            },
            uid: &uid,
            warnings: Vec::new(),
        },
    })
}

/// Builds and serializes the response AdmissionReview for a decision: uid echoed, denials as
/// 403 (400 for an unreadable object) with every message, warnings one per rule, the patch
/// (base64, as the API's `[]byte`) when something changed.
pub fn encode(summary: Summary<'_>, decision: Decision) -> Result<Reviewed<'_>, BadReview> {
    let warnings = decision.warnings();
    let allowed = decision.allowed();
    let message;
    let patch;
    let (status, patch) = if allowed {
        patch = decision
            .patch
            .as_ref()
            .and_then(|p| match serde_json::to_vec(p) {
                Ok(bytes) => Some(base64_encode(&bytes)),
                // A patch that cannot be encoded is a bug; admit unchanged rather than block.
                Err(err) => {
                    tracing::error!(%err, "cannot encode patch; admitting unchanged");
                    None
                }
            });
        (StatusOut::default(), patch)
    } else {
        let (code, reason) = match decision.invalid {
            Some(_) => (400, "BadRequest"),
            None => (403, "Forbidden"),
        };
        message = decision.denial_message();
        let status = StatusOut {
            code,
            message: &message,
            reason,
            status: Some("Failure"),
        };
        (status, None)
    };
    let body = write_review(&ReviewOut {
        api_version: &summary.api_version,
        kind: "AdmissionReview",
        response: ResponseOut {
            allowed,
            patch_type: patch.as_ref().map(|_| "JSONPatch"),
            patch,
            status,
            uid: &summary.uid,
            warnings,
        },
    })?;
    Ok(Reviewed {
        summary,
        decision,
        body,
    })
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn write_review(review: &ReviewOut<'_>) -> Result<Vec<u8>, BadReview> {
    serde_json::to_vec(review)
        .map_err(|e| BadReview::new(format!("cannot encode the response: {e}")))
}

/// The response AdmissionReview, keys in the order earlier releases wrote them.
#[derive(Serialize)]
struct ReviewOut<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
struct ResponseOut<'a> {
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    patch: Option<String>,
    #[serde(rename = "patchType", skip_serializing_if = "Option::is_none")]
    patch_type: Option<&'static str>,
    status: StatusOut<'a>,
    uid: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

#[derive(Serialize, Default)]
struct StatusOut<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    code: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    reason: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'a str>,
}

fn is_zero(code: &u16) -> bool {
    *code == 0
}

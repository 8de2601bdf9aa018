//! One pass over an AdmissionReview body.
//!
//! The envelope (uid, kind, operation, userInfo, options, dryRun) is read into borrowed fields.
//! `object` and `oldObject` are decoded straight into what the handler for this request reads
//! — an [`ObjectType`] per object, from [`plan`] — so managedFields, status, kubectl's
//! last-applied annotation and, of a pod, everything but the few fields of its containers that
//! identity injection reads are skipped by the decoder without being allocated
//! ([`crate::subject`]). kube-apiserver writes `kind` and `operation` before the objects, so
//! the plan is known by the time an object arrives; a body in another order has its objects
//! kept raw (borrowed) and decoded the same way afterwards. Requests no handler takes are
//! answered from the envelope alone. [`Review`] is what the engine judges.

use crate::shape::Str;
pub use crate::subject::ObjectType;
use crate::subject::{ObjectSeed, Read, Subject};
use crate::vocabulary::{Endpoint, Kind};
use kube_core::DynamicObject;
use kube_core::admission::AdmissionRequest;
use serde::Deserializer as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::fmt;

/// The handler that judges a request, and what that handler reads of each of its objects.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub handler: Handler,
    pub object: ObjectType,
    pub old_object: ObjectType,
}

/// Who judges a request: the decoder reads of its objects what the handler's rules read, and
/// the engine runs those rules ([`crate::engine::evaluate_review`] matches on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handler {
    /// /validate, StatefulSet CREATE or UPDATE.
    ValidateStatefulSet,
    ValidateStatefulSetDelete,
    /// /validate, Service CREATE or UPDATE.
    ValidateService,
    ValidateServiceDelete,
    ValidatePodDelete,
    /// /mutate, Pod CREATE: identity env vars.
    MutatePod,
    /// /mutate, StatefulSet CREATE or UPDATE: the partition default.
    MutateStatefulSet,
}

/// The operation of an admission request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    fn parse(text: &str) -> Option<Operation> {
        Some(match text {
            "CREATE" => Operation::Create,
            "UPDATE" => Operation::Update,
            "DELETE" => Operation::Delete,
            "CONNECT" => Operation::Connect,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }

    pub fn from_kube(operation: &kube_core::admission::Operation) -> Operation {
        use kube_core::admission::Operation as K;
        match operation {
            K::Create => Operation::Create,
            K::Update => Operation::Update,
            K::Delete => Operation::Delete,
            K::Connect => Operation::Connect,
        }
    }

    pub fn to_kube(self) -> kube_core::admission::Operation {
        use kube_core::admission::Operation as K;
        match self {
            Operation::Create => K::Create,
            Operation::Update => K::Update,
            Operation::Delete => K::Delete,
            Operation::Connect => K::Connect,
        }
    }
}

/// Which handler judges a request, and so how much of its objects to decode; `None` when no
/// rule of this endpoint reads this kind of request (it is answered from the envelope). The
/// one table of handlers: the engine runs the handler this picks.
pub fn plan(endpoint: Endpoint, group: &str, kind: &str, operation: Operation) -> Option<Plan> {
    use Endpoint::{Mutate, Validate};
    use Handler::*;
    use Kind::{Pod, Service, StatefulSet};
    use Operation::{Create, Delete, Update};
    let kind = Kind::from_group_kind(group, kind)?;
    let handler = match (endpoint, kind, operation) {
        (Validate, StatefulSet, Create | Update) => ValidateStatefulSet,
        (Validate, StatefulSet, Delete) => ValidateStatefulSetDelete,
        (Validate, Service, Create | Update) => ValidateService,
        (Validate, Service, Delete) => ValidateServiceDelete,
        (Validate, Pod, Delete) => ValidatePodDelete,
        (Mutate, Pod, Create) => MutatePod,
        (Mutate, StatefulSet, Create | Update) => MutateStatefulSet,
        _ => return None,
    };
    use ObjectType::{Identity, Metadata, PodCreate, PodDelete, StatefulSetWithTemplate};
    // An UPDATE compares the whole template (a change to it starts a rollout).
    let (object, old_object) = match handler {
        ValidateStatefulSet | MutateStatefulSet if operation == Update => {
            (StatefulSetWithTemplate, StatefulSetWithTemplate)
        }
        ValidateStatefulSet | MutateStatefulSet => (ObjectType::StatefulSet, Identity),
        ValidateStatefulSetDelete => (Identity, ObjectType::StatefulSet),
        ValidateService => (ObjectType::Service, ObjectType::Service),
        ValidateServiceDelete => (Identity, Metadata),
        ValidatePodDelete => (Identity, PodDelete),
        MutatePod => (PodCreate, Identity),
    };
    Some(Plan {
        handler,
        object,
        old_object,
    })
}

/// A body that is not an AdmissionReview, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvelopeError(pub String);

/// `group`/`version`/`kind` (or `resource`) of the request.
#[derive(Debug, Default, Clone)]
pub struct GroupVersion<'a> {
    pub group: Cow<'a, str>,
    pub version: Cow<'a, str>,
    /// The kind or the resource.
    pub name: Cow<'a, str>,
}

/// `object` or `oldObject` as read so far.
#[derive(Debug, Default)]
pub enum ObjectSlot<'a> {
    /// Not in the body, null, or skipped (no handler reads it).
    #[default]
    Absent,
    /// Decoded for the planned handler.
    Decoded(Subject<'a>),
    /// A string, number, boolean or list.
    NotAnObject,
    /// Came before the plan was known: kept as it is in the body, decoded afterwards.
    Raw(&'a RawValue),
}

impl<'a> ObjectSlot<'a> {
    fn read(read: Read<'a>) -> ObjectSlot<'a> {
        match read {
            Read::Null => ObjectSlot::Absent,
            Read::Object(subject) => ObjectSlot::Decoded(subject),
            Read::NotAnObject => ObjectSlot::NotAnObject,
        }
    }

    /// The object, decoded as `object_type` if it was kept raw; errors name `field`.
    fn into_subject(
        self,
        object_type: ObjectType,
        field: &str,
    ) -> Result<Option<Subject<'a>>, String> {
        match self {
            ObjectSlot::Absent => Ok(None),
            ObjectSlot::Decoded(subject) => Ok(Some(subject)),
            ObjectSlot::NotAnObject => Err(format!("{field}: not an object")),
            ObjectSlot::Raw(raw) => subject_from_text(raw.get(), object_type, field),
        }
    }
}

/// The AdmissionReview as read from the body: envelope fields borrowed from it.
#[derive(Debug, Default)]
pub struct Envelope<'a> {
    pub api_version: Option<Cow<'a, str>>,
    pub kind: Option<Cow<'a, str>>,
    pub request: Option<RequestEnvelope<'a>>,
}

#[derive(Debug, Default)]
pub struct RequestEnvelope<'a> {
    pub uid: Option<Cow<'a, str>>,
    pub kind: Option<GroupVersion<'a>>,
    pub resource: Option<GroupVersion<'a>>,
    pub sub_resource: Option<Cow<'a, str>>,
    pub request_kind: Option<GroupVersion<'a>>,
    pub request_resource: Option<GroupVersion<'a>>,
    pub request_sub_resource: Option<Cow<'a, str>>,
    pub name: Option<Cow<'a, str>>,
    pub namespace: Option<Cow<'a, str>>,
    pub operation: Option<Operation>,
    pub username: Option<Cow<'a, str>>,
    pub user_uid: Option<Cow<'a, str>>,
    pub groups: Option<Vec<Cow<'a, str>>>,
    pub user_info_seen: bool,
    pub object: ObjectSlot<'a>,
    pub old_object: ObjectSlot<'a>,
    pub dry_run: Option<bool>,
    pub options: Option<Value>,
    /// Reading stopped at an object no handler reads (see [`read_envelope`]).
    pub answered_early: bool,
    /// [`plan`]'s answer for the endpoint read for, once kind and operation were read: worked
    /// out once per request, for both objects and for whoever evaluates the request.
    planned: Option<Option<Plan>>,
}

impl Envelope<'_> {
    /// Reading stopped on purpose, with everything a response needs.
    pub fn answered_early(&self) -> bool {
        self.request.as_ref().is_some_and(|r| r.answered_early)
    }
}

impl RequestEnvelope<'_> {
    /// Every field a response and the checks on the envelope need has been read.
    fn complete(&self) -> bool {
        self.uid.is_some()
            && self.kind.is_some()
            && self.resource.is_some()
            && self.operation.is_some()
            && self.user_info_seen
    }

    /// The plan, once kind and operation are known.
    fn planned(&mut self, endpoint: Option<Endpoint>) -> Option<Option<Plan>> {
        if self.planned.is_none() {
            let kind = self.kind.as_ref()?;
            let operation = self.operation?;
            self.planned = Some(endpoint.and_then(|e| plan(e, &kind.group, &kind.name, operation)));
        }
        self.planned
    }

    /// The handler (and what it reads of each object) for the endpoint the envelope was read for; `None` when no
    /// handler takes the request, or its kind or operation is missing.
    pub fn plan(&self) -> Option<Plan> {
        self.planned.flatten()
    }
}

/// Reads the envelope of `body`, decoding the objects with the plan for `endpoint` (`None`:
/// skip them, for a request that will not be evaluated).
pub fn read_envelope(
    body: &[u8],
    endpoint: Option<Endpoint>,
) -> Result<Envelope<'_>, EnvelopeError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let mut envelope = Envelope::default();
    let read = de
        .deserialize_map(ReviewVisitor {
            endpoint,
            out: &mut envelope,
        })
        .and_then(|()| de.end());
    match read {
        Ok(()) => {
            // Objects that came before kind and operation were kept raw, unplanned.
            if let Some(request) = envelope.request.as_mut() {
                request.planned(endpoint);
            }
            Ok(envelope)
        }
        // Stopped on purpose at an object no handler reads: the envelope is complete.
        Err(_) if envelope.answered_early() => Ok(envelope),
        Err(e) => Err(EnvelopeError(format!(
            "body is not an AdmissionReview: {e}"
        ))),
    }
}

/// An admission request as the engine judges it: what the rules read of the envelope, and the
/// objects decoded for its handler.
#[derive(Debug)]
pub struct Review<'a> {
    /// `None`: no handler of the endpoint takes it.
    pub handler: Option<Handler>,
    pub group: Cow<'a, str>,
    pub kind: Cow<'a, str>,
    pub sub_resource: Option<Cow<'a, str>>,
    pub operation: Operation,
    pub name: Cow<'a, str>,
    pub namespace: Option<Cow<'a, str>>,
    pub username: Option<Cow<'a, str>>,
    pub groups: Vec<String>,
    /// The operation's options (a DELETE's DeleteOptions).
    pub options: Option<Value>,
    pub object: Option<Subject<'a>>,
    pub old_object: Option<Subject<'a>>,
}

impl<'a> RequestEnvelope<'a> {
    /// The request as the engine judges it, its objects decoded for the planned handler (one
    /// kept raw is decoded now). Errors name the object.
    pub fn into_review(self) -> Result<Review<'a>, String> {
        let plan = self.plan();
        let (object, old_object) = planned_objects(plan, self.object, self.old_object)?;
        let kind = self.kind.unwrap_or_default();
        Ok(Review {
            handler: plan.map(|plan| plan.handler),
            group: kind.group,
            kind: kind.name,
            sub_resource: self.sub_resource,
            operation: self.operation.unwrap_or(Operation::Connect),
            name: self.name.unwrap_or_default(),
            namespace: self.namespace,
            username: self.username,
            groups: self
                .groups
                .map(|groups| groups.into_iter().map(Cow::into_owned).collect())
                .unwrap_or_default(),
            options: self.options,
            object,
            old_object,
        })
    }
}

/// The objects of a request, decoded for the handler `plan` picked (none when no handler takes
/// the request).
fn planned_objects<'a>(
    plan: Option<Plan>,
    object: ObjectSlot<'a>,
    old_object: ObjectSlot<'a>,
) -> Result<(Option<Subject<'a>>, Option<Subject<'a>>), String> {
    let Some(plan) = plan else {
        return Ok((None, None));
    };
    Ok((
        object.into_subject(plan.object, "request.object")?,
        old_object.into_subject(plan.old_object, "request.oldObject")?,
    ))
}

/// The JSON text of a request's object and old object in kube-rs's form, for [`review_of`].
pub fn object_texts(request: &AdmissionRequest<DynamicObject>) -> [Option<Box<RawValue>>; 2] {
    [&request.object, &request.old_object].map(|object| {
        object
            .as_ref()
            .map(|o| serde_json::value::to_raw_value(o).expect("a DynamicObject encodes as JSON"))
    })
}

/// A request in kube-rs's form (tests, benchmarks, `Evaluator::decide`) as the [`Review`]
/// `endpoint` judges, its objects decoded from their text (`texts`, from [`object_texts`]) by
/// the decoder a body's go through.
pub fn review_of<'a>(
    request: &'a AdmissionRequest<DynamicObject>,
    endpoint: Endpoint,
    texts: &'a [Option<Box<RawValue>>; 2],
) -> Result<Review<'a>, String> {
    let operation = Operation::from_kube(&request.operation);
    let plan = plan(endpoint, &request.kind.group, &request.kind.kind, operation);
    let slot = |text: &'a Option<Box<RawValue>>| {
        text.as_deref().map_or(ObjectSlot::Absent, ObjectSlot::Raw)
    };
    let (object, old_object) = planned_objects(plan, slot(&texts[0]), slot(&texts[1]))?;
    Ok(Review {
        handler: plan.map(|plan| plan.handler),
        group: Cow::Borrowed(&request.kind.group),
        kind: Cow::Borrowed(&request.kind.kind),
        sub_resource: request.sub_resource.as_deref().map(Cow::Borrowed),
        operation,
        name: Cow::Borrowed(&request.name),
        namespace: request.namespace.as_deref().map(Cow::Borrowed),
        username: request.user_info.username.as_deref().map(Cow::Borrowed),
        groups: request.user_info.groups.clone().unwrap_or_default(),
        options: request.options.as_ref().map(|o| o.0.clone()),
        object,
        old_object,
    })
}

/// An object decoded from its JSON text as `object_type`; errors name `field`.
fn subject_from_text<'a>(
    text: &'a str,
    object_type: ObjectType,
    field: &str,
) -> Result<Option<Subject<'a>>, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    match object_type.read(&mut de) {
        Ok(Read::Null) => Ok(None),
        Ok(Read::Object(subject)) => Ok(Some(subject)),
        Ok(Read::NotAnObject) => Err(format!("{field}: not an object")),
        Err(e) => Err(format!("{field}: {e}")),
    }
}

struct ReviewVisitor<'s, 'de> {
    endpoint: Option<Endpoint>,
    out: &'s mut Envelope<'de>,
}

impl<'de> Visitor<'de> for ReviewVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionReview object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let out = self.out;
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "apiVersion" => out.api_version = map.next_value::<Option<Str>>()?.map(|s| s.0),
                "kind" => out.kind = map.next_value::<Option<Str>>()?.map(|s| s.0),
                "request" => {
                    let envelope_read = out.api_version.is_some() && out.kind.is_some();
                    let request = out.request.insert(RequestEnvelope::default());
                    let present = map.next_value_seed(RequestSeed {
                        endpoint: self.endpoint,
                        envelope_read,
                        out: request,
                    })?;
                    if !present {
                        out.request = None;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads `request` into `out`; `false` when it is null.
struct RequestSeed<'s, 'de> {
    endpoint: Option<Endpoint>,
    /// The review's apiVersion and kind came before the request.
    envelope_read: bool,
    out: &'s mut RequestEnvelope<'de>,
}

impl<'de> DeserializeSeed<'de> for RequestSeed<'_, 'de> {
    type Value = bool;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RequestSeed<'_, 'de> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an AdmissionRequest object")
    }

    fn visit_none<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_map(self)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<bool, A::Error> {
        let r = self.out;
        while let Some(key) = map.next_key::<Str<'de>>()? {
            match &*key.0 {
                "uid" => r.uid = map.next_value::<Option<Str>>()?.map(|s| s.0),
                "kind" => r.kind = map.next_value::<Option<GroupVersionDe>>()?.map(|g| g.0),
                "resource" => r.resource = map.next_value::<Option<GroupVersionDe>>()?.map(|g| g.0),
                "subResource" => r.sub_resource = map.next_value::<Option<Str>>()?.map(|s| s.0),
                "requestKind" => {
                    r.request_kind = map.next_value::<Option<GroupVersionDe>>()?.map(|g| g.0)
                }
                "requestResource" => {
                    r.request_resource = map.next_value::<Option<GroupVersionDe>>()?.map(|g| g.0)
                }
                "requestSubResource" => {
                    r.request_sub_resource = map.next_value::<Option<Str>>()?.map(|s| s.0)
                }
                "name" => r.name = map.next_value::<Option<Str>>()?.map(|s| s.0),
                "namespace" => r.namespace = map.next_value::<Option<Str>>()?.map(|s| s.0),
                "operation" => {
                    let text = map.next_value::<Str>()?;
                    r.operation = Some(Operation::parse(&text.0).ok_or_else(|| {
                        de::Error::custom(format_args!(
                            "request.operation: unknown operation {:?}, expected one of CREATE, UPDATE, DELETE, CONNECT",
                            crate::model::clip(&text.0, 64)
                        ))
                    })?);
                }
                "userInfo" => {
                    let info = map.next_value::<Option<UserInfoDe>>()?;
                    r.user_info_seen = info.is_some();
                    if let Some(info) = info {
                        r.username = info.username;
                        r.user_uid = info.uid;
                        r.groups = info.groups;
                    }
                }
                field @ ("object" | "oldObject") => {
                    let slot = match r.planned(self.endpoint) {
                        Some(Some(plan)) => {
                            let object_type = if field == "object" {
                                plan.object
                            } else {
                                plan.old_object
                            };
                            ObjectSlot::read(map.next_value_seed(ObjectSeed(object_type))?)
                        }
                        // No handler reads this request: once the envelope is complete, it is
                        // answered without reading further.
                        Some(None) if self.envelope_read && r.complete() => {
                            r.answered_early = true;
                            return Err(de::Error::custom("answered from the envelope"));
                        }
                        Some(None) => {
                            map.next_value::<IgnoredAny>()?;
                            ObjectSlot::Absent
                        }
                        None => ObjectSlot::Raw(map.next_value::<&'de RawValue>()?),
                    };
                    if field == "object" {
                        r.object = slot;
                    } else {
                        r.old_object = slot;
                    }
                }
                "dryRun" => r.dry_run = map.next_value()?,
                "options" => r.options = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(true)
    }
}

struct GroupVersionDe<'a>(GroupVersion<'a>);

impl<'de> serde::Deserialize<'de> for GroupVersionDe<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = GroupVersionDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a map with group, version and kind or resource")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = GroupVersion::default();
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    let field = match &*key.0 {
                        "group" => &mut out.group,
                        "version" => &mut out.version,
                        "kind" | "resource" => &mut out.name,
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                            continue;
                        }
                    };
                    *field = map
                        .next_value::<Option<Str>>()?
                        .map(|s| s.0)
                        .unwrap_or_default();
                }
                Ok(GroupVersionDe(out))
            }
        }
        d.deserialize_map(V)
    }
}

struct UserInfoDe<'a> {
    username: Option<Cow<'a, str>>,
    uid: Option<Cow<'a, str>>,
    groups: Option<Vec<Cow<'a, str>>>,
}

impl<'de> serde::Deserialize<'de> for UserInfoDe<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = UserInfoDe<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a userInfo map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = UserInfoDe {
                    username: None,
                    uid: None,
                    groups: None,
                };
                while let Some(key) = map.next_key::<Str<'de>>()? {
                    match &*key.0 {
                        "username" => out.username = map.next_value::<Option<Str>>()?.map(|s| s.0),
                        "uid" => out.uid = map.next_value::<Option<Str>>()?.map(|s| s.0),
                        "groups" => {
                            out.groups = map
                                .next_value::<Option<Vec<Str>>>()?
                                .map(|g| g.into_iter().map(|s| s.0).collect())
                        }
                        _ => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_envelope_is_read_in_any_order_and_objects_wait_for_their_plan() {
        let planned = r#"{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"resource":{"group":"","version":"v1","resource":"pods"},"operation":"CREATE","userInfo":{"username":"a","groups":["g"],"extra":{"x":["y"]}},"object":{"kind":"Pod","metadata":{"name":"p"},"status":{"phase":"x"}}}}"#;
        let envelope = read_envelope(planned.as_bytes(), Some(Endpoint::Mutate)).unwrap();
        let request = envelope.request.unwrap();
        assert!(matches!(
            &request.object,
            ObjectSlot::Decoded(Subject::PodCreate(_))
        ));
        assert_eq!(request.username.as_deref(), Some("a"));
        assert_eq!(request.groups.unwrap(), vec!["g"]);
        // Not handled by /validate: reading stops at the object, even in a body cut short there.
        let envelope = read_envelope(planned.as_bytes(), Some(Endpoint::Validate)).unwrap();
        assert!(envelope.answered_early());
        assert!(matches!(
            envelope.request.unwrap().object,
            ObjectSlot::Absent
        ));
        let cut = &planned[..planned.find("\"object\"").unwrap() + 12];
        assert!(
            read_envelope(cut.as_bytes(), Some(Endpoint::Validate))
                .unwrap()
                .answered_early()
        );
        assert!(read_envelope(cut.as_bytes(), Some(Endpoint::Mutate)).is_err());
        // Without the review's apiVersion and kind first, the whole body is read.
        let late = format!(
            r#"{{"request":{},"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}}"#,
            &planned[planned.find(r#"{"uid""#).unwrap()..planned.len() - 1]
        );
        let envelope = read_envelope(late.as_bytes(), Some(Endpoint::Validate)).unwrap();
        assert!(!envelope.answered_early());
        assert!(matches!(
            envelope.request.unwrap().object,
            ObjectSlot::Absent
        ));
        // Objects before kind: kept raw, borrowed from the body.
        let first = r#"{"request":{"object":{"a":1},"uid":"u","kind":{"group":"","version":"v1","kind":"Pod"},"operation":"CREATE"},"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1"}"#;
        let envelope = read_envelope(first.as_bytes(), Some(Endpoint::Mutate)).unwrap();
        assert!(
            matches!(envelope.request.unwrap().object, ObjectSlot::Raw(raw) if raw.get() == r#"{"a":1}"#)
        );
    }

    #[test]
    fn an_unknown_operation_is_refused_and_quoted_short() {
        let text = format!(
            r#"{{"kind":"AdmissionReview","request":{{"operation":"{}"}}}}"#,
            "X".repeat(10_000)
        );
        let err = read_envelope(text.as_bytes(), None).unwrap_err();
        assert!(err.0.contains("unknown operation"), "{}", err.0);
        assert!(err.0.len() < 400, "{} bytes", err.0.len());
        assert!(read_envelope(b"{} trailing", None).is_err());
    }
}

//! The objects of a review as their handler reads them, decoded from the body's text in one
//! pass.
//!
//! Metadata becomes k8s-openapi's `ObjectMeta` with only the fields rules read: managedFields,
//! timestamps and every annotation but those that name sts-guard's settings or an application
//! are skipped by the JSON decoder without being allocated. A spec becomes the typed parts of
//! [`crate::model`] its handler's view and rules read; there is no tree in between.

use crate::model::{
    OWNERSHIP_ANNOTATIONS, OWNERSHIP_LABELS, PodDeleteSpec, PodIdentitySpec, PodPhase,
    ServiceViewSpec, StatefulSetSpec,
};
use crate::shape::{Checked, Str};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::value::{
    BorrowedStrDeserializer, CowStrDeserializer, MapAccessDeserializer, SeqAccessDeserializer,
    UnitDeserializer,
};
use serde::de::{
    self, DeserializeSeed, Deserializer, IgnoredAny, IntoDeserializer, MapAccess, SeqAccess,
    Visitor,
};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::fmt;

/// The metadata fields rules read (annotations apart: [`RULE_ANNOTATIONS`]).
const RULE_METADATA: &[&str] = &[
    "name",
    "namespace",
    "generateName",
    "labels",
    "ownerReferences",
];

/// The annotations rules read, by prefix: sts-guard's own and those that name an application.
const RULE_ANNOTATIONS: Prefixes = &[&["sts-guard.io/"], OWNERSHIP_ANNOTATIONS];

/// Lists of key prefixes: an entry is kept when its key starts with one of any list's.
type Prefixes = &'static [&'static [&'static str]];

/// Of an object no rule reads, what names it in a decision.
const IDENTITY_METADATA: &[&str] = &["name", "namespace", "generateName"];

/// Of a watched object, what identifies it and the resourceVersion the watch resumes from.
const WATCHED_METADATA: &[&str] = &["name", "namespace", "uid", "resourceVersion"];

/// Of a watched StatefulSet, also its owners: with [`OWNERSHIP_LABELS`] and
/// [`OWNERSHIP_ANNOTATIONS`], what a Service request reads to tell whether the two belong to
/// one application.
const WATCHED_STATEFULSET_METADATA: &[&str] = &[
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "ownerReferences",
];

/// What a handler reads of one object of a review (the plan picks one per object).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectType {
    /// Its name and namespace only: an object no rule reads.
    Identity,
    /// Its metadata as rules read it: a Service being deleted.
    Metadata,
    StatefulSet,
    /// An UPDATE's: also the pod template's text, which tells whether it starts a rollout.
    StatefulSetWithTemplate,
    Service,
    PodCreate,
    PodDelete,
}

/// An object of a review as its handler reads it.
#[derive(Debug)]
pub enum Subject<'a> {
    Metadata(Box<ObjectMeta>),
    StatefulSet(Box<StatefulSetObject<'a>>),
    Service(Box<ServiceObject<'a>>),
    PodCreate(Box<PodCreateObject<'a>>),
    PodDelete(Box<PodDeleteObject<'a>>),
}

impl Subject<'_> {
    pub fn metadata(&self) -> &ObjectMeta {
        match self {
            Subject::Metadata(meta) => meta,
            Subject::StatefulSet(sts) => &sts.metadata,
            Subject::Service(svc) => &svc.metadata,
            Subject::PodCreate(pod) => &pod.metadata,
            Subject::PodDelete(pod) => &pod.metadata,
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct StatefulSetObject<'a> {
    #[serde(default, deserialize_with = "rule_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, borrow)]
    pub spec: Checked<StatefulSetSpec<'a>>,
    /// `spec.template` as it came (of an UPDATE's objects only).
    #[serde(skip)]
    pub template: Option<&'a RawValue>,
}

impl StatefulSetObject<'_> {
    /// Whether `self`, the new object of an UPDATE, changes `old`'s pod template: what starts
    /// a rollout. kube-apiserver writes both objects with one encoder, so equal texts are the
    /// common answer; texts that differ are compared as values.
    pub fn template_changed(&self, old: &StatefulSetObject) -> bool {
        fn value(text: Option<&RawValue>) -> Option<serde_json::Value> {
            text.and_then(|raw| serde_json::from_str(raw.get()).ok())
        }
        match (self.template, old.template) {
            (Some(new), Some(old)) if new.get() == old.get() => false,
            (new, old) => value(new) != value(old),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct ServiceObject<'a> {
    #[serde(default, deserialize_with = "rule_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, borrow)]
    pub spec: Checked<ServiceViewSpec<'a>>,
}

/// A pod under CREATE: its spec is kept as text, decoded only for a pod identity injection
/// acts on (before Kubernetes 1.30's matchConditions every pod CREATE reaches /mutate).
#[derive(Debug, Deserialize)]
pub struct PodCreateObject<'a> {
    #[serde(default, deserialize_with = "rule_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, borrow, deserialize_with = "some_text")]
    pub spec: Option<&'a RawValue>,
}

impl<'a> PodCreateObject<'a> {
    pub fn identity_spec(&self) -> Checked<PodIdentitySpec<'a>> {
        self.spec
            .and_then(|raw| serde_json::from_str(raw.get()).ok())
            .unwrap_or_default()
    }
}

#[derive(Debug, Deserialize)]
pub struct PodDeleteObject<'a> {
    #[serde(default, deserialize_with = "rule_metadata")]
    pub metadata: ObjectMeta,
    #[serde(default, borrow)]
    pub spec: Checked<PodDeleteSpec<'a>>,
    #[serde(default, borrow)]
    pub status: Checked<PodPhase<'a>>,
}

/// An UPDATE's StatefulSet: its spec decoded in the one pass a CREATE's is, the template's text
/// kept aside on the way.
#[derive(Deserialize)]
struct StatefulSetUpdate<'a> {
    #[serde(default, deserialize_with = "rule_metadata")]
    metadata: ObjectMeta,
    #[serde(default, borrow, deserialize_with = "spec_and_template")]
    spec: SpecAndTemplate<'a>,
}

#[derive(Default)]
struct SpecAndTemplate<'a> {
    spec: Checked<StatefulSetSpec<'a>>,
    template: Option<&'a RawValue>,
}

fn spec_and_template<'de, D: Deserializer<'de>>(d: D) -> Result<SpecAndTemplate<'de>, D::Error> {
    d.deserialize_any(SpecAndTemplateVisitor)
}

/// A spec that is a map is decoded through [`TemplateAside`]; any other value has no template
/// and is kept by the spec's [`Checked`] as a CREATE's is.
struct SpecAndTemplateVisitor;

impl SpecAndTemplateVisitor {
    fn other<'de, D: Deserializer<'de>>(d: D) -> Result<SpecAndTemplate<'de>, D::Error> {
        Ok(SpecAndTemplate {
            spec: Checked::deserialize(d)?,
            template: None,
        })
    }
}

impl<'de> Visitor<'de> for SpecAndTemplateVisitor {
    type Value = SpecAndTemplate<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a StatefulSet spec")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Self::other(UnitDeserializer::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Self::other(UnitDeserializer::new())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Self::other(v.into_deserializer())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Self::other(v.into_deserializer())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Self::other(v.into_deserializer())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        Self::other(v.into_deserializer())
    }
    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Self::other(BorrowedStrDeserializer::new(v))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Self::other(v.into_deserializer())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Self::other(SeqAccessDeserializer::new(seq))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        let mut template = None;
        let spec = Checked::deserialize(MapAccessDeserializer::new(TemplateAside {
            map,
            template: &mut template,
            at_template: false,
        }))?;
        Ok(SpecAndTemplate { spec, template })
    }
}

/// A spec's entries as they are, but for `template`: its text is taken aside, and the spec's
/// decoder reads the template from that text.
struct TemplateAside<'s, 'de, A> {
    map: A,
    template: &'s mut Option<&'de RawValue>,
    at_template: bool,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for TemplateAside<'_, 'de, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        let Some(key) = self.map.next_key::<Str<'de>>()? else {
            return Ok(None);
        };
        self.at_template = key.0 == "template";
        seed.deserialize(CowStrDeserializer::<A::Error>::new(key.0))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        if !self.at_template {
            return self.map.next_value_seed(seed);
        }
        let text: &'de RawValue = self.map.next_value()?;
        *self.template = Some(text);
        seed.deserialize(&mut serde_json::Deserializer::from_str(text.get()))
            .map_err(de::Error::custom)
    }
}

/// A field's text, `null` included (so that a null field is told from an absent one).
fn some_text<'de, D: Deserializer<'de>>(d: D) -> Result<Option<&'de RawValue>, D::Error> {
    <&RawValue>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct IdentityObject {
    #[serde(default, deserialize_with = "identity_metadata")]
    metadata: ObjectMeta,
}

#[derive(Deserialize)]
struct MetadataObject {
    #[serde(default, deserialize_with = "rule_metadata")]
    metadata: ObjectMeta,
}

/// One object of a review as read.
#[derive(Debug)]
pub enum Read<'a> {
    /// `null`.
    Null,
    Object(Subject<'a>),
    /// A string, number, boolean or list where the object belongs.
    NotAnObject,
}

impl ObjectType {
    /// Decodes one object of this type from `d`.
    pub fn read<'de, D: Deserializer<'de>>(self, d: D) -> Result<Read<'de>, D::Error> {
        d.deserialize_any(ObjectVisitor(self))
    }

    fn read_map<'de, A: MapAccess<'de>>(self, map: A) -> Result<Subject<'de>, A::Error> {
        let d = MapAccessDeserializer::new(map);
        Ok(match self {
            ObjectType::Identity => {
                Subject::Metadata(Box::new(IdentityObject::deserialize(d)?.metadata))
            }
            ObjectType::Metadata => {
                Subject::Metadata(Box::new(MetadataObject::deserialize(d)?.metadata))
            }
            ObjectType::StatefulSet => Subject::StatefulSet(Box::new(Deserialize::deserialize(d)?)),
            ObjectType::StatefulSetWithTemplate => {
                let object = StatefulSetUpdate::deserialize(d)?;
                Subject::StatefulSet(Box::new(StatefulSetObject {
                    metadata: object.metadata,
                    spec: object.spec.spec,
                    template: object.spec.template,
                }))
            }
            ObjectType::Service => Subject::Service(Box::new(Deserialize::deserialize(d)?)),
            ObjectType::PodCreate => Subject::PodCreate(Box::new(Deserialize::deserialize(d)?)),
            ObjectType::PodDelete => Subject::PodDelete(Box::new(Deserialize::deserialize(d)?)),
        })
    }
}

/// Reads an object of a type as a [`DeserializeSeed`].
pub struct ObjectSeed(pub ObjectType);

impl<'de> DeserializeSeed<'de> for ObjectSeed {
    type Value = Read<'de>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Read<'de>, D::Error> {
        self.0.read(d)
    }
}

struct ObjectVisitor(ObjectType);

impl<'de> Visitor<'de> for ObjectVisitor {
    type Value = Read<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Read<'de>, E> {
        Ok(Read::Null)
    }
    fn visit_none<E: de::Error>(self) -> Result<Read<'de>, E> {
        Ok(Read::Null)
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Read<'de>, E> {
        Ok(Read::NotAnObject)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Read<'de>, E> {
        Ok(Read::NotAnObject)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Read<'de>, E> {
        Ok(Read::NotAnObject)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Read<'de>, E> {
        Ok(Read::NotAnObject)
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Read<'de>, E> {
        Ok(Read::NotAnObject)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Read<'de>, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Read::NotAnObject)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Read<'de>, A::Error> {
        self.0.read_map(map).map(Read::Object)
    }
}

fn rule_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    d.deserialize_option(MetadataVisitor {
        fields: RULE_METADATA,
        labels: &[],
        annotations: RULE_ANNOTATIONS,
    })
}

fn identity_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    d.deserialize_option(MetadataVisitor {
        fields: IDENTITY_METADATA,
        labels: &[],
        annotations: &[],
    })
}

/// `metadata` as a watch of Services or Nodes keeps it (a `deserialize_with` function).
pub fn watched_metadata<'de, D: Deserializer<'de>>(d: D) -> Result<ObjectMeta, D::Error> {
    d.deserialize_option(MetadataVisitor {
        fields: WATCHED_METADATA,
        labels: &[],
        annotations: &[],
    })
}

/// `metadata` as a watch of StatefulSets keeps it (a `deserialize_with` function).
pub fn watched_statefulset_metadata<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<ObjectMeta, D::Error> {
    d.deserialize_option(MetadataVisitor {
        fields: WATCHED_STATEFULSET_METADATA,
        labels: &[OWNERSHIP_LABELS],
        annotations: &[OWNERSHIP_ANNOTATIONS],
    })
}

/// `metadata` decoded by k8s-openapi's `ObjectMeta` from the fields it is given: `fields`
/// and, of the labels (when `fields` leaves them out) and the annotations, those whose key
/// starts with one of `labels` and `annotations`.
struct MetadataVisitor {
    fields: &'static [&'static str],
    labels: Prefixes,
    annotations: Prefixes,
}

impl<'de> Visitor<'de> for MetadataVisitor {
    type Value = ObjectMeta;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("object metadata")
    }
    fn visit_unit<E: de::Error>(self) -> Result<ObjectMeta, E> {
        Ok(ObjectMeta::default())
    }
    fn visit_none<E: de::Error>(self) -> Result<ObjectMeta, E> {
        Ok(ObjectMeta::default())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<ObjectMeta, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ObjectMeta, A::Error> {
        let mut labels = None;
        let mut annotations = None;
        let mut meta = ObjectMeta::deserialize(MapAccessDeserializer::new(MetadataFields {
            map,
            fields: self.fields,
            label_prefixes: self.labels,
            annotation_prefixes: self.annotations,
            labels: &mut labels,
            annotations: &mut annotations,
        }))?;
        if labels.is_some() {
            meta.labels = labels;
        }
        meta.annotations = annotations;
        Ok(meta)
    }
}

/// The entries of a metadata map `ObjectMeta` is given: the others are skipped, the kept
/// labels (when filtered) and annotations taken aside.
struct MetadataFields<'s, A> {
    map: A,
    fields: &'static [&'static str],
    label_prefixes: Prefixes,
    annotation_prefixes: Prefixes,
    labels: &'s mut Option<BTreeMap<String, String>>,
    annotations: &'s mut Option<BTreeMap<String, String>>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for MetadataFields<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        while let Some(key) = self.map.next_key::<Str<'de>>()? {
            if self.fields.contains(&&*key.0) {
                return seed
                    .deserialize(CowStrDeserializer::<A::Error>::new(key.0))
                    .map(Some);
            }
            if &*key.0 == "labels" && !self.label_prefixes.is_empty() {
                *self.labels = self.map.next_value_seed(KeptEntries(self.label_prefixes))?;
            } else if &*key.0 == "annotations" && !self.annotation_prefixes.is_empty() {
                *self.annotations = self
                    .map
                    .next_value_seed(KeptEntries(self.annotation_prefixes))?;
            } else {
                self.map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// Of `metadata.labels` or `metadata.annotations`, the entries whose key starts with one of
/// these prefixes.
struct KeptEntries(Prefixes);

impl<'de> DeserializeSeed<'de> for KeptEntries {
    type Value = Option<BTreeMap<String, String>>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for KeptEntries {
    type Value = Option<BTreeMap<String, String>>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a map of strings")
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut kept = BTreeMap::new();
        while let Some(key) = map.next_key::<Str<'de>>()? {
            if self
                .0
                .iter()
                .any(|list| list.iter().any(|p| key.0.starts_with(p)))
            {
                kept.insert(key.0.into_owned(), map.next_value::<String>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Some(kept))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(object_type: ObjectType, text: &str) -> Read<'_> {
        object_type
            .read(&mut serde_json::Deserializer::from_str(text))
            .unwrap()
    }

    fn statefulset(text: &str) -> Box<StatefulSetObject<'_>> {
        match read(ObjectType::StatefulSetWithTemplate, text) {
            Read::Object(Subject::StatefulSet(sts)) => sts,
            other => panic!("not a StatefulSet: {other:?}"),
        }
    }

    #[test]
    fn metadata_keeps_what_rules_read_and_skips_the_rest() {
        let text = r#"{"metadata":{"name":"web","namespace":"db","uid":"u","resourceVersion":"7",
            "creationTimestamp":"2026-01-01T00:00:00Z","labels":{"app":"web"},
            "managedFields":[{"manager":"kubectl","fieldsV1":{"f:spec":{}}}],
            "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}",
                "sts-guard.io/canary":"2","meta.helm.sh/release-name":"r","other":5},
            "ownerReferences":[{"apiVersion":"apps/v1","kind":"StatefulSet","name":"web",
                "uid":"o","controller":true}]}}"#;
        let Read::Object(subject) = read(ObjectType::Metadata, text) else {
            panic!("an object")
        };
        let meta = subject.metadata();
        assert_eq!(meta.name.as_deref(), Some("web"));
        assert_eq!(meta.namespace.as_deref(), Some("db"));
        assert_eq!(meta.labels.as_ref().unwrap()["app"], "web");
        let annotations = meta.annotations.as_ref().unwrap();
        assert_eq!(
            annotations.keys().collect::<Vec<_>>(),
            ["meta.helm.sh/release-name", "sts-guard.io/canary"]
        );
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].name, "web");
        assert!(meta.uid.is_none() && meta.resource_version.is_none());
        assert!(meta.managed_fields.is_none() && meta.creation_timestamp.is_none());
        // Of an object no rule reads, the name and namespace alone.
        let Read::Object(subject) = read(ObjectType::Identity, text) else {
            panic!("an object")
        };
        assert_eq!(subject.metadata().name.as_deref(), Some("web"));
        assert!(subject.metadata().labels.is_none() && subject.metadata().annotations.is_none());
    }

    #[test]
    fn a_kept_annotation_or_label_of_the_wrong_type_is_an_error_a_skipped_one_is_not() {
        let skipped = r#"{"metadata":{"annotations":{"other":5}}}"#;
        assert!(matches!(
            read(ObjectType::Metadata, skipped),
            Read::Object(Subject::Metadata(_))
        ));
        for wrong in [
            r#"{"metadata":{"annotations":{"sts-guard.io/canary":5}}}"#,
            r#"{"metadata":{"labels":{"app":5}}}"#,
            r#"{"metadata":"web"}"#,
        ] {
            let mut de = serde_json::Deserializer::from_str(wrong);
            assert!(ObjectType::Metadata.read(&mut de).is_err(), "{wrong}");
        }
    }

    #[test]
    fn a_watch_keeps_identity_and_resource_version_and_of_a_statefulset_its_owners() {
        #[derive(Deserialize)]
        struct Watched {
            #[serde(deserialize_with = "watched_metadata")]
            metadata: ObjectMeta,
        }
        #[derive(Deserialize)]
        struct WatchedStatefulSet {
            #[serde(deserialize_with = "watched_statefulset_metadata")]
            metadata: ObjectMeta,
        }
        let text = r#"{"metadata":{"name":"web","namespace":"db","uid":"u","resourceVersion":"7",
            "generateName":"w-","creationTimestamp":"2026-01-01T00:00:00Z",
            "labels":{"app":"web","app.kubernetes.io/instance":"r","helm.toolkit.fluxcd.io/name":"h",
                "other":5},
            "managedFields":[{"manager":"kubectl"}],
            "annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{}",
                "meta.helm.sh/release-name":"r","sts-guard.io/canary":"2"},
            "ownerReferences":[{"apiVersion":"v1","kind":"ConfigMap","name":"o","uid":"c"}]}}"#;
        let meta = serde_json::from_str::<WatchedStatefulSet>(text)
            .unwrap()
            .metadata;
        assert_eq!(
            (meta.name.as_deref(), meta.namespace.as_deref()),
            (Some("web"), Some("db"))
        );
        assert_eq!(
            (meta.uid.as_deref(), meta.resource_version.as_deref()),
            (Some("u"), Some("7"))
        );
        assert_eq!(
            meta.labels.as_ref().unwrap().keys().collect::<Vec<_>>(),
            ["app.kubernetes.io/instance", "helm.toolkit.fluxcd.io/name"]
        );
        assert_eq!(
            meta.annotations
                .as_ref()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["meta.helm.sh/release-name"]
        );
        assert_eq!(meta.owner_references.as_ref().unwrap()[0].uid, "c");
        assert!(meta.generate_name.is_none() && meta.managed_fields.is_none());
        assert!(meta.creation_timestamp.is_none());

        let meta = serde_json::from_str::<Watched>(text).unwrap().metadata;
        assert_eq!(meta.resource_version.as_deref(), Some("7"));
        assert!(meta.labels.is_none() && meta.annotations.is_none());
        assert!(meta.owner_references.is_none());
        // A kept label of the wrong type is an error, as in a review.
        let wrong = r#"{"metadata":{"labels":{"app.kubernetes.io/instance":5}}}"#;
        assert!(serde_json::from_str::<WatchedStatefulSet>(wrong).is_err());
        assert!(serde_json::from_str::<Watched>(wrong).is_ok());
    }

    #[test]
    fn null_is_no_object_and_a_scalar_or_list_is_not_an_object() {
        assert!(matches!(read(ObjectType::StatefulSet, "null"), Read::Null));
        for text in [r#""web""#, "5", "true", "[1,{\"a\":2}]"] {
            assert!(
                matches!(read(ObjectType::StatefulSet, text), Read::NotAnObject),
                "{text}"
            );
        }
    }

    #[test]
    fn an_update_changes_the_template_when_its_value_changes_not_its_text() {
        let sts = |template: &str| format!(r#"{{"spec":{{"replicas":2{template}}}}}"#);
        let image = |image: &str| {
            sts(&format!(
                r#","template":{{"metadata":{{"labels":{{"a":"1","b":"2"}}}},"spec":{{"containers":[{{"name":"c","image":"{image}"}}]}}}}"#
            ))
        };
        let (v1, v1_again, v2) = (image("i:1"), image("i:1"), image("i:2"));
        assert!(!statefulset(&v1).template_changed(&statefulset(&v1_again)));
        assert!(statefulset(&v2).template_changed(&statefulset(&v1)));
        // The same value written in another order or spacing is no change.
        let reordered = sts(
            r#","template":{"spec":{"containers":[{"image":"i:1","name":"c"}]},"metadata":{"labels":{"b":"2","a":"1"}}}"#,
        );
        assert!(!statefulset(&reordered).template_changed(&statefulset(&v1)));
        // A null template is told from an absent one, as values are.
        let (absent, null) = (sts(""), sts(r#","template":null"#));
        assert!(!statefulset(&absent).template_changed(&statefulset(&absent)));
        assert!(statefulset(&null).template_changed(&statefulset(&absent)));
        // The template is read for the view and the rules as well.
        let object = statefulset(&v1);
        let template = object.spec.field("spec", |s| &s.template).unwrap();
        let labels = template
            .field("spec.template", |t| &t.metadata)
            .unwrap()
            .field("spec.template.metadata", |m| &m.labels)
            .unwrap();
        assert!(matches!(labels, Checked::Found(l) if l.0.len() == 2));
    }

    #[test]
    fn an_update_reads_its_spec_as_a_create_does_and_keeps_the_templates_text() {
        let text = r#"{"metadata":{"name":"web"},"spec":{"replicas":3,"serviceName":"web",
            "template":{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[]}},
            "ordinals":{"start":2}}}"#;
        let update = statefulset(text);
        let Read::Object(Subject::StatefulSet(create)) = read(ObjectType::StatefulSet, text) else {
            panic!("a StatefulSet")
        };
        assert_eq!(format!("{:?}", update.spec), format!("{:?}", create.spec));
        assert_eq!(update.metadata, create.metadata);
        assert_eq!(
            update.template.map(RawValue::get),
            Some(r#"{"metadata":{"labels":{"app":"web"}},"spec":{"containers":[]}}"#)
        );
        assert!(create.template.is_none());
        // A spec that is not a map has no template, and is named when read, as a CREATE's.
        for wrong in [r#""web""#, "5", "true", "[1]"] {
            let text = format!(r#"{{"spec":{wrong}}}"#);
            let update = statefulset(&text);
            assert!(update.template.is_none(), "{wrong}");
            let error = update.spec.get("spec").unwrap_err();
            assert_eq!((error.path.as_str(), error.expected), ("spec", "a map"));
        }
        assert!(matches!(
            statefulset(r#"{"spec":null}"#).spec,
            Checked::Absent
        ));
        // Text that is not JSON inside the template fails the read, as anywhere else.
        let mut de = serde_json::Deserializer::from_str(r#"{"spec":{"template":{"a":}}}"#);
        assert!(ObjectType::StatefulSetWithTemplate.read(&mut de).is_err());
    }

    #[test]
    fn a_pods_spec_is_kept_as_text_until_read() {
        let text = r#"{"metadata":{"name":"web-0"},"spec":{"subdomain":"web","containers":[{"name":"c"}]}}"#;
        let Read::Object(Subject::PodCreate(pod)) = read(ObjectType::PodCreate, text) else {
            panic!("a pod")
        };
        assert_eq!(
            pod.spec.map(RawValue::get),
            Some(r#"{"subdomain":"web","containers":[{"name":"c"}]}"#)
        );
        let spec = pod.identity_spec();
        assert_eq!(
            spec.field("spec", |s| &s.subdomain)
                .unwrap()
                .str("spec.subdomain"),
            Ok(Some("web"))
        );
    }
}

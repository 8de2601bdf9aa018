//! Two ways from an object's text in a review body to the typed parts its handler's rules
//! read, measured in one run: what the decision to keep (or drop) the shaped `Value` between
//! them rests on.
//!
//!     cargo bench --bench object_decoding
//!
//! - `via-value` is the webhook's path: the object decoded once with the handler's shape into
//!   a `Value` (`request::decode_raw`), metadata taken from it (`request::into_object`), each
//!   `shaped!` struct the rules read decoded from that `Value` (`shape::checked`).
//! - `direct` decodes each of the same structs from the object's text, one pass per struct
//!   (serde skips the fields a struct does not name), metadata into a struct of the fields the
//!   rules read (annotations filtered to the same prefixes, as the shape filters them).
//!
//! Both stop at the typed parts: building the views from them is the same code either way.
//! For each object it prints the time per decode (median of batches), allocations and bytes
//! per decode. Allocation counts are deterministic; times vary with the machine, so compare
//! the two rows of one run.

use serde::Deserialize;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::path::Path;
use std::time::Duration;
use sts_guard::engine::Endpoint;
use sts_guard::model::{
    ClaimTemplate, LabelSelector, LabelsOnly, Ordinals, PodIdentitySpec, RetentionPolicy,
    RulePodSpec, StatefulSetRuleSpec, StatefulSetViewSpec, UpdateStrategy,
};
use sts_guard::request::{self, Operation, decode_raw, into_object};
use sts_guard::shape::{Checked, Decoded, Expected, StrMap, checked};

#[path = "common/counting.rs"]
mod counting;
#[path = "common/timing.rs"]
mod timing;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// The annotation prefixes the decoder's metadata shape keeps.
const KEPT_ANNOTATIONS: &[&str] = &[
    "sts-guard.io/",
    "meta.helm.sh/release-name",
    "meta.helm.sh/release-namespace",
    "argocd.argoproj.io/tracking-id",
];

/// Annotations whose key starts with one of [`KEPT_ANNOTATIONS`], borrowed where they can be.
#[derive(Default)]
#[allow(dead_code)]
struct KeptAnnotations<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de: 'a, 'a> Deserialize<'de> for KeptAnnotations<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Kept<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for Kept<'a> {
            type Value = KeptAnnotations<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut kept = Vec::new();
                while let Some(key) = map.next_key::<sts_guard::shape::Str<'de>>()? {
                    if KEPT_ANNOTATIONS.iter().any(|p| key.0.starts_with(p)) {
                        let value: sts_guard::shape::Str<'de> = map.next_value()?;
                        kept.push((key.0, value.0));
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(KeptAnnotations(kept))
            }
        }
        deserializer.deserialize_map(Kept(std::marker::PhantomData))
    }
}

/// The metadata the rules read, as a struct decoded from text.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct Metadata<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    namespace: Option<Cow<'a, str>>,
    #[serde(borrow)]
    generate_name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    labels: Checked<StrMap<'a>>,
    #[serde(borrow)]
    annotations: KeptAnnotations<'a>,
    owner_references: Option<Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
}

#[derive(Deserialize)]
struct MetadataOf<'a> {
    #[serde(borrow, default)]
    metadata: Metadata<'a>,
}

#[derive(Deserialize)]
#[serde(bound(deserialize = "Checked<T>: Deserialize<'de>"))]
struct SpecOf<T> {
    #[serde(default)]
    spec: Checked<T>,
}

/// A struct of `Checked` fields that is itself a `Checked` field's type.
macro_rules! decoded_map {
    ($name:ident) => {
        impl Expected for $name<'_> {
            const EXPECTED: &'static str = "a map";
        }
        impl<'de: 'a, 'a> Decoded<'de> for $name<'a> {
            fn from_map<A: MapAccess<'de>>(map: A) -> Result<Option<Self>, A::Error> {
                Self::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Some)
            }
        }
    };
}

/// The pod template as the view and the rules read it together.
#[derive(Deserialize, Default)]
#[serde(default)]
struct StatefulSetTemplate<'a> {
    #[serde(borrow)]
    metadata: Checked<LabelsOnly<'a>>,
    #[serde(borrow)]
    spec: Checked<RulePodSpec<'a>>,
}
decoded_map!(StatefulSetTemplate);

/// The fields of `StatefulSetViewSpec` and `StatefulSetRuleSpec` in one struct, for one pass.
#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
#[allow(dead_code)]
struct StatefulSetSpec<'a> {
    #[serde(borrow)]
    service_name: Checked<Cow<'a, str>>,
    replicas: Checked<i64>,
    #[serde(borrow)]
    selector: Checked<LabelSelector<'a>>,
    #[serde(borrow)]
    template: Checked<StatefulSetTemplate<'a>>,
    #[serde(borrow)]
    ordinals: Checked<Ordinals<'a>>,
    #[serde(borrow)]
    pod_management_policy: Checked<Cow<'a, str>>,
    #[serde(borrow)]
    update_strategy: Checked<UpdateStrategy<'a>>,
    #[serde(borrow)]
    volume_claim_templates: Checked<Vec<Checked<ClaimTemplate<'a>>>>,
    #[serde(borrow)]
    persistent_volume_claim_retention_policy: Checked<RetentionPolicy<'a>>,
}
decoded_map!(StatefulSetSpec);

/// An object's metadata and spec in one pass.
#[derive(Deserialize)]
#[serde(bound(deserialize = "Checked<T>: Deserialize<'de>"))]
struct ObjectOf<'a, T> {
    #[serde(borrow, default)]
    metadata: Metadata<'a>,
    #[serde(default)]
    spec: Checked<T>,
}

/// A handler's read of one object: what each way decodes.
#[derive(Clone, Copy)]
enum Read {
    /// The StatefulSet rules: the view's spec and the rules' spec.
    StatefulSet,
    /// Identity injection: the pod's identity spec.
    PodCreate,
}

fn via_value(raw: &RawValue, shape: &request::Shape, read: Read) -> usize {
    let value = decode_raw(raw, shape).expect("decodes");
    let object = into_object(value).expect("an object");
    let spec = object.data.get("spec");
    let kept = object.metadata.labels.as_ref().map_or(0, |l| l.len());
    match read {
        Read::StatefulSet => {
            let view: Checked<StatefulSetViewSpec> = checked(spec);
            let rules: Checked<StatefulSetRuleSpec> = checked(spec);
            kept + usize::from(view.is_present()) + usize::from(rules.is_present())
        }
        Read::PodCreate => {
            let identity: Checked<PodIdentitySpec> = checked(spec);
            kept + usize::from(identity.is_present())
        }
    }
}

fn direct(raw: &RawValue, read: Read) -> usize {
    let text = raw.get();
    let meta: MetadataOf = serde_json::from_str(text).expect("metadata");
    let kept = match &meta.metadata.labels {
        Checked::Found(labels) => labels.0.len(),
        _ => 0,
    };
    match read {
        Read::StatefulSet => {
            let view: SpecOf<StatefulSetViewSpec> = serde_json::from_str(text).expect("view");
            let rules: SpecOf<StatefulSetRuleSpec> = serde_json::from_str(text).expect("rules");
            kept + usize::from(view.spec.is_present()) + usize::from(rules.spec.is_present())
        }
        Read::PodCreate => {
            let identity: SpecOf<PodIdentitySpec> = serde_json::from_str(text).expect("identity");
            kept + usize::from(identity.spec.is_present())
        }
    }
}

/// Every struct from one pass over the text: the design a single decode would take.
fn one_pass(raw: &RawValue, read: Read) -> usize {
    fn labels(meta: &Metadata) -> usize {
        match &meta.labels {
            Checked::Found(labels) => labels.0.len(),
            _ => 0,
        }
    }
    let text = raw.get();
    match read {
        Read::StatefulSet => {
            let object: ObjectOf<StatefulSetSpec> = serde_json::from_str(text).expect("object");
            // The view and the rules: two structs, the same presence.
            labels(&object.metadata) + 2 * usize::from(object.spec.is_present())
        }
        Read::PodCreate => {
            let object: ObjectOf<PodIdentitySpec> = serde_json::from_str(text).expect("object");
            labels(&object.metadata) + usize::from(object.spec.is_present())
        }
    }
}

struct Measured {
    time: Duration,
    calls: usize,
    bytes: usize,
}

fn measure(decode: &dyn Fn() -> usize) -> Measured {
    std::hint::black_box(decode());
    let (calls, bytes) = (counting::calls(), counting::bytes());
    std::hint::black_box(decode());
    let counted = (counting::calls() - calls, counting::bytes() - bytes);
    Measured {
        time: timing::median_time(decode),
        calls: counted.0,
        bytes: counted.1,
    }
}

/// `request.object` of a review body, as its text.
fn object_of(body: &[u8]) -> Box<RawValue> {
    #[derive(Deserialize)]
    struct Review {
        request: Request,
    }
    #[derive(Deserialize)]
    struct Request {
        object: Box<RawValue>,
    }
    let review: Review = serde_json::from_slice(body).expect("a review with request.object");
    review.request.object
}

fn main() {
    let bodies = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bodies");
    println!(
        "{:<16} {:<10} {:>10} {:>8} {:>10}",
        "object", "way", "time", "allocs", "bytes"
    );
    for (name, group, kind, endpoint, read) in [
        (
            "sts-create-ok",
            "apps",
            "StatefulSet",
            Endpoint::Validate,
            Read::StatefulSet,
        ),
        ("pod-create", "", "Pod", Endpoint::Mutate, Read::PodCreate),
    ] {
        let path = bodies.join(format!("{name}.json"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw = object_of(&body);
        let plan = request::plan(endpoint, group, kind, Operation::Create).expect("a handler");
        assert_eq!(via_value(&raw, plan.object, read), direct(&raw, read));
        assert_eq!(via_value(&raw, plan.object, read), one_pass(&raw, read));
        let ways: [(&str, &dyn Fn() -> usize); 3] = [
            ("via-value", &|| via_value(&raw, plan.object, read)),
            ("direct", &|| direct(&raw, read)),
            ("one-pass", &|| one_pass(&raw, read)),
        ];
        for (way, decode) in ways {
            let m = measure(decode);
            println!(
                "{name:<16} {way:<10} {:>10} {:>8} {:>10}",
                format!("{:.1?}", m.time),
                m.calls,
                m.bytes
            );
        }
    }
}

//! Two ways from an object's text in a review body to the typed parts its handler reads,
//! measured in one run: the webhook's decoder against a decode through a JSON tree.
//!
//!     cargo bench --bench object_decoding
//!
//! - `via-value` goes through a JSON tree, as `check` reads a manifest's object: the whole
//!   object parsed into a `serde_json::Value`, metadata taken from it as a `DynamicObject`
//!   (`manifest::into_object`), the typed spec decoded from the `Value` (`shape::checked`).
//! - `subject` is the webhook's decoder (`subject::ObjectType::read`): metadata and the typed
//!   spec straight from the text, in one pass.
//!
//! Both stop at the typed parts: building the views from them is the same code either way.
//! For each object it prints the time per decode (median of batches), allocations and bytes
//! per decode. Allocation counts are deterministic; times vary with the machine, so compare
//! the two rows of one run.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use std::path::Path;
use std::time::Duration;
use sts_guard::manifest::into_object;
use sts_guard::model::{PodIdentitySpec, StatefulSetSpec};
use sts_guard::shape::{Checked, checked};
use sts_guard::subject::{ObjectType, Read, Subject};

#[path = "common/counting.rs"]
mod counting;
#[path = "common/timing.rs"]
mod timing;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// What a decode yields: the metadata and whether a spec came.
type Parts = (ObjectMeta, bool);

/// What both ways must agree on: what the rules read of metadata (the tree keeps the rest of
/// it too), and whether a spec came.
fn read_by_rules((meta, spec): &Parts) -> impl PartialEq + std::fmt::Debug + '_ {
    (
        &meta.name,
        &meta.namespace,
        &meta.generate_name,
        &meta.labels,
        &meta.owner_references,
        *spec,
    )
}

/// A handler's read of one object.
#[derive(Clone, Copy)]
enum Object {
    /// The StatefulSet rules and view: their spec.
    StatefulSet,
    /// Identity injection: the pod's identity spec.
    PodCreate,
}

fn via_value(raw: &RawValue, object: Object) -> Parts {
    let value: Value = serde_json::from_str(raw.get()).expect("decodes");
    let decoded = into_object(value).expect("an object");
    let spec = decoded.data.get("spec");
    let present = match object {
        Object::StatefulSet => checked::<StatefulSetSpec>(spec).is_present(),
        Object::PodCreate => checked::<PodIdentitySpec>(spec).is_present(),
    };
    (decoded.metadata, present)
}

fn subject(raw: &RawValue, object: Object) -> Parts {
    let object_type = match object {
        Object::StatefulSet => ObjectType::StatefulSet,
        Object::PodCreate => ObjectType::PodCreate,
    };
    let mut de = serde_json::Deserializer::from_str(raw.get());
    match object_type.read(&mut de).expect("decodes") {
        Read::Object(Subject::StatefulSet(sts)) => (sts.metadata, sts.spec.is_present()),
        Read::Object(Subject::PodCreate(pod)) => {
            let spec: Checked<PodIdentitySpec> = pod.identity_spec();
            (pod.metadata, spec.is_present())
        }
        _ => panic!("not the object planned"),
    }
}

struct Measured {
    time: Duration,
    calls: usize,
    bytes: usize,
}

fn measure(decode: &dyn Fn() -> Parts) -> Measured {
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
    for (name, object) in [
        ("sts-create-ok", Object::StatefulSet),
        ("pod-create", Object::PodCreate),
    ] {
        let path = bodies.join(format!("{name}.json"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let raw = object_of(&body);
        let (tree, direct) = (via_value(&raw, object), subject(&raw, object));
        assert_eq!(read_by_rules(&tree), read_by_rules(&direct));
        let ways: [(&str, &dyn Fn() -> Parts); 2] = [
            ("via-value", &|| via_value(&raw, object)),
            ("subject", &|| subject(&raw, object)),
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

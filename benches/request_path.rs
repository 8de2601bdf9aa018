//! The request path without transport: `admission::review` (decode, evaluate, encode) on each
//! benchmark body, with the binary's allocator wrapped in a counter.
//!
//!     cargo bench --bench request_path
//!     STS_GUARD_BENCH_ONLY=mutate/pod-create cargo bench --bench request_path   # rows whose
//!                                                     # "endpoint/body" contains this text
//!
//! For each endpoint and body it prints the time per review (median of batches), the number
//! of allocations and the bytes allocated per review, and the peak growth of live heap during
//! one review. The bodies are the project's own (`tests/fixtures/bodies`, shaped as
//! kube-apiserver sends them; `STS_GUARD_BENCH_BODIES=../shared/bench/bodies` takes the
//! side-by-side kit's, which have the same names), `sts-create-ok` made the UPDATE of a
//! rollout (`sts-update-rollout`), and two generated hostile pods: 7,000 and 47,000 containers
//! with one env var each. The inventory is that directory's `services.manifest.json`, as
//! `serve --manifests` loads it.
//! Allocation counts are deterministic; times vary with the machine.

use std::path::{Path, PathBuf};
use std::time::Duration;
use sts_guard::admission;
use sts_guard::config::Config;
use sts_guard::engine::Endpoint;
use sts_guard::inventory::load_inventory_paths;

#[path = "common/counting.rs"]
mod counting;
#[path = "common/timing.rs"]
mod timing;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

/// A pod of StatefulSet `web` with `containers` containers of one env var each, as a
/// kube-apiserver CREATE review (its field order: kind and operation before the object).
fn wide_pod(containers: usize) -> Vec<u8> {
    let containers: Vec<serde_json::Value> = (0..containers)
        .map(|i| {
            serde_json::json!({"name": format!("c{i}"), "image": "busybox",
                "env": [{"name": "A", "value": "1"}]})
        })
        .collect();
    let object = serde_json::json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-3", "namespace": "default",
            "labels": {"apps.kubernetes.io/pod-index": "3"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
        "spec": {"subdomain": "web", "containers": containers}});
    format!(
        r#"{{"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","request":{{"uid":"wide","kind":{{"group":"","version":"v1","kind":"Pod"}},"resource":{{"group":"","version":"v1","resource":"pods"}},"name":"web-3","namespace":"default","operation":"CREATE","userInfo":{{"username":"system:serviceaccount:kube-system:statefulset-controller"}},"object":{object},"oldObject":null,"dryRun":false,"options":{{"kind":"CreateOptions","apiVersion":"meta.k8s.io/v1"}}}}}}"#
    )
    .into_bytes()
}

/// `create` (a StatefulSet CREATE) as the UPDATE of that StatefulSet from an older image: a
/// rollout, the old object viewed and judged (grandfathering) beside the new. `None` when the
/// body is not shaped so (operation CREATE, `oldObject: null`, a container image).
fn statefulset_update(create: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(create).ok()?;
    let review: serde_json::Value = serde_json::from_str(text).ok()?;
    let mut old = review["request"]["object"].clone();
    let image = old.pointer_mut("/spec/template/spec/containers/0/image")?;
    *image = format!("{}-previous", image.as_str()?).into();
    // Only the two values change: the body keeps kube-apiserver's field order.
    let text = replace_value(text, "operation", "\"CREATE\"", "\"UPDATE\"")?;
    let text = replace_value(&text, "oldObject", "null", &old.to_string())?;
    Some(text.into_bytes())
}

/// `text` with the first `"key": value` whose value is `old` given the value `new`.
fn replace_value(text: &str, key: &str, old: &str, new: &str) -> Option<String> {
    let key_at = text.find(&format!("\"{key}\""))? + key.len() + 2;
    let rest = &text[key_at..];
    let value_at = key_at + rest.find(|c: char| c != ':' && !c.is_whitespace())?;
    text[value_at..].starts_with(old).then(|| {
        format!(
            "{}{new}{}",
            &text[..value_at],
            &text[value_at + old.len()..]
        )
    })
}

struct Measured {
    time: Duration,
    calls: usize,
    bytes: usize,
    peak: usize,
}

fn measure(
    body: &[u8],
    endpoint: Endpoint,
    inventory: &sts_guard::inventory::StaticInventory,
    config: &Config,
) -> Measured {
    let review =
        || admission::review(body, inventory, config, endpoint).expect("a readable review");
    // One review counted alone.
    drop(review());
    let (calls, bytes) = (counting::calls(), counting::bytes());
    let live = counting::reset_peak();
    let reviewed = review();
    let peak = counting::peak() - live;
    let counted = (counting::calls() - calls, counting::bytes() - bytes);
    drop(reviewed);
    Measured {
        time: timing::median_time(review),
        calls: counted.0,
        bytes: counted.1,
        peak,
    }
}

fn main() {
    let kit = match std::env::var_os("STS_GUARD_BENCH_BODIES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bodies"),
    };
    let config = Config::default();
    let services = kit.join("services.manifest.json");
    let inventory = load_inventory_paths(
        &[services.display().to_string()],
        &Default::default(),
        "default",
    )
    .unwrap_or_else(|e| panic!("{}: {e:?}", services.display()));
    let mut bodies: Vec<(String, Vec<u8>)> = Vec::new();
    for name in [
        "sts-create-ok",
        "sts-create-missing-svc",
        "pod-create",
        "pod-delete-force",
    ] {
        let path = kit.join(format!("{name}.json"));
        let body = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        if name == "sts-create-ok"
            && let Some(update) = statefulset_update(&body)
        {
            bodies.push(("sts-update-rollout".to_string(), update));
        }
        bodies.push((name.to_string(), body));
    }
    let only = std::env::var("STS_GUARD_BENCH_ONLY").unwrap_or_default();
    for containers in [7_000, 47_000] {
        let name = format!("pod, {containers} containers");
        if ["validate", "mutate"]
            .iter()
            .any(|e| format!("{e}/{name}").contains(&only))
        {
            bodies.push((name, wide_pod(containers)));
        }
    }
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        for (name, body) in &bodies {
            if !format!("{}/{name}", endpoint.as_str()).contains(&only) {
                continue;
            }
            let m = measure(body, endpoint, &inventory, &config);
            println!(
                "{:<9} {:<28} {:>10.1} {:>11} {:>8} {:>12} {:>11.1}",
                endpoint.as_str(),
                name,
                body.len() as f64 / 1000.0,
                format!("{:.1?}", m.time),
                m.calls,
                m.bytes,
                m.peak as f64 / 1024.0,
            );
        }
    }
}

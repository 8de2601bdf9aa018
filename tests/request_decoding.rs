//! The one-pass request decoder (envelope borrowed, objects decoded only as far as the handler
//! reads them) decides exactly as decoding the whole review with kube-rs's types does, on
//! every kind, operation and endpoint, in kube-apiserver's field order (objects after kind
//! and operation, decoded as they are read) and with the objects first (kept raw, decoded
//! afterwards).

mod common;

use common::{Obj, inventory, node, parse_request, review_json, sts, sts_pod, svc};
use serde_json::{Value, json};
use std::path::PathBuf;
use sts_guard::admission::{self, Decoded};
use sts_guard::config::Config;
use sts_guard::engine::{Decision, Endpoint, evaluate, evaluate_review};
use sts_guard::inventory::StaticInventory;

/// The fields of a decision a response is made of.
fn essence(d: &Decision) -> String {
    format!(
        "allowed={} violations={:?} notes={:?} lookup_denials={:?} invalid={:?} patch={:?} mutated_by={:?} skipped={:?}",
        d.allowed(),
        d.violations,
        d.notes,
        d.lookup_denials,
        d.invalid,
        d.patch,
        d.mutated_by,
        d.skipped
    )
}

/// The review's text in kube-apiserver's field order (Go writes struct fields in declaration
/// order: kind and operation before the objects).
fn apiserver_order(review: &Value) -> Vec<u8> {
    const ORDER: [&str; 15] = [
        "uid",
        "kind",
        "resource",
        "subResource",
        "requestKind",
        "requestResource",
        "requestSubResource",
        "name",
        "namespace",
        "operation",
        "userInfo",
        "object",
        "oldObject",
        "dryRun",
        "options",
    ];
    let request = review["request"].as_object().unwrap();
    let mut fields: Vec<String> = ORDER
        .iter()
        .filter_map(|k| request.get(*k).map(|v| format!("{:?}:{v}", k)))
        .collect();
    fields.extend(
        request
            .iter()
            .filter(|(k, _)| !ORDER.contains(&k.as_str()))
            .map(|(k, v)| format!("{}:{v}", Value::String(k.clone()))),
    );
    format!(
        "{{\"kind\":{},\"apiVersion\":{},\"request\":{{{}}}}}",
        review["kind"],
        review["apiVersion"],
        fields.join(",")
    )
    .into_bytes()
}

/// The review's text with the objects first (serde_json writes keys sorted: `object` and
/// `oldObject` come before `operation`).
fn objects_first(review: &Value) -> Vec<u8> {
    let text = serde_json::to_vec(review).unwrap();
    let position = |needle: &str| {
        let needle = needle.as_bytes();
        text.windows(needle.len()).position(|w| w == needle)
    };
    if let (Some(object), Some(operation)) = (position("\"object\":"), position("\"operation\":")) {
        assert!(object < operation, "sorted keys put the object first");
    }
    text
}

fn shaped_decision(
    body: &[u8],
    endpoint: Endpoint,
    inv: &StaticInventory,
    config: &Config,
) -> Decision {
    match admission::decode(body, endpoint).unwrap_or_else(|e| panic!("{e}")) {
        Decoded::Evaluate(review, _) => evaluate_review(&review, inv, config),
        Decoded::Answered(reviewed) => reviewed.decision,
    }
}

fn assert_same_decisions(name: &str, review: &Value, inv: &StaticInventory, config: &Config) {
    let whole = parse_request(review);
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let expected = essence(&evaluate(&whole, inv, config, endpoint));
        let planned = apiserver_order(review);
        let raw = objects_first(review);
        for (order, body) in [("apiserver order", &planned), ("objects first", &raw)] {
            let got = essence(&shaped_decision(body, endpoint, inv, config));
            assert_eq!(got, expected, "{name}, {endpoint:?}, {order}");
        }
        // And the responses are the same bytes, whichever the order.
        let a = admission::review(&planned, inv, config, endpoint).unwrap();
        let b = admission::review(&raw, inv, config, endpoint).unwrap();
        assert_eq!(
            String::from_utf8_lossy(&a.body),
            String::from_utf8_lossy(&b.body),
            "{name}, {endpoint:?}"
        );
    }
}

fn admin(operation: &str, object: Option<&Obj>, old: Option<&Obj>) -> Value {
    let options = match operation {
        "CREATE" => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
        "UPDATE" => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
        _ => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
    };
    review_json(
        operation,
        object,
        old,
        "kubernetes-admin",
        &["system:masters"],
        options,
    )
}

fn force_delete(pod: &Obj, user: &str) -> Value {
    review_json(
        "DELETE",
        None,
        Some(pod),
        user,
        &["system:authenticated"],
        json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "gracePeriodSeconds": 0}),
    )
}

/// Reviews of every kind and operation the rules see, and some they do not.
fn reviews() -> Vec<(String, Value)> {
    let noise = |o: Obj| {
        o.set(
            "metadata.managedFields",
            json!([{"manager": "kubectl", "fieldsV1": {"f:spec": {}}}]),
        )
        .set(
            "metadata.annotations",
            json!({"kubectl.kubernetes.io/last-applied-configuration": "{\"a\":\"\\\"{[\"}", "other": "x"}),
        )
        .set("status", json!({"replicas": 3, "conditions": [{"type": "Ready"}]}))
    };
    let shared_claim = sts("db")
        .set(
            "spec.template.spec.volumes",
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}},
                   {"name": "tmpl", "persistentVolumeClaim": {"claimName": "x"}},
                   {"name": "cfg", "configMap": {"name": "c"}}]),
        )
        .set(
            "spec.volumeClaimTemplates",
            json!([{"metadata": {"name": "tmpl"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]),
        )
        .set(
            "spec.persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": "Delete", "whenScaled": "Retain"}),
        );
    let changed = sts("web").set(
        "spec.template.spec.containers",
        json!([{"name": "nginx", "image": "nginx:1.28"}]),
    );
    let canary = changed
        .clone()
        .set("metadata.annotations", json!({"sts-guard.io/canary": "1"}));
    let far_partition = changed.clone().set(
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 9}}),
    );
    let web_pod = |containers: Value| {
        sts_pod(3, "n1")
            .remove("spec.nodeName")
            .set("spec.containers", containers)
    };
    let deployment = Obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "default"}, "spec": {"replicas": 1}}));
    let config_map = Obj(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "b"}}));
    let mut cases = vec![
        ("sts create ok", admin("CREATE", Some(&noise(sts("web"))), None)),
        (
            "sts create missing service",
            admin("CREATE", Some(&sts("web").set("spec.serviceName", json!("ngnix"))), None),
        ),
        (
            "sts create without serviceName",
            admin("CREATE", Some(&sts("web").remove("spec.serviceName")), None),
        ),
        (
            "sts create non-headless service",
            admin("CREATE", Some(&sts("web").set("spec.serviceName", json!("web-svc"))), None),
        ),
        ("sts create shared claim", admin("CREATE", Some(&shared_claim), None)),
        ("sts create spec 5", admin("CREATE", Some(&sts("web").set("spec", json!(5))), None)),
        (
            "sts create replicas two",
            admin("CREATE", Some(&sts("web").set("spec.replicas", json!("two"))), None),
        ),
        (
            "sts create volumes a map",
            admin("CREATE", Some(&sts("web").set("spec.template.spec.volumes", json!({"a": 1}))), None),
        ),
        (
            "sts create partition set",
            admin(
                "CREATE",
                Some(&sts("web").set("spec.updateStrategy", json!({"rollingUpdate": null}))),
                None,
            ),
        ),
        ("sts update unchanged", admin("UPDATE", Some(&sts("web")), Some(&sts("web")))),
        ("sts update template", admin("UPDATE", Some(&changed), Some(&sts("web")))),
        ("sts update canary", admin("UPDATE", Some(&canary), Some(&sts("web")))),
        ("sts update far partition", admin("UPDATE", Some(&far_partition), Some(&sts("web")))),
        (
            "sts update already broken",
            admin(
                "UPDATE",
                Some(&changed.clone().set("spec.serviceName", json!("gone"))),
                Some(&sts("web").set("spec.serviceName", json!("gone"))),
            ),
        ),
        ("sts delete", admin("DELETE", None, Some(&noise(sts("web"))))),
        ("svc create headless", admin("CREATE", Some(&svc("other")), None)),
        (
            "svc create not headless",
            admin("CREATE", Some(&svc("nginx").set("spec.clusterIP", json!("10.0.0.9"))), None),
        ),
        (
            "svc update drops selector",
            admin("UPDATE", Some(&svc("nginx").remove("spec.selector")), Some(&svc("nginx"))),
        ),
        ("svc delete governing", admin("DELETE", None, Some(&svc("nginx")))),
        ("svc delete other", admin("DELETE", None, Some(&svc("other")))),
        ("pod force delete by admin", force_delete(&noise(sts_pod(1, "n1")), "alice")),
        ("pod force delete by kubelet", force_delete(&sts_pod(1, "n1"), "system:node:n1")),
        (
            "pod force delete with break-glass",
            force_delete(
                &sts_pod(1, "n1").set(
                    "metadata.annotations",
                    json!({"sts-guard.io/allow-force-delete": "true"}),
                ),
                "alice",
            ),
        ),
        ("pod force delete on a gone node", force_delete(&sts_pod(1, "gone"), "alice")),
        ("pod graceful delete", admin("DELETE", None, Some(&sts_pod(1, "n1")))),
        ("pod create plain", admin("CREATE", Some(&noise(sts_pod(3, "n1"))), None)),
        (
            "pod create env variants",
            admin(
                "CREATE",
                Some(&web_pod(json!([
                    {"name": "a", "image": "x", "env": [{"name": "POD_NAME", "value": "mine"}, {"name": "a/b~c", "value": "1"}]},
                    {"name": "b", "image": "x", "env": null},
                    {"name": "c", "image": "x", "envFrom": [{"prefix": "POD_", "configMapRef": {"name": "m"}}]},
                    {"name": "d", "image": "x", "envFrom": [{"secretRef": {"name": "s"}}]}
                ]))
                .set("spec.initContainers", json!([{"name": "init", "image": "x"}]))
                .set("spec.hostname", json!("custom"))),
                None,
            ),
        ),
        (
            "pod create containers a string",
            admin("CREATE", Some(&web_pod(json!("x"))), None),
        ),
        (
            "pod create opted out",
            admin(
                "CREATE",
                Some(&sts_pod(3, "n1").set(
                    "metadata.annotations",
                    json!({"sts-guard.io/inject-identity": "false"}),
                )),
                None,
            ),
        ),
        (
            "pod create not a statefulset pod",
            admin("CREATE", Some(&sts_pod(3, "n1").remove("metadata.ownerReferences")), None),
        ),
        ("pod update", admin("UPDATE", Some(&sts_pod(3, "n1")), Some(&sts_pod(3, "n1")))),
        ("deployment create", admin("CREATE", Some(&deployment), None)),
        ("configmap delete", admin("DELETE", None, Some(&config_map))),
        ("node update", admin("UPDATE", Some(&node("n1")), Some(&node("n1")))),
    ];
    let mut connect = admin("CONNECT", Some(&sts_pod(1, "n1")), None);
    connect["request"]["subResource"] = json!("exec");
    cases.push(("pod connect exec", connect));
    let mut scale = admin("UPDATE", Some(&sts("web")), Some(&sts("web")));
    scale["request"]["subResource"] = json!("scale");
    cases.push(("sts update scale subresource", scale));
    let mut out: Vec<(String, Value)> = cases
        .into_iter()
        .map(|(name, review)| (name.to_string(), review))
        .collect();
    // The project's own fixtures, shaped as clusters send them, and the README's examples.
    for dir in [
        common::fixture("admission"),
        common::fixture("bodies"),
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/admission"),
    ] {
        out.extend(reviews_in_dir(&dir));
    }
    out
}

/// The AdmissionReviews in `dir`, without the Services manifest a body directory carries.
fn reviews_in_dir(dir: &std::path::Path) -> Vec<(String, Value)> {
    let reviews = common::reviews_in(dir, Some("services"));
    assert!(!reviews.is_empty(), "{}: no reviews", dir.display());
    reviews
}

/// The third-party reviews: captured from clusters, and the side-by-side kit's bodies.
fn shared_reviews() -> Vec<(String, Value)> {
    let mut out = reviews_in_dir(&common::shared("corpus/admission"));
    out.extend(reviews_in_dir(&common::shared("bench/bodies")));
    out
}

fn fixtures() -> StaticInventory {
    inventory(&[
        svc("nginx"),
        svc("web-svc").set("spec.clusterIP", json!("10.0.0.1")),
        sts("web"),
        node("n1"),
    ])
}

#[test]
fn the_shaped_decoder_decides_as_the_whole_review_does() {
    let inv = fixtures();
    let config = Config::default();
    let reviews = reviews();
    assert!(reviews.len() > 40, "{} reviews", reviews.len());
    for (name, review) in &reviews {
        assert_same_decisions(name, review, &inv, &config);
    }
}

/// The Services of a body directory's manifest, as `serve --manifests` loads them.
fn services_of(manifest: &std::path::Path) -> StaticInventory {
    sts_guard::inventory::load_inventory_paths(
        &[manifest.display().to_string()],
        &Default::default(),
        "default",
    )
    .unwrap_or_else(|e| panic!("{}: {e:?}", manifest.display()))
}

#[test]
fn the_bodies_are_decided_as_a_whole_review_with_their_services() {
    let inv = services_of(&common::fixture("bodies/services.manifest.json"));
    let config = Config::default();
    for (name, review) in reviews() {
        assert_same_decisions(&name, &review, &inv, &config);
    }
}

#[test]
#[ignore = "third-party suite: needs ../shared (.ci/run runs it with --ignored)"]
fn the_kit_and_the_corpus_are_decided_as_a_whole_review_with_the_kits_services() {
    let inv = services_of(&common::shared("bench/bodies/services.manifest.json"));
    let config = Config::default();
    let shared = shared_reviews();
    assert_eq!(
        shared.len(),
        10,
        "6 captured requests and the kit's 4 bodies"
    );
    for (name, review) in shared.iter().chain(&reviews()) {
        assert_same_decisions(name, review, &inv, &config);
        assert_same_decisions(name, review, &fixtures(), &config);
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let body = apiserver_order(review);
            let reviewed = admission::review(&body, &inv, &config, endpoint).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&reviewed.body),
                String::from_utf8_lossy(&response_as_before(review, &reviewed.decision)),
                "{name}, {endpoint:?}"
            );
        }
    }
}

#[test]
fn a_request_no_rule_reads_is_answered_without_its_objects() {
    let inv = fixtures();
    // A Deployment whose object is not even an object: nothing reads it, so nothing fails.
    let mut review = admin(
        "CREATE",
        Some(&Obj(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "default"}}))),
        None,
    );
    review["request"]["object"] = json!("not an object");
    let body = apiserver_order(&review);
    let reviewed = admission::review(&body, &inv, &Config::default(), Endpoint::Validate).unwrap();
    let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    assert_eq!(answer["response"]["uid"], review["request"]["uid"]);
    // Reading stops at that object: a body cut off after it is still answered.
    let cut = body.len() - 40;
    let reviewed =
        admission::review(&body[..cut], &inv, &Config::default(), Endpoint::Validate).unwrap();
    let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
    assert_eq!(answer["response"]["allowed"], true);
    // One a rule reads is read to its end: cut off, it is a bad review.
    let whole = apiserver_order(&admin("CREATE", Some(&sts("web")), None));
    let cut = &whole[..whole.len() - 40];
    assert!(admission::review(cut, &inv, &Config::default(), Endpoint::Validate).is_err());
    // The same object on a StatefulSet is read, and refused with its field named.
    let mut review = admin("CREATE", Some(&sts("web")), None);
    review["request"]["object"] = json!("not an object");
    let err = admission::review(
        &apiserver_order(&review),
        &inv,
        &Config::default(),
        Endpoint::Validate,
    )
    .err()
    .expect("an unreadable object");
    assert_eq!(err.0, "request.object: not an object");
}

#[test]
fn the_response_echoes_the_reviews_version_and_encodes_the_patch_in_base64() {
    let inv = fixtures();
    let mut review = admin("CREATE", Some(&sts_pod(3, "n1")), None);
    review["apiVersion"] = json!("admission.k8s.io/v1beta1");
    let body = apiserver_order(&review);
    let reviewed = admission::review(&body, &inv, &Config::default(), Endpoint::Mutate).unwrap();
    let text = String::from_utf8(reviewed.body).unwrap();
    assert!(
        text.starts_with(r#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"allowed":true,"patch":""#),
        "{text}"
    );
    let answer: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(answer["response"]["patchType"], "JSONPatch");
    use base64::Engine;
    let patch = base64::engine::general_purpose::STANDARD
        .decode(answer["response"]["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
    let mut pod = sts_pod(3, "n1").value();
    json_patch::patch(&mut pod, &patch).unwrap();
    let env = &pod["spec"]["containers"][0]["env"];
    assert!(
        env.as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_ORDINAL" && e["value"] == "3"),
        "{env}"
    );
}

/// The response as earlier releases built it: kube-rs's `AdmissionResponse`, serialized
/// through a `Value` (so keys sorted), the patch re-encoded as base64.
fn response_as_before(review: &Value, decision: &Decision) -> Vec<u8> {
    use base64::Engine;
    use kube_core::Status;
    use kube_core::admission::AdmissionResponse;
    let request = parse_request(review);
    let mut response = AdmissionResponse::from(&request);
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
        response = denied;
    } else if let Some(patch) = &decision.patch {
        response = response.with_patch(patch.clone()).unwrap();
    }
    let patch = response.patch.take();
    let mut value = serde_json::to_value(response.into_review()).unwrap();
    if let Some(patch) = patch {
        let encoded = base64::engine::general_purpose::STANDARD.encode(patch);
        value["response"]["patch"] = Value::String(encoded);
    }
    serde_json::to_vec(&value).unwrap()
}

#[test]
fn responses_are_byte_for_byte_what_earlier_releases_wrote() {
    let inv = fixtures();
    let config = Config::default();
    for (name, review) in reviews() {
        for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
            let body = apiserver_order(&review);
            let reviewed = admission::review(&body, &inv, &config, endpoint).unwrap();
            assert_eq!(
                String::from_utf8_lossy(&reviewed.body),
                String::from_utf8_lossy(&response_as_before(&review, &reviewed.decision)),
                "{name}, {endpoint:?}"
            );
        }
    }
}

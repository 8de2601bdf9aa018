//! `pod-force-delete` and the mutations on the real AdmissionReview requests captured from
//! clusters (shared/corpus/admission). None of the captures is a StatefulSet pod, so each test
//! adapts one by adding a StatefulSet controller ownerReference (and says so).

mod common;

use common::inventory;
use common::node;
use common::parse_request;
use serde_json::{Value, json};
use std::path::PathBuf;
use sts_guard::config::Config;
use sts_guard::engine::{Decision, Endpoint, evaluate};
use sts_guard::inventory::StaticInventory;
use sts_guard::rules::RuleId;

fn corpus(name: &str) -> Value {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/corpus/admission")
        .join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let value: Value = serde_json::from_str(&text).unwrap();
    // The kyverno fixtures are bare AdmissionRequests: wrap them as the apiserver sends them.
    if value.get("request").is_some() {
        value
    } else {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": value})
    }
}

/// Makes the pod in `field` (object or oldObject) a pod of StatefulSet `nginx-sts`.
fn make_statefulset_pod(mut review: Value, field: &str) -> Value {
    review["request"][field]["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "nginx-sts",
        "uid": "0f6f8e0e-1111-4222-8333-444455556666", "controller": true, "blockOwnerDeletion": true
    }]);
    review
}

/// The decision on a captured review, with the default config.
fn decide_on(review: &Value, inventory: &StaticInventory, endpoint: Endpoint) -> Decision {
    evaluate(
        &parse_request(review),
        inventory,
        &Config::default(),
        endpoint,
    )
}

#[test]
fn kubelet_final_grace_zero_delete_is_allowed() {
    let inv = inventory(&[node("ai-ice-vm05")]);
    let review = make_statefulset_pod(
        corpus("openyurt-delete-pod-by-kubelet-grace0.admissionreview-v1.json"),
        "oldObject",
    );
    let d = decide_on(&review, &inv, Endpoint::Validate);
    assert!(d.allowed(), "{}", d.denial_message());
    assert!(d.violations.is_empty());
}

#[test]
fn the_same_grace_zero_delete_by_a_user_is_denied() {
    let inv = inventory(&[node("ai-ice-vm05")]);
    let mut review = make_statefulset_pod(
        corpus("openyurt-delete-pod-by-kubelet-grace0.admissionreview-v1.json"),
        "oldObject",
    );
    review["request"]["userInfo"] = json!({"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]});
    let d = decide_on(&review, &inv, Endpoint::Validate);
    assert!(!d.allowed());
    assert_eq!(
        d.denials().map(|v| v.rule).collect::<Vec<_>>(),
        vec![RuleId::PodForceDelete]
    );
    assert!(
        d.denial_message()
            .starts_with("pod-force-delete: Pod default/nginx: ")
    );
}

#[test]
fn unadapted_kubelet_delete_is_not_a_statefulset_pod() {
    let inv = inventory(&[node("ai-ice-vm05")]);
    let mut review = corpus("openyurt-delete-pod-by-kubelet-grace0.admissionreview-v1.json");
    review["request"]["userInfo"]["username"] = json!("kubernetes-admin");
    assert!(decide_on(&review, &inv, Endpoint::Validate).allowed());
}

#[test]
fn node_controller_grace_zero_delete_is_allowed() {
    let inv = inventory(&[node("ai-ice-vm05")]);
    let review = make_statefulset_pod(
        corpus("openyurt-delete-pod-node-controller-grace0.admissionreview-v1.json"),
        "oldObject",
    );
    assert!(decide_on(&review, &inv, Endpoint::Validate).allowed());
}

#[test]
fn graceful_delete_by_an_admin_is_allowed() {
    let inv = inventory(&[node("kind-control-plane")]);
    let review = make_statefulset_pod(
        corpus("kyverno-delete-pod-grace30.admissionrequest.json"),
        "oldObject",
    );
    let d = decide_on(&review, &inv, Endpoint::Validate);
    assert!(d.allowed() && d.violations.is_empty());
}

#[test]
fn status_update_by_the_node_is_not_handled() {
    let review = make_statefulset_pod(
        corpus("kyverno-update-pod-status-by-node.admissionrequest.json"),
        "object",
    );
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let d = decide_on(&review, &inventory(&[]), endpoint);
        assert!(d.allowed() && d.patch.is_none());
    }
}

#[test]
fn captured_pod_creates_are_left_alone_unless_a_statefulset_owns_them() {
    for name in [
        "kube-rs-create-pod-gke-v1.json",
        "openyurt-create-pod.admissionreview-v1.json",
    ] {
        let review = corpus(name);
        let d = decide_on(&review, &inventory(&[]), Endpoint::Mutate);
        assert!(d.allowed() && d.patch.is_none(), "{name}");

        // Adapted: owned by StatefulSet nginx-sts and named nginx-sts-2.
        let mut review = make_statefulset_pod(review, "object");
        review["request"]["object"]["metadata"]["name"] = json!("nginx-sts-2");
        review["request"]["name"] = json!("nginx-sts-2");
        let req = parse_request(&review);
        let d = evaluate(&req, &inventory(&[]), &Config::default(), Endpoint::Mutate);
        let patch = d.patch.expect("identity patch");
        let mut pod = serde_json::to_value(req.object.as_ref().unwrap()).unwrap();
        json_patch::patch(&mut pod, &patch).unwrap();
        let env = &pod["spec"]["containers"][0]["env"];
        let ordinal = env
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == "POD_ORDINAL")
            .unwrap();
        assert_eq!(ordinal["value"], "2", "{name}");
    }
}

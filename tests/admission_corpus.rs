//! `pod-force-delete` and the mutations on pod requests as clusters send them: the project's
//! own fixtures (`tests/fixtures/admission`, run by default) and, as an additional suite, the
//! real AdmissionReview requests captured from clusters (`../shared/corpus/admission`, run by
//! `.ci/run` with `--ignored`). None of them is a StatefulSet pod, so each case adapts one by
//! adding a StatefulSet controller ownerReference (and says so).

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

/// One set of captured pod requests: where it is, which file is which case, and the Nodes the
/// pods ran on.
struct Set {
    dir: fn() -> PathBuf,
    kubelet_delete: &'static str,
    kubelet_node: &'static str,
    node_controller_delete: &'static str,
    graceful_delete: &'static str,
    graceful_node: &'static str,
    status_update: &'static str,
    /// Pod CREATEs whose first container gets the identity variables once adapted.
    pod_creates: &'static [&'static str],
    /// The namespace/name the denial message names for the kubelet's pod.
    kubelet_pod: &'static str,
}

const OWN: Set = Set {
    dir: || common::fixture("admission"),
    kubelet_delete: "pod-delete-by-kubelet-grace0.json",
    kubelet_node: "n1",
    node_controller_delete: "pod-delete-by-node-controller-grace0.json",
    graceful_delete: "pod-delete-grace30.request.json",
    graceful_node: "n1",
    status_update: "pod-status-update-by-node.request.json",
    pod_creates: &["pod-create-by-replicaset.json"],
    kubelet_pod: "demo/frontend-7f9c6b5d48-x2k9q",
};

const CORPUS: Set = Set {
    dir: || common::shared("corpus/admission"),
    kubelet_delete: "openyurt-delete-pod-by-kubelet-grace0.admissionreview-v1.json",
    kubelet_node: "ai-ice-vm05",
    node_controller_delete: "openyurt-delete-pod-node-controller-grace0.admissionreview-v1.json",
    graceful_delete: "kyverno-delete-pod-grace30.admissionrequest.json",
    graceful_node: "kind-control-plane",
    status_update: "kyverno-update-pod-status-by-node.admissionrequest.json",
    pod_creates: &[
        "kube-rs-create-pod-gke-v1.json",
        "openyurt-create-pod.admissionreview-v1.json",
    ],
    kubelet_pod: "default/nginx",
};

fn load(set: &Set, name: &str) -> Value {
    let path = (set.dir)().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    // Some captures are bare AdmissionRequests: wrap them as the apiserver sends them.
    common::wrap_request(serde_json::from_str(&text).unwrap())
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

fn kubelet_final_grace_zero_delete_is_allowed_in(set: &Set) {
    let inv = inventory(&[node(set.kubelet_node)]);
    let review = make_statefulset_pod(load(set, set.kubelet_delete), "oldObject");
    let d = decide_on(&review, &inv, Endpoint::Validate);
    assert!(d.allowed(), "{}", d.denial_message());
    assert!(d.violations.is_empty());
}

fn the_same_grace_zero_delete_by_a_user_is_denied_in(set: &Set) {
    let inv = inventory(&[node(set.kubelet_node)]);
    let mut review = make_statefulset_pod(load(set, set.kubelet_delete), "oldObject");
    review["request"]["userInfo"] = json!({"username": "kubernetes-admin", "groups": ["system:masters", "system:authenticated"]});
    let d = decide_on(&review, &inv, Endpoint::Validate);
    assert!(!d.allowed());
    assert_eq!(
        d.denials().map(|v| v.rule).collect::<Vec<_>>(),
        vec![RuleId::PodForceDelete]
    );
    let prefix = format!("pod-force-delete: Pod {}: ", set.kubelet_pod);
    assert!(
        d.denial_message().starts_with(&prefix),
        "{}",
        d.denial_message()
    );
}

fn unadapted_kubelet_delete_is_not_a_statefulset_pod_in(set: &Set) {
    let inv = inventory(&[node(set.kubelet_node)]);
    let mut review = load(set, set.kubelet_delete);
    review["request"]["userInfo"]["username"] = json!("kubernetes-admin");
    assert!(decide_on(&review, &inv, Endpoint::Validate).allowed());
}

fn node_controller_grace_zero_delete_is_allowed_in(set: &Set) {
    let inv = inventory(&[node(set.kubelet_node)]);
    let review = make_statefulset_pod(load(set, set.node_controller_delete), "oldObject");
    assert!(decide_on(&review, &inv, Endpoint::Validate).allowed());
}

fn graceful_delete_by_an_admin_is_allowed_in(set: &Set) {
    let inv = inventory(&[node(set.graceful_node)]);
    let review = make_statefulset_pod(load(set, set.graceful_delete), "oldObject");
    let d = decide_on(&review, &inv, Endpoint::Validate);
    assert!(d.allowed() && d.violations.is_empty());
}

fn status_update_by_the_node_is_not_handled_in(set: &Set) {
    let review = make_statefulset_pod(load(set, set.status_update), "object");
    for endpoint in [Endpoint::Validate, Endpoint::Mutate] {
        let d = decide_on(&review, &inventory(&[]), endpoint);
        assert!(d.allowed() && d.patch.is_none());
    }
}

fn captured_pod_creates_are_left_alone_unless_a_statefulset_owns_them_in(set: &Set) {
    for &name in set.pod_creates {
        let review = load(set, name);
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

// The cases on the project's own fixtures (run by default).

#[test]
fn kubelet_final_grace_zero_delete_is_allowed() {
    kubelet_final_grace_zero_delete_is_allowed_in(&OWN);
}

#[test]
fn the_same_grace_zero_delete_by_a_user_is_denied() {
    the_same_grace_zero_delete_by_a_user_is_denied_in(&OWN);
}

#[test]
fn unadapted_kubelet_delete_is_not_a_statefulset_pod() {
    unadapted_kubelet_delete_is_not_a_statefulset_pod_in(&OWN);
}

#[test]
fn node_controller_grace_zero_delete_is_allowed() {
    node_controller_grace_zero_delete_is_allowed_in(&OWN);
}

#[test]
fn graceful_delete_by_an_admin_is_allowed() {
    graceful_delete_by_an_admin_is_allowed_in(&OWN);
}

#[test]
fn status_update_by_the_node_is_not_handled() {
    status_update_by_the_node_is_not_handled_in(&OWN);
}

#[test]
fn captured_pod_creates_are_left_alone_unless_a_statefulset_owns_them() {
    captured_pod_creates_are_left_alone_unless_a_statefulset_owns_them_in(&OWN);
}

/// Every case on the captures from real clusters (the third-party corpus).
#[test]
#[ignore = "third-party suite: needs ../shared/corpus (.ci/run runs it with --ignored)"]
fn every_case_holds_on_the_captured_corpus() {
    kubelet_final_grace_zero_delete_is_allowed_in(&CORPUS);
    the_same_grace_zero_delete_by_a_user_is_denied_in(&CORPUS);
    unadapted_kubelet_delete_is_not_a_statefulset_pod_in(&CORPUS);
    node_controller_grace_zero_delete_is_allowed_in(&CORPUS);
    graceful_delete_by_an_admin_is_allowed_in(&CORPUS);
    status_update_by_the_node_is_not_handled_in(&CORPUS);
    captured_pod_creates_are_left_alone_unless_a_statefulset_owns_them_in(&CORPUS);
}

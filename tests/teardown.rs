//! Living in a cluster: the tools that manage StatefulSets (Helm, kubectl, Argo CD, Flux) and
//! the control plane (the StatefulSet controller, the garbage collector, the namespace
//! controller, node lifecycle) are never refused for doing their job, while breaking what a
//! StatefulSet of another application, or of none, depends on is still denied. Every signal
//! with both outcomes, through the shared entry point with AdmissionReview JSON shaped as
//! kube-apiserver sends it.

mod common;

use common::*;
use serde_json::{Value, json};
use sts_guard::config::Config;
use sts_guard::engine::{Decision, Endpoint, evaluate};
use sts_guard::inventory::StaticInventory;
use sts_guard::rules::{Action, CONTROL_PLANE_USERS, RuleId};

const ADMIN: &str = "kubernetes-admin";
const ADMIN_GROUPS: &[&str] = &["system:masters", "system:authenticated"];

/// Merges `marks` (labels, annotations, ownerReferences) into the object's metadata.
fn marked(obj: Obj, marks: &Value) -> Obj {
    let mut obj = obj;
    for (key, value) in marks.as_object().into_iter().flatten() {
        obj = obj.set(&format!("metadata.{key}"), value.clone());
    }
    obj
}

fn helm(release: &str) -> Value {
    json!({
        "labels": {"app.kubernetes.io/managed-by": "Helm"},
        "annotations": {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": "default"}
    })
}

fn argocd(app: &str, kind: &str) -> Value {
    json!({"annotations": {"argocd.argoproj.io/tracking-id": format!("{app}:{kind}:default/x")}})
}

fn labels(pairs: &[(&str, &str)]) -> Value {
    let map: serde_json::Map<String, Value> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), json!(v)))
        .collect();
    json!({ "labels": map })
}

fn owned_by(kind: &str, name: &str, uid: &str) -> Value {
    json!({"ownerReferences": [{"apiVersion": "example.com/v1", "kind": kind, "name": name, "uid": uid,
                                 "controller": true, "blockOwnerDeletion": true}]})
}

fn none() -> Value {
    json!({})
}

fn judged(review: Value, inv: &StaticInventory, config: &Config) -> Decision {
    evaluate(&parse_request(&review), inv, config, Endpoint::Validate)
}

fn delete_service(svc: &Obj, user: &str, inv: &StaticInventory) -> Decision {
    judged(
        review_json(
            "DELETE",
            None,
            Some(svc),
            user,
            ADMIN_GROUPS,
            json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "propagationPolicy": "Background"}),
        ),
        inv,
        &Config::default(),
    )
}

/// What a request that is allowed says: nothing, or a warning naming the rule.
#[derive(Debug)]
enum Outcome {
    Denied(&'static str),
    Warned(&'static str),
    Silent,
}

fn assert_outcome(case: &str, d: &Decision, expected: &Outcome) {
    match expected {
        Outcome::Denied(text) => {
            assert!(
                !d.allowed(),
                "{case}: expected a denial, got {:?}",
                d.warnings()
            );
            let denied: Vec<RuleId> = d.denials().map(|v| v.rule).collect();
            assert_eq!(denied, [RuleId::SvcGoverningDelete], "{case}");
            let message = d.denial_message();
            assert!(
                message.contains(text),
                "{case}: {text:?} missing from {message}"
            );
            assert!(
                message.contains("Scale those StatefulSets to 0 or delete them first."),
                "{case}: {message}"
            );
        }
        Outcome::Warned(text) => {
            assert!(d.allowed(), "{case}: {}", d.denial_message());
            let warnings = d.warnings();
            assert_eq!(warnings.len(), 1, "{case}: {warnings:?}");
            assert!(
                warnings[0].starts_with("svc-governing-delete: Service default/nginx: it is the governing Service of StatefulSet default/web (3 replicas)"),
                "{case}: {}",
                warnings[0]
            );
            assert!(
                warnings[0].contains(text),
                "{case}: {text:?} missing from {}",
                warnings[0]
            );
            assert_eq!(
                d.violations
                    .iter()
                    .map(|v| (v.rule, v.action))
                    .collect::<Vec<_>>(),
                [(RuleId::SvcGoverningDelete, Action::Warn)],
                "{case}"
            );
        }
        Outcome::Silent => {
            assert!(d.allowed(), "{case}: {}", d.denial_message());
            assert!(d.warnings().is_empty(), "{case}: {:?}", d.warnings());
        }
    }
}

#[test]
fn a_governing_service_deleted_with_its_application_warns_and_alone_is_denied() {
    // (case, the Service's marks, the StatefulSet's marks, requester, outcome)
    let cases: Vec<(&str, Value, Value, &str, Outcome)> = vec![
        (
            "nothing but serviceName ties them (the StatefulSet tutorial's shape)",
            none(),
            none(),
            ADMIN,
            Outcome::Denied("it is the governing Service of StatefulSet default/web (3 replicas)"),
        ),
        (
            "the same Helm release (helm uninstall)",
            helm("db"),
            helm("db"),
            ADMIN,
            Outcome::Warned("not denied: both belong to Helm release \"db\" (namespace default)"),
        ),
        (
            "two Helm releases",
            helm("db"),
            helm("other"),
            ADMIN,
            Outcome::Denied(
                "different applications (this Service: Helm release \"db\" (namespace default)",
            ),
        ),
        (
            "a Helm release on the Service only",
            helm("db"),
            none(),
            ADMIN,
            Outcome::Denied("governing Service"),
        ),
        (
            "the same Argo CD application (annotation tracking)",
            argocd("shop", "/Service"),
            argocd("shop", "apps/StatefulSet"),
            ADMIN,
            Outcome::Warned("Argo CD application \"shop\""),
        ),
        (
            "two Argo CD applications",
            argocd("shop", "/Service"),
            argocd("cart", "apps/StatefulSet"),
            ADMIN,
            Outcome::Denied("Argo CD application \"cart\""),
        ),
        (
            "the same Argo CD application (label tracking)",
            labels(&[("app.kubernetes.io/instance", "shop")]),
            labels(&[("app.kubernetes.io/instance", "shop")]),
            ADMIN,
            Outcome::Warned("app.kubernetes.io/instance \"shop\""),
        ),
        (
            "the same Flux Kustomization",
            labels(&[
                ("kustomize.toolkit.fluxcd.io/name", "apps"),
                ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
            ]),
            labels(&[
                ("kustomize.toolkit.fluxcd.io/name", "apps"),
                ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
            ]),
            ADMIN,
            Outcome::Warned("Flux Kustomization flux-system/apps"),
        ),
        (
            "two Flux Kustomizations",
            labels(&[
                ("kustomize.toolkit.fluxcd.io/name", "apps"),
                ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
            ]),
            labels(&[
                ("kustomize.toolkit.fluxcd.io/name", "infra"),
                ("kustomize.toolkit.fluxcd.io/namespace", "flux-system"),
            ]),
            ADMIN,
            Outcome::Denied("Flux Kustomization flux-system/infra"),
        ),
        (
            "the same Flux HelmRelease",
            labels(&[
                ("helm.toolkit.fluxcd.io/name", "db"),
                ("helm.toolkit.fluxcd.io/namespace", "apps"),
            ]),
            labels(&[
                ("helm.toolkit.fluxcd.io/name", "db"),
                ("helm.toolkit.fluxcd.io/namespace", "apps"),
            ]),
            ADMIN,
            Outcome::Warned("Flux HelmRelease apps/db"),
        ),
        (
            "the same instance managed by the same tool (kubectl delete -f)",
            labels(&[
                ("app.kubernetes.io/instance", "web"),
                ("app.kubernetes.io/managed-by", "kubectl"),
            ]),
            labels(&[
                ("app.kubernetes.io/instance", "web"),
                ("app.kubernetes.io/managed-by", "kubectl"),
            ]),
            ADMIN,
            Outcome::Warned("app.kubernetes.io/instance \"web\" (managed by kubectl)"),
        ),
        (
            "the same instance managed by two tools",
            labels(&[
                ("app.kubernetes.io/instance", "web"),
                ("app.kubernetes.io/managed-by", "kubectl"),
            ]),
            labels(&[
                ("app.kubernetes.io/instance", "web"),
                ("app.kubernetes.io/managed-by", "Helm"),
            ]),
            ADMIN,
            Outcome::Denied("different applications"),
        ),
        (
            "an owner in common (an operator's custom resource)",
            owned_by("Database", "db", "uid-1"),
            owned_by("Database", "db", "uid-1"),
            ADMIN,
            Outcome::Warned("owner Database \"db\""),
        ),
        (
            "two owners",
            owned_by("Database", "db", "uid-1"),
            owned_by("Database", "db", "uid-2"),
            ADMIN,
            Outcome::Denied("different applications"),
        ),
        (
            "the namespace controller",
            none(),
            none(),
            "system:serviceaccount:kube-system:namespace-controller",
            Outcome::Silent,
        ),
        (
            "the garbage collector",
            none(),
            none(),
            "system:serviceaccount:kube-system:generic-garbage-collector",
            Outcome::Warned("deleted by the garbage collector, which is never refused"),
        ),
        (
            "kube-controller-manager without service account credentials",
            none(),
            none(),
            "system:kube-controller-manager",
            Outcome::Warned("deleted by kube-controller-manager"),
        ),
        (
            "a GitOps controller deleting what nothing marks",
            none(),
            none(),
            "system:serviceaccount:argocd:argocd-application-controller",
            Outcome::Denied("governing Service"),
        ),
    ];
    for (case, svc_marks, sts_marks, user, outcome) in cases {
        let inv = inventory(&[marked(sts("web"), &sts_marks), svc("nginx")]);
        let d = delete_service(&marked(svc("nginx"), &svc_marks), user, &inv);
        assert_outcome(case, &d, &outcome);
    }
}

#[test]
fn a_namespace_being_deleted_takes_its_governing_services_without_a_word() {
    let mut inv = inventory(&[sts("web"), svc("nginx")]);
    assert_outcome(
        "before",
        &delete_service(&svc("nginx"), ADMIN, &inv),
        &Outcome::Denied("governing Service"),
    );
    inv.add_terminating_namespace("default");
    assert_outcome(
        "terminating",
        &delete_service(&svc("nginx"), ADMIN, &inv),
        &Outcome::Silent,
    );
}

#[test]
fn only_the_statefulsets_of_another_application_deny_a_delete() {
    let inv = inventory(&[
        marked(sts("web"), &helm("db")),
        marked(sts("web2"), &helm("other")),
        svc("nginx"),
    ]);
    let d = delete_service(&marked(svc("nginx"), &helm("db")), ADMIN, &inv);
    assert!(!d.allowed());
    let message = d.denial_message();
    assert!(
        message.contains("StatefulSet default/web2 (3 replicas)"),
        "{message}"
    );
    assert!(!message.contains("default/web (3 replicas)"), "{message}");
    let warnings = d.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(
        warnings[0].contains("StatefulSet default/web (3 replicas)"),
        "{warnings:?}"
    );
}

#[test]
fn a_delete_without_its_old_object_is_judged_by_name_alone() {
    let inv = inventory(&[marked(sts("web"), &helm("db")), svc("nginx")]);
    let review = review_json(
        "DELETE",
        None,
        Some(&marked(svc("nginx"), &helm("db"))),
        ADMIN,
        ADMIN_GROUPS,
        json!(null),
    );
    let mut review = review;
    review["request"]["oldObject"] = Value::Null;
    let d = evaluate(
        &parse_request(&review),
        &inv,
        &Config::default(),
        Endpoint::Validate,
    );
    assert_outcome("no oldObject", &d, &Outcome::Denied("governing Service"));
}

#[test]
fn an_update_by_the_statefulsets_own_release_warns_and_by_another_is_denied() {
    let update = |new: &Obj, old: &Obj, inv: &StaticInventory| {
        judged(
            review_json(
                "UPDATE",
                Some(new),
                Some(old),
                ADMIN,
                ADMIN_GROUPS,
                json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
            ),
            inv,
            &Config::default(),
        )
    };
    let old = marked(svc("nginx"), &helm("db"));
    let new = old.clone().set("spec.selector", json!({"app": "nginx-v2"}));

    // `helm upgrade` updates the Service before the StatefulSet: the release's own change warns.
    let same = inventory(&[marked(sts("web"), &helm("db"))]);
    let d = update(&new, &old, &same);
    assert!(d.allowed(), "{}", d.denial_message());
    let warnings = d.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert!(warnings[0].starts_with("svc-governing-selector: Service default/nginx: it governs StatefulSet web (pod labels app=nginx)"), "{warnings:?}");
    assert!(
        warnings[0].contains("not denied: both belong to Helm release \"db\""),
        "{warnings:?}"
    );

    // The same change to a Service that a StatefulSet of another release, or of none, depends on.
    for (case, sts_marks) in [("another release", helm("other")), ("no release", none())] {
        let inv = inventory(&[marked(sts("web"), &sts_marks)]);
        let d = update(&new, &old, &inv);
        assert!(!d.allowed(), "{case}");
        assert_eq!(
            d.denials().map(|v| v.rule).collect::<Vec<_>>(),
            [RuleId::SvcGoverningSelector],
            "{case}"
        );
    }
    let headless_lost = old
        .clone()
        .set("spec.type", json!("ExternalName"))
        .set("spec.externalName", json!("db.example.com"));
    let d = update(&headless_lost, &old, &inventory(&[sts("web")]));
    assert_eq!(
        d.denials().map(|v| v.rule).collect::<Vec<_>>(),
        [RuleId::SvcGoverningHeadless]
    );
    let message = d.denial_message();
    assert!(
        message.contains(
            "its name would resolve to the external name it points at instead of the pods"
        ),
        "{message}"
    );
    assert!(
        message.contains("defined only for headless Services (CoreDNS answers them anyway"),
        "{message}"
    );

    // Creating a broken governing Service is a mistake whoever makes it.
    let d = judged(
        review_json("CREATE", Some(&new), None, ADMIN, ADMIN_GROUPS, json!(null)),
        &same,
        &Config::default(),
    );
    assert!(!d.allowed());
}

fn delete_pod(pod: &Obj, user: &str, grace: i64, config: &Config) -> Decision {
    let inv = inventory(&[node("node-a")]);
    judged(
        review_json(
            "DELETE",
            None,
            Some(pod),
            user,
            &["system:authenticated"],
            json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "gracePeriodSeconds": grace}),
        ),
        &inv,
        config,
    )
}

#[test]
fn the_control_plane_deletes_statefulset_pods_whatever_their_grace_period() {
    let zero_grace = sts_pod(1, "node-a").set("spec.terminationGracePeriodSeconds", json!(0));
    // forceDelete.allowedUsers adds to the control plane; it never removes it.
    let narrowed = Config::parse("forceDelete:\n  allowedUsers: [alice]\n", "c").unwrap();
    for (user, _) in CONTROL_PLANE_USERS {
        for config in [Config::default(), narrowed.clone()] {
            let d = delete_pod(&zero_grace, user, 0, &config);
            assert!(
                d.allowed() && d.warnings().is_empty(),
                "{user}: {}",
                d.denial_message()
            );
        }
    }
    assert!(delete_pod(&zero_grace, "alice", 0, &narrowed).allowed());
    assert!(delete_pod(&zero_grace, "system:node:node-a", 0, &Config::default()).allowed());
    assert!(
        !delete_pod(
            &zero_grace,
            "system:serviceaccount:kube-system:job-controller",
            0,
            &Config::default()
        )
        .allowed()
    );
}

#[test]
fn a_plain_delete_of_a_zero_grace_pod_is_denied_for_what_its_spec_says() {
    let zero_grace = sts_pod(1, "node-a").set("spec.terminationGracePeriodSeconds", json!(0));
    let d = delete_pod(&zero_grace, ADMIN, 0, &Config::default());
    assert!(!d.allowed());
    let message = d.denial_message();
    assert!(message.starts_with("pod-force-delete: Pod default/web-1: its spec.terminationGracePeriodSeconds is 0 (from the pod template of StatefulSet web), so every delete of it, with or without --force, is a force delete"), "{message}");
    assert!(message.contains("Set a terminationGracePeriodSeconds above 0 in the pod template of StatefulSet web (sts-zero-grace)"), "{message}");
    assert!(
        !message.contains("without --grace-period=0 --force"),
        "{message}"
    );

    // A pod with a grace period of its own, deleted with --grace-period=0 --force.
    let d = delete_pod(&sts_pod(1, "node-a"), ADMIN, 0, &Config::default());
    let message = d.denial_message();
    assert!(
        message.contains("force deletion (gracePeriodSeconds 0) removes pod web-1"),
        "{message}"
    );
    assert!(
        message.contains("Delete it gracefully (without --grace-period=0 --force)."),
        "{message}"
    );
}

#[test]
fn the_way_out_of_a_force_delete_leads_with_the_out_of_service_taint() {
    let d = delete_pod(&sts_pod(1, "node-a"), ADMIN, 0, &Config::default());
    let message = d.denial_message();
    let taint = message
        .find("taint it node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
        .expect(&message);
    let node = message
        .find("delete the Node object only once the machine is confirmed gone")
        .expect(&message);
    assert!(taint < node, "{message}");
    assert!(
        message.contains("deleting the Node of a machine that still runs is just as unsafe"),
        "{message}"
    );
}

#[test]
fn the_control_plane_deletes_statefulsets_without_a_word() {
    // sts-ordered-delete warns a user who deletes an OrderedReady StatefulSet with replicas;
    // the namespace controller and the garbage collector are not judged.
    let inv = inventory(&[svc("nginx")]);
    let delete = |user: &str| {
        judged(
            review_json("DELETE", None, Some(&sts("web")), user, &[], json!(null)),
            &inv,
            &Config::default(),
        )
    };
    let d = delete(ADMIN);
    assert_eq!(
        d.violations.iter().map(|v| v.rule).collect::<Vec<_>>(),
        [RuleId::StsOrderedDelete]
    );
    for (user, _) in CONTROL_PLANE_USERS {
        let d = delete(user);
        assert!(d.violations.is_empty(), "{user}: {:?}", d.warnings());
    }
}

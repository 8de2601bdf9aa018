//! The rule table's test rows: each rule module lists, beside its rules, the cases in which a
//! rule fires and the nearest ones in which it stays quiet. A rule id without both is a failing
//! test, so a new rule is its function, its row in [`RULES`](crate::vocabulary::RULES) and its
//! rows here.
#![cfg(test)]

use crate::config::Config;
use crate::engine::{Endpoint, evaluate};
use crate::inventory::{StaticInventory, load_objects};
use crate::manifest::{Manifest, SourcePos};
use crate::vocabulary::{Kind, RuleId};
use k8s_openapi::api::authentication::v1::UserInfo;
use kube_core::admission::{AdmissionRequest, Operation};
use kube_core::{DynamicObject, GroupVersionKind, GroupVersionResource, TypeMeta};
use serde_json::{Value, json};

/// One case of one rule: whether `rule` is among the rules `run` reports.
pub(crate) struct Row {
    pub rule: RuleId,
    pub case: &'static str,
    pub fires: bool,
    pub run: fn() -> Vec<RuleId>,
}

const NAMESPACE: &str = "default";

/// StatefulSet `web` of `replicas` pods labelled app=web, governed by Service `web`, with a
/// readiness probe and a grace period: what no admission rule objects to.
pub(crate) fn statefulset(replicas: i64) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": NAMESPACE, "uid": "sts-uid"},
        "spec": {
            "serviceName": "web",
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "web:1",
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}
            }
        }
    })
}

/// Service `name` selecting app=web, headless unless `cluster_ip` says otherwise.
pub(crate) fn service(name: &str, cluster_ip: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"clusterIP": cluster_ip, "selector": {"app": "web"}, "ports": [{"port": 80}]}
    })
}

pub(crate) fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}})
}

/// Pod `web-<ordinal>` of StatefulSet `web`, running on node `n1`.
pub(crate) fn pod(ordinal: u32) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("web-{ordinal}"),
            "namespace": NAMESPACE,
            "labels": {"app": "web", "statefulset.kubernetes.io/pod-name": format!("web-{ordinal}"),
                "apps.kubernetes.io/pod-index": ordinal.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "sts-uid", "controller": true}]
        },
        "spec": {"hostname": format!("web-{ordinal}"), "subdomain": "web", "nodeName": "n1",
            "containers": [{"name": "web", "image": "web:1"}]},
        "status": {"phase": "Running"}
    })
}

/// `object` with the field at dotted `path` set to `value` (`null` removes it).
pub(crate) fn with(mut object: Value, path: &str, value: Value) -> Value {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().expect("a path");
    let mut at = &mut object;
    for part in parts {
        at = at
            .as_object_mut()
            .expect("an object on the path")
            .entry(part)
            .or_insert_with(|| json!({}));
    }
    let fields = at.as_object_mut().expect("an object at the path");
    if value.is_null() {
        fields.remove(last);
    } else {
        fields.insert(last.to_string(), value);
    }
    object
}

/// StatefulSet web (3 replicas), RollingUpdate at `partition`.
pub(crate) fn rolling(partition: i64) -> Value {
    with(
        statefulset(3),
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": partition}}),
    )
}

/// `rolling(partition)` marked a canary of one pod (`sts-guard.io/canary`).
pub(crate) fn canary(partition: i64) -> Value {
    with(
        rolling(partition),
        "metadata.annotations",
        json!({"sts-guard.io/canary": "1"}),
    )
}

/// `sts` with a new image in its pod template: a template change, which starts a rollout.
pub(crate) fn new_image(sts: Value) -> Value {
    with(
        sts,
        "spec.template.spec.containers",
        json!([{"name": "web", "image": "web:2",
            "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]),
    )
}

fn dynamic(object: Value) -> DynamicObject {
    serde_json::from_value(object).expect("a Kubernetes object")
}

/// The CREATE of `object` by a user, as kube-apiserver would send it.
pub(crate) fn created(object: Value) -> AdmissionRequest<DynamicObject> {
    let object = dynamic(object);
    let types = object.types.clone().unwrap_or_default();
    let (group, version) = match types.api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), types.api_version.clone()),
    };
    let resource = Kind::from_manifest(&types.api_version, &types.kind).map_or("", Kind::plural);
    AdmissionRequest {
        types: TypeMeta {
            api_version: "admission.k8s.io/v1".into(),
            kind: "AdmissionReview".into(),
        },
        uid: String::new(),
        kind: GroupVersionKind::gvk(&group, &version, &types.kind),
        resource: GroupVersionResource::gvr(&group, &version, resource),
        sub_resource: None,
        request_kind: None,
        request_resource: None,
        request_sub_resource: None,
        name: object.metadata.name.clone().unwrap_or_default(),
        namespace: Some(NAMESPACE.to_string()),
        operation: Operation::Create,
        user_info: UserInfo::default(),
        object: Some(object),
        old_object: None,
        dry_run: true,
        options: None,
    }
}

/// The UPDATE of `old` to `new` by a user.
pub(crate) fn updated(old: Value, new: Value) -> AdmissionRequest<DynamicObject> {
    let mut request = created(new);
    request.operation = Operation::Update;
    request.old_object = Some(dynamic(old));
    request
}

/// The DELETE of `old` by `user`, with `gracePeriodSeconds` when given.
pub(crate) fn deleted(
    old: Value,
    grace: Option<i64>,
    user: &str,
) -> AdmissionRequest<DynamicObject> {
    let mut request = created(old);
    request.operation = Operation::Delete;
    request.old_object = request.object.take();
    request.user_info.username = Some(user.to_string());
    request.options = Some(
        serde_json::from_value(
            json!({"apiVersion": "meta.k8s.io/v1", "kind": "DeleteOptions",
            "gracePeriodSeconds": grace}),
        )
        .expect("DeleteOptions"),
    );
    request
}

fn inventory(objects: &[Value]) -> StaticInventory {
    let manifests = objects
        .iter()
        .enumerate()
        .map(|(i, value)| Manifest {
            pos: SourcePos {
                file: "row".into(),
                document: i + 1,
                line: 1,
            },
            value: value.clone(),
        })
        .collect();
    let (_, inventory) = load_objects(manifests, NAMESPACE).expect("the row's inventory");
    inventory
}

/// The rules that report on `request` at `endpoint` (violations of the validating rules,
/// mutations that changed the object), with the default config and `objects` in the inventory.
pub(crate) fn reported(
    endpoint: Endpoint,
    request: AdmissionRequest<DynamicObject>,
    objects: &[Value],
) -> Vec<RuleId> {
    let decision = evaluate(&request, &inventory(objects), &Config::default(), endpoint);
    // A quiet row must be judged and found clean, not skipped or unreadable.
    assert!(decision.invalid.is_none(), "{:?}", decision.invalid);
    assert!(decision.skipped.is_none(), "{:?}", decision.skipped);
    let mut rules: Vec<RuleId> = decision.violations.iter().map(|v| v.rule).collect();
    rules.extend(&decision.mutated_by);
    rules
}

/// Every rule module's rows.
fn all_rows() -> Vec<&'static Row> {
    [
        super::statefulset::ROWS,
        super::service::ROWS,
        super::pod::ROWS,
        super::mutate::ROWS,
        super::live::ROWS,
    ]
    .into_iter()
    .flatten()
    .collect()
}

#[test]
fn every_row_has_its_outcome() {
    let mut wrong = Vec::new();
    for row in all_rows() {
        let reported = (row.run)();
        if reported.contains(&row.rule) != row.fires {
            wrong.push(format!(
                "{} {}: expected it to {}, reported {:?}",
                row.rule.as_str(),
                row.case,
                if row.fires { "fire" } else { "stay quiet" },
                reported.iter().map(|r| r.as_str()).collect::<Vec<_>>()
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn every_rule_has_a_row_where_it_fires_and_one_where_it_stays_quiet() {
    let rows = all_rows();
    let mut missing = Vec::new();
    for rule in RuleId::ALL {
        for (fires, outcome) in [(true, "fires"), (false, "stays quiet")] {
            if !rows.iter().any(|r| r.rule == rule && r.fires == fires) {
                missing.push(format!("{}: no row where it {outcome}", rule.as_str()));
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

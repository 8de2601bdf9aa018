//! Rules on Services that govern StatefulSets: they stay headless, keep selecting the pods and
//! are not deleted from under a running StatefulSet.
//!
//! The tools that manage StatefulSets change or remove an application one object at a time:
//! `helm uninstall` deletes Services before StatefulSets, the namespace controller and the
//! garbage collector in no particular order. A Service request cannot see the StatefulSet
//! request that follows it, so what it shows decides: who asks, whether the namespace is being
//! deleted, and whether the Service and the StatefulSet belong to one application
//! ([`Ownership`]). Then the finding warns instead of denying; the one thing still denied is
//! breaking a Service that a StatefulSet of another application, or of none, depends on.

use super::{ControlPlane, Finding, Findings, Requester, RuleId, join_names};
use crate::inventory::Inventory;
use crate::model::{
    Owner, Ownership, PER_POD_NAMES_NEED_HEADLESS, ServiceView, StatefulSetView, format_labels,
    selector_matches,
};
use std::sync::Arc;

fn governed(
    svc: &ServiceView,
    rule: RuleId,
    inventory: &dyn Inventory,
    out: &mut Findings,
) -> Vec<Arc<StatefulSetView>> {
    out.lookup(
        rule,
        inventory.statefulsets_governed_by(&svc.namespace, &svc.name),
    )
    .unwrap_or_default()
}

/// StatefulSets grouped by the owner they share with the Service: `None` first (nothing ties
/// them to it but `serviceName`), then one group per shared owner.
fn by_shared_owner<'a>(
    statefulsets: &'a [Arc<StatefulSetView>],
    ownership: &'a Ownership,
) -> Vec<(Option<&'a Owner>, Vec<&'a Arc<StatefulSetView>>)> {
    let mut groups: Vec<(Option<&Owner>, Vec<&Arc<StatefulSetView>>)> = Vec::new();
    for sts in statefulsets {
        let owner = ownership.shared_with(&sts.ownership);
        match groups.iter_mut().find(|(o, _)| *o == owner) {
            Some((_, group)) => group.push(sts),
            None => groups.push((owner, vec![sts])),
        }
    }
    groups.sort_by_key(|(owner, _)| owner.is_some());
    groups
}

/// The excuse of a finding about StatefulSets that share `owner` with the Service.
fn same_application(owner: &Owner) -> String {
    format!(
        "both belong to {owner}, which changes or removes its objects one request at a time; if the StatefulSet stays as it is, sts-guard audit reports it"
    )
}

/// What keeps the StatefulSets of a finding that denies apart from the Service, when both name
/// owners: e.g. two Helm releases.
fn different_applications(ownership: &Ownership, statefulsets: &[&Arc<StatefulSetView>]) -> String {
    let owners = |o: &Ownership| {
        o.owners()
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let others: Vec<String> = statefulsets
        .iter()
        .filter(|s| !s.ownership.is_empty())
        .map(|s| format!("StatefulSet {}: {}", s.name, owners(&s.ownership)))
        .collect();
    if ownership.is_empty() || others.is_empty() {
        return String::new();
    }
    format!(
        " They belong to different applications (this Service: {}; {}).",
        owners(ownership),
        others.join("; ")
    )
}

/// Validating rules for a Service CREATE or UPDATE. `updated_by` is the ownership of the
/// updated object on UPDATE: a change made by the application the StatefulSets belong to
/// (a `helm upgrade` updates Services before StatefulSets) warns instead of denying.
pub fn check_service(
    svc: &ServiceView,
    updated_by: Option<&Ownership>,
    inventory: &dyn Inventory,
    out: &mut Findings,
) {
    let statefulsets = governed(svc, RuleId::SvcGoverningHeadless, inventory, out);
    if statefulsets.is_empty() {
        return;
    }
    let none = Ownership::default();
    let ownership = updated_by.unwrap_or(&none);
    for (owner, group) in by_shared_owner(&statefulsets, ownership) {
        let excuse = owner.map(same_application);
        let apart = match owner {
            None => different_applications(ownership, &group),
            Some(_) => String::new(),
        };
        let names: Vec<&str> = group.iter().map(|s| &*s.name).collect();
        if !svc.is_headless() {
            let finding = Finding::new(
                RuleId::SvcGoverningHeadless,
                "spec.clusterIP",
                format!(
                    "it governs StatefulSet {} but would not be headless: {}, so its name would resolve to {} instead of the pods, and their per-pod DNS names {PER_POD_NAMES_NEED_HEADLESS}.{apart}",
                    join_names(&names),
                    svc.describe_addressing(),
                    svc.resolves_to()
                ),
                "Keep clusterIP: None (and type ClusterIP) on this Service; put a virtual IP on a separate Service instead.".to_string(),
            )
            .with_related(group.iter().map(|s| s.object_ref()).collect());
            out.push(with_excuse(finding, &excuse));
        }
        let unselected: Vec<&&Arc<StatefulSetView>> = group
            .iter()
            .filter(|s| {
                svc.selector.is_empty() || !selector_matches(&svc.selector, &s.template_labels)
            })
            .collect();
        if !unselected.is_empty() {
            let detail: Vec<String> = unselected
                .iter()
                .map(|s| {
                    format!(
                        "{} (pod labels {})",
                        s.name,
                        format_labels(&s.template_labels)
                    )
                })
                .collect();
            let finding = Finding::new(
                RuleId::SvcGoverningSelector,
                "spec.selector",
                format!(
                    "it governs StatefulSet {} but its selector {} does not select their pods.{apart}",
                    join_names(&detail),
                    format_labels(&svc.selector)
                ),
                "Keep a non-empty selector whose every pair is among the pod template labels of the StatefulSets it governs.".to_string(),
            )
            .with_related(unselected.iter().map(|s| s.object_ref()).collect());
            out.push(with_excuse(finding, &excuse));
        }
    }
}

fn with_excuse(finding: Finding, excuse: &Option<String>) -> Finding {
    match excuse {
        Some(reason) => finding.excused(reason.clone()),
        None => finding,
    }
}

/// A Service DELETE as the rules see it.
pub struct ServiceDelete<'a> {
    /// Namespace and name (a DELETE without `oldObject` still has them).
    pub service: &'a ServiceView,
    /// The owners the deleted Service names (empty without `oldObject`).
    pub ownership: &'a Ownership,
    pub requester: Requester<'a>,
}

/// Validating rules for a Service DELETE.
pub fn check_service_delete(
    delete: &ServiceDelete<'_>,
    inventory: &dyn Inventory,
    out: &mut Findings,
) {
    let svc = delete.service;
    let running: Vec<Arc<StatefulSetView>> =
        governed(svc, RuleId::SvcGoverningDelete, inventory, out)
            .into_iter()
            .filter(|s| s.replicas > 0)
            .collect();
    if running.is_empty() {
        return;
    }
    let control_plane = delete.requester.control_plane();
    // Everything in a namespace being deleted goes: nothing stays behind to break.
    if control_plane == Some(ControlPlane::NamespaceController) {
        return;
    }
    let groups = by_shared_owner(&running, delete.ownership);
    let unexcused = groups.iter().any(|(owner, _)| owner.is_none());
    if unexcused && control_plane.is_none() {
        match out.lookup(
            RuleId::SvcGoverningDelete,
            inventory.namespace_terminating(&svc.namespace),
        ) {
            Some(true) | None => return,
            Some(false) => {}
        }
    }
    for (owner, group) in groups {
        let detail: Vec<String> = group
            .iter()
            .map(|s| format!("{}/{} ({} replicas)", s.namespace, s.name, s.replicas))
            .collect();
        let excuse = match (owner, control_plane) {
            (Some(owner), _) => Some(same_application(owner)),
            (None, Some(part)) => Some(format!(
                "deleted by {}, which is never refused; the StatefulSet stays behind without it",
                part.describe()
            )),
            (None, None) => None,
        };
        let apart = match excuse {
            None => different_applications(delete.ownership, &group),
            Some(_) => String::new(),
        };
        let finding = Finding::new(
            RuleId::SvcGoverningDelete,
            "metadata.name",
            format!(
                "it is the governing Service of StatefulSet {}; deleting it breaks their pods' stable DNS names.{apart}",
                join_names(&detail)
            ),
            "Scale those StatefulSets to 0 or delete them first. If the Service and the StatefulSet are one application being removed, mark them as one (the same app.kubernetes.io/instance label, Helm release, Argo CD application, Flux Kustomization or owner) and the delete passes with a warning.".to_string(),
        )
        .with_related(group.iter().map(|s| s.object_ref()).collect());
        out.push(with_excuse(finding, &excuse));
    }
}

#[cfg(test)]
pub(super) const ROWS: &[super::rows::Row] = {
    use super::rows::{Row, deleted, reported, service, statefulset, updated, with};
    use crate::engine::Endpoint::Validate;
    use RuleId::*;
    use serde_json::{Value, json};

    fn headless() -> Value {
        service("web", "None")
    }
    /// An UPDATE of the governing Service of a StatefulSet of `replicas` pods.
    fn update(new: Value, replicas: i64) -> Vec<RuleId> {
        reported(Validate, updated(headless(), new), &[statefulset(replicas)])
    }

    &[
        Row {
            rule: SvcGoverningHeadless,
            case: "the governing Service gets a cluster IP",
            fires: true,
            run: || update(service("web", "10.0.0.9"), 3),
        },
        Row {
            rule: SvcGoverningHeadless,
            case: "the governing Service gets a label",
            fires: false,
            run: || {
                update(
                    with(headless(), "metadata.labels", json!({"tier": "db"})),
                    3,
                )
            },
        },
        Row {
            rule: SvcGoverningSelector,
            case: "the selector no longer matches the pods",
            fires: true,
            run: || update(with(headless(), "spec.selector", json!({"app": "db"})), 3),
        },
        Row {
            rule: SvcGoverningSelector,
            case: "a Service no StatefulSet names changes its selector",
            fires: false,
            run: || {
                let other = with(statefulset(3), "spec.serviceName", json!("other"));
                let new = with(headless(), "spec.selector", json!({"app": "db"}));
                reported(Validate, updated(headless(), new), &[other])
            },
        },
        Row {
            rule: SvcGoverningDelete,
            case: "the governing Service of a running StatefulSet deleted by a user",
            fires: true,
            run: || {
                reported(
                    Validate,
                    deleted(headless(), None, "alice"),
                    &[statefulset(3)],
                )
            },
        },
        Row {
            rule: SvcGoverningDelete,
            case: "the governing Service of a StatefulSet scaled to 0 deleted",
            fires: false,
            run: || {
                reported(
                    Validate,
                    deleted(headless(), None, "alice"),
                    &[statefulset(0)],
                )
            },
        },
    ]
};

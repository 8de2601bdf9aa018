//! Rules on Services that govern StatefulSets: they stay headless, keep selecting the pods and
//! are not deleted from under a running StatefulSet.

use super::{Finding, Findings, RuleId, join_names};
use crate::inventory::Inventory;
use crate::model::{ServiceView, StatefulSetView, format_labels, selector_matches};
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

/// Validating rules for a Service CREATE or UPDATE.
pub fn check_service(svc: &ServiceView, inventory: &dyn Inventory, out: &mut Findings) {
    let statefulsets = governed(svc, RuleId::SvcGoverningHeadless, inventory, out);
    if statefulsets.is_empty() {
        return;
    }
    let names: Vec<&str> = statefulsets.iter().map(|s| &*s.name).collect();
    if !svc.is_headless() {
        out.push(
            Finding::new(
                RuleId::SvcGoverningHeadless,
                "spec.clusterIP",
                format!(
                    "it governs StatefulSet {} but would not be headless: {}, so their per-pod DNS names would stop resolving.",
                    join_names(&names),
                    svc.describe_addressing()
                ),
                "Keep clusterIP: None (and type ClusterIP) on this Service; put a virtual IP on a separate Service instead.".to_string(),
            )
            .with_related(statefulsets.iter().map(|s| s.object_ref()).collect()),
        );
    }
    let unselected: Vec<&Arc<StatefulSetView>> = statefulsets
        .iter()
        .filter(|s| svc.selector.is_empty() || !selector_matches(&svc.selector, &s.template_labels))
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
        out.push(
            Finding::new(
                RuleId::SvcGoverningSelector,
                "spec.selector",
                format!(
                    "it governs StatefulSet {} but its selector {} does not select their pods.",
                    join_names(&detail),
                    format_labels(&svc.selector)
                ),
                "Keep a non-empty selector whose every pair is among the pod template labels of the StatefulSets it governs.".to_string(),
            )
            .with_related(unselected.iter().map(|s| s.object_ref()).collect()),
        );
    }
}

/// Validating rules for a Service DELETE.
pub fn check_service_delete(svc: &ServiceView, inventory: &dyn Inventory, out: &mut Findings) {
    let running: Vec<Arc<StatefulSetView>> =
        governed(svc, RuleId::SvcGoverningDelete, inventory, out)
            .into_iter()
            .filter(|s| s.replicas > 0)
            .collect();
    if running.is_empty() {
        return;
    }
    let detail: Vec<String> = running
        .iter()
        .map(|s| format!("{}/{} ({} replicas)", s.namespace, s.name, s.replicas))
        .collect();
    out.push(
        Finding::new(
            RuleId::SvcGoverningDelete,
            "metadata.name",
            format!(
                "it is the governing Service of StatefulSet {}; deleting it breaks their pods' stable DNS names.",
                join_names(&detail)
            ),
            "Scale those StatefulSets to 0 or delete them first.".to_string(),
        )
        .with_related(running.iter().map(|s| s.object_ref()).collect()),
    );
}

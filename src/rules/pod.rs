//! `pod-force-delete`: no force deletion of a StatefulSet pod that may still be running.

use super::{Finding, Findings, RuleId};
use crate::inventory::Inventory;
use crate::model::{
    ALLOW_FORCE_DELETE_ANNOTATION, FieldError, Fields, OUT_OF_SERVICE_TAINT, annotation_is_true,
    controlling_statefulset,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;

/// What `pod-force-delete` takes from config: who may force-delete regardless.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForceDelete {
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
}

impl Default for ForceDelete {
    fn default() -> Self {
        ForceDelete {
            allowed_users: vec![
                "system:kube-controller-manager".into(),
                "system:serviceaccount:kube-system:pod-garbage-collector".into(),
                "system:serviceaccount:kube-system:node-controller".into(),
            ],
            allowed_groups: Vec::new(),
        }
    }
}

/// A pod DELETE as the rule sees it.
pub struct PodDelete<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The pod being deleted (`oldObject`): metadata and the other fields.
    pub meta: &'a ObjectMeta,
    pub data: &'a Value,
    /// `options.gracePeriodSeconds`, when the request set one.
    pub grace_period_seconds: Option<i64>,
    pub username: &'a str,
    pub groups: &'a [String],
}

/// Why a force delete is safe, or `None` when it is not.
fn safe_because(
    pod: &PodDelete<'_>,
    node_name: &str,
    phase: &str,
    allowed: &ForceDelete,
    inventory: &dyn Inventory,
    out: &mut Findings,
) -> Option<&'static str> {
    if node_name.is_empty() {
        return Some("never scheduled");
    }
    if phase == "Succeeded" || phase == "Failed" {
        return Some("pod finished");
    }
    // Every graceful deletion ends with the kubelet's own grace-0 DELETE once the containers
    // have stopped; denying it would leave the pod Terminating forever.
    if pod.username.strip_prefix("system:node:") == Some(node_name) {
        return Some("kubelet of the pod's node");
    }
    if allowed.allowed_users.iter().any(|u| u == pod.username) {
        return Some("allowed user");
    }
    if pod
        .groups
        .iter()
        .any(|g| allowed.allowed_groups.contains(g))
    {
        return Some("allowed group");
    }
    if annotation_is_true(pod.meta, ALLOW_FORCE_DELETE_ANNOTATION) {
        return Some("break-glass annotation");
    }
    match out.lookup(RuleId::PodForceDelete, inventory.node(node_name)) {
        // The lookup failed: the engine's onLookupError decides.
        None => Some("node lookup failed"),
        Some(None) => Some("node gone"),
        Some(Some(node)) if node.out_of_service => Some("node out of service"),
        Some(Some(_)) => None,
    }
}

/// Validating rule for a Pod DELETE.
pub fn check_pod_delete(
    pod: &PodDelete<'_>,
    allowed: &ForceDelete,
    inventory: &dyn Inventory,
    out: &mut Findings,
) -> Result<(), FieldError> {
    if pod.grace_period_seconds != Some(0) {
        return Ok(());
    }
    let Some(statefulset) = controlling_statefulset(pod.meta) else {
        return Ok(());
    };
    let f = Fields::new(pod.data);
    let node_name = f.str("spec.nodeName")?.unwrap_or("");
    let phase = f.str("status.phase")?.unwrap_or("");
    if safe_because(pod, node_name, phase, allowed, inventory, out).is_some() {
        return Ok(());
    }
    out.push(Finding::new(
        RuleId::PodForceDelete,
        "options.gracePeriodSeconds",
        format!(
            "force deletion (gracePeriodSeconds 0) removes pod {} of StatefulSet {statefulset} from the API before the kubelet on node {node_name} has stopped it; the controller may then start a second {} while the first still runs, and both write the same volume.",
            pod.name, pod.name
        ),
        format!(
            "Delete it gracefully (without --grace-period=0 --force). If node {node_name} is really down: delete the Node object or taint it {OUT_OF_SERVICE_TAINT}=nodeshutdown:NoExecute; as an audited break-glass step, annotate the pod {ALLOW_FORCE_DELETE_ANNOTATION}=true; or have a user from forceDelete.allowedUsers/allowedGroups do it."
        ),
    ));
    Ok(())
}

//! `pod-force-delete`: no force deletion of a StatefulSet pod that may still be running.

use super::{Finding, Findings, Requester, RuleId};
use crate::inventory::Inventory;
use crate::model::{
    ALLOW_FORCE_DELETE_ANNOTATION, FieldError, OUT_OF_SERVICE_TAINT, PodDeleteSpec, PodPhase,
    annotation_is_true, controlling_statefulset,
};
use crate::shape::Checked;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// What `pod-force-delete` takes from config: who may force-delete regardless, besides the
/// control plane ([`super::CONTROL_PLANE_USERS`]), which always may.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ForceDelete {
    pub allowed_users: Vec<String>,
    pub allowed_groups: Vec<String>,
}

/// A pod DELETE as the rule sees it.
pub struct PodDelete<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    /// The pod being deleted (`oldObject`): metadata, and the parts of `spec` and `status`
    /// the rule reads.
    pub meta: &'a ObjectMeta,
    pub spec: &'a Checked<PodDeleteSpec<'a>>,
    pub status: &'a Checked<PodPhase<'a>>,
    /// `options.gracePeriodSeconds`, when the request set one. kube-apiserver fills it in from
    /// the pod's `spec.terminationGracePeriodSeconds` before admission when the client did not.
    pub grace_period_seconds: Option<i64>,
    pub requester: Requester<'a>,
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
    let requester = pod.requester;
    // Every graceful deletion ends with the kubelet's own grace-0 DELETE once the containers
    // have stopped; denying it would leave the pod Terminating forever.
    if requester.username.strip_prefix("system:node:") == Some(node_name) {
        return Some("kubelet of the pod's node");
    }
    // The StatefulSet controller, the garbage collector and the namespace controller delete with
    // the pod's own grace period, 0 when its template says so; refused, they retry forever.
    if requester.control_plane().is_some() {
        return Some("control plane");
    }
    if allowed
        .allowed_users
        .iter()
        .any(|u| u == requester.username)
    {
        return Some("allowed user");
    }
    if requester
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
    let (spec, status) = (pod.spec, pod.status);
    let node_name = spec
        .field("spec", |s| &s.node_name)?
        .str("spec.nodeName")?
        .unwrap_or("");
    let phase = status
        .field("status", |s| &s.phase)?
        .str("status.phase")?
        .unwrap_or("");
    let spec_grace = spec
        .field("spec", |s| &s.termination_grace_period_seconds)?
        .int("spec.terminationGracePeriodSeconds")?;
    if safe_because(pod, node_name, phase, allowed, inventory, out).is_some() {
        return Ok(());
    }
    let name = pod.name;
    let risk = format!(
        "removes pod {name} of StatefulSet {statefulset} from the API before the kubelet on node {node_name} has stopped it; the controller may then start a second {name} while the first still runs, and both write the same volume."
    );
    let ways_out = format!(
        "If node {node_name} is shut down, taint it {OUT_OF_SERVICE_TAINT}=nodeshutdown:NoExecute (the upstream marker of a node confirmed shut down) and the delete passes; delete the Node object only once the machine is confirmed gone, as deleting the Node of a machine that still runs is just as unsafe. As an audited break-glass step, annotate the pod {ALLOW_FORCE_DELETE_ANNOTATION}=true; or have a user from forceDelete.allowedUsers/allowedGroups do it."
    );
    // A pod whose spec says 0 is deleted at once by any delete: the user typed no --force.
    let (problem, hint) = if spec_grace == Some(0) {
        (
            format!(
                "its spec.terminationGracePeriodSeconds is 0 (from the pod template of StatefulSet {statefulset}), so every delete of it, with or without --force, is a force delete: it {risk}"
            ),
            format!(
                "Set a terminationGracePeriodSeconds above 0 in the pod template of StatefulSet {statefulset} (sts-zero-grace), so that deletes wait for the kubelet; its controller's own deletes pass meanwhile. {ways_out}"
            ),
        )
    } else {
        (
            format!("force deletion (gracePeriodSeconds 0) {risk}"),
            format!("Delete it gracefully (without --grace-period=0 --force). {ways_out}"),
        )
    };
    out.push(Finding::new(
        RuleId::PodForceDelete,
        "options.gracePeriodSeconds",
        problem,
        hint,
    ));
    Ok(())
}

#[cfg(test)]
pub(super) const ROWS: &[super::rows::Row] = {
    use super::rows::{Row, deleted, node, pod, reported};
    use crate::engine::Endpoint::Validate;
    use RuleId::*;

    /// A DELETE of pod web-0, running on a Node that is up.
    fn delete(grace: Option<i64>, user: &str) -> Vec<RuleId> {
        reported(Validate, deleted(pod(0), grace, user), &[node("n1")])
    }

    &[
        Row {
            rule: PodForceDelete,
            case: "a user's delete with grace 0 of a pod on a Node that is up",
            fires: true,
            run: || delete(Some(0), "alice"),
        },
        Row {
            rule: PodForceDelete,
            case: "a user's graceful delete",
            fires: false,
            run: || delete(Some(30), "alice"),
        },
        Row {
            rule: PodForceDelete,
            case: "the StatefulSet controller's delete with grace 0",
            fires: false,
            run: || {
                delete(
                    Some(0),
                    "system:serviceaccount:kube-system:statefulset-controller",
                )
            },
        },
    ]
};

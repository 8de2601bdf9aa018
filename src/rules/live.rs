//! Rules only a live cluster can answer, for `sts-guard audit` and the background audit of
//! `serve`: what a StatefulSet's pods, claims and rollout look like now, as opposed to what its
//! template says. Neither an admission request nor a manifest file shows them, so the webhook
//! and `check` never evaluate these.

use super::{Finding, Findings, RuleId, join_names};
use crate::inventory::Inventory;
use crate::model::{
    LabelSet, Labels, OUT_OF_SERVICE_TAINT, PodView, ServiceView, StatefulSetView, format_labels,
    selector_matches,
};
use k8s_openapi::jiff::Timestamp;
use std::time::Duration;

/// The thresholds of the audit-only rules that judge how long something has lasted (config
/// `audit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditThresholds {
    /// `sts-rollout-stalled`: `audit.rolloutStalledAfter`.
    pub rollout_stalled_after: Duration,
    /// `sts-claim-pending`: `audit.claimPendingAfter`.
    pub claim_pending_after: Duration,
}

impl Default for AuditThresholds {
    fn default() -> Self {
        AuditThresholds {
            // An OrderedReady rollout of a large database replaces one pod at a time, each
            // waiting for its data to catch up: an hour is long for it, not unheard of.
            rollout_stalled_after: Duration::from_secs(3600),
            // Dynamic provisioning takes seconds to a couple of minutes.
            claim_pending_after: Duration::from_secs(15 * 60),
        }
    }
}

/// A duration as config writes it and messages show it: `1h30m`, `15m`, `45s`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out.push_str(&format!("{h}h"));
    }
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 || out.is_empty() {
        out.push_str(&format!("{s}s"));
    }
    out
}

/// An age in a message: to the second below an hour, to the minute below a day, then in
/// days and hours.
fn format_age(d: Duration) -> String {
    let secs = d.as_secs();
    match secs {
        0..3600 => format_duration(d),
        3600..86_400 => format_duration(Duration::from_secs(secs / 60 * 60)),
        _ => format!("{}d{}h", secs / 86_400, secs / 3600 % 24),
    }
}

/// How long before `now` `since` was, never negative (clocks differ a little).
fn age(since: Timestamp, now: Timestamp) -> Duration {
    Duration::from_secs(u64::try_from(now.as_second() - since.as_second()).unwrap_or(0))
}

/// What the claim and rollout rules read of a StatefulSet besides its view: the names of its
/// `volumeClaimTemplates` and its rollout status.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StatefulSetState {
    pub claim_templates: Vec<String>,
    pub current_revision: Option<String>,
    pub update_revision: Option<String>,
}

impl StatefulSetState {
    /// The revision a rollout is moving to, when one is under way.
    pub fn rollout_in_progress(&self) -> Option<&str> {
        match (&self.current_revision, &self.update_revision) {
            (Some(current), Some(update)) if current != update => Some(update),
            _ => None,
        }
    }
}

/// A PersistentVolumeClaim the StatefulSet controller made from a claim template: named
/// `<template>-<statefulset>-<ordinal>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatefulSetClaim {
    pub name: String,
    pub ordinal: i64,
    /// `metadata.creationTimestamp` of a claim whose `status.phase` is `Pending`.
    pub pending_since: Option<Timestamp>,
}

/// The ordinal of `claim` if it is named after `template` of StatefulSet `statefulset`.
pub fn claim_ordinal(claim: &str, template: &str, statefulset: &str) -> Option<i64> {
    let digits = claim
        .strip_prefix(template)?
        .strip_prefix('-')?
        .strip_prefix(statefulset)?
        .strip_prefix('-')?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `sts-claims-orphaned`: claims of ordinals the StatefulSet no longer runs (at or above
/// `ordinals.start + replicas`), which `whenScaled: Retain` (the default) keeps after a
/// scale-down.
pub fn check_claims_orphaned(
    sts: &StatefulSetView,
    claims: &[StatefulSetClaim],
    out: &mut Findings,
) {
    let end = sts.ordinals_start + sts.replicas;
    let mut orphaned: Vec<&StatefulSetClaim> = claims.iter().filter(|c| c.ordinal >= end).collect();
    if orphaned.is_empty() {
        return;
    }
    orphaned.sort_by(|a, b| (a.ordinal, &a.name).cmp(&(b.ordinal, &b.name)));
    let names: Vec<&str> = orphaned.iter().map(|c| c.name.as_str()).collect();
    let mut ordinals: Vec<String> = orphaned.iter().map(|c| c.ordinal.to_string()).collect();
    ordinals.dedup();
    let (claims_word, ordinals_word) = match (names.len(), ordinals.len()) {
        (1, _) => ("claim", "ordinal"),
        (_, 1) => ("claims", "ordinal"),
        _ => ("claims", "ordinals"),
    };
    let one = names.len() == 1;
    let (it, they, is) = if one {
        ("it", "it", "is")
    } else {
        ("them", "they", "are")
    };
    out.push(Finding::new(
        RuleId::StsClaimsOrphaned,
        "spec.volumeClaimTemplates",
        format!(
            "its PersistentVolumeClaim{} {} belong{} to {ordinals_word} {}, at or above ordinals.start + replicas = {end}: no pod of it uses {it}. Kept after a scale-down (persistentVolumeClaimRetentionPolicy.whenScaled: Retain), {they} {is} paid for and unused, and a scale-up reattaches {it} with {} old data.",
            if one { "" } else { "s" },
            join_names(&names),
            if one { "s" } else { "" },
            join_names(&ordinals),
            if one { "its" } else { "their" },
        ),
        format!(
            "If {} data is not needed any more, delete the {claims_word} (kubectl delete pvc {} -n {}); to have scale-downs delete claims, set persistentVolumeClaimRetentionPolicy.whenScaled: Delete.",
            if one { "its" } else { "their" },
            names.join(" "),
            sts.namespace
        ),
    ));
}

/// `sts-claim-pending`: claims of the StatefulSet that have been Pending (no volume bound)
/// longer than `after` since they were created: the pods that mount them cannot start.
pub fn check_claim_pending(
    sts: &StatefulSetView,
    claims: &[StatefulSetClaim],
    now: Timestamp,
    after: Duration,
    out: &mut Findings,
) {
    let mut pending: Vec<(&StatefulSetClaim, Timestamp)> = claims
        .iter()
        .filter_map(|c| c.pending_since.map(|since| (c, since)))
        .filter(|(_, since)| age(*since, now) > after)
        .collect();
    if pending.is_empty() {
        return;
    }
    pending.sort_by(|a, b| (a.0.ordinal, &a.0.name).cmp(&(b.0.ordinal, &b.0.name)));
    let described: Vec<String> = pending
        .iter()
        .map(|(c, since)| {
            format!(
                "{} (since {since}, {})",
                c.name,
                format_age(age(*since, now))
            )
        })
        .collect();
    let one = pending.len() == 1;
    out.push(Finding::new(
        RuleId::StsClaimPending,
        "spec.volumeClaimTemplates",
        format!(
            "its PersistentVolumeClaim{} {} {} been Pending longer than audit.claimPendingAfter ({}): no volume is bound, so {} that mount{} {} cannot start.",
            if one { "" } else { "s" },
            join_names(&described),
            if one { "has" } else { "have" },
            format_duration(after),
            if one { "the pod" } else { "the pods" },
            if one { "s" } else { "" },
            if one { "it" } else { "them" },
        ),
        format!(
            "kubectl describe pvc {} -n {} shows why: no StorageClass (name one in the claim template's storageClassName, or mark one default), no PersistentVolume that fits a statically provisioned class, or a provisioner that fails. Provision the storage first; the pod starts once its claim is Bound.",
            pending[0].0.name, sts.namespace
        ),
    ));
}

/// `sts-rollout-stalled`: `status.updateRevision` has differed from `status.currentRevision`
/// for longer than `after`, counted from `update_created` (the creation of the update
/// revision's ControllerRevision: when the template changed).
pub fn check_rollout_stalled(
    sts: &StatefulSetView,
    state: &StatefulSetState,
    update_created: Timestamp,
    now: Timestamp,
    after: Duration,
    out: &mut Findings,
) {
    let (Some(current), Some(update)) = (&state.current_revision, state.rollout_in_progress())
    else {
        return;
    };
    let lasted = age(update_created, now);
    if lasted <= after {
        return;
    }
    let why = if &*sts.update_strategy == "OnDelete" {
        format!(
            "with updateStrategy OnDelete a pod is replaced only when it is deleted: delete the pods still on {current} one at a time (kubectl delete pod -n {} -l controller-revision-hash={current})",
            sts.namespace
        )
    } else if let Some(partition) = sts.partition.filter(|p| *p > sts.ordinals_start) {
        format!(
            "the RollingUpdate partition {partition} keeps ordinals below it on {current}: lower spec.updateStrategy.rollingUpdate.partition to roll them, or revert the template"
        )
    } else if &*sts.pod_management_policy == "OrderedReady" {
        "an OrderedReady rollout waits for each updated pod to become Ready: a pod of the new revision that never does stops it. Fix the template, or revert it and then delete the pod stuck on the bad revision (the controller does not replace it by itself: the forced rollback of the StatefulSet documentation)".to_string()
    } else {
        format!(
            "pods of the new revision are not becoming Ready: look at them (kubectl get pods -n {} -l controller-revision-hash={update})",
            sts.namespace
        )
    };
    out.push(Finding::new(
        RuleId::StsRolloutStalled,
        "status.updateRevision",
        format!(
            "its rollout has not finished: status.updateRevision {update} is not status.currentRevision {current} {} after the update revision was created ({update_created}), longer than audit.rolloutStalledAfter ({}).",
            format_age(lasted),
            format_duration(after)
        ),
        format!("{}; kubectl rollout status statefulset {} -n {} shows how far it got.", capitalize(&why), sts.name, sts.namespace),
    ));
}

fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// The pods of one StatefulSet, counted against its governing Service's selector without
/// keeping them.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PodTally {
    /// Pods that are not being deleted.
    pub live: usize,
    /// Of those, the pods the selector selects.
    pub selected: usize,
    /// The first few unselected pods (name, labels), for the message.
    pub unselected: Vec<(String, Labels)>,
}

impl PodTally {
    /// Unselected pods named in a message.
    pub const EXAMPLES: usize = 3;

    pub fn count(&mut self, pod: &PodView, selector: &LabelSet) {
        if pod.deletion_timestamp.is_some() {
            return;
        }
        self.live += 1;
        if selector_matches(selector, &pod.labels) {
            self.selected += 1;
        } else if self.unselected.len() < Self::EXAMPLES {
            self.unselected.push((pod.name.clone(), pod.labels.clone()));
        }
    }
}

/// Whether the live-pod check applies to a StatefulSet and its governing Service: a Service
/// with a selector that the pod template matches. (Without a selector, or with one the template
/// does not match, `sts-service-selects-pods` already reports it from the template.)
pub fn selects_template(sts: &StatefulSetView, svc: &ServiceView) -> bool {
    !svc.selector.is_empty() && selector_matches(&svc.selector, &sts.template_labels)
}

/// `sts-service-selects-live-pods`: the governing Service selects every existing pod of the
/// StatefulSet. The template may match while the pods do not: pods kept on an old revision
/// (`OnDelete`, a partition), or labels edited on the pods.
pub fn check_service_selects_live_pods(
    sts: &StatefulSetView,
    svc: &ServiceView,
    pods: &PodTally,
    out: &mut Findings,
) {
    if !selects_template(sts, svc) || pods.live == 0 || pods.selected == pods.live {
        return;
    }
    let examples: Vec<String> = pods
        .unselected
        .iter()
        .map(|(name, labels)| format!("{name} ({})", format_labels(labels)))
        .collect();
    let more = pods.live - pods.selected - pods.unselected.len();
    let mut listed = join_names(&examples);
    if more > 0 {
        listed.push_str(&format!(" and {more} more"));
    }
    let problem = if pods.selected == 0 {
        format!(
            "its governing Service {:?} selects {}, which none of its {} pods carries: {listed}; none of them has its DNS name ({}-N.{}.{}.svc) now.",
            svc.name,
            format_labels(&svc.selector),
            pods.live,
            sts.name,
            svc.name,
            sts.namespace
        )
    } else {
        format!(
            "its governing Service {:?} selects {}, which only {} of its {} pods carry; these have no DNS name now: {listed}.",
            svc.name,
            format_labels(&svc.selector),
            pods.selected,
            pods.live
        )
    };
    out.push(
        Finding::new(
            RuleId::StsServiceSelectsLivePods,
            "spec.serviceName",
            problem,
            format!(
                "The pod template matches the selector but these pods do not: they predate the template (updateStrategy OnDelete or a partition holds them back) or were relabelled. Recreate them from the current template (lower the partition, or delete them one at a time with OnDelete; kubectl rollout restart statefulset {} -n {}), or fix their labels.",
                sts.name, sts.namespace
            ),
        )
        .with_related(vec![svc.object_ref()]),
    );
}

/// `pod-stuck-terminating`: a StatefulSet pod whose graceful deletion is overdue on a Node that
/// is gone, or tainted out of service. No kubelet will confirm the deletion, so the pod stays
/// Terminating, and the StatefulSet controller does not create its identity again until it is
/// gone. This is the situation `pod-force-delete` allows a force delete for.
pub fn check_stuck_terminating(
    pod: &PodView,
    now: Timestamp,
    inventory: &dyn Inventory,
    out: &mut Findings,
) {
    let (Some(statefulset), Some(node_name), Some(due)) = (
        pod.statefulset.as_deref(),
        pod.node_name.as_deref(),
        pod.deletion_timestamp,
    ) else {
        return;
    };
    if due > now {
        return;
    }
    let Some(node) = out.lookup(RuleId::PodStuckTerminating, inventory.node(node_name)) else {
        return;
    };
    let (state, why) = match node {
        None => (
            format!("its Node {node_name} no longer exists"),
            "the Node is gone",
        ),
        Some(node) if node.out_of_service => (
            format!("its Node {node_name} is tainted {OUT_OF_SERVICE_TAINT} (shut down)"),
            "the Node is confirmed shut down",
        ),
        Some(_) => return,
    };
    out.push(Finding::new(
        RuleId::PodStuckTerminating,
        "metadata.deletionTimestamp",
        format!(
            "pod {} of StatefulSet {statefulset} is stuck Terminating: its grace period ended at {due} and {state}, so no kubelet will confirm the deletion; the controller will not create {} again until it is gone.",
            pod.name, pod.name
        ),
        format!(
            "Since {why}, nothing still runs the pod there: force-delete it (kubectl delete pod {} -n {} --grace-period=0 --force); pod-force-delete allows this.",
            pod.name, pod.namespace
        ),
    ));
}

#[cfg(test)]
pub(super) const ROWS: &[super::rows::Row] = {
    use super::rows::Row;
    use crate::inventory::StaticInventory;
    use crate::model::{NodeView, labels};
    use RuleId::*;
    use tests::{claim, pod, sts, svc};

    const NOW: &str = "2025-06-01T12:00:00Z";
    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }
    fn reported(run: impl FnOnce(&mut Findings)) -> Vec<RuleId> {
        let mut out = Findings::default();
        run(&mut out);
        out.findings.iter().map(|f| f.rule).collect()
    }
    /// Two live pods labelled `pod_labels`, judged against a Service selecting tier=db (which
    /// the template carries).
    fn live_pods(pod_labels: &[(&str, &str)]) -> Vec<RuleId> {
        let svc = svc(labels(&[("tier", "db")]));
        let mut tally = PodTally::default();
        for name in ["web-0", "web-1"] {
            tally.count(&pod(name, labels(pod_labels)), &svc.selector);
        }
        reported(|out| check_service_selects_live_pods(&sts(), &svc, &tally, out))
    }
    /// Pod web-1, its grace period over a minute ago, on a Node the inventory holds or not.
    fn terminating(node_exists: bool) -> Vec<RuleId> {
        let mut inventory = StaticInventory::new();
        if node_exists {
            inventory.add_node(NodeView {
                name: "n1".into(),
                out_of_service: false,
            });
        }
        let mut p = pod("web-1", labels(&[]));
        p.deletion_timestamp = Some("2025-06-01T11:59:00Z".parse().unwrap());
        reported(|out| check_stuck_terminating(&p, now(), &inventory, out))
    }
    /// The claim of `ordinal` of StatefulSet web (3 replicas).
    fn claim_of(ordinal: i64) -> Vec<RuleId> {
        let claims = [claim(&format!("data-web-{ordinal}"), ordinal, None)];
        reported(|out| check_claims_orphaned(&sts(), &claims, out))
    }
    /// A claim of web Pending since `since`.
    fn pending_since(since: &str) -> Vec<RuleId> {
        let claims = [claim("data-web-0", 0, Some(since))];
        let after = AuditThresholds::default().claim_pending_after;
        reported(|out| check_claim_pending(&sts(), &claims, now(), after, out))
    }
    /// A rollout from revision a to b whose update revision was created at `created`.
    fn rollout_since(created: &str) -> Vec<RuleId> {
        let state = StatefulSetState {
            claim_templates: vec!["data".into()],
            current_revision: Some("web-a".into()),
            update_revision: Some("web-b".into()),
        };
        let after = AuditThresholds::default().rollout_stalled_after;
        let created = created.parse().unwrap();
        reported(|out| check_rollout_stalled(&sts(), &state, created, now(), after, out))
    }

    &[
        Row {
            rule: StsServiceSelectsLivePods,
            case: "the pods lost the label the Service selects",
            fires: true,
            run: || live_pods(&[("app", "web")]),
        },
        Row {
            rule: StsServiceSelectsLivePods,
            case: "the pods carry the label the Service selects",
            fires: false,
            run: || live_pods(&[("app", "web"), ("tier", "db")]),
        },
        Row {
            rule: PodStuckTerminating,
            case: "grace period over on a Node that is gone",
            fires: true,
            run: || terminating(false),
        },
        Row {
            rule: PodStuckTerminating,
            case: "grace period over on a Node that is up",
            fires: false,
            run: || terminating(true),
        },
        Row {
            rule: StsClaimsOrphaned,
            case: "a claim of ordinal 3 of 3 replicas",
            fires: true,
            run: || claim_of(3),
        },
        Row {
            rule: StsClaimsOrphaned,
            case: "a claim of ordinal 2 of 3 replicas",
            fires: false,
            run: || claim_of(2),
        },
        Row {
            rule: StsClaimPending,
            case: "Pending for an hour",
            fires: true,
            run: || pending_since("2025-06-01T11:00:00Z"),
        },
        Row {
            rule: StsClaimPending,
            case: "Pending for a minute",
            fires: false,
            run: || pending_since("2025-06-01T11:59:00Z"),
        },
        Row {
            rule: StsRolloutStalled,
            case: "a rollout under way for two hours",
            fires: true,
            run: || rollout_since("2025-06-01T10:00:00Z"),
        },
        Row {
            rule: StsRolloutStalled,
            case: "a rollout under way for ten minutes",
            fires: false,
            run: || rollout_since("2025-06-01T11:50:00Z"),
        },
    ]
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::StaticInventory;
    use crate::model::{NodeView, labels};

    pub(super) fn pod(name: &str, pod_labels: Labels) -> PodView {
        PodView {
            namespace: "d".into(),
            name: name.into(),
            labels: pod_labels,
            statefulset: Some("web".into()),
            node_name: Some("n1".into()),
            deletion_timestamp: None,
        }
    }

    pub(super) fn sts() -> StatefulSetView {
        StatefulSetView {
            namespace: "d".into(),
            name: "web".into(),
            service_name: Some("web".into()),
            replicas: 3,
            selector: labels(&[("app", "web")]).into(),
            template_labels: labels(&[("app", "web"), ("tier", "db")]).into(),
            ordinals_start: 0,
            pod_management_policy: "OrderedReady".into(),
            update_strategy: "OnDelete".into(),
            partition: None,
            ownership: Default::default(),
        }
    }

    pub(super) fn svc(selector: Labels) -> ServiceView {
        ServiceView {
            namespace: "d".into(),
            name: "web".into(),
            cluster_ip: Some("None".into()),
            service_type: None,
            selector: selector.into(),
        }
    }

    #[test]
    fn pods_the_governing_service_does_not_select_are_reported() {
        let svc = svc(labels(&[("tier", "db")]));
        let mut tally = PodTally::default();
        let mut deleting = pod("web-9", labels(&[]));
        deleting.deletion_timestamp = Some(Timestamp::UNIX_EPOCH);
        for p in [
            pod("web-0", labels(&[("app", "web")])),
            pod("web-1", labels(&[("app", "web")])),
            deleting,
        ] {
            tally.count(&p, &svc.selector);
        }
        assert_eq!((tally.live, tally.selected), (2, 0));
        let mut out = Findings::default();
        check_service_selects_live_pods(&sts(), &svc, &tally, &mut out);
        assert_eq!(out.findings.len(), 1);
        let f = &out.findings[0];
        assert_eq!(f.rule, RuleId::StsServiceSelectsLivePods);
        assert!(
            f.problem
                .contains("none of its 2 pods carries: web-0 (app=web) and web-1 (app=web)"),
            "{}",
            f.problem
        );

        tally.count(&pod("web-2", labels(&[("tier", "db")])), &svc.selector);
        let mut out = Findings::default();
        check_service_selects_live_pods(&sts(), &svc, &tally, &mut out);
        assert!(
            out.findings[0]
                .problem
                .contains("only 1 of its 3 pods carry"),
            "{}",
            out.findings[0].problem
        );

        // Every pod selected, no pods, or a template the selector misses: nothing here.
        for (tally, svc) in [
            (
                PodTally {
                    live: 2,
                    selected: 2,
                    unselected: vec![],
                },
                svc.clone(),
            ),
            (PodTally::default(), svc.clone()),
            (tally.clone(), self::svc(labels(&[("app", "other")]))),
            (tally.clone(), self::svc(Labels::new())),
        ] {
            let mut out = Findings::default();
            check_service_selects_live_pods(&sts(), &svc, &tally, &mut out);
            assert!(out.findings.is_empty(), "{:?}", out.findings);
        }
    }

    #[test]
    fn overdue_deletion_on_a_gone_or_out_of_service_node_is_stuck() {
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let mut inv = StaticInventory::new();
        inv.add_node(NodeView {
            name: "up".into(),
            out_of_service: false,
        });
        inv.add_node(NodeView {
            name: "down".into(),
            out_of_service: true,
        });
        let stuck = |node: &str, due: &str| {
            let mut p = pod("web-1", labels(&[]));
            p.node_name = Some(node.into());
            p.deletion_timestamp = Some(due.parse().unwrap());
            let mut out = Findings::default();
            check_stuck_terminating(&p, now, &inv, &mut out);
            out.findings
        };
        let gone = stuck("gone", "2025-06-01T11:59:00Z");
        assert_eq!(gone.len(), 1);
        assert!(
            gone[0].problem.contains(
                "grace period ended at 2025-06-01T11:59:00Z and its Node gone no longer exists"
            ),
            "{}",
            gone[0].problem
        );
        assert!(
            gone[0]
                .hint
                .contains("kubectl delete pod web-1 -n d --grace-period=0 --force")
        );
        let down = stuck("down", "2025-06-01T11:59:00Z");
        assert!(down[0].problem.contains(OUT_OF_SERVICE_TAINT));
        // A healthy Node, or a grace period still running: not stuck (yet).
        assert!(stuck("up", "2025-06-01T11:00:00Z").is_empty());
        assert!(stuck("gone", "2025-06-01T12:00:30Z").is_empty());
    }

    pub(super) fn claim(name: &str, ordinal: i64, pending_since: Option<&str>) -> StatefulSetClaim {
        StatefulSetClaim {
            name: name.into(),
            ordinal,
            pending_since: pending_since.map(|t| t.parse().unwrap()),
        }
    }

    #[test]
    fn claim_names_give_ordinals_only_for_the_template_and_statefulset() {
        assert_eq!(claim_ordinal("data-web-3", "data", "web"), Some(3));
        assert_eq!(claim_ordinal("data-web-x-3", "data-web", "x"), Some(3));
        assert_eq!(claim_ordinal("data-web-x-3", "data", "web-x"), Some(3));
        for name in [
            "data-web-",
            "data-web-+3",
            "data-webx-3",
            "logs-web-3",
            "data-web-3a",
        ] {
            assert_eq!(claim_ordinal(name, "data", "web"), None, "{name}");
        }
    }

    #[test]
    fn claims_at_or_above_the_last_ordinal_are_orphaned() {
        let mut sts = sts();
        sts.ordinals_start = 2;
        sts.replicas = 2; // ordinals 2 and 3
        let claims = [
            claim("data-web-2", 2, None),
            claim("data-web-3", 3, None),
            claim("data-web-5", 5, None),
            claim("data-web-4", 4, None),
        ];
        let mut out = Findings::default();
        check_claims_orphaned(&sts, &claims, &mut out);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0].problem.starts_with(
                "its PersistentVolumeClaims data-web-4 and data-web-5 belong to ordinals 4 and 5, at or above ordinals.start + replicas = 4"
            ),
            "{}",
            out.findings[0].problem
        );
        let mut out = Findings::default();
        check_claims_orphaned(&sts, &claims[..2], &mut out);
        assert!(out.findings.is_empty());
    }

    #[test]
    fn claims_pending_past_the_threshold_are_reported() {
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let claims = [
            claim("data-web-0", 0, Some("2025-06-01T11:00:00Z")),
            claim("data-web-1", 1, Some("2025-06-01T11:59:00Z")),
            claim("data-web-2", 2, None),
        ];
        let mut out = Findings::default();
        check_claim_pending(&sts(), &claims, now, Duration::from_secs(600), &mut out);
        assert_eq!(out.findings.len(), 1);
        assert!(
            out.findings[0].problem.starts_with(
                "its PersistentVolumeClaim data-web-0 (since 2025-06-01T11:00:00Z, 1h) has been Pending longer than audit.claimPendingAfter (10m)"
            ),
            "{}",
            out.findings[0].problem
        );
        let mut out = Findings::default();
        check_claim_pending(&sts(), &claims, now, Duration::from_secs(3600), &mut out);
        assert!(
            out.findings.is_empty(),
            "exactly the threshold is not past it"
        );
    }

    #[test]
    fn a_rollout_under_way_past_the_threshold_is_stalled_with_a_hint_for_its_strategy() {
        let now: Timestamp = "2025-06-01T12:00:00Z".parse().unwrap();
        let created: Timestamp = "2025-06-01T10:30:00Z".parse().unwrap();
        let state = StatefulSetState {
            claim_templates: vec![],
            current_revision: Some("web-1".into()),
            update_revision: Some("web-2".into()),
        };
        let stalled = |sts: &StatefulSetView, after: u64| {
            let mut out = Findings::default();
            check_rollout_stalled(
                sts,
                &state,
                created,
                now,
                Duration::from_secs(after),
                &mut out,
            );
            out.findings
        };
        let on_delete = stalled(&sts(), 3600);
        assert_eq!(on_delete.len(), 1);
        assert!(
            on_delete[0].problem.contains(
                "status.updateRevision web-2 is not status.currentRevision web-1 1h30m after the update revision was created"
            ),
            "{}",
            on_delete[0].problem
        );
        assert!(
            on_delete[0].hint.starts_with(
                "With updateStrategy OnDelete a pod is replaced only when it is deleted"
            )
        );
        let mut partitioned = sts();
        partitioned.update_strategy = "RollingUpdate".into();
        partitioned.partition = Some(2);
        assert!(
            stalled(&partitioned, 3600)[0]
                .hint
                .starts_with("The RollingUpdate partition 2")
        );
        let mut ordered = partitioned.clone();
        ordered.partition = Some(0);
        assert!(
            stalled(&ordered, 3600)[0]
                .hint
                .contains("the forced rollback")
        );
        assert!(
            stalled(&ordered, 5400).is_empty(),
            "not past the threshold yet"
        );
        let finished = StatefulSetState {
            update_revision: Some("web-1".into()),
            ..state.clone()
        };
        let mut out = Findings::default();
        check_rollout_stalled(&ordered, &finished, created, now, Duration::ZERO, &mut out);
        assert!(out.findings.is_empty());
    }

    #[test]
    fn durations_read_as_config_writes_them() {
        assert_eq!(format_duration(Duration::from_secs(5400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(3601)), "1h1s");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_age(Duration::from_secs(3661)), "1h1m");
        assert_eq!(format_age(Duration::from_secs(90_061)), "1d1h");
    }
}

//! Rules only a live cluster can answer, for `sts-guard audit`: what a StatefulSet's pods look
//! like now, as opposed to what its template says. Neither an admission request nor a manifest
//! file shows pods, so the webhook and `check` never evaluate these.

use super::{Finding, Findings, RuleId, join_names};
use crate::inventory::Inventory;
use crate::model::{
    LabelSet, Labels, OUT_OF_SERVICE_TAINT, PodView, ServiceView, StatefulSetView, format_labels,
    selector_matches,
};
use k8s_openapi::jiff::Timestamp;

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
mod tests {
    use super::*;
    use crate::inventory::StaticInventory;
    use crate::model::{NodeView, labels};

    fn pod(name: &str, pod_labels: Labels) -> PodView {
        PodView {
            namespace: "d".into(),
            name: name.into(),
            labels: pod_labels,
            statefulset: Some("web".into()),
            node_name: Some("n1".into()),
            deletion_timestamp: None,
        }
    }

    fn sts() -> StatefulSetView {
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

    fn svc(selector: Labels) -> ServiceView {
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
}

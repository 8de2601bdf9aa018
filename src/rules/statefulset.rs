//! Rules on StatefulSets: the governing Service, rollout partitions, storage and deletion.

use super::mutate::{PartitionDefaults, StatefulSetUpdate, staged_rollout};
use super::{Finding, Findings, Requester, RuleId, join_names};
use crate::inventory::Inventory;
use crate::model::{
    FieldError, PER_POD_NAMES_NEED_HEADLESS, RulePodSpec, ServiceView, StatefulSetSpec,
    StatefulSetView, claim_template_names, format_labels, selector_matches,
};
use crate::shape::Checked;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The StatefulSet a CREATE or UPDATE would leave behind: its view and what the rules read of
/// its spec beside it.
pub struct StatefulSetSubject<'a> {
    pub view: &'a StatefulSetView,
    /// `spec` as the rules read it; a wrong type is an error only where read.
    pub spec: &'a Checked<StatefulSetSpec<'a>>,
    /// `spec.template` differs from the old object's (UPDATE only).
    pub template_changed: bool,
}

/// Validating rules for a StatefulSet CREATE or UPDATE.
pub fn check_statefulset(
    subject: &StatefulSetSubject<'_>,
    inventory: &dyn Inventory,
    out: &mut Findings,
) -> Result<(), FieldError> {
    let sts = subject.view;
    match sts.governing_service() {
        None => {
            let suggestion = suggest_governing_service(sts, inventory, out, RuleId::StsServiceName);
            let hint = match suggestion {
                Some(suggestion) => suggestion.sentence(),
                None => format!(
                    "Set spec.serviceName to a headless Service (clusterIP: None) whose selector matches {}, and create that Service before the StatefulSet.",
                    format_labels(&sts.template_labels)
                ),
            };
            out.push(Finding::new(
                RuleId::StsServiceName,
                "spec.serviceName",
                "spec.serviceName is not set, so its pods get no stable DNS names.".to_string(),
                hint,
            ));
        }
        Some(service_name) => {
            if let Some(found) = out.lookup(
                RuleId::StsServiceExists,
                inventory.service(&sts.namespace, service_name),
            ) {
                match found {
                    None => service_missing(sts, service_name, inventory, out),
                    Some(svc) => service_present(sts, &svc, out),
                }
            }
        }
    }
    check_partition_range(subject, out);
    check_pod_lifecycle(subject, subject.spec, out)?;
    check_storage(subject, subject.spec, out)
}

/// `sts-zero-grace` and `sts-ready-ordering`: what the pod template makes of deletes and of
/// ordered start.
fn check_pod_lifecycle(
    subject: &StatefulSetSubject<'_>,
    spec: &Checked<StatefulSetSpec>,
    out: &mut Findings,
) -> Result<(), FieldError> {
    let sts = subject.view;
    let pod = pod_spec(spec)?;
    let grace = "spec.template.spec.terminationGracePeriodSeconds";
    let grace_seconds = pod.field("spec.template.spec", |p| {
        &p.termination_grace_period_seconds
    })?;
    if grace_seconds.int(grace)? == Some(0) {
        out.push(Finding::new(
            RuleId::StsZeroGrace,
            grace,
            format!(
                "{grace} is 0, so every delete of its pods, a plain kubectl delete pod included, removes them from the API at once, before the kubelet has stopped them: a second pod of the same identity may start while the first still runs (the Kubernetes documentation calls force deletion of StatefulSet pods unsafe)."
            ),
            "Set it above 0 (the default is 30 seconds), so that deletes wait for the kubelet; until then pod-force-delete refuses users' deletes of its running pods.".to_string(),
        ));
    }
    if sts.replicas > 1 && &*sts.pod_management_policy == "OrderedReady" {
        let mut gated = false;
        let mut containers = 0;
        let pod = pod.get("spec.template.spec")?;
        for init in [false, true] {
            let (path, list) = match (init, pod) {
                (false, Some(p)) => ("spec.template.spec.containers", &p.containers),
                (true, Some(p)) => ("spec.template.spec.initContainers", &p.init_containers),
                (_, None) => continue,
            };
            for (i, item) in list.items(path)?.iter().enumerate() {
                // Of the containers, one of another type is read as one without probes.
                let container = match item {
                    Checked::Wrong(_) if !init => None,
                    item => item.item(path, i)?,
                };
                // Of the init containers, only sidecars (restartPolicy Always) keep running and
                // count toward the pod's readiness.
                if init {
                    let policy = match container {
                        Some(c) => c
                            .restart_policy
                            .str("restartPolicy")
                            .map_err(|e| e.within(path, i))?,
                        None => None,
                    };
                    if policy != Some("Always") {
                        continue;
                    }
                }
                containers += 1;
                gated |= container.is_some_and(|c| {
                    c.readiness_probe.is_present() || c.startup_probe.is_present()
                });
            }
        }
        if containers > 0 && !gated {
            out.push(Finding::new(
                RuleId::StsReadyOrdering,
                "spec.template.spec.containers",
                format!(
                    "podManagementPolicy OrderedReady starts {}-{} only once the pod before it is Ready, but no container of the pod template has a readinessProbe (or startupProbe): a pod is Ready as soon as its containers start, so ordered start waits for nothing but that.",
                    sts.name,
                    sts.ordinals_start + 1
                ),
                "Give the main container a readinessProbe that passes once the member can serve (has joined its peers), or set podManagementPolicy: Parallel if the order does not matter.".to_string(),
            ));
        }
    }
    Ok(())
}

/// `spec.template.spec`, absent when the template or its spec is.
fn pod_spec<'s>(
    spec: &'s Checked<StatefulSetSpec>,
) -> Result<&'s Checked<RulePodSpec<'s>>, FieldError> {
    spec.field("spec", |s| &s.template)?
        .field("spec.template", |t| &t.spec)
}

fn service_missing(
    sts: &StatefulSetView,
    service_name: &str,
    inventory: &dyn Inventory,
    out: &mut Findings,
) {
    let suggestion = suggest_governing_service(sts, inventory, out, RuleId::StsServiceExists);
    let hint = match suggestion {
        Some(suggestion) => format!(
            "{} Create the governing Service before the StatefulSet.",
            suggestion.sentence()
        ),
        None => format!(
            "Create a headless Service {service_name:?} (clusterIP: None) whose selector matches {} before the StatefulSet.",
            format_labels(&sts.template_labels)
        ),
    };
    out.push(Finding::new(
        RuleId::StsServiceExists,
        "spec.serviceName",
        format!(
            "spec.serviceName {service_name:?} names no Service in namespace {}.",
            sts.namespace
        ),
        hint,
    ));
}

fn service_present(sts: &StatefulSetView, svc: &ServiceView, out: &mut Findings) {
    if !svc.is_headless() {
        out.push(Finding::new(
            RuleId::StsServiceHeadless,
            "spec.serviceName",
            format!(
                "the governing Service {:?} is not headless: {}, so its name resolves to {} instead of the pods, and the per-pod DNS names ({}-0.{}.{}.svc) {PER_POD_NAMES_NEED_HEADLESS}.",
                svc.name,
                svc.describe_addressing(),
                svc.resolves_to(),
                sts.name,
                svc.name,
                sts.namespace
            ),
            format!(
                "Point spec.serviceName at a headless Service (clusterIP: None) that selects the pods; clusterIP cannot be changed in place, so create a separate headless Service or recreate {:?}.",
                svc.name
            ),
        ).with_related(vec![svc.object_ref()]));
    }
    if svc.selector.is_empty() {
        out.push(
            Finding::new(
                RuleId::StsServiceSelectsPods,
                "spec.serviceName",
                format!(
                    "the governing Service {:?} has no selector, so it selects none of the pods.",
                    svc.name
                ),
                format!(
                    "Give Service {:?} a selector whose pairs are among the pod template labels ({}).",
                    svc.name,
                    format_labels(&sts.template_labels)
                ),
            )
            .with_related(vec![svc.object_ref()]),
        );
    } else if !selector_matches(&svc.selector, &sts.template_labels) {
        out.push(
            Finding::new(
                RuleId::StsServiceSelectsPods,
                "spec.template.metadata.labels",
                format!(
                    "the governing Service {:?} selects {}, which the pod template labels ({}) do not match.",
                    svc.name,
                    format_labels(&svc.selector),
                    format_labels(&sts.template_labels)
                ),
                format!(
                    "Add the missing labels to spec.template.metadata.labels, or change the selector of Service {:?} to pairs among them.",
                    svc.name
                ),
            )
            .with_related(vec![svc.object_ref()]),
        );
    }
}

/// The headless Services in the StatefulSet's namespace whose selectors select its pods, for a
/// "did you mean". In a multi-component chart several do: grafana tempo's `tempo-gossip-ring`
/// selects the pods of every component (`app.kubernetes.io/part-of: memberlist`), while
/// `tempo-ingester-discovery` selects exactly the ingester's. So candidates are ranked by how
/// specific their selector is, then by how close their name is to the one written.
struct Suggestion {
    /// Candidates, best first.
    names: Vec<String>,
    /// Edit distance of each candidate's name to `compared_with`.
    distances: Vec<usize>,
    /// How many candidates at the front are equally specific.
    tied: usize,
    /// What the names were compared with: the serviceName written, or the StatefulSet's name.
    compared_with: String,
}

impl Suggestion {
    fn best(&self) -> &str {
        &self.names[0]
    }

    /// "The headless Service "x" selects this StatefulSet's pods — did you mean serviceName:
    /// x?", naming the other candidates when there are any.
    fn sentence(&self) -> String {
        let best = self.best();
        let quoted: Vec<String> = self.names.iter().map(|n| format!("{n:?}")).collect();
        if self.tied > 1 {
            let why = if self.distances[0] < self.distances[1] {
                format!("the name closest to {:?}", self.compared_with)
            } else {
                format!("first by name; none is closer to {:?}", self.compared_with)
            };
            return format!(
                "The headless Services {} select this StatefulSet's pods equally specifically — did you mean serviceName: {best}? ({why})",
                join_names(&quoted[..self.tied]),
            );
        }
        let mut sentence = format!(
            "The headless Service {best:?} selects this StatefulSet's pods — did you mean serviceName: {best}?"
        );
        match &quoted[1..] {
            [] => {}
            [one] => sentence.push_str(&format!(
                " ({one} also selects them, with a broader selector.)"
            )),
            more => sentence.push_str(&format!(
                " ({} also select them, with broader selectors.)",
                join_names(more)
            )),
        }
        sentence
    }
}

fn suggest_governing_service(
    sts: &StatefulSetView,
    inventory: &dyn Inventory,
    out: &mut Findings,
    rule: RuleId,
) -> Option<Suggestion> {
    if sts.template_labels.is_empty() {
        return None;
    }
    let services = out.lookup(
        rule,
        inventory.headless_services_selecting(&sts.namespace, &sts.template_labels),
    )?;
    let written = sts.governing_service().unwrap_or(&sts.name);
    // Specificity: a selector that holds every pair of the StatefulSet's own spec.selector
    // selects only its pods; then, more pairs narrow it further.
    let specificity = |svc: &ServiceView| {
        (
            selector_matches(&sts.selector, &svc.selector),
            svc.selector.len(),
        )
    };
    let mut candidates: Vec<(&ServiceView, (bool, usize), usize)> = services
        .iter()
        .map(|svc| {
            (
                svc.as_ref(),
                specificity(svc),
                edit_distance(&svc.name, written),
            )
        })
        .collect();
    candidates.sort_by(|a, b| {
        b.1.cmp(&a.1)
            .then(a.2.cmp(&b.2))
            .then_with(|| a.0.name.cmp(&b.0.name))
    });
    let top = candidates.first()?.1;
    Some(Suggestion {
        tied: candidates.iter().take_while(|c| c.1 == top).count(),
        names: candidates.iter().map(|c| c.0.name.to_string()).collect(),
        distances: candidates.iter().map(|c| c.2).collect(),
        compared_with: written.to_string(),
    })
}

/// Levenshtein distance over characters (names are short: at most 63 characters).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(above + 1)
                .min(row[j] + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn check_partition_range(subject: &StatefulSetSubject<'_>, out: &mut Findings) {
    let sts = subject.view;
    if !subject.template_changed || &*sts.update_strategy != "RollingUpdate" {
        return;
    }
    let Some(partition) = sts.partition else {
        return;
    };
    let end = sts.ordinals_start + sts.replicas.max(0);
    if partition > end {
        out.push(Finding::new(
            RuleId::StsPartitionRange,
            "spec.updateStrategy.rollingUpdate.partition",
            format!(
                "partition {partition} is above ordinals.start + replicas ({end}) while the pod template changed: no pod will ever take the new revision."
            ),
            format!(
                "Lower the partition to {end} or less (to {} to update every pod).",
                sts.ordinals_start
            ),
        ));
    }
}

fn check_storage(
    subject: &StatefulSetSubject<'_>,
    spec: &Checked<StatefulSetSpec>,
    out: &mut Findings,
) -> Result<(), FieldError> {
    let sts = subject.view;
    if sts.replicas > 1 {
        let templates = claim_template_names(spec.field("spec", |s| &s.claim_templates)?)?;
        let volumes = "spec.template.spec.volumes";
        let items = pod_spec(spec)?.field("spec.template.spec", |p| &p.volumes)?;
        for (i, item) in items.items(volumes)?.iter().enumerate() {
            let Some(volume) = item.item(volumes, i)? else {
                continue;
            };
            let at = |e: FieldError| e.within(volumes, i);
            let claim = volume
                .persistent_volume_claim
                .field("persistentVolumeClaim", |c| &c.claim_name)
                .and_then(|c| c.str("persistentVolumeClaim.claimName"))
                .map_err(at)?;
            let Some(claim) = claim else {
                continue;
            };
            let volume_name = volume.name.str("name").map_err(at)?.unwrap_or("");
            // The StatefulSet controller replaces a template volume named like a claim template
            // with that pod's own claim (`<template>-<pod>`), whatever its source says
            // (pkg/controller/statefulset, updateStorage): nothing is shared. Kubernetes' own
            // cockroachdb e2e manifest has exactly this shape.
            if templates.contains(&volume_name) {
                continue;
            }
            out.push(Finding::new(
                RuleId::StsSharedClaim,
                format!("spec.template.spec.volumes[{i}].persistentVolumeClaim"),
                format!(
                    "volume {volume_name:?} mounts the one PersistentVolumeClaim {claim:?} into all {} replicas, so they share its data.",
                    sts.replicas
                ),
                "Give each replica its own claim with spec.volumeClaimTemplates (or keep replicas at 1 if the claim must be shared).".to_string(),
            ));
        }
    }
    let policy = "spec.persistentVolumeClaimRetentionPolicy";
    let Some(retention) = spec.field("spec", |s| &s.retention)?.get(policy)? else {
        return Ok(());
    };
    for (key, what, value) in [
        (
            "whenDeleted",
            "deleted with the StatefulSet",
            &retention.when_deleted,
        ),
        (
            "whenScaled",
            "deleted when the StatefulSet scales down",
            &retention.when_scaled,
        ),
    ] {
        // The path is written only for an error or a finding.
        let value = value.get("").map_err(|e| FieldError {
            path: format!("{policy}.{key}"),
            ..e
        })?;
        if value.is_some_and(|v| v == "Delete") {
            let path = format!("{policy}.{key}");
            out.push(Finding::new(
                RuleId::StsPvcRetention,
                path.clone(),
                format!(
                    "{path} is Delete: the PersistentVolumeClaims of the removed pods, and their data, are {what}."
                ),
                format!("Set {key}: Retain unless that data is disposable."),
            ));
        }
    }
    Ok(())
}

/// `sts-canary-partition`: the staged rollout `sts-partition-default` gives a canary
/// StatefulSet's template change is there. sts-guard's mutating webhook sets it before this
/// validation runs; an update without it got past a mutating webhook that did not answer
/// (its failure policy lets mutations fail open), and would roll every pod at once.
pub fn check_canary_partition(
    meta: &ObjectMeta,
    subject: &StatefulSetSubject<'_>,
    old: &StatefulSetView,
    config: &PartitionDefaults,
    out: &mut Findings,
) {
    let sts = subject.view;
    let update = StatefulSetUpdate {
        old,
        template_changed: subject.template_changed,
    };
    // An unreadable canary annotation stages nothing; the mutation warns about it.
    let Ok(Some(stage)) = staged_rollout(meta, sts, update, config) else {
        return;
    };
    out.push(Finding::new(
        RuleId::StsCanaryPartition,
        "spec.updateStrategy.rollingUpdate.partition",
        format!(
            "this template change is a staged rollout to the {} highest ordinals, but it arrives with partition {}: every pod would take the new revision at once. sts-guard's mutation did not stage it (its webhook did not answer, and a mutating webhook fails open).",
            stage.canary,
            sts.partition.unwrap_or(0)
        ),
        format!(
            "Retry the update, or set spec.updateStrategy.rollingUpdate.partition yourself: {} for the staged rollout, {} to update every pod.",
            stage.partition, sts.ordinals_start
        ),
    ));
}

/// Validating rules for a StatefulSet DELETE. The control plane's deletes (the namespace
/// controller, the garbage collector) are not judged: nobody reads their warnings, and a
/// denial would only make them retry.
pub fn check_statefulset_delete(
    sts: &StatefulSetView,
    requester: Requester<'_>,
    out: &mut Findings,
) {
    if requester.control_plane().is_some() {
        return;
    }
    if sts.replicas > 0 && &*sts.pod_management_policy == "OrderedReady" {
        out.push(Finding::new(
            RuleId::StsOrderedDelete,
            "spec.replicas",
            format!(
                "deleting it with {} replicas and podManagementPolicy OrderedReady does not stop its pods in reverse ordinal order.",
                sts.replicas
            ),
            format!(
                "Scale it to 0 first (kubectl scale statefulset {} -n {} --replicas=0), wait for the pods to terminate, then delete it.",
                sts.name, sts.namespace
            ),
        ));
    }
}

#[cfg(test)]
pub(super) const ROWS: &[super::rows::Row] = {
    use super::rows::{
        Row, canary, created, deleted, new_image, reported, rolling, service, statefulset, updated,
        with,
    };
    use crate::engine::Endpoint::Validate;
    use RuleId::*;
    use serde_json::{Value, json};

    fn governed() -> [Value; 1] {
        [service("web", "None")]
    }
    fn create(sts: Value) -> Vec<RuleId> {
        reported(Validate, created(sts), &governed())
    }
    fn shared_claim(replicas: i64) -> Value {
        with(
            statefulset(replicas),
            "spec.template.spec.volumes",
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]),
        )
    }
    fn retention(when: &str) -> Value {
        with(
            statefulset(3),
            "spec.persistentVolumeClaimRetentionPolicy",
            json!({"whenDeleted": when, "whenScaled": "Retain"}),
        )
    }
    fn delete(sts: Value) -> Vec<RuleId> {
        reported(Validate, deleted(sts, None, "alice"), &governed())
    }
    fn grace(seconds: i64) -> Value {
        with(
            statefulset(3),
            "spec.template.spec.terminationGracePeriodSeconds",
            json!(seconds),
        )
    }
    fn probes_removed(sts: Value) -> Value {
        with(
            sts,
            "spec.template.spec.containers",
            json!([{"name": "web", "image": "web:1"}]),
        )
    }

    &[
        Row {
            rule: StsServiceName,
            case: "no spec.serviceName",
            fires: true,
            run: || create(with(statefulset(3), "spec.serviceName", Value::Null)),
        },
        Row {
            rule: StsServiceName,
            case: "spec.serviceName set",
            fires: false,
            run: || create(statefulset(3)),
        },
        Row {
            rule: StsServiceExists,
            case: "no Service of that name",
            fires: true,
            run: || reported(Validate, created(statefulset(3)), &[]),
        },
        Row {
            rule: StsServiceExists,
            case: "the Service exists",
            fires: false,
            run: || create(statefulset(3)),
        },
        Row {
            rule: StsServiceHeadless,
            case: "the Service has a cluster IP",
            fires: true,
            run: || {
                reported(
                    Validate,
                    created(statefulset(3)),
                    &[service("web", "10.0.0.5")],
                )
            },
        },
        Row {
            rule: StsServiceHeadless,
            case: "the Service is headless",
            fires: false,
            run: || create(statefulset(3)),
        },
        Row {
            rule: StsServiceSelectsPods,
            case: "the Service selects other pods",
            fires: true,
            run: || {
                let other = with(
                    service("web", "None"),
                    "spec.selector",
                    json!({"app": "db"}),
                );
                reported(Validate, created(statefulset(3)), &[other])
            },
        },
        Row {
            rule: StsServiceSelectsPods,
            case: "the Service selects the template's labels",
            fires: false,
            run: || create(statefulset(3)),
        },
        Row {
            rule: StsPartitionRange,
            case: "a template change held by a partition above the last ordinal",
            fires: true,
            run: || {
                reported(
                    Validate,
                    updated(rolling(5), new_image(rolling(5))),
                    &governed(),
                )
            },
        },
        Row {
            rule: StsPartitionRange,
            case: "a template change with the partition in range",
            fires: false,
            run: || {
                reported(
                    Validate,
                    updated(rolling(2), new_image(rolling(2))),
                    &governed(),
                )
            },
        },
        Row {
            rule: StsSharedClaim,
            case: "three replicas mount one claim",
            fires: true,
            run: || create(shared_claim(3)),
        },
        Row {
            rule: StsSharedClaim,
            case: "one replica mounts the claim",
            fires: false,
            run: || create(shared_claim(1)),
        },
        Row {
            rule: StsPvcRetention,
            case: "whenDeleted: Delete",
            fires: true,
            run: || create(retention("Delete")),
        },
        Row {
            rule: StsPvcRetention,
            case: "whenDeleted: Retain",
            fires: false,
            run: || create(retention("Retain")),
        },
        Row {
            rule: StsOrderedDelete,
            case: "an OrderedReady StatefulSet deleted with replicas",
            fires: true,
            run: || delete(statefulset(3)),
        },
        Row {
            rule: StsOrderedDelete,
            case: "deleted once scaled to 0",
            fires: false,
            run: || delete(statefulset(0)),
        },
        Row {
            rule: StsZeroGrace,
            case: "terminationGracePeriodSeconds: 0",
            fires: true,
            run: || create(grace(0)),
        },
        Row {
            rule: StsZeroGrace,
            case: "terminationGracePeriodSeconds: 30",
            fires: false,
            run: || create(grace(30)),
        },
        Row {
            rule: StsReadyOrdering,
            case: "OrderedReady with no readinessProbe",
            fires: true,
            run: || create(probes_removed(statefulset(3))),
        },
        Row {
            rule: StsReadyOrdering,
            case: "Parallel with no readinessProbe",
            fires: false,
            run: || {
                let parallel = with(
                    statefulset(3),
                    "spec.podManagementPolicy",
                    json!("Parallel"),
                );
                create(probes_removed(parallel))
            },
        },
        Row {
            rule: StsCanaryPartition,
            case: "a canary's template change arrives with partition 0",
            fires: true,
            run: || {
                reported(
                    Validate,
                    updated(canary(0), new_image(canary(0))),
                    &governed(),
                )
            },
        },
        Row {
            rule: StsCanaryPartition,
            case: "a canary's template change arrives staged",
            fires: false,
            run: || {
                reported(
                    Validate,
                    updated(canary(0), new_image(canary(2))),
                    &governed(),
                )
            },
        },
    ]
};

#[cfg(test)]
mod tests {
    use super::edit_distance;

    #[test]
    fn edit_distance_counts_single_character_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("nginx", "nginx"), 0);
        assert_eq!(edit_distance("nginx-svc", "nginx"), 4);
        assert_eq!(
            edit_distance("tempo-ingester-discovry", "tempo-ingester-discovery"),
            1
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("ä", "a"), 1);
    }
}

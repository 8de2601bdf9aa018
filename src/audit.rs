//! `sts-guard audit` and the background audit of `serve`: which StatefulSets and Services in a
//! live cluster already break the rules, which StatefulSet pods are stuck, which claims are
//! orphaned or Pending and which rollouts stalled.
//!
//! ```text
//!   LIST Nodes, Services (paged, views) ─► StaticInventory (the same index `serve` keeps)
//!     or, in `serve`, a copy of the watch cache's Nodes and Services (pointers, no request)
//!   LIST StatefulSets (paged; spec kept per page only) ─► judged as CREATE, like `check`
//!   every Service in the index ─────────────────────────► judged as CREATE, like `check`
//!   LIST StatefulSet pods (paged, views) ─► rules::live: governing Service selects the pods?
//!                                                       Terminating on a gone Node?
//!   GET the update revision of each rollout under way ─► rules::live: stalled?
//!   LIST PersistentVolumeClaims (paged, views) ─► rules::live: orphaned? Pending too long?
//! ```
//!
//! The cluster is read once, with the same read-only identity as `serve` (plus `list` on pods
//! and claims, `get` on ControllerRevisions). Every list is paged (`limit` + `continue`), and
//! only what the rules read is decoded and kept: the views in the index, the results that
//! have something to say, a count per StatefulSet of its pods, and of the StatefulSets with
//! claim templates or a rollout under way, those names. Clean objects are counted, not listed.

use crate::config::Config;
use crate::engine::{Decision, Skip, apply_policy, evaluate_created};
use crate::inventory::cluster_objects::{
    AuditClaim, AuditPod, AuditRevision, AuditStatefulSet, WatchedNode, WatchedService,
    audited_claim_templates,
};
use crate::inventory::{ClusterInventory, Inventory, LiveLookup, StaticInventory};
use crate::model::{
    LabelSet, ObjectRef, PodView, STATEFULSET_POD_NAME_LABEL, StatefulSetView, Viewed,
};
use crate::report::{AuditReport, CheckReport, Listed, ObjectResult, drop_reported_twins};
use crate::rules::live::{
    PodTally, StatefulSetClaim, StatefulSetState, check_claim_pending, check_claims_orphaned,
    check_rollout_stalled, check_service_selects_live_pods, check_stuck_terminating, claim_ordinal,
    selects_template,
};
use crate::vocabulary::{Action, Findings, Kind, RuleId};
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::{ClusterResourceScope, NamespaceResourceScope};
use kube::api::{Api, ListParams};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Debug;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

/// Page size of every list unless told otherwise (kubectl's chunk size).
pub const DEFAULT_PAGE_SIZE: u32 = 500;

/// A list restarts from the beginning at most this often when its continue token expires.
const EXPIRED_RESTARTS: usize = 3;

#[derive(Debug, Clone)]
pub struct AuditOptions {
    /// The namespaces to audit; empty: all.
    pub namespaces: Vec<String>,
    /// Objects per list request.
    pub page_size: u32,
    /// A request the API server answers 429, 503 or 504 is tried again up to `retries` times,
    /// after `retry_delay`, doubled each time. (Give the client `default_retry: false`: its
    /// own policy waits up to 1000 s between 15 tries.)
    pub retries: u32,
    pub retry_delay: Duration,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            namespaces: Vec::new(),
            page_size: DEFAULT_PAGE_SIZE,
            retries: 5,
            retry_delay: Duration::from_millis(500),
        }
    }
}

/// Why the audit could not read the cluster; one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {action}: {reason}")]
pub struct AuditError {
    /// What was being done, e.g. `list pods in all namespaces`.
    pub action: String,
    pub reason: String,
}

/// Where listing stands, for a progress line on stderr.
pub trait Progress {
    /// `so_far` objects of `kind` read, more pages to come.
    fn page(&mut self, kind: &'static str, so_far: usize);
    /// Every object of `kind` read.
    fn done(&mut self, kind: &'static str, total: usize);
}

/// No progress reports (tests, `--quiet`).
pub struct Silent;

impl Progress for Silent {
    fn page(&mut self, _: &'static str, _: usize) {}
    fn done(&mut self, _: &'static str, _: usize) {}
}

/// Reads the cluster once and judges every StatefulSet and Service as `check` does (as if
/// created), plus the checks only live pods, claims and rollout status can answer.
pub async fn run(
    client: Client,
    options: &AuditOptions,
    config: &Config,
    progress: &mut dyn Progress,
) -> Result<AuditReport, AuditError> {
    run_with(client, options, config, None, progress).await
}

/// [`run`], with Nodes and Services taken from `cached` (a copy of `serve`'s watch cache, see
/// [`ClusterInventory::services_and_nodes`](crate::inventory::ClusterInventory::services_and_nodes))
/// instead of listed. StatefulSets are listed either way: the cache keeps only the fields the
/// admission rules read of them, not the pod template and claim templates the storage and
/// pod-template rules judge.
pub async fn run_with(
    client: Client,
    options: &AuditOptions,
    config: &Config,
    cached: Option<StaticInventory>,
    progress: &mut dyn Progress,
) -> Result<AuditReport, AuditError> {
    let lister = Lister {
        client,
        namespaces: &options.namespaces,
        page_size: options.page_size.max(1),
        retries: options.retries,
        retry_delay: options.retry_delay,
    };
    let from_cache = cached.is_some();
    let mut audit = Audit {
        config,
        now: Timestamp::now(),
        inventory: cached.unwrap_or_default(),
        results: Vec::new(),
        clean: 0,
        skipped: 0,
        listed: Listed::default(),
        states: HashMap::new(),
        namespaces: BTreeSet::new(),
    };
    if from_cache {
        let (services, _, nodes) = audit.inventory.sizes();
        audit.listed.services = services;
        audit.listed.nodes = nodes;
    } else {
        audit.list_services_and_nodes(&lister, progress).await?;
    }

    // StatefulSets are judged page by page (their specs are not kept), against the Services.
    let mut phase = Phase::default();
    let statefulsets = lister
        .list(
            lister.namespaced::<AuditStatefulSet>(),
            None,
            "StatefulSets",
            progress,
            |page| match page {
                Page::Restart => {
                    audit.inventory.clear_statefulsets(None);
                    audit.states.clear();
                    phase = Phase::default();
                }
                Page::Item(sts) => audit.statefulset(sts, &mut phase),
            },
        )
        .await?;
    audit.listed.statefulsets = statefulsets;
    audit.absorb(phase);

    // Services are judged from the index, now that it holds every StatefulSet they may govern.
    let services: Vec<_> = audit.inventory.all_services().cloned().collect();
    let mut phase = Phase::default();
    for svc in services {
        if !config.is_excluded(&svc.namespace) {
            audit.namespaces.insert(svc.namespace.to_string());
        }
        let object = svc.object_ref();
        let decision =
            evaluate_created(&object, Ok(Viewed::Service(&svc)), &audit.inventory, config);
        phase.record(object, decision);
    }
    audit.absorb(phase);

    // Pods: counted against their governing Service's selector, and checked for being stuck.
    let mut tallies = audit.tallies();
    let mut phase = Phase::default();
    let pods = lister
        .list(
            lister.namespaced::<AuditPod>(),
            Some(STATEFULSET_POD_NAME_LABEL),
            "Pods",
            progress,
            |page| match page {
                Page::Restart => {
                    tallies.values_mut().for_each(|t| t.1 = PodTally::default());
                    phase = Phase::default();
                }
                Page::Item(pod) => audit.pod(PodView::from(pod), &mut tallies, &mut phase),
            },
        )
        .await?;
    audit.listed.pods = pods;
    audit.absorb(phase);
    let mut index = audit.statefulset_results();
    audit.live_selection(tallies, &mut index);
    audit.rollouts(&lister, &mut index).await?;
    audit.claims(&lister, progress, &mut index).await?;

    Ok(audit.finish())
}

/// A list callback's input: an object, or the news that the kind is listed again from the
/// start (a continue token expired), so that what was taken of it so far must be forgotten.
enum Page<K> {
    Restart,
    Item(K),
}

struct Lister<'a> {
    client: Client,
    namespaces: &'a [String],
    page_size: u32,
    retries: u32,
    retry_delay: Duration,
}

impl Lister<'_> {
    /// The lists of a namespaced kind: one per audited namespace, or one over all.
    fn namespaced<K>(&self) -> Vec<(String, Api<K>)>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>,
    {
        let plural = K::plural(&());
        if self.namespaces.is_empty() {
            return vec![(
                format!("list {plural} in all namespaces"),
                Api::all(self.client.clone()),
            )];
        }
        self.namespaces
            .iter()
            .map(|ns| {
                (
                    format!("list {plural} in namespace {ns}"),
                    Api::namespaced(self.client.clone(), ns),
                )
            })
            .collect()
    }

    fn cluster_scoped<K>(&self) -> Vec<(String, Api<K>)>
    where
        K: Resource<DynamicType = (), Scope = ClusterResourceScope>,
    {
        vec![(
            format!("list {}", K::plural(&())),
            Api::all(self.client.clone()),
        )]
    }

    /// Lists every object of `apis`, one page at a time, handing each object to `take`.
    /// Returns how many there were.
    async fn list<K>(
        &self,
        apis: Vec<(String, Api<K>)>,
        label_selector: Option<&str>,
        kind: &'static str,
        progress: &mut dyn Progress,
        mut take: impl FnMut(Page<K>),
    ) -> Result<usize, AuditError>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
    {
        let mut restarts = 0;
        let mut total;
        'kind: loop {
            total = 0;
            for (action, api) in &apis {
                let mut token: Option<String> = None;
                let mut retried = 0;
                loop {
                    let mut params = ListParams::default().limit(self.page_size);
                    if let Some(selector) = label_selector {
                        params = params.labels(selector);
                    }
                    if let Some(token) = &token {
                        params = params.continue_token(token);
                    }
                    let page = match api.list(&params).await {
                        Ok(page) => page,
                        // The continue token outlived the server's snapshot (410 Expired, after
                        // a few minutes or an etcd compaction): the kind is listed again.
                        Err(kube::Error::Api(status))
                            if status.code == 410
                                && token.is_some()
                                && restarts < EXPIRED_RESTARTS =>
                        {
                            restarts += 1;
                            tracing::warn!(kind, restarts, "continue token expired; listing again");
                            take(Page::Restart);
                            continue 'kind;
                        }
                        // Overloaded or throttled (API priority and fairness): a while later.
                        Err(kube::Error::Api(status))
                            if matches!(status.code, 429 | 503 | 504) && retried < self.retries =>
                        {
                            tokio::time::sleep(self.retry_delay * 2u32.pow(retried)).await;
                            retried += 1;
                            continue;
                        }
                        Err(err) => {
                            return Err(AuditError {
                                action: action.clone(),
                                reason: describe(&err),
                            });
                        }
                    };
                    retried = 0;
                    token = page.metadata.continue_.filter(|t| !t.is_empty());
                    total += page.items.len();
                    page.items
                        .into_iter()
                        .for_each(|item| take(Page::Item(item)));
                    if token.is_none() {
                        break;
                    }
                    progress.page(kind, total);
                }
            }
            break;
        }
        progress.done(kind, total);
        Ok(total)
    }
}

impl Lister<'_> {
    /// One object, `None` when it does not exist; throttling is retried as in [`Self::list`].
    async fn get<K>(&self, namespace: &str, name: &str) -> Result<Option<K>, AuditError>
    where
        K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
            + Clone
            + DeserializeOwned
            + Debug,
    {
        let api: Api<K> = Api::namespaced(self.client.clone(), namespace);
        let mut retried = 0;
        loop {
            match api.get_opt(name).await {
                Ok(found) => return Ok(found),
                Err(kube::Error::Api(status))
                    if matches!(status.code, 429 | 503 | 504) && retried < self.retries =>
                {
                    tokio::time::sleep(self.retry_delay * 2u32.pow(retried)).await;
                    retried += 1;
                }
                Err(err) => {
                    return Err(AuditError {
                        action: format!("get {} {namespace}/{name}", K::kind(&())),
                        reason: describe(&err),
                    });
                }
            }
        }
    }
}

/// One kind's results, dropped and redone when its list starts over.
#[derive(Default)]
struct Phase {
    results: Vec<ObjectResult>,
    clean: usize,
    skipped: usize,
}

impl Phase {
    fn record(&mut self, object: ObjectRef, decision: Decision) {
        if decision.skipped == Some(Skip::ExcludedNamespace) {
            self.skipped += 1;
        } else if decision.violations.is_empty()
            && decision.notes.is_empty()
            && decision.invalid.is_none()
        {
            self.clean += 1;
        } else {
            self.results.push(result(object, decision));
        }
    }
}

fn result(object: ObjectRef, decision: Decision) -> ObjectResult {
    ObjectResult {
        pos: None,
        kind: object.kind.to_string(),
        namespace: object.namespace,
        name: object.name,
        skipped: None,
        decision,
    }
}

struct Audit<'a> {
    config: &'a Config,
    now: Timestamp,
    inventory: StaticInventory,
    results: Vec<ObjectResult>,
    /// Objects checked without a finding (not listed).
    clean: usize,
    /// Objects in excluded namespaces (not listed).
    skipped: usize,
    listed: Listed,
    /// Claim templates and rollout status of the StatefulSets that have either, by
    /// (namespace, name); excluded namespaces are left out.
    states: HashMap<(String, String), StatefulSetState>,
    namespaces: BTreeSet<String>,
}

/// Where each StatefulSet's result is in `Audit::results`, by (namespace, name).
type ResultIndex = HashMap<(String, String), usize>;

/// (namespace, `<template>-<statefulset>`) → the StatefulSets (namespace, name) and templates
/// whose claims start so (a template `a-b` of `c` and a template `a` of `b-c` share one).
type ClaimPrefixes = HashMap<(String, String), Vec<((String, String), String)>>;

/// The selector of a StatefulSet's governing Service and its pods counted against it, by
/// (namespace, StatefulSet).
type Tallies = HashMap<(String, String), (LabelSet, PodTally)>;

impl Audit<'_> {
    fn absorb(&mut self, phase: Phase) {
        self.results.extend(phase.results);
        self.clean += phase.clean;
        self.skipped += phase.skipped;
    }

    async fn list_services_and_nodes(
        &mut self,
        lister: &Lister<'_>,
        progress: &mut dyn Progress,
    ) -> Result<(), AuditError> {
        let audit = self;
        let nodes = lister
            .list(
                lister.cluster_scoped::<WatchedNode>(),
                None,
                "Nodes",
                progress,
                |page| match page {
                    Page::Restart => audit.inventory.clear_nodes(),
                    Page::Item(node) => audit.inventory.add_node(node.into()),
                },
            )
            .await?;
        audit.listed.nodes = nodes;

        let services = lister
            .list(
                lister.namespaced::<WatchedService>(),
                None,
                "Services",
                progress,
                |page| match page {
                    Page::Restart => audit.inventory.clear_services(None),
                    Page::Item(svc) => audit.inventory.add_service(svc.into()),
                },
            )
            .await?;
        audit.listed.services = services;

        Ok(())
    }

    fn statefulset(&mut self, sts: AuditStatefulSet, phase: &mut Phase) {
        // The spec as the view, the rules and the claim checks read it, decoded once.
        let spec = sts.spec();
        let state = StatefulSetState {
            claim_templates: audited_claim_templates(&spec),
            current_revision: sts.status.current_revision.clone(),
            update_revision: sts.status.update_revision.clone(),
        };
        let namespace = sts.metadata.namespace.clone().unwrap_or_default();
        let name = sts.metadata.name.clone().unwrap_or_default();
        if !self.config.is_excluded(&namespace) {
            self.namespaces.insert(namespace.clone());
            if !state.claim_templates.is_empty() || state.rollout_in_progress().is_some() {
                self.states.insert((namespace.clone(), name.clone()), state);
            }
        }
        // A malformed object is not indexed; the engine reports it invalid.
        let view = StatefulSetView::from_parts(&sts.metadata, &spec, &namespace);
        if let Ok(view) = &view {
            self.inventory.add_statefulset(view.clone());
        }
        let viewed = match &view {
            Ok(view) => Ok(Viewed::StatefulSet { view, spec: &spec }),
            Err(err) => Err(err.clone()),
        };
        let object_ref = ObjectRef::new(Kind::StatefulSet, &namespace, &name);
        let decision = evaluate_created(&object_ref, viewed, &self.inventory, self.config);
        phase.record(object_ref, decision);
    }

    /// The StatefulSets whose governing Service's selector matches their template: their pods
    /// are counted against that selector.
    fn tallies(&self) -> Tallies {
        self.inventory
            .all_statefulsets()
            .filter(|sts| !self.config.is_excluded(&sts.namespace))
            .filter_map(|sts| {
                let service = sts.governing_service()?;
                let svc = self.inventory.service(&sts.namespace, service).ok()??;
                selects_template(sts, &svc).then(|| {
                    (
                        (sts.namespace.to_string(), sts.name.to_string()),
                        (svc.selector.clone(), PodTally::default()),
                    )
                })
            })
            .collect()
    }

    fn pod(&mut self, pod: PodView, tallies: &mut Tallies, phase: &mut Phase) {
        if self.config.is_excluded(&pod.namespace) {
            phase.skipped += 1;
            return;
        }
        self.namespaces.insert(pod.namespace.clone());
        if let Some(statefulset) = &pod.statefulset
            && let Some((selector, tally)) =
                tallies.get_mut(&(pod.namespace.clone(), statefulset.clone()))
        {
            tally.count(&pod, selector);
        }
        let mut findings = Findings::default();
        check_stuck_terminating(&pod, self.now, &self.inventory, &mut findings);
        let mut decision = Decision::default();
        apply_policy(
            &pod.object_ref(),
            findings,
            &HashSet::new(),
            self.config,
            &mut decision,
        );
        phase.record(pod.object_ref(), decision);
    }

    fn statefulset_results(&self) -> ResultIndex {
        self.results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.kind == Kind::StatefulSet.name())
            .map(|(i, r)| ((r.namespace.clone(), r.name.clone()), i))
            .collect()
    }

    /// Findings of the live rules join the StatefulSet's result (made when it had none).
    fn attach(&mut self, index: &mut ResultIndex, sts: &StatefulSetView, findings: Findings) {
        if findings.findings.is_empty() && findings.lookup_failures.is_empty() {
            return;
        }
        let key = (sts.namespace.to_string(), sts.name.to_string());
        let i = *index.entry(key).or_insert_with(|| {
            // It was counted clean when its own rules found nothing.
            self.clean = self.clean.saturating_sub(1);
            self.results
                .push(result(sts.object_ref(), Decision::default()));
            self.results.len() - 1
        });
        apply_policy(
            &sts.object_ref(),
            findings,
            &HashSet::new(),
            self.config,
            &mut self.results[i].decision,
        );
    }

    fn rule_on(&self, rule: RuleId) -> bool {
        self.config.action(rule) != Action::Off
    }

    /// `sts-service-selects-live-pods` for every StatefulSet whose pods were counted.
    fn live_selection(&mut self, tallies: Tallies, index: &mut ResultIndex) {
        let mut keys: Vec<_> = tallies.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let (_, tally) = &tallies[&key];
            let Some(sts) = self.inventory.statefulset(&key.0, &key.1).cloned() else {
                continue;
            };
            let Some(svc) = sts
                .governing_service()
                .and_then(|name| self.inventory.service(&sts.namespace, name).ok().flatten())
            else {
                continue;
            };
            let mut findings = Findings::default();
            check_service_selects_live_pods(&sts, &svc, tally, &mut findings);
            self.attach(index, &sts, findings);
        }
    }

    /// `sts-rollout-stalled` for every StatefulSet with a rollout under way: how long it has
    /// been under way is told by the creation of its update revision's ControllerRevision
    /// (the StatefulSet's status says which revisions, not since when).
    async fn rollouts(
        &mut self,
        lister: &Lister<'_>,
        index: &mut ResultIndex,
    ) -> Result<(), AuditError> {
        if !self.rule_on(RuleId::StsRolloutStalled) {
            return Ok(());
        }
        let mut rolling: Vec<(&(String, String), &str)> = self
            .states
            .iter()
            .filter_map(|(key, state)| state.rollout_in_progress().map(|rev| (key, rev)))
            .collect();
        rolling.sort();
        let rolling: Vec<((String, String), String)> = rolling
            .into_iter()
            .map(|(key, rev)| (key.clone(), rev.to_string()))
            .collect();
        for (key, revision) in rolling {
            let Some(sts) = self.inventory.statefulset(&key.0, &key.1).cloned() else {
                continue;
            };
            let found: Option<AuditRevision> = lister.get(&key.0, &revision).await?;
            self.listed.revisions += usize::from(found.is_some());
            // Gone already: the controller finished (or restarted) the rollout meanwhile.
            let Some(created) = found.and_then(|r| r.metadata.creation_timestamp) else {
                continue;
            };
            let mut findings = Findings::default();
            check_rollout_stalled(
                &sts,
                &self.states[&key],
                created.0,
                self.now,
                self.config.audit.rollout_stalled_after,
                &mut findings,
            );
            self.attach(index, &sts, findings);
        }
        Ok(())
    }

    /// `sts-claims-orphaned` and `sts-claim-pending`: the claims named after a claim template
    /// of a StatefulSet, found by name prefix (`<template>-<statefulset>`) in one paged list.
    async fn claims(
        &mut self,
        lister: &Lister<'_>,
        progress: &mut dyn Progress,
        index: &mut ResultIndex,
    ) -> Result<(), AuditError> {
        if !self.rule_on(RuleId::StsClaimsOrphaned) && !self.rule_on(RuleId::StsClaimPending) {
            return Ok(());
        }
        let mut prefixes = ClaimPrefixes::new();
        for (key, state) in &self.states {
            for template in &state.claim_templates {
                prefixes
                    .entry((key.0.clone(), format!("{template}-{}", key.1)))
                    .or_default()
                    .push((key.clone(), template.clone()));
            }
        }
        if prefixes.is_empty() {
            return Ok(());
        }
        let mut found: HashMap<(String, String), Vec<StatefulSetClaim>> = HashMap::new();
        let claims = lister
            .list(
                lister.namespaced::<AuditClaim>(),
                None,
                "PersistentVolumeClaims",
                progress,
                |page| match page {
                    Page::Restart => found.clear(),
                    Page::Item(claim) => {
                        let namespace = claim.metadata.namespace.clone().unwrap_or_default();
                        let name = claim.metadata.name.clone().unwrap_or_default();
                        let Some((prefix, _)) = name.rsplit_once('-') else {
                            return;
                        };
                        let Some(owners) = prefixes.get(&(namespace, prefix.to_string())) else {
                            return;
                        };
                        let pending_since = match claim.status.phase.as_deref() {
                            Some("Pending") => claim.metadata.creation_timestamp.map(|t| t.0),
                            _ => None,
                        };
                        for (key, template) in owners {
                            if let Some(ordinal) = claim_ordinal(&name, template, &key.1) {
                                found
                                    .entry(key.clone())
                                    .or_default()
                                    .push(StatefulSetClaim {
                                        name: name.clone(),
                                        ordinal,
                                        pending_since,
                                    });
                            }
                        }
                    }
                },
            )
            .await?;
        self.listed.claims = claims;
        let mut keys: Vec<_> = found.keys().cloned().collect();
        keys.sort();
        for key in keys {
            let Some(sts) = self.inventory.statefulset(&key.0, &key.1).cloned() else {
                continue;
            };
            let mut findings = Findings::default();
            check_claims_orphaned(&sts, &found[&key], &mut findings);
            check_claim_pending(
                &sts,
                &found[&key],
                self.now,
                self.config.audit.claim_pending_after,
                &mut findings,
            );
            self.attach(index, &sts, findings);
        }
        Ok(())
    }

    fn finish(mut self) -> AuditReport {
        drop_reported_twins(&mut self.results);
        let before = self.results.len();
        self.results.retain(|r| {
            !(r.decision.violations.is_empty()
                && r.decision.notes.is_empty()
                && r.decision.invalid.is_none())
        });
        self.clean += before - self.results.len();
        self.results.sort_by(|a, b| {
            (&a.namespace, &a.kind, &a.name).cmp(&(&b.namespace, &b.kind, &b.name))
        });
        AuditReport {
            report: CheckReport {
                objects: self.results,
                unlisted_ok: self.clean,
                unlisted_skipped: self.skipped,
            },
            listed: self.listed,
            at: self.now,
            namespaces: self.namespaces,
        }
    }
}

/// An API error in one line: what the server said, or why it could not be reached.
fn describe(err: &kube::Error) -> String {
    let one_line = |s: String| s.split_whitespace().collect::<Vec<_>>().join(" ");
    match err {
        kube::Error::Api(status) if status.code == 403 => one_line(format!(
            "forbidden: {}. sts-guard audit needs get and list on services, nodes, pods and apps/statefulsets (and on persistentvolumeclaims), and get on apps/controllerrevisions (the chart's ClusterRole grants them)",
            status.message.trim_end_matches('.')
        )),
        kube::Error::Api(status) if status.code == 401 => one_line(format!(
            "the API server rejected the credentials (401 Unauthorized{})",
            if status.message.is_empty() {
                String::new()
            } else {
                format!(": {}", status.message)
            }
        )),
        kube::Error::Api(status) => one_line(format!(
            "the API server answered {} {}: {}",
            status.code, status.reason, status.message
        )),
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                let cause_text = cause.to_string();
                if !text.contains(&cause_text) {
                    text.push_str(": ");
                    text.push_str(&cause_text);
                }
                source = cause.source();
            }
            one_line(format!("the API server could not be reached ({text})"))
        }
    }
}

/// How `serve` audits in the background.
#[derive(Debug, Clone)]
pub struct BackgroundOptions {
    /// Between the end of one run and the start of the next.
    pub every: Duration,
    /// The namespaces `serve` watches (empty: all); the audit covers the same.
    pub namespaces: Vec<String>,
}

/// The niceness of the background audit's thread where the idle scheduling class is refused:
/// the admission workers go first when the CPU is short.
const BACKGROUND_NICENESS: libc::c_int = 10;

/// Audits the cluster every `options.every` on a thread of its own (its own async runtime and
/// API client, in the idle scheduling class: see `lower_thread_priority`), the first time as soon
/// as `inventory` has synced, and hands every outcome to `publish` with the time it took; a
/// `Break` from `publish` ends the loop. Each run is [`run_with`] — the code path of `sts-guard
/// audit` — on the watch cache's Services and Nodes while their watches are healthy, and
/// listing them like the CLI while one is failing.
pub fn spawn_background<F>(
    client_config: kube::Config,
    inventory: Arc<ClusterInventory>,
    config: Arc<Config>,
    options: BackgroundOptions,
    mut publish: F,
) -> std::io::Result<std::thread::JoinHandle<()>>
where
    F: FnMut(Result<AuditReport, AuditError>, Duration) -> ControlFlow<()> + Send + 'static,
{
    std::thread::Builder::new()
        .name("sts-guard-audit".into())
        .spawn(move || {
            lower_thread_priority();
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(err) => {
                    tracing::error!(%err, "cannot start the background audit's runtime");
                    return;
                }
            };
            runtime.block_on(async move {
                let client = match Client::try_from(client_config) {
                    Ok(client) => client,
                    Err(err) => {
                        tracing::error!(%err, "cannot create the background audit's client");
                        return;
                    }
                };
                while !inventory.synced() {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let audit_options = AuditOptions {
                    namespaces: options.namespaces.clone(),
                    ..AuditOptions::default()
                };
                loop {
                    let started = std::time::Instant::now();
                    let cached = (inventory.cache_trusted(Kind::Service)
                        && inventory.cache_trusted(Kind::Node))
                    .then(|| inventory.services_and_nodes());
                    if cached.is_none() {
                        tracing::info!("a watch is failing: the background audit lists Services and Nodes itself");
                    }
                    let outcome =
                        run_with(client.clone(), &audit_options, &config, cached, &mut Silent)
                            .await;
                    if publish(outcome, started.elapsed()).is_break() {
                        return;
                    }
                    tokio::time::sleep(options.every).await;
                }
            });
        })
}

/// Puts this thread in the idle scheduling class (`SCHED_IDLE`): it runs when no other thread
/// of normal priority wants the CPU, and any of them that wakes up — an admission worker with a
/// request — takes the CPU from it at once. Where that is refused, niceness 10. (Linux
/// schedules threads one by one, so the rest of the process keeps its priority.)
fn lower_thread_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; sched_setscheduler and setpriority change only this
    // thread's scheduling, from a parameter that lives across the call.
    unsafe {
        let tid = libc::gettid();
        // All zero: priority 0, the only one SCHED_IDLE takes (musl's struct has more fields).
        let param: libc::sched_param = std::mem::zeroed();
        if libc::sched_setscheduler(tid, libc::SCHED_IDLE, &param) == 0 {
            return;
        }
        if libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, BACKGROUND_NICENESS) != 0 {
            tracing::debug!(err = %std::io::Error::last_os_error(), "cannot lower the background audit's priority");
        }
    }
}

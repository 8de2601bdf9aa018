//! The one decision entry point shared by the webhook, `review` and `check`.
//!
//! [`evaluate`] takes an admission request, an inventory and the config, runs every rule that
//! applies to the request and returns a [`Decision`]: all violations (not only the first), the
//! warnings, and the JSON Patch of the mutations. It does no I/O of its own.

mod evaluator;

pub use crate::vocabulary::Endpoint;
pub use evaluator::{Evaluator, decide_confirmed};

use crate::config::{Config, Mode, OnLookupError};
use crate::inventory::Inventory;
use crate::model::{FieldError, Ownership, ServiceView, StatefulSetView, Viewed};
use crate::request::{self, Handler, Operation, Review};
use crate::rules::Requester;
use crate::rules::mutate;
use crate::rules::pod::{PodDelete, check_pod_delete};
use crate::rules::service::{ServiceDelete, check_service, check_service_delete};
use crate::rules::statefulset::{
    StatefulSetSubject, check_canary_partition, check_statefulset, check_statefulset_delete,
};
use crate::subject::{PodCreateObject, PodDeleteObject, ServiceObject, StatefulSetObject, Subject};
use crate::vocabulary::{Action, Findings, Kind, ObjectRef, RuleId};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube_core::DynamicObject;
use kube_core::admission::AdmissionRequest;
use serde_json::Value;
use std::collections::HashSet;
use std::fmt;

/// A finding with the action config gave it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub rule: RuleId,
    /// `Deny` or `Warn`; findings of rules that are `off` are dropped.
    pub action: Action,
    pub object: ObjectRef,
    pub field: String,
    pub problem: String,
    pub hint: String,
    pub related: Vec<ObjectRef>,
    /// Why a rule that denies by config only warns here, if it does.
    pub not_denied: Option<NotDenied>,
}

/// Why a finding of a rule that denies by config was let through with a warning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotDenied {
    /// UPDATE: the old object already broke the rule.
    AlreadyBroken,
    /// The rule excused it (a whole application torn down, say).
    Excused,
    /// `mode: monitor`: the webhook warns of what it would deny.
    Monitor,
}

/// What monitor mode adds to what would have been denied.
const WOULD_DENY: &str = "(monitor mode: this request would be denied)";

impl Violation {
    /// The short form for `response.warnings`.
    pub fn warning(&self) -> String {
        format!("{}: {}: {}", self.rule, self.object, self.problem)
    }
}

impl fmt::Display for Violation {
    /// The full message: object, rule id, what is wrong and the fix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {}: {} {}",
            self.rule, self.object, self.problem, self.hint
        )
    }
}

/// Why a request was passed through without evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The endpoint has no rule for this kind, operation or subresource.
    NotHandled,
    /// The namespace is in `excludedNamespaces`.
    ExcludedNamespace,
}

#[derive(Debug, Clone, Default)]
pub struct Decision {
    pub violations: Vec<Violation>,
    /// Warnings that are not violations: mutation notices, lookups that failed open.
    pub notes: Vec<String>,
    /// Lookups that failed with `onLookupError: deny`.
    pub lookup_denials: Vec<String>,
    /// Lookups the inventory could not answer, whatever `onLookupError` made of them.
    pub lookups_failed: usize,
    /// The object could not be read (a field of the wrong type).
    pub invalid: Option<String>,
    pub patch: Option<json_patch::Patch>,
    /// Mutating rules that changed the object.
    pub mutated_by: Vec<RuleId>,
    pub skipped: Option<Skip>,
}

impl Decision {
    pub fn allowed(&self) -> bool {
        self.invalid.is_none()
            && self.lookup_denials.is_empty()
            && !self.violations.iter().any(|v| v.action == Action::Deny)
    }

    pub fn denials(&self) -> impl Iterator<Item = &Violation> {
        self.violations.iter().filter(|v| v.action == Action::Deny)
    }

    /// Every denying rule's full message, one per line.
    pub fn denial_message(&self) -> String {
        let mut lines: Vec<String> = Vec::new();
        lines.extend(self.invalid.iter().cloned());
        lines.extend(self.denials().map(ToString::to_string));
        lines.extend(self.lookup_denials.iter().cloned());
        lines.join("\n")
    }

    /// One warning per warning rule, then the notes.
    pub fn warnings(&self) -> Vec<String> {
        self.violations
            .iter()
            .filter(|v| v.action == Action::Warn)
            .map(Violation::warning)
            .chain(self.notes.iter().cloned())
            .collect()
    }

    /// Whether the response carries any warning (without building the texts).
    pub fn has_warnings(&self) -> bool {
        !self.notes.is_empty() || self.violations.iter().any(|v| v.action == Action::Warn)
    }

    /// The decision as the webhook gives it in `mode`: in monitor mode whatever would deny —
    /// a rule, an invalid object, a lookup failure under `onLookupError: deny` — is admitted
    /// with a warning instead.
    pub fn in_mode(mut self, mode: Mode) -> Decision {
        if mode == Mode::Enforce {
            return self;
        }
        for v in &mut self.violations {
            if v.action == Action::Deny {
                v.action = Action::Warn;
                v.not_denied = Some(NotDenied::Monitor);
                v.problem = format!("{} {WOULD_DENY}", v.problem);
            }
        }
        let refusals = self
            .invalid
            .take()
            .into_iter()
            .chain(self.lookup_denials.drain(..));
        let notes: Vec<String> = refusals.map(|r| format!("{r} {WOULD_DENY}")).collect();
        self.notes.extend(notes);
        self
    }

    /// Rule ids that fired, for logs and metrics.
    pub fn rule_ids(&self) -> Vec<&'static str> {
        let mut ids: Vec<&'static str> = self.violations.iter().map(|v| v.rule.as_str()).collect();
        ids.extend(self.mutated_by.iter().map(|r| r.as_str()));
        ids.dedup();
        ids
    }
}

/// Evaluates one admission request in kube-rs's form (tests, benchmarks) by the handler
/// `endpoint` has for it: its objects are decoded from their text as a body's are, then judged
/// by [`evaluate_review`].
pub fn evaluate(
    req: &AdmissionRequest<DynamicObject>,
    inventory: &dyn Inventory,
    config: &Config,
    endpoint: Endpoint,
) -> Decision {
    let texts = request::object_texts(req);
    match request::review_of(req, endpoint, &texts) {
        Ok(review) => evaluate_review(&review, inventory, config),
        Err(err) => Decision {
            invalid: Some(err),
            ..Decision::default()
        },
    }
}

/// Evaluates one admission request by the handler the decoder planned for it (`None`: no
/// handler of the endpoint takes it), so the plan is worked out once per request.
pub fn evaluate_review(
    review: &Review<'_>,
    inventory: &dyn Inventory,
    config: &Config,
) -> Decision {
    let subject = review.object.as_ref().or(review.old_object.as_ref());
    let namespace = review
        .namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .or_else(|| subject.and_then(|o| o.metadata().namespace.as_deref()))
        .unwrap_or("default");
    let name = match &*review.name {
        "" => subject
            .and_then(|o| o.metadata().name.as_deref())
            .unwrap_or(""),
        n => n,
    };
    let mut decision = Decision::default();
    let Some(kind) = Kind::from_group_kind(&review.group, &review.kind) else {
        decision.skipped = Some(Skip::NotHandled);
        return decision;
    };
    if review.sub_resource.is_some() {
        decision.skipped = Some(Skip::NotHandled);
        return decision;
    }
    if config.is_excluded(namespace) {
        decision.skipped = Some(Skip::ExcludedNamespace);
        return decision;
    }
    let Some(handler) = review.handler else {
        decision.skipped = Some(Skip::NotHandled);
        return decision;
    };
    let evaluation = Evaluation {
        review,
        namespace,
        name,
        inventory,
        config,
    };
    let result = match handler {
        Handler::ValidateStatefulSet => evaluation.validate_statefulset(&mut decision),
        Handler::ValidateStatefulSetDelete => evaluation.validate_statefulset_delete(&mut decision),
        Handler::ValidateService => evaluation.validate_service(&mut decision),
        Handler::ValidateServiceDelete => evaluation.validate_service_delete(&mut decision),
        Handler::ValidatePodDelete => evaluation.validate_pod_delete(&mut decision),
        Handler::MutatePod => evaluation.mutate_pod(&mut decision),
        Handler::MutateStatefulSet => evaluation.mutate_statefulset(&mut decision),
    };
    finish(&format_args!("{kind} {namespace}/{name}"), result, decision)
}

/// Judges `object` as the webhook judges its CREATE, from the views its loader built
/// (`check`, `audit`): `viewed` is those, or why they could not be built (an invalid object, as
/// the webhook answers it).
pub fn evaluate_created(
    object: &ObjectRef,
    viewed: Result<Viewed<'_>, FieldError>,
    inventory: &dyn Inventory,
    config: &Config,
) -> Decision {
    let mut decision = Decision::default();
    if config.is_excluded(&object.namespace) {
        decision.skipped = Some(Skip::ExcludedNamespace);
        return decision;
    }
    let result = viewed.and_then(|viewed| {
        let findings = match viewed {
            Viewed::StatefulSet { view, spec } => {
                let subject = StatefulSetSubject {
                    view,
                    spec,
                    template_changed: false,
                };
                statefulset_findings(&subject, None, inventory, config)?
            }
            Viewed::Service(view) => {
                let mut findings = Findings::default();
                check_service(view, None, inventory, &mut findings);
                findings
            }
        };
        apply_policy(object, findings, &HashSet::new(), config, &mut decision);
        Ok(())
    });
    finish(object, result, decision)
}

/// The decision, or, when `object` could not be read, that alone.
fn finish(
    object: &dyn fmt::Display,
    result: Result<(), FieldError>,
    mut decision: Decision,
) -> Decision {
    if let Err(err) = result {
        decision.invalid = Some(format!("{object}: invalid object: {err}"));
        decision.violations.clear();
        decision.patch = None;
        decision.mutated_by.clear();
    }
    decision
}

/// The StatefulSet rules' findings on `subject`; `canary`, on UPDATE, is the new object's
/// metadata and the old object's view, which stage a canary's rollout.
fn statefulset_findings(
    subject: &StatefulSetSubject<'_>,
    canary: Option<(&ObjectMeta, &StatefulSetView)>,
    inventory: &dyn Inventory,
    config: &Config,
) -> Result<Findings, FieldError> {
    let mut findings = Findings::default();
    check_statefulset(subject, inventory, &mut findings)?;
    if let Some((meta, old)) = canary
        && config.mutation_enabled(RuleId::StsPartitionDefault)
    {
        check_canary_partition(meta, subject, old, &config.partition, &mut findings);
    }
    Ok(findings)
}

/// Turns rule findings about `object` into the decision's violations: the configured action of
/// each rule (`off` drops it), UPDATE grandfathering (`already_broken`: rules the old object
/// broke deny no more, they warn), excused findings (a whole application torn down: they
/// warn), and `onLookupError` for lookups that failed. Every path that
/// judges an object goes through here, `sts-guard audit`'s live checks included.
pub fn apply_policy(
    object: &ObjectRef,
    findings: Findings,
    already_broken: &HashSet<RuleId>,
    config: &Config,
    decision: &mut Decision,
) {
    for f in findings.findings {
        let configured = config.action(f.rule);
        if configured == Action::Off {
            continue;
        }
        let grandfathered = configured == Action::Deny && already_broken.contains(&f.rule);
        let problem = match (&f.excuse, grandfathered) {
            (Some(excuse), _) => format!("{} (not denied: {excuse})", f.problem),
            (None, true) => format!(
                "{} (already the case before this update, so not denied)",
                f.problem
            ),
            (None, false) => f.problem,
        };
        let not_denied = match (configured, &f.excuse, grandfathered) {
            (Action::Deny, Some(_), _) => Some(NotDenied::Excused),
            (Action::Deny, None, true) => Some(NotDenied::AlreadyBroken),
            _ => None,
        };
        decision.violations.push(Violation {
            rule: f.rule,
            action: if not_denied.is_some() {
                Action::Warn
            } else {
                configured
            },
            object: object.clone(),
            field: f.field,
            problem,
            hint: f.hint,
            related: f.related,
            not_denied,
        });
    }
    for (rule, err) in findings.lookup_failures {
        if config.action(rule) == Action::Off {
            continue;
        }
        decision.lookups_failed += 1;
        let text = format!("{rule}: {object}: could not look up {err}");
        match config.on_lookup_error {
            OnLookupError::Allow => decision
                .notes
                .push(format!("{text}; rule not evaluated (onLookupError: allow)")),
            OnLookupError::Deny => decision.lookup_denials.push(format!(
                "{text}; denied by onLookupError: deny. Retry when the API server is reachable."
            )),
        }
    }
}

/// One request under evaluation, with what it is evaluated against.
struct Evaluation<'a> {
    review: &'a Review<'a>,
    namespace: &'a str,
    name: &'a str,
    inventory: &'a dyn Inventory,
    config: &'a Config,
}

/// A request whose object is missing where the operation requires one.
fn missing(what: &str) -> FieldError {
    FieldError {
        path: what.to_string(),
        expected: "an object",
        found: "null".into(),
    }
}

impl<'a> Evaluation<'a> {
    fn object_ref(&self, kind: Kind) -> ObjectRef {
        ObjectRef::new(kind, self.namespace, self.name)
    }

    fn requester(&self) -> Requester<'a> {
        Requester {
            username: self.review.username.as_deref().unwrap_or(""),
            groups: &self.review.groups,
        }
    }

    /// Applies config to the findings: actions, `off`, UPDATE grandfathering, lookup failures.
    fn apply_policy(
        &self,
        kind: Kind,
        findings: Findings,
        already_broken: &HashSet<RuleId>,
        decision: &mut Decision,
    ) {
        apply_policy(
            &self.object_ref(kind),
            findings,
            already_broken,
            self.config,
            decision,
        );
    }

    fn validate_statefulset(&self, decision: &mut Decision) -> Result<(), FieldError> {
        let obj = statefulset(&self.review.object).ok_or_else(|| missing("object"))?;
        let view = StatefulSetView::from_parts(&obj.metadata, &obj.spec, self.namespace)?;
        let old = statefulset(&self.review.old_object);
        // A malformed old object grandfathers and stages nothing.
        let old_view = old.and_then(|old| {
            StatefulSetView::from_parts(&old.metadata, &old.spec, self.namespace).ok()
        });
        let subject = StatefulSetSubject {
            view: &view,
            spec: &obj.spec,
            template_changed: old.is_some_and(|old| obj.template_changed(old)),
        };
        let canary = old_view.as_ref().map(|old_view| (&obj.metadata, old_view));
        let findings = statefulset_findings(&subject, canary, self.inventory, self.config)?;
        let already_broken = match (self.review.operation, old, &old_view) {
            // The old object is judged on its own (no "old of old").
            (Operation::Update, Some(old), Some(old_view)) => {
                let old_subject = StatefulSetSubject {
                    view: old_view,
                    spec: &old.spec,
                    template_changed: false,
                };
                statefulset_findings(&old_subject, None, self.inventory, self.config)
                    .map(|f| f.findings.iter().map(|f| f.rule).collect())
                    .unwrap_or_default()
            }
            _ => HashSet::new(),
        };
        self.apply_policy(Kind::StatefulSet, findings, &already_broken, decision);
        Ok(())
    }

    fn validate_statefulset_delete(&self, decision: &mut Decision) -> Result<(), FieldError> {
        // Before Kubernetes 1.15 DELETE carried no oldObject: nothing to judge then.
        let Some(old) = statefulset(&self.review.old_object) else {
            return Ok(());
        };
        let view = StatefulSetView::from_parts(&old.metadata, &old.spec, self.namespace)?;
        let mut findings = Findings::default();
        check_statefulset_delete(&view, self.requester(), &mut findings);
        self.apply_policy(Kind::StatefulSet, findings, &HashSet::new(), decision);
        Ok(())
    }

    fn validate_service(&self, decision: &mut Decision) -> Result<(), FieldError> {
        let obj = service(&self.review.object).ok_or_else(|| missing("object"))?;
        let view = ServiceView::from_parts(&obj.metadata, &obj.spec, self.namespace)?;
        let update = self.review.operation == Operation::Update;
        // An update by the application the StatefulSets belong to (say a `helm upgrade`,
        // which updates Services before StatefulSets) warns instead of denying.
        let updated_by = update.then(|| Ownership::from_meta(&obj.metadata));
        let mut findings = Findings::default();
        check_service(&view, updated_by.as_ref(), self.inventory, &mut findings);
        let already_broken = match service(&self.review.old_object).filter(|_| update) {
            Some(old) => match ServiceView::from_parts(&old.metadata, &old.spec, self.namespace) {
                Ok(old_view) => {
                    let mut old_findings = Findings::default();
                    check_service(&old_view, None, self.inventory, &mut old_findings);
                    old_findings.findings.iter().map(|f| f.rule).collect()
                }
                Err(_) => HashSet::new(),
            },
            None => HashSet::new(),
        };
        self.apply_policy(Kind::Service, findings, &already_broken, decision);
        Ok(())
    }

    fn validate_service_delete(&self, decision: &mut Decision) -> Result<(), FieldError> {
        // The name decides which StatefulSets it governs, so a DELETE without oldObject is
        // still judged; the old object's metadata says what application it belongs to.
        let view = ServiceView {
            namespace: crate::model::intern(self.namespace),
            name: self.name.into(),
            cluster_ip: None,
            service_type: None,
            selector: Default::default(),
        };
        let ownership = self
            .review
            .old_object
            .as_ref()
            .map(|old| Ownership::from_meta(old.metadata()))
            .unwrap_or_default();
        let mut findings = Findings::default();
        check_service_delete(
            &ServiceDelete {
                service: &view,
                ownership: &ownership,
                requester: self.requester(),
            },
            self.inventory,
            &mut findings,
        );
        self.apply_policy(Kind::Service, findings, &HashSet::new(), decision);
        Ok(())
    }

    fn validate_pod_delete(&self, decision: &mut Decision) -> Result<(), FieldError> {
        let Some(old) = pod_delete(&self.review.old_object) else {
            return Ok(());
        };
        let grace = self
            .review
            .options
            .as_ref()
            .and_then(|o| o.get("gracePeriodSeconds"))
            .and_then(Value::as_i64);
        let pod = PodDelete {
            namespace: self.namespace,
            name: self.name,
            meta: &old.metadata,
            spec: &old.spec,
            status: &old.status,
            grace_period_seconds: grace,
            requester: self.requester(),
        };
        let mut findings = Findings::default();
        check_pod_delete(
            &pod,
            &self.config.force_delete,
            self.inventory,
            &mut findings,
        )?;
        self.apply_policy(Kind::Pod, findings, &HashSet::new(), decision);
        Ok(())
    }

    fn mutate_pod(&self, decision: &mut Decision) -> Result<(), FieldError> {
        if !self.config.mutation_enabled(RuleId::PodIdentityEnv) {
            return Ok(());
        }
        let obj = pod_create(&self.review.object).ok_or_else(|| missing("object"))?;
        let mutation = mutate::inject_pod_identity(
            &obj.metadata,
            self.namespace,
            || obj.identity_spec(),
            &self.config.identity_env,
        )?;
        finish_patch(mutation, RuleId::PodIdentityEnv, decision);
        Ok(())
    }

    fn mutate_statefulset(&self, decision: &mut Decision) -> Result<(), FieldError> {
        if !self.config.mutation_enabled(RuleId::StsPartitionDefault) {
            return Ok(());
        }
        let obj = statefulset(&self.review.object).ok_or_else(|| missing("object"))?;
        let view = StatefulSetView::from_parts(&obj.metadata, &obj.spec, self.namespace)?;
        let old = match (self.review.operation, statefulset(&self.review.old_object)) {
            (Operation::Update, Some(old)) => Some((
                StatefulSetView::from_parts(&old.metadata, &old.spec, self.namespace)?,
                obj.template_changed(old),
            )),
            _ => None,
        };
        let update = old
            .as_ref()
            .map(|(old, template_changed)| mutate::StatefulSetUpdate {
                old,
                template_changed: *template_changed,
            });
        let mutation = mutate::default_partition(
            &obj.metadata,
            &view,
            &obj.spec,
            update,
            &self.config.partition,
        )?;
        finish_patch(mutation, RuleId::StsPartitionDefault, decision);
        Ok(())
    }
}

/// The StatefulSet of a review, as the plan decoded it for the StatefulSet handlers.
fn statefulset<'r, 'a>(subject: &'r Option<Subject<'a>>) -> Option<&'r StatefulSetObject<'a>> {
    match subject {
        Some(Subject::StatefulSet(sts)) => Some(sts),
        _ => None,
    }
}

fn service<'r, 'a>(subject: &'r Option<Subject<'a>>) -> Option<&'r ServiceObject<'a>> {
    match subject {
        Some(Subject::Service(svc)) => Some(svc),
        _ => None,
    }
}

fn pod_create<'r, 'a>(subject: &'r Option<Subject<'a>>) -> Option<&'r PodCreateObject<'a>> {
    match subject {
        Some(Subject::PodCreate(pod)) => Some(pod),
        _ => None,
    }
}

fn pod_delete<'r, 'a>(subject: &'r Option<Subject<'a>>) -> Option<&'r PodDeleteObject<'a>> {
    match subject {
        Some(Subject::PodDelete(pod)) => Some(pod),
        _ => None,
    }
}

/// The rule's operations become the response's patch (none when there are none), its warning
/// a note. Mutations read `data`, which holds everything but `metadata`, and no mutation
/// touches `metadata`, so their paths are the object's own.
fn finish_patch(mutation: mutate::Mutation, rule: RuleId, decision: &mut Decision) {
    decision.notes.extend(mutation.warning);
    if !mutation.operations.is_empty() {
        decision.patch = Some(json_patch::Patch(mutation.operations));
        decision.mutated_by.push(rule);
    }
}

//! The words every layer shares, and nothing else: the kinds of objects sts-guard reads, the
//! webhook endpoints, the rule ids with the one table of per-rule facts, actions, findings and
//! failed lookups.
//!
//! This module imports nothing of the crate. Config parsing, `check`'s SARIF rule list, the
//! metrics and the chart's values schema test all read [`RULES`]; adding a rule means a row
//! here, its function in `rules/` and its test rows beside it (`ROWS`: a case where it fires
//! and one where it stays quiet, or `rules::rows` fails).

use std::fmt;

/// One of a kind's API coordinates, as k8s-openapi's type for it declares them (they are
/// `const`, so request matching can use them in const contexts).
macro_rules! coordinate {
    ($kind:expr, $coordinate:ident) => {{
        use k8s_openapi::Resource as R;
        use k8s_openapi::api::{apps::v1 as apps, core::v1 as core};
        match $kind {
            Kind::StatefulSet => <apps::StatefulSet as R>::$coordinate,
            Kind::Service => <core::Service as R>::$coordinate,
            Kind::Pod => <core::Pod as R>::$coordinate,
            Kind::Node => <core::Node as R>::$coordinate,
        }
    }};
}

/// The kinds of objects sts-guard reads, with what the API server calls them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    StatefulSet,
    Service,
    Pod,
    Node,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::StatefulSet, Kind::Service, Kind::Pod, Kind::Node];

    /// The kind as objects spell it, e.g. `StatefulSet`.
    pub const fn name(self) -> &'static str {
        coordinate!(self, KIND)
    }

    /// The API group (`""` for the core group).
    pub const fn group(self) -> &'static str {
        coordinate!(self, GROUP)
    }

    pub const fn version(self) -> &'static str {
        coordinate!(self, VERSION)
    }

    /// `apiVersion` as objects spell it, e.g. `apps/v1`.
    pub const fn api_version(self) -> &'static str {
        coordinate!(self, API_VERSION)
    }

    /// The resource name in URLs and admission requests, e.g. `statefulsets`.
    pub const fn plural(self) -> &'static str {
        coordinate!(self, URL_PATH_SEGMENT)
    }

    /// The value of a metric's `kind` label; kinds sts-guard does not know count as `other`.
    pub fn metric_label(kind: Option<Kind>) -> &'static str {
        kind.map_or("other", Kind::name)
    }

    /// The kind an admission request names by API group and kind.
    pub fn from_group_kind(group: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.name() == kind)
    }

    /// The kind a manifest names by `apiVersion` and `kind`. apps/v1beta1 and v1beta2
    /// StatefulSets are still found in old manifests; they count as StatefulSets (v1beta1
    /// defaulted a missing selector, which the rules do not read).
    pub fn from_manifest(api_version: &str, kind: &str) -> Option<Kind> {
        let group = api_version.rsplit_once('/').map_or("", |(group, _)| group);
        Kind::from_group_kind(group, kind)
            .filter(|k| *k == Kind::StatefulSet || api_version == k.api_version())
    }

    /// The kind of a request or object whose kind is given by name alone.
    pub fn from_name(kind: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Which webhook path a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    Validate,
    Mutate,
}

impl Endpoint {
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Validate => "validate",
            Endpoint::Mutate => "mutate",
        }
    }
}

/// What a validating rule's finding does to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
    Deny,
    Warn,
    Off,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deny => "deny",
            Action::Warn => "warn",
            Action::Off => "off",
        }
    }
}

/// How much a finding matters, as the policy report formats grade results
/// (`wgpolicyk8s.io` PolicyReports, `openreports.io` Reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// What a rule does: validating rules report findings that config turns into an action,
/// mutating rules change the object and are switched `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    Validating {
        /// The action when config says nothing.
        default: Action,
        /// The actions config may choose.
        choices: &'static [Action],
    },
    Mutating,
}

/// Denies unless config says otherwise.
const DENY: Effect = Effect::Validating {
    default: Action::Deny,
    choices: &[Action::Deny, Action::Warn, Action::Off],
};
/// Warns unless config says otherwise.
const WARN: Effect = Effect::Validating {
    default: Action::Warn,
    choices: &[Action::Deny, Action::Warn, Action::Off],
};
/// Warns and may never deny.
const WARN_ONLY: Effect = Effect::Validating {
    default: Action::Warn,
    choices: &[Action::Warn, Action::Off],
};
const MUTATING: Effect = Effect::Mutating;

/// One row of [`RULES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleFacts {
    pub rule: RuleId,
    /// Stable id, used in messages, config, metrics and `check` output.
    pub id: &'static str,
    /// The kind of object the rule judges or changes.
    pub kind: Kind,
    pub effect: Effect,
    /// How much a finding matters in a policy report (mutating rules: `Info`, they report
    /// nothing).
    pub severity: Severity,
    /// Only `sts-guard audit` (and `serve`'s background audit) can evaluate it: it reads live
    /// pods, claims or rollout status, which neither an admission request nor a manifest file
    /// shows.
    pub audit_only: bool,
    /// One line on what the rule protects, for listings, SARIF and the README.
    pub summary: &'static str,
}

/// Declares [`RuleId`] and [`RULES`] from one list, so a rule's facts are written once.
macro_rules! rule_table {
    ($(
        $rule:ident {
            id: $id:literal,
            kind: $kind:ident,
            effect: $effect:ident,
            audit_only: $audit_only:literal,
            severity: $severity:ident,
            summary: $summary:literal $(,)?
        }
    )*) => {
        /// A rule sts-guard enforces; its facts are its row of [`RULES`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum RuleId {
            $($rule,)*
        }

        /// Every rule's facts, in [`RuleId`] order.
        pub const RULES: &[RuleFacts] = &[$(
            RuleFacts {
                rule: RuleId::$rule,
                id: $id,
                kind: Kind::$kind,
                effect: $effect,
                severity: Severity::$severity,
                audit_only: $audit_only,
                summary: $summary,
            },
        )*];

        impl RuleId {
            pub const ALL: [RuleId; [$($id),*].len()] = [$(RuleId::$rule),*];
        }
    };
}

rule_table! {
    StsServiceName {
        id: "sts-service-name", kind: StatefulSet, effect: DENY, audit_only: false,
        severity: High,
        summary: "A StatefulSet names its governing Service in spec.serviceName.",
    }
    StsServiceExists {
        id: "sts-service-exists", kind: StatefulSet, effect: DENY, audit_only: false,
        severity: High,
        summary: "The governing Service of a StatefulSet exists in its namespace.",
    }
    StsServiceHeadless {
        id: "sts-service-headless", kind: StatefulSet, effect: DENY, audit_only: false,
        severity: High,
        summary: "The governing Service of a StatefulSet is headless (clusterIP: None).",
    }
    StsServiceSelectsPods {
        id: "sts-service-selects-pods", kind: StatefulSet, effect: DENY, audit_only: false,
        severity: High,
        summary: "The governing Service selects the StatefulSet's pods.",
    }
    StsPartitionRange {
        id: "sts-partition-range", kind: StatefulSet, effect: WARN_ONLY, audit_only: false,
        severity: Low,
        summary: "A RollingUpdate partition leaves some pods to update.",
    }
    SvcGoverningHeadless {
        id: "svc-governing-headless", kind: Service, effect: DENY, audit_only: false,
        severity: High,
        summary: "A governing Service stays headless.",
    }
    SvcGoverningSelector {
        id: "svc-governing-selector", kind: Service, effect: DENY, audit_only: false,
        severity: High,
        summary: "A governing Service keeps selecting the StatefulSet's pods.",
    }
    SvcGoverningDelete {
        id: "svc-governing-delete", kind: Service, effect: DENY, audit_only: false,
        severity: High,
        summary: "A Service that governs a running StatefulSet is not deleted.",
    }
    PodForceDelete {
        id: "pod-force-delete", kind: Pod, effect: DENY, audit_only: false,
        severity: Critical,
        summary: "StatefulSet pods are not force-deleted while they may still run.",
    }
    StsSharedClaim {
        id: "sts-shared-claim", kind: StatefulSet, effect: WARN, audit_only: false,
        severity: Medium,
        summary: "Replicas do not share one PersistentVolumeClaim.",
    }
    StsPvcRetention {
        id: "sts-pvc-retention", kind: StatefulSet, effect: WARN, audit_only: false,
        severity: Low,
        summary: "PersistentVolumeClaims are not deleted with scaled-down or deleted pods.",
    }
    StsOrderedDelete {
        id: "sts-ordered-delete", kind: StatefulSet, effect: WARN, audit_only: false,
        severity: Low,
        summary: "An OrderedReady StatefulSet is scaled to 0 before it is deleted.",
    }
    StsZeroGrace {
        id: "sts-zero-grace", kind: StatefulSet, effect: WARN, audit_only: false,
        severity: Medium,
        summary: "A StatefulSet's pods have a termination grace period, so deleting one is not a force delete.",
    }
    StsReadyOrdering {
        id: "sts-ready-ordering", kind: StatefulSet, effect: WARN, audit_only: false,
        severity: Low,
        summary: "An OrderedReady StatefulSet's pods report readiness, so ordered start waits for something.",
    }
    StsCanaryPartition {
        id: "sts-canary-partition", kind: StatefulSet, effect: DENY, audit_only: false,
        severity: Medium,
        summary: "A canary StatefulSet's template change arrives held by its staged partition (the mutation, validated after).",
    }
    StsServiceSelectsLivePods {
        id: "sts-service-selects-live-pods", kind: StatefulSet, effect: DENY, audit_only: true,
        severity: High,
        summary: "The governing Service selects the StatefulSet's existing pods (audit only).",
    }
    PodStuckTerminating {
        id: "pod-stuck-terminating", kind: Pod, effect: WARN, audit_only: true,
        severity: Medium,
        summary: "No StatefulSet pod is stuck Terminating on a Node that is gone or out of service (audit only).",
    }
    StsClaimsOrphaned {
        id: "sts-claims-orphaned", kind: StatefulSet, effect: WARN, audit_only: true,
        severity: Medium,
        summary: "No PersistentVolumeClaim of a StatefulSet is kept for an ordinal it no longer runs (audit only).",
    }
    StsRolloutStalled {
        id: "sts-rollout-stalled", kind: StatefulSet, effect: WARN, audit_only: true,
        severity: Medium,
        summary: "A StatefulSet's rollout finishes: its update revision becomes its current revision in time (audit only).",
    }
    StsClaimPending {
        id: "sts-claim-pending", kind: StatefulSet, effect: WARN, audit_only: true,
        severity: Medium,
        summary: "A StatefulSet's PersistentVolumeClaims do not stay Pending (audit only).",
    }
    PodIdentityEnv {
        id: "pod-identity-env", kind: Pod, effect: MUTATING, audit_only: false,
        severity: Info,
        summary: "StatefulSet pods get their ordinal, hostname and FQDN as environment variables.",
    }
    StsPartitionDefault {
        id: "sts-partition-default", kind: StatefulSet, effect: MUTATING, audit_only: false,
        severity: Info,
        summary: "RollingUpdate partitions are explicit; canary annotations stage rollouts.",
    }
}

impl RuleId {
    /// The rule's row of [`RULES`].
    pub fn facts(self) -> &'static RuleFacts {
        &RULES[self as usize]
    }

    pub fn as_str(self) -> &'static str {
        self.facts().id
    }

    pub fn parse(id: &str) -> Option<RuleId> {
        RULES.iter().find(|r| r.id == id).map(|r| r.rule)
    }

    /// Mutating rules are switched on or off; validating rules have an action.
    pub fn is_mutating(self) -> bool {
        self.facts().effect == Effect::Mutating
    }

    /// How much a finding matters in a policy report.
    pub fn severity(self) -> Severity {
        self.facts().severity
    }

    /// Rules only `sts-guard audit` can evaluate.
    pub fn is_audit_only(self) -> bool {
        self.facts().audit_only
    }

    /// The action when config says nothing. `None` for mutating rules.
    pub fn default_action(self) -> Option<Action> {
        match self.facts().effect {
            Effect::Validating { default, .. } => Some(default),
            Effect::Mutating => None,
        }
    }

    /// The values config may give this rule.
    pub fn allowed_actions(self) -> Vec<&'static str> {
        match self.facts().effect {
            Effect::Validating { choices, .. } => choices.iter().map(|a| a.as_str()).collect(),
            Effect::Mutating => vec!["on", "off"],
        }
    }

    /// One line on what the rule protects.
    pub fn summary(self) -> &'static str {
        self.facts().summary
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies an object in messages and reports.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: Kind,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: Kind, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind,
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// A lookup the inventory could not answer (API server unreachable, cache not synced, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct LookupError {
    /// What was looked up, e.g. `Service default/nginx`.
    pub what: String,
    pub reason: String,
}

/// What a rule found wrong, before config decides what that means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub rule: RuleId,
    /// Field path in the request's object, e.g. `spec.serviceName`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
    /// How to fix it.
    pub hint: String,
    /// Other objects the finding is about (the StatefulSets a Service governs, ...).
    pub related: Vec<ObjectRef>,
    /// Why the request is allowed although the rule holds against it (a whole application
    /// being torn down, say): a rule that would deny warns instead, with this reason.
    pub excuse: Option<String>,
}

impl Finding {
    pub fn new(rule: RuleId, field: impl Into<String>, problem: String, hint: String) -> Self {
        Finding {
            rule,
            field: field.into(),
            problem,
            hint,
            related: Vec::new(),
            excuse: None,
        }
    }

    pub fn with_related(mut self, related: Vec<ObjectRef>) -> Self {
        self.related = related;
        self
    }

    pub fn excused(mut self, reason: String) -> Self {
        self.excuse = Some(reason);
        self
    }
}

/// Everything the rules reported for one object.
#[derive(Debug, Default)]
pub struct Findings {
    pub findings: Vec<Finding>,
    /// Rules that could not be evaluated because a lookup failed.
    pub lookup_failures: Vec<(RuleId, LookupError)>,
}

impl Findings {
    pub fn push(&mut self, finding: Finding) {
        self.findings.push(finding);
    }

    /// Unwraps a lookup, recording a failure against `rule` when it could not be answered.
    pub fn lookup<T>(&mut self, rule: RuleId, result: Result<T, LookupError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(err) => {
                self.lookup_failures.push((rule, err));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_rule_id_order_with_unique_ids() {
        for (i, facts) in RULES.iter().enumerate() {
            assert_eq!(facts.rule as usize, i, "{} is out of order", facts.id);
            assert_eq!(RuleId::parse(facts.id), Some(facts.rule));
        }
        assert_eq!(RuleId::ALL.len(), RULES.len());
    }

    #[test]
    fn kinds_round_trip_through_their_api_names() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_group_kind(kind.group(), kind.name()), Some(kind));
            assert_eq!(
                Kind::from_manifest(kind.api_version(), kind.name()),
                Some(kind)
            );
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
        }
        assert_eq!(
            Kind::from_manifest("apps/v1beta2", "StatefulSet"),
            Some(Kind::StatefulSet)
        );
        assert_eq!(Kind::from_manifest("apps/v1", "Service"), None);
        assert_eq!(Kind::from_manifest("v2", "Service"), None);
        assert_eq!(Kind::from_group_kind("", "StatefulSet"), None);
    }

    /// The chart validates `config.rules` against a list of ids; it must be this table's.
    #[test]
    fn the_chart_values_schema_lists_every_rule_id() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/charts/sts-guard/values.schema.json"
        );
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let listed: Vec<&str> = schema
            .pointer("/properties/config/properties/rules/propertyNames/enum")
            .and_then(|ids| ids.as_array())
            .expect("the schema lists rule ids")
            .iter()
            .filter_map(|id| id.as_str())
            .collect();
        let ids: Vec<&str> = RULES.iter().map(|r| r.id).collect();
        assert_eq!(listed, ids, "{path}: rules.propertyNames.enum");
    }

    /// The README's Rules table lists every validating rule with its default, severity and
    /// scope.
    #[test]
    fn the_readme_rules_table_is_the_table() {
        let readme = include_str!("../README.md");
        let section = readme
            .split("\n## Rules\n")
            .nth(1)
            .expect("README has ## Rules");
        let rows: Vec<(String, String, String, bool)> = section
            .lines()
            .skip_while(|line| !line.starts_with("| `"))
            .take_while(|line| line.starts_with('|'))
            .map(|line| {
                let cells: Vec<&str> = line.split('|').map(str::trim).collect();
                let audit_only = cells[4].starts_with("(audit only)");
                (
                    cells[1].trim_matches('`').to_string(),
                    cells[2].to_string(),
                    cells[3].to_string(),
                    audit_only,
                )
            })
            .collect();
        let expected: Vec<(String, String, String, bool)> = RULES
            .iter()
            .filter_map(|r| match r.effect {
                Effect::Validating { default, .. } => Some((
                    r.id.to_string(),
                    default.as_str().to_string(),
                    r.severity.as_str().to_string(),
                    r.audit_only,
                )),
                Effect::Mutating => None,
            })
            .collect();
        assert_eq!(rows, expected, "README.md, ## Rules");
    }
}

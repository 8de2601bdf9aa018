//! The policy: every rule sts-guard enforces, as pure functions.
//!
//! A rule reads the request's object, asks the [`Inventory`](crate::inventory::Inventory) about
//! other objects and reports [`Finding`]s. It never decides what happens: the engine applies the
//! configured action (deny, warn, off) and the UPDATE grandfathering.

pub mod live;
pub mod mutate;
pub mod pod;
pub mod service;
pub mod statefulset;

use crate::inventory::LookupError;
use crate::model::ObjectRef;
use std::fmt;

/// Stable rule ids, used in messages, config, metrics and `check` output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RuleId {
    StsServiceName,
    StsServiceExists,
    StsServiceHeadless,
    StsServiceSelectsPods,
    StsPartitionRange,
    SvcGoverningHeadless,
    SvcGoverningSelector,
    SvcGoverningDelete,
    PodForceDelete,
    StsSharedClaim,
    StsPvcRetention,
    StsOrderedDelete,
    StsServiceSelectsLivePods,
    PodStuckTerminating,
    PodIdentityEnv,
    StsPartitionDefault,
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

impl RuleId {
    pub const ALL: [RuleId; 16] = [
        RuleId::StsServiceName,
        RuleId::StsServiceExists,
        RuleId::StsServiceHeadless,
        RuleId::StsServiceSelectsPods,
        RuleId::StsPartitionRange,
        RuleId::SvcGoverningHeadless,
        RuleId::SvcGoverningSelector,
        RuleId::SvcGoverningDelete,
        RuleId::PodForceDelete,
        RuleId::StsSharedClaim,
        RuleId::StsPvcRetention,
        RuleId::StsOrderedDelete,
        RuleId::StsServiceSelectsLivePods,
        RuleId::PodStuckTerminating,
        RuleId::PodIdentityEnv,
        RuleId::StsPartitionDefault,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RuleId::StsServiceName => "sts-service-name",
            RuleId::StsServiceExists => "sts-service-exists",
            RuleId::StsServiceHeadless => "sts-service-headless",
            RuleId::StsServiceSelectsPods => "sts-service-selects-pods",
            RuleId::StsPartitionRange => "sts-partition-range",
            RuleId::SvcGoverningHeadless => "svc-governing-headless",
            RuleId::SvcGoverningSelector => "svc-governing-selector",
            RuleId::SvcGoverningDelete => "svc-governing-delete",
            RuleId::PodForceDelete => "pod-force-delete",
            RuleId::StsSharedClaim => "sts-shared-claim",
            RuleId::StsPvcRetention => "sts-pvc-retention",
            RuleId::StsOrderedDelete => "sts-ordered-delete",
            RuleId::StsServiceSelectsLivePods => "sts-service-selects-live-pods",
            RuleId::PodStuckTerminating => "pod-stuck-terminating",
            RuleId::PodIdentityEnv => "pod-identity-env",
            RuleId::StsPartitionDefault => "sts-partition-default",
        }
    }

    pub fn parse(id: &str) -> Option<RuleId> {
        RuleId::ALL.into_iter().find(|r| r.as_str() == id)
    }

    /// Mutating rules are switched on or off; validating rules have an action.
    pub fn is_mutating(self) -> bool {
        matches!(self, RuleId::PodIdentityEnv | RuleId::StsPartitionDefault)
    }

    /// Rules only `sts-guard audit` can evaluate: they read live pods, which neither an
    /// admission request nor a manifest file shows.
    pub fn is_audit_only(self) -> bool {
        matches!(
            self,
            RuleId::StsServiceSelectsLivePods | RuleId::PodStuckTerminating
        )
    }

    /// The action when config says nothing. `None` for mutating rules.
    pub fn default_action(self) -> Option<Action> {
        match self {
            RuleId::PodIdentityEnv | RuleId::StsPartitionDefault => None,
            RuleId::StsPartitionRange
            | RuleId::StsSharedClaim
            | RuleId::StsPvcRetention
            | RuleId::StsOrderedDelete
            | RuleId::PodStuckTerminating => Some(Action::Warn),
            _ => Some(Action::Deny),
        }
    }

    /// Actions config may choose for this rule.
    pub fn allowed_actions(self) -> &'static [&'static str] {
        match self {
            RuleId::PodIdentityEnv | RuleId::StsPartitionDefault => &["on", "off"],
            RuleId::StsPartitionRange => &["warn", "off"],
            _ => &["deny", "warn", "off"],
        }
    }

    /// One line on what the rule protects, for `--help`-style listings and SARIF.
    pub fn summary(self) -> &'static str {
        match self {
            RuleId::StsServiceName => {
                "A StatefulSet names its governing Service in spec.serviceName."
            }
            RuleId::StsServiceExists => {
                "The governing Service of a StatefulSet exists in its namespace."
            }
            RuleId::StsServiceHeadless => {
                "The governing Service of a StatefulSet is headless (clusterIP: None)."
            }
            RuleId::StsServiceSelectsPods => {
                "The governing Service selects the StatefulSet's pods."
            }
            RuleId::StsPartitionRange => "A RollingUpdate partition leaves some pods to update.",
            RuleId::SvcGoverningHeadless => "A governing Service stays headless.",
            RuleId::SvcGoverningSelector => {
                "A governing Service keeps selecting the StatefulSet's pods."
            }
            RuleId::SvcGoverningDelete => {
                "A Service that governs a running StatefulSet is not deleted."
            }
            RuleId::PodForceDelete => {
                "StatefulSet pods are not force-deleted while they may still run."
            }
            RuleId::StsSharedClaim => "Replicas do not share one PersistentVolumeClaim.",
            RuleId::StsPvcRetention => {
                "PersistentVolumeClaims are not deleted with scaled-down or deleted pods."
            }
            RuleId::StsOrderedDelete => {
                "An OrderedReady StatefulSet is scaled to 0 before it is deleted."
            }
            RuleId::StsServiceSelectsLivePods => {
                "The governing Service selects the StatefulSet's existing pods (audit only)."
            }
            RuleId::PodStuckTerminating => {
                "No StatefulSet pod is stuck Terminating on a Node that is gone or out of service (audit only)."
            }
            RuleId::PodIdentityEnv => {
                "StatefulSet pods get their ordinal, hostname and FQDN as environment variables."
            }
            RuleId::StsPartitionDefault => {
                "RollingUpdate partitions are explicit; canary annotations stage rollouts."
            }
        }
    }
}

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
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
}

impl Finding {
    pub fn new(rule: RuleId, field: impl Into<String>, problem: String, hint: String) -> Self {
        Finding {
            rule,
            field: field.into(),
            problem,
            hint,
            related: Vec::new(),
        }
    }

    pub fn with_related(mut self, related: Vec<ObjectRef>) -> Self {
        self.related = related;
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

/// Joins names for messages: `a`, `a and b`, `a, b and c`.
pub(crate) fn join_names<S: AsRef<str>>(names: &[S]) -> String {
    match names {
        [] => String::new(),
        [one] => one.as_ref().to_string(),
        [init @ .., last] => format!(
            "{} and {}",
            init.iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
            last.as_ref()
        ),
    }
}

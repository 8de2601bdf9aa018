//! The policy: every rule sts-guard enforces, as pure functions.
//!
//! A rule reads the request's object, asks the [`Inventory`](crate::inventory::Inventory) about
//! other objects and reports [`Finding`]s. It never decides what happens: the engine applies the
//! configured action (deny, warn, off) and the UPDATE grandfathering.

pub mod live;
pub mod mutate;
pub mod pod;
#[cfg(test)]
mod rows;
pub mod service;
pub mod statefulset;

pub use crate::vocabulary::{Action, Finding, Findings, RuleId};

/// Who sent a request (`request.userInfo`).
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    pub username: &'a str,
    pub groups: &'a [String],
}

/// The parts of the control plane that delete StatefulSets' pods and Services for a living.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlPlane {
    /// kube-controller-manager without `--use-service-account-credentials`: any controller.
    ControllerManager,
    /// Scale-down and rolling updates.
    StatefulSetController,
    /// Dependents of a deleted owner.
    GarbageCollector,
    /// Everything in a namespace being deleted.
    NamespaceController,
    /// Node lifecycle and taint-based eviction (both act as `node-controller`).
    NodeLifecycle,
    /// Pods of deleted Nodes, and finished or orphaned pods.
    PodGarbageCollector,
}

/// The identities kube-controller-manager's controllers act as: kubeadm and the managed
/// clusters run it with `--use-service-account-credentials`, so each controller has the
/// ServiceAccount it names in cmd/kube-controller-manager; without it, all act as
/// `system:kube-controller-manager`.
pub const CONTROL_PLANE_USERS: &[(&str, ControlPlane)] = &[
    (
        "system:kube-controller-manager",
        ControlPlane::ControllerManager,
    ),
    (
        "system:serviceaccount:kube-system:statefulset-controller",
        ControlPlane::StatefulSetController,
    ),
    (
        "system:serviceaccount:kube-system:generic-garbage-collector",
        ControlPlane::GarbageCollector,
    ),
    (
        "system:serviceaccount:kube-system:namespace-controller",
        ControlPlane::NamespaceController,
    ),
    (
        "system:serviceaccount:kube-system:node-controller",
        ControlPlane::NodeLifecycle,
    ),
    (
        "system:serviceaccount:kube-system:pod-garbage-collector",
        ControlPlane::PodGarbageCollector,
    ),
];

impl ControlPlane {
    pub fn describe(self) -> &'static str {
        match self {
            ControlPlane::ControllerManager => "kube-controller-manager",
            ControlPlane::StatefulSetController => "the StatefulSet controller",
            ControlPlane::GarbageCollector => "the garbage collector",
            ControlPlane::NamespaceController => "the namespace controller",
            ControlPlane::NodeLifecycle => "the node lifecycle controller",
            ControlPlane::PodGarbageCollector => "the pod garbage collector",
        }
    }
}

impl Requester<'_> {
    /// The part of the control plane that sent the request, if one did.
    pub fn control_plane(&self) -> Option<ControlPlane> {
        CONTROL_PLANE_USERS
            .iter()
            .find(|(user, _)| *user == self.username)
            .map(|(_, part)| *part)
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

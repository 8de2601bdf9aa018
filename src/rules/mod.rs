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

pub use crate::vocabulary::{Action, Finding, Findings, RuleId};

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

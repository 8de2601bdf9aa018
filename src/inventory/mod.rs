//! How rules see other objects.
//!
//! Rules are pure functions of (request, inventory, config). The inventory answers four
//! questions; the static implementation answers from manifest files, the cluster one from
//! watch caches. A lookup that could not be answered is an error, never a silent "not found":
//! the engine applies `onLookupError` to it.

mod cluster;
mod lean;
mod static_files;

pub use cluster::{ClusterInventory, ClusterStats, Evaluator};
pub use static_files::StaticInventory;

use crate::model::{NodeView, ServiceView, StatefulSetView};
use std::sync::Arc;

/// A lookup the inventory could not answer (API server unreachable, cache not synced, ...).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what}: {reason}")]
pub struct LookupError {
    /// What was looked up, e.g. `Service default/nginx`.
    pub what: String,
    pub reason: String,
}

pub type Lookup<T> = Result<T, LookupError>;

pub trait Inventory: Send + Sync {
    /// The Service `namespace/name`.
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>>;
    /// Every Service in `namespace`.
    fn services_in(&self, namespace: &str) -> Lookup<Vec<Arc<ServiceView>>>;
    /// The StatefulSets in `namespace` whose `spec.serviceName` is `service`.
    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>>;
    /// The Node `name`.
    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>>;
}

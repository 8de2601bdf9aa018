//! How rules see other objects.
//!
//! Rules are pure functions of (request, inventory, config). The inventory answers four
//! questions; the static implementation answers from manifest files, the cluster one from
//! watch caches. A lookup that could not be answered is an error, never a silent "not found":
//! the engine applies `onLookupError` to it.

mod cluster;
pub(crate) mod lean;
mod static_files;

pub use cluster::{ClusterInventory, ClusterStats, client_config};
pub use static_files::StaticInventory;

use crate::config::Config;
use crate::engine::{Decision, Endpoint, evaluate};
use crate::model::{NodeView, ServiceView, StatefulSetView};
use futures::future::BoxFuture;
use kube_core::DynamicObject;
use kube_core::admission::AdmissionRequest;
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

/// Decides admission requests: the static inventory evaluates directly, the cluster one
/// confirms cache answers that would deny. Both run the same rules through
/// [`evaluate`](crate::engine::evaluate).
pub trait Evaluator: Send + Sync {
    fn decide<'a>(
        &'a self,
        request: &'a AdmissionRequest<DynamicObject>,
        config: &'a Config,
        endpoint: Endpoint,
    ) -> BoxFuture<'a, Decision>;

    /// Whether the inventory has everything it needs to answer (`/readyz`).
    fn synced(&self) -> bool {
        true
    }
}

impl Evaluator for StaticInventory {
    fn decide<'a>(
        &'a self,
        request: &'a AdmissionRequest<DynamicObject>,
        config: &'a Config,
        endpoint: Endpoint,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(std::future::ready(evaluate(
            request, self, config, endpoint,
        )))
    }
}

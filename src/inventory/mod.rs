//! How rules see other objects.
//!
//! Rules are pure functions of (request, inventory, config). The inventory answers five
//! questions; the static implementation answers from manifest files, the cluster one from
//! watch caches. A lookup that could not be answered is an error, never a silent "not found":
//! the engine applies `onLookupError` to it.

mod cluster;
pub(crate) mod cluster_objects;
mod index;
mod manifests;

pub use cluster::{ClusterInventory, ClusterStats, client_config};
pub use index::StaticInventory;
pub use manifests::{LoadedObject, load_inventory_paths, load_objects, load_paths};

pub use crate::vocabulary::LookupError;

use crate::model::{LabelSet, NodeView, ServiceView, StatefulSetView};
use crate::vocabulary::Kind;
use futures::future::BoxFuture;
use std::sync::Arc;

pub type Lookup<T> = Result<T, LookupError>;

pub trait Inventory: Send + Sync {
    /// The Service `namespace/name`.
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>>;
    /// The headless Services in `namespace` with a selector whose every pair is among
    /// `labels` (those that would select pods so labelled), by name.
    fn headless_services_selecting(
        &self,
        namespace: &str,
        labels: &LabelSet,
    ) -> Lookup<Vec<Arc<ServiceView>>>;
    /// The StatefulSets in `namespace` whose `spec.serviceName` is `service`.
    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>>;
    /// The Node `name`.
    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>>;
    /// Whether the Namespace `name` is being deleted. Asked only on the way to a denial, so
    /// the cluster inventory keeps no Namespaces: its cache says `false`, and the engine asks
    /// the API server before it denies.
    fn namespace_terminating(&self, name: &str) -> Lookup<bool>;
}

/// The inventory's questions answered straight from the API server, for an inventory that
/// answers from a cache which may lag: the engine asks again live when a decision rests on a
/// cache answer that would deny (see `engine::evaluator`).
pub trait LiveLookup: Inventory {
    fn live_service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Lookup<Option<Arc<ServiceView>>>>;
    fn live_statefulsets_governed_by<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> BoxFuture<'a, Lookup<Vec<Arc<StatefulSetView>>>>;
    fn live_node<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup<Option<Arc<NodeView>>>>;
    fn live_namespace_terminating<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup<bool>>;
    /// Whether the cache's answers about `kind` can be trusted (synced, its watches healthy).
    fn cache_trusted(&self, kind: Kind) -> bool;
}

//! An inventory over objects read from files (`check`, `serve --manifests`).

use super::{Inventory, Lookup};
use crate::model::{NodeView, ServiceView, StatefulSetView};
use std::collections::HashMap;
use std::sync::Arc;

/// Objects indexed by namespace and name, and StatefulSets by governing Service, so that every
/// lookup is a hash probe (no scans over the whole set).
#[derive(Debug, Default, Clone)]
pub struct StaticInventory {
    services: HashMap<String, HashMap<String, Arc<ServiceView>>>,
    governed: HashMap<(String, String), Vec<Arc<StatefulSetView>>>,
    nodes: HashMap<String, Arc<NodeView>>,
    statefulset_count: usize,
}

impl StaticInventory {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a Service; a later object with the same namespace and name replaces the earlier
    /// one, as a later `kubectl apply` would.
    pub fn add_service(&mut self, svc: ServiceView) {
        self.services
            .entry(svc.namespace.clone())
            .or_default()
            .insert(svc.name.clone(), Arc::new(svc));
    }

    pub fn add_statefulset(&mut self, sts: StatefulSetView) {
        self.statefulset_count += 1;
        let Some(service) = sts.governing_service() else {
            return;
        };
        let list = self
            .governed
            .entry((sts.namespace.clone(), service.to_string()))
            .or_default();
        if let Some(existing) = list.iter_mut().find(|s| s.name == sts.name) {
            *existing = Arc::new(sts);
        } else {
            list.push(Arc::new(sts));
        }
    }

    pub fn add_node(&mut self, node: NodeView) {
        self.nodes.insert(node.name.clone(), Arc::new(node));
    }

    /// Object counts by kind, for logs and metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.services.values().map(HashMap::len).sum(),
            self.statefulset_count,
            self.nodes.len(),
        )
    }
}

impl Inventory for StaticInventory {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        Ok(self
            .services
            .get(namespace)
            .and_then(|by_name| by_name.get(name))
            .cloned())
    }

    fn services_in(&self, namespace: &str) -> Lookup<Vec<Arc<ServiceView>>> {
        let mut list: Vec<_> = self
            .services
            .get(namespace)
            .map(|by_name| by_name.values().cloned().collect())
            .unwrap_or_default();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        Ok(self
            .governed
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
            .unwrap_or_default())
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        Ok(self.nodes.get(name).cloned())
    }
}

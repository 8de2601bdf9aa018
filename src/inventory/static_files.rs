//! An inventory held in memory: objects read from files (`check`, `serve --manifests`), and
//! the index behind the cluster inventory's watch caches.

use super::{Inventory, Lookup};
use crate::model::{NodeView, ServiceView, StatefulSetView};
use std::collections::HashMap;
use std::sync::Arc;

/// Objects indexed by namespace and name, and StatefulSets by governing Service, so that every
/// lookup is a hash probe (no scans over the whole set).
#[derive(Debug, Default, Clone)]
pub struct StaticInventory {
    services: HashMap<String, HashMap<String, Arc<ServiceView>>>,
    statefulsets: HashMap<(String, String), Arc<StatefulSetView>>,
    governed: HashMap<(String, String), Vec<Arc<StatefulSetView>>>,
    nodes: HashMap<String, Arc<NodeView>>,
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

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if let Some(by_name) = self.services.get_mut(namespace) {
            by_name.remove(name);
            if by_name.is_empty() {
                self.services.remove(namespace);
            }
        }
    }

    pub fn add_statefulset(&mut self, sts: StatefulSetView) {
        self.remove_statefulset(&sts.namespace.clone(), &sts.name.clone());
        let sts = Arc::new(sts);
        if let Some(service) = sts.governing_service() {
            self.governed
                .entry((sts.namespace.clone(), service.to_string()))
                .or_default()
                .push(sts.clone());
        }
        self.statefulsets
            .insert((sts.namespace.clone(), sts.name.clone()), sts);
    }

    pub fn remove_statefulset(&mut self, namespace: &str, name: &str) {
        let Some(old) = self
            .statefulsets
            .remove(&(namespace.to_string(), name.to_string()))
        else {
            return;
        };
        if let Some(service) = old.governing_service() {
            let key = (old.namespace.clone(), service.to_string());
            if let Some(list) = self.governed.get_mut(&key) {
                list.retain(|s| s.name != old.name);
                if list.is_empty() {
                    self.governed.remove(&key);
                }
            }
        }
    }

    pub fn add_node(&mut self, node: NodeView) {
        self.nodes.insert(node.name.clone(), Arc::new(node));
    }

    pub fn remove_node(&mut self, name: &str) {
        self.nodes.remove(name);
    }

    /// Drops every Service in `namespace` (all namespaces when `None`), before a relist.
    pub fn clear_services(&mut self, namespace: Option<&str>) {
        match namespace {
            Some(ns) => {
                self.services.remove(ns);
            }
            None => self.services.clear(),
        }
    }

    /// Drops every StatefulSet in `namespace` (all namespaces when `None`), before a relist.
    pub fn clear_statefulsets(&mut self, namespace: Option<&str>) {
        match namespace {
            Some(ns) => {
                self.statefulsets.retain(|(n, _), _| n != ns);
                self.governed.retain(|(n, _), _| n != ns);
            }
            None => {
                self.statefulsets.clear();
                self.governed.clear();
            }
        }
    }

    pub fn clear_nodes(&mut self) {
        self.nodes.clear();
    }

    /// Every Service, in no particular order.
    pub fn all_services(&self) -> impl Iterator<Item = &Arc<ServiceView>> {
        self.services.values().flat_map(HashMap::values)
    }

    /// The StatefulSet `namespace/name`.
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<&Arc<StatefulSetView>> {
        self.statefulsets
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Every StatefulSet, in no particular order.
    pub fn all_statefulsets(&self) -> impl Iterator<Item = &Arc<StatefulSetView>> {
        self.statefulsets.values()
    }

    /// Object counts (Services, StatefulSets, Nodes), for logs and metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.services.values().map(HashMap::len).sum(),
            self.statefulsets.len(),
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
        let mut list = self
            .governed
            .get(&(namespace.to_string(), service.to_string()))
            .cloned()
            .unwrap_or_default();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        Ok(self.nodes.get(name).cloned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sts(name: &str, service: &str) -> StatefulSetView {
        StatefulSetView {
            namespace: "d".into(),
            name: name.into(),
            service_name: Some(service.into()),
            replicas: 1,
            selector: Default::default(),
            template_labels: Default::default(),
            ordinals_start: 0,
            pod_management_policy: "OrderedReady".into(),
            update_strategy: "RollingUpdate".into(),
            partition: None,
        }
    }

    #[test]
    fn replacing_and_removing_statefulsets_keeps_the_governed_index_right() {
        let mut inv = StaticInventory::new();
        inv.add_statefulset(sts("a", "s1"));
        inv.add_statefulset(sts("b", "s1"));
        inv.add_statefulset(sts("a", "s2"));
        let names = |svc: &str, inv: &StaticInventory| -> Vec<String> {
            inv.statefulsets_governed_by("d", svc)
                .unwrap()
                .iter()
                .map(|s| s.name.clone())
                .collect()
        };
        assert_eq!(names("s1", &inv), vec!["b"]);
        assert_eq!(names("s2", &inv), vec!["a"]);
        inv.remove_statefulset("d", "b");
        assert!(names("s1", &inv).is_empty());
        assert_eq!(inv.sizes().1, 1);
        inv.clear_statefulsets(Some("d"));
        assert!(names("s2", &inv).is_empty());
    }
}

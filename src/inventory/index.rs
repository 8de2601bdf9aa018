//! The index every inventory shares, held in memory: objects read from files (`check`,
//! `serve --manifests`), audit's lists, and the cluster inventory's watch caches.

use super::{Inventory, Lookup};
use crate::model::{LabelSet, NodeView, ServiceView, StatefulSetView, selector_matches};
use crate::vocabulary::Kind;
use std::borrow::Borrow;
use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// A cached view in a set keyed by its name: the index holds one pointer per object and
/// borrows the key from the view, so no name is stored twice.
#[derive(Debug)]
struct ByName<T>(Arc<T>);

trait Named {
    fn name(&self) -> &str;
}

impl Named for ServiceView {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for StatefulSetView {
    fn name(&self) -> &str {
        &self.name
    }
}

impl Named for NodeView {
    fn name(&self) -> &str {
        &self.name
    }
}

impl<T> Clone for ByName<T> {
    fn clone(&self) -> Self {
        ByName(self.0.clone())
    }
}

impl<T: Named> Hash for ByName<T> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.name().hash(state)
    }
}

impl<T: Named> PartialEq for ByName<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.name() == other.0.name()
    }
}

impl<T: Named> Eq for ByName<T> {}

impl<T: Named> Borrow<str> for ByName<T> {
    fn borrow(&self) -> &str {
        self.0.name()
    }
}

type Set<T> = HashSet<ByName<T>>;

/// The StatefulSets of one namespace, by name and by governing Service.
#[derive(Debug, Default, Clone)]
struct NamespaceStatefulSets {
    by_name: Set<StatefulSetView>,
    /// Keyed by the `spec.serviceName` the views hold (shared, not copied); most Services
    /// govern one StatefulSet, so an exact-size slice.
    governed: HashMap<Arc<str>, Box<[Arc<StatefulSetView>]>>,
}

/// The Services of one namespace by name, and those that could govern a StatefulSet — headless,
/// with a selector — by the first pair of their selector (selectors are sorted by key). A
/// Service selects a StatefulSet's pods only when every pair of its selector is among the pod
/// template's labels, its first pair included, so the template's few labels name the only
/// buckets to look in: the "did you mean" of a StatefulSet whose Service is missing costs
/// what those buckets hold, not a scan of the namespace.
#[derive(Debug, Default, Clone)]
struct NamespaceServices {
    by_name: Set<ServiceView>,
    /// First selector key, then its value.
    selecting: HashMap<Arc<str>, ByValue>,
}

/// Services by the value of their selector's first key.
type ByValue = HashMap<Arc<str>, Vec<Arc<ServiceView>>>;

impl NamespaceServices {
    /// The bucket `svc` belongs in, if it could govern a StatefulSet.
    fn anchor(svc: &ServiceView) -> Option<(&str, &str)> {
        svc.is_headless()
            .then(|| svc.selector.iter().next())
            .flatten()
    }

    fn insert(&mut self, svc: Arc<ServiceView>) {
        self.remove(&svc.name);
        if let Some((key, value)) = Self::anchor(&svc) {
            self.selecting
                .entry(crate::model::intern(key))
                .or_default()
                .entry(crate::model::intern(value))
                .or_default()
                .push(svc.clone());
        }
        self.by_name.insert(ByName(svc));
    }

    fn remove(&mut self, name: &str) {
        let Some(ByName(old)) = self.by_name.take(name) else {
            return;
        };
        let Some((key, value)) = Self::anchor(&old) else {
            return;
        };
        if let Some(values) = self.selecting.get_mut(key) {
            if let Some(bucket) = values.get_mut(value) {
                bucket.retain(|s| s.name != old.name);
                if bucket.is_empty() {
                    values.remove(value);
                }
            }
            if values.is_empty() {
                self.selecting.remove(key);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// Objects indexed by namespace and name, StatefulSets by governing Service, and the Services
/// that could govern one by selector, so that every lookup is a hash probe (no scans over the
/// whole set). Namespaces are interned strings
/// shared with the views; names are borrowed from the views.
#[derive(Debug, Default, Clone)]
pub struct StaticInventory {
    services: HashMap<Arc<str>, NamespaceServices>,
    statefulsets: HashMap<Arc<str>, NamespaceStatefulSets>,
    nodes: Set<NodeView>,
    /// Namespaces known to be deleted (files show no namespace state; tests and `review` say).
    terminating_namespaces: HashSet<String>,
}

impl StaticInventory {
    pub fn new() -> Self {
        Self::default()
    }

    /// The Services and Nodes, sharing the views (a pointer each): what an audit takes of the
    /// watch cache before it lists the StatefulSets, whose cached views lack what it judges.
    pub fn services_and_nodes(&self) -> StaticInventory {
        StaticInventory {
            services: self.services.clone(),
            statefulsets: HashMap::new(),
            nodes: self.nodes.clone(),
            terminating_namespaces: HashSet::new(),
        }
    }

    /// Marks a namespace as being deleted (phase Terminating).
    pub fn add_terminating_namespace(&mut self, name: &str) {
        self.terminating_namespaces.insert(name.to_string());
    }

    /// Adds a Service; a later object with the same namespace and name replaces the earlier
    /// one, as a later `kubectl apply` would.
    pub fn add_service(&mut self, svc: ServiceView) {
        self.insert_service(Arc::new(svc));
    }

    pub(crate) fn insert_service(&mut self, svc: Arc<ServiceView>) {
        self.services
            .entry(svc.namespace.clone())
            .or_default()
            .insert(svc);
    }

    pub fn remove_service(&mut self, namespace: &str, name: &str) {
        if let Some(services) = self.services.get_mut(namespace) {
            services.remove(name);
            if services.is_empty() {
                self.services.remove(namespace);
            }
        }
    }

    pub fn add_statefulset(&mut self, sts: StatefulSetView) {
        self.insert_statefulset(Arc::new(sts));
    }

    pub(crate) fn insert_statefulset(&mut self, sts: Arc<StatefulSetView>) {
        self.remove_statefulset(&sts.namespace, &sts.name);
        let ns = self.statefulsets.entry(sts.namespace.clone()).or_default();
        if let (Some(service), Some(_)) = (&sts.service_name, sts.governing_service()) {
            let list = ns.governed.entry(service.clone()).or_default();
            let mut grown = Vec::with_capacity(list.len() + 1);
            grown.extend(list.iter().cloned());
            grown.push(sts.clone());
            *list = grown.into_boxed_slice();
        }
        ns.by_name.insert(ByName(sts));
    }

    pub fn remove_statefulset(&mut self, namespace: &str, name: &str) {
        let Some(ns) = self.statefulsets.get_mut(namespace) else {
            return;
        };
        let Some(ByName(old)) = ns.by_name.take(name) else {
            return;
        };
        if let Some(service) = old.governing_service()
            && let Some(list) = ns.governed.get_mut(service)
        {
            if list.len() <= 1 {
                ns.governed.remove(service);
            } else {
                *list = list
                    .iter()
                    .filter(|s| s.name != old.name)
                    .cloned()
                    .collect();
            }
        }
        if ns.by_name.is_empty() {
            self.statefulsets.remove(namespace);
        }
    }

    pub fn add_node(&mut self, node: NodeView) {
        self.insert_node(Arc::new(node));
    }

    pub(crate) fn insert_node(&mut self, node: Arc<NodeView>) {
        self.nodes.replace(ByName(node));
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
            None => self.services = HashMap::new(),
        }
    }

    /// Drops every StatefulSet in `namespace` (all namespaces when `None`), before a relist.
    pub fn clear_statefulsets(&mut self, namespace: Option<&str>) {
        match namespace {
            Some(ns) => {
                self.statefulsets.remove(ns);
            }
            None => self.statefulsets = HashMap::new(),
        }
    }

    pub fn clear_nodes(&mut self) {
        self.nodes = HashSet::new();
    }

    /// Exchanges this inventory's objects of `kind` in `namespace` (all namespaces when
    /// `None`; Nodes have none) with those of `fresh`: a relist built aside replaces the cache
    /// in one step, and what it replaced is left in `fresh` to be dropped outside any lock.
    pub(crate) fn swap_kind(&mut self, kind: Kind, namespace: Option<&str>, fresh: &mut Self) {
        fn swap_in<V: Default>(
            mine: &mut HashMap<Arc<str>, V>,
            theirs: &mut HashMap<Arc<str>, V>,
            namespace: Option<&str>,
            is_empty: impl Fn(&V) -> bool,
        ) {
            let Some(ns) = namespace else {
                std::mem::swap(mine, theirs);
                return;
            };
            let new = theirs.remove(ns);
            let old = mine.remove(ns);
            if let Some(new) = new.filter(|v| !is_empty(v)) {
                mine.insert(crate::model::intern(ns), new);
            }
            if let Some(old) = old {
                theirs.insert(crate::model::intern(ns), old);
            }
        }
        match kind {
            Kind::Service => swap_in(
                &mut self.services,
                &mut fresh.services,
                namespace,
                NamespaceServices::is_empty,
            ),
            Kind::StatefulSet => swap_in(
                &mut self.statefulsets,
                &mut fresh.statefulsets,
                namespace,
                |ns| ns.by_name.is_empty(),
            ),
            Kind::Node => std::mem::swap(&mut self.nodes, &mut fresh.nodes),
            // The inventory holds no pods.
            Kind::Pod => {}
        }
    }

    /// The cached Service `namespace/name` (no clone of the list, unlike the trait).
    pub(crate) fn cached_service(&self, namespace: &str, name: &str) -> Option<&Arc<ServiceView>> {
        self.services
            .get(namespace)?
            .by_name
            .get(name)
            .map(|b| &b.0)
    }

    pub(crate) fn cached_node(&self, name: &str) -> Option<&Arc<NodeView>> {
        self.nodes.get(name).map(|b| &b.0)
    }

    /// Every Service, in no particular order.
    pub fn all_services(&self) -> impl Iterator<Item = &Arc<ServiceView>> {
        self.services
            .values()
            .flat_map(|ns| ns.by_name.iter().map(|b| &b.0))
    }

    /// The StatefulSet `namespace/name`.
    pub fn statefulset(&self, namespace: &str, name: &str) -> Option<&Arc<StatefulSetView>> {
        self.statefulsets
            .get(namespace)?
            .by_name
            .get(name)
            .map(|b| &b.0)
    }

    /// Every StatefulSet, in no particular order.
    pub fn all_statefulsets(&self) -> impl Iterator<Item = &Arc<StatefulSetView>> {
        self.statefulsets
            .values()
            .flat_map(|ns| ns.by_name.iter().map(|b| &b.0))
    }

    /// Removes the object of `kind` named `namespace/name` (a Node by `name` alone).
    pub(crate) fn remove(&mut self, kind: Kind, namespace: &str, name: &str) {
        match kind {
            Kind::Service => self.remove_service(namespace, name),
            Kind::StatefulSet => self.remove_statefulset(namespace, name),
            Kind::Node => self.remove_node(name),
            Kind::Pod => {}
        }
    }

    /// How many objects of `kind` the inventory holds.
    pub(crate) fn count(&self, kind: Kind) -> usize {
        let (services, statefulsets, nodes) = self.sizes();
        match kind {
            Kind::Service => services,
            Kind::StatefulSet => statefulsets,
            Kind::Node => nodes,
            Kind::Pod => 0,
        }
    }

    /// Object counts (Services, StatefulSets, Nodes), for logs and metrics.
    pub fn sizes(&self) -> (usize, usize, usize) {
        (
            self.services.values().map(|ns| ns.by_name.len()).sum(),
            self.statefulsets.values().map(|ns| ns.by_name.len()).sum(),
            self.nodes.len(),
        )
    }
}

impl Inventory for StaticInventory {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        Ok(self.cached_service(namespace, name).cloned())
    }

    fn headless_services_selecting(
        &self,
        namespace: &str,
        labels: &LabelSet,
    ) -> Lookup<Vec<Arc<ServiceView>>> {
        let Some(services) = self.services.get(namespace) else {
            return Ok(Vec::new());
        };
        let mut list: Vec<Arc<ServiceView>> = labels
            .iter()
            .filter_map(|(key, value)| services.selecting.get(key)?.get(value))
            .flatten()
            .filter(|svc| selector_matches(&svc.selector, labels))
            .cloned()
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        let mut list = self
            .statefulsets
            .get(namespace)
            .and_then(|ns| ns.governed.get(service))
            .map(|list| list.to_vec())
            .unwrap_or_default();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(list)
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        Ok(self.cached_node(name).cloned())
    }

    fn namespace_terminating(&self, name: &str) -> Lookup<bool> {
        Ok(self.terminating_namespaces.contains(name))
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
            ownership: Default::default(),
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
                .map(|s| s.name.to_string())
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

    fn svc(namespace: &str, name: &str) -> ServiceView {
        ServiceView {
            namespace: namespace.into(),
            name: name.into(),
            cluster_ip: Some("None".into()),
            service_type: None,
            selector: Default::default(),
        }
    }

    #[test]
    fn a_relist_built_aside_replaces_one_scope_in_one_swap() {
        let mut inv = StaticInventory::new();
        inv.add_service(svc("a", "old"));
        inv.add_service(svc("b", "kept"));
        let mut fresh = StaticInventory::new();
        fresh.add_service(svc("a", "new"));
        inv.swap_kind(Kind::Service, Some("a"), &mut fresh);
        assert!(inv.service("a", "old").unwrap().is_none());
        assert!(inv.service("a", "new").unwrap().is_some());
        assert!(
            inv.service("b", "kept").unwrap().is_some(),
            "other namespaces stay"
        );
        assert!(
            fresh.service("a", "old").unwrap().is_some(),
            "the old scope is handed back"
        );

        let mut all = StaticInventory::new();
        all.add_service(svc("c", "only"));
        inv.swap_kind(Kind::Service, None, &mut all);
        assert_eq!(inv.sizes().0, 1);
        let mut empty = StaticInventory::new();
        inv.swap_kind(Kind::Service, Some("c"), &mut empty);
        assert_eq!(inv.sizes().0, 0);
        assert_eq!(inv.all_services().count(), 0);
    }

    #[test]
    fn the_services_that_select_a_pod_template_are_found_through_its_labels() {
        let labelled = |name: &str, selector: &[(&str, &str)]| ServiceView {
            selector: LabelSet::from_pairs(selector.iter().copied()),
            ..svc("d", name)
        };
        let mut inv = StaticInventory::new();
        inv.add_service(labelled("exact", &[("app", "web"), ("tier", "db")]));
        inv.add_service(labelled("broad", &[("tier", "db")]));
        inv.add_service(labelled("other-tier", &[("app", "web"), ("tier", "cache")]));
        inv.add_service(labelled("no-selector", &[]));
        let mut virtual_ip = labelled("virtual-ip", &[("app", "web")]);
        virtual_ip.cluster_ip = Some("10.0.0.9".into());
        inv.add_service(virtual_ip);
        inv.add_service(ServiceView {
            namespace: "elsewhere".into(),
            ..labelled("other-namespace", &[("app", "web")])
        });
        let pods = LabelSet::from_pairs([("app", "web"), ("tier", "db"), ("version", "1")]);
        let names = |inv: &StaticInventory| -> Vec<String> {
            inv.headless_services_selecting("d", &pods)
                .unwrap()
                .iter()
                .map(|s| s.name.to_string())
                .collect()
        };
        assert_eq!(names(&inv), ["broad", "exact"]);
        // A replaced Service moves to the bucket of its new selector; a removed one leaves it.
        inv.add_service(labelled("broad", &[("version", "2")]));
        assert_eq!(names(&inv), ["exact"]);
        inv.add_service(labelled("other-tier", &[("app", "web")]));
        assert_eq!(names(&inv), ["exact", "other-tier"]);
        inv.remove_service("d", "exact");
        assert_eq!(names(&inv), ["other-tier"]);
        let mut no_longer_headless = labelled("other-tier", &[("app", "web")]);
        no_longer_headless.cluster_ip = Some("10.0.0.10".into());
        inv.add_service(no_longer_headless);
        assert!(names(&inv).is_empty());
        assert_eq!(inv.sizes().0, 5);
    }

    #[test]
    fn a_later_service_with_the_same_name_replaces_the_earlier() {
        let mut inv = StaticInventory::new();
        inv.add_service(svc("d", "s"));
        let mut changed = svc("d", "s");
        changed.cluster_ip = Some("10.0.0.1".into());
        inv.add_service(changed);
        assert_eq!(inv.sizes().0, 1);
        assert!(!inv.service("d", "s").unwrap().unwrap().is_headless());
        inv.remove_service("d", "s");
        assert_eq!(inv.all_services().count(), 0);
    }
}

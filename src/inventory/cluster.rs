//! The cluster inventory: kube-rs watches of Services, StatefulSets and Nodes, kept as the
//! views the rules read (never whole objects), indexed like the static inventory.
//!
//! ```text
//!   watcher(Services) ─────┐
//!   watcher(StatefulSets) ─┼─► RwLock<StaticInventory> ─► Inventory (cache answers)
//!   watcher(Nodes) ────────┘
//!   LiveLookup: the same questions answered live (GET/LIST), which the engine asks again
//!   when a decision rests on a cache answer that would deny
//! ```
//!
//! The cache may lag the API server by a moment (see `engine::evaluator` for how decisions are
//! confirmed). While a watch is failing (say kube-apiserver restarts) its kind's cache misses
//! every change until the watch resumes or relists, so [`LiveLookup::cache_trusted`] says no
//! for that kind.

use super::cluster_objects::{WatchedNode, WatchedService, WatchedStatefulSet};
use super::{Inventory, LiveLookup, Lookup, LookupError, StaticInventory};
use crate::model::{LabelSet, NodeView, ServiceView, StatefulSetView};
use crate::vocabulary::Kind;
use futures::StreamExt;
use futures::future::BoxFuture;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::Duration;

/// What one watch covers: a kind, in one namespace or (None) in all.
type Scope = (Kind, Option<String>);

/// A view built from a watched object, ready to share between the index and decisions.
enum View {
    Service(Arc<ServiceView>),
    StatefulSet(Arc<StatefulSetView>),
    Node(Arc<NodeView>),
}

impl From<WatchedService> for View {
    fn from(s: WatchedService) -> Self {
        View::Service(Arc::new(s.into()))
    }
}

impl From<WatchedStatefulSet> for View {
    fn from(s: WatchedStatefulSet) -> Self {
        View::StatefulSet(Arc::new(s.into()))
    }
}

impl From<WatchedNode> for View {
    fn from(n: WatchedNode) -> Self {
        View::Node(Arc::new(n.into()))
    }
}

impl View {
    /// The cached view itself when the cache already holds an equal one: a relist of
    /// unchanged objects then costs a pointer each, not a second copy of the cache.
    fn reuse_cached(self, index: &StaticInventory) -> View {
        match self {
            View::Service(v) => View::Service(
                index
                    .cached_service(&v.namespace, &v.name)
                    .filter(|cached| **cached == v)
                    .cloned()
                    .unwrap_or(v),
            ),
            View::StatefulSet(v) => View::StatefulSet(
                index
                    .statefulset(&v.namespace, &v.name)
                    .filter(|cached| **cached == v)
                    .cloned()
                    .unwrap_or(v),
            ),
            View::Node(v) => View::Node(
                index
                    .cached_node(&v.name)
                    .filter(|cached| **cached == v)
                    .cloned()
                    .unwrap_or(v),
            ),
        }
    }
}

/// Counters the server exports; kept here so the inventory needs no metrics dependency.
#[derive(Debug, Default)]
pub struct ClusterStats {
    pub watch_errors: AtomicU64,
    /// Per kind (by `kind as usize`): watch scopes that failed and have not delivered an event
    /// since, so their part of the cache may be missing changes.
    failing_watches: [AtomicUsize; Kind::ALL.len()],
}

impl ClusterStats {
    fn cache_trusted(&self, kind: Kind) -> bool {
        self.failing_watches[kind as usize].load(Ordering::Acquire) == 0
    }
}

pub struct ClusterInventory {
    client: Client,
    index: Arc<RwLock<StaticInventory>>,
    /// Set once every watch scope has completed its first list.
    all_synced: Arc<AtomicBool>,
    lookup_timeout: Duration,
    pub stats: Arc<ClusterStats>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for ClusterInventory {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl ClusterInventory {
    /// Starts the watches. `namespaces` restricts Services and StatefulSets to those namespaces
    /// (empty: all); Nodes are cluster-scoped and always watched.
    pub fn start(
        client: Client,
        namespaces: &[String],
        lookup_timeout: Duration,
    ) -> ClusterInventory {
        let index = Arc::new(RwLock::new(StaticInventory::new()));
        let synced_scopes = Arc::new(Mutex::new(HashSet::new()));
        let all_synced = Arc::new(AtomicBool::new(false));
        let stats = Arc::new(ClusterStats::default());
        // Services and StatefulSets in each namespace (or all), Nodes: one watch per scope.
        let scoped: Vec<Option<String>> = if namespaces.is_empty() {
            vec![None]
        } else {
            namespaces.iter().cloned().map(Some).collect()
        };
        let expected_scopes = 2 * scoped.len() + 1;
        let shared = || Shared {
            index: index.clone(),
            synced_scopes: synced_scopes.clone(),
            expected_scopes,
            all_synced: all_synced.clone(),
            stats: stats.clone(),
        };
        let mut tasks = Vec::with_capacity(expected_scopes);
        for namespace in scoped {
            let ns = namespace.as_deref();
            tasks.push(tokio::spawn(watch(
                scoped_api::<WatchedService>(&client, ns),
                (Kind::Service, namespace.clone()),
                shared(),
            )));
            tasks.push(tokio::spawn(watch(
                scoped_api::<WatchedStatefulSet>(&client, ns),
                (Kind::StatefulSet, namespace),
                shared(),
            )));
        }
        tasks.push(tokio::spawn(watch(
            Api::<WatchedNode>::all(client.clone()),
            (Kind::Node, None),
            shared(),
        )));
        ClusterInventory {
            client,
            index,
            all_synced,
            lookup_timeout,
            stats,
            tasks,
        }
    }

    /// A copy of the cached Services and Nodes for the background audit (see
    /// [`StaticInventory::services_and_nodes`]); the read lock is held while the pointers are
    /// copied.
    pub fn services_and_nodes(&self) -> StaticInventory {
        self.read().services_and_nodes()
    }

    /// Object counts in the cache (Services, StatefulSets, Nodes).
    pub fn sizes(&self) -> (usize, usize, usize) {
        self.read().sizes()
    }

    fn read(&self) -> RwLockReadGuard<'_, StaticInventory> {
        read(&self.index)
    }

    async fn timed<T>(
        &self,
        what: String,
        call: impl std::future::Future<Output = Result<T, kube::Error>>,
    ) -> Lookup<T> {
        match tokio::time::timeout(self.lookup_timeout, call).await {
            Err(_) => Err(LookupError {
                what,
                reason: format!("API server did not answer within {:?}", self.lookup_timeout),
            }),
            Ok(Err(err)) => Err(LookupError {
                what,
                reason: err.to_string(),
            }),
            Ok(Ok(value)) => Ok(value),
        }
    }

    /// Whether every watch scope has completed its first list.
    pub fn synced(&self) -> bool {
        self.all_synced.load(Ordering::Acquire)
    }

    async fn get_service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        let api: Api<WatchedService> = Api::namespaced(self.client.clone(), namespace);
        let found = self
            .timed(format!("Service {namespace}/{name}"), api.get_opt(name))
            .await?;
        Ok(found.map(|s| Arc::new(s.into())))
    }

    async fn list_governed(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        let api: Api<WatchedStatefulSet> = Api::namespaced(self.client.clone(), namespace);
        let what = format!("StatefulSets governed by {namespace}/{service}");
        let list = self.timed(what, api.list(&ListParams::default())).await?;
        let mut governed: Vec<Arc<StatefulSetView>> = list
            .items
            .into_iter()
            .map(StatefulSetView::from)
            .filter(|view| view.governing_service() == Some(service))
            .map(Arc::new)
            .collect();
        governed.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(governed)
    }

    async fn get_namespace_terminating(&self, name: &str) -> Lookup<bool> {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(self.client.clone());
        let found = self
            .timed(format!("Namespace {name}"), api.get_opt(name))
            .await?;
        Ok(found.is_some_and(|ns| {
            ns.metadata.deletion_timestamp.is_some()
                || ns.status.and_then(|s| s.phase).as_deref() == Some("Terminating")
        }))
    }

    async fn get_node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        let api: Api<WatchedNode> = Api::all(self.client.clone());
        let found = self
            .timed(format!("Node {name}"), api.get_opt(name))
            .await?;
        Ok(found.map(|n| Arc::new(n.into())))
    }
}

/// Answers straight from the API server, for the engine to confirm what the cache said.
impl LiveLookup for ClusterInventory {
    fn live_service<'a>(
        &'a self,
        namespace: &'a str,
        name: &'a str,
    ) -> BoxFuture<'a, Lookup<Option<Arc<ServiceView>>>> {
        Box::pin(self.get_service(namespace, name))
    }

    fn live_statefulsets_governed_by<'a>(
        &'a self,
        namespace: &'a str,
        service: &'a str,
    ) -> BoxFuture<'a, Lookup<Vec<Arc<StatefulSetView>>>> {
        Box::pin(self.list_governed(namespace, service))
    }

    fn live_node<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup<Option<Arc<NodeView>>>> {
        Box::pin(self.get_node(name))
    }

    fn live_namespace_terminating<'a>(&'a self, name: &'a str) -> BoxFuture<'a, Lookup<bool>> {
        Box::pin(self.get_namespace_terminating(name))
    }

    /// Not synced yet, or a watch of `kind` failing: the cache may be missing changes.
    fn cache_trusted(&self, kind: Kind) -> bool {
        self.synced() && self.stats.cache_trusted(kind)
    }
}

/// The cache, as the rules see it.
impl Inventory for ClusterInventory {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        self.read().service(namespace, name)
    }

    fn headless_services_selecting(
        &self,
        namespace: &str,
        labels: &LabelSet,
    ) -> Lookup<Vec<Arc<ServiceView>>> {
        self.read().headless_services_selecting(namespace, labels)
    }

    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        self.read().statefulsets_governed_by(namespace, service)
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        self.read().node(name)
    }

    /// Namespaces are not watched: "not known to be terminating", which the engine confirms
    /// live before it denies.
    fn namespace_terminating(&self, _name: &str) -> Lookup<bool> {
        Ok(false)
    }
}

/// The client configuration `serve` and `audit` use: the kubeconfig (`KUBECONFIG`, else
/// `~/.kube/config`) with its current context or `context`, else the in-cluster service
/// account. The error is one line.
pub async fn client_config(context: Option<&str>) -> Result<kube::Config, String> {
    match context {
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no cluster credentials ({e})")),
        Some(context) => kube::Config::from_kubeconfig(&kube::config::KubeConfigOptions {
            context: Some(context.to_string()),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("cannot use kubeconfig context {context:?} ({e})")),
    }
}

fn scoped_api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// What every watch task shares with the inventory.
struct Shared {
    index: Arc<RwLock<StaticInventory>>,
    synced_scopes: Arc<Mutex<HashSet<Scope>>>,
    expected_scopes: usize,
    all_synced: Arc<AtomicBool>,
    stats: Arc<ClusterStats>,
}

/// Keeps one scope of the index in step with the API server. Errors back off and retry
/// (kube-runtime's default backoff); a relist replaces the scope's contents atomically.
async fn watch<K>(api: Api<K>, scope: Scope, shared: Shared)
where
    K: kube::Resource<DynamicType = ()>
        + serde::de::DeserializeOwned
        + Clone
        + std::fmt::Debug
        + Send
        + 'static,
    View: From<K>,
{
    // Small pages bound the memory a relist of a large cluster needs at once.
    let config = watcher::Config::default().page_size(250);
    let stream = watcher::watcher(api, config).default_backoff();
    futures::pin_mut!(stream);
    let mut progress = ScopeProgress {
        cache: ScopeCache::new(scope),
        shared,
        failed: false,
    };
    while let Some(event) = stream.next().await {
        match event {
            Ok(event) => progress.event(event),
            Err(err) => progress.failed(&err),
        }
    }
}

/// One watch scope's part of the index, and where its list stands between events: what
/// kube-runtime's `Writer::apply_watcher_event` does for its store, over the shared index. A
/// plain state machine (no atomics, no logging), so tests feed it events directly.
struct ScopeCache {
    scope: Scope,
    /// The first list goes straight into the (not yet trusted) cache page by page; a later
    /// relist is gathered here and swapped in whole when it completes.
    relist: Option<Vec<View>>,
    listed_once: bool,
}

impl ScopeCache {
    fn new(scope: Scope) -> Self {
        ScopeCache {
            scope,
            relist: None,
            listed_once: false,
        }
    }

    /// Applies one event of this scope to `index`; the number of objects listed when the event
    /// completes a list. Takes the lock itself, for as little as it can: a relist is gathered
    /// under the read lock and built outside any lock, so lookups never wait for a whole list.
    fn apply<K>(&mut self, index: &RwLock<StaticInventory>, event: Event<K>) -> Option<usize>
    where
        K: kube::Resource<DynamicType = ()>,
        View: From<K>,
    {
        let (kind, namespace) = (self.scope.0, self.scope.1.as_deref());
        match event {
            Event::Init if self.listed_once => self.relist = Some(Vec::new()),
            // A first list that restarts drops what an interrupted attempt left behind.
            Event::Init => write(index).swap_kind(kind, namespace, &mut StaticInventory::new()),
            Event::InitApply(obj) => match self.relist.as_mut() {
                Some(views) => views.push(View::from(obj).reuse_cached(&read(index))),
                None => apply(&mut write(index), View::from(obj)),
            },
            Event::InitDone => return Some(self.listed(index)),
            Event::Apply(obj) => apply(&mut write(index), View::from(obj)),
            Event::Delete(obj) => {
                let meta = obj.meta();
                let name = meta.name.as_deref().unwrap_or("");
                let ns = meta.namespace.as_deref().unwrap_or("");
                write(index).remove(kind, ns, name);
            }
        }
        None
    }

    /// A list completed: a relist replaces the scope. The number of objects listed.
    fn listed(&mut self, index: &RwLock<StaticInventory>) -> usize {
        let (kind, namespace) = (self.scope.0, self.scope.1.as_deref());
        let count = match self.relist.take() {
            Some(views) => {
                let count = views.len();
                // Built outside the lock; what it replaces is dropped outside it too.
                let mut fresh = StaticInventory::new();
                for view in views {
                    apply(&mut fresh, view);
                }
                write(index).swap_kind(kind, namespace, &mut fresh);
                drop(fresh);
                count
            }
            None => read(index).count(kind),
        };
        self.listed_once = true;
        count
    }
}

/// Where one watch scope stands between events: its part of the index, and the health and
/// sync state it shares with the inventory.
struct ScopeProgress {
    cache: ScopeCache,
    shared: Shared,
    /// Counted in `failing_watches` until the scope delivers again.
    failed: bool,
}

impl ScopeProgress {
    fn failing(&self) -> &AtomicUsize {
        &self.shared.stats.failing_watches[self.cache.scope.0 as usize]
    }

    fn failed(&mut self, err: &watcher::Error) {
        self.shared
            .stats
            .watch_errors
            .fetch_add(1, Ordering::Relaxed);
        if !self.failed {
            self.failed = true;
            self.failing().fetch_add(1, Ordering::AcqRel);
        }
        let (kind, namespace) = &self.cache.scope;
        tracing::warn!(kind = kind.name(), ?namespace, %err, "watch failed; retrying with backoff");
    }

    fn event<K>(&mut self, event: Event<K>)
    where
        K: kube::Resource<DynamicType = ()>,
        View: From<K>,
    {
        // A relist that completed, or an event of a resumed watch (which delivers what was
        // missed first), ends the failure once it is in the cache.
        let recovers =
            self.failed && matches!(event, Event::InitDone | Event::Apply(_) | Event::Delete(_));
        if let Some(count) = self.cache.apply(&self.shared.index, event) {
            self.synced(count);
        }
        if recovers {
            self.failed = false;
            self.failing().fetch_sub(1, Ordering::AcqRel);
            let (kind, namespace) = &self.cache.scope;
            tracing::info!(kind = kind.name(), ?namespace, "watch recovered");
        }
    }

    /// A list of `count` objects completed: the scope counts as synced.
    fn synced(&self, count: usize) {
        let (kind, namespace) = (self.cache.scope.0, self.cache.scope.1.as_deref());
        let mut scopes = self
            .shared
            .synced_scopes
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        scopes.insert(self.cache.scope.clone());
        if scopes.len() == self.shared.expected_scopes
            && !self.shared.all_synced.swap(true, Ordering::AcqRel)
        {
            tracing::info!("inventory synced: every watch completed its first list");
        }
        tracing::info!(kind = kind.name(), ?namespace, objects = count, "listed");
    }
}

fn apply(index: &mut StaticInventory, view: View) {
    match view {
        View::Service(v) => index.insert_service(v),
        View::StatefulSet(v) => index.insert_statefulset(v),
        View::Node(v) => index.insert_node(v),
    }
}

/// The index for reading; a panic elsewhere while it was held leaves it usable.
fn read(index: &RwLock<StaticInventory>) -> RwLockReadGuard<'_, StaticInventory> {
    index.read().unwrap_or_else(|e| e.into_inner())
}

fn write(index: &RwLock<StaticInventory>) -> RwLockWriteGuard<'_, StaticInventory> {
    index.write().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inventory::cluster_objects::{WatchedService, WatchedStatefulSet};
    use serde_json::json;

    fn service(namespace: &str, name: &str, cluster_ip: &str) -> WatchedService {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"clusterIP": cluster_ip, "selector": {"app": name}}}))
        .unwrap()
    }

    fn statefulset(namespace: &str, name: &str) -> WatchedStatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"serviceName": "s"}}))
        .unwrap()
    }

    fn services_in(namespace: &str) -> ScopeCache {
        ScopeCache::new((Kind::Service, Some(namespace.to_string())))
    }

    fn cached(
        index: &RwLock<StaticInventory>,
        namespace: &str,
        name: &str,
    ) -> Option<Arc<ServiceView>> {
        read(index).service(namespace, name).unwrap()
    }

    /// Applies a whole list (Init, InitApply each, InitDone); the count it reports.
    fn list(
        cache: &mut ScopeCache,
        index: &RwLock<StaticInventory>,
        objects: Vec<WatchedService>,
    ) -> Option<usize> {
        assert_eq!(cache.apply(index, Event::<WatchedService>::Init), None);
        for obj in objects {
            assert_eq!(cache.apply(index, Event::InitApply(obj)), None);
        }
        cache.apply(index, Event::<WatchedService>::InitDone)
    }

    #[test]
    fn apply_adds_an_object_and_replaces_it_when_it_changes() {
        let index = RwLock::new(StaticInventory::new());
        let mut cache = services_in("d");
        assert_eq!(
            cache.apply(&index, Event::Apply(service("d", "a", "None"))),
            None
        );
        assert!(cached(&index, "d", "a").unwrap().is_headless());
        assert!(
            cached(&index, "d", "b").is_none(),
            "only what was applied is cached"
        );

        cache.apply(&index, Event::Apply(service("d", "a", "10.0.0.1")));
        assert!(!cached(&index, "d", "a").unwrap().is_headless());
        assert_eq!(read(&index).count(Kind::Service), 1);
    }

    #[test]
    fn delete_removes_that_object_only() {
        let index = RwLock::new(StaticInventory::new());
        let mut cache = services_in("d");
        cache.apply(&index, Event::Apply(service("d", "a", "None")));
        cache.apply(&index, Event::Apply(service("d", "b", "None")));
        assert_eq!(
            cache.apply(&index, Event::Delete(service("d", "a", "None"))),
            None
        );
        assert!(cached(&index, "d", "a").is_none());
        assert!(cached(&index, "d", "b").is_some());
        // Deleting what is not cached changes nothing.
        cache.apply(&index, Event::Delete(service("d", "gone", "None")));
        assert!(cached(&index, "d", "b").is_some());
    }

    #[test]
    fn a_relist_drops_objects_absent_from_it_and_keeps_those_that_stayed() {
        let index = RwLock::new(StaticInventory::new());
        let mut cache = services_in("d");
        let first = vec![service("d", "a", "None"), service("d", "b", "None")];
        assert_eq!(list(&mut cache, &index, first), Some(2));
        let b_before = cached(&index, "d", "b").unwrap();

        // Until the relist completes the cache answers from the last list.
        assert_eq!(cache.apply(&index, Event::<WatchedService>::Init), None);
        cache.apply(&index, Event::InitApply(service("d", "b", "None")));
        cache.apply(&index, Event::InitApply(service("d", "c", "None")));
        assert!(cached(&index, "d", "a").is_some());
        assert!(cached(&index, "d", "c").is_none());

        assert_eq!(
            cache.apply(&index, Event::<WatchedService>::InitDone),
            Some(2)
        );
        assert!(cached(&index, "d", "a").is_none(), "absent from the relist");
        assert!(cached(&index, "d", "c").is_some(), "new in the relist");
        let b_after = cached(&index, "d", "b").unwrap();
        assert!(
            Arc::ptr_eq(&b_before, &b_after),
            "an unchanged object keeps its view"
        );
        // A changed one gets a new view.
        list(&mut cache, &index, vec![service("d", "b", "10.0.0.1")]);
        assert!(!Arc::ptr_eq(&b_before, &cached(&index, "d", "b").unwrap()));
    }

    #[test]
    fn a_first_list_that_restarts_drops_what_the_interrupted_attempt_left() {
        let index = RwLock::new(StaticInventory::new());
        let mut cache = services_in("d");
        cache.apply(&index, Event::<WatchedService>::Init);
        cache.apply(&index, Event::InitApply(service("d", "a", "None")));
        // The first list goes into the cache page by page.
        assert!(cached(&index, "d", "a").is_some());
        assert_eq!(
            list(&mut cache, &index, vec![service("d", "b", "None")]),
            Some(1)
        );
        assert!(cached(&index, "d", "a").is_none());
        assert!(cached(&index, "d", "b").is_some());
    }

    #[test]
    fn a_relist_of_one_scope_leaves_other_namespaces_and_kinds_alone() {
        let index = RwLock::new(StaticInventory::new());
        let mut in_d = services_in("d");
        let mut in_e = services_in("e");
        let mut statefulsets_in_d = ScopeCache::new((Kind::StatefulSet, Some("d".to_string())));
        list(&mut in_d, &index, vec![service("d", "a", "None")]);
        list(&mut in_e, &index, vec![service("e", "a", "None")]);
        statefulsets_in_d.apply(&index, Event::<WatchedStatefulSet>::Init);
        statefulsets_in_d.apply(&index, Event::InitApply(statefulset("d", "w")));
        statefulsets_in_d.apply(&index, Event::<WatchedStatefulSet>::InitDone);

        assert_eq!(list(&mut in_d, &index, Vec::new()), Some(0));
        assert!(
            cached(&index, "d", "a").is_none(),
            "its own scope is relisted"
        );
        assert!(
            cached(&index, "e", "a").is_some(),
            "another namespace stays"
        );
        assert!(
            read(&index).statefulset("d", "w").is_some(),
            "another kind stays"
        );
    }

    #[test]
    fn a_relist_of_all_namespaces_replaces_every_namespace() {
        let index = RwLock::new(StaticInventory::new());
        let mut all = ScopeCache::new((Kind::Service, None));
        let first = vec![service("d", "a", "None"), service("e", "a", "None")];
        list(&mut all, &index, first);
        assert_eq!(
            list(&mut all, &index, vec![service("e", "a", "None")]),
            Some(1)
        );
        assert!(cached(&index, "d", "a").is_none());
        assert!(cached(&index, "e", "a").is_some());
    }
}

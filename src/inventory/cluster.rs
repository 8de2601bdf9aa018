//! The cluster inventory: kube-rs watches of Services, StatefulSets and Nodes, kept as the lean
//! views the rules read (never whole objects), indexed like the static inventory.
//!
//! ```text
//!   watcher(Services) ─────┐
//!   watcher(StatefulSets) ─┼─► RwLock<StaticInventory> ─► Inventory (cache answers)
//!   watcher(Nodes) ────────┘                                  │
//!   decide_confirmed(): evaluate on the cache; when the answer rests on a lookup that would
//!   deny, redo those lookups live (GET/LIST) and evaluate again
//! ```
//!
//! The cache may lag the API server by a moment: a Service created a millisecond before its
//! StatefulSet may not have reached the watch yet. So a decision that rests on a cache answer
//! that would deny (Service or Node not found, a StatefulSet governed by a Service) is
//! re-evaluated with live answers for exactly those lookups before it is returned.
//!
//! While a watch is failing (say kube-apiserver restarts) its kind's cache misses every change
//! until the watch resumes or relists, so then every lookup of that kind is confirmed live: a
//! StatefulSet created meanwhile must still keep its governing Service from being deleted.

use super::lean::{LeanNode, LeanService, LeanStatefulSet};
use super::static_files::Kind;
use super::{Evaluator, Inventory, Lookup, LookupError, StaticInventory};
use crate::config::Config;
use crate::engine::{Decision, Endpoint, evaluate};
use crate::model::{NodeView, ServiceView, StatefulSetView};
use futures::StreamExt;
use futures::future::BoxFuture;
use kube::Client;
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube_core::admission::AdmissionRequest;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

impl Kind {
    fn index(self) -> usize {
        self as usize
    }

    fn as_str(self) -> &'static str {
        match self {
            Kind::Service => "Service",
            Kind::StatefulSet => "StatefulSet",
            Kind::Node => "Node",
        }
    }
}

/// What one watch covers: a kind, in one namespace or (None) in all.
type Scope = (Kind, Option<String>);

/// A view built from a watched object, ready to share between the index and decisions.
enum View {
    Service(Arc<ServiceView>),
    StatefulSet(Arc<StatefulSetView>),
    Node(Arc<NodeView>),
}

impl From<LeanService> for View {
    fn from(s: LeanService) -> Self {
        View::Service(Arc::new(s.into()))
    }
}

impl From<LeanStatefulSet> for View {
    fn from(s: LeanStatefulSet) -> Self {
        View::StatefulSet(Arc::new(s.into()))
    }
}

impl From<LeanNode> for View {
    fn from(n: LeanNode) -> Self {
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
    /// Per kind (by `Kind::index`): watch scopes that failed and have not delivered an event
    /// since, so their part of the cache may be missing changes.
    failing_watches: [AtomicUsize; 3],
}

impl ClusterStats {
    fn cache_trusted(&self, kind: Kind) -> bool {
        self.failing_watches[kind.index()].load(Ordering::Acquire) == 0
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
        let mut scopes: Vec<Scope> = Vec::new();
        for kind in [Kind::Service, Kind::StatefulSet] {
            if namespaces.is_empty() {
                scopes.push((kind, None));
            } else {
                scopes.extend(namespaces.iter().map(|ns| (kind, Some(ns.clone()))));
            }
        }
        scopes.push((Kind::Node, None));
        let expected_scopes = scopes.len();
        let tasks = scopes
            .into_iter()
            .map(|(kind, namespace)| {
                let shared = Shared {
                    index: index.clone(),
                    synced_scopes: synced_scopes.clone(),
                    expected_scopes,
                    all_synced: all_synced.clone(),
                    stats: stats.clone(),
                };
                let ns = namespace.as_deref();
                match kind {
                    Kind::Service => tokio::spawn(watch(
                        scoped_api::<LeanService>(&client, ns),
                        kind,
                        namespace,
                        shared,
                    )),
                    Kind::StatefulSet => tokio::spawn(watch(
                        scoped_api::<LeanStatefulSet>(&client, ns),
                        kind,
                        namespace,
                        shared,
                    )),
                    Kind::Node => tokio::spawn(watch(
                        Api::<LeanNode>::all(client.clone()),
                        kind,
                        namespace,
                        shared,
                    )),
                }
            })
            .collect();
        ClusterInventory {
            client,
            index,
            all_synced,
            lookup_timeout,
            stats,
            tasks,
        }
    }

    /// Object counts in the cache (Services, StatefulSets, Nodes).
    pub fn sizes(&self) -> (usize, usize, usize) {
        self.read().sizes()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, StaticInventory> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
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

    async fn live_service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        let api: Api<LeanService> = Api::namespaced(self.client.clone(), namespace);
        let found = self
            .timed(format!("Service {namespace}/{name}"), api.get_opt(name))
            .await?;
        Ok(found.map(|s| Arc::new(s.into())))
    }

    async fn live_governed(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        let api: Api<LeanStatefulSet> = Api::namespaced(self.client.clone(), namespace);
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

    async fn live_node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        let api: Api<LeanNode> = Api::all(self.client.clone());
        let found = self
            .timed(format!("Node {name}"), api.get_opt(name))
            .await?;
        Ok(found.map(|n| Arc::new(n.into())))
    }

    /// Evaluates against the cache, then, when the answer rests on a lookup that could be
    /// stale in a way that matters, again with live answers for those lookups.
    pub async fn decide_confirmed(
        &self,
        request: &AdmissionRequest<DynamicObject>,
        config: &Config,
        endpoint: Endpoint,
    ) -> Decision {
        let recorder = Recorder {
            base: self,
            calls: Mutex::new(Vec::new()),
        };
        let decision = evaluate(request, &recorder, config, endpoint);
        let calls = recorder
            .calls
            .into_inner()
            .unwrap_or_else(|e| e.into_inner());
        let synced = self.synced();
        let denies = !decision.allowed();
        // Not synced yet, or its watch failing: nothing the cache says of a kind can be trusted.
        let stale = |kind| !synced || !self.stats.cache_trusted(kind);
        let to_confirm: Vec<&Call> = calls
            .iter()
            .filter(|call| match call {
                // Only feeds the did-you-mean hint; never decides.
                Call::ServicesIn => false,
                // A missing Node makes a force delete safe: a stale miss would wrongly allow.
                Call::Node(_, found) => denies || !found || stale(Kind::Node),
                Call::Service(..) => denies || stale(Kind::Service),
                Call::Governed(..) => denies || stale(Kind::StatefulSet),
            })
            .collect();
        if to_confirm.is_empty() {
            return decision;
        }
        let mut overlay = Overlay {
            base: self,
            services: HashMap::new(),
            governed: HashMap::new(),
            nodes: HashMap::new(),
        };
        let answers = futures::future::join_all(to_confirm.iter().map(|call| async move {
            match call {
                Call::Service(ns, name) => Answer::Service(
                    (ns.clone(), name.clone()),
                    self.live_service(ns, name).await,
                ),
                Call::Governed(ns, svc) => {
                    Answer::Governed((ns.clone(), svc.clone()), self.live_governed(ns, svc).await)
                }
                Call::Node(name, _) => Answer::Node(name.clone(), self.live_node(name).await),
                Call::ServicesIn => Answer::None,
            }
        }))
        .await;
        for answer in answers {
            match answer {
                Answer::Service(key, result) => {
                    overlay.services.insert(key, result);
                }
                Answer::Governed(key, result) => {
                    overlay.governed.insert(key, result);
                }
                Answer::Node(key, result) => {
                    overlay.nodes.insert(key, result);
                }
                Answer::None => {}
            }
        }
        evaluate(request, &overlay, config, endpoint)
    }
}

impl Evaluator for ClusterInventory {
    fn decide<'a>(
        &'a self,
        request: &'a AdmissionRequest<DynamicObject>,
        config: &'a Config,
        endpoint: Endpoint,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(self.decide_confirmed(request, config, endpoint))
    }

    fn synced(&self) -> bool {
        self.all_synced.load(Ordering::Acquire)
    }
}

/// The cache, as the rules see it.
impl Inventory for ClusterInventory {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        self.read().service(namespace, name)
    }

    fn services_in(&self, namespace: &str) -> Lookup<Vec<Arc<ServiceView>>> {
        self.read().services_in(namespace)
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
}

/// A lookup the rules made, and whether the cache found something.
enum Call {
    Service(String, String),
    ServicesIn,
    Governed(String, String),
    /// The Node's name, and whether the cache had it.
    Node(String, bool),
}

enum Answer {
    Service((String, String), Lookup<Option<Arc<ServiceView>>>),
    Governed((String, String), Lookup<Vec<Arc<StatefulSetView>>>),
    Node(String, Lookup<Option<Arc<NodeView>>>),
    None,
}

/// Answers from the cache and writes down every question.
struct Recorder<'a> {
    base: &'a ClusterInventory,
    calls: Mutex<Vec<Call>>,
}

impl Recorder<'_> {
    fn note(&self, call: Call) {
        self.calls
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(call);
    }
}

impl Inventory for Recorder<'_> {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        self.note(Call::Service(namespace.into(), name.into()));
        self.base.service(namespace, name)
    }

    fn services_in(&self, namespace: &str) -> Lookup<Vec<Arc<ServiceView>>> {
        self.note(Call::ServicesIn);
        self.base.services_in(namespace)
    }

    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        self.note(Call::Governed(namespace.into(), service.into()));
        self.base.statefulsets_governed_by(namespace, service)
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        let result = self.base.node(name);
        self.note(Call::Node(name.into(), matches!(result, Ok(Some(_)))));
        result
    }
}

/// Live answers over the cache.
struct Overlay<'a> {
    base: &'a ClusterInventory,
    services: HashMap<(String, String), Lookup<Option<Arc<ServiceView>>>>,
    governed: HashMap<(String, String), Lookup<Vec<Arc<StatefulSetView>>>>,
    nodes: HashMap<String, Lookup<Option<Arc<NodeView>>>>,
}

impl Inventory for Overlay<'_> {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        match self
            .services
            .get(&(namespace.to_string(), name.to_string()))
        {
            Some(live) => live.clone(),
            None => self.base.service(namespace, name),
        }
    }

    fn services_in(&self, namespace: &str) -> Lookup<Vec<Arc<ServiceView>>> {
        self.base.services_in(namespace)
    }

    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        match self
            .governed
            .get(&(namespace.to_string(), service.to_string()))
        {
            Some(live) => live.clone(),
            None => self.base.statefulsets_governed_by(namespace, service),
        }
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        match self.nodes.get(name) {
            Some(live) => live.clone(),
            None => self.base.node(name),
        }
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

impl Shared {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, StaticInventory> {
        self.index.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, StaticInventory> {
        self.index.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// Keeps one scope of the index in step with the API server. Errors back off and retry
/// (kube-runtime's default backoff); a relist replaces the scope's contents atomically.
async fn watch<K>(api: Api<K>, kind: Kind, namespace: Option<String>, shared: Shared)
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
    // The first list goes straight into the (not yet trusted) cache page by page; a later
    // relist is gathered aside and swapped in whole when it completes.
    let mut relist: Option<Vec<View>> = None;
    let mut listed_once = false;
    let failing = &shared.stats.failing_watches[kind.index()];
    let mut failed = false;
    while let Some(event) = stream.next().await {
        let event = match event {
            Ok(event) => event,
            Err(err) => {
                shared.stats.watch_errors.fetch_add(1, Ordering::Relaxed);
                if !failed {
                    failed = true;
                    failing.fetch_add(1, Ordering::AcqRel);
                }
                tracing::warn!(kind = kind.as_str(), namespace = ?namespace, %err, "watch failed; retrying with backoff");
                continue;
            }
        };
        // A relist that completed, or an event of a resumed watch (which delivers what was
        // missed first), ends the failure once it is in the cache.
        let recovers =
            failed && matches!(event, Event::InitDone | Event::Apply(_) | Event::Delete(_));
        match event {
            Event::Init if listed_once => relist = Some(Vec::new()),
            // A first list that restarts drops what an interrupted attempt left behind.
            Event::Init => {
                shared
                    .write()
                    .swap_kind(kind, namespace.as_deref(), &mut StaticInventory::new())
            }
            Event::InitApply(obj) => match relist.as_mut() {
                Some(views) => views.push(View::from(obj).reuse_cached(&shared.read())),
                None => apply(&mut shared.write(), View::from(obj)),
            },
            Event::InitDone => {
                let count = match relist.take() {
                    Some(views) => {
                        let count = views.len();
                        // Built outside the lock; what it replaces is dropped outside it too.
                        let mut fresh = StaticInventory::new();
                        for view in views {
                            apply(&mut fresh, view);
                        }
                        shared
                            .write()
                            .swap_kind(kind, namespace.as_deref(), &mut fresh);
                        drop(fresh);
                        count
                    }
                    None => {
                        let sizes = shared.read().sizes();
                        match kind {
                            Kind::Service => sizes.0,
                            Kind::StatefulSet => sizes.1,
                            Kind::Node => sizes.2,
                        }
                    }
                };
                listed_once = true;
                let mut scopes = shared
                    .synced_scopes
                    .lock()
                    .unwrap_or_else(|e| e.into_inner());
                scopes.insert((kind, namespace.clone()));
                if scopes.len() == shared.expected_scopes
                    && !shared.all_synced.swap(true, Ordering::AcqRel)
                {
                    tracing::info!("inventory synced: every watch completed its first list");
                }
                tracing::info!(kind = kind.as_str(), namespace = ?namespace, objects = count, "listed");
            }
            Event::Apply(obj) => apply(&mut shared.write(), View::from(obj)),
            Event::Delete(obj) => {
                let meta = obj.meta();
                let name = meta.name.as_deref().unwrap_or("");
                let ns = meta.namespace.as_deref().unwrap_or("");
                let mut idx = shared.write();
                match kind {
                    Kind::Service => idx.remove_service(ns, name),
                    Kind::StatefulSet => idx.remove_statefulset(ns, name),
                    Kind::Node => idx.remove_node(name),
                }
            }
        }
        if recovers {
            failed = false;
            failing.fetch_sub(1, Ordering::AcqRel);
            tracing::info!(kind = kind.as_str(), namespace = ?namespace, "watch recovered");
        }
    }
}

fn apply(index: &mut StaticInventory, view: View) {
    match view {
        View::Service(v) => index.insert_service(v),
        View::StatefulSet(v) => index.insert_statefulset(v),
        View::Node(v) => index.insert_node(v),
    }
}

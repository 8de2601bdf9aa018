//! Deciding a request against an inventory: directly for one that answers from files, and
//! with live confirmation for one that answers from watch caches.
//!
//! The cache may lag the API server by a moment: a Service created a millisecond before its
//! StatefulSet may not have reached the watch yet. So a decision that rests on a cache answer
//! that would deny (Service or Node not found, a StatefulSet governed by a Service) is
//! re-evaluated with live answers for exactly those lookups before it is returned. Whether a
//! namespace is being deleted is never cached: it is asked live, and only before a denial. While a
//! watch is failing its kind's cache misses every change, so then every lookup of that kind is
//! confirmed live: a StatefulSet created meanwhile must still keep its governing Service from
//! being deleted.
//!
//! ```text
//!   evaluate(request, Recorder(cache)) ──► Decision + the lookups the rules made
//!        │ lookups to confirm (would deny, or their kind's cache not trusted)
//!        ▼
//!   LiveLookup::live_* (GET/LIST, concurrently) ──► Overlay(live answers over the cache)
//!        ▼
//!   evaluate(request, Overlay) ──► Decision
//! ```

use super::{Decision, Endpoint, evaluate_review};
use crate::config::Config;
use crate::inventory::{ClusterInventory, Inventory, LiveLookup, Lookup, StaticInventory};
use crate::model::{LabelSet, NodeView, ServiceView, StatefulSetView};
use crate::request::{self, Review};
use crate::vocabulary::Kind;
use futures::future::BoxFuture;
use kube_core::DynamicObject;
use kube_core::admission::AdmissionRequest;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Decides admission requests: the static inventory evaluates directly, the cluster one
/// confirms cache answers that would deny. Both run the same rules through
/// [`evaluate_review`].
pub trait Evaluator: Send + Sync {
    /// Decides `review` by the handler the decoder planned for it.
    fn decide_review<'a>(
        &'a self,
        review: &'a Review<'_>,
        config: &'a Config,
    ) -> BoxFuture<'a, Decision>;

    /// [`Evaluator::decide_review`] of a request in kube-rs's form, by the handler `endpoint`
    /// has for it.
    fn decide<'a>(
        &'a self,
        request: &'a AdmissionRequest<DynamicObject>,
        config: &'a Config,
        endpoint: Endpoint,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(async move {
            let texts = request::object_texts(request);
            match request::review_of(request, endpoint, &texts) {
                Ok(review) => self.decide_review(&review, config).await,
                Err(err) => Decision {
                    invalid: Some(err),
                    ..Decision::default()
                },
            }
        })
    }

    /// Whether the inventory has everything it needs to answer (`/readyz`).
    fn synced(&self) -> bool {
        true
    }
}

impl Evaluator for StaticInventory {
    fn decide_review<'a>(
        &'a self,
        review: &'a Review<'_>,
        config: &'a Config,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(std::future::ready(evaluate_review(review, self, config)))
    }
}

impl Evaluator for ClusterInventory {
    fn decide_review<'a>(
        &'a self,
        review: &'a Review<'_>,
        config: &'a Config,
    ) -> BoxFuture<'a, Decision> {
        Box::pin(decide_confirmed(self, review, config))
    }

    fn synced(&self) -> bool {
        ClusterInventory::synced(self)
    }
}

/// Evaluates against the cache, then, when the answer rests on a lookup that could be stale in
/// a way that matters, again with live answers for those lookups.
pub async fn decide_confirmed<L: LiveLookup>(
    live: &L,
    review: &Review<'_>,
    config: &Config,
) -> Decision {
    let recorder = Recorder {
        base: live,
        calls: Mutex::new(Vec::new()),
    };
    let decision = evaluate_review(review, &recorder, config);
    let calls = recorder
        .calls
        .into_inner()
        .unwrap_or_else(|e| e.into_inner());
    let denies = !decision.allowed();
    // Not synced yet, or its watch failing: nothing the cache says of a kind can be trusted.
    let stale = |kind| !live.cache_trusted(kind);
    let to_confirm: Vec<&Call> = calls
        .iter()
        .filter(|call| match call {
            // Only feeds the did-you-mean hint; never decides.
            Call::Selecting => false,
            // A missing Node makes a force delete safe: a stale miss would wrongly allow.
            Call::Node(_, found) => denies || !found || stale(Kind::Node),
            Call::Service(..) => denies || stale(Kind::Service),
            Call::Governed(..) => denies || stale(Kind::StatefulSet),
            // Namespaces are not cached: asked of the API server only before a denial.
            Call::Namespace(_) => denies,
        })
        .collect();
    if to_confirm.is_empty() {
        return decision;
    }
    let mut overlay = Overlay {
        base: live,
        services: HashMap::new(),
        governed: HashMap::new(),
        nodes: HashMap::new(),
        namespaces: HashMap::new(),
    };
    let answers = futures::future::join_all(to_confirm.iter().map(|call| async move {
        match call {
            Call::Service(ns, name) => Answer::Service(
                (ns.clone(), name.clone()),
                live.live_service(ns, name).await,
            ),
            Call::Governed(ns, svc) => Answer::Governed(
                (ns.clone(), svc.clone()),
                live.live_statefulsets_governed_by(ns, svc).await,
            ),
            Call::Node(name, _) => Answer::Node(name.clone(), live.live_node(name).await),
            Call::Namespace(name) => {
                Answer::Namespace(name.clone(), live.live_namespace_terminating(name).await)
            }
            Call::Selecting => Answer::None,
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
            Answer::Namespace(key, result) => {
                overlay.namespaces.insert(key, result);
            }
            Answer::None => {}
        }
    }
    evaluate_review(review, &overlay, config)
}

/// A lookup the rules made, and whether the cache found something.
enum Call {
    Service(String, String),
    /// The did-you-mean candidates.
    Selecting,
    Governed(String, String),
    /// The Node's name, and whether the cache had it.
    Node(String, bool),
    Namespace(String),
}

enum Answer {
    Service((String, String), Lookup<Option<Arc<ServiceView>>>),
    Governed((String, String), Lookup<Vec<Arc<StatefulSetView>>>),
    Node(String, Lookup<Option<Arc<NodeView>>>),
    Namespace(String, Lookup<bool>),
    None,
}

/// Answers from the cache and writes down every question.
struct Recorder<'a> {
    base: &'a dyn Inventory,
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

    fn headless_services_selecting(
        &self,
        namespace: &str,
        labels: &LabelSet,
    ) -> Lookup<Vec<Arc<ServiceView>>> {
        self.note(Call::Selecting);
        self.base.headless_services_selecting(namespace, labels)
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

    fn namespace_terminating(&self, name: &str) -> Lookup<bool> {
        self.note(Call::Namespace(name.into()));
        self.base.namespace_terminating(name)
    }
}

/// Live answers over the cache.
struct Overlay<'a> {
    base: &'a dyn Inventory,
    services: HashMap<(String, String), Lookup<Option<Arc<ServiceView>>>>,
    governed: HashMap<(String, String), Lookup<Vec<Arc<StatefulSetView>>>>,
    nodes: HashMap<String, Lookup<Option<Arc<NodeView>>>>,
    namespaces: HashMap<String, Lookup<bool>>,
}

impl Inventory for Overlay<'_> {
    fn service(&self, namespace: &str, name: &str) -> Lookup<Option<Arc<ServiceView>>> {
        let live = self.services.get(&(namespace.into(), name.into()));
        live_or(live, || self.base.service(namespace, name))
    }

    fn headless_services_selecting(
        &self,
        namespace: &str,
        labels: &LabelSet,
    ) -> Lookup<Vec<Arc<ServiceView>>> {
        self.base.headless_services_selecting(namespace, labels)
    }

    fn statefulsets_governed_by(
        &self,
        namespace: &str,
        service: &str,
    ) -> Lookup<Vec<Arc<StatefulSetView>>> {
        let live = self.governed.get(&(namespace.into(), service.into()));
        live_or(live, || {
            self.base.statefulsets_governed_by(namespace, service)
        })
    }

    fn node(&self, name: &str) -> Lookup<Option<Arc<NodeView>>> {
        live_or(self.nodes.get(name), || self.base.node(name))
    }

    fn namespace_terminating(&self, name: &str) -> Lookup<bool> {
        live_or(self.namespaces.get(name), || {
            self.base.namespace_terminating(name)
        })
    }
}

/// The live answer when there is one, else the cache's.
fn live_or<T: Clone>(live: Option<&Lookup<T>>, cache: impl FnOnce() -> Lookup<T>) -> Lookup<T> {
    live.cloned().unwrap_or_else(cache)
}

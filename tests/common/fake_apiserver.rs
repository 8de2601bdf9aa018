//! An in-test Kubernetes API server at the HTTP level, enough for kube-rs watchers, live
//! lookups and `audit`: LIST with resourceVersion, `limit`/`continue` pages and label selectors
//! (`key` and `key=value`), WATCH streams (newline-delimited events, bookmarks, resume from a
//! resourceVersion), `410 Gone` that forces a relist or expires a continue token, GET with 404
//! Status, `403 Forbidden` per resource, and switches to drop watches or to be down. Objects
//! are stored as JSON fixtures.
#![allow(dead_code)]

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

type Key = (String, String, String); // (plural, namespace, name)

#[derive(Default)]
struct Inner {
    rv: u64,
    objects: BTreeMap<Key, Value>,
    /// (resourceVersion, plural, namespace, event) for resuming watches.
    log: Vec<(u64, String, String, Value)>,
    watchers: Vec<(String, Option<String>, mpsc::UnboundedSender<Bytes>)>,
    down: bool,
    failing_watches: bool,
    /// Kinds (plurals) whose next watch request is answered with 410 Gone.
    expire_next_watch: std::collections::HashSet<String>,
    /// Kinds (plurals) whose next list request with a continue token gets 410 Expired.
    expire_next_continue: std::collections::HashSet<String>,
    /// Kinds (plurals) every request for which is answered 403 Forbidden.
    forbidden: std::collections::HashSet<String>,
    requests: Vec<String>,
}

#[derive(Clone)]
pub struct FakeApi {
    inner: Arc<Mutex<Inner>>,
    pub addr: SocketAddr,
}

fn plural_of(kind: &str) -> &'static str {
    match kind {
        "Service" => "services",
        "StatefulSet" => "statefulsets",
        "Node" => "nodes",
        "Pod" => "pods",
        "PersistentVolumeClaim" => "persistentvolumeclaims",
        "ControllerRevision" => "controllerrevisions",
        other => panic!("fake API server does not serve {other}"),
    }
}

fn list_kind(plural: &str) -> &'static str {
    match plural {
        "services" => "ServiceList",
        "statefulsets" => "StatefulSetList",
        "pods" => "PodList",
        "persistentvolumeclaims" => "PersistentVolumeClaimList",
        "controllerrevisions" => "ControllerRevisionList",
        _ => "NodeList",
    }
}

fn status(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

fn line(v: &Value) -> Bytes {
    let mut bytes = serde_json::to_vec(v).unwrap();
    bytes.push(b'\n');
    Bytes::from(bytes)
}

impl FakeApi {
    pub async fn start() -> FakeApi {
        let inner = Arc::new(Mutex::new(Inner {
            rv: 1000,
            ..Default::default()
        }));
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        FakeApi { inner, addr }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url().parse().unwrap());
        kube::Client::try_from(config).unwrap()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    /// Creates or updates an object and tells the watches.
    pub fn apply(&self, mut obj: Value) {
        let mut inner = self.lock();
        inner.rv += 1;
        let rv = inner.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        let key = key_of(&obj);
        let kind = if inner.objects.contains_key(&key) {
            "MODIFIED"
        } else {
            "ADDED"
        };
        inner.objects.insert(key.clone(), obj.clone());
        broadcast(&mut inner, &key, json!({"type": kind, "object": obj}));
    }

    /// Deletes an object and tells the watches.
    pub fn delete(&self, kind: &str, namespace: &str, name: &str) {
        let mut inner = self.lock();
        let key = (
            plural_of(kind).to_string(),
            namespace.to_string(),
            name.to_string(),
        );
        if let Some(mut obj) = inner.objects.remove(&key) {
            inner.rv += 1;
            obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
            broadcast(&mut inner, &key, json!({"type": "DELETED", "object": obj}));
        }
    }

    /// Changes the store without any watch event (as if the event were lost): only a relist
    /// or a live lookup can see it.
    pub fn apply_silently(&self, mut obj: Value) {
        let mut inner = self.lock();
        inner.rv += 1;
        obj["metadata"]["resourceVersion"] = json!(inner.rv.to_string());
        inner.objects.insert(key_of(&obj), obj);
    }

    pub fn delete_silently(&self, kind: &str, namespace: &str, name: &str) {
        let mut inner = self.lock();
        inner.rv += 1;
        inner.objects.remove(&(
            plural_of(kind).to_string(),
            namespace.to_string(),
            name.to_string(),
        ));
    }

    /// Ends every open watch stream (the client resumes from its last resourceVersion).
    pub fn drop_watches(&self) {
        self.lock().watchers.clear();
    }

    /// Ends the watches and answers the next watch with `410 Gone`, forcing a relist.
    pub fn expire_watches(&self) {
        let mut inner = self.lock();
        inner.expire_next_watch = ["services", "statefulsets", "nodes"]
            .map(String::from)
            .into();
        inner.log.clear();
        inner.watchers.clear();
    }

    /// While down, every request fails with 503 and open watches end.
    pub fn set_down(&self, down: bool) {
        let mut inner = self.lock();
        inner.down = down;
        if down {
            inner.watchers.clear();
        }
    }

    /// While set, open watches end and new ones fail with 500 (an etcd error, or kube-apiserver
    /// going away: kube-rs retries 503s for minutes before its watcher reports them); lists and
    /// GETs still answer.
    pub fn fail_watches(&self, failing: bool) {
        let mut inner = self.lock();
        inner.failing_watches = failing;
        if failing {
            inner.watchers.clear();
        }
    }

    /// Answers every request for `plural` with 403 Forbidden, as RBAC would.
    pub fn forbid(&self, plural: &str) {
        self.lock().forbidden.insert(plural.to_string());
    }

    /// Answers the next list of `plural` that carries a continue token with 410 Expired, as
    /// the API server does when the token outlived its snapshot.
    pub fn expire_next_continue(&self, plural: &str) {
        self.lock().expire_next_continue.insert(plural.to_string());
    }

    /// Requests seen so far, as "METHOD path?query".
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }
}

fn key_of(obj: &Value) -> Key {
    let kind = obj["kind"].as_str().expect("fixture has a kind");
    (
        plural_of(kind).to_string(),
        obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        obj["metadata"]["name"]
            .as_str()
            .expect("fixture has a name")
            .to_string(),
    )
}

fn broadcast(inner: &mut Inner, key: &Key, event: Value) {
    let rv = inner.rv;
    inner
        .log
        .push((rv, key.0.clone(), key.1.clone(), event.clone()));
    let bytes = line(&event);
    inner.watchers.retain(|(plural, ns, tx)| {
        if plural != &key.0 || ns.as_ref().is_some_and(|n| n != &key.1) {
            return !tx.is_closed();
        }
        tx.send(bytes.clone()).is_ok()
    });
}

/// Parses `/api/v1[/namespaces/NS]/PLURAL[/NAME]` and `/apis/apps/v1/...`.
fn route(path: &str) -> Option<(String, Option<String>, Option<String>)> {
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/apis/apps/v1/"))?;
    let parts: Vec<&str> = rest.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        ["namespaces", ns, plural] => Some((plural.to_string(), Some(ns.to_string()), None)),
        ["namespaces", ns, plural, name] => Some((
            plural.to_string(),
            Some(ns.to_string()),
            Some(name.to_string()),
        )),
        [plural] => Some((plural.to_string(), None, None)),
        [plural, name] => Some((plural.to_string(), None, Some(name.to_string()))),
        _ => None,
    }
}

fn json_response(code: StatusCode, v: &Value) -> Response {
    (
        code,
        [("content-type", "application/json")],
        serde_json::to_vec(v).unwrap(),
    )
        .into_response()
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, uri: Uri) -> Response {
    let query: HashMap<String, String> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let mut guard = inner.lock().unwrap();
    guard.requests.push(format!("GET {}", uri));
    if guard.down {
        return json_response(
            StatusCode::SERVICE_UNAVAILABLE,
            &status(503, "ServiceUnavailable", "down"),
        );
    }
    let Some((plural, ns, name)) = route(uri.path()) else {
        return json_response(
            StatusCode::NOT_FOUND,
            &status(404, "NotFound", "no such path"),
        );
    };
    if guard.forbidden.contains(&plural) {
        let scope = match &ns {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        return json_response(
            StatusCode::FORBIDDEN,
            &status(
                403,
                "Forbidden",
                &format!(
                    "{plural} is forbidden: User \"system:serviceaccount:sts-guard:sts-guard\" cannot list resource \"{plural}\" in API group \"\" {scope}"
                ),
            ),
        );
    }
    if let Some(name) = name {
        let key = (plural.clone(), ns.clone().unwrap_or_default(), name.clone());
        return match guard.objects.get(&key) {
            Some(obj) => json_response(StatusCode::OK, obj),
            None => json_response(
                StatusCode::NOT_FOUND,
                &status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
            ),
        };
    }
    let in_scope = |key: &Key| key.0 == plural && ns.as_ref().is_none_or(|n| n == &key.1);
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        if guard.failing_watches {
            return json_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                &status(500, "InternalError", "watch failed"),
            );
        }
        if guard.expire_next_watch.remove(&plural) {
            let gone = json!({"type": "ERROR", "object": status(410, "Expired", "too old resource version")});
            return (
                StatusCode::OK,
                [("content-type", "application/json")],
                line(&gone),
            )
                .into_response();
        }
        let since: u64 = query
            .get("resourceVersion")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (tx, rx) = mpsc::unbounded_channel();
        for (rv, p, n, event) in &guard.log {
            if *rv > since && p == &plural && ns.as_ref().is_none_or(|want| want == n) {
                let _ = tx.send(line(event));
            }
        }
        let bookmark = json!({"type": "BOOKMARK", "object": {
            "kind": "Bookmark", "apiVersion": "v1", "metadata": {"resourceVersion": guard.rv.to_string()}}});
        let _ = tx.send(line(&bookmark));
        guard.watchers.push((plural, ns, tx));
        let stream = futures::stream::unfold(rx, |mut rx| async move {
            rx.recv()
                .await
                .map(|bytes| (Ok::<_, Infallible>(bytes), rx))
        });
        return (
            StatusCode::OK,
            [("content-type", "application/json")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    if query.contains_key("continue") && guard.expire_next_continue.remove(&plural) {
        return json_response(
            StatusCode::GONE,
            &status(
                410,
                "Expired",
                "The provided continue parameter is too old to display a consistent list result.",
            ),
        );
    }
    let selector = query.get("labelSelector").map(|s| percent_decode(s));
    // Pagination as the API server does it: `limit` items, and a `continue` token for the rest.
    let skip: usize = query
        .get("continue")
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let limit: usize = query
        .get("limit")
        .and_then(|l| l.parse().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    // The store is ordered by plural first: a list reads its own kind's range only.
    let first = (plural.clone(), String::new(), String::new());
    let matching: Vec<&Value> = guard
        .objects
        .range(first..)
        .take_while(|(key, _)| key.0 == plural)
        .filter(|(key, _)| in_scope(key))
        .map(|(_, obj)| obj)
        .filter(|obj| selector.as_deref().is_none_or(|s| selects(s, obj)))
        .collect();
    let items: Vec<Value> = matching
        .iter()
        .skip(skip)
        .take(limit)
        .map(|obj| (*obj).clone())
        .collect();
    let mut metadata = json!({"resourceVersion": guard.rv.to_string()});
    if skip + items.len() < matching.len() {
        metadata["continue"] = json!((skip + items.len()).to_string());
    }
    json_response(
        StatusCode::OK,
        &json!({"kind": list_kind(&plural), "apiVersion": "v1", "metadata": metadata, "items": items}),
    )
}

/// `key` (exists) and `key=value` requirements, comma-separated: what `audit` and kubectl send.
fn selects(selector: &str, obj: &Value) -> bool {
    let labels = &obj["metadata"]["labels"];
    selector
        .split(',')
        .filter(|r| !r.is_empty())
        .all(|requirement| match requirement.split_once('=') {
            Some((key, value)) => labels[key].as_str() == Some(value),
            None => labels.get(requirement).is_some(),
        })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

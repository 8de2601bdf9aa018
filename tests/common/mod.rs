//! Fixture builders shared by the integration tests: objects as kube-apiserver stores them and
//! AdmissionReview requests as it sends them.
#![allow(dead_code)]

pub mod client;
pub mod fake_apiserver;

use kube_core::DynamicObject;
use kube_core::admission::{AdmissionRequest, AdmissionReview};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use sts_guard::config::Config;
use sts_guard::engine::{Decision, Endpoint, evaluate};
use sts_guard::inventory::StaticInventory;
use sts_guard::inventory::load_objects;
use sts_guard::manifest::{Manifest, SourcePos};
use sts_guard::server::ServerOptions;

/// Polls `check` every `every` until it holds, and fails the test naming `what` when it still
/// does not after `within`: tests wait for a condition, never for a fixed time.
pub async fn eventually<F, Fut>(what: &str, within: Duration, every: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(every).await;
    }
    panic!("timed out waiting for {what}");
}

/// A test server's options: an ephemeral loopback port, the serving pair `write_certs` left in
/// `dir`, and limits that no test reaches unless it sets them (tests override what they test
/// with struct update syntax).
pub fn server_options(dir: &Path) -> ServerOptions {
    ServerOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        admin_addr: None,
        cert_path: dir.join("tls.crt"),
        key_path: dir.join("tls.key"),
        body_limit: 512 * 1024,
        header_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(5),
        idle_timeout: Duration::from_secs(5),
        max_connections: 64,
        max_pending_connections_per_client: 64,
        memory_budget: 48 << 20,
        drain_timeout: Duration::from_secs(2),
        cert_reload_interval: Duration::from_secs(60),
        client_ca: None,
        client_names: Vec::new(),
    }
}

/// The first of an AdmissionResponse's warnings.
pub fn first_warning(response: &Value) -> &str {
    response["warnings"][0].as_str().unwrap()
}

/// A command that failed: its stderr, and the last line of it (the one-line error).
pub fn failure(out: &std::process::Output) -> (String, String) {
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    let last = err.lines().last().unwrap_or_default().to_string();
    (err, last)
}

/// A StatefulSet `default/web` governed by `nginx`, pods labelled `app=nginx`, whose
/// container reports readiness.
pub fn sts(name: &str) -> Obj {
    Obj(json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "serviceName": "nginx",
            "replicas": 3,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27",
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}}}]}
            }
        }
    }))
}

/// A headless Service `default/<name>` selecting `app=nginx`.
pub fn svc(name: &str) -> Obj {
    Obj(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"port": 80}]}
    }))
}

pub fn node(name: &str) -> Obj {
    Obj(json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}}))
}

/// Pod `web-<ordinal>` of StatefulSet `web`, scheduled on `node`.
pub fn sts_pod(ordinal: u32, node: &str) -> Obj {
    Obj(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": format!("web-{ordinal}"),
            "namespace": "default",
            "labels": {
                "app": "nginx",
                "statefulset.kubernetes.io/pod-name": format!("web-{ordinal}"),
                "apps.kubernetes.io/pod-index": ordinal.to_string()
            },
            "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web",
                "uid": "5d1b3b5e-0000-4000-8000-000000000001", "controller": true,
                "blockOwnerDeletion": true
            }]
        },
        "spec": {
            "hostname": format!("web-{ordinal}"),
            "subdomain": "nginx",
            "nodeName": node,
            "containers": [{"name": "nginx", "image": "nginx:1.27"}]
        },
        "status": {"phase": "Running"}
    }))
}

#[derive(Clone, Debug)]
pub struct Obj(pub Value);

impl Obj {
    /// Sets a value at a dot path, creating maps on the way.
    pub fn set(mut self, path: &str, value: Value) -> Self {
        let mut cur = &mut self.0;
        let parts: Vec<&str> = path.split('.').collect();
        for part in &parts[..parts.len() - 1] {
            if !cur.get(*part).is_some_and(Value::is_object) {
                cur[*part] = json!({});
            }
            cur = cur.get_mut(*part).unwrap();
        }
        cur[parts[parts.len() - 1]] = value;
        self
    }

    pub fn remove(mut self, path: &str) -> Self {
        let (parent, last) = path.rsplit_once('.').unwrap_or(("", path));
        let mut cur = &mut self.0;
        if !parent.is_empty() {
            for part in parent.split('.') {
                cur = cur.get_mut(part).unwrap();
            }
        }
        cur.as_object_mut().unwrap().remove(last);
        self
    }

    pub fn value(&self) -> Value {
        self.0.clone()
    }
}

/// An inventory holding `objects`, built the way `check` and `--manifests` build it.
pub fn inventory(objects: &[Obj]) -> StaticInventory {
    let manifests = objects
        .iter()
        .enumerate()
        .map(|(i, o)| Manifest {
            pos: SourcePos {
                file: "fixture".into(),
                document: i + 1,
                line: 1,
            },
            value: o.value(),
        })
        .collect();
    load_objects(manifests, "default")
        .map_err(|e| format!("{e:?}"))
        .unwrap()
        .1
}

/// An `admission.k8s.io/v1` AdmissionReview as kube-apiserver sends it.
pub fn review_json(
    operation: &str,
    object: Option<&Obj>,
    old: Option<&Obj>,
    user: &str,
    groups: &[&str],
    options: Value,
) -> Value {
    let subject = object.or(old).expect("object or oldObject");
    let api_version = subject.0["apiVersion"].as_str().unwrap();
    let kind = subject.0["kind"].as_str().unwrap();
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let resource = format!("{}s", kind.to_lowercase());
    json!({
        "kind": "AdmissionReview",
        "apiVersion": "admission.k8s.io/v1",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": group, "version": version, "kind": kind},
            "resource": {"group": group, "version": version, "resource": resource},
            "requestKind": {"group": group, "version": version, "kind": kind},
            "requestResource": {"group": group, "version": version, "resource": resource},
            "name": subject.0["metadata"]["name"],
            "namespace": subject.0["metadata"]["namespace"].as_str().unwrap_or("default"),
            "operation": operation,
            "userInfo": {"username": user, "uid": "u-1", "groups": groups},
            "object": object.map(Obj::value),
            "oldObject": old.map(Obj::value),
            "dryRun": false,
            "options": options
        }
    })
}

pub fn parse_request(review: &Value) -> AdmissionRequest<DynamicObject> {
    let review: AdmissionReview<DynamicObject> = serde_json::from_value(review.clone()).unwrap();
    review.try_into().unwrap()
}

/// Evaluates a request as an admin user.
pub fn decide(
    endpoint: Endpoint,
    operation: &str,
    object: Option<&Obj>,
    old: Option<&Obj>,
    inv: &StaticInventory,
    config: &Config,
) -> Decision {
    let options = match operation {
        "CREATE" => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
        "UPDATE" => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
        _ => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
    };
    let review = review_json(
        operation,
        object,
        old,
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
        options,
    );
    evaluate(&parse_request(&review), inv, config, endpoint)
}

/// A path under the project's own fixtures (`tests/fixtures/`, written for sts-guard; see
/// `tests/fixtures/README.md`): what the default suites read, so that a clone tests itself.
pub fn fixture(path: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path)
}

/// A path under the third-party material beside the checkout (`../shared/`: the corpus of
/// manifests and captured requests, the side-by-side kit's bodies). Tests that read it are
/// `#[ignore]`d with the reason "third-party suite" and `.ci/run` runs them with `--ignored`
/// (failing when ../shared is missing), so `cargo test` alone needs nothing beside the checkout.
pub fn shared(path: &str) -> std::path::PathBuf {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared")
        .join(path);
    assert!(
        path.exists(),
        "{} is missing: the third-party suites need ../shared beside the checkout",
        path.display()
    );
    path
}

/// Every `.json` AdmissionReview in `dir` by file name, in name order, but those whose name
/// starts with `except` (a body directory's Services manifest); a bare AdmissionRequest is
/// wrapped in the envelope kube-apiserver sends it in.
pub fn reviews_in(dir: &std::path::Path, except: Option<&str>) -> Vec<(String, Value)> {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut reviews: Vec<(String, Value)> = entries
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "json"))
        .filter(|path| {
            let name = path.file_name().unwrap().to_string_lossy();
            except.is_none_or(|prefix| !name.starts_with(prefix))
        })
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let value: Value =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, wrap_request(value))
        })
        .collect();
    reviews.sort_by(|a, b| a.0.cmp(&b.0));
    reviews
}

/// A bare AdmissionRequest in its AdmissionReview envelope (a review is returned as it is).
pub fn wrap_request(value: Value) -> Value {
    if value.get("request").is_some() {
        value
    } else {
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": value})
    }
}

//! Cluster mode against an in-test API server at the HTTP level: the real kube-rs client and
//! watchers, list/watch with resourceVersions and bookmarks, 410 Gone, live GETs.

mod common;

use common::client::{Proto, request, write_certs};
use common::fake_apiserver::FakeApi;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use sts_guard::config::Config;
use sts_guard::engine::{Decision, Endpoint, Evaluator};
use sts_guard::inventory::{ClusterInventory, Inventory};
use sts_guard::rules::RuleId;
use sts_guard::server::metrics::Metrics;
use sts_guard::server::{self, ServerOptions};

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let (within, every) = (Duration::from_secs(20), Duration::from_millis(20));
    common::eventually(what, within, every, || std::future::ready(check())).await;
}

async fn synced_inventory(fake: &FakeApi, namespaces: &[String]) -> Arc<ClusterInventory> {
    let inv = Arc::new(ClusterInventory::start(
        fake.client(),
        namespaces,
        Duration::from_millis(800),
    ));
    let probe = inv.clone();
    eventually("the first list of every kind", move || probe.synced()).await;
    inv
}

fn seed(fake: &FakeApi) {
    fake.apply(svc("nginx").value());
    fake.apply(sts("web").value());
    fake.apply(node("node-a").value());
}

async fn decide(inv: &ClusterInventory, review: serde_json::Value, config: &Config) -> Decision {
    let request = parse_request(&review);
    inv.decide(&request, config, Endpoint::Validate).await
}

/// The decision on creating StatefulSet `db` with `spec.serviceName: service`.
async fn create_db_governed_by(inv: &ClusterInventory, service: &str) -> Decision {
    let db = sts("db").set("spec.serviceName", json!(service));
    decide(inv, create(&db), &Config::default()).await
}

/// An admin's DELETE of Service `name`.
fn delete_service(name: &str) -> serde_json::Value {
    let options = json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"});
    review_json("DELETE", None, Some(&svc(name)), "admin", &[], options)
}

fn create(obj: &Obj) -> serde_json::Value {
    review_json(
        "CREATE",
        Some(obj),
        None,
        "kubernetes-admin",
        &["system:masters"],
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
    )
}

/// A fake API server holding the seed objects, and an inventory synced with it.
async fn seeded_and_synced() -> (FakeApi, Arc<ClusterInventory>) {
    let fake = FakeApi::start().await;
    seed(&fake);
    let inv = synced_inventory(&fake, &[]).await;
    (fake, inv)
}

fn live_gets(fake: &FakeApi) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| !r.contains("watch=") && !r.contains("limit="))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_come_from_the_cache_when_it_has_the_answer() {
    let (fake, inv) = seeded_and_synced().await;
    assert_eq!(inv.sizes(), (1, 1, 1));
    fake.clear_requests();
    let d = decide(&inv, create(&sts("db")), &Config::default()).await;
    assert!(d.allowed(), "{}", d.denial_message());
    let d = decide(
        &inv,
        create(&svc("nginx").set("spec.clusterIP", json!("10.0.0.1"))),
        &Config::default(),
    )
    .await;
    assert!(!d.allowed());
    assert_eq!(
        d.denials().next().unwrap().rule,
        RuleId::SvcGoverningHeadless
    );
    // The allow needed no API call; the denial was confirmed with one live LIST.
    let live = live_gets(&fake);
    assert_eq!(live.len(), 1, "{live:?}");
    assert!(
        live[0].starts_with("GET /apis/apps/v1/namespaces/default/statefulsets"),
        "{live:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_miss_is_confirmed_live_before_denying() {
    let (fake, inv) = seeded_and_synced().await;
    // Created a moment ago: the API server has it, the watch has not delivered it yet.
    fake.apply_silently(svc("fresh").value());
    fake.clear_requests();
    let d = create_db_governed_by(&inv, "fresh").await;
    assert!(d.allowed(), "{}", d.denial_message());
    assert!(
        live_gets(&fake)
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/default/services/fresh"))
    );
    assert!(
        inv.service("default", "fresh").unwrap().is_none(),
        "the cache itself was not touched"
    );

    // Really missing: the live GET answers 404 and the denial stands.
    let d = create_db_governed_by(&inv, "nope").await;
    assert!(!d.allowed());
    assert_eq!(d.denials().next().unwrap().rule, RuleId::StsServiceExists);

    // A StatefulSet deleted a moment ago no longer blocks deleting its Service.
    fake.delete_silently("StatefulSet", "default", "web");
    let review = delete_service("nginx");
    let d = decide(&inv, review, &Config::default()).await;
    assert!(d.allowed(), "{}", d.denial_message());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_a_watch_is_failing_its_cache_is_confirmed_live() {
    let fake = FakeApi::start().await;
    fake.apply(svc("nginx").value());
    fake.apply(node("node-a").value());
    let inv = synced_inventory(&fake, &[]).await;
    let delete_nginx = delete_service("nginx");
    // Healthy watches: the cache knows no StatefulSet governed by nginx, nothing is asked live.
    fake.clear_requests();
    assert!(
        decide(&inv, delete_nginx.clone(), &Config::default())
            .await
            .allowed()
    );
    assert_eq!(live_gets(&fake), Vec::<String>::new());

    // The watches fail (as while kube-apiserver restarts); meanwhile a StatefulSet governed by
    // nginx is created, which the failed watches cannot have seen.
    fake.fail_watches(true);
    let probe = inv.clone();
    eventually("the watches to fail", move || {
        probe
            .stats
            .watch_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 3
    })
    .await;
    fake.apply_silently(sts("web").value());
    assert!(
        inv.statefulsets_governed_by("default", "nginx")
            .unwrap()
            .is_empty(),
        "the cache has not seen it"
    );
    let d = decide(&inv, delete_nginx, &Config::default()).await;
    assert!(!d.allowed(), "a failing watch's cache decided alone");
    assert_eq!(d.denials().next().unwrap().rule, RuleId::SvcGoverningDelete);
    assert!(
        live_gets(&fake)
            .iter()
            .any(|r| r.contains("/namespaces/default/statefulsets")),
        "{:?}",
        live_gets(&fake)
    );

    // Once the watches deliver again, the cache decides on its own again.
    fake.fail_watches(false);
    fake.apply(svc("later").value());
    let probe = inv.clone();
    eventually("the resumed Service watch", move || {
        probe.service("default", "later").unwrap().is_some()
    })
    .await;
    fake.clear_requests();
    let d = create_db_governed_by(&inv, "later").await;
    assert!(d.allowed(), "{}", d.denial_message());
    assert_eq!(live_gets(&fake), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_missing_from_the_cache_is_confirmed_before_a_force_delete_passes() {
    let (fake, inv) = seeded_and_synced().await;
    fake.apply_silently(node("node-new").value());
    let mut review = review_json(
        "DELETE",
        None,
        Some(&sts_pod(1, "node-new")),
        "admin",
        &[],
        json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1", "gracePeriodSeconds": 0}),
    );
    let d = decide(&inv, review.clone(), &Config::default()).await;
    assert!(!d.allowed(), "the Node exists: the force delete is unsafe");
    assert_eq!(d.denials().next().unwrap().rule, RuleId::PodForceDelete);
    review["request"]["oldObject"]["spec"]["nodeName"] = json!("node-gone");
    assert!(decide(&inv, review, &Config::default()).await.allowed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_api_server_follows_on_lookup_error() {
    let (fake, inv) = seeded_and_synced().await;
    fake.set_down(true);
    let review = create(&sts("db").set("spec.serviceName", json!("elsewhere")));
    let d = decide(&inv, review.clone(), &Config::default()).await;
    assert!(d.allowed());
    let warning = d.warnings().join("\n");
    assert!(
        warning.contains("could not look up Service default/elsewhere")
            && warning.contains("onLookupError: allow"),
        "{warning}"
    );
    let deny = Config::parse("onLookupError: deny", "c").unwrap();
    let d = decide(&inv, review, &deny).await;
    assert!(!d.allowed());
    assert!(
        d.denial_message().contains("denied by onLookupError: deny"),
        "{}",
        d.denial_message()
    );
    // Cached answers still decide while the API server is down.
    assert!(
        decide(&inv, create(&sts("db")), &Config::default())
            .await
            .allowed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_events_update_the_cache_and_a_dropped_watch_resumes() {
    let (fake, inv) = seeded_and_synced().await;
    fake.apply(svc("added").value());
    let probe = inv.clone();
    eventually("ADDED event", move || {
        probe.service("default", "added").unwrap().is_some()
    })
    .await;
    fake.delete("Service", "default", "added");
    let probe = inv.clone();
    eventually("DELETED event", move || {
        probe.service("default", "added").unwrap().is_none()
    })
    .await;
    fake.apply(
        svc("nginx")
            .set("spec.clusterIP", json!("10.1.1.1"))
            .value(),
    );
    let probe = inv.clone();
    eventually("MODIFIED event", move || {
        !probe
            .service("default", "nginx")
            .unwrap()
            .unwrap()
            .is_headless()
    })
    .await;

    fake.drop_watches();
    fake.apply(svc("after-drop").value());
    let probe = inv.clone();
    eventually("the watch to resume", move || {
        probe.service("default", "after-drop").unwrap().is_some()
    })
    .await;
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.contains("watch=true") && r.contains("resourceVersion="))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_forces_a_relist_that_replaces_the_cache() {
    let fake = FakeApi::start().await;
    seed(&fake);
    fake.apply(svc("doomed").value());
    let inv = synced_inventory(&fake, &[]).await;
    assert!(inv.service("default", "doomed").unwrap().is_some());
    // The deletion is lost with the expired watch history; only a relist can notice it.
    fake.delete_silently("Service", "default", "doomed");
    fake.apply_silently(sts("web2").value());
    fake.expire_watches();
    let probe = inv.clone();
    eventually("the relist after 410 Gone", move || {
        probe.service("default", "doomed").unwrap().is_none()
            && probe
                .statefulsets_governed_by("default", "nginx")
                .unwrap()
                .len()
                == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_keeps_the_cached_copy_of_every_unchanged_object() {
    let fake = FakeApi::start().await;
    seed(&fake);
    fake.apply(svc("other").value());
    let inv = synced_inventory(&fake, &[]).await;
    let unchanged = inv.service("default", "nginx").unwrap().unwrap();
    let before = inv.service("default", "other").unwrap().unwrap();
    fake.apply_silently(
        svc("other")
            .set("spec.clusterIP", json!("10.0.0.9"))
            .value(),
    );
    fake.expire_watches();
    let probe = inv.clone();
    eventually("the relist after 410 Gone", move || {
        !probe
            .service("default", "other")
            .unwrap()
            .unwrap()
            .is_headless()
    })
    .await;
    // Unchanged objects cost the relist a pointer, not a second copy of the cache.
    assert!(Arc::ptr_eq(
        &unchanged,
        &inv.service("default", "nginx").unwrap().unwrap()
    ));
    assert!(!Arc::ptr_eq(
        &before,
        &inv.service("default", "other").unwrap().unwrap()
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watches_can_be_restricted_to_namespaces() {
    let fake = FakeApi::start().await;
    seed(&fake);
    fake.apply(
        svc("a-svc")
            .set("metadata.namespace", json!("team-a"))
            .value(),
    );
    let inv = synced_inventory(&fake, &["team-a".to_string()]).await;
    assert!(inv.service("team-a", "a-svc").unwrap().is_some());
    assert!(inv.service("default", "nginx").unwrap().is_none());
    assert!(
        inv.node("node-a").unwrap().is_some(),
        "Nodes are cluster-scoped"
    );
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/namespaces/team-a/services?"))
    );
    assert!(
        !fake
            .requests()
            .iter()
            .any(|r| r.starts_with("GET /api/v1/services?"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_waits_for_the_first_list_and_the_server_decides_from_the_cluster() {
    let fake = FakeApi::start().await;
    seed(&fake);
    fake.set_down(true);
    let inv: Arc<dyn Evaluator> = Arc::new(ClusterInventory::start(
        fake.client(),
        &[],
        Duration::from_millis(800),
    ));
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let options = ServerOptions {
        body_limit: 1 << 20,
        max_connections: 16,
        idle_timeout: Duration::from_secs(120),
        max_pending_connections_per_client: 16,
        cert_reload_interval: Duration::from_secs(10),
        ..common::server_options(dir.path())
    };
    let running = server::start(
        options,
        inv.clone(),
        Arc::new(Config::default()),
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    let addr = running.local_addr;
    let (status, body) = request(addr, &ca, Proto::Http2, "GET", "/readyz", vec![]).await;
    assert_eq!(status, 503);
    assert_eq!(&body[..], b"not ready: inventory not synced\n");
    fake.set_down(false);
    let probe = inv.clone();
    eventually("sync after the API server comes back", move || {
        probe.synced()
    })
    .await;
    let (status, _) = request(addr, &ca, Proto::Http1, "GET", "/readyz", vec![]).await;
    assert_eq!(status, 200);
    let (status, body) = request(
        addr,
        &ca,
        Proto::Http2,
        "POST",
        "/validate",
        serde_json::to_vec(&create(&sts("db").set("spec.serviceName", json!("nope")))).unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false);
    running.shutdown().await;
}

#[test]
fn serve_without_manifests_or_credentials_explains_itself() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .current_dir(dir.path())
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("KUBERNETES_SERVICE_PORT")
        .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
        .env("HOME", dir.path())
        .output()
        .unwrap();
    let (err, last) = common::failure(&out);
    assert!(
        last.starts_with("sts-guard serve: no cluster credentials"),
        "{err}"
    );
    assert!(last.contains("--manifests"), "{err}");
}

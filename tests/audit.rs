//! `sts-guard audit` against the in-test API server: the real kube-rs client, paged lists
//! (`limit`/`continue`, an expired continue token), label selectors, 403s; the library entry
//! point and the real binary with a kubeconfig.

mod common;

use common::fake_apiserver::FakeApi;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Output;
use sts_guard::audit::{self, AuditOptions, Silent};
use sts_guard::config::Config;
use sts_guard::model::OUT_OF_SERVICE_TAINT;
use sts_guard::report::AuditReport;

const PAST: &str = "2024-01-01T00:00:00Z";
const FUTURE: &str = "2999-01-01T00:00:00Z";

fn in_ns(obj: Obj, namespace: &str) -> Obj {
    obj.set("metadata.namespace", json!(namespace))
}

/// Pod `<sts>-<ordinal>` of StatefulSet `sts` in `namespace`, with `labels` besides the
/// controller's pod-name label.
fn pod(namespace: &str, sts: &str, ordinal: u32, node: &str, labels: Value) -> Obj {
    let name = format!("{sts}-{ordinal}");
    let mut all = labels;
    all["statefulset.kubernetes.io/pod-name"] = json!(name);
    in_ns(sts_pod(ordinal, node), namespace)
        .set("metadata.name", json!(name))
        .set("metadata.labels", all)
        .set(
            "metadata.ownerReferences",
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": sts,
                    "uid": "5d1b3b5e-0000-4000-8000-000000000002", "controller": true}]),
        )
}

fn terminating(pod: Obj, due: &str) -> Obj {
    pod.set("metadata.deletionTimestamp", json!(due))
        .set("metadata.deletionGracePeriodSeconds", json!(30))
}

/// A cluster with one of each finding, clean objects around them, and enough Services for
/// several pages.
fn seed(fake: &FakeApi) {
    fake.apply(node("node-a").value());
    fake.apply(
        node("node-down")
            .set(
                "spec.taints",
                json!([{"key": OUT_OF_SERVICE_TAINT, "value": "nodeshutdown", "effect": "NoExecute"}]),
            )
            .value(),
    );
    // default: a healthy StatefulSet whose web-2 is stuck on a Node that is gone, web-1 is
    // Terminating within its grace period, web-3 is Terminating on a live Node.
    fake.apply(svc("nginx").value());
    fake.apply(sts("web").set("spec.replicas", json!(4)).value());
    let app = json!({"app": "nginx"});
    fake.apply(pod("default", "web", 0, "node-a", app.clone()).value());
    fake.apply(terminating(pod("default", "web", 1, "node-gone", app.clone()), FUTURE).value());
    fake.apply(terminating(pod("default", "web", 2, "node-gone", app.clone()), PAST).value());
    fake.apply(terminating(pod("default", "web", 3, "node-a", app.clone()), PAST).value());
    // shop: a typo in serviceName, and a governing Service that is not headless.
    fake.apply(
        in_ns(
            svc("cart").set("spec.selector", json!({"app": "cart"})),
            "shop",
        )
        .value(),
    );
    fake.apply(
        in_ns(sts("cart"), "shop")
            .set("spec.serviceName", json!("cart-svc"))
            .set("spec.selector.matchLabels", json!({"app": "cart"}))
            .set("spec.template.metadata.labels", json!({"app": "cart"}))
            .value(),
    );
    fake.apply(
        in_ns(svc("db"), "shop")
            .set("spec.clusterIP", json!("10.0.0.7"))
            .set("spec.selector", json!({"app": "db"}))
            .value(),
    );
    fake.apply(
        in_ns(sts("db"), "shop")
            .set("spec.serviceName", json!("db"))
            .set("spec.template.metadata.labels", json!({"app": "db"}))
            .value(),
    );
    fake.apply(
        pod("shop", "db", 0, "node-down", json!({"app": "db"}))
            .set("metadata.deletionTimestamp", json!(PAST))
            .value(),
    );
    // legacy: the template matches the Service, but the OnDelete pods predate that template.
    fake.apply(
        in_ns(svc("old"), "legacy")
            .set("spec.selector", json!({"app": "old", "tier": "v2"}))
            .value(),
    );
    fake.apply(
        in_ns(sts("old"), "legacy")
            .set("spec.serviceName", json!("old"))
            .set("spec.replicas", json!(2))
            .set("spec.updateStrategy", json!({"type": "OnDelete"}))
            .set(
                "spec.template.metadata.labels",
                json!({"app": "old", "tier": "v2"}),
            )
            .value(),
    );
    for ordinal in 0..2 {
        fake.apply(
            pod(
                "legacy",
                "old",
                ordinal,
                "node-a",
                json!({"app": "old", "tier": "v1"}),
            )
            .value(),
        );
    }
    // kube-system is excluded by default: broken, and skipped.
    fake.apply(
        in_ns(sts("broken"), "kube-system")
            .set("spec.serviceName", json!("absent"))
            .value(),
    );
    // Enough clean Services for several pages.
    for i in 0..250 {
        fake.apply(
            in_ns(svc(&format!("svc-{i:03}")), "bulk")
                .set(
                    "spec.clusterIP",
                    json!(format!("10.1.{}.{}", i / 200, i % 200)),
                )
                .value(),
        );
    }
}

/// rule ids by "Kind namespace/name".
fn findings(report: &AuditReport) -> BTreeMap<String, Vec<String>> {
    report
        .report
        .objects
        .iter()
        .map(|o| {
            (
                format!("{} {}/{}", o.kind, o.namespace, o.name),
                o.decision
                    .violations
                    .iter()
                    .map(|v| format!("{}:{}", v.rule, v.action.as_str()))
                    .collect(),
            )
        })
        .collect()
}

async fn audit_of(fake: &FakeApi, options: &AuditOptions) -> AuditReport {
    audit::run(fake.client(), options, &Config::default(), &mut Silent)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
}

fn paged(page_size: u32) -> AuditOptions {
    AuditOptions {
        page_size,
        retry_delay: std::time::Duration::from_millis(1),
        ..AuditOptions::default()
    }
}

/// The pod template rules run on what exists as on what is created: a StatefulSet whose
/// pods are deleted at once (grace 0), and one whose ordered start waits for nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_zero_grace_and_ordered_start_without_readiness() {
    let fake = FakeApi::start().await;
    fake.apply(svc("nginx").value());
    fake.apply(
        sts("fast")
            .set("spec.template.spec.terminationGracePeriodSeconds", json!(0))
            .value(),
    );
    fake.apply(
        sts("blind")
            .set(
                "spec.template.spec.containers",
                json!([{"name": "app", "image": "app:1"}]),
            )
            .value(),
    );
    fake.apply(sts("web").value());
    let report = audit_of(&fake, &paged(100)).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("StatefulSet default/blind", vec!["sts-ready-ordering:warn"]),
        ("StatefulSet default/fast", vec!["sts-zero-grace:warn"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(findings(&report), expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_every_rule_breach_and_the_live_only_findings() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let report = audit_of(&fake, &paged(100)).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("Pod default/web-2", vec!["pod-stuck-terminating:warn"]),
        ("Pod shop/db-0", vec!["pod-stuck-terminating:warn"]),
        (
            "StatefulSet legacy/old",
            vec!["sts-service-selects-live-pods:deny"],
        ),
        ("StatefulSet shop/cart", vec!["sts-service-exists:deny"]),
        // The twin svc-governing-headless on Service shop/db is reported once, here.
        ("StatefulSet shop/db", vec!["sts-service-headless:deny"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(findings(&report), expected);

    let message = |key: &str| {
        report
            .report
            .objects
            .iter()
            .find(|o| format!("{} {}/{}", o.kind, o.namespace, o.name) == key)
            .unwrap()
            .decision
            .violations[0]
            .to_string()
    };
    assert!(
        message("StatefulSet shop/cart").contains("did you mean serviceName: cart?"),
        "{}",
        message("StatefulSet shop/cart")
    );
    assert!(
        message("StatefulSet legacy/old").contains(
            "selects app=old,tier=v2, which none of its 2 pods carries: old-0 (app=old,statefulset.kubernetes.io/pod-name=old-0,tier=v1)"
        ),
        "{}",
        message("StatefulSet legacy/old")
    );
    assert!(
        message("Pod default/web-2").contains(&format!(
            "grace period ended at {PAST} and its Node node-gone no longer exists"
        )),
        "{}",
        message("Pod default/web-2")
    );
    assert!(message("Pod shop/db-0").contains(OUT_OF_SERVICE_TAINT));

    assert_eq!(report.report.denied(), 3);
    assert_eq!(report.report.unlisted_skipped, 1, "kube-system/broken");
    // 5 StatefulSets + 254 Services + 7 pods, less the 5 listed and the 1 skipped.
    assert_eq!(report.report.unlisted_ok, 5 + 254 + 7 - 5 - 1);
    assert_eq!(
        (
            report.listed.nodes,
            report.listed.services,
            report.listed.statefulsets,
            report.listed.pods
        ),
        (2, 254, 5, 7)
    );

    // Every list was paged: Services took three pages, each asking for at most 100 objects;
    // pods were selected by the controller's label.
    let requests = fake.requests();
    let services: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/services?"))
        .collect();
    assert_eq!(services.len(), 3, "{services:?}");
    assert!(
        services.iter().all(|r| r.contains("limit=100")),
        "{services:?}"
    );
    assert!(services[1].contains("continue=100") && services[2].contains("continue=200"));
    assert!(
        requests.iter().any(|r| r.starts_with("GET /api/v1/pods?")
            && r.contains("labelSelector=statefulset.kubernetes.io%2Fpod-name")),
        "{requests:?}"
    );
    assert!(
        requests.iter().all(|r| !r.contains("watch")),
        "{requests:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_continue_token_lists_the_kind_again_without_counting_twice() {
    let fake = FakeApi::start().await;
    seed(&fake);
    // Pages of 4: every kind but Nodes takes more than one page.
    let reference = audit_of(&fake, &paged(4)).await;
    for plural in ["services", "statefulsets", "pods"] {
        fake.expire_next_continue(plural);
    }
    fake.clear_requests();
    let again = audit_of(&fake, &paged(4)).await;
    assert_eq!(findings(&again), findings(&reference));
    assert_eq!(again.listed, reference.listed);
    assert_eq!(again.report.unlisted_ok, reference.report.unlisted_ok);
    let requests = fake.requests();
    let services = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/services?"))
        .count();
    // The first page, the expired second, then all 64 pages again.
    assert_eq!(services, 1 + 1 + 64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn namespaces_restrict_every_namespaced_list() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let options = AuditOptions {
        namespaces: vec!["shop".into(), "legacy".into()],
        ..paged(100)
    };
    let report = audit_of(&fake, &options).await;
    let keys: Vec<String> = findings(&report).into_keys().collect();
    assert_eq!(
        keys,
        [
            "Pod shop/db-0",
            "StatefulSet legacy/old",
            "StatefulSet shop/cart",
            "StatefulSet shop/db"
        ]
    );
    assert_eq!(report.listed.services, 3);
    let requests = fake.requests();
    for plural in ["services", "pods"] {
        assert!(
            !requests
                .iter()
                .any(|r| r.starts_with(&format!("GET /api/v1/{plural}?"))),
            "{requests:?}"
        );
    }
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("GET /apis/apps/v1/namespaces/legacy/statefulsets?"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_actions_apply_to_the_live_rules() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(
        &path,
        "rules:\n  pod-stuck-terminating: deny\n  sts-service-selects-live-pods: off\nexcludedNamespaces: [kube-system, shop]\n",
    )
    .unwrap();
    let config = Config::load(&path).unwrap();
    let report = audit::run(fake.client(), &paged(100), &config, &mut Silent)
        .await
        .unwrap();
    let found = findings(&report);
    assert_eq!(
        found.keys().collect::<Vec<_>>(),
        ["Pod default/web-2"],
        "{found:?}"
    );
    assert_eq!(found["Pod default/web-2"], ["pod-stuck-terminating:deny"]);
    assert_eq!(report.report.denied(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forbidden_and_unreachable_are_one_line_errors() {
    let fake = FakeApi::start().await;
    seed(&fake);
    fake.forbid("pods");
    let err = audit::run(fake.client(), &paged(100), &Config::default(), &mut Silent)
        .await
        .err()
        .expect("an error");
    assert_eq!(err.action, "list pods in all namespaces");
    assert!(
        err.reason.starts_with("forbidden: pods is forbidden: User")
            && err
                .reason
                .contains("sts-guard audit needs get and list on services, nodes, pods"),
        "{err}"
    );
    // 503 is tried again a few times (the client's own retries are for the binary to switch
    // off), then reported.
    fake.set_down(true);
    fake.clear_requests();
    let mut client_config = kube::Config::new(fake.url().parse().unwrap());
    client_config.default_retry = false;
    let client = kube::Client::try_from(client_config).unwrap();
    let err = audit::run(client, &paged(100), &Config::default(), &mut Silent)
        .await
        .err()
        .expect("an error");
    assert_eq!(err.action, "list nodes");
    assert_eq!(
        err.reason,
        "the API server answered 503 ServiceUnavailable: down"
    );
    assert_eq!(fake.requests().len(), 1 + 5);
}

// --- claims and rollouts -----------------------------------------------------------------

/// A time `seconds` before now, as the API server writes timestamps.
fn ago(seconds: i64) -> String {
    let now = k8s_openapi::jiff::Timestamp::now().as_second();
    k8s_openapi::jiff::Timestamp::from_second(now - seconds)
        .unwrap()
        .to_string()
}

fn claim(namespace: &str, name: &str, phase: &str, created: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
        "status": {"phase": phase}})
}

fn revision(namespace: &str, name: &str, created: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": created},
        "data": {"spec": {"template": {}}}, "revision": 2})
}

/// A StatefulSet of `store` with claim templates, `replicas` and `ordinals.start`.
fn stateful(name: &str, replicas: i64, start: i64, templates: &[&str]) -> Obj {
    let templates: Vec<Value> = templates
        .iter()
        .map(|t| json!({"metadata": {"name": t}, "spec": {"accessModes": ["ReadWriteOnce"]}}))
        .collect();
    in_ns(sts(name), "store")
        .set("spec.replicas", json!(replicas))
        .set("spec.ordinals", json!({"start": start}))
        .set("spec.volumeClaimTemplates", json!(templates))
}

fn rolling(obj: Obj, current: &str, update: &str) -> Obj {
    obj.set(
        "status",
        json!({"replicas": 1, "currentRevision": current, "updateRevision": update}),
    )
}

/// Claims kept for ordinals a scale-down left, claims Pending for long and not yet, a rollout
/// stalled and one just begun, next to healthy StatefulSets of each kind.
fn seed_claims_and_rollouts(fake: &FakeApi) {
    fake.apply(in_ns(svc("nginx"), "store").value());
    // db runs ordinals 0 and 1: data-db-2 and logs-db-3 are orphaned; the names that are not
    // an ordinal of a template of db are not its claims.
    fake.apply(stateful("db", 2, 0, &["data", "logs"]).value());
    for name in [
        "data-db-0",
        "data-db-1",
        "logs-db-0",
        "logs-db-1",
        "data-db-2",
        "logs-db-3",
    ] {
        fake.apply(claim("store", name, "Bound", PAST));
    }
    for name in [
        "data-db-x",
        "data-dbx-5",
        "data-db-",
        "data-other-9",
        "data-db-+4",
    ] {
        fake.apply(claim("store", name, "Bound", PAST));
    }
    // cache runs ordinals 5..=7: data-cache-5 has been Pending since long ago, data-cache-6
    // for a minute, data-cache-7 is Bound; none is orphaned.
    fake.apply(stateful("cache", 3, 5, &["data"]).value());
    fake.apply(claim("store", "data-cache-5", "Pending", PAST));
    fake.apply(claim("store", "data-cache-6", "Pending", &ago(60)));
    fake.apply(claim("store", "data-cache-7", "Bound", PAST));
    // A healthy StatefulSet with its one claim.
    fake.apply(stateful("ok", 1, 0, &["data"]).value());
    fake.apply(claim("store", "data-ok-0", "Bound", PAST));
    // Rollouts: stalled since long ago, just begun, finished, and one whose update revision
    // is gone already.
    fake.apply(rolling(stateful("roll", 1, 0, &[]), "roll-1", "roll-2").value());
    fake.apply(revision("store", "roll-2", PAST));
    fake.apply(rolling(stateful("fresh", 1, 0, &[]), "fresh-1", "fresh-2").value());
    fake.apply(revision("store", "fresh-2", &ago(60)));
    fake.apply(rolling(stateful("done", 1, 0, &[]), "done-2", "done-2").value());
    fake.apply(rolling(stateful("gone", 1, 0, &[]), "gone-1", "gone-2").value());
}

const CLAIM_AND_ROLLOUT_RULES: [&str; 3] = [
    "sts-claims-orphaned",
    "sts-claim-pending",
    "sts-rollout-stalled",
];

/// The findings of the claim and rollout rules only, by object.
fn claim_and_rollout_findings(report: &AuditReport) -> BTreeMap<String, Vec<String>> {
    findings(report)
        .into_iter()
        .map(|(key, rules)| {
            let rules: Vec<String> = rules
                .into_iter()
                .filter(|r| CLAIM_AND_ROLLOUT_RULES.iter().any(|id| r.starts_with(id)))
                .collect();
            (key, rules)
        })
        .filter(|(_, rules)| !rules.is_empty())
        .collect()
}

fn violation(report: &AuditReport, key: &str, rule: &str) -> String {
    report
        .report
        .objects
        .iter()
        .find(|o| format!("{} {}/{}", o.kind, o.namespace, o.name) == key)
        .and_then(|o| {
            o.decision
                .violations
                .iter()
                .find(|v| v.rule.as_str() == rule)
        })
        .unwrap_or_else(|| panic!("{key}: no {rule}"))
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_reports_orphaned_and_pending_claims_and_stalled_rollouts() {
    let fake = FakeApi::start().await;
    seed_claims_and_rollouts(&fake);
    let report = audit_of(&fake, &paged(4)).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("StatefulSet store/cache", vec!["sts-claim-pending:warn"]),
        ("StatefulSet store/db", vec!["sts-claims-orphaned:warn"]),
        ("StatefulSet store/roll", vec!["sts-rollout-stalled:warn"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(claim_and_rollout_findings(&report), expected);

    let orphaned = violation(&report, "StatefulSet store/db", "sts-claims-orphaned");
    assert!(
        orphaned.contains(
            "its PersistentVolumeClaims data-db-2 and logs-db-3 belong to ordinals 2 and 3, at or above ordinals.start + replicas = 2"
        ) && orphaned.contains("kubectl delete pvc data-db-2 logs-db-3 -n store"),
        "{orphaned}"
    );
    let pending = violation(&report, "StatefulSet store/cache", "sts-claim-pending");
    assert!(
        pending.contains(&format!(
            "PersistentVolumeClaim data-cache-5 (since {PAST},"
        )) && pending.contains("longer than audit.claimPendingAfter (15m)")
            && !pending.contains("data-cache-6"),
        "{pending}"
    );
    let stalled = violation(&report, "StatefulSet store/roll", "sts-rollout-stalled");
    assert!(
        stalled.contains("status.updateRevision roll-2 is not status.currentRevision roll-1")
            && stalled.contains(&format!("after the update revision was created ({PAST})"))
            && stalled.contains("longer than audit.rolloutStalledAfter (1h)")
            && stalled.contains("An OrderedReady rollout waits for each updated pod"),
        "{stalled}"
    );

    // Claims were listed page by page; only the revisions of rollouts under way were read.
    assert_eq!(report.listed.claims, 15);
    assert_eq!(report.listed.revisions, 2);
    let requests = fake.requests();
    let claim_pages = requests
        .iter()
        .filter(|r| r.starts_with("GET /api/v1/persistentvolumeclaims?") && r.contains("limit=4"))
        .count();
    assert_eq!(claim_pages, 4, "{requests:?}");
    let revisions: Vec<&String> = requests
        .iter()
        .filter(|r| r.contains("/controllerrevisions"))
        .collect();
    assert_eq!(
        revisions,
        [
            "GET /apis/apps/v1/namespaces/store/controllerrevisions/fresh-2",
            "GET /apis/apps/v1/namespaces/store/controllerrevisions/gone-2",
            "GET /apis/apps/v1/namespaces/store/controllerrevisions/roll-2",
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_claim_and_rollout_thresholds_and_actions_come_from_config() {
    let fake = FakeApi::start().await;
    seed_claims_and_rollouts(&fake);
    // Thresholds of 0s: data-cache-6 is Pending too long, and fresh's rollout stalled.
    let config = sts_guard::config::Config::parse(
        "audit:\n  claimPendingAfter: 0s\n  rolloutStalledAfter: 0s\nrules:\n  sts-claims-orphaned: deny\n",
        "test.yaml",
    )
    .unwrap();
    let report = audit::run(fake.client(), &paged(100), &config, &mut Silent)
        .await
        .unwrap();
    let found = claim_and_rollout_findings(&report);
    assert_eq!(found["StatefulSet store/db"], ["sts-claims-orphaned:deny"]);
    assert_eq!(
        found["StatefulSet store/fresh"],
        ["sts-rollout-stalled:warn"]
    );
    let pending = violation(&report, "StatefulSet store/cache", "sts-claim-pending");
    assert!(
        pending.contains("PersistentVolumeClaims data-cache-5 (since")
            && pending.contains("and data-cache-6 (since"),
        "{pending}"
    );
    // A finished rollout, or one whose revision is gone, is never reported.
    assert!(!found.contains_key("StatefulSet store/done"), "{found:?}");
    assert!(!found.contains_key("StatefulSet store/gone"), "{found:?}");

    // With the rules off, neither claims nor revisions are read.
    let config = sts_guard::config::Config::parse(
        "rules:\n  sts-claims-orphaned: off\n  sts-claim-pending: off\n  sts-rollout-stalled: off\n",
        "test.yaml",
    )
    .unwrap();
    fake.clear_requests();
    let report = audit::run(fake.client(), &paged(100), &config, &mut Silent)
        .await
        .unwrap();
    assert!(claim_and_rollout_findings(&report).is_empty());
    let requests = fake.requests();
    assert!(
        requests
            .iter()
            .all(|r| !r.contains("persistentvolumeclaims") && !r.contains("controllerrevisions")),
        "{requests:?}"
    );
}

// --- the binary ---------------------------------------------------------------------------

fn kubeconfig(dir: &std::path::Path, server: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": server}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}},
                     {"name": "elsewhere", "context": {"cluster": "fake", "user": "fake", "namespace": "x"}}],
        "current-context": "fake",
    });
    std::fs::write(&path, config.to_string()).unwrap();
    path
}

async fn run_audit(kubeconfig: &std::path::Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .arg("audit")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("STS_GUARD_CONFIG")
        .output()
        .await
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_prints_text_json_and_sarif_with_checks_exit_codes() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &fake.url());

    let out = run_audit(&config, &["--page-size", "100"]).await;
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    assert!(
        stdout.contains(
            "DENY sts-service-exists: StatefulSet shop/cart: spec.serviceName \"cart-svc\""
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("WARN pod-stuck-terminating: Pod default/web-2:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Findings by namespace and rule:\nNAMESPACE  RULE"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|l| l.starts_with("legacy "))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert_eq!(
        row.split_whitespace().collect::<Vec<_>>(),
        ["legacy", "sts-service-selects-live-pods", "1", "0"]
    );
    assert!(
        stdout.ends_with(
            "Read 2 Nodes, 254 Services, 5 StatefulSets, 7 StatefulSet pods and 0 PersistentVolumeClaims (all namespaces).\n\
             265 objects checked, 1 skipped: 3 denied, 2 with warnings.\n"
        ),
        "{stdout}"
    );
    let stderr = text(&out.stderr);
    for kind in ["2 Nodes", "254 Services", "5 StatefulSets", "7 Pods"] {
        assert!(
            stderr.contains(&format!("sts-guard audit: listed {kind}\n")),
            "{stderr}"
        );
    }

    let out = run_audit(&config, &["-o", "json", "-q", "-n", "shop", "-n", "legacy"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["scope"], "namespaces shop, legacy");
    assert_eq!(json["summary"]["denied"], 3);
    assert_eq!(
        json["byNamespace"]["shop"],
        json!({"sts-service-exists": {"deny": 1, "warn": 0},
               "sts-service-headless": {"deny": 1, "warn": 0},
               "pod-stuck-terminating": {"deny": 0, "warn": 1}})
    );
    let cart = json["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "cart")
        .unwrap();
    assert_eq!(cart["verdict"], "deny");
    assert!(cart.get("file").is_none(), "{cart:#}");

    let out = run_audit(&config, &["-o", "sarif", "-q", "--context", "fake"]).await;
    assert_eq!(out.status.code(), Some(1));
    let sarif: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for result in results {
        let location = &result["locations"][0];
        assert!(location.get("physicalLocation").is_none(), "{result:#}");
        assert!(location["logicalLocations"][0]["fullyQualifiedName"].is_string());
    }

    // Only the clean namespace: exit 0.
    let out = run_audit(&config, &["-q", "-n", "bulk"]).await;
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stdout));
    assert!(text(&out.stdout).starts_with("No findings.\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_fails_with_one_line_and_exit_2_when_the_cluster_cannot_be_read() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let dir = tempfile::tempdir().unwrap();
    let one_line_error = |out: &Output, starts: &str, contains: &str| {
        assert_eq!(out.status.code(), Some(2), "{}", text(&out.stdout));
        assert!(out.stdout.is_empty());
        let stderr = text(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.contains(" listed ")).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(
            lines[0].starts_with(starts) && lines[0].contains(contains),
            "{stderr}"
        );
    };

    fake.forbid("pods");
    let config = kubeconfig(dir.path(), &fake.url());
    let out = run_audit(&config, &[]).await;
    one_line_error(
        &out,
        "sts-guard audit: cannot list pods in all namespaces: forbidden:",
        "(the chart's ClusterRole grants them) (API server http://127.0.0.1:",
    );

    // Nothing listens on the port any more.
    let closed = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let config = kubeconfig(dir.path(), &format!("http://{closed}"));
    let out = run_audit(&config, &["--request-timeout", "5"]).await;
    one_line_error(
        &out,
        "sts-guard audit: cannot list nodes: the API server could not be reached (",
        "",
    );

    // No credentials at all.
    let out = run_audit(&dir.path().join("missing"), &[]).await;
    one_line_error(
        &out,
        "sts-guard audit: no cluster credentials (",
        "set KUBECONFIG",
    );
    let out = run_audit(&config, &["--context", "nope"]).await;
    one_line_error(
        &out,
        "sts-guard audit: cannot use kubeconfig context \"nope\"",
        "",
    );

    // A bad config file is refused before the cluster is read.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "rules:\n  pod-stuck-terminating: block\n").unwrap();
    let out = run_audit(&config, &["--config", bad.to_str().unwrap()]).await;
    one_line_error(
        &out,
        "sts-guard audit: invalid config:",
        "pod-stuck-terminating",
    );
}

// --- policy reports -----------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_reports_have_a_report_per_namespace_with_a_result_per_violation() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &fake.url());
    for (format, api_version, kind, top_source) in [
        (
            "policyreport",
            "wgpolicyk8s.io/v1alpha2",
            "PolicyReport",
            false,
        ),
        ("openreports", "openreports.io/v1alpha1", "Report", true),
    ] {
        let out = run_audit(&config, &["-q", "-o", format]).await;
        assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
        let list: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(
            (list["apiVersion"].as_str(), list["kind"].as_str()),
            (Some("v1"), Some("List"))
        );
        let items = list["items"].as_array().unwrap();
        // Every audited namespace has one, the clean `bulk` too; kube-system is excluded.
        let namespaces: Vec<&str> = items
            .iter()
            .map(|r| r["metadata"]["namespace"].as_str().unwrap())
            .collect();
        assert_eq!(
            namespaces,
            ["bulk", "default", "legacy", "shop"],
            "{format}"
        );
        for report in items {
            assert_eq!(report["apiVersion"], api_version);
            assert_eq!(report["kind"], kind);
            assert_eq!(report["metadata"]["name"], "sts-guard");
            assert_eq!(
                report["metadata"]["labels"]["app.kubernetes.io/managed-by"],
                "sts-guard"
            );
            assert_eq!(report.get("source").is_some(), top_source, "{format}");
        }
        let shop = &items[3];
        assert_eq!(
            shop["summary"],
            json!({"pass": 0, "fail": 2, "warn": 1, "error": 0, "skip": 0})
        );
        let results = shop["results"].as_array().unwrap();
        let cart = results
            .iter()
            .find(|r| r["policy"] == "sts-service-exists")
            .unwrap();
        assert_eq!(cart["source"], "sts-guard");
        assert_eq!(cart["result"], "fail");
        assert_eq!(cart["severity"], "high");
        assert_eq!(cart["scored"], true);
        assert_eq!(
            cart["resources"],
            json!([{"apiVersion": "apps/v1", "kind": "StatefulSet", "namespace": "shop", "name": "cart"}])
        );
        assert_eq!(cart["properties"]["field"], "spec.serviceName");
        assert!(
            cart["message"]
                .as_str()
                .unwrap()
                .contains("did you mean serviceName: cart?")
        );
        assert!(cart["timestamp"]["seconds"].as_i64().unwrap() > 1_700_000_000);
        let stuck = results
            .iter()
            .find(|r| r["policy"] == "pod-stuck-terminating")
            .unwrap();
        assert_eq!(
            (stuck["result"].as_str(), stuck["severity"].as_str()),
            (Some("warn"), Some("medium"))
        );
        assert_eq!(stuck["resources"][0]["apiVersion"], "v1");
        assert_eq!(items[0]["results"], json!([]), "bulk is clean");
    }
}

// --- the background audit of serve --------------------------------------------------------

struct Serve {
    child: tokio::process::Child,
    addr: std::net::SocketAddr,
    ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Serve {
    async fn start(fake: &FakeApi, args: &[&str]) -> Serve {
        let dir = tempfile::tempdir().unwrap();
        let ca = common::client::write_certs(dir.path());
        let config = kubeconfig(dir.path(), &fake.url());
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
            .arg("serve")
            .arg(format!("--addr={addr}"))
            .arg(format!(
                "--tls-cert={}",
                dir.path().join("tls.crt").display()
            ))
            .arg(format!(
                "--tls-key={}",
                dir.path().join("tls.key").display()
            ))
            .args(args)
            .env("KUBECONFIG", &config)
            .env("RUST_LOG", "warn")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env_remove("STS_GUARD_CONFIG")
            .env_remove("STS_GUARD_AUDIT_INTERVAL")
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        Serve {
            child,
            addr,
            ca,
            _dir: dir,
        }
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let (status, body) = common::client::request_result(
            self.addr,
            &self.ca,
            common::client::Proto::Http1,
            "GET",
            path,
            Vec::new(),
        )
        .await
        .ok()?;
        Some((status.as_u16(), String::from_utf8_lossy(&body).into_owned()))
    }

    /// `/audit` once it answers 200, as JSON.
    async fn audit(&self) -> Value {
        until("a background audit on /audit", || async {
            match self.get("/audit").await {
                Some((200, body)) => Some(serde_json::from_str(&body).unwrap()),
                _ => None,
            }
        })
        .await
    }
}

/// Polls `attempt` until it gives a value, for up to 30 s.
async fn until<T, F, Fut>(what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `sts_guard_audit_findings{rule,action}` from a metrics page, non-zero ones only.
fn audit_gauges(metrics: &str) -> BTreeMap<(String, String), u64> {
    metrics
        .lines()
        .filter_map(|line| line.strip_prefix("sts_guard_audit_findings{"))
        .filter_map(|line| {
            let (labels, value) = line.split_once("} ")?;
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_string())
            };
            let n: u64 = value.trim().parse().ok()?;
            let key = (label("rule")?, label("action")?);
            (n > 0).then_some((key, n))
        })
        .collect()
}

/// The same counts from `byNamespace` of `audit -o json`.
fn by_rule(report: &Value) -> BTreeMap<(String, String), u64> {
    let mut counts = BTreeMap::new();
    for rules in report["byNamespace"].as_object().unwrap().values() {
        for (rule, c) in rules.as_object().unwrap() {
            for action in ["deny", "warn"] {
                let n = c[action].as_u64().unwrap();
                if n > 0 {
                    *counts
                        .entry((rule.clone(), action.to_string()))
                        .or_default() += n;
                }
            }
        }
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_audits_in_the_background_as_the_cli_does_and_keeps_at_it() {
    let fake = FakeApi::start().await;
    seed(&fake);
    seed_claims_and_rollouts(&fake);
    let serve = Serve::start(&fake, &["--audit-interval", "1"]).await;
    let background = serve.audit().await;

    let dir = tempfile::tempdir().unwrap();
    let out = run_audit(&kubeconfig(dir.path(), &fake.url()), &["-q", "-o", "json"]).await;
    let cli: Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in ["objects", "summary", "byNamespace", "listed", "scope"] {
        assert_eq!(background[key], cli[key], "{key}");
    }
    assert_eq!(
        background["listed"]["services"], 255,
        "from the watch cache"
    );

    let (status, metrics) = serve.get("/metrics").await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(audit_gauges(&metrics), by_rule(&cli));
    assert!(!by_rule(&cli).is_empty());
    // Every rule has its series, zero included: a fixed finding goes back to 0.
    assert!(
        metrics.contains("sts_guard_audit_findings{rule=\"sts-zero-grace\",action=\"warn\"} 0"),
        "{metrics}"
    );
    for name in [
        "sts_guard_audit_last_run_timestamp_seconds ",
        "sts_guard_audit_last_run_duration_seconds ",
        "sts_guard_audit_runs_total{result=\"ok\"} ",
    ] {
        assert!(metrics.contains(name), "{name}: {metrics}");
    }

    // A violation made after the first run is found by a later one; the fixed cart goes.
    fake.apply(
        in_ns(svc("cart-svc"), "shop")
            .set("spec.selector", json!({"app": "cart"}))
            .value(),
    );
    fake.apply(
        in_ns(sts("late"), "shop")
            .set("spec.serviceName", json!("absent"))
            .value(),
    );
    let first_at = background["at"].as_str().unwrap().to_string();
    let later = until("a later background audit with the new finding", || async {
        let later = serve.audit().await;
        let newer = later["at"].as_str() != Some(first_at.as_str());
        let found = later["objects"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["name"] == "late");
        (newer && found).then_some(later)
    })
    .await;
    let names: Vec<&str> = later["objects"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["namespace"] == "shop")
        .map(|o| o["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"late") && !names.contains(&"cart"),
        "{names:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_answers_503_with_the_reason_when_there_is_no_background_audit() {
    let fake = FakeApi::start().await;
    seed(&fake);
    let serve = Serve::start(&fake, &["--audit-interval", "0"]).await;
    let (status, body) = until("serve to answer", || serve.get("/audit")).await;
    assert_eq!(status, 503);
    assert_eq!(
        body,
        "no audit to show: the background audit is off (--audit-interval 0); run sts-guard audit\n"
    );
    let (_, metrics) = serve.get("/metrics").await.unwrap();
    assert!(
        !metrics.contains("sts_guard_audit_runs_total{"),
        "{metrics}"
    );
    drop(serve.child);

    // A bad interval is refused naming the flag.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["serve", "--audit-interval=soon"])
        .output()
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("--audit-interval")
            && stderr.contains("is not a number of seconds (0 turns the background audit off)"),
        "{stderr}"
    );
}

// --- memory on a large cluster (measured on demand, not a timed test) ----------------------

/// Peak RSS of `sts-guard audit` over a cluster of 30,000 Services, 2,000 StatefulSets, 6,000
/// of their pods and 1,000 Nodes, against the baseline of `sts-guard serve` holding the same
/// cluster in its watch caches, both served by the in-test API server in this process:
///
///     cargo test --test audit -- --ignored --nocapture audit_memory
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: run it on demand"]
async fn audit_memory_against_serve_on_a_large_cluster() {
    const SERVICES: usize = 30_000;
    const STATEFULSETS: usize = 2_000;
    const NODES: usize = 1_000;
    const NAMESPACES: usize = 100;
    let fake = FakeApi::start().await;
    let annotations = json!({"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600)});
    for i in 0..SERVICES {
        let headless = i % 5 == 0;
        fake.apply_silently(json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": format!("svc-{i}"), "namespace": format!("ns-{}", i % NAMESPACES),
                "labels": {"app.kubernetes.io/name": format!("app-{i}"), "team": "storage"},
                "annotations": annotations},
            "spec": {"clusterIP": if headless { "None".to_string() } else { format!("10.96.{}.{}", i / 250, i % 250) },
                "type": "ClusterIP", "selector": {"app.kubernetes.io/name": format!("app-{i}")},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}]}}));
    }
    for i in 0..STATEFULSETS {
        let svc = i * 5;
        let ns = format!("ns-{}", svc % NAMESPACES);
        let labels = json!({"app.kubernetes.io/name": format!("app-{svc}")});
        fake.apply_silently(json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": format!("sts-{i}"), "namespace": ns, "annotations": {
                "kubectl.kubernetes.io/last-applied-configuration": "x".repeat(1500)}},
            "spec": {"serviceName": format!("svc-{svc}"), "replicas": 3,
                "selector": {"matchLabels": labels},
                "template": {"metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "db", "image": "registry.example.com/db:1.2.3",
                        "env": [{"name": "A", "value": "1"}], "volumeMounts": [{"name": "data", "mountPath": "/d"}]}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"]}}]},
            "status": {"replicas": 3, "readyReplicas": 3}}));
        for ordinal in 0..3 {
            let name = format!("sts-{i}-{ordinal}");
            fake.apply_silently(json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "namespace": ns,
                    "labels": {"app.kubernetes.io/name": format!("app-{svc}"), "statefulset.kubernetes.io/pod-name": name},
                    "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": format!("sts-{i}"),
                        "uid": "u", "controller": true}]},
                "spec": {"nodeName": format!("node-{}", (i + ordinal) % NODES),
                    "containers": [{"name": "db", "image": "registry.example.com/db:1.2.3",
                        "env": [{"name": "A", "value": "1"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]}]},
                "status": {"phase": "Running", "podIP": "10.244.0.1", "conditions": [{"type": "Ready", "status": "True"}]}}));
        }
    }
    for i in 0..NODES {
        fake.apply_silently(json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{i}"), "labels": {"kubernetes.io/hostname": format!("node-{i}")}},
            "spec": {"podCIDR": "10.244.0.0/24"},
            "status": {"images": (0..20).map(|j| json!({"names": [format!("registry.example.com/image-{j}:v{j}")], "sizeBytes": 1})).collect::<Vec<_>>()}}));
    }
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), &fake.url());

    // audit: peak RSS from /usr/bin/time, which waits for the child.
    let started = std::time::Instant::now();
    let out = tokio::process::Command::new("/usr/bin/time")
        .args(["-f", "%M"])
        .arg(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["audit", "--quiet", "-o", "json"])
        .env("KUBECONFIG", &config)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .await
        .unwrap();
    let audit_seconds = started.elapsed().as_secs_f64();
    assert!(
        out.status.code().is_some_and(|c| c < 2),
        "{}",
        text(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["listed"]["services"], SERVICES);
    assert_eq!(report["listed"]["pods"], STATEFULSETS * 3);
    let audit_kib: u64 = text(&out.stderr)
        .trim()
        .lines()
        .last()
        .unwrap()
        .parse()
        .unwrap();

    // serve: peak RSS once every watch has listed (its log says so), from /proc.
    let mut serve = tokio::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--log-format", "json"])
        .arg("--certs-dir")
        .arg(dir.path().join("certs"))
        .env("KUBECONFIG", &config)
        .env("RUST_LOG", "info")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    let pid = serve.id().unwrap();
    let mut lines =
        tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(serve.stderr.take().unwrap()));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        assert!(std::time::Instant::now() < deadline, "serve never synced");
        let line = lines.next_line().await.unwrap().expect("serve exited");
        if line.contains("inventory synced") {
            break;
        }
    }
    let serve_seconds = started.elapsed().as_secs_f64();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let serve_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap();
    serve.kill().await.unwrap();
    println!(
        "{SERVICES} Services, {STATEFULSETS} StatefulSets, {} pods, {NODES} Nodes:\n  \
         audit peak RSS {:.1} MiB ({audit_seconds:.1} s, one read)\n  \
         serve peak RSS {:.1} MiB ({serve_seconds:.1} s to sync its watches)\n  \
         audit / serve: {:.2}",
        STATEFULSETS * 3,
        audit_kib as f64 / 1024.0,
        serve_kib as f64 / 1024.0,
        audit_kib as f64 / serve_kib as f64
    );
}

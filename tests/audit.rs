//! `sts-guard audit` against the in-test API server: the real kube-rs client, paged lists
//! (`limit`/`continue`, an expired continue token), label selectors, 403s; the library entry
//! point and the real binary with a kubeconfig.

mod common;

use common::fake_apiserver::FakeApi;
use common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::process::Output;
use sts_guard::audit::{self, AuditOptions, AuditReport, Silent};
use sts_guard::config::Config;
use sts_guard::model::OUT_OF_SERVICE_TAINT;

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
            "Read 2 Nodes, 254 Services, 5 StatefulSets and 7 StatefulSet pods (all namespaces).\n\
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

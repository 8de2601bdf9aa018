//! Memory of the cluster inventory and decision latency with a warm cache.
//!
//!     cargo bench --bench inventory_memory
//!
//! A child process serves 10,000 Services, 2,000 StatefulSets and 1,000 Nodes from the
//! in-test API server (tests/common/fake_apiserver.rs) so that its memory is not counted.
//! This process loads them through the real watch path (kube-rs watchers), then reports its
//! RSS before and after, and the latency of decisions from the warm cache next to the same
//! decisions from a static inventory holding the same objects (the baseline).

#[path = "../tests/common/fake_apiserver.rs"]
mod fake_apiserver;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sts_guard::config::Config;
use sts_guard::engine::{Endpoint, evaluate};
use sts_guard::inventory::{ClusterInventory, Evaluator, StaticInventory};
use sts_guard::model::{NodeView, ServiceView, StatefulSetView};

// The same allocator as the `sts-guard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SERVICES: usize = 10_000;
const STATEFULSETS: usize = 2_000;
const NODES: usize = 1_000;
const NAMESPACES: usize = 100;
const DECISIONS: usize = 20_000;

fn service(i: usize) -> Value {
    let ns = format!("ns-{}", i % NAMESPACES);
    let headless = i.is_multiple_of(5);
    json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": ns, "uid": format!("00000000-0000-4000-8000-{i:012}"),
            "labels": {"app.kubernetes.io/name": format!("app-{i}"), "app.kubernetes.io/part-of": "bench", "team": "storage"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(600)},
            "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"clusterIP": if headless { "None".to_string() } else { format!("10.96.{}.{}", i / 250, i % 250) },
            "clusterIPs": [if headless { "None".to_string() } else { format!("10.96.{}.{}", i / 250, i % 250) }],
            "type": "ClusterIP", "selector": {"app.kubernetes.io/name": format!("app-{i}")},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            "sessionAffinity": "None", "ipFamilies": ["IPv4"], "ipFamilyPolicy": "SingleStack", "internalTrafficPolicy": "Cluster"},
        "status": {"loadBalancer": {}}})
}

fn statefulset(i: usize) -> Value {
    let svc = i * 5; // a headless Service
    let ns = format!("ns-{}", svc % NAMESPACES);
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": format!("sts-{i}"), "namespace": ns, "uid": format!("10000000-0000-4000-8000-{i:012}"),
            "labels": {"app.kubernetes.io/name": format!("app-{svc}")},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(1500)}},
        "spec": {"serviceName": format!("svc-{svc}"), "replicas": 3,
            "selector": {"matchLabels": {"app.kubernetes.io/name": format!("app-{svc}")}},
            "template": {"metadata": {"labels": {"app.kubernetes.io/name": format!("app-{svc}"), "version": "1.2.3"}},
                "spec": {"containers": [{"name": "db", "image": "registry.example.com/db:1.2.3",
                    "ports": [{"containerPort": 5432, "name": "pg"}],
                    "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}],
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}},
                    "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}}],
            "podManagementPolicy": "OrderedReady", "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}},
        "status": {"replicas": 3, "readyReplicas": 3, "currentRevision": "sts-abc", "updateRevision": "sts-abc"}})
}

fn node(i: usize) -> Value {
    let images: Vec<Value> = (0..20)
        .map(|j| json!({"names": [format!("registry.example.com/image-{j}@sha256:{:064}", j), format!("registry.example.com/image-{j}:v{j}")], "sizeBytes": 123456789 + j}))
        .collect();
    json!({"apiVersion": "v1", "kind": "Node",
        "metadata": {"name": format!("node-{i}"), "uid": format!("20000000-0000-4000-8000-{i:012}"),
            "labels": {"kubernetes.io/hostname": format!("node-{i}"), "topology.kubernetes.io/zone": format!("zone-{}", i % 3),
                "node.kubernetes.io/instance-type": "m5.xlarge", "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64"}},
        "spec": {"podCIDR": format!("10.244.{}.0/24", i % 250), "providerID": format!("aws:///eu-west-1a/i-{i:017}"),
            "taints": if i.is_multiple_of(100) { json!([{"key": "node.kubernetes.io/out-of-service", "value": "nodeshutdown", "effect": "NoExecute"}]) } else { json!([]) }},
        "status": {"capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"}, "allocatable": {"cpu": "3900m", "memory": "15Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                "lastHeartbeatTime": "2026-01-01T00:00:00Z", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
            "addresses": [{"type": "InternalIP", "address": format!("10.0.{}.{}", i / 250, i % 250)}, {"type": "Hostname", "address": format!("node-{i}")}],
            "nodeInfo": {"kubeletVersion": "v1.32.4", "containerRuntimeVersion": "containerd://1.7.27", "osImage": "Ubuntu 24.04", "kernelVersion": "6.8.0",
                "operatingSystem": "linux", "architecture": "amd64", "machineID": "m", "systemUUID": "s", "bootID": "b", "kubeProxyVersion": ""},
            "images": images}})
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

async fn serve_fixtures() {
    let fake = fake_apiserver::FakeApi::start().await;
    for i in 0..SERVICES {
        fake.apply_silently(service(i));
    }
    for i in 0..STATEFULSETS {
        fake.apply_silently(statefulset(i));
    }
    for i in 0..NODES {
        fake.apply_silently(node(i));
    }
    println!("{}", fake.url());
    std::future::pending::<()>().await;
}

fn review(i: usize) -> Value {
    let obj = statefulset(i);
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "u", "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
        "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
        "name": obj["metadata"]["name"], "namespace": obj["metadata"]["namespace"], "operation": "CREATE",
        "userInfo": {"username": "admin"}, "object": obj, "oldObject": null, "dryRun": false}})
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if std::env::var("STS_GUARD_BENCH_ROLE").as_deref() == Ok("api") {
        runtime.block_on(serve_fixtures());
        return;
    }
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("STS_GUARD_BENCH_ROLE", "api")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();

    runtime.block_on(async {
        let before = rss_kib();
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let started = Instant::now();
        let inv = Arc::new(ClusterInventory::start(client, &[], Duration::from_secs(2)));
        while !inv.synced() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let sync_time = started.elapsed();
        assert_eq!(inv.sizes(), (SERVICES, STATEFULSETS, NODES));
        // Let the allocator settle after the transient full objects of the first list.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib();

        // Baseline: the same objects in a static inventory, decided synchronously.
        let mut static_inv = StaticInventory::new();
        for i in 0..SERVICES {
            let o = sts_guard::manifest::to_dynamic(service(i)).unwrap();
            static_inv.add_service(ServiceView::from_object(&o, "").unwrap());
        }
        for i in 0..STATEFULSETS {
            let o = sts_guard::manifest::to_dynamic(statefulset(i)).unwrap();
            static_inv.add_statefulset(StatefulSetView::from_object(&o, "").unwrap());
        }
        for i in 0..NODES {
            let o = sts_guard::manifest::to_dynamic(node(i)).unwrap();
            static_inv.add_node(NodeView::from_object(&o).unwrap());
        }
        let config = Config::default();
        let requests: Vec<_> = (0..200)
            .map(|i| {
                let review: kube_core::admission::AdmissionReview<kube_core::DynamicObject> =
                    serde_json::from_value(review(i)).unwrap();
                review.try_into().unwrap()
            })
            .collect();
        let mut cluster_times = Vec::with_capacity(DECISIONS);
        let mut static_times = Vec::with_capacity(DECISIONS);
        for i in 0..DECISIONS {
            let req = &requests[i % requests.len()];
            let t = Instant::now();
            let d = inv.decide(req, &config, Endpoint::Validate).await;
            cluster_times.push(t.elapsed());
            assert!(d.allowed());
            let t = Instant::now();
            let d = evaluate(req, &static_inv, &config, Endpoint::Validate);
            static_times.push(t.elapsed());
            assert!(d.allowed());
        }
        cluster_times.sort();
        static_times.sort();
        println!("inventory_memory: {SERVICES} Services, {STATEFULSETS} StatefulSets, {NODES} Nodes via the watch path");
        println!("  first list synced in {:.0} ms", sync_time.as_secs_f64() * 1e3);
        println!("  RSS before start: {:.1} MiB, after sync: {:.1} MiB (inventory: +{:.1} MiB)",
            before as f64 / 1024.0, after as f64 / 1024.0, (after.saturating_sub(before)) as f64 / 1024.0);
        println!("  decision latency, warm cache ({DECISIONS} StatefulSet CREATEs):");
        println!("    static inventory (baseline): p50 {:.1} µs  p99 {:.1} µs", percentile(&static_times, 0.5), percentile(&static_times, 0.99));
        println!("    cluster inventory          : p50 {:.1} µs  p99 {:.1} µs  (p50 ratio {:.2})",
            percentile(&cluster_times, 0.5), percentile(&cluster_times, 0.99),
            percentile(&cluster_times, 0.5) / percentile(&static_times, 0.5));
    });
    let _ = child.kill();
    let _ = child.wait();
}

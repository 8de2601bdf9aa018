//! The background audit of `serve` on a large cluster: its own time and memory, and the request
//! path's latency while it runs against without it, in the same run (ratios).
//!
//!     cargo bench --bench background_audit
//!     STS_GUARD_BENCH_SIZES=10000/2000/1000 cargo bench --bench background_audit   # smaller
//!
//! The cluster (default 100,000 Services, 20,000 StatefulSets, 5,000 Nodes, and 3 pods and 3
//! claims per StatefulSet) is served by the in-test API server (tests/common/fake_apiserver.rs)
//! in a child process, `api`, in the idle scheduling class (all its threads): in a cluster
//! kube-apiserver runs elsewhere, and its CPU is not the webhook's. A second child, `measure`, with the binary's allocator
//! settings, syncs a `ClusterInventory` from it and then alternates, `RUNS` times:
//! - *without*: the request path (`admission::decode`, `Evaluator::decide_review` on the watch cache,
//!   `admission::encode`: what `server::handle` does between reading a body and writing the
//!   answer) on StatefulSet CREATE reviews arriving at 2,000 a second, each in a task of its
//!   own on the runtime's two workers, timed from arrival to answer, before and after each
//!   audit run, each window as long as the audit run before it took;
//! - *during*: the same, for as long as one run of the background audit takes, started by
//!   `audit::spawn_background` exactly as `serve` starts it (its own thread in the idle
//!   scheduling class, its own runtime and client, the cache's Services and Nodes,
//!   StatefulSets, pods and claims listed paged), publishing to a `/audit` page and metrics as
//!   `serve` does.
//!
//! It reports p50/p99 of both and their ratios, each audit run's time, the peak growth of live
//! heap (counting allocator) and of RSS (VmHWM) over the synced cache, what the page keeps, the time to copy the
//! cache's Services and Nodes (the read lock is held that long), and for comparison one run of
//! `audit::run` as the CLI does it (everything listed, nothing else running).

#[path = "../tests/common/fake_apiserver.rs"]
mod fake_apiserver;

#[path = "common/counting.rs"]
mod counting;

#[path = "common/cluster.rs"]
mod cluster;

#[path = "common/process.rs"]
mod process;

use cluster::{Size, node, review, service, statefulset};
use process::{mib, peak_kib, reset_peak, rss_kib};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::ops::ControlFlow;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};
use sts_guard::admission::{self, Decoded};
use sts_guard::audit::{self, AuditOptions, BackgroundOptions, Silent};
use sts_guard::config::Config;
use sts_guard::engine::{Endpoint, Evaluator};
use sts_guard::inventory::ClusterInventory;
use sts_guard::server::audit_page::AuditPage;
use sts_guard::server::metrics::Metrics;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const RUNS: usize = 3;
/// The window without an audit before the first run (later ones last as long as the run
/// before them took).
const FIRST_WINDOW: Duration = Duration::from_secs(3);
const DEFAULT_SIZE: Size = Size {
    services: 100_000,
    statefulsets: 20_000,
    nodes: 5_000,
};
const PODS_PER_STATEFULSET: usize = 3;
/// Reviews arriving per millisecond: 2,000 a second, a busy cluster's admission traffic.
const PER_TICK: usize = 2;
const PAST: &str = "2024-01-01T00:00:00Z";

/// Pod `ordinal` of StatefulSet `i`, as the controller makes it (on a live Node).
fn pod(i: usize, ordinal: usize, size: Size) -> Value {
    let svc = i * 5;
    let ns = format!("ns-{}", svc % size.namespaces());
    let name = format!("sts-{i}-{ordinal}");
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": ns, "uid": format!("30000000-0000-4000-8000-{i:09}{ordinal:03}"),
            "labels": {"app.kubernetes.io/name": format!("app-{svc}"), "version": "1.2.3",
                "statefulset.kubernetes.io/pod-name": name, "apps.kubernetes.io/pod-index": ordinal.to_string()},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": format!("sts-{i}"),
                "uid": format!("10000000-0000-4000-8000-{i:012}"), "controller": true, "blockOwnerDeletion": true}]},
        "spec": {"nodeName": format!("node-{}", (i * 3 + ordinal) % size.nodes + 1),
            "hostname": name, "subdomain": format!("svc-{svc}"),
            "containers": [{"name": "db", "image": "registry.example.com/db:1.2.3",
                "env": [{"name": "A", "value": "1"}, {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "data", "mountPath": "/var/lib/db"}]}],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": format!("data-sts-{i}-{ordinal}")}}]},
        "status": {"phase": "Running", "podIP": "10.244.0.1", "conditions": [{"type": "Ready", "status": "True"}]}})
}

/// Claim `data-sts-<i>-<ordinal>`; `phase` Bound unless said otherwise.
fn claim(i: usize, ordinal: usize, size: Size, phase: &str) -> Value {
    let ns = format!("ns-{}", (i * 5) % size.namespaces());
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": format!("data-sts-{i}-{ordinal}"), "namespace": ns, "creationTimestamp": PAST,
            "labels": {"app.kubernetes.io/name": format!("app-{}", i * 5)}},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}},
            "storageClassName": "standard", "volumeName": format!("pvc-{i}-{ordinal}")},
        "status": {"phase": phase, "accessModes": ["ReadWriteOnce"], "capacity": {"storage": "10Gi"}}})
}

async fn serve_fixtures(size: Size) {
    let fake = fake_apiserver::FakeApi::start().await;
    let ns = size.namespaces();
    for i in 0..size.services {
        fake.apply_silently(service(i, ns));
    }
    for i in 0..size.statefulsets {
        let mut sts = statefulset(i, ns);
        // One in a hundred mid-rollout since long ago (its update revision's age is read).
        if i % 100 == 1 {
            sts["status"]["updateRevision"] = json!(format!("sts-{i}-new"));
            fake.apply_silently(json!({"apiVersion": "apps/v1", "kind": "ControllerRevision",
                "metadata": {"name": format!("sts-{i}-new"), "namespace": sts["metadata"]["namespace"],
                    "creationTimestamp": PAST}, "data": {"spec": {"template": {}}}, "revision": 2}));
        }
        fake.apply_silently(sts);
        for ordinal in 0..PODS_PER_STATEFULSET {
            fake.apply_silently(pod(i, ordinal, size));
            // One in two hundred has a claim Pending since long ago.
            let phase = if i % 200 == 2 && ordinal == 0 {
                "Pending"
            } else {
                "Bound"
            };
            fake.apply_silently(claim(i, ordinal, size, phase));
        }
        // One in fifty was scaled down from 4 and kept its fourth claim.
        if i % 50 == 3 {
            fake.apply_silently(claim(i, PODS_PER_STATEFULSET, size, "Bound"));
        }
    }
    for i in 0..size.nodes {
        fake.apply_silently(node(i));
    }
    println!("{}", fake.url());
    // Serve until the parent closes stdin.
    let _ = tokio::task::spawn_blocking(|| {
        for line in std::io::stdin().lock().lines() {
            if line.is_err() {
                break;
            }
        }
    })
    .await;
}

/// One review through the request path of `server::handle`, between the body and the answer.
async fn review_once(inv: &ClusterInventory, config: &Config, body: &[u8]) {
    let reviewed = match admission::decode(body, Endpoint::Validate).unwrap() {
        Decoded::Evaluate(request, summary) => {
            let decision = inv.decide_review(&request, config).await;
            admission::encode(summary, decision.in_mode(config.mode)).unwrap()
        }
        Decoded::Answered(reviewed) => *reviewed,
    };
    std::hint::black_box(&reviewed.body);
}

/// Reviews arriving at `PER_TICK` a millisecond until `stop`, each in a task of its own (as
/// each connection is), timed from its arrival to its answer: an open load, so that time a
/// review waits for a CPU counts.
async fn requests(
    inv: Arc<ClusterInventory>,
    config: Arc<Config>,
    bodies: Arc<Vec<Vec<u8>>>,
    stop: Arc<AtomicBool>,
) -> Vec<Duration> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut i = 0;
    while !stop.load(Ordering::Acquire) {
        tick.tick().await;
        for _ in 0..PER_TICK {
            let (inv, config, bodies, tx) =
                (inv.clone(), config.clone(), bodies.clone(), tx.clone());
            let arrived = Instant::now();
            let n = i;
            i += 1;
            tokio::spawn(async move {
                review_once(&inv, &config, &bodies[n % bodies.len()]).await;
                let _ = tx.send(arrived.elapsed());
            });
        }
    }
    drop(tx);
    let mut times = Vec::with_capacity(i);
    while let Some(t) = rx.recv().await {
        times.push(t);
    }
    times
}

/// [`requests`] for `window`.
async fn requests_for(
    inv: &Arc<ClusterInventory>,
    config: &Arc<Config>,
    bodies: &Arc<Vec<Vec<u8>>>,
    window: Duration,
) -> Vec<Duration> {
    let stop = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn(requests(
        inv.clone(),
        config.clone(),
        bodies.clone(),
        stop.clone(),
    ));
    tokio::time::sleep(window).await;
    stop.store(true, Ordering::Release);
    task.await.unwrap()
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

struct AuditRun {
    seconds: f64,
    /// Peak live heap over the synced cache.
    heap_growth: usize,
    /// The compressed JSON `/audit` holds after the run (the CLI's run keeps none).
    kept: usize,
    rss_growth_kib: u64,
    findings: usize,
    listed: sts_guard::report::Listed,
}

fn measure(size: Size) -> Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut api = Command::new(std::env::current_exe().unwrap())
        .env("STS_GUARD_BENCH_ROLE", "api")
        .env("STS_GUARD_BENCH_SIZE", size.label())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut url = String::new();
    BufReader::new(api.stdout.take().unwrap())
        .read_line(&mut url)
        .unwrap();
    let url = url.trim().to_string();
    let api_stdin = api.stdin.take().unwrap();
    let result = runtime.block_on(async {
        let client_config = kube::Config::new(url.parse().unwrap());
        let client = kube::Client::try_from(client_config.clone()).unwrap();
        let inv = Arc::new(ClusterInventory::start(client.clone(), &[], Duration::from_secs(2)));
        while !inv.synced() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let config = Arc::new(Config::default());
        let page = Arc::new(AuditPage::waiting());
        let metrics = Arc::new(Metrics::default());
        let ns = size.namespaces();
        let bodies: Arc<Vec<Vec<u8>>> = Arc::new(
            (0..200)
                .map(|k| serde_json::to_vec(&review(1 + k * (size.statefulsets - 1) / 200, ns)).unwrap())
                .collect(),
        );

        // How long the background audit holds the cache's read lock.
        let copies = 20;
        let started = Instant::now();
        for _ in 0..copies {
            drop(std::hint::black_box(inv.services_and_nodes()));
        }
        let copy_ms = started.elapsed().as_secs_f64() * 1e3 / copies as f64;

        let mut without = Vec::new();
        let mut during = Vec::new();
        let mut runs = Vec::new();
        // Each audit run is framed by a window without it on either side, each as long as
        // the audit run before took: slow drifts of the machine (other processes, frequency)
        // fall on both columns alike.
        let mut window = FIRST_WINDOW;
        for _ in 0..RUNS {
            without.extend(requests_for(&inv, &config, &bodies, window).await);
            let stop = Arc::new(AtomicBool::new(false));
            let task = tokio::spawn(requests(inv.clone(), config.clone(), bodies.clone(), stop.clone()));
            let live_before = counting::reset_peak();
            let rss_before = rss_kib();
            reset_peak();
            let (tx, rx) = mpsc::channel();
            let done = stop.clone();
            let page = page.clone();
            let metrics = metrics.clone();
            audit::spawn_background(
                client_config.clone(),
                inv.clone(),
                config.clone(),
                BackgroundOptions { every: Duration::ZERO, namespaces: Vec::new() },
                move |outcome, took| {
                    let audited = outcome.expect("the audit reads the cluster");
                    let summary = (audited.report.objects.len(), audited.listed);
                    // What serve does with it: the page (its JSON) and the metrics.
                    page.publish(&metrics, Ok(audited), took, "all namespaces");
                    let _ = tx.send((summary, took, counting::peak(), peak_kib(), page.held_bytes()));
                    done.store(true, Ordering::Release);
                    ControlFlow::Break(())
                },
            )
            .unwrap();
            during.extend(task.await.unwrap());
            let ((findings, listed), took, heap_peak, rss_peak, page_bytes) = rx.recv().unwrap();
            window = took;
            without.extend(requests_for(&inv, &config, &bodies, window).await);
            runs.push(AuditRun {
                seconds: took.as_secs_f64(),
                heap_growth: heap_peak.saturating_sub(live_before),
                rss_growth_kib: rss_peak.saturating_sub(rss_before),
                kept: page_bytes,
                findings,
                listed,
            });
        }

        // The CLI's way, for comparison: everything listed, nothing else running.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let live_before = counting::reset_peak();
        let rss_before = rss_kib();
        reset_peak();
        let started = Instant::now();
        let mut cli_config = client_config.clone();
        cli_config.default_retry = false;
        let cli = audit::run(
            kube::Client::try_from(cli_config).unwrap(),
            &AuditOptions::default(),
            &config,
            &mut Silent,
        )
        .await
        .unwrap();
        let cli_run = AuditRun {
            seconds: started.elapsed().as_secs_f64(),
            heap_growth: counting::peak().saturating_sub(live_before),
            rss_growth_kib: peak_kib().saturating_sub(rss_before),
            kept: 0,
            findings: cli.report.objects.len(),
            listed: cli.listed,
        };
        without.sort();
        during.sort();
        let run_json = |r: &AuditRun| {
            json!({"seconds": r.seconds, "heap_growth": r.heap_growth, "kept": r.kept, "rss_growth_kib": r.rss_growth_kib,
                   "findings": r.findings, "listed": [r.listed.nodes, r.listed.services, r.listed.statefulsets,
                   r.listed.pods, r.listed.claims, r.listed.revisions]})
        };
        json!({
            "without": {"n": without.len(), "p50": percentile(&without, 0.5), "p99": percentile(&without, 0.99)},
            "during": {"n": during.len(), "p50": percentile(&during, 0.5), "p99": percentile(&during, 0.99)},
            "runs": runs.iter().map(run_json).collect::<Vec<_>>(),
            "cli": run_json(&cli_run),
            "copy_ms": copy_ms,
            "rss_synced_kib": rss_kib(),
        })
    });
    drop(api_stdin);
    let _ = api.kill();
    let _ = api.wait();
    result
}

fn main() {
    let role = std::env::var("STS_GUARD_BENCH_ROLE").unwrap_or_default();
    let size = std::env::var("STS_GUARD_BENCH_SIZE").map(|s| Size::parse(&s));
    match role.as_str() {
        "api" => {
            // Before any thread is made, so that every thread of the API server inherits it:
            // kube-apiserver runs on other machines, its CPU is not the webhook's, so it gets
            // the CPU only when the measured process does not want it.
            // SAFETY: sched_setscheduler changes only this thread's scheduling class.
            let param = libc::sched_param { sched_priority: 0 };
            assert_eq!(
                unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) },
                0
            );
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve_fixtures(size.unwrap()));
            return;
        }
        "measure" => {
            sts_guard::allocator::keep_resident_memory_low();
            println!("{}", measure(size.unwrap()));
            return;
        }
        _ => {}
    }
    let sizes: Vec<Size> = match std::env::var("STS_GUARD_BENCH_SIZES") {
        Ok(list) => list.split(',').map(Size::parse).collect(),
        Err(_) => vec![DEFAULT_SIZE],
    };
    println!(
        "background_audit: the request path with and without a background audit running, in one run"
    );
    for size in sizes {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("STS_GUARD_BENCH_ROLE", "measure")
            .env("STS_GUARD_BENCH_SIZE", size.label())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(
            child.wait().unwrap().success(),
            "measure at {} failed",
            size.label()
        );
        report(size, &serde_json::from_str(&line).unwrap());
    }
}

fn report(size: Size, m: &Value) {
    let f = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    println!();
    println!(
        "{} Services/StatefulSets/Nodes, {} StatefulSet pods and {} claims:",
        size.label(),
        size.statefulsets * PODS_PER_STATEFULSET,
        size.statefulsets * PODS_PER_STATEFULSET + size.statefulsets / 50
    );
    println!(
        "  request path without the audit: p50 {:.1} µs, p99 {:.1} µs ({} requests)",
        f(&m["without"]["p50"]),
        f(&m["without"]["p99"]),
        m["without"]["n"]
    );
    println!(
        "  request path during the audit:  p50 {:.1} µs, p99 {:.1} µs ({} requests)",
        f(&m["during"]["p50"]),
        f(&m["during"]["p99"]),
        m["during"]["n"]
    );
    println!(
        "  during / without: p50 ×{:.2}, p99 ×{:.2}",
        f(&m["during"]["p50"]) / f(&m["without"]["p50"]),
        f(&m["during"]["p99"]) / f(&m["without"]["p99"])
    );
    println!(
        "  copy of the cache's Services and Nodes (read lock held): {:.1} ms; RSS with the synced cache: {:.1} MiB",
        f(&m["copy_ms"]),
        mib(m["rss_synced_kib"].as_u64().unwrap_or(0))
    );
    println!("  audit runs (Nodes, Services, StatefulSets, pods, claims, revisions read):");
    let runs = m["runs"].as_array().unwrap();
    for (i, r) in runs.iter().chain(std::iter::once(&m["cli"])).enumerate() {
        println!(
            "    {:<26} {:>6.2} s, live heap peak +{:>6.1} MiB, RSS peak +{:>6.1} MiB, page {:>5.1} MiB, {} objects with findings, read {}",
            if i < runs.len() {
                format!("background run {}", i + 1)
            } else {
                "CLI (everything listed)".to_string()
            },
            f(&r["seconds"]),
            r["heap_growth"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            mib(r["rss_growth_kib"].as_u64().unwrap_or(0)),
            r["kept"].as_u64().unwrap_or(0) as f64 / (1024.0 * 1024.0),
            r["findings"],
            r["listed"]
        );
    }
}

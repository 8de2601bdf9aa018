//! Memory of the cluster inventory, its start-up and decision latency with a warm cache, at
//! three cluster sizes.
//!
//!     cargo bench --bench inventory_memory
//!     STS_GUARD_BENCH_SIZES=10000/2000/1000 cargo bench --bench inventory_memory   # one size
//!
//! Every size runs in fresh processes so that no figure carries memory over from another:
//! - `api`: the in-test API server (tests/common/fake_apiserver.rs) serving the objects, so
//!   that its memory is not counted; it expires the watches (410 Gone) when told on stdin.
//! - `breakdown`: builds the same views into an inventory in steps and reports, with a
//!   counting allocator, the live bytes per kind and per part (view structs, strings, label
//!   maps, index).
//! - `measure`: with the binary's allocator settings (`sts_guard::allocator`), loads the
//!   objects through the real watch path (kube-rs watchers), reports RSS after the sync (all of
//!   it, and the anonymous part that the cache grows), peak RSS during the first list and
//!   during a forced relist, the sync time, and the latency of decisions from the warm cache
//!   next to the same decisions from a static inventory holding the same objects (the
//!   baseline); then starts the `sts-guard serve` binary against the same API server and
//!   reports its time to `/readyz` and its RSS.

#[path = "../tests/common/fake_apiserver.rs"]
mod fake_apiserver;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sts_guard::config::Config;
use sts_guard::engine::{Endpoint, Evaluator, evaluate_review};
use sts_guard::inventory::{ClusterInventory, Inventory, StaticInventory};
use sts_guard::model::{NodeView, ServiceView, StatefulSetView};

#[path = "common/counting.rs"]
mod counting;

#[path = "common/cluster.rs"]
mod cluster;

use cluster::{Size, node, review, service, statefulset};

#[path = "common/process.rs"]
mod process;

use process::{anon_kib, mib, peak_kib, proc_status_kib, reset_peak, rss_kib};

use counting::live;

#[global_allocator]
static GLOBAL: counting::Counting = counting::Counting;

const DECISIONS: usize = 20_000;
const SIZES: [Size; 3] = [
    Size {
        services: 10_000,
        statefulsets: 2_000,
        nodes: 1_000,
    },
    Size {
        services: 50_000,
        statefulsets: 10_000,
        nodes: 2_000,
    },
    Size {
        services: 100_000,
        statefulsets: 20_000,
        nodes: 5_000,
    },
];

async fn serve_fixtures(size: Size) {
    let fake = fake_apiserver::FakeApi::start().await;
    let ns = size.namespaces();
    for i in 0..size.services {
        fake.apply_silently(service(i, ns));
    }
    for i in 0..size.statefulsets {
        fake.apply_silently(statefulset(i, ns));
    }
    for i in 0..size.nodes {
        fake.apply_silently(node(i));
    }
    println!("{}", fake.url());
    // `expire`: lose one object of each kind without an event, then answer the next watches
    // with 410 Gone: only the relist that follows can notice the deletions.
    let lines = tokio::task::spawn_blocking(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if line.trim() == "expire" {
                fake.delete_silently("Service", "ns-0", "svc-0");
                fake.delete_silently("StatefulSet", "ns-0", "sts-0");
                fake.delete_silently("Node", "", "node-0");
                fake.expire_watches();
            }
        }
    });
    let _ = lines.await;
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)].as_secs_f64() * 1e6
}

fn role_child(role: &str, size: Size) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .env("STS_GUARD_BENCH_ROLE", role)
        .env("STS_GUARD_BENCH_SIZE", size.label())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn first_line(child: &mut std::process::Child) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim().to_string()
}

/// Live bytes of one kind: the views alone (strings and label maps; the structs themselves
/// are counted apart), the label maps alone, and the whole kind once indexed.
struct Parts {
    count: usize,
    structs: usize,
    strings: usize,
    maps: usize,
    index: usize,
}

impl Parts {
    fn total(&self) -> usize {
        self.structs + self.strings + self.maps + self.index
    }
    fn json(&self) -> Value {
        json!({"count": self.count, "structs": self.structs, "strings": self.strings,
               "maps": self.maps, "index": self.index, "total": self.total()})
    }
}

fn measure_kind<V>(
    objects: Vec<kube_core::DynamicObject>,
    view: impl Fn(&kube_core::DynamicObject) -> V,
    maps: impl Fn(&V) -> (Box<dyn std::any::Any>, usize),
    add: impl Fn(&mut StaticInventory, V),
    inv: &mut StaticInventory,
) -> Parts {
    let count = objects.len();
    let l0 = live();
    let mut views: Vec<V> = Vec::with_capacity(count);
    let buffer = live() - l0;
    for o in &objects {
        views.push(view(o));
    }
    let heap = live() - l0 - buffer;
    let lm = live();
    // Copies of the label maps: their heap bytes, without the boxes that hold them.
    let copies: Vec<(Box<dyn std::any::Any>, usize)> = views.iter().map(&maps).collect();
    let boxes: usize = copies.iter().map(|(_, inline)| inline).sum();
    let map_bytes = live()
        - lm
        - boxes
        - copies.capacity() * std::mem::size_of::<(Box<dyn std::any::Any>, usize)>();
    drop(copies);
    for v in views.drain(..) {
        add(inv, v);
    }
    drop(views);
    let total = live().saturating_sub(l0);
    drop(objects);
    let structs = count * (std::mem::size_of::<V>() + 16); // inside an Arc
    Parts {
        count,
        structs,
        strings: heap.saturating_sub(map_bytes),
        maps: map_bytes,
        index: total.saturating_sub(heap + structs),
    }
}

fn breakdown(size: Size) -> Value {
    let ns = size.namespaces();
    let dynamic = |v: Value| sts_guard::manifest::into_object(v).unwrap();
    let mut inv = StaticInventory::new();
    let svc: Vec<_> = (0..size.services)
        .map(|i| dynamic(service(i, ns)))
        .collect();
    let services = measure_kind(
        svc,
        |o| ServiceView::from_object(o, "").unwrap(),
        |v| {
            (
                Box::new(v.selector.clone()),
                std::mem::size_of_val(&v.selector),
            )
        },
        |inv, v| inv.add_service(v),
        &mut inv,
    );
    let sts: Vec<_> = (0..size.statefulsets)
        .map(|i| dynamic(statefulset(i, ns)))
        .collect();
    let statefulsets = measure_kind(
        sts,
        |o| StatefulSetView::from_object(o, "").unwrap(),
        |v| {
            let maps = (v.selector.clone(), v.template_labels.clone());
            let inline = std::mem::size_of_val(&maps);
            (Box::new(maps), inline)
        },
        |inv, v| inv.add_statefulset(v),
        &mut inv,
    );
    let nodes: Vec<_> = (0..size.nodes).map(|i| dynamic(node(i))).collect();
    let nodes = measure_kind(
        nodes,
        |o| NodeView::from_object(o).unwrap(),
        |_| (Box::new(()), 0),
        |inv, v| inv.add_node(v),
        &mut inv,
    );
    json!({"services": services.json(), "statefulsets": statefulsets.json(), "nodes": nodes.json()})
}

fn measure(size: Size) -> Value {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut api = role_child("api", size);
    let url = first_line(&mut api);
    let mut api_stdin = api.stdin.take().unwrap();
    let ns = size.namespaces();
    let result = runtime.block_on(async {
        let before = rss_kib();
        let anon_before = anon_kib();
        let live_before = live();
        reset_peak();
        let client = kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap();
        let started = Instant::now();
        let inv = Arc::new(ClusterInventory::start(client, &[], Duration::from_secs(2)));
        while !inv.synced() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let sync_time = started.elapsed();
        let peak_first = peak_kib();
        assert_eq!(inv.sizes(), (size.services, size.statefulsets, size.nodes));
        // Let the allocator return the pages of the transient page buffers.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after = rss_kib();
        let anon_after = anon_kib();
        let live_after = live();

        // A forced relist (410 Gone) of every watch.
        reset_peak();
        let relist_started = Instant::now();
        writeln!(api_stdin, "expire").unwrap();
        api_stdin.flush().unwrap();
        loop {
            let svc_gone = inv.service("ns-0", "svc-0").unwrap().is_none();
            let sts_gone = inv.statefulsets_governed_by("ns-0", "svc-0").unwrap().is_empty();
            let node_gone = inv.node("node-0").unwrap().is_none();
            if svc_gone && sts_gone && node_gone && inv.synced() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let relist_time = relist_started.elapsed();
        let peak_relist = peak_kib();
        tokio::time::sleep(Duration::from_millis(500)).await;
        let after_relist = rss_kib();

        // Baseline: the same objects in a static inventory, decided synchronously.
        let mut static_inv = StaticInventory::new();
        let dynamic = |v: Value| sts_guard::manifest::into_object(v).unwrap();
        for i in 0..size.services {
            static_inv.add_service(ServiceView::from_object(&dynamic(service(i, ns)), "").unwrap());
        }
        for i in 0..size.statefulsets {
            static_inv
                .add_statefulset(StatefulSetView::from_object(&dynamic(statefulset(i, ns)), "").unwrap());
        }
        for i in 0..size.nodes {
            static_inv.add_node(NodeView::from_object(&dynamic(node(i))).unwrap());
        }
        let config = Config::default();
        // sts-0 lost its Service in the relist; the others are all allowed.
        let requests: Vec<_> = (0..200)
            .map(|i| {
                let sts = 1 + i * (size.statefulsets - 1) / 200;
                let review: kube_core::admission::AdmissionReview<kube_core::DynamicObject> =
                    serde_json::from_value(review(sts, ns)).unwrap();
                review.try_into().unwrap()
            })
            .collect();
        // Decoded once, as the server decodes a body: the decisions alone are timed.
        let texts: Vec<_> = requests.iter().map(sts_guard::request::object_texts).collect();
        let reviews: Vec<_> = requests
            .iter()
            .zip(&texts)
            .map(|(req, texts)| sts_guard::request::review_of(req, Endpoint::Validate, texts).unwrap())
            .collect();
        let mut cluster_times = Vec::with_capacity(DECISIONS);
        let mut static_times = Vec::with_capacity(DECISIONS);
        // Where a slower tail comes from: the same rules evaluated straight on the watch cache
        // (no recording of lookups, no future) separate the cache's layout from the
        // confirmation bookkeeping.
        let mut cache_times = Vec::with_capacity(DECISIONS);
        // Each of the three goes first in turn: the first to touch a request pays its cache
        // misses, and a fixed order would charge them all to one column.
        for i in 0..DECISIONS {
            let req = &reviews[i % reviews.len()];
            for turn in 0..3 {
                match (i + turn) % 3 {
                    0 => {
                        let t = Instant::now();
                        let d = inv.decide_review(req, &config).await;
                        cluster_times.push(t.elapsed());
                        assert!(d.allowed());
                    }
                    1 => {
                        let t = Instant::now();
                        let d = evaluate_review(req, &static_inv, &config);
                        static_times.push(t.elapsed());
                        assert!(d.allowed());
                    }
                    _ => {
                        let t = Instant::now();
                        let d = evaluate_review(req, inv.as_ref(), &config);
                        cache_times.push(t.elapsed());
                        assert!(d.allowed());
                    }
                }
            }
        }
        cache_times.sort();
        cluster_times.sort();
        static_times.sort();
        json!({
            "rss_before_kib": before, "rss_after_kib": after,
            "anon_before_kib": anon_before, "anon_after_kib": anon_after, "peak_first_kib": peak_first,
            "peak_relist_kib": peak_relist, "rss_after_relist_kib": after_relist,
            "live_bytes": live_after.saturating_sub(live_before),
            "sync_ms": sync_time.as_secs_f64() * 1e3, "relist_ms": relist_time.as_secs_f64() * 1e3,
            "static_p50": percentile(&static_times, 0.5), "static_p99": percentile(&static_times, 0.99),
            "cluster_p50": percentile(&cluster_times, 0.5), "cluster_p99": percentile(&cluster_times, 0.99),
            "cache_p50": percentile(&cache_times, 0.5), "cache_p99": percentile(&cache_times, 0.99),
        })
    });
    drop(runtime);
    let serve = readyz(&url);
    drop(api_stdin);
    let _ = api.kill();
    let _ = api.wait();
    let mut result = result;
    result["serve"] = serve;
    result
}

/// Starts `sts-guard serve` against the API server and polls `/readyz` until it answers 200:
/// the time a new replica of a large cluster stays unready, and its RSS once ready.
fn readyz(url: &str) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let config = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [{"name": "fake", "user": {}}],
        "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
        "current-context": "fake",
    });
    std::fs::write(&kubeconfig, config.to_string()).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let mut serve = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args([
            "serve",
            "--addr",
            &format!("127.0.0.1:{port}"),
            // The cache's own figure: the background audit's run, right after the sync, is
            // measured by the background_audit bench.
            "--audit-interval",
            "0",
            "--certs-dir",
        ])
        .arg(dir.path().join("certs"))
        .env("KUBECONFIG", &kubeconfig)
        .env("RUST_LOG", "warn")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env_remove("STS_GUARD_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready_url = format!("https://127.0.0.1:{port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = None;
    while Instant::now() < deadline {
        let out = Command::new("curl")
            .args([
                "-sk",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "1",
                &ready_url,
            ])
            .output();
        if out.is_ok_and(|o| o.stdout == b"200") {
            ready = Some(started.elapsed());
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(500));
    let pid = serve.id().to_string();
    let rss = proc_status_kib(&pid, "VmRSS:");
    let anon = proc_status_kib(&pid, "RssAnon:");
    let peak = proc_status_kib(&pid, "VmHWM:");
    let _ = serve.kill();
    let _ = serve.wait();
    json!({"readyz_ms": ready.map(|d| d.as_secs_f64() * 1e3), "rss_kib": rss, "anon_kib": anon, "peak_kib": peak})
}

fn main() {
    let role = std::env::var("STS_GUARD_BENCH_ROLE").unwrap_or_default();
    let size = std::env::var("STS_GUARD_BENCH_SIZE").map(|s| Size::parse(&s));
    match role.as_str() {
        "api" => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve_fixtures(size.unwrap()));
            return;
        }
        "breakdown" => {
            println!("{}", breakdown(size.unwrap()));
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
        Err(_) => SIZES.to_vec(),
    };
    let run = |role: &str, size: Size| -> Value {
        let mut child = role_child(role, size);
        let line = first_line(&mut child);
        let status = child.wait().unwrap();
        assert!(status.success(), "{role} at {} failed", size.label());
        serde_json::from_str(&line).unwrap()
    };
    let mut rows = Vec::new();
    for size in sizes {
        let parts = run("breakdown", size);
        let m = run("measure", size);
        rows.push((size, parts, m));
    }
    report(&rows);
}

fn report(rows: &[(Size, Value, Value)]) {
    let kib = |v: &Value| v.as_u64().unwrap_or(0);
    println!(
        "inventory_memory: Services/StatefulSets/Nodes through the watch path (100 Services per namespace)"
    );
    println!();
    println!("Live bytes per object by kind and part (counting allocator; requested sizes):");
    println!(
        "  {:<17} {:<13} {:>7} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "size", "kind", "count", "structs", "strings", "maps", "index", "B/object"
    );
    for (size, parts, _) in rows {
        for kind in ["services", "statefulsets", "nodes"] {
            let p = &parts[kind];
            let n = p["count"].as_u64().unwrap().max(1) as f64;
            let per = |k: &str| p[k].as_u64().unwrap() as f64 / n;
            println!(
                "  {:<17} {:<13} {:>7} {:>8.0} {:>8.0} {:>8.0} {:>8.0} {:>9.0}",
                size.label(),
                kind,
                p["count"],
                per("structs"),
                per("strings"),
                per("maps"),
                per("index"),
                per("total")
            );
        }
    }
    println!();
    println!(
        "  {:<17} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8} {:>9} {:>9} {:>9}",
        "size",
        "RSS MiB",
        "+RSS",
        "+cache",
        "KiB/obj",
        "peak 1st",
        "peak 410",
        "after 410",
        "live B/o",
        "sync ms",
        "410 ms",
        "p50 µs",
        "p99 µs",
        "p50 ×st",
        "p99 ×st",
        "readyz ms"
    );
    for (size, _, m) in rows {
        let (before, after) = (kib(&m["rss_before_kib"]), kib(&m["rss_after_kib"]));
        let cache = kib(&m["anon_after_kib"]).saturating_sub(kib(&m["anon_before_kib"]));
        let objects = size.objects() as f64;
        println!(
            "  {:<17} {:>8.1} {:>8.1} {:>8.1} {:>8.2} {:>9.1} {:>9.1} {:>10.1} {:>9.0} {:>8.0} {:>8.0} {:>8.1} {:>8.1} {:>9.2} {:>9.2} {:>9.0}",
            size.label(),
            mib(after),
            mib(after.saturating_sub(before)),
            mib(cache),
            cache as f64 / objects,
            mib(kib(&m["peak_first_kib"])),
            mib(kib(&m["peak_relist_kib"])),
            mib(kib(&m["rss_after_relist_kib"])),
            m["live_bytes"].as_u64().unwrap_or(0) as f64 / objects,
            m["sync_ms"].as_f64().unwrap_or(0.0),
            m["relist_ms"].as_f64().unwrap_or(0.0),
            m["cluster_p50"].as_f64().unwrap_or(0.0),
            m["cluster_p99"].as_f64().unwrap_or(0.0),
            m["cluster_p50"].as_f64().unwrap_or(0.0) / m["static_p50"].as_f64().unwrap_or(1.0),
            m["cluster_p99"].as_f64().unwrap_or(0.0) / m["static_p99"].as_f64().unwrap_or(1.0),
            m["serve"]["readyz_ms"].as_f64().unwrap_or(f64::NAN)
        );
    }
    println!();
    println!(
        "  static inventory (baseline) p50/p99 µs, the rules straight on the watch cache (no live\n  confirmation bookkeeping) p50/p99 µs, and `sts-guard serve` RSS after /readyz:"
    );
    for (size, _, m) in rows {
        println!(
            "  {:<17} static p50 {:.1} p99 {:.1}; cache p50 {:.1} p99 {:.1}; serve RSS {:.1} MiB (anon {:.1}, peak {:.1} MiB)",
            size.label(),
            m["static_p50"].as_f64().unwrap_or(0.0),
            m["static_p99"].as_f64().unwrap_or(0.0),
            m["cache_p50"].as_f64().unwrap_or(0.0),
            m["cache_p99"].as_f64().unwrap_or(0.0),
            mib(kib(&m["serve"]["rss_kib"])),
            mib(kib(&m["serve"]["anon_kib"])),
            mib(kib(&m["serve"]["peak_kib"]))
        );
    }
    println!();
    println!(
        "  RSS MiB: this process after the sync; +RSS: over its RSS before the watches started;"
    );
    println!(
        "  +cache: the same for anonymous memory (RssAnon: heap and stacks, without the code pages"
    );
    println!(
        "  the watch path faults in once); KiB/obj: +cache per cached object; peak 1st / peak 410:"
    );
    println!(
        "  peak RSS during the first list and during a forced relist of every watch (410 Gone);"
    );
    println!(
        "  live B/o: live heap bytes per object; ×st: cluster inventory latency over the static"
    );
    println!("  inventory's (each of the three goes first in turn).");
}

//! `check` throughput on a generated set of 10,000 StatefulSets and 10,000 Services.
//!
//!     cargo bench --bench check_throughput
//!
//! Reports objects/s for the whole `check` pipeline (read, parse, index, evaluate every rule,
//! render the report) next to a baseline measured in the same run: reading and parsing the same
//! files alone. The ratio shows what the policy costs on top of the YAML reader.
//!
//! Then the "did you mean" at scale: 10,000 StatefulSets and their 10,000 headless Services
//! in one namespace, once with every `serviceName` right and once with every one misspelt (each
//! StatefulSet looks for the Services that select its pods), as a ratio of the two.

use std::path::Path;
use std::time::{Duration, Instant};
use sts_guard::check::check_objects;
use sts_guard::config::Config;
use sts_guard::inventory::load_objects;
use sts_guard::manifest::read_paths;

// The same allocator as the `sts-guard` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const NAMESPACES: usize = 100;
const PER_NAMESPACE: usize = 100;
const RUNS: usize = 7;

fn write_corpus(dir: &Path) {
    for ns in 0..NAMESPACES {
        let mut text = String::new();
        for i in 0..PER_NAMESPACE {
            // Every tenth StatefulSet is broken (non-headless or mis-selecting), like real drift.
            let cluster_ip = if i % 10 == 3 { "10.96.0.10" } else { "None" };
            let app = if i % 10 == 7 { "other" } else { "app" };
            text.push_str(&format!(
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc-{i}\n  namespace: ns-{ns}\n  labels:\n    app.kubernetes.io/name: {app}-{i}\nspec:\n  clusterIP: {cluster_ip}\n  selector:\n    app.kubernetes.io/name: {app}-{i}\n  ports:\n  - port: 80\n    name: web\n"
            ));
            text.push_str(&format!(
                "---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: sts-{i}\n  namespace: ns-{ns}\nspec:\n  serviceName: svc-{i}\n  replicas: 3\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: app-{i}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: app-{i}\n        version: \"1.2.3\"\n    spec:\n      containers:\n      - name: server\n        image: registry.example.com/server:1.2.3\n        ports:\n        - containerPort: 80\n          name: web\n        volumeMounts:\n        - name: data\n          mountPath: /var/lib/data\n        resources:\n          requests: {{cpu: 100m, memory: 128Mi}}\n  volumeClaimTemplates:\n  - metadata:\n      name: data\n    spec:\n      accessModes: [ReadWriteOnce]\n      resources:\n        requests:\n          storage: 1Gi\n"
            ));
        }
        std::fs::write(dir.join(format!("ns-{ns}.yaml")), text).unwrap();
    }
}

/// One namespace of `count` StatefulSets and their headless Services; with `typo`, every
/// `serviceName` names no Service, so each StatefulSet's "did you mean" looks for the Service
/// that selects its pods among all of them.
fn write_one_namespace(dir: &Path, count: usize, typo: bool) {
    let mut text = String::new();
    let suffix = if typo { "-svc" } else { "" };
    for i in 0..count {
        text.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: db-{i}\nspec:\n  clusterIP: None\n  selector:\n    app.kubernetes.io/name: db-{i}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: db-{i}\nspec:\n  serviceName: db-{i}{suffix}\n  replicas: 1\n  selector:\n    matchLabels:\n      app.kubernetes.io/name: db-{i}\n  template:\n    metadata:\n      labels:\n        app.kubernetes.io/name: db-{i}\n        app.kubernetes.io/part-of: shop\n    spec:\n      containers:\n      - name: db\n        image: registry.example.com/db:1\n"
        ));
    }
    std::fs::write(dir.join("one-namespace.yaml"), text).unwrap();
}

/// Median time of `check` over the files in `dir`, and the number of objects denied.
fn time_check(dir: &Path, runs: usize) -> (Duration, usize) {
    let paths = vec![dir.to_str().unwrap().to_string()];
    let config = Config::default();
    let mut samples = Vec::new();
    let mut denied = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let (manifests, errors) = read_paths(&paths, &Default::default());
        assert!(errors.is_empty());
        let (loaded, inventory) = load_objects(manifests, "default").unwrap();
        let report = check_objects(loaded, &inventory, &config);
        std::hint::black_box(sts_guard::report::text(&report));
        samples.push(start.elapsed());
        denied = report.denied();
    }
    (median(samples), denied)
}

fn did_you_mean_at_scale() {
    const COUNT: usize = 10_000;
    let right = tempfile::tempdir().unwrap();
    let misspelt = tempfile::tempdir().unwrap();
    write_one_namespace(right.path(), COUNT, false);
    write_one_namespace(misspelt.path(), COUNT, true);
    // Alternating, so that drift of the machine falls on both alike.
    let mut good = Vec::new();
    let mut bad = Vec::new();
    for _ in 0..3 {
        let (time, denied) = time_check(right.path(), 1);
        assert_eq!(denied, 0);
        good.push(time);
        let (time, denied) = time_check(misspelt.path(), 1);
        assert_eq!(denied, COUNT, "every misspelt serviceName is denied");
        bad.push(time);
    }
    let (good, bad) = (median(good), median(bad));
    println!(
        "did_you_mean: {COUNT} StatefulSets and {COUNT} headless Services in one namespace, median of 3"
    );
    println!(
        "  every serviceName right    : {:>8.1} ms",
        good.as_secs_f64() * 1e3
    );
    println!(
        "  every serviceName misspelt : {:>8.1} ms",
        bad.as_secs_f64() * 1e3
    );
    println!(
        "  misspelt / right time ratio: {:.2}",
        bad.as_secs_f64() / good.as_secs_f64()
    );
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    write_corpus(dir.path());
    let paths = vec![dir.path().to_str().unwrap().to_string()];
    let objects = NAMESPACES * PER_NAMESPACE * 2;
    let bytes: u64 = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let config = Config::default();

    let mut parse_only = Vec::new();
    let mut full = Vec::new();
    let mut denied = 0;
    for _ in 0..RUNS {
        let start = Instant::now();
        let (manifests, errors) = read_paths(&paths, &Default::default());
        assert!(errors.is_empty());
        assert_eq!(manifests.len(), objects);
        parse_only.push(start.elapsed());

        let start = Instant::now();
        let (manifests, errors) = read_paths(&paths, &Default::default());
        assert!(errors.is_empty());
        let (loaded, inventory) = load_objects(manifests, "default").unwrap();
        let report = check_objects(loaded, &inventory, &config);
        let text = sts_guard::report::text(&report);
        full.push(start.elapsed());
        denied = report.denied();
        assert!(text.len() > 1000);
    }
    assert_eq!(denied, NAMESPACES * PER_NAMESPACE / 5);
    let (base, check) = (median(parse_only), median(full));
    let rate = |d: Duration| objects as f64 / d.as_secs_f64();
    println!(
        "check_throughput: {objects} objects, {:.1} MiB, median of {RUNS} runs",
        bytes as f64 / 1048576.0
    );
    println!(
        "  baseline read+parse : {:>8.1} ms  {:>10.0} objects/s",
        base.as_secs_f64() * 1e3,
        rate(base)
    );
    println!(
        "  check (full)        : {:>8.1} ms  {:>10.0} objects/s",
        check.as_secs_f64() * 1e3,
        rate(check)
    );
    println!(
        "  check / baseline throughput ratio: {:.2}",
        rate(check) / rate(base)
    );
    println!("  denied objects: {denied}");
    did_you_mean_at_scale();
}

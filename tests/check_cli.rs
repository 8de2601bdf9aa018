//! `sts-guard check` as CI runs it: the real binary over the third-party corpus and over
//! crafted inputs, with its exit codes and output formats.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// (file, Kind/name) -> (expected verdict, expected rule), per corpus set directory.
type Expectations = BTreeMap<String, BTreeMap<(String, String), (String, String)>>;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sts-guard"))
}

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus")
}

fn run_check(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = bin()
        .arg("check")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// Every object of expected.tsv, set by set, gets the expected verdict (62 objects).
#[test]
fn corpus_verdicts_match_expected_tsv() {
    let corpus = corpus_dir();
    let tsv = std::fs::read_to_string(corpus.join("expected.tsv")).unwrap();
    // set directory -> (file, Kind/name) -> (expected, rule)
    let mut expected: Expectations = BTreeMap::new();
    for line in tsv.lines().skip(1).filter(|l| !l.trim().is_empty()) {
        let cols: Vec<&str> = line.split('\t').collect();
        let (file, object, verdict, rule) = (cols[0], cols[1], cols[2], cols[3]);
        let set = Path::new(file)
            .parent()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        expected.entry(set).or_default().insert(
            (file.to_string(), object.to_string()),
            (verdict.to_string(), rule.to_string()),
        );
    }
    let mut compared = 0;
    for (set, objects) in &expected {
        let out = run_check(
            &["--output", "json", corpus.join(set).to_str().unwrap()],
            None,
        );
        let report = json_of(&out);
        let mut seen = BTreeSet::new();
        let mut any_deny = false;
        for obj in report["objects"].as_array().unwrap() {
            let file = obj["file"].as_str().unwrap();
            let rel = Path::new(file)
                .strip_prefix(&corpus)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            let key = (
                rel,
                format!(
                    "{}/{}",
                    obj["kind"].as_str().unwrap(),
                    obj["name"].as_str().unwrap()
                ),
            );
            let (want, rule) = objects
                .get(&key)
                .unwrap_or_else(|| panic!("{key:?} not in expected.tsv"));
            let verdict = obj["verdict"].as_str().unwrap();
            let got = if verdict == "deny" { "deny" } else { "ok" };
            assert_eq!(got, want, "{key:?}: {obj:#}");
            if want == "deny" {
                any_deny = true;
                let rule_id = match rule.as_str() {
                    "not-headless" => "sts-service-headless",
                    "missing-service" => "sts-service-exists",
                    other => panic!("unmapped expected rule {other}"),
                };
                let denied: Vec<&str> = obj["violations"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|v| v["action"] == "deny")
                    .map(|v| v["rule"].as_str().unwrap())
                    .collect();
                assert_eq!(denied, vec![rule_id], "{key:?}");
            }
            seen.insert(key);
            compared += 1;
        }
        let missing: Vec<_> = objects.keys().filter(|k| !seen.contains(*k)).collect();
        assert!(
            missing.is_empty(),
            "{set}: objects not reported: {missing:?}"
        );
        assert_eq!(
            out.status.code(),
            Some(if any_deny { 1 } else { 0 }),
            "{set}"
        );
    }
    assert_eq!(compared, 62);
}

#[test]
fn whole_corpus_at_once_checks_every_file_together() {
    let out = run_check(
        &[
            "--output",
            "json",
            corpus_dir().join("manifests").to_str().unwrap(),
        ],
        None,
    );
    assert_eq!(out.status.code(), Some(1));
    let report = json_of(&out);
    assert_eq!(report["summary"]["objects"], 62);
}

#[test]
fn stdin_and_cross_file_resolution() {
    let sts = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: nginx\n  selector:\n    matchLabels: {app: nginx}\n  template:\n    metadata:\n      labels: {app: nginx}\n    spec:\n      containers: [{name: c, image: i}]\n";
    let out = run_check(&["-"], Some(sts));
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("<stdin>:1 (document 1): DENY sts-service-exists: StatefulSet default/web"),
        "{text}"
    );

    // The Service in a file given alongside satisfies the StatefulSet on stdin.
    let dir = tempfile::tempdir().unwrap();
    let svc = dir.path().join("svc.yaml");
    std::fs::write(&svc, "apiVersion: v1\nkind: Service\nmetadata: {name: nginx}\nspec: {clusterIP: None, selector: {app: nginx}}\n").unwrap();
    let out = run_check(&["-", svc.to_str().unwrap()], Some(sts));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // --namespace places objects without one; a Service elsewhere does not count.
    let out = run_check(
        &["--namespace", "prod", "-", svc.to_str().unwrap()],
        Some(sts),
    );
    assert_eq!(out.status.code(), Some(0));
    let mut other_ns = std::fs::read_to_string(&svc).unwrap();
    other_ns = other_ns.replace("{name: nginx}", "{name: nginx, namespace: other}");
    std::fs::write(&svc, other_ns).unwrap();
    let out = run_check(&["-", svc.to_str().unwrap()], Some(sts));
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn unreadable_input_exits_2_naming_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: [unclosed\n",
    )
    .unwrap();
    let out = run_check(&[bad.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("{}:", bad.display())) && err.contains("YAML"),
        "{err}"
    );

    let cases: [(&str, &[u8], &str); 5] = [
        ("notutf8.yaml", b"a: 1\nb: \xfe\n", ":2: invalid UTF-8"),
        ("bad.json", b"{\n  \"kind\": \"Service\",\n}", ":3: JSON"),
        (
            "nokind.yaml",
            b"apiVersion: v1\nmetadata: {name: x}\n",
            ":1: kind is missing",
        ),
        (
            "types.yaml",
            b"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: w}\nspec: {replicas: two}\n",
            "StatefulSet \"w\": spec.replicas: expected an integer",
        ),
        (
            "labels.yaml",
            b"apiVersion: v1\nkind: Service\nmetadata: {name: s, labels: {a: [1]}}\n",
            "metadata.labels.a",
        ),
    ];
    for (name, content, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let out = run_check(&[path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(expect), "{name}: {err}");
        assert!(err.contains(name), "{name}: {err}");
    }
    let out = run_check(&[dir.path().join("does-not-exist").to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    let out = run_check(
        &[
            "--config",
            dir.path().join("nope.yaml").to_str().unwrap(),
            "-",
        ],
        Some(""),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.yaml"));
}

#[test]
fn kubectl_list_and_other_kinds() {
    let list = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Service","metadata":{"name":"nginx"},"spec":{"clusterIP":"None","selector":{"app":"nginx"}}},
        {"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"},"spec":{"serviceName":"nginx","replicas":1,
          "template":{"metadata":{"labels":{"app":"nginx"}},"spec":{"containers":[]}}}},
        {"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"nginx"}}]}"#;
    let out = run_check(&["--output", "json", "-"], Some(list));
    assert_eq!(out.status.code(), Some(0));
    let report = json_of(&out);
    let verdicts: Vec<&str> = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["verdict"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts, vec!["ok", "ok", "skipped"]);
    assert_eq!(report["objects"][1]["line"], 3);
}

#[test]
fn sarif_output_is_what_code_scanning_reads() {
    let rabbit = corpus_dir().join("manifests/k8s-website-rabbitmq");
    let out = run_check(&["--output", "sarif", rabbit.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let sarif = json_of(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "sts-service-headless"));
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["ruleId"], "sts-service-headless");
    assert_eq!(
        rules[r["ruleIndex"].as_u64().unwrap() as usize]["id"],
        r["ruleId"]
    );
    assert_eq!(r["level"], "error");
    let loc = &r["locations"][0]["physicalLocation"];
    assert!(
        loc["artifactLocation"]["uri"]
            .as_str()
            .unwrap()
            .ends_with("k8s-website-rabbitmq/rabbitmq-statefulset.yaml")
    );
    assert_eq!(loc["region"]["startLine"], 2);
}

#[test]
fn directories_are_walked_recursively_for_manifest_extensions_only() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
    std::fs::write(dir.path().join("a/b/svc.yml"), "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None, selector: {app: x}}\n").unwrap();
    std::fs::write(dir.path().join("a/README.md"), "not: [yaml").unwrap();
    std::fs::write(dir.path().join("a/sts.json"), r#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"w"},"spec":{"serviceName":"s","template":{"metadata":{"labels":{"app":"x"}}}}}"#).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(dir.path(), dir.path().join("a/loop")).unwrap();
    let out = run_check(&["--output", "json", dir.path().to_str().unwrap()], None);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json_of(&out)["summary"]["checked"], 2);
}

#[test]
fn help_is_available_on_every_subcommand() {
    for args in [vec!["--help"], vec!["check", "--help"]] {
        let out = bin().args(&args).output().unwrap();
        assert!(out.status.success(), "{args:?}");
    }
}

/// Both cockroachdb manifests of the corpus (Kubernetes' e2e one and the examples one) mount a
/// pod-template volume named like their claim template: per-pod storage, no warning at all.
#[test]
fn cockroachdb_volume_named_like_its_claim_template_gets_no_shared_claim_warning() {
    for set in ["e2e-cockroachdb", "k8s-examples-cockroachdb"] {
        let dir = corpus_dir().join("manifests").join(set);
        let out = run_check(&["--output", "json", dir.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(0), "{set}");
        let report = json_of(&out);
        let sts = report["objects"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["kind"] == "StatefulSet")
            .unwrap();
        assert_eq!(sts["verdict"], "ok", "{set}: {sts:#}");
    }
}

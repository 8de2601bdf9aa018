//! `sts-guard check` as CI runs it: the real binary over the project's own manifests
//! (`tests/fixtures/manifests`), over crafted inputs and, as an additional suite, over the
//! third-party corpus (`../shared/corpus`, run by `.ci/run` with `--ignored`), with its exit
//! codes and output formats.

mod common;

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
    common::shared("corpus")
}

fn fixtures_dir() -> PathBuf {
    common::fixture("")
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
        // A check that refuses its flags exits before reading stdin: the pipe is then closed.
        match input.write_all(text.as_bytes()) {
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
            written => written.unwrap(),
        }
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

/// Every object of `root`/expected.tsv, set (directory) by set, gets the expected verdict and
/// a denial only by the expected rule; returns how many objects were compared.
fn verdicts_match_expected_tsv(corpus: &Path) -> usize {
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
                .strip_prefix(corpus)
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
                // The corpus names rules by what they find; the project's fixtures by rule id.
                let rule_id = match rule.as_str() {
                    "not-headless" => "sts-service-headless",
                    "missing-service" => "sts-service-exists",
                    id if id.starts_with("sts-") => id,
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
    compared
}

/// The project's own sets (tests/fixtures/manifests), object by object.
#[test]
fn fixture_verdicts_match_expected_tsv() {
    assert_eq!(verdicts_match_expected_tsv(&fixtures_dir()), 11);
}

/// The third-party corpus, object by object (62 objects).
#[test]
#[ignore = "third-party suite: needs ../shared/corpus (.ci/run runs it with --ignored)"]
fn corpus_verdicts_match_expected_tsv() {
    assert_eq!(verdicts_match_expected_tsv(&corpus_dir()), 62);
}

#[test]
#[ignore = "third-party suite: needs ../shared/corpus (.ci/run runs it with --ignored)"]
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
fn a_namespace_flag_that_names_no_namespace_exits_2_naming_the_flag() {
    let service = "apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {clusterIP: None}\n";
    for bad in ["", "Team-A", "team.a", "-team"] {
        let out = run_check(&[&format!("--namespace={bad}"), "-"], Some(service));
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("--namespace") && err.contains("not a namespace name"),
            "{bad:?}: {err}"
        );
    }
    let out = run_check(&["--namespace", "team-a", "-o", "json", "-"], Some(service));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["objects"][0]["namespace"], "team-a", "{report}");
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

/// SARIF of a set with one not-headless governing Service, whose StatefulSet starts at `line`
/// of the file ending in `file` (its one error; warnings of other rules may sit beside it).
fn sarif_is_what_code_scanning_reads(set: &Path, file: &str, line: u64) {
    let out = run_check(&["--output", "sarif", set.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(1));
    let sarif = json_of(&out);
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    assert!(rules.iter().any(|r| r["id"] == "sts-service-headless"));
    let results: Vec<&serde_json::Value> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["level"] == "error")
        .collect();
    assert_eq!(results.len(), 1, "{results:?}");
    let r = results[0];
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
            .ends_with(file)
    );
    assert_eq!(loc["region"]["startLine"], line);
}

#[test]
fn sarif_output_is_what_code_scanning_reads() {
    let set = fixtures_dir().join("manifests/not-headless");
    sarif_is_what_code_scanning_reads(&set, "not-headless/queue.yaml", 2);
}

#[test]
#[ignore = "third-party suite: needs ../shared/corpus (.ci/run runs it with --ignored)"]
fn sarif_output_on_the_corpus_is_what_code_scanning_reads() {
    let set = corpus_dir().join("manifests/k8s-website-rabbitmq");
    sarif_is_what_code_scanning_reads(&set, "k8s-website-rabbitmq/rabbitmq-statefulset.yaml", 2);
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

/// A StatefulSet that mounts a pod-template volume named like its claim template: per-pod
/// storage, no sts-shared-claim warning; its findings are exactly `expected` (rule ids).
fn volume_named_like_its_claim_template_gets_no_shared_claim_warning_in(
    dir: &Path,
    expected: &[&str],
) {
    let set = dir.display();
    let out = run_check(&["--output", "json", dir.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(0), "{set}");
    let report = json_of(&out);
    let sts = report["objects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "StatefulSet")
        .unwrap();
    let verdict = if expected.is_empty() { "ok" } else { "warn" };
    assert_eq!(sts["verdict"], verdict, "{set}: {sts:#}");
    let rules: Vec<&str> = sts["violations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, expected, "{set}: {sts:#}");
}

#[test]
fn volume_named_like_its_claim_template_gets_no_shared_claim_warning() {
    volume_named_like_its_claim_template_gets_no_shared_claim_warning_in(
        &fixtures_dir().join("manifests/claim-template-volume"),
        &[],
    );
}

/// Both cockroachdb manifests of the corpus (Kubernetes' e2e one and the examples one) mount a
/// pod-template volume named like their claim template.
#[test]
#[ignore = "third-party suite: needs ../shared/corpus (.ci/run runs it with --ignored)"]
fn cockroachdb_volume_named_like_its_claim_template_gets_no_shared_claim_warning() {
    for set in ["e2e-cockroachdb", "k8s-examples-cockroachdb"] {
        // OrderedReady without a readinessProbe: their one warning is sts-ready-ordering.
        volume_named_like_its_claim_template_gets_no_shared_claim_warning_in(
            &corpus_dir().join("manifests").join(set),
            &["sts-ready-ordering"],
        );
    }
}

/// A StatefulSet whose governing Service does not exist: `check` must deny it.
const ORPHAN_STS: &str = "apiVersion: apps/v1\nkind: StatefulSet\nmetadata:\n  name: web\nspec:\n  serviceName: nginx\n  selector:\n    matchLabels: {app: nginx}\n  template:\n    metadata:\n      labels: {app: nginx}\n    spec:\n      containers: [{name: c, image: i}]\n";

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_nul_or_other_control_character_is_refused_with_its_line_not_read_past() {
    // yaml-rust2 ended the stream at the NUL: the StatefulSet after it was never checked.
    let dir = tempfile::tempdir().unwrap();
    for (name, comment, line) in [
        ("nul.yaml", "# generated \0 by a tool\n", 1),
        ("soh.yaml", "# generated \u{1} by a tool\n", 1),
    ] {
        let path = dir.path().join(name);
        std::fs::write(
            &path,
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: c}}\n---\n{comment}---\n{ORPHAN_STS}"),
        )
        .unwrap();
        let out = run_check(&[path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr_of(&out));
        let err = stderr_of(&out);
        assert!(
            err.contains(&format!("{name}:{}: YAML: control character", line + 4)),
            "{name}: {err}"
        );
    }
    let out = run_check(&["-"], Some(&format!("{ORPHAN_STS}# \0\n")));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("<stdin>:14: YAML: control character U+0000"));
}

#[test]
fn byte_order_marks_and_utf16_are_read_as_kubectl_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let utf16 = |bom: [u8; 2], le: bool| -> Vec<u8> {
        let units = ORPHAN_STS.encode_utf16();
        let body: Vec<u8> = if le {
            units.flat_map(u16::to_le_bytes).collect()
        } else {
            units.flat_map(u16::to_be_bytes).collect()
        };
        [bom.as_slice(), &body].concat()
    };
    let cases: [(&str, Vec<u8>); 4] = [
        ("bom.yaml", [b"\xEF\xBB\xBF", ORPHAN_STS.as_bytes()].concat()),
        (
            "bom.json",
            [
                b"\xEF\xBB\xBF".as_slice(),
                br#"{"apiVersion":"apps/v1","kind":"StatefulSet","metadata":{"name":"web"},"spec":{"serviceName":"nginx"}}"#,
            ]
            .concat(),
        ),
        ("utf16le.yaml", utf16([0xFF, 0xFE], true)),
        ("utf16be.yaml", utf16([0xFE, 0xFF], false)),
    ];
    for (name, bytes) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = run_check(&["--output", "json", path.to_str().unwrap()], None);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr_of(&out));
        let report = json_of(&out);
        assert_eq!(report["objects"][0]["verdict"], "deny", "{name}");
        assert_eq!(report["objects"][0]["line"], 1, "{name}");
    }
    let out = run_check(&["-"], Some(&format!("\u{FEFF}{ORPHAN_STS}")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
}

#[test]
fn lists_are_read_as_kubectl_reads_them() {
    // Any object with an `items` array is a list to kubectl, whatever its kind.
    let indented: String = ORPHAN_STS.lines().map(|l| format!("    {l}\n")).collect();
    let foo = format!("apiVersion: v1\nkind: Foo\nitems:\n  -\n{indented}");
    let out = run_check(&["--output", "json", "-"], Some(&foo));
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    assert_eq!(json_of(&out)["objects"][0]["kind"], "StatefulSet");

    // kubectl refuses a List nested in a List; so does check, naming the nested list's line.
    let nested = format!(
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  metadata: {{name: c}}\n- apiVersion: v1\n  kind: List\n  items:\n  -\n{indented}"
    );
    let out = run_check(&["-"], Some(&nested));
    assert_eq!(out.status.code(), Some(2), "{}", stderr_of(&out));
    assert!(
        stderr_of(&out).contains("<stdin>:7: items[1] of the List is itself a list"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn inputs_over_the_size_limits_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    // 1,416 bytes each.
    let body = format!("---\n{ORPHAN_STS}").repeat(6);
    std::fs::write(&a, &body).unwrap();
    std::fs::write(&b, &body).unwrap();
    let (a, b) = (a.to_str().unwrap(), b.to_str().unwrap());

    let out = run_check(&["--max-file-size", "1Ki", a], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!(
            "{a}: 1.4 KiB, larger than the limit of 1 KiB per file (--max-file-size)"
        )),
        "{err}"
    );
    let out = run_check(&["--max-file-size", "1Ki", "-"], Some(&body));
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr_of(&out).contains("<stdin>: larger than the limit of 1 KiB per file"));

    let out = run_check(&["--max-total-size", "2Ki", a, b], None);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr_of(&out);
    assert!(
        err.contains(&format!("{b}: with this input, the inputs are larger than the limit of 2 KiB in total (--max-total-size)")),
        "{err}"
    );
    assert!(!err.contains(&format!("{a}:")), "{err}");
    let out = run_check(&["--max-total-size", "3Ki", a, b], None);
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));

    // The default: 64 MiB per file, refused from its size before a byte is read (a sparse file).
    let big = dir.path().join("big.yaml");
    std::fs::File::create(&big)
        .unwrap()
        .set_len((64 << 20) + 1)
        .unwrap();
    let out = run_check(&[big.to_str().unwrap()], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_of(&out).contains("larger than the limit of 64 MiB per file"),
        "{}",
        stderr_of(&out)
    );
}

#[test]
fn hostile_yaml_is_read_as_kubectl_reads_it() {
    // Under-indented multi-line quoted scalars (libyaml accepts them) and a merge that
    // overrides a key written before it (go-yaml sets merged keys in order): both decide
    // the verdict here.
    let mut src = String::from("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\ndata:\n");
    for i in 0..500 {
        src.push_str(&format!("  k{i}: '[\n  x,\n  ]'\n"));
    }
    src.push_str(&format!("---\n{ORPHAN_STS}"));
    src = src.replace(
        "  serviceName: nginx\n",
        "  serviceName: nginx-headless\n  <<: {serviceName: nginx}\n",
    );
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: nginx-headless}\nspec: {clusterIP: None, selector: {app: nginx}}\n---\n";
    let out = run_check(&["--output", "json", "-"], Some(&format!("{svc}{src}")));
    assert_eq!(out.status.code(), Some(1), "{}", stderr_of(&out));
    let report = json_of(&out);
    assert_eq!(report["objects"][2]["kind"], "StatefulSet");
    assert_eq!(report["objects"][2]["verdict"], "deny");
    assert_eq!(report["objects"][2]["line"], 1512);
}

#[test]
fn serve_and_review_read_manifests_within_the_same_limits() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.yaml");
    std::fs::write(&big, format!("---\n{ORPHAN_STS}").repeat(8)).unwrap();
    let nul = dir.path().join("nul.yaml");
    std::fs::write(&nul, format!("{ORPHAN_STS}# \0\n")).unwrap();
    for (manifests, limit, expected) in [
        (
            &big,
            "1Ki",
            "big.yaml: 1.8 KiB, larger than the limit of 1 KiB per file",
        ),
        (&nul, "1Mi", "nul.yaml:14: YAML: control character U+0000"),
    ] {
        for command in ["serve", "review"] {
            let mut cmd = bin();
            cmd.args([command, "--max-file-size", limit, "--manifests"])
                .arg(manifests)
                .stdin(Stdio::null());
            if command == "serve" {
                // Were the manifests read, it would go on to create certificates here.
                cmd.arg("--certs-dir").arg(dir.path().join("certs"));
            }
            let out = cmd.output().unwrap();
            assert!(!out.status.success(), "{command}");
            let err = stderr_of(&out);
            assert!(
                err.starts_with(&format!("sts-guard {command}: --manifests: "))
                    && err.contains(expected),
                "{command}: {err}"
            );
        }
    }
}

/// The pod template rules in CI: a StatefulSet that deletes its pods at once and one whose
/// ordered start waits for nothing warn (exit 0), in text and in SARIF.
#[test]
fn check_warns_of_zero_grace_and_of_ordered_start_without_readiness() {
    let manifests = "apiVersion: v1\nkind: Service\nmetadata: {name: db}\nspec: {clusterIP: None, selector: {app: db}}\n---\napiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  serviceName: db\n  replicas: 3\n  selector: {matchLabels: {app: db}}\n  template:\n    metadata: {labels: {app: db}}\n    spec:\n      terminationGracePeriodSeconds: 0\n      containers: [{name: db, image: db:1}]\n";
    let out = run_check(&["-"], Some(manifests));
    assert_eq!(out.status.code(), Some(0), "{}", stderr_of(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "<stdin>:6 (document 2): WARN sts-zero-grace: StatefulSet default/db: spec.template.spec.terminationGracePeriodSeconds is 0",
        "WARN sts-ready-ordering: StatefulSet default/db: podManagementPolicy OrderedReady starts db-1 only once the pod before it is Ready",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from\n{text}");
    }
    let sarif = json_of(&run_check(&["--output", "sarif", "-"], Some(manifests)));
    let run = &sarif["runs"][0];
    let ids: Vec<&str> = run["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"sts-zero-grace") && ids.contains(&"sts-ready-ordering"),
        "{ids:?}"
    );
    let results: Vec<&str> = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert_eq!(results, ["sts-zero-grace", "sts-ready-ordering"]);
}

//! The real server on a real TLS socket (127.0.0.1:0, rcgen certificates), over HTTP/1.1 and
//! HTTP/2, with AdmissionReview JSON as kube-apiserver sends it.

mod common;

use base64::Engine;
use common::client::{Conn, Proto, request, write_certs};
use common::*;
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use sts_guard::config::Config;
use sts_guard::engine::Evaluator;
use sts_guard::inventory::StaticInventory;
use sts_guard::server::metrics::Metrics;
use sts_guard::server::{self, Running, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct TestServer {
    running: Option<Running>,
    addr: SocketAddr,
    ca: Vec<u8>,
    dir: tempfile::TempDir,
}

impl TestServer {
    fn cert_dir(&self) -> &Path {
        self.dir.path()
    }
}

fn options(dir: &Path) -> ServerOptions {
    ServerOptions {
        body_limit: 64 * 1024,
        header_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_millis(500),
        idle_timeout: Duration::from_secs(2),
        drain_timeout: Duration::from_secs(5),
        cert_reload_interval: Duration::from_millis(100),
        ..common::server_options(dir)
    }
}

fn default_inventory() -> StaticInventory {
    inventory(&[
        svc("nginx"),
        svc("web-client").set("spec.clusterIP", json!("10.0.0.5")),
        sts("web"),
        node("node-a"),
    ])
}

async fn start_with(inv: StaticInventory, config: Config) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let inv: Arc<dyn Evaluator> = Arc::new(inv);
    let running = server::start(
        options(dir.path()),
        inv,
        Arc::new(config),
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    TestServer {
        addr: running.local_addr,
        running: Some(running),
        ca,
        dir,
    }
}

async fn start() -> TestServer {
    start_with(default_inventory(), Config::default()).await
}

async fn post_review(s: &TestServer, proto: Proto, path: &str, review: &Value) -> Value {
    let (status, body) = request(
        s.addr,
        &s.ca,
        proto,
        "POST",
        path,
        serde_json::to_vec(review).unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let answer: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["uid"], review["request"]["uid"],
        "uid echoed"
    );
    answer["response"].clone()
}

/// The identity variables `pod-identity-env` adds, by their default names.
const IDENTITY_VARIABLES: [&str; 7] = [
    "POD_NAME",
    "POD_NAMESPACE",
    "POD_ORDINAL",
    "STATEFULSET_NAME",
    "POD_HOSTNAME",
    "STATEFULSET_SERVICE",
    "POD_FQDN",
];

/// POSTs an admin's review to `/mutate` and returns the response.
async fn mutate(
    s: &TestServer,
    proto: Proto,
    op: &str,
    object: Option<&Obj>,
    old: Option<&Obj>,
) -> Value {
    post_review(s, proto, "/mutate", &admin_review(op, object, old)).await
}

fn admin_review(op: &str, object: Option<&Obj>, old: Option<&Obj>) -> Value {
    let options = match op {
        "DELETE" => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
        "UPDATE" => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
        _ => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
    };
    review_json(
        op,
        object,
        old,
        "kubernetes-admin",
        &["system:masters", "system:authenticated"],
        options,
    )
}

/// The patch of a response, decoded from base64.
fn patch_of(response: &Value) -> Option<json_patch::Patch> {
    let encoded = response
        .get("patch")?
        .as_str()
        .expect("patch is a base64 string");
    assert_eq!(response["patchType"], "JSONPatch");
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .unwrap();
    Some(serde_json::from_slice(&bytes).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rule_allows_denies_or_warns_through_validate() {
    let s = start().await;
    let shared_claim = sts("web").set(
        "spec.template.spec.volumes",
        json!([{"name": "d", "persistentVolumeClaim": {"claimName": "d"}}]),
    );
    let old_partitioned = sts("web").set(
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 9}}),
    );
    let new_partitioned = old_partitioned.clone().set(
        "spec.template.spec.containers",
        json!([{"name": "nginx", "image": "nginx:2"}]),
    );
    let mut force = admin_review("DELETE", None, Some(&sts_pod(1, "node-a")));
    force["request"]["options"]["gracePeriodSeconds"] = json!(0);
    let mut kubelet_force = force.clone();
    kubelet_force["request"]["userInfo"] =
        json!({"username": "system:node:node-a", "groups": ["system:nodes"]});
    // (case, review, allowed, rule expected in the message or warnings)
    let cases: Vec<(&str, Value, bool, Option<&str>)> = vec![
        (
            "valid statefulset",
            admin_review("CREATE", Some(&sts("web")), None),
            true,
            None,
        ),
        (
            "sts-service-name",
            admin_review(
                "CREATE",
                Some(&sts("web").set("spec.serviceName", json!(""))),
                None,
            ),
            false,
            Some("sts-service-name"),
        ),
        (
            "sts-service-exists",
            admin_review(
                "CREATE",
                Some(&sts("web").set("spec.serviceName", json!("nginx-svc"))),
                None,
            ),
            false,
            Some("sts-service-exists"),
        ),
        (
            "sts-service-headless",
            admin_review(
                "CREATE",
                Some(&sts("db").set("spec.serviceName", json!("web-client"))),
                None,
            ),
            false,
            Some("sts-service-headless"),
        ),
        (
            "sts-partition-range",
            admin_review("UPDATE", Some(&new_partitioned), Some(&old_partitioned)),
            true,
            Some("sts-partition-range"),
        ),
        (
            "sts-shared-claim",
            admin_review("CREATE", Some(&shared_claim), None),
            true,
            Some("sts-shared-claim"),
        ),
        (
            "sts-pvc-retention",
            admin_review(
                "CREATE",
                Some(&sts("web").set(
                    "spec.persistentVolumeClaimRetentionPolicy",
                    json!({"whenDeleted": "Delete"}),
                )),
                None,
            ),
            true,
            Some("sts-pvc-retention"),
        ),
        (
            "sts-ordered-delete",
            admin_review("DELETE", None, Some(&sts("web"))),
            true,
            Some("sts-ordered-delete"),
        ),
        (
            "svc-governing-headless",
            admin_review(
                "UPDATE",
                Some(&svc("nginx").set("spec.clusterIP", json!("10.0.0.1"))),
                Some(&svc("nginx")),
            ),
            false,
            Some("svc-governing-headless"),
        ),
        (
            "svc-governing-selector",
            admin_review(
                "UPDATE",
                Some(&svc("nginx").set("spec.selector", json!({"app": "x"}))),
                Some(&svc("nginx")),
            ),
            false,
            Some("svc-governing-selector"),
        ),
        (
            "svc-governing-delete",
            admin_review("DELETE", None, Some(&svc("nginx"))),
            false,
            Some("svc-governing-delete"),
        ),
        (
            "unrelated service delete",
            admin_review("DELETE", None, Some(&svc("other"))),
            true,
            None,
        ),
        ("pod-force-delete", force, false, Some("pod-force-delete")),
        ("kubelet final delete", kubelet_force, true, None),
    ];
    for (i, (name, review, allowed, rule)) in cases.into_iter().enumerate() {
        let proto = Proto::BOTH[i % 2];
        let response = post_review(&s, proto, "/validate", &review).await;
        assert_eq!(response["allowed"], allowed, "{name}: {response:#}");
        if !allowed {
            assert_eq!(response["status"]["code"], 403, "{name}");
            assert_eq!(response["status"]["reason"], "Forbidden");
            assert!(
                response["status"]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with(rule.unwrap()),
                "{name}: {response:#}"
            );
        } else if let Some(rule) = rule {
            let warnings = response["warnings"]
                .as_array()
                .unwrap_or_else(|| panic!("{name}: no warnings"));
            assert!(
                warnings
                    .iter()
                    .any(|w| w.as_str().unwrap().starts_with(rule)),
                "{name}: {warnings:?}"
            );
        } else {
            assert!(response.get("warnings").is_none(), "{name}: {response:#}");
        }
        assert!(response.get("patch").is_none(), "validate never patches");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_lists_every_denying_rule() {
    let broken = svc("web-client")
        .set("spec.clusterIP", json!("10.0.0.1"))
        .set("spec.selector", json!({"app": "other"}));
    let s = start_with(inventory(&[broken]), Config::default()).await;
    let review = admin_review(
        "CREATE",
        Some(&sts("db").set("spec.serviceName", json!("web-client"))),
        None,
    );
    for proto in Proto::BOTH {
        let response = post_review(&s, proto, "/validate", &review).await;
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("sts-service-headless")
                && message.contains("sts-service-selects-pods"),
            "{message}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_adds_identity_env_once_and_keeps_user_values() {
    let s = start().await;
    let pod = sts_pod(2, "node-a")
        .set("metadata.labels", json!({"app": "nginx", "app.kubernetes.io/name": "x", "apps.kubernetes.io/pod-index": "2"}))
        .set("spec.containers", json!([
            {"name": "app", "image": "a", "env": [{"name": "POD_NAME", "value": "mine"}, {"name": "OTHER", "value": "1"}]},
            {"name": "sidecar", "image": "b"}
        ]))
        .set("spec.initContainers", json!([{"name": "init", "image": "c", "env": null}]))
        .set("metadata.annotations", json!({"example.com/a~b/c": "kept", "app.kubernetes.io/name": "web"}));
    for proto in Proto::BOTH {
        let review = admin_review("CREATE", Some(&pod), None);
        let response = post_review(&s, proto, "/mutate", &review).await;
        assert_eq!(response["allowed"], true);
        let patch = patch_of(&response).expect("a patch");
        let mut patched = review["request"]["object"].clone();
        json_patch::patch(&mut patched, &patch).unwrap();

        for (path, container) in [("containers", 0), ("containers", 1), ("initContainers", 0)] {
            let env = patched["spec"][path][container]["env"].as_array().unwrap();
            let names: Vec<&str> = env.iter().map(|e| e["name"].as_str().unwrap()).collect();
            for name in IDENTITY_VARIABLES {
                assert_eq!(
                    names.iter().filter(|n| **n == name).count(),
                    1,
                    "{path}[{container}] {name}: {names:?}"
                );
            }
            let get = |n: &str| env.iter().find(|e| e["name"] == n).unwrap().clone();
            assert_eq!(get("POD_ORDINAL")["value"], "2");
            assert_eq!(
                get("POD_FQDN")["value"],
                "web-2.nginx.default.svc.cluster.local"
            );
            assert_eq!(
                get("POD_NAMESPACE")["valueFrom"]["fieldRef"]["fieldPath"],
                "metadata.namespace"
            );
        }
        let app_env = patched["spec"]["containers"][0]["env"].as_array().unwrap();
        assert_eq!(
            app_env[0],
            json!({"name": "POD_NAME", "value": "mine"}),
            "the user's definition wins"
        );
        assert_eq!(app_env[1], json!({"name": "OTHER", "value": "1"}));
        // Nothing else changed: keys with '/' and '~' are intact.
        let mut without_env = patched.clone();
        let mut original = review["request"]["object"].clone();
        for v in [&mut without_env, &mut original] {
            for (path, i) in [("containers", 0), ("containers", 1), ("initContainers", 0)] {
                v["spec"][path][i].as_object_mut().unwrap().remove("env");
            }
        }
        assert_eq!(without_env, original);

        // Reinvocation: the patched pod gets no second patch.
        let again = admin_review("CREATE", Some(&Obj(patched)), None);
        let response = post_review(&s, proto, "/mutate", &again).await;
        assert!(response.get("patch").is_none(), "{response:#}");
    }
}

/// `env` overrides `envFrom` in Kubernetes, and the keys of a ConfigMap or Secret are not
/// known at admission, so an identity variable that an `envFrom` could define is left out,
/// with a warning that says which and why. The shapes are those charts render for
/// `extraEnvVarsCM`/`envFrom`: one unprefixed ConfigMap, and prefixed ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_leaves_out_identity_names_an_env_from_could_define() {
    let s = start().await;
    let pod = sts_pod(2, "node-a")
        .set("spec.containers", json!([
            {"name": "kafka", "image": "a",
             "envFrom": [{"configMapRef": {"name": "kafka-env"}}],
             "env": [{"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]},
            {"name": "exporter", "image": "b",
             "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "exporter-cfg"}},
                         {"prefix": "POD_", "secretRef": {"name": "exporter-creds"}}]},
            {"name": "plain", "image": "c", "envFrom": [{"prefix": "CFG_", "configMapRef": {"name": "c"}}]}
        ]))
        .set("spec.initContainers", json!([{"name": "init", "image": "d"}]));
    let review = admin_review("CREATE", Some(&pod), None);
    let response = post_review(&s, Proto::Http2, "/mutate", &review).await;
    assert_eq!(response["allowed"], true);
    let mut patched = review["request"]["object"].clone();
    json_patch::patch(&mut patched, &patch_of(&response).expect("a patch")).unwrap();
    let names = |path: &str, i: usize| -> Vec<String> {
        patched["spec"][path][i]["env"]
            .as_array()
            .map(|env| {
                env.iter()
                    .map(|e| e["name"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let all = IDENTITY_VARIABLES;
    // Unprefixed: the ConfigMap could hold any name; only the user's own env entry is there.
    assert_eq!(names("containers", 0), vec!["POD_NAME"]);
    // Prefix POD_ on the Secret: the POD_* names are left out, the others added.
    assert_eq!(
        names("containers", 1),
        vec!["STATEFULSET_NAME", "STATEFULSET_SERVICE"]
    );
    // A prefix no identity name starts with changes nothing; nor does no envFrom at all.
    assert_eq!(names("containers", 2), all);
    assert_eq!(names("initContainers", 0), all);
    assert_eq!(
        response["warnings"],
        json!([
            "pod-identity-env: Pod default/web-2: container \"kafka\": POD_NAMESPACE, POD_ORDINAL, \
             STATEFULSET_NAME, POD_HOSTNAME, STATEFULSET_SERVICE and POD_FQDN not added, since \
             ConfigMap \"kafka-env\" (envFrom, no prefix) may define them; container \"exporter\": \
             POD_NAME, POD_NAMESPACE, POD_ORDINAL, POD_HOSTNAME and POD_FQDN not added, since Secret \
             \"exporter-creds\" (envFrom prefix \"POD_\") may define them (an env entry would \
             override envFrom). To get them, give that envFrom a prefix these names do not start \
             with, or define them in env."
        ])
    );
    // Reinvocation adds nothing and says the same.
    let again = admin_review("CREATE", Some(&Obj(patched.clone())), None);
    let response = post_review(&s, Proto::Http1, "/mutate", &again).await;
    assert!(response.get("patch").is_none(), "{response:#}");
    assert_eq!(response["warnings"].as_array().unwrap().len(), 1);

    // Every container sourcing everything from an unprefixed envFrom: no patch at all.
    let only_env_from = sts_pod(0, "node-a").set(
        "spec.containers",
        json!([{"name": "kafka", "image": "a", "envFrom": [{"configMapRef": {"name": "kafka-env"}}]}]),
    );
    let response = mutate(&s, Proto::Http2, "CREATE", Some(&only_env_from), None).await;
    assert!(response.get("patch").is_none(), "{response:#}");
    assert_eq!(response["allowed"], true);

    // A malformed envFrom names its path.
    let bad = sts_pod(0, "node-a").set(
        "spec.containers",
        json!([{"name": "kafka", "image": "a", "envFrom": [{"prefix": 7}]}]),
    );
    let response = mutate(&s, Proto::Http2, "CREATE", Some(&bad), None).await;
    assert_eq!(response["allowed"], false);
    assert!(
        response["status"]["message"]
            .as_str()
            .unwrap()
            .contains("spec.containers[0].envFrom[0].prefix: expected a string"),
        "{response:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_derives_the_ordinal_from_the_name_and_honours_opt_out() {
    let s = start().await;
    let no_label = sts_pod(7, "node-a")
        .remove("metadata.labels")
        .remove("spec.subdomain");
    let response = mutate(&s, Proto::Http2, "CREATE", Some(&no_label), None).await;
    let mut pod = no_label.value();
    json_patch::patch(&mut pod, &patch_of(&response).unwrap()).unwrap();
    let env = pod["spec"]["containers"][0]["env"].as_array().unwrap();
    assert!(
        env.iter()
            .any(|e| e["name"] == "POD_ORDINAL" && e["value"] == "7")
    );
    assert!(
        !env.iter().any(|e| e["name"] == "POD_FQDN"),
        "no subdomain, no FQDN"
    );

    // spec.ordinals.start naming: web-5 is ordinal 5 whatever the start.
    let started = sts_pod(5, "node-a").remove("metadata.labels");
    let response = mutate(&s, Proto::Http1, "CREATE", Some(&started), None).await;
    let mut pod = started.value();
    json_patch::patch(&mut pod, &patch_of(&response).unwrap()).unwrap();
    assert!(
        pod["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["name"] == "POD_ORDINAL" && e["value"] == "5")
    );

    let opted_out = sts_pod(1, "node-a").set(
        "metadata.annotations",
        json!({"sts-guard.io/inject-identity": "false"}),
    );
    let response = mutate(&s, Proto::Http1, "CREATE", Some(&opted_out), None).await;
    assert!(response.get("patch").is_none());

    let unknown = sts_pod(1, "node-a")
        .remove("metadata.labels")
        .set("metadata.name", json!("web-x"));
    let response = mutate(&s, Proto::Http2, "CREATE", Some(&unknown), None).await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    assert!(
        first_warning(&response)
            .starts_with("pod-identity-env: Pod default/web-x: cannot tell its ordinal")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutate_sets_partitions_and_stages_canaries() {
    let s = start().await;
    // CREATE without a partition: explicit 0.
    let response = mutate(&s, Proto::Http2, "CREATE", Some(&sts("web")), None).await;
    let mut obj = sts("web").value();
    json_patch::patch(&mut obj, &patch_of(&response).unwrap()).unwrap();
    assert_eq!(
        obj["spec"]["updateStrategy"],
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
    );
    let ondelete = sts("web").set("spec.updateStrategy", json!({"type": "OnDelete"}));
    assert!(
        mutate(&s, Proto::Http1, "CREATE", Some(&ondelete), None)
            .await
            .get("patch")
            .is_none()
    );

    // Canary annotation: a template change is staged onto the highest ordinal.
    let old = Obj(obj.clone()).set("metadata.annotations", json!({"sts-guard.io/canary": "1"}));
    let new = old.clone().set(
        "spec.template.spec.containers",
        json!([{"name": "nginx", "image": "nginx:2"}]),
    );
    let review = admin_review("UPDATE", Some(&new), Some(&old));
    let response = post_review(&s, Proto::Http2, "/mutate", &review).await;
    let mut staged = new.value();
    json_patch::patch(&mut staged, &patch_of(&response).unwrap()).unwrap();
    assert_eq!(
        staged["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        2
    );
    assert!(first_warning(&response).contains("promote by lowering"));
    // Reinvocation with the staged object: the partition now differs from the old one.
    let again = mutate(&s, Proto::Http1, "UPDATE", Some(&Obj(staged)), Some(&old)).await;
    assert!(again.get("patch").is_none());
    // An UPDATE that sets the partition itself is never touched.
    let explicit = new
        .clone()
        .set("spec.updateStrategy.rollingUpdate.partition", json!(1));
    assert!(
        mutate(&s, Proto::Http1, "UPDATE", Some(&explicit), Some(&old))
            .await
            .get("patch")
            .is_none()
    );
    // Never lowers a partition the user set.
    let high_old = old
        .clone()
        .set("spec.updateStrategy.rollingUpdate.partition", json!(3));
    let high_new = high_old.clone().set(
        "spec.template.spec.containers",
        json!([{"name": "nginx", "image": "nginx:3"}]),
    );
    assert!(
        mutate(&s, Proto::Http1, "UPDATE", Some(&high_new), Some(&high_old))
            .await
            .get("patch")
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn canary_from_config_for_a_namespace() {
    let config = Config::parse("partition:\n  canary:\n    default: 2\n", "c").unwrap();
    let s = start_with(default_inventory(), config).await;
    let old = sts("web").set("spec.replicas", json!(5)).set(
        "spec.updateStrategy",
        json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}}),
    );
    let new = old.clone().set(
        "spec.template.metadata.annotations",
        json!({"restartedAt": "now"}),
    );
    let response = mutate(&s, Proto::Http2, "UPDATE", Some(&new), Some(&old)).await;
    let mut obj = new.value();
    json_patch::patch(&mut obj, &patch_of(&response).unwrap()).unwrap();
    assert_eq!(
        obj["spec"]["updateStrategy"]["rollingUpdate"]["partition"],
        3
    );
}

/// The status of a POST whose declared length is over the body limit. The server answers
/// from the headers without reading the body; over HTTP/1.1 it then closes, so a client still
/// writing 100 KiB could fail with a broken pipe before it reads the answer: only the headers
/// and the first bytes are sent.
async fn declared_too_large(s: &TestServer, proto: Proto) -> u16 {
    let declared = 100 * 1024;
    if proto == Proto::Http2 {
        let body = vec![b' '; declared];
        return request(s.addr, &s.ca, proto, "POST", "/mutate", body)
            .await
            .0
            .as_u16();
    }
    let mut tls = common::client::tls_connect(s.addr, &s.ca, Proto::Http1)
        .await
        .unwrap();
    let head = format!(
        "POST /mutate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n    "
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    let answer = String::from_utf8_lossy(&answer);
    let status = answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    status.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_bodies_get_400_and_oversized_ones_413() {
    let s = start().await;
    for proto in Proto::BOTH {
        for (body, reason) in [
            (b"not json".to_vec(), "not an AdmissionReview"),
            (
                b"{\"kind\":\"Pod\",\"apiVersion\":\"v1\"}".to_vec(),
                "expected kind AdmissionReview",
            ),
            (
                b"{\"kind\":\"AdmissionReview\",\"apiVersion\":\"admission.k8s.io/v1\"}".to_vec(),
                "has no request",
            ),
            (vec![0xff, 0xfe, 0x00], "not an AdmissionReview"),
        ] {
            let (status, text) = request(s.addr, &s.ca, proto, "POST", "/validate", body).await;
            assert_eq!(status, 400);
            assert!(
                String::from_utf8_lossy(&text).contains(reason),
                "{}",
                String::from_utf8_lossy(&text)
            );
        }
        assert_eq!(declared_too_large(&s, proto).await, 413);
        // Kinds the endpoint does not handle are allowed unchanged.
        let deployment = Obj(
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "namespace": "default"}, "spec": {}}),
        );
        let response = mutate(&s, proto, "CREATE", Some(&deployment), None).await;
        assert_eq!(response["allowed"], true);
        assert!(response.get("patch").is_none());
    }
    // The server is still healthy after all that.
    let (status, _) = request(s.addr, &s.ca, Proto::Http1, "GET", "/healthz", vec![]).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_times_out_and_slow_headers_are_cut_off() {
    let s = start().await;
    // Headers promise a body that never comes: 408 after the request timeout.
    let mut tls = common::client::tls_connect(s.addr, &s.ca, Proto::Http1)
        .await
        .unwrap();
    tls.write_all(b"POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let started = Instant::now();
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // Headers that never finish: the connection is closed after the header timeout.
    let mut tls = common::client::tls_connect(s.addr, &s.ca, Proto::Http1)
        .await
        .unwrap();
    tls.write_all(b"POST /validate HTTP/1.1\r\nhost: loc")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "connection left open");

    // A TCP client that never starts TLS is dropped too.
    let mut tcp = tokio::net::TcpStream::connect(s.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let closed = tokio::time::timeout(Duration::from_secs(10), tcp.read(&mut buf)).await;
    assert!(matches!(closed, Ok(Ok(0)) | Ok(Err(_))), "{closed:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics() {
    let s = start().await;
    for proto in Proto::BOTH {
        let (status, body) = request(s.addr, &s.ca, proto, "GET", "/healthz", vec![]).await;
        assert_eq!((status.as_u16(), &body[..]), (200, &b"ok\n"[..]));
        let (status, _) = request(s.addr, &s.ca, proto, "GET", "/readyz", vec![]).await;
        assert_eq!(status, 200);
    }
    post_review(
        &s,
        Proto::Http2,
        "/validate",
        &admin_review(
            "CREATE",
            Some(&sts("web").set("spec.serviceName", json!("x"))),
            None,
        ),
    )
    .await;
    let (_, body) = request(s.addr, &s.ca, Proto::Http1, "GET", "/metrics", vec![]).await;
    let text = String::from_utf8_lossy(&body);
    for needle in [
        "sts_guard_admission_requests_total{endpoint=\"validate\",kind=\"StatefulSet\",operation=\"CREATE\",decision=\"deny\"} 1",
        "sts_guard_rule_violations_total{rule=\"sts-service-exists\",action=\"deny\"} 1",
        "sts_guard_admission_duration_seconds_bucket{le=\"30.0\",endpoint=\"validate\"} 1",
        "sts_guard_certificate_expiry_timestamp_seconds ",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains("namespace="), "no per-namespace labels");
    // Readiness drops as soon as shutdown starts.
    let ready = s.running.as_ref().unwrap().ready.clone();
    s.running.unwrap().shutdown().await;
    assert!(!ready.load(std::sync::atomic::Ordering::Acquire));
}

/// Polls `check` until it holds or the deadline passes.
async fn eventually<F, Fut>(what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let (within, every) = (Duration::from_secs(10), Duration::from_millis(50));
    common::eventually(what, within, every, check).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_rotate_without_dropping_connections() {
    let s = start().await;
    let mut open = Conn::open(s.addr, &s.ca, Proto::Http2).await.unwrap();
    assert_eq!(open.send("GET", "/healthz", vec![]).await.unwrap().0, 200);

    // Rotate as the kubelet does: new files appear behind a swapped `..data` symlink.
    let staging = s.cert_dir().join("..2026_rotated");
    std::fs::create_dir_all(&staging).unwrap();
    let new_ca = write_certs(&staging);
    for name in ["tls.crt", "tls.key"] {
        let target = s.cert_dir().join(name);
        let tmp = s.cert_dir().join(format!("{name}.tmp"));
        std::os::unix::fs::symlink(staging.join(name), &tmp).unwrap();
        std::fs::rename(&tmp, &target).unwrap();
    }
    let addr = s.addr;
    eventually("a new connection to present the new certificate", || {
        let ca = new_ca.clone();
        async move { Conn::open(addr, &ca, Proto::Http1).await.is_ok() }
    })
    .await;
    assert!(
        Conn::open(s.addr, &s.ca, Proto::Http1).await.is_err(),
        "old CA no longer verifies"
    );
    // The connection opened before the rotation keeps working.
    assert_eq!(open.send("GET", "/healthz", vec![]).await.unwrap().0, 200);

    // A broken reload keeps the last good pair.
    std::fs::write(s.cert_dir().join("tls.crt"), "garbage").unwrap();
    let ca = new_ca.clone();
    eventually("the failed reload to be counted", || {
        let ca = ca.clone();
        async move {
            let Ok(mut conn) = Conn::open(addr, &ca, Proto::Http2).await else {
                panic!("the last good certificate must still be served");
            };
            let (_, body) = conn.send("GET", "/metrics", vec![]).await.unwrap();
            String::from_utf8_lossy(&body).contains("sts_guard_certificate_reload_failures_total 1")
        }
    })
    .await;
    let mut conn = Conn::open(s.addr, &new_ca, Proto::Http2)
        .await
        .expect("last good certificate still served");
    assert_eq!(conn.send("GET", "/healthz", vec![]).await.unwrap().0, 200);
}

/// Every review in `dir`, sent over both protocols to both endpoints, is answered and allowed;
/// returns how many there were.
async fn reviews_in_dir_are_allowed(dir: &Path) -> usize {
    let s = start().await;
    let reviews = reviews_in(dir, None);
    for (name, review) in &reviews {
        for (i, endpoint) in ["/validate", "/mutate"].into_iter().enumerate() {
            let response = post_review(&s, Proto::BOTH[i], endpoint, review).await;
            assert_eq!(response["allowed"], true, "{name}: {response:#}");
            assert_eq!(response["uid"], review["request"]["uid"], "{name}");
        }
    }
    reviews.len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixture_admission_requests_get_well_formed_answers() {
    assert_eq!(reviews_in_dir_are_allowed(&fixture("admission")).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "third-party suite: needs ../shared/corpus (.ci/run runs it with --ignored)"]
async fn corpus_admission_requests_get_well_formed_answers() {
    assert_eq!(
        reviews_in_dir_are_allowed(&shared("corpus/admission")).await,
        6
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mismatched_certificate_and_key_refuse_to_start() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    write_certs(a.path());
    write_certs(b.path());
    let mut opts = options(a.path());
    opts.key_path = b.path().join("tls.key");
    let err = server::start(
        opts,
        Arc::new(StaticInventory::new()),
        Arc::new(Config::default()),
        Arc::new(Metrics::default()),
    )
    .await
    .err()
    .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("does not match the certificate") && text.contains("tls.key"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_gets_413() {
    let s = start().await;
    let mut tls = common::client::tls_connect(s.addr, &s.ca, Proto::Http1)
        .await
        .unwrap();
    tls.write_all(
        b"POST /validate HTTP/1.1\r\nhost: localhost\r\ntransfer-encoding: chunked\r\n\r\n",
    )
    .await
    .unwrap();
    let chunk = format!("{:x}\r\n{}\r\n", 16 * 1024, " ".repeat(16 * 1024));
    let mut answer = Vec::new();
    // 64 KiB is the test server's limit; the server may answer before the last chunk.
    for _ in 0..8 {
        if tls.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = tls.write_all(b"0\r\n\r\n").await;
    let _ = tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 413"), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_and_capacity_returns() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let mut opts = options(dir.path());
    opts.max_connections = 2;
    let inv: Arc<dyn Evaluator> = Arc::new(default_inventory());
    let running = server::start(
        opts,
        inv,
        Arc::new(Config::default()),
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    let addr = running.local_addr;
    let mut first = Conn::open(addr, &ca, Proto::Http2).await.unwrap();
    let mut second = Conn::open(addr, &ca, Proto::Http1).await.unwrap();
    assert_eq!(first.send("GET", "/healthz", vec![]).await.unwrap().0, 200);
    assert_eq!(second.send("GET", "/healthz", vec![]).await.unwrap().0, 200);
    assert!(
        Conn::open(addr, &ca, Proto::Http1).await.is_err(),
        "a third connection is refused"
    );
    drop(first);
    eventually("a slot to free up", || {
        let ca = ca.clone();
        async move { Conn::open(addr, &ca, Proto::Http1).await.is_ok() }
    })
    .await;
    assert_eq!(second.send("GET", "/healthz", vec![]).await.unwrap().0, 200);
}

/// `mode: monitor`: what would be denied is admitted with a warning saying so and counted
/// under action "monitor", over both protocols; warnings stay warnings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn monitor_mode_admits_what_it_would_deny_with_a_warning_and_a_metric() {
    let s = start_with(
        default_inventory(),
        Config::parse("mode: monitor\n", "c").unwrap(),
    )
    .await;
    for proto in Proto::BOTH {
        let typo = sts("web").set("spec.serviceName", json!("nginx-svc"));
        let response = post_review(
            &s,
            proto,
            "/validate",
            &admin_review("CREATE", Some(&typo), None),
        )
        .await;
        assert_eq!(response["allowed"], true, "{response}");
        let warning = first_warning(&response);
        assert!(
            warning.starts_with("sts-service-exists: StatefulSet default/web: spec.serviceName \"nginx-svc\" names no Service")
                && warning.ends_with("(monitor mode: this request would be denied)"),
            "{warning}"
        );
        // An invalid object is a denial too.
        let invalid = sts("web").set("spec.replicas", json!("two"));
        let response = post_review(
            &s,
            proto,
            "/validate",
            &admin_review("CREATE", Some(&invalid), None),
        )
        .await;
        assert_eq!(response["allowed"], true, "{response}");
        assert_eq!(
            first_warning(&response),
            "StatefulSet default/web: invalid object: spec.replicas: expected an integer, found string \"two\" (monitor mode: this request would be denied)"
        );
    }
    let (_, body) = request(s.addr, &s.ca, Proto::Http1, "GET", "/metrics", vec![]).await;
    let text = String::from_utf8_lossy(&body);
    for needle in [
        "sts_guard_rule_violations_total{rule=\"sts-service-exists\",action=\"monitor\"} 2",
        "sts_guard_admission_requests_total{endpoint=\"validate\",kind=\"StatefulSet\",operation=\"CREATE\",decision=\"warn\"} 4",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    assert!(!text.contains("action=\"deny\""), "{text}");
}

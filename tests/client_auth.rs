//! Mutual TLS on the real server over a real socket: with `--client-ca`, only a client whose
//! certificate chains to that CA (and names an accepted identity) gets an AdmissionReview; the
//! CA file is re-read without a restart; a bad file refuses the start naming the flag.

mod common;

use common::client::{
    ClientCa, ClientIdentity, Conn, Proto, connect_as, request_result, write_certs,
};
use common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use sts_guard::config::Config;
use sts_guard::engine::Evaluator;
use sts_guard::server::metrics::Metrics;
use sts_guard::server::{self, Running, ServerOptions};

struct Mtls {
    running: Running,
    metrics: Arc<Metrics>,
    ca: Vec<u8>,
    dir: tempfile::TempDir,
}

async fn start(client_ca: &str, names: &[&str]) -> Mtls {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, client_ca).unwrap();
    let options = ServerOptions {
        cert_reload_interval: Duration::from_millis(100),
        client_ca: Some(ca_path),
        client_names: names.iter().map(|n| n.to_string()).collect(),
        ..common::server_options(dir.path())
    };
    let inventory: Arc<dyn Evaluator> = Arc::new(inventory(&[svc("nginx"), sts("web")]));
    let metrics = Arc::new(Metrics::default());
    let running = server::start(
        options,
        inventory,
        Arc::new(Config::default()),
        metrics.clone(),
    )
    .await
    .unwrap();
    Mtls {
        running,
        metrics,
        ca,
        dir,
    }
}

fn review() -> Vec<u8> {
    let options = json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
    serde_json::to_vec(&review_json(
        "CREATE",
        Some(&sts("db")),
        None,
        "admin",
        &[],
        options,
    ))
    .unwrap()
}

/// An AdmissionReview answer, or the error that kept the client from getting one.
async fn validate(s: &Mtls, proto: Proto, identity: &ClientIdentity) -> Result<Value, String> {
    let mut conn: Conn = connect_as(s.running.local_addr, &s.ca, proto, identity)
        .await
        .map_err(|e| e.to_string())?;
    let (status, body) = conn
        .send("POST", "/validate", review())
        .await
        .map_err(|e| e.to_string())?;
    assert_eq!(status, 200);
    Ok(serde_json::from_slice(&body).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_client_certificate_from_the_ca_with_an_accepted_name_gets_an_answer() {
    let ca = ClientCa::new("client CA");
    let apiserver = ca.issue("kube-apiserver");
    let intruder = ca.issue("intruder");
    let stranger = ClientCa::new("another CA").issue("kube-apiserver");
    let s = start(&ca.pem, &["kube-apiserver"]).await;
    for proto in Proto::BOTH {
        let answer = validate(&s, proto, &apiserver).await.unwrap();
        assert_eq!(answer["kind"], "AdmissionReview", "{answer}");
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
        // The right name from another CA; the right CA under another name.
        for refused in [&stranger, &intruder] {
            let err = validate(&s, proto, refused).await.unwrap_err();
            assert!(!err.is_empty());
        }
        // Without a certificate: refused at the handshake, no AdmissionReview.
        let plain = request_result(
            s.running.local_addr,
            &s.ca,
            proto,
            "POST",
            "/validate",
            review(),
        )
        .await;
        assert!(plain.is_err(), "{plain:?}");
    }
    let metrics = s.metrics.encode();
    assert!(
        metrics.contains("sts_guard_refused_total{reason=\"client_certificate\"} 6"),
        "{metrics}"
    );
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_client_ca_is_picked_up_and_a_bad_one_is_ignored() {
    let old_ca = ClientCa::new("old client CA");
    let new_ca = ClientCa::new("new client CA");
    let (old, new) = (
        old_ca.issue("kube-apiserver"),
        new_ca.issue("kube-apiserver"),
    );
    // Without --client-name any certificate from the CA is accepted.
    let s = start(&old_ca.pem, &[]).await;
    assert!(validate(&s, Proto::Http2, &old).await.is_ok());
    assert!(validate(&s, Proto::Http2, &new).await.is_err());
    std::fs::write(s.dir.path().join("client-ca.crt"), &new_ca.pem).unwrap();
    eventually(
        "the new client CA in use",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { validate(&s, Proto::Http2, &new).await.is_ok() },
    )
    .await;
    assert!(
        validate(&s, Proto::Http2, &old).await.is_err(),
        "the old CA no longer admits"
    );
    // A file that does not load keeps the last good CA.
    std::fs::write(s.dir.path().join("client-ca.crt"), "not a certificate").unwrap();
    eventually(
        "the bad CA counted",
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            s.metrics
                .encode()
                .contains("sts_guard_certificate_reload_failures_total 1")
        },
    )
    .await;
    assert!(validate(&s, Proto::Http2, &new).await.is_ok());
    s.running.shutdown().await;
}

#[test]
fn a_bad_client_ca_refuses_the_start_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    let missing = dir.path().join("missing.crt");
    let empty = dir.path().join("empty.crt");
    std::fs::write(&empty, "").unwrap();
    for (path, reason) in [
        (&missing, "cannot read"),
        (&empty, "no CERTIFICATE block in the file"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
            .args(["serve", "--addr", "127.0.0.1:0", "--manifests"])
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests"))
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .arg("--client-ca")
            .arg(path)
            .output()
            .unwrap();
        let (_, last) = failure(&out);
        assert!(
            last.contains(&format!("--client-ca {}: {reason}", path.display())),
            "{last}"
        );
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["serve", "--client-name", "kube-apiserver"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--client-ca"),
        "{err}"
    );
}

/// With mutual TLS the kubelet's probes and Prometheus present no client certificate: the admin
/// address serves them /healthz, /readyz, /metrics and /audit, and nothing else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_address_serves_probes_and_metrics_without_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let client_ca = ClientCa::new("client CA");
    std::fs::write(dir.path().join("client-ca.crt"), &client_ca.pem).unwrap();
    let options = ServerOptions {
        admin_addr: Some("127.0.0.1:0".parse().unwrap()),
        client_ca: Some(dir.path().join("client-ca.crt")),
        ..common::server_options(dir.path())
    };
    let inventory: Arc<dyn Evaluator> = Arc::new(inventory(&[svc("nginx")]));
    let running = server::start(
        options,
        inventory,
        Arc::new(Config::default()),
        Arc::new(Metrics::default()),
    )
    .await
    .unwrap();
    let admin = running.admin_addr.expect("admin address bound");
    for proto in Proto::BOTH {
        for (path, status) in [
            ("/healthz", 200),
            ("/readyz", 200),
            ("/metrics", 200),
            // No background audit runs in this server: the route says so.
            ("/audit", 503),
            ("/validate", 404),
        ] {
            let method = if path == "/validate" { "POST" } else { "GET" };
            let (got, _) = request_result(admin, &ca, proto, method, path, review())
                .await
                .unwrap();
            assert_eq!(got.as_u16(), status, "{path} over {proto:?}");
        }
        // The webhook port itself still wants the certificate.
        assert!(
            request_result(running.local_addr, &ca, proto, "GET", "/healthz", vec![])
                .await
                .is_err()
        );
    }
    running.shutdown().await;
}

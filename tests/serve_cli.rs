//! The `sts-guard` binary as operators run it: `serve` (start-up, dev certificates, SIGTERM
//! drain), `review` and `certs`.

mod common;

use common::client::{Conn, Proto, tls_connect, write_certs};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_sts-guard"))
}

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// Starts `sts-guard serve` on a free port and waits for its "listening" line.
fn spawn_serve(
    extra: &[&str],
    cwd: &Path,
) -> (Child, SocketAddr, std::sync::mpsc::Receiver<String>) {
    let mut child = bin()
        .current_dir(cwd)
        .args(["serve", "--addr", "127.0.0.1:0", "--manifests"])
        .arg(repo("examples/manifests"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut seen = Vec::new();
    while Instant::now() < deadline {
        if let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) {
            if let Some(addr) = line.strip_prefix("sts-guard serve: listening on https://") {
                return (child, addr.parse().unwrap(), rx);
            }
            seen.push(line);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("server did not start: {seen:#?}");
}

fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

fn wait_exit(child: &mut Child, within: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "process did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_an_in_flight_request_then_exits() {
    let dir = tempfile::tempdir().unwrap();
    // A drain deadline well above what the steps below take on a loaded machine: the test is
    // that the in-flight request is answered, not how fast.
    let (mut child, addr, logs) = spawn_serve(
        &["--drain-timeout", "60", "--log-format", "json"],
        dir.path(),
    );
    let ca = std::fs::read(dir.path().join("certs/ca.crt")).expect("dev CA written under certs/");

    let review = std::fs::read(repo("examples/admission/create-statefulset-typo.json")).unwrap();
    let mut tls = tls_connect(addr, &ca, Proto::Http1).await.unwrap();
    // `Expect: 100-continue`: the server answers "100 Continue" once the handler reads the
    // body, which proves the request is in flight before the signal is sent.
    let headers = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        review.len()
    );
    tls.write_all(headers.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut byte))
            .await
            .unwrap()
            .unwrap();
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&interim)
    );

    signal(&child, "TERM");
    // New connections are refused while the in-flight request finishes.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "listener still open after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tls.write_all(&review).await.unwrap();
    tls.flush().await.unwrap();
    let mut answer = Vec::new();
    // Read what arrives until the server closes: the answer is what counts; whether the close
    // came with a TLS close_notify (the process may exit right after) is not.
    let read = tokio::time::timeout(Duration::from_secs(30), tls.read_to_end(&mut answer))
        .await
        .unwrap();
    if let Err(err) = read {
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof, "{err}");
    }
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("\"allowed\":false") && text.contains("sts-service-exists"),
        "{text}"
    );

    let status = wait_exit(&mut child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");

    // One structured line per decision, with what an operator greps for.
    // The reader thread ends when the exited server's stderr closes, so this sees every line.
    let decision = logs
        .iter()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .find(|v| v["message"] == "admission decision")
        .expect("a JSON decision log line");
    assert_eq!(decision["uid"], "3f6a1c52-2a9e-4c3e-9d57-0e5b1d7e2a10");
    assert_eq!(decision["kind"], "StatefulSet");
    assert_eq!(decision["object"], "demo/web-canary");
    assert_eq!(decision["user"], "kubernetes-admin");
    assert_eq!(decision["decision"], "deny");
    assert_eq!(decision["rules"], "sts-service-exists");
    assert_eq!(decision["http"], "HTTP/1.1");
}

/// A heap of tens of MiB gains little from 2 MiB pages and pays for them in RSS, against the
/// chart's memory limit (`src/allocator.rs`; the inventory_memory bench measures it).
#[test]
fn serve_runs_without_transparent_huge_pages() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, _, _) = spawn_serve(&[], dir.path());
    let status = std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    // The field exists since Linux 5.0; a kernel without it cannot be asked.
    if let Some(line) = status.lines().find(|l| l.starts_with("THP_enabled:")) {
        assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_certificates_are_created_once_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let (mut first, addr, _) = spawn_serve(&["--log-format", "json"], dir.path());
    let ca = std::fs::read(dir.path().join("certs/ca.crt")).unwrap();
    let mut conn = Conn::open(addr, &ca, Proto::Http2).await.unwrap();
    assert_eq!(conn.send("GET", "/readyz", vec![]).await.unwrap().0, 200);
    signal(&first, "TERM");
    assert!(wait_exit(&mut first, Duration::from_secs(10)).success());

    let (mut second, addr, _) = spawn_serve(&[], dir.path());
    assert_eq!(
        std::fs::read(dir.path().join("certs/ca.crt")).unwrap(),
        ca,
        "CA reused"
    );
    let mut conn = Conn::open(addr, &ca, Proto::Http1).await.unwrap();
    assert_eq!(conn.send("GET", "/healthz", vec![]).await.unwrap().0, 200);
    signal(&second, "TERM");
    assert!(wait_exit(&mut second, Duration::from_secs(10)).success());
}

#[test]
fn serve_refuses_bad_certificates_and_input_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let other = tempfile::tempdir().unwrap();
    write_certs(dir.path());
    write_certs(other.path());
    std::fs::write(dir.path().join("empty.crt"), "").unwrap();
    let cert = dir.path().join("tls.crt");
    let cases: Vec<(Vec<PathBuf>, &str)> = vec![
        (
            vec![cert.clone(), other.path().join("tls.key")],
            "does not match the certificate",
        ),
        (
            vec![dir.path().join("missing.crt"), dir.path().join("tls.key")],
            "missing.crt: cannot read",
        ),
        (
            vec![dir.path().join("empty.crt"), dir.path().join("tls.key")],
            "no CERTIFICATE block",
        ),
        (
            vec![dir.path().join("tls.key"), dir.path().join("tls.key")],
            "tls.key",
        ),
    ];
    for (files, expected) in cases {
        let out = bin()
            .args(["serve", "--addr", "127.0.0.1:0", "--manifests"])
            .arg(repo("examples/manifests"))
            .arg("--tls-cert")
            .arg(&files[0])
            .arg("--tls-key")
            .arg(&files[1])
            .output()
            .unwrap();
        let (err, last) = common::failure(&out);
        assert!(
            last.starts_with("sts-guard serve: ") && last.contains(expected),
            "{expected}: {err}"
        );
    }
    let out = bin()
        .args(["serve", "--manifests", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/x.yaml"));
    let out = bin()
        .args(["serve", "--manifests", "examples", "--drain-timeout", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--drain-timeout"));
}

#[test]
fn review_prints_the_servers_answer() {
    let out = bin()
        .args(["review", "--manifests"])
        .arg(repo("examples/manifests"))
        .arg(repo("examples/admission/create-statefulset-typo.json"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["response"]["allowed"], false);
    assert_eq!(v["response"]["uid"], "3f6a1c52-2a9e-4c3e-9d57-0e5b1d7e2a10");
    assert!(
        v["response"]["status"]["message"]
            .as_str()
            .unwrap()
            .contains("did you mean serviceName: nginx?")
    );

    let out = bin()
        .args(["review", "--endpoint", "mutate", "-"])
        .stdin(std::fs::File::open(repo("examples/admission/create-statefulset-pod.json")).unwrap())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["response"]["patchType"], "JSONPatch");

    let out = bin()
        .args(["review", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not an AdmissionReview"));
}

#[test]
fn certs_writes_a_ca_and_serving_pair_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().join("out");
    let run = |extra: &[&str]| {
        bin()
            .args([
                "certs",
                "--dns",
                "sts-guard.sts-guard.svc",
                "localhost",
                "--out",
            ])
            .arg(&out_dir)
            .args(extra)
            .output()
            .unwrap()
    };
    assert!(run(&[]).status.success());
    let provider = rustls::crypto::ring::default_provider();
    let loaded = sts_guard::server::certs::load_pair(
        &out_dir.join("tls.crt"),
        &out_dir.join("tls.key"),
        &provider,
    )
    .unwrap();
    let (_, cert) = x509_parser::parse_x509_certificate(loaded.key.cert[0].as_ref()).unwrap();
    let sans = format!(
        "{:?}",
        cert.subject_alternative_name().unwrap().unwrap().value
    );
    assert!(
        sans.contains("sts-guard.sts-guard.svc") && sans.contains("localhost"),
        "{sans}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out_dir.join("tls.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "key readable by others");
    }
    let before = std::fs::read(out_dir.join("ca.crt")).unwrap();
    let again = run(&[]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists; pass --force"));
    assert_eq!(std::fs::read(out_dir.join("ca.crt")).unwrap(), before);
    assert!(run(&["--force"]).status.success());
    assert_ne!(std::fs::read(out_dir.join("ca.crt")).unwrap(), before);
}

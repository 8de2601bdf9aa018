//! A client inside the cluster trying to take the admission path down (any pod can reach the
//! webhook port): idle and dribbling connections, one client holding every slot, stalled
//! uploads adding up, reviews built to be expensive. Each against the real server on a real
//! TLS socket; memory is read from the server process's /proc status.

mod common;

use common::client::{Conn, Proto, request, tls_connect, tls_over, write_certs};
use common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use sts_guard::config::Config;
use sts_guard::engine::Evaluator;
use sts_guard::server::metrics::Metrics;
use sts_guard::server::{self, Running, ServerOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpSocket;

struct TestServer {
    running: Running,
    addr: SocketAddr,
    ca: Vec<u8>,
    metrics: Arc<Metrics>,
    _dir: tempfile::TempDir,
}

async fn start(adjust: impl FnOnce(&mut ServerOptions)) -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let mut options = ServerOptions {
        header_timeout: Duration::from_secs(1),
        idle_timeout: Duration::from_secs(1),
        ..common::server_options(dir.path())
    };
    adjust(&mut options);
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
    TestServer {
        addr: running.local_addr,
        running,
        ca,
        metrics,
        _dir: dir,
    }
}

/// Reads until the server closes the connection; panics if it is still open after `within`.
async fn closed_by_server<S: AsyncReadExt + Unpin>(stream: &mut S, within: Duration) {
    let mut sink = Vec::new();
    match tokio::time::timeout(within, stream.read_to_end(&mut sink)).await {
        Ok(_) => {}
        Err(_) => panic!("the server kept the connection open for {within:?}"),
    }
}

/// An admin's CREATE of StatefulSet `db`.
fn create_db_review() -> Value {
    let options = json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"});
    review_json("CREATE", Some(&sts("db")), None, "admin", &[], options)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_that_sends_nothing_after_the_handshake_is_closed() {
    let s = start(|_| {}).await;
    for proto in Proto::BOTH {
        let mut tls = tls_connect(s.addr, &s.ca, proto).await.unwrap();
        // first-request deadline (1 s) plus the grace to let go (1 s), with room.
        closed_by_server(&mut tls, Duration::from_secs(8)).await;
    }
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_http2_preface_is_cut_off() {
    let s = start(|_| {}).await;
    let mut tls = tls_connect(s.addr, &s.ca, Proto::Http2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(8);
    let mut cut_off = false;
    for byte in b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".iter().cycle() {
        if Instant::now() > deadline {
            break;
        }
        if tls.write_all(&[*byte]).await.is_err() || tls.flush().await.is_err() {
            cut_off = true;
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(200), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => {
                cut_off = true;
                break;
            }
            _ => {}
        }
    }
    assert!(cut_off, "a preface dribbled for 8 s was still being read");
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_idle_between_requests_is_closed() {
    let s = start(|_| {}).await;
    // HTTP/1.1 keep-alive: one request answered, then silence.
    let mut tls = tls_connect(s.addr, &s.ca, Proto::Http1).await.unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tls.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));
    closed_by_server(&mut tls, Duration::from_secs(8)).await;

    // HTTP/2: the connection answers PINGs but carries no request; the server sends GOAWAY
    // and the client's connection task ends.
    let io = hyper_util::rt::TokioIo::new(tls_connect(s.addr, &s.ca, Proto::Http2).await.unwrap());
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .timer(hyper_util::rt::TokioTimer::new())
            .keep_alive_interval(Duration::from_millis(200))
            .keep_alive_while_idle(true)
            .handshake::<_, http_body_util::Full<hyper::body::Bytes>>(io)
            .await
            .unwrap();
    let connection = tokio::spawn(connection);
    let request = hyper::Request::get("https://localhost/healthz")
        .body(http_body_util::Full::default())
        .unwrap();
    assert_eq!(sender.send_request(request).await.unwrap().status(), 200);
    tokio::time::timeout(Duration::from_secs(8), connection)
        .await
        .expect("an idle HTTP/2 connection that answers PINGs stays open")
        .unwrap()
        .unwrap();
    s.running.shutdown().await;
}

async fn connect_from(local: &str, addr: SocketAddr, ca: &[u8]) -> std::io::Result<Conn> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(format!("{local}:0").parse().unwrap())?;
    let tcp = socket.connect(addr).await?;
    Conn::over(tcp, ca, Proto::Http1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_cannot_take_every_connection_with_connections_that_send_nothing() {
    let s = start(|o| {
        o.max_connections = 4;
        o.max_pending_connections_per_client = 2;
        o.idle_timeout = Duration::from_secs(60);
        o.header_timeout = Duration::from_secs(60);
    })
    .await;
    // Two connections that complete the handshake and send nothing.
    let mut silent = Vec::new();
    for _ in 0..2 {
        let socket = TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let tcp = socket.connect(s.addr).await.unwrap();
        silent.push(tls_over(tcp, &s.ca, Proto::Http1).await.unwrap());
    }
    let mut third = connect_from("127.0.0.1", s.addr, &s.ca).await;
    let refused = match third.as_mut() {
        Err(_) => true,
        Ok(conn) => conn.send("GET", "/healthz", vec![]).await.is_err(),
    };
    assert!(
        refused,
        "a third pending connection from the same client was served"
    );
    // Another client (kube-apiserver) still gets in, and once served it no longer counts as
    // pending: it may open as many as the total allows.
    let mut other = Vec::new();
    for _ in 0..2 {
        let mut conn = connect_from("127.0.0.2", s.addr, &s.ca).await.unwrap();
        assert_eq!(conn.send("GET", "/healthz", vec![]).await.unwrap().0, 200);
        other.push(conn);
    }
    assert!(
        s.metrics
            .encode()
            .contains("sts_guard_refused_total{reason=\"per_client_pending_connection_limit\"} 1"),
        "{}",
        s.metrics.encode()
    );
    s.running.shutdown().await;
}

/// Resident memory of a process, in KiB.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// kube-apiserver opens one HTTP/1.1 connection per concurrent call to a webhook behind a
/// Service: 1,000 at once from one address, each kept alive for several requests, are all
/// served by the real binary with its default limits, while a connection from that address
/// that sends nothing, and one that dribbles its headers, are still cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_connections_from_one_client_are_all_served() {
    const CONNECTIONS: usize = 1000;
    const REQUESTS: usize = 3;
    sts_guard::server::raise_open_file_limit().unwrap();
    let served = serve_binary(&["--header-timeout", "5", "--idle-timeout", "60"]);
    let pid = served.child.id();
    let before = rss_kib(pid);
    let body = serde_json::to_vec(&review_json(
        "CREATE",
        Some(&sts_pod(1, "node-a")),
        None,
        "system:serviceaccount:kube-system:statefulset-controller",
        &[],
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
    ))
    .unwrap();
    let all_open = Arc::new(tokio::sync::Barrier::new(CONNECTIONS + 1));
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CONNECTIONS {
        let (addr, ca, body, all_open) = (
            served.addr,
            served.ca.clone(),
            body.clone(),
            all_open.clone(),
        );
        clients.spawn(async move {
            let mut conn = Conn::open(addr, &ca, Proto::Http1).await?;
            let mut answered = Vec::new();
            let first = conn.send("POST", "/mutate", body.clone()).await;
            // Every connection is open, and has been served once, before any sends again.
            all_open.wait().await;
            answered.push(first.map_err(std::io::Error::other)?);
            for _ in 1..REQUESTS {
                answered.push(
                    conn.send("POST", "/mutate", body.clone())
                        .await
                        .map_err(std::io::Error::other)?,
                );
            }
            Ok::<_, std::io::Error>(answered)
        });
    }
    all_open.wait().await;
    let open_kib = rss_kib(pid).saturating_sub(before);
    // Meanwhile, from the same address: silent and dribbling connections are cut off.
    let mut silent = tls_connect(served.addr, &served.ca, Proto::Http1)
        .await
        .unwrap();
    let mut dribbling = tls_connect(served.addr, &served.ca, Proto::Http1)
        .await
        .unwrap();
    let dribble = async {
        for byte in b"POST /mutate HTTP/1.1\r\nhost: localhost\r\n"
            .iter()
            .cycle()
        {
            if dribbling.write_all(&[*byte]).await.is_err() || dribbling.flush().await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    };
    let (_, dribbled) = tokio::join!(
        closed_by_server(&mut silent, Duration::from_secs(20)),
        tokio::time::timeout(Duration::from_secs(20), dribble)
    );
    assert!(
        dribbled.is_ok(),
        "a dribbled request head was read for 20 s"
    );
    let mut answers = 0;
    while let Some(result) = clients.join_next().await {
        for (status, answer) in result.unwrap().unwrap() {
            assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
            let review: Value = serde_json::from_slice(&answer).unwrap();
            assert_eq!(review["response"]["allowed"], true, "{review}");
            assert_eq!(review["response"]["patchType"], "JSONPatch", "{review}");
            answers += 1;
        }
    }
    assert_eq!(answers, CONNECTIONS * REQUESTS);
    let metrics = request(
        served.addr,
        &served.ca,
        Proto::Http1,
        "GET",
        "/metrics",
        vec![],
    )
    .await
    .1;
    let metrics = String::from_utf8_lossy(&metrics);
    assert!(!metrics.contains("sts_guard_refused_total{"), "{metrics}");
    eprintln!(
        "{CONNECTIONS} open connections: {open_kib} KiB of server RSS, {} KiB each",
        open_kib / CONNECTIONS as u64
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_uploads_cannot_hold_more_than_the_memory_budget() {
    let s = start(|o| {
        o.memory_budget = 1024 * 1024;
        o.request_timeout = Duration::from_secs(30);
        o.idle_timeout = Duration::from_secs(60);
    })
    .await;
    let declared = 400 * 1024;
    let mut stalled = Vec::new();
    let mut answers = Vec::new();
    for upload in 0..3 {
        let mut tls = tls_connect(s.addr, &s.ca, Proto::Http1).await.unwrap();
        let head = format!(
            "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {declared}\r\n\r\n"
        );
        tls.write_all(head.as_bytes()).await.unwrap();
        // The third is refused on its declared length alone (and its connection closed): it
        // sends no body, so the refusal is not lost to a reset of unread bytes.
        let wait = if upload < 2 {
            tls.write_all(&vec![b' '; 100 * 1024]).await.unwrap();
            Duration::from_millis(1500)
        } else {
            Duration::from_secs(10)
        };
        tls.flush().await.unwrap();
        let mut buf = vec![0u8; 512];
        let answer = tokio::time::timeout(wait, tls.read(&mut buf)).await;
        answers.push(match answer {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).to_string(),
            _ => String::new(),
        });
        stalled.push(tls);
    }
    assert_eq!(answers[0], "", "the first upload is waited for");
    assert_eq!(answers[1], "", "the second upload fits the budget too");
    assert!(
        answers[2].starts_with("HTTP/1.1 503"),
        "a third 400 KiB upload exceeds the 1 MiB budget: {:?}",
        answers[2]
    );
    // Their memory comes back when they go away.
    drop(stalled);
    let review = create_db_review();
    let mut conn = Conn::open(s.addr, &s.ca, Proto::Http2).await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = conn
            .send("POST", "/validate", serde_json::to_vec(&review).unwrap())
            .await
            .unwrap();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "budget never returned: {status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    s.running.shutdown().await;
}

/// A StatefulSet pod with `containers` one-line containers, as a CREATE review.
fn wide_pod_review(containers: usize) -> Vec<u8> {
    let containers: Vec<Value> = (0..containers)
        .map(|i| json!({"name": format!("c{i}"), "image": "x"}))
        .collect();
    let pod = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "web-3", "namespace": "default",
            "labels": {"apps.kubernetes.io/pod-index": "3", "statefulset.kubernetes.io/pod-name": "web-3"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "u", "controller": true}]},
        "spec": {"subdomain": "nginx", "containers": containers},
    });
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "wide-1", "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "default", "operation": "CREATE", "userInfo": {"username": "u"}, "object": pod},
    }))
    .unwrap()
}

struct Served {
    child: Child,
    addr: SocketAddr,
    ca: Vec<u8>,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The real binary, so that its memory is its own.
fn serve_binary(extra: &[&str]) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let ca = write_certs(dir.path());
    let mut child = Command::new(env!("CARGO_BIN_EXE_sts-guard"))
        .args(["serve", "--addr", "127.0.0.1:0", "--manifests"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/manifests"))
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Keep reading stderr for the server's whole life: a closed pipe would fail its logging.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        if let Some(addr) = line.strip_prefix("sts-guard serve: listening on https://") {
            let addr = addr.parse().unwrap();
            return Served {
                child,
                addr,
                ca,
                _dir: dir,
            };
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("the server did not start");
}

/// Peak resident memory of a process, in MiB, since start or the last reset.
fn peak_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib / 1024.0
}

async fn mutate(served: &Served, body: Vec<u8>) -> Value {
    let mut conn = Conn::open(served.addr, &served.ca, Proto::Http1)
        .await
        .unwrap();
    let (status, answer) = conn.send("POST", "/mutate", body).await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&answer));
    serde_json::from_slice(&answer).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wide_pod_costs_memory_in_proportion_to_its_bytes() {
    let served = serve_binary(&[]);
    let pid = served.child.id();
    // Warm up the request path so the measurement is of the pod, not of first use.
    let answer = mutate(&served, wide_pod_review(10)).await;
    assert_eq!(answer["response"]["allowed"], true);
    let before = peak_mib(pid);

    // 7,000 containers, 232 KB: it used to take 120 MiB. It would take 49,000 identity
    // variables, beyond what one pod gets: admitted unchanged, with a warning saying so (the
    // variables are counted before any is built).
    let body = wide_pod_review(7000);
    let size_mib = body.len() as f64 / (1024.0 * 1024.0);
    let answer = mutate(&served, body).await;
    let response = &answer["response"];
    assert_eq!(response["allowed"], true);
    assert!(response.get("patch").is_none());
    assert!(
        first_warning(response)
            .contains("would take 49000 identity variables, more than the 2000 one pod gets"),
        "{response}"
    );
    let grew = peak_mib(pid) - before;
    eprintln!("peak memory grew {grew:.1} MiB for a {size_mib:.2} MiB review");
    assert!(
        grew < 64.0 * size_mib + 4.0,
        "peak memory grew {grew:.1} MiB for a {size_mib:.2} MiB review"
    );

    // Four at once, beside a small review: every one is answered.
    let wide = wide_pod_review(7000);
    let results = futures::future::join_all(
        (0..4)
            .map(|_| wide.clone())
            .chain([wide_pod_review(2)])
            .map(|body| mutate(&served, body)),
    )
    .await;
    for answer in &results {
        assert_eq!(answer["response"]["allowed"], true, "{answer}");
    }
    assert!(
        results[4]["response"]["patch"].is_string(),
        "the small pod is patched"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_review_beyond_the_memory_budget_is_answered_without_being_evaluated() {
    let served = serve_binary(&["--memory-budget", "8388608"]);
    let pid = served.child.id();
    let _ = mutate(&served, wide_pod_review(10)).await;
    let before = peak_mib(pid);
    // 47,000 containers in 1.6 MB (under kube-apiserver's 3 MiB request limit).
    let answer = mutate(&served, wide_pod_review(47_000)).await;
    let response = &answer["response"];
    assert_eq!(response["uid"], "wide-1");
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 413);
    let message = response["status"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("sts-guard did not evaluate this request")
            && message.contains("--memory-budget"),
        "{message}"
    );
    let grew = peak_mib(pid) - before;
    assert!(
        grew < 16.0,
        "peak memory grew {grew:.1} MiB without evaluating"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_review_is_not_echoed_back_whole() {
    let s = start(|o| o.body_limit = 16 << 20).await;
    let mut review = create_db_review();
    review["request"]["operation"] = json!("X".repeat(7 << 20));
    let mut conn = Conn::open(s.addr, &s.ca, Proto::Http1).await.unwrap();
    let (status, body) = conn
        .send("POST", "/validate", serde_json::to_vec(&review).unwrap())
        .await
        .unwrap();
    assert_eq!(status, 400);
    assert!(body.len() < 2048, "a {} byte answer", body.len());
    s.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_of_the_wrong_type_is_named_not_read_as_missing() {
    let s = start(|_| {}).await;
    let review = review_json(
        "CREATE",
        Some(&sts("db").set("spec", json!(5))),
        None,
        "admin",
        &[],
        json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
    );
    for path in ["/validate", "/mutate"] {
        let mut conn = Conn::open(s.addr, &s.ca, Proto::Http2).await.unwrap();
        let (status, body) = conn
            .send("POST", path, serde_json::to_vec(&review).unwrap())
            .await
            .unwrap();
        assert_eq!(status, 200);
        let answer: Value = serde_json::from_slice(&body).unwrap();
        let response = &answer["response"];
        assert_eq!(response["allowed"], false, "{path}: {response}");
        let message = response["status"]["message"].as_str().unwrap();
        assert!(
            message.contains("spec: expected a map, found number 5"),
            "{path}: {message}"
        );
    }
    s.running.shutdown().await;
}

"""The latency kube-apiserver adds for a webhook: p50/p99 of StatefulSet creates and deletes
through the real API with no webhook registered, with sts-guard registered, and with the
reference webhook (../shared/bench/peer-go) registered in its place, all in one run on one
control plane. Run through bench/apiserver-latency.sh, which builds what this needs.

Each webhook is measured on both ways kube-apiserver calls one, through the chart's webhook
configurations: behind the chart's Service (HTTP/1.1, one connection per concurrent call: the
production path; the servers run in a network namespace of the run, see tests/e2e) and at a
loopback URL (HTTP/2). The configurations take turns in rounds (ROUNDS x PER_ROUND requests
each), so drift of the machine or of etcd during the run falls on all of them alike.
"""

from __future__ import annotations

import http.client
import json
import os
import pathlib
import ssl
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from controlplane import ControlPlane, NetworkNamespace, Process, b64, free_port, https_get, wait_until  # noqa: E402
from harness import (  # noqa: E402
    Kubectl, chart_identity, chart_webhooks, dump_all, endpoint_slice, service_server, url_server,
    webhook_configurations,
)

ROUNDS = int(os.environ.get("ROUNDS", "5"))
PER_ROUND = int(os.environ.get("PER_ROUND", "100"))
NAMESPACE = "default"  # the peer's inventory (bodies/services.json) knows default/nginx
PEER_DIR = pathlib.Path(os.environ.get("PEER_DIR", HERE.parents[1] / "shared" / "bench"))


def statefulset(name: str, service_name: str = "nginx") -> bytes:
    labels = {"app": "nginx"}
    return json.dumps({
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": service_name, "replicas": 0, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "nginx", "image": "registry.example/nginx:1.27"}]}},
        },
    }).encode()


class Api:
    """One kept-alive HTTPS connection to kube-apiserver as the admin user."""

    def __init__(self, cluster: ControlPlane):
        context = ssl.create_default_context(cafile=str(cluster.pki.ca))
        context.load_cert_chain(str(cluster.admin_cert), str(cluster.admin_key))
        self.connection = http.client.HTTPSConnection("127.0.0.1", cluster.apiserver_port, context=context)
        self.base = f"/apis/apps/v1/namespaces/{NAMESPACE}/statefulsets"

    def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, float, bytes]:
        headers = {"Content-Type": "application/json"} if body else {}
        start = time.perf_counter()
        self.connection.request(method, path, body=body, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, time.perf_counter() - start, data

    def create(self, name: str, *, dry_run=False, service_name="nginx"):
        return self.request("POST", self.base + ("?dryRun=All" if dry_run else ""), statefulset(name, service_name))

    def delete(self, name: str):
        return self.request("DELETE", f"{self.base}/{name}")


def build_peer(out: pathlib.Path) -> pathlib.Path:
    binary = out / "peer-go"
    env = dict(os.environ, GOFLAGS="-mod=mod", GOPROXY="off", GOTOOLCHAIN="local")
    subprocess.run(["go", "build", "-trimpath", "-o", str(binary), "."], cwd=PEER_DIR / "peer-go", env=env, check=True)
    return binary


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]


def start_peer(run_dir: pathlib.Path, binary: pathlib.Path, name: str, address: str, port: int,
               tls_dir: pathlib.Path, netns: NetworkNamespace | None = None, server_name: str | None = None) -> Process:
    argv = [str(binary), "-addr", f"{address}:{port}", "-cert", str(tls_dir / "tls.crt"),
            "-key", str(tls_dir / "tls.key"), "-services", str(PEER_DIR / "bodies" / "services.json")]
    peer = Process(name, netns.argv(argv) if netns else argv, run_dir / f"{name}.log")
    wait_until(f"{name} listening", lambda: peer.check_running() or https_get(
        f"https://{address}:{port}/validate", tls_dir / "ca.crt", server_name=server_name)[0] > 0)
    return peer


def main() -> int:
    bin_dir = pathlib.Path(os.environ["E2E_BIN_DIR"])
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="sts-guard-latency-"))
    cluster = ControlPlane(bin_dir, run_dir / "control-plane")
    processes: list = []
    netns = None
    try:
        cluster.start()
        kubectl = Kubectl(cluster.binary("kubectl"), cluster.admin_kubeconfig)
        kubectl.ok("apply", "-n", NAMESPACE, "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": "nginx"},
            "spec": {"clusterIP": "None", "selector": {"app": "nginx"}, "ports": [{"port": 80}]}}))
        identity = chart_identity(cluster, kubectl, run_dir)
        netns = NetworkNamespace(str(os.getpid() % 100000))

        # Behind the chart's Service: the EndpointSlice decides which server kube-apiserver reaches.
        sts_guard_h1 = service_server(identity, run_dir, netns, cluster)
        processes.append(sts_guard_h1)
        sts_guard_h1.start()
        service, _ = sts_guard_h1.service_objects
        peer_binary = build_peer(run_dir)
        peer_h1_port = sts_guard_h1.port + 1
        processes.append(start_peer(run_dir, peer_binary, "peer-go-service", netns.address, peer_h1_port,
                                    sts_guard_h1.tls_dir, netns, sts_guard_h1.server_name))
        # At a loopback URL.
        sts_guard_h2 = url_server(identity, run_dir)
        processes.append(sts_guard_h2)
        sts_guard_h2.start()
        peer_h2_port = free_port()
        processes.append(start_peer(run_dir, peer_binary, "peer-go-url", "127.0.0.1", peer_h2_port,
                                    sts_guard_h2.tls_dir))

        through_service = webhook_configurations(identity.docs)
        configurations = {
            "no webhook": ([], None),
            "sts-guard HTTP/1.1 (Service)": (through_service, endpoint_slice(service, netns.address, sts_guard_h1.port)),
            "peer-go HTTP/1.1 (Service)": (through_service, endpoint_slice(service, netns.address, peer_h1_port)),
            "sts-guard HTTP/2 (URL)": (sts_guard_h2.webhook_configurations, None),
            "peer-go HTTP/2 (URL)": (
                chart_webhooks(identity.docs, f"https://127.0.0.1:{peer_h2_port}", b64(sts_guard_h2.ca)), None),
        }
        kubectl.ok("apply", "-f", "-", input=dump_all([service]))
        api = Api(cluster)
        samples = {name: {"create": [], "delete": []} for name in configurations}
        sequence = 0
        for round_number in range(ROUNDS):
            for name, (webhooks, endpoints) in configurations.items():
                register(kubectl, api, webhooks, endpoints, name)
                for _ in range(PER_ROUND):
                    sequence += 1
                    status, seconds, body = api.create(f"bench-{sequence}")
                    assert status == 201, (name, status, body[:300])
                    samples[name]["create"].append(seconds)
                for number in range(sequence - PER_ROUND + 1, sequence + 1):
                    status, seconds, body = api.delete(f"bench-{number}")
                    assert status == 200, (name, status, body[:300])
                    samples[name]["delete"].append(seconds)
            print(f"round {round_number + 1}/{ROUNDS} done", file=sys.stderr)
        report(samples)
        return 0
    finally:
        for process in processes:
            process.stop()
        cluster.stop()
        if netns:
            netns.delete()


def register(kubectl: Kubectl, api: Api, webhooks: list[dict], endpoints: dict | None, name: str):
    """Registers exactly these webhook configurations (and points the chart's Service at the
    server), then waits until kube-apiserver uses them: a dry-run create naming a missing Service
    is allowed without a webhook and denied by the one registered (sts-guard's denial names its
    rule id, the peer's does not)."""
    kubectl.ok("delete", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "--all")
    if endpoints:
        kubectl.ok("apply", "-f", "-", input=dump_all([endpoints]))
    if webhooks:
        kubectl.ok("apply", "-f", "-", input=dump_all(webhooks))

    def active():
        status, _, body = api.create("probe", dry_run=True, service_name="absent")
        if not webhooks:
            return status == 201
        return status == 403 and (b"sts-service-exists" in body) == name.startswith("sts-guard")

    wait_until("webhook registration in effect", active, timeout=60, interval=0.2)


def report(samples):
    base = samples["no webhook"]
    print(f"\nkube-apiserver latency, {ROUNDS * PER_ROUND} StatefulSet creates and deletes per configuration "
          f"({ROUNDS} interleaved rounds), one run:\n")
    print("| registered | create p50 ms | create p99 ms | delete p50 ms | delete p99 ms | create p50 x none | create p99 x none |")
    print("|---|---|---|---|---|---|---|")
    for name, ops in samples.items():
        c50, c99 = statistics.median(ops["create"]) * 1e3, percentile(ops["create"], 0.99) * 1e3
        d50, d99 = statistics.median(ops["delete"]) * 1e3, percentile(ops["delete"], 0.99) * 1e3
        r50 = c50 / (statistics.median(base["create"]) * 1e3)
        r99 = c99 / (percentile(base["create"], 0.99) * 1e3)
        print(f"| {name} | {c50:.2f} | {c99:.2f} | {d50:.2f} | {d99:.2f} | {r50:.2f} | {r99:.2f} |")
    added = {name: statistics.median(ops["create"]) - statistics.median(base["create"])
             for name, ops in samples.items() if name != "no webhook"}
    for transport in ("HTTP/1.1 (Service)", "HTTP/2 (URL)"):
        ours, peer = added[f"sts-guard {transport}"], added[f"peer-go {transport}"]
        print(f"\n{transport}: create p50 added by sts-guard {ours * 1e3:.2f} ms, by peer-go {peer * 1e3:.2f} ms "
              f"(sts-guard/peer-go {ours / peer:.2f})", end="")
    print()


if __name__ == "__main__":
    sys.exit(main())

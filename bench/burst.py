"""Time to 500 pods: one StatefulSet (podManagementPolicy Parallel) scaled from 0 to PODS by the
real StatefulSet controller, with no webhook registered, with sts-guard registered through the
chart's webhook configurations behind the chart's Service (HTTP/1.1, one connection per
concurrent call), and — where ../shared/bench is there — with the reference webhook
(peer-go, Go standard library) behind the same Service instead, in alternating rounds on one
control plane. Run through bench/burst.sh.

The e2e (tests/e2e/test_burst.py) asserts what must hold — every pod created with its identity,
no webhook call failed, nothing refused; this measures what it costs.
"""

from __future__ import annotations

import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests" / "e2e"))

from apiserver_latency import PEER_DIR, build_peer, start_peer  # noqa: E402
from controlplane import ControlPlane, NetworkNamespace, wait_until  # noqa: E402
from harness import (  # noqa: E402
    Kubectl, chart_identity, dump_all, endpoint_slice, service_server, webhook_configurations,
)

ROUNDS = int(os.environ.get("ROUNDS", "3"))
PODS = int(os.environ.get("PODS", "500"))


def statefulset(name: str) -> dict:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": name},
        "spec": {
            "serviceName": name, "replicas": 0, "podManagementPolicy": "Parallel",
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                         "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}},
        },
    }


def headless(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"clusterIP": "None", "selector": {"app": name}, "ports": [{"port": 80}]}}


def prepare(kubectl: Kubectl, ns: str):
    """A fresh namespace with the StatefulSet at 0 replicas and its Service, made before any
    webhook is registered (the reference webhook knows only its own inventory's Services)."""
    kubectl.ok("create", "namespace", ns)
    wait_until(f"ServiceAccount {ns}/default", lambda: kubectl.exists("serviceaccount", "default", ns))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=dump_all([headless("burst"), statefulset("burst")]))


def time_to_pods(kubectl: Kubectl, ns: str) -> float:
    """Seconds from the scale request until all PODS pods exist."""
    start = time.perf_counter()
    kubectl.ok("scale", "statefulset", "burst", "-n", ns, f"--replicas={PODS}")

    def all_created():
        listed = kubectl.ok("get", "pods", "-n", ns, "-o", "name").stdout.split()
        return len(listed) == PODS

    wait_until(f"{PODS} pods in {ns}", all_created, timeout=600, interval=0.1)
    elapsed = time.perf_counter() - start
    kubectl.ok("delete", "namespace", ns, "--wait=false")
    return elapsed


def main() -> int:
    bin_dir = pathlib.Path(os.environ["E2E_BIN_DIR"])
    run_dir = pathlib.Path(tempfile.mkdtemp(prefix="sts-guard-burst-"))
    cluster = ControlPlane(bin_dir, run_dir / "control-plane")
    server = None
    peer = None
    netns = None
    try:
        cluster.start()
        kubectl = Kubectl(cluster.binary("kubectl"), cluster.admin_kubeconfig)
        identity = chart_identity(cluster, kubectl, run_dir)
        netns = NetworkNamespace(str(os.getpid() % 100000))
        server = service_server(identity, run_dir, netns, cluster)
        server.start()
        service, sts_guard_endpoints = server.service_objects
        kubectl.ok("apply", "-f", "-", input=dump_all(server.service_objects))
        webhooks = webhook_configurations(identity.docs)
        # What the chart's Service points at, per configuration.
        endpoints = {"no webhook": None, "sts-guard HTTP/1.1 (Service)": sts_guard_endpoints}
        if (PEER_DIR / "peer-go").is_dir():
            peer_port = server.port + 1
            peer = start_peer(run_dir, build_peer(run_dir), "peer-go-service", netns.address, peer_port,
                              server.tls_dir, netns, server.server_name)
            endpoints["peer-go HTTP/1.1 (Service)"] = endpoint_slice(service, netns.address, peer_port)
        samples: dict[str, list[float]] = {name: [] for name in endpoints}
        for round_number in range(ROUNDS):
            for index, name in enumerate(samples):
                ns = f"burst-{round_number}-{index}"
                kubectl.ok("delete", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "--all")
                prepare(kubectl, ns)
                if endpoints[name]:
                    kubectl.ok("apply", "-f", "-", input=dump_all([endpoints[name], *webhooks]))
                    # In effect once a dry-run create naming a missing Service is denied (sts-guard's
                    # denial names its rule id, the peer's does not).
                    def in_effect(name=name):
                        probe = {**statefulset("probe"), "spec": {**statefulset("probe")["spec"], "serviceName": "absent"}}
                        result = kubectl("apply", "--dry-run=server", "-n", "default", "-f", "-", input=json.dumps(probe))
                        return not result.ok and ("sts-service-exists" in result.stderr) == name.startswith("sts-guard")

                    wait_until("webhooks in effect", in_effect)
                samples[name].append(time_to_pods(kubectl, ns))
            print(f"round {round_number + 1}/{ROUNDS} done", file=sys.stderr)
        base = statistics.median(samples["no webhook"])
        print(f"\nTime to {PODS} pods (one Parallel StatefulSet scaled from 0), {ROUNDS} alternating rounds, one run:\n")
        print("| registered | median s | runs s | x no webhook |")
        print("|---|---|---|---|")
        for name, values in samples.items():
            median = statistics.median(values)
            runs = ", ".join(f"{v:.1f}" for v in values)
            print(f"| {name} | {median:.2f} | {runs} | {median / base:.2f} |")
        refused = [line for line in server.metrics().splitlines() if line.startswith("sts_guard_refused_total{")]
        print(f"\nsts_guard_refused_total: {refused or 'none'}")
        return 0
    finally:
        for process in (server, peer):
            if process:
                process.stop()
        cluster.stop()
        if netns:
            netns.delete()


if __name__ == "__main__":
    sys.exit(main())

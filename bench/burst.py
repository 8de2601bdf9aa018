"""Time to 500 pods: one StatefulSet (podManagementPolicy Parallel) scaled from 0 to PODS by the
real StatefulSet controller, with no webhook registered and with sts-guard registered through
the chart's webhook configurations behind the chart's Service (HTTP/1.1, one connection per
concurrent call), in alternating rounds on one control plane. Run through bench/burst.sh.

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

from controlplane import ControlPlane, NetworkNamespace, wait_until  # noqa: E402
from harness import Kubectl, chart_identity, dump_all, service_server, webhook_configurations  # noqa: E402

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


def time_to_pods(kubectl: Kubectl, ns: str) -> float:
    """Seconds from the scale request until all PODS pods exist, in a fresh namespace."""
    kubectl.ok("create", "namespace", ns)
    wait_until(f"ServiceAccount {ns}/default", lambda: kubectl.exists("serviceaccount", "default", ns))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=dump_all([headless("burst"), statefulset("burst")]))
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
    netns = None
    try:
        cluster.start()
        kubectl = Kubectl(cluster.binary("kubectl"), cluster.admin_kubeconfig)
        identity = chart_identity(cluster, kubectl, run_dir)
        netns = NetworkNamespace(str(os.getpid() % 100000))
        server = service_server(identity, run_dir, netns, cluster)
        server.start()
        kubectl.ok("apply", "-f", "-", input=dump_all(server.service_objects))
        webhooks = webhook_configurations(identity.docs)
        samples: dict[str, list[float]] = {"no webhook": [], "sts-guard HTTP/1.1 (Service)": []}
        for round_number in range(ROUNDS):
            for index, name in enumerate(samples):
                kubectl.ok("delete", "validatingwebhookconfigurations,mutatingwebhookconfigurations", "--all")
                if name != "no webhook":
                    kubectl.ok("apply", "-f", "-", input=dump_all(webhooks))
                    # In effect once a dry-run create naming a missing Service is denied.
                    wait_until("webhooks in effect", lambda: not kubectl(
                        "apply", "--dry-run=server", "-n", "default", "-f", "-",
                        input=json.dumps({**statefulset("probe"), "spec": {**statefulset("probe")["spec"],
                                                                         "serviceName": "absent"}})).ok)
                samples[name].append(time_to_pods(kubectl, f"burst-{round_number}-{index}"))
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
        if server:
            server.stop()
        cluster.stop()
        if netns:
            netns.delete()


if __name__ == "__main__":
    sys.exit(main())

"""A busy kube-apiserver is never refused: one StatefulSet scaled from 0 to 500 pods at once
(`podManagementPolicy: Parallel`), every pod created through the webhook behind the chart's
Service — HTTP/1.1, one connection per concurrent call, the transport where kube-apiserver
opens the most connections. Every pod gets its identity, no webhook call fails, nothing is
refused. How long it takes against no webhook at all is a benchmark (bench/burst.sh), not an
assertion here.
"""

from __future__ import annotations

import json
import re

import pytest

from controlplane import wait_until
from test_admission import env_of, service, statefulset

PODS = 500


def test_a_scale_up_to_500_pods_is_served_whole(cluster, kubectl, sts_guard):
    if sts_guard.expected_http != "HTTP/1.1":
        pytest.skip("kube-apiserver opens a connection per concurrent call only to a Service-backed webhook")
    ns = kubectl.namespace("b1-burst")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("wide", {"app": "wide"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("wide", "wide", replicas=0)))
    log = cluster.run_dir / "kube-controller-manager.log"
    failed_before = log.read_text(errors="replace").count("failed calling webhook")
    kubectl.ok("scale", "statefulset", "wide", "-n", ns, f"--replicas={PODS}")

    def created():
        items = json.loads(kubectl.ok("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        return items if len(items) == PODS else None

    pods = wait_until(f"{PODS} pods created", created, timeout=300, interval=2)
    ordinals = set()
    for pod in pods:
        ordinal = pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"]
        env = env_of(pod["spec"]["containers"][0])
        assert env["POD_ORDINAL"]["value"] == ordinal, pod["metadata"]["name"]
        assert env["POD_FQDN"]["value"] == f"wide-{ordinal}.wide.{ns}.svc.cluster.local"
        ordinals.add(int(ordinal))
    assert ordinals == set(range(PODS))
    assert log.read_text(errors="replace").count("failed calling webhook") == failed_before
    metrics = sts_guard.metrics()
    assert not re.search(r"^sts_guard_refused_total\{", metrics, re.M), metrics
    creates = [d for d in sts_guard.decisions()
               if d["object"].startswith(f"{ns}/") and d["kind"] == "Pod" and d["operation"] == "CREATE"]
    assert len(creates) >= PODS and {d["http"] for d in creates} == {"HTTP/1.1"}
    # Scale back down: the next scenarios should not wait behind 500 pods.
    kubectl.ok("delete", "namespace", ns, "--wait=false")

"""The image the chart deploys, run as the chart's Deployment runs it (harness.ContainerStsGuard):
it serves kube-apiserver's calls through the chart's Service, picks up a certificate rotated
the way the kubelet rotates a Secret volume, and drains an in-flight review on SIGTERM within
the pod's terminationGracePeriodSeconds.

The rotation and the drain run on an instance of their own (`image_server`, in a network
namespace of its own, watching the same apiserver as the chart's ServiceAccount but not
registered as a webhook), so the session's servers stay as they are for the other scenarios.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
import subprocess
import time

import pytest

from controlplane import NetworkNamespace, https_get, wait_until
from harness import STS_GUARD_BIN, STS_GUARD_IMAGE, ContainerStsGuard, kubelet_probe, kubelet_volume, one


def image_config(image: str) -> dict:
    result = subprocess.run(["podman", "image", "inspect", image], capture_output=True, text=True, check=True)
    return json.loads(result.stdout)[0]


def test_the_service_transport_is_the_image_and_the_url_transport_the_host_binary(kubectl, sts_guard, identity):
    container = one(identity.docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    if sts_guard.expected_http == "HTTP/2.0":
        # The loopback-URL transport keeps running the binary cargo built.
        assert not isinstance(sts_guard, ContainerStsGuard)
        assert sts_guard.process.argv[0] == str(STS_GUARD_BIN)
        return
    assert isinstance(sts_guard, ContainerStsGuard)
    running = sts_guard.inspect()
    image = image_config(STS_GUARD_IMAGE)
    assert running["State"]["Running"] is True
    assert running["Image"] == image["Id"]
    # What runs is the image's entrypoint with the Deployment's args, as the kubelet runs it.
    assert [running["Path"], *running["Args"]] == [*image["Config"]["Entrypoint"], *container["args"]]
    assert running["Config"]["User"] == "65532:65532"
    assert running["HostConfig"]["ReadonlyRootfs"] is True
    assert running["HostConfig"]["CapDrop"] and not running["HostConfig"]["CapAdd"]
    assert "no-new-privileges" in running["HostConfig"]["SecurityOpt"]
    mounts = {m["Destination"]: m for m in running["Mounts"]}
    for mount in container["volumeMounts"]:
        assert mounts[mount["mountPath"]]["RW"] is False, mount

    # kube-apiserver's calls through the Service reach the container: its decision log (the
    # container's output) shows this StatefulSet's reviews over HTTP/1.1.
    ns = kubectl.namespace("image-log")
    kubectl.ok("create", "-n", ns, "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "Service", "metadata": {"name": "logged"},
        "spec": {"clusterIP": "None", "selector": {"app": "logged"}, "ports": [{"port": 80}]}}))

    def decided():
        return [d for d in sts_guard.decisions() if d["object"] == f"{ns}/logged"]

    decisions = wait_until("the decision on Service logged in the container's log", decided, timeout=30)
    assert {d["http"] for d in decisions} == {"HTTP/1.1"}
    assert {d["user"] for d in decisions} == {"e2e-admin"}
    assert {(d["endpoint"], d["kind"], d["operation"]) for d in decisions} == {("validate", "Service", "CREATE")}


@pytest.fixture(scope="module")
def image_server(cluster, identity, run_dir):
    netns = NetworkNamespace(f"{os.getpid() % 100000}i")
    server = None
    try:
        netns.forward_loopback(cluster.apiserver_port)
        server = ContainerStsGuard("sts-guard-image", run_dir, identity, cluster, netns, STS_GUARD_IMAGE)
        server.start()
        yield server
    finally:
        if server:
            server.stop()
        netns.delete()


def verifies_with(server: ContainerStsGuard, ca) -> bool:
    """Whether the server's certificate verifies against `ca` (as the Service's DNS name), on the
    admin port: it serves the same certificate and asks no client certificate."""
    try:
        status, _ = https_get(f"{server.admin_url}/healthz", ca, timeout=2, server_name=server.server_name)
    except ssl.SSLCertVerificationError:
        return False
    return status == 200


def test_a_certificate_rotated_by_swapping_data_is_picked_up_by_the_running_container(image_server, run_dir):
    server = image_server
    old_ca = run_dir / "image-old-ca.crt"
    old_ca.write_bytes(server.ca.read_bytes())
    assert verifies_with(server, old_ca)
    pid = server.inspect()["State"]["Pid"]

    # A new CA and serving pair for the same name, swapped in as the kubelet updates a Secret.
    rotated = run_dir / "image-rotated"
    subprocess.run([str(STS_GUARD_BIN), "certs", "--dns", server.server_name, "--out", str(rotated)],
                   check=True, capture_output=True)
    before = os.readlink(server.tls_dir / "..data")
    kubelet_volume(server.tls_dir, {name: (rotated / name).read_bytes() for name in ("ca.crt", "tls.crt", "tls.key")})
    assert os.readlink(server.tls_dir / "..data") != before
    new_ca = run_dir / "image-new-ca.crt"
    new_ca.write_bytes((rotated / "ca.crt").read_bytes())

    # The server re-reads the files every --cert-reload-interval (10 s, the chart sets none).
    wait_until("the rotated certificate served", lambda: verifies_with(server, new_ca), timeout=45, interval=0.5)
    assert not verifies_with(server, old_ca)
    assert server.inspect()["State"]["Pid"] == pid, "picked up without a restart"
    assert server.ready()


def test_sigterm_drains_an_in_flight_review_within_the_grace_period(cluster, image_server, identity):
    server = image_server
    review = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": "d7a1b2c3-0000-4000-8000-00000000d1a1",
        "kind": {"group": "apps", "version": "v1", "kind": "StatefulSet"},
        "resource": {"group": "apps", "version": "v1", "resource": "statefulsets"},
        "name": "drained", "namespace": "drain-test", "operation": "CREATE",
        "userInfo": {"username": "e2e-admin", "groups": ["system:masters"]},
        "object": {"apiVersion": "apps/v1", "kind": "StatefulSet",
                   "metadata": {"name": "drained", "namespace": "drain-test"},
                   "spec": {"serviceName": "absent", "replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                            "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": []}}}},
        "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}
    body = json.dumps(review).encode()
    context = ssl.create_default_context(cafile=str(server.ca))
    if cluster.webhook_client_hosts:
        # The chart asks for kube-apiserver's client certificate (tls.clientAuth): present it.
        context.load_cert_chain(str(cluster.webhook_client_cert), str(cluster.webhook_client_key))
    raw = socket.create_connection((server.address, server.port), timeout=10)
    tls = context.wrap_socket(raw, server_hostname=server.server_name)
    try:
        # `Expect: 100-continue`: the server answers "100 Continue" once the handler reads the
        # body, which proves the review is in flight before the signal.
        tls.sendall(
            b"POST /validate HTTP/1.1\r\nhost: " + server.server_name.encode() +
            b"\r\ncontent-type: application/json\r\nexpect: 100-continue\r\ncontent-length: " +
            str(len(body)).encode() + b"\r\n\r\n")
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            chunk = tls.recv(1)
            assert chunk, f"connection closed before 100 Continue: {interim!r}"
            interim += chunk
        assert interim.startswith(b"HTTP/1.1 100"), interim

        signalled = time.monotonic()
        server.terminate()
        # The kubelet would now see the pod unready: the probe fails while the review finishes.
        wait_until("the readiness probe failing after SIGTERM",
                   lambda: not kubelet_probe(server.readiness, server.address, server.ports), timeout=10, interval=0.1)
        tls.sendall(body)
        response = http.client.HTTPResponse(tls)
        response.begin()
        assert response.status == 200
        answer = json.loads(response.read())["response"]
    finally:
        tls.close()
    assert answer["uid"] == review["request"]["uid"]
    assert answer["allowed"] is False and "sts-service-exists" in answer["status"]["message"], answer

    grace = one(identity.docs, "Deployment")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert server.wait_exit(timeout=grace) == 0, "exited 0 after the drain"
    assert time.monotonic() - signalled < grace
    decision = [d for d in server.decisions() if d["uid"] == review["request"]["uid"]]
    assert [(d["decision"], d["http"]) for d in decision] == [("deny", "HTTP/1.1")]

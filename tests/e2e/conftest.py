"""Fixtures of the end-to-end run: one real control plane for the session, and sts-guard in
cluster mode registered with it through the webhook configurations the chart renders.

sts-guard runs as the chart's ServiceAccount, bound to the ClusterRole the chart renders (not
admin), so the documented read-only RBAC is what the run proves enough. The webhook
configurations keep every field the chart renders except `clientConfig`, which points at the
local server (`url: https://127.0.0.1:PORT/...`) with its CA.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import pytest

from controlplane import ControlPlane, NetworkNamespace, tail
from harness import (
    RELEASE, RELEASE_NAMESPACE, ROOT, ChartIdentity, Kubectl, chart_identity, dump_all, service_server, url_server,
)


def _sigterm_as_interrupt(signum, frame):
    # CI stops a run with SIGTERM: end the session as Ctrl-C does, so fixture teardowns stop
    # the control plane instead of the interpreter dying with its children still running.
    raise KeyboardInterrupt(f"terminated by signal {signum}")


signal.signal(signal.SIGTERM, _sigterm_as_interrupt)


def pytest_addoption(parser):
    parser.addoption("--keep-run-dir", action="store_true", help="keep certificates and logs")


_RUN_DIRS: list[pathlib.Path] = []


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failed scenario shows the end of every process log of the run beside its traceback."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for directory in _RUN_DIRS:
            for log in sorted(directory.rglob("*.log")):
                report.sections.append((f"log {log.name}", tail(log, 25)))


@pytest.fixture(scope="session")
def run_dir(request):
    base = os.environ.get("E2E_RUN_DIR")
    path = pathlib.Path(base) if base else pathlib.Path(tempfile.mkdtemp(prefix="sts-guard-e2e-"))
    path.mkdir(parents=True, exist_ok=True)
    _RUN_DIRS.append(path)
    yield path
    if not base and not request.config.getoption("--keep-run-dir"):
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def cluster(run_dir):
    bin_dir = os.environ.get("E2E_BIN_DIR")
    if not bin_dir:
        bin_dir = subprocess.run(
            [str(ROOT / "tests" / "e2e" / "build-control-plane.sh")],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    # kube-apiserver presents a client certificate to the chart's Service, and the chart asks
    # for it (tls.clientAuth, see harness.chart_identity): mutual TLS on the HTTP/1.1 transport.
    plane = ControlPlane(pathlib.Path(bin_dir), run_dir / "control-plane",
                         webhook_client_hosts=(f"{RELEASE}.{RELEASE_NAMESPACE}.svc",))
    try:
        plane.start()
        yield plane
    except BaseException:
        print(plane.tail_logs())
        raise
    finally:
        plane.stop()


@pytest.fixture(scope="session")
def kubectl(cluster) -> Kubectl:
    return Kubectl(cluster.binary("kubectl"), cluster.admin_kubeconfig)


@pytest.fixture(scope="session")
def identity(cluster, kubectl, run_dir) -> ChartIdentity:
    return chart_identity(cluster, kubectl, run_dir)


@pytest.fixture(scope="session", params=["service", "url"], ids=["http1-service", "http2-url"])
def sts_guard(request, cluster, kubectl, identity, run_dir):
    """sts-guard serving the real apiserver, registered through the chart's webhook
    configurations, once per way kube-apiserver calls a webhook: through the chart's Service
    (HTTP/1.1, the production path) and at a loopback URL (HTTP/2). Every scenario runs against
    both; each gets namespaces of its own per transport."""
    netns = None
    if request.param == "service":
        netns = NetworkNamespace(str(os.getpid() % 100000))
        server = service_server(identity, run_dir, netns, cluster)
        kubectl.namespace_suffix = "-h1"
    else:
        server = url_server(identity, run_dir)
        kubectl.namespace_suffix = "-h2"
    try:
        server.start()
        if server.service_objects:
            kubectl.ok("apply", "-f", "-", input=dump_all(server.service_objects))
        kubectl.ok("apply", "-f", "-", input=dump_all(server.webhook_configurations))
        yield server
    finally:
        kubectl.namespace_suffix = ""
        for doc in server.webhook_configurations:
            kubectl("delete", doc["kind"], doc["metadata"]["name"], "--ignore-not-found")
        for doc in server.service_objects:
            kubectl("delete", doc["kind"], doc["metadata"]["name"], "-n", doc["metadata"]["namespace"],
                    "--ignore-not-found")
        server.stop()
        if netns:
            netns.delete()

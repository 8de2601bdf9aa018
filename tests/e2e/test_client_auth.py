"""Mutual TLS on the production path: kube-apiserver's admission control config gives the chart's
Service host a client certificate (tests/e2e/controlplane.py), and the chart is rendered with
`tls.clientAuth` (tests/e2e/harness.py), so the image behind the Service asks for it. Every other
scenario of the suite runs through it on the HTTP/1.1 transport; here: only kube-apiserver gets
past the handshake, while the kubelet's probes and Prometheus use the admin port.
"""

from __future__ import annotations

import json
import re
import ssl

import pytest

from controlplane import https_get
from test_admission import denied, statefulset


def refused_at_the_handshake(url: str, ca, server_name: str, cert=None, key=None):
    """No HTTP answer at all: the TLS handshake (or, with TLS 1.3, the first read after it)
    fails."""
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(url, ca, cert=cert, key=key, server_name=server_name)


def test_only_kube_apiserver_gets_past_the_handshake(cluster, kubectl, sts_guard):
    if sts_guard.expected_http != "HTTP/1.1":
        pytest.skip("kube-apiserver presents its client certificate to the chart's Service host only")
    args = sts_guard.spec["args"]
    assert "--client-ca=/etc/sts-guard/client-ca/ca.crt" in args, args
    assert f"--client-name={cluster.WEBHOOK_CLIENT_NAME}" in args, args

    # kube-apiserver's calls get through: sts-guard's own denial comes back.
    ns = kubectl.namespace("m1-mtls")
    message = denied(kubectl.apply(statefulset("web", "absent"), args=("-n", ns)))
    assert f'sts-service-exists: StatefulSet {ns}/web: spec.serviceName "absent" names no Service' in message
    calls = [d for d in sts_guard.decisions() if d["object"] == f"{ns}/web"]
    assert calls and {d["http"] for d in calls} == {"HTTP/1.1"}, calls

    # Anyone else reaching the webhook port gets no AdmissionReview: no certificate, or one of
    # the same CA under another name (the e2e's admin).
    for path in ("/validate", "/healthz"):
        refused_at_the_handshake(f"{sts_guard.url}{path}", sts_guard.ca, sts_guard.server_name)
        refused_at_the_handshake(f"{sts_guard.url}{path}", sts_guard.ca, sts_guard.server_name,
                                 cert=cluster.admin_cert, key=cluster.admin_key)

    # The kubelet's probes and Prometheus use the admin port, which asks no certificate and
    # serves nothing else.
    status, body = https_get(f"{sts_guard.admin_url}/readyz", sts_guard.ca, server_name=sts_guard.server_name)
    assert (status, body) == (200, "ready\n")
    status, _ = https_get(f"{sts_guard.admin_url}/validate", sts_guard.ca, server_name=sts_guard.server_name)
    assert status in (404, 405)
    refused = re.search(r'^sts_guard_refused_total\{reason="client_certificate"\} (\d+)', sts_guard.metrics(), re.M)
    assert refused and int(refused.group(1)) >= 4, sts_guard.metrics()
    assert json.dumps(calls)  # the calls were logged as JSON lines

"""Scenario 10: the chart installed, upgraded and uninstalled by real Helm (helm-python-sdk, the
Helm Go SDK) against the real apiserver — the path `helm template` cannot show: every object
passes the apiserver's own validation, and `lookup` makes an upgrade keep the generated CA."""

from __future__ import annotations

import base64

import helm_python as helm
import pytest

from harness import CHART

RELEASE = "sts-guard-helm"
NAMESPACE = "sts-guard-helm"


@pytest.fixture
def helm_config(cluster):
    config = helm.Config(kubeconfig_path=str(cluster.admin_kubeconfig), namespace=NAMESPACE)
    yield config
    config.uninstall(RELEASE, ignore_not_found=True)


def test_chart_install_upgrade_uninstall(kubectl, helm_config):
    # A server-side dry run first: the apiserver validates every object without storing it.
    helm_config.install(str(CHART), RELEASE, namespace=NAMESPACE, create_namespace=True, dry_run="server")
    assert not kubectl.exists("validatingwebhookconfiguration", RELEASE, "default")

    release = helm_config.install(str(CHART), RELEASE, namespace=NAMESPACE, create_namespace=True)
    assert (release["status"], release["revision"]) == ("deployed", 1), release
    for kind in ("deployment", "service", "serviceaccount", "configmap", "secret/" + RELEASE + "-tls",
                 "poddisruptionbudget"):
        name = kind.split("/")[1] if "/" in kind else RELEASE
        assert kubectl.exists(kind.split("/")[0], name, NAMESPACE), kind
    for kind in ("clusterrole", "clusterrolebinding", "validatingwebhookconfiguration",
                 "mutatingwebhookconfiguration"):
        assert kubectl("get", kind, RELEASE).ok, kind

    secret = kubectl.get("secret", f"{RELEASE}-tls", NAMESPACE)
    validating = kubectl.get("validatingwebhookconfiguration", RELEASE)
    mutating = kubectl.get("mutatingwebhookconfiguration", RELEASE)
    ca_bundles = {w["clientConfig"]["caBundle"] for w in validating["webhooks"] + mutating["webhooks"]}
    assert ca_bundles == {secret["data"]["ca.crt"]}
    assert base64.b64decode(secret["data"]["ca.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")

    # The upgrade changes a value and must keep the CA and serving pair (found by `lookup`).
    release = helm_config.upgrade(str(CHART), RELEASE, {"webhook": {"timeoutSeconds": 7}},
                                  namespace=NAMESPACE, reuse_values=True)
    assert (release["status"], release["revision"]) == ("deployed", 2), release
    upgraded = kubectl.get("validatingwebhookconfiguration", RELEASE)
    assert {w["timeoutSeconds"] for w in upgraded["webhooks"]} == {7}
    assert {w["clientConfig"]["caBundle"] for w in upgraded["webhooks"]} == ca_bundles
    assert kubectl.get("secret", f"{RELEASE}-tls", NAMESPACE)["data"] == secret["data"]

    helm_config.uninstall(RELEASE)
    for kind in ("validatingwebhookconfiguration", "mutatingwebhookconfiguration", "clusterrole",
                 "clusterrolebinding"):
        result = kubectl("get", kind, RELEASE, "--ignore-not-found", "-o", "name")
        assert result.ok and result.stdout.strip() == "", result

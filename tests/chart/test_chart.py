"""The Helm chart, rendered by real Helm (helm-python-sdk, the Helm Go SDK) and validated
against the Kubernetes JSON schemas (kubernetes-validate), then checked by sts-guard itself."""

import os
import pathlib
import ssl
import subprocess
import tempfile

import helm_python as helm
import kubernetes_validate as kv
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sts-guard"
BIN = pathlib.Path(os.environ.get("STS_GUARD_BIN", ROOT / "target" / "debug" / "sts-guard"))
NAMESPACE = "platform-guard"
RELEASE = "sts-guard"
# Custom resources: no schema in kubernetes-validate.
CRD_KINDS = {"ServiceMonitor", "Certificate", "Issuer"}
KUBE_VERSIONS = ["1.30", "1.34"]

VARIANTS = {
    "default": {},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-cluster-issuer": {
        "tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}
    },
    "ignore": {"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 3}},
    "extras": {
        "serviceMonitor": {"enabled": True},
        "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.0/8"]},
        "watchNamespaces": ["team-a", "team-b"],
        "webhook": {"excludeNamespaces": ["legacy"]},
        "config": {"rules": {"sts-shared-claim": "deny", "pod-identity-env": "off"}, "onLookupError": "deny",
                   "partition": {"canary": {"production": 1}}, "forceDelete": {"allowedGroups": ["sre"]}},
    },
}


def render(values):
    out = helm.Chart.load(str(CHART)).render(values, name=RELEASE, namespace=NAMESPACE)
    docs = []
    for key in sorted(out):
        if key.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[key]) if d)
    return docs


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{kind}: {len(found)}"
    return found[0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_lint_strict_is_clean(variant):
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True, namespace=NAMESPACE)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(variant, version):
    docs = render(VARIANTS[variant])
    assert len(docs) >= 9
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            with pytest.raises(kv.SchemaNotFoundError):
                kv.validate(doc, version, strict=True)
            continue
        kv.validate(doc, version, strict=True)


def test_bad_values_are_refused_by_the_schema():
    for bad in [{"webhook": {"failurePolicy": "Sometimes"}}, {"tls": {"mode": "manual"}},
                {"replicaCount": 0}, {"config": {"rules": {"no-such-rule": "deny"}}}, {"typo": 1}]:
        with pytest.raises(helm.HelmValuesError):
            render(bad)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_webhook_configurations_are_what_spec_requires(variant):
    values = VARIANTS[variant]
    docs = render(values)
    failure_policy = values.get("webhook", {}).get("failurePolicy", "Fail")
    timeout = values.get("webhook", {}).get("timeoutSeconds", 5)
    cert_manager = values.get("tls", {}).get("mode") == "certManager"
    validating = one(docs, "ValidatingWebhookConfiguration")
    mutating = one(docs, "MutatingWebhookConfiguration")

    def rules(hook):
        return sorted((g, r, tuple(sorted(rule["operations"])))
                      for rule in hook["rules"] for g in rule["apiGroups"] for r in rule["resources"])

    v_hooks = {h["name"]: h for h in validating["webhooks"]}
    m_hooks = {h["name"]: h for h in mutating["webhooks"]}
    assert rules(v_hooks["statefulsets-services.validate.sts-guard.io"]) == [
        ("", "services", ("CREATE", "DELETE", "UPDATE")), ("apps", "statefulsets", ("CREATE", "DELETE", "UPDATE"))]
    assert rules(v_hooks["pods.validate.sts-guard.io"]) == [("", "pods", ("DELETE",))]
    assert rules(m_hooks["pods.mutate.sts-guard.io"]) == [("", "pods", ("CREATE",))]
    assert rules(m_hooks["statefulsets.mutate.sts-guard.io"]) == [("apps", "statefulsets", ("CREATE", "UPDATE"))]

    pod_selector = {"matchExpressions": [{"key": "statefulset.kubernetes.io/pod-name", "operator": "Exists"}]}
    secret = None if cert_manager else one(docs, "Secret")
    for name, hook in list(v_hooks.items()) + list(m_hooks.items()):
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["failurePolicy"] == failure_policy
        assert hook["timeoutSeconds"] == timeout
        service = hook["clientConfig"]["service"]
        assert (service["name"], service["namespace"], service["port"]) == (RELEASE, NAMESPACE, 443)
        assert service["path"] == ("/mutate" if ".mutate." in name else "/validate")
        expressions = hook["namespaceSelector"]["matchExpressions"]
        excluded = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
        assert excluded["operator"] == "NotIn"
        assert {NAMESPACE, "kube-system"} <= set(excluded["values"])
        assert set(values.get("webhook", {}).get("excludeNamespaces", [])) <= set(excluded["values"])
        assert {"key": "sts-guard.io/ignore", "operator": "NotIn", "values": ["true"]} in expressions
        if name.startswith("pods."):
            assert hook["objectSelector"] == pod_selector
        else:
            assert "objectSelector" not in hook
        if ".mutate." in name:
            assert hook["reinvocationPolicy"] == "IfNeeded"
        if cert_manager:
            assert "caBundle" not in hook["clientConfig"]
        else:
            assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    for config in (validating, mutating):
        annotations = config["metadata"].get("annotations", {})
        if cert_manager:
            assert annotations["cert-manager.io/inject-ca-from"] == f"{NAMESPACE}/{RELEASE}"
        else:
            assert "cert-manager.io/inject-ca-from" not in annotations


def test_generated_certificate_is_for_the_service_and_signed_by_the_bundle():
    docs = render({})
    secret = one(docs, "Secret")
    import base64
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for key in ("ca.crt", "tls.crt", "tls.key"):
            paths[key] = pathlib.Path(tmp) / key
            paths[key].write_bytes(base64.b64decode(secret["data"][key]))
        decoded = ssl._ssl._test_decode_cert(str(paths["tls.crt"]))
        sans = {value for kind, value in decoded["subjectAltName"] if kind == "DNS"}
        assert f"{RELEASE}.{NAMESPACE}.svc" in sans
        # The chain verifies against the bundle the webhooks carry, and the key matches.
        ctx = ssl.create_default_context(cafile=str(paths["ca.crt"]))
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server.load_cert_chain(str(paths["tls.crt"]), str(paths["tls.key"]))
        assert ctx.cert_store_stats()["x509_ca"] == 1


def test_cert_manager_mode_issues_the_serving_secret():
    docs = render(VARIANTS["cert-manager"])
    cert = one(docs, "Certificate")
    assert cert["spec"]["secretName"] == f"{RELEASE}-tls"
    assert f"{RELEASE}.{NAMESPACE}.svc" in cert["spec"]["dnsNames"]
    assert cert["spec"]["issuerRef"] == {"name": f"{RELEASE}-selfsigned", "kind": "Issuer"}
    assert by_kind(docs, "Secret") == []
    docs = render(VARIANTS["cert-manager-cluster-issuer"])
    assert one(docs, "Certificate")["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer"}
    assert by_kind(docs, "Issuer") == []


def test_rbac_is_read_only_on_the_three_kinds_lists_pods_and_claims_and_gets_namespaces():
    docs = render({})
    role = one(docs, "ClusterRole")
    granted = sorted((g, r, tuple(sorted(rule["verbs"])))
                     for rule in role["rules"] for g in rule["apiGroups"] for r in rule["resources"])
    # Pods and PersistentVolumeClaims: get and list (no watch) for the audit (`sts-guard audit`
    # run as this ServiceAccount, and the background audit of `serve`).
    # ControllerRevisions: get only, the update revision of a rollout under way (its age).
    # Namespaces: get only, asked before denying a governing Service's delete.
    assert granted == [("", "namespaces", ("get",)), ("", "nodes", ("get", "list", "watch")),
                       ("", "persistentvolumeclaims", ("get", "list")),
                       ("", "pods", ("get", "list")),
                       ("", "services", ("get", "list", "watch")),
                       ("apps", "controllerrevisions", ("get",)),
                       ("apps", "statefulsets", ("get", "list", "watch"))]
    binding = one(docs, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    account = one(docs, "ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]


def test_deployment_is_hardened_and_probed():
    docs = render({})
    deployment = one(docs, "Deployment")
    spec = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["affinity"]["podAntiAffinity"]
    container = spec["containers"][0]
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"] == {"drop": ["ALL"]}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "https", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "https", "scheme": "HTTPS"}
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert "--drain-timeout=20" in container["args"]
    assert spec["terminationGracePeriodSeconds"] > 20
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    tls_volume = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == f"{RELEASE}-tls"


def run_binary(*args, stdin=b""):
    assert BIN.exists(), f"{BIN} missing: build it with cargo build first (or set STS_GUARD_BIN)"
    return subprocess.run([str(BIN), *args], input=stdin, capture_output=True, timeout=60)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_config_file_is_accepted_by_sts_guard(variant):
    configmap = one(render(VARIANTS[variant]), "ConfigMap")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write(configmap["data"]["config.yaml"])
        f.flush()
        result = run_binary("check", "--config", f.name, "-")
        assert result.returncode == 0, result.stderr.decode()


def test_a_broken_config_value_is_refused_by_sts_guard():
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        f.write("rules:\n  sts-service-exists: maybe\n")
        f.flush()
        result = run_binary("check", "--config", f.name, "-")
        assert result.returncode == 2
        assert b"rules.sts-service-exists" in result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_chart_obeys_its_own_policy(variant):
    docs = render(VARIANTS[variant])
    result = run_binary("check", "--namespace", NAMESPACE, "--output", "json", "-",
                        stdin=yaml.safe_dump_all(docs).encode())
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()

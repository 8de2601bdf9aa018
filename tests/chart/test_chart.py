"""The Helm chart, rendered by real Helm (helm-python-sdk, the Helm Go SDK) and validated
against the Kubernetes JSON schemas (kubernetes-validate), then checked by sts-guard itself; its
PrometheusRule checked and unit-tested by the real promtool (tests/chart/promtool/)."""

import base64
import json
import os
import pathlib
import re
import ssl
import subprocess
import tempfile

import helm_python as helm
import kubernetes_validate as kv
import pytest
import yaml
from helm_python import _native

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sts-guard"
BIN = pathlib.Path(os.environ.get("STS_GUARD_BIN", ROOT / "target" / "debug" / "sts-guard"))
NAMESPACE = "platform-guard"
RELEASE = "sts-guard"
# Custom resources: no schema in kubernetes-validate.
CRD_KINDS = {"ServiceMonitor", "Certificate", "Issuer", "PrometheusRule"}
# Rendered for each (`helm template --kube-version`) and validated against that version's
# schemas: the oldest the chart supports and the last without matchConditions, then 1.30 (GA)
# and 1.34 with them.
KUBE_VERSIONS = ["1.25", "1.29", "1.30", "1.34"]

# The webhooks, the value of webhook.failurePolicies that sets each one's policy, and the
# names of the matchConditions it gets on Kubernetes 1.30+.
WEBHOOKS = {
    "statefulsets.validate.sts-guard.io": ("validateStatefulSets", ["update-changes-spec", "delete-not-by-the-control-plane"]),
    "services.validate.sts-guard.io": (
        "validateServices", ["update-changes-type-clusterip-or-selector", "delete-not-by-the-control-plane"]),
    "pods.validate.sts-guard.io": (
        "validatePodDeletes",
        ["zero-grace-period", "scheduled-and-not-finished", "not-the-pods-own-kubelet", "not-the-control-plane"]),
    "pods.mutate.sts-guard.io": ("mutatePods", []),
    "statefulsets.mutate.sts-guard.io": ("mutateStatefulSets", ["update-changes-template"]),
}
DEFAULT_POLICIES = {"validateStatefulSets": "Fail", "validateServices": "Fail", "validatePodDeletes": "Fail",
                    "mutatePods": "Ignore", "mutateStatefulSets": "Ignore"}

VARIANTS = {
    "default": {},
    "cert-manager": {"tls": {"mode": "certManager"}},
    "cert-manager-cluster-issuer": {
        "tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}
    },
    "ignore": {"webhook": {"failurePolicies": {hook: "Ignore" for hook in DEFAULT_POLICIES}, "timeoutSeconds": 3}},
    # What the outage e2e registers: every webhook fails closed.
    "fail-closed": {"webhook": {"failurePolicies": {hook: "Fail" for hook in DEFAULT_POLICIES}}},
    # A first install on a live cluster: nothing refused, only labelled namespaces checked.
    "first-install": {"mode": "monitor", "webhook": {"optIn": True}},
    "client-auth": {"tls": {"clientAuth": {"enabled": True, "caConfigMap": "kube-apiserver-client-ca",
                                           "names": ["kube-apiserver", "apiserver.platform.example.com"]}}},
    "extras": {
        "serviceMonitor": {"enabled": True},
        "prometheusRule": {"enabled": True, "labels": {"prometheus": "platform"},
                           "additionalLabels": {"team": "platform"}},
        "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.0/8"]},
        "watchNamespaces": ["team-a", "team-b"],
        "webhook": {"excludeNamespaces": ["legacy"], "timeoutSeconds": 10},
        "config": {"rules": {"sts-shared-claim": "deny", "pod-identity-env": "off"}, "onLookupError": "deny",
                   "partition": {"canary": {"production": 1}}, "forceDelete": {"allowedGroups": ["sre"]}},
    },
}


def render(values, kube_version=None):
    """The chart as `helm template` renders it, for `kube_version` (e.g. "1.29") when given,
    else for Helm's default (a current release)."""
    chart = helm.Chart.load(str(CHART))
    if kube_version is None:
        out = chart.render(values, name=RELEASE, namespace=NAMESPACE)
    else:
        # helm-python-sdk 0.2.2 (pinned) does not pass kube_version on from Chart.render, but
        # its library's render takes it, as `helm template --kube-version` does.
        options = {"name": RELEASE, "namespace": NAMESPACE, "kube_version": f"{kube_version}.0"}
        out = json.loads(_native.call_string("helm_render", chart._raw(), json.dumps(values), json.dumps(options)))
    docs = []
    for key in sorted(out):
        if key.endswith("NOTES.txt"):
            continue
        docs.extend(d for d in yaml.safe_load_all(out[key]) if d)
    return docs


def merged(values):
    """The release's values: the chart's defaults with `values` over them."""
    return helm.Chart.load(str(CHART)).merge_values(values)


def by_kind(docs, kind):
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind):
    found = by_kind(docs, kind)
    assert len(found) == 1, f"{kind}: {len(found)}"
    return found[0]


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", [None, "1.25.0", "1.29.0"])
def test_lint_strict_is_clean(variant, version):
    report = helm.lint(str(CHART), VARIANTS[variant], strict=True, namespace=NAMESPACE, kube_version=version)
    assert report["errors"] == []
    assert [m for m in report["messages"] if m["severity"] >= 2] == []


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("version", KUBE_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schema(variant, version):
    docs = render(VARIANTS[variant], version)
    assert len(docs) >= 9
    for doc in docs:
        if doc["kind"] in CRD_KINDS:
            with pytest.raises(kv.SchemaNotFoundError):
                kv.validate(doc, version, strict=True)
            continue
        kv.validate(doc, version, strict=True)


# Each bad value, and the path the schema's refusal must name.
BAD_VALUES = [
    ({"webhook": {"failurePolicies": {"validateServices": "Sometimes"}}}, "/webhook/failurePolicies/validateServices"),
    ({"webhook": {"failurePolicies": {"mutatePods": "fail"}}}, "/webhook/failurePolicies/mutatePods"),
    ({"webhook": {"failurePolicies": {"validateEverything": "Fail"}}}, "'validateEverything' not allowed"),
    # The single policy of earlier releases is gone: an old values file is refused, not ignored.
    ({"webhook": {"failurePolicy": "Ignore"}}, "'failurePolicy' not allowed"),
    ({"webhook": {"optIn": "yes"}}, "/webhook/optIn"),
    ({"mode": "audit"}, "/mode"),
    # null removes a value in Helm, defaults included.
    ({"mode": None}, "missing property 'mode'"),
    ({"tls": {"clientAuth": {"enabled": True}}}, "/tls/clientAuth/caConfigMap"),
    ({"tls": {"clientAuth": {"enabled": True, "caConfigMap": "Not_A_Name"}}}, "/tls/clientAuth/caConfigMap"),
    ({"tls": {"clientAuth": {"enabled": True, "caConfigMap": "ca", "names": [""]}}}, "/tls/clientAuth/names/0"),
    ({"tls": {"clientAuth": {"enabled": "true", "caConfigMap": "ca"}}}, "/tls/clientAuth/enabled"),
    ({"tls": {"clientAuth": {"caBundle": "x"}}}, "'caBundle' not allowed"),
    ({"prometheusRule": {"enabled": "yes"}}, "/prometheusRule/enabled"),
    ({"prometheusRule": {"labels": {"team": 1}}}, "/prometheusRule/labels/team"),
    ({"prometheusRule": {"additionalLabels": []}}, "/prometheusRule/additionalLabels"),
    ({"prometheusRule": {"enable": True}}, "'enable' not allowed"),
    ({"tls": {"mode": "manual"}}, "/tls/mode"),
    ({"replicaCount": 0}, "/replicaCount"),
    ({"maxConnections": 0}, "/maxConnections"),
    ({"maxConnections": "2048"}, "/maxConnections"),
    ({"auditIntervalSeconds": -1}, "/auditIntervalSeconds"),
    ({"auditIntervalSeconds": "5m"}, "/auditIntervalSeconds"),
    ({"config": {"rules": {"no-such-rule": "deny"}}}, "invalid propertyName 'no-such-rule'"),
    ({"typo": 1}, "'typo' not allowed"),
]


@pytest.mark.parametrize("bad, named", BAD_VALUES, ids=[named for _, named in BAD_VALUES])
def test_bad_values_are_refused_by_the_schema_naming_the_value(bad, named):
    with pytest.raises(helm.HelmValuesError) as refused:
        render(bad)
    assert named in str(refused.value), str(refused.value)


@pytest.mark.parametrize("good", [
    {"webhook": {"failurePolicies": {"mutatePods": "Fail"}}},
    {"webhook": {"optIn": True}},
    {"mode": "monitor"},
    {"mode": "enforce"},
    {"tls": {"clientAuth": {"enabled": True, "caConfigMap": "apiserver-client-ca.v2"}}},
    {"tls": {"clientAuth": {"enabled": True, "caConfigMap": "ca", "names": []}}},
    {"tls": {"clientAuth": {"enabled": False, "caConfigMap": ""}}},
    {"prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}, "additionalLabels": {}}},
], ids=lambda good: json.dumps(good, sort_keys=True))
def test_good_values_pass_the_schema(good):
    assert render(good)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_webhook_configurations_are_what_spec_requires(variant):
    values = VARIANTS[variant]
    release = merged(values)
    docs = render(values)
    cert_manager = release["tls"]["mode"] == "certManager"
    validating = one(docs, "ValidatingWebhookConfiguration")
    mutating = one(docs, "MutatingWebhookConfiguration")

    def rules(hook):
        return sorted((g, r, tuple(sorted(rule["operations"])))
                      for rule in hook["rules"] for g in rule["apiGroups"] for r in rule["resources"])

    v_hooks = {h["name"]: h for h in validating["webhooks"]}
    m_hooks = {h["name"]: h for h in mutating["webhooks"]}
    assert sorted(v_hooks) + sorted(m_hooks) == sorted(n for n in WEBHOOKS if ".validate." in n) + sorted(
        n for n in WEBHOOKS if ".mutate." in n)
    assert rules(v_hooks["statefulsets.validate.sts-guard.io"]) == [("apps", "statefulsets", ("CREATE", "DELETE", "UPDATE"))]
    assert rules(v_hooks["services.validate.sts-guard.io"]) == [("", "services", ("CREATE", "DELETE", "UPDATE"))]
    assert rules(v_hooks["pods.validate.sts-guard.io"]) == [("", "pods", ("DELETE",))]
    assert rules(m_hooks["pods.mutate.sts-guard.io"]) == [("", "pods", ("CREATE",))]
    assert rules(m_hooks["statefulsets.mutate.sts-guard.io"]) == [("apps", "statefulsets", ("CREATE", "UPDATE"))]

    pod_selector = {"matchExpressions": [{"key": "statefulset.kubernetes.io/pod-name", "operator": "Exists"}]}
    secret = None if cert_manager else one(docs, "Secret")
    for name, hook in list(v_hooks.items()) + list(m_hooks.items()):
        policy_value, conditions = WEBHOOKS[name]
        assert hook["sideEffects"] == "None"
        assert hook["admissionReviewVersions"] == ["v1"]
        assert hook["matchPolicy"] == "Equivalent"
        assert hook["failurePolicy"] == release["webhook"]["failurePolicies"][policy_value], name
        assert hook["timeoutSeconds"] == release["webhook"]["timeoutSeconds"]
        assert [c["name"] for c in hook.get("matchConditions", [])] == conditions, name
        service = hook["clientConfig"]["service"]
        assert (service["name"], service["namespace"], service["port"]) == (RELEASE, NAMESPACE, 443)
        assert service["path"] == ("/mutate" if ".mutate." in name else "/validate")
        expressions = hook["namespaceSelector"]["matchExpressions"]
        excluded = next(e for e in expressions if e["key"] == "kubernetes.io/metadata.name")
        assert excluded["operator"] == "NotIn"
        assert {NAMESPACE, "kube-system"} <= set(excluded["values"])
        assert set(release["webhook"]["excludeNamespaces"]) <= set(excluded["values"])
        assert {"key": "sts-guard.io/ignore", "operator": "NotIn", "values": ["true"]} in expressions
        opt_in = {"key": "sts-guard.io/enabled", "operator": "In", "values": ["true"]}
        assert (opt_in in expressions) == release["webhook"]["optIn"], name
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


def webhooks_of(docs):
    return {h["name"]: h for kind in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")
            for h in one(docs, kind)["webhooks"]}


@pytest.mark.parametrize("version, filtered", [("1.25", False), ("1.29", False), ("1.30", True), ("1.34", True)])
def test_match_conditions_are_rendered_from_kubernetes_1_30(version, filtered):
    # Below 1.30 the chart registers every webhook unfiltered (and says so in NOTES.txt).
    for name, hook in webhooks_of(render({}, version)).items():
        assert [c["name"] for c in hook.get("matchConditions", [])] == (WEBHOOKS[name][1] if filtered else []), name


def test_match_conditions_only_use_what_kubernetes_1_30_offers_and_are_null_safe():
    # Kubernetes 1.30 compiles new matchConditions against its CEL environment of 1.29
    # (k8s.io/apiserver pkg/cel/environment/base.go): optional types (`?.`, orValue) are
    # there from 1.28, but these conditions need none of it, only has() and the operators of
    # CEL itself. A condition that fails to evaluate refuses the request under Fail, so every
    # field that may be absent is tested with has() before it is read (a lint: it finds a
    # has() for every field read, the e2e proves the order right on a real kube-apiserver).
    required = {"request.operation", "request.userInfo"}  # always set by kube-apiserver
    for name, hook in webhooks_of(render({}, "1.30")).items():
        for condition in hook.get("matchConditions", []):
            expression = condition["expression"]
            assert "?." not in expression and "orValue" not in expression and ".optional" not in expression
            for path in set(re.findall(r"\b(?:object|oldObject|request)(?:\.\w+)+", expression)):
                parts = path.split(".")
                for depth in range(2, len(parts) + 1):
                    prefix = ".".join(parts[:depth])
                    if prefix not in required:
                        assert f"has({prefix})" in expression, (name, condition["name"], prefix)
            assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", condition["name"]) and len(condition["name"]) <= 63


@pytest.mark.parametrize("value", sorted(DEFAULT_POLICIES))
def test_each_webhook_has_its_own_failure_policy(value):
    flipped = {"Fail": "Ignore", "Ignore": "Fail"}[DEFAULT_POLICIES[value]]
    hooks = webhooks_of(render({"webhook": {"failurePolicies": {value: flipped}}}))
    for name, hook in hooks.items():
        expected = flipped if WEBHOOKS[name][0] == value else DEFAULT_POLICIES[WEBHOOKS[name][0]]
        assert hook["failurePolicy"] == expected, (value, name)


def rust_control_plane_users():
    source = (ROOT / "src" / "rules" / "mod.rs").read_text()
    block = re.search(r"pub const CONTROL_PLANE_USERS: [^=]*= &\[(.*?)\n\];", source, re.S)
    assert block, "CONTROL_PLANE_USERS not found in src/rules/mod.rs"
    users = re.findall(r'"([^"]+)"', block.group(1))
    assert users, block.group(1)
    return users


def test_the_control_plane_the_conditions_let_through_is_the_one_the_rules_never_refuse():
    # The list is written once, in src/rules/mod.rs; the chart's copy (the CEL list in
    # _helpers.tpl) must say the same, or an outage would refuse the controllers it names.
    expected = sorted(rust_control_plane_users())
    hooks = webhooks_of(render({}, "1.30"))
    for name, condition in [("pods.validate.sts-guard.io", "not-the-control-plane"),
                            ("services.validate.sts-guard.io", "delete-not-by-the-control-plane"),
                            ("statefulsets.validate.sts-guard.io", "delete-not-by-the-control-plane")]:
        expression = next(c["expression"] for c in hooks[name]["matchConditions"] if c["name"] == condition)
        listed = re.search(r"request\.userInfo\.username in \[([^\]]*)\]", expression)
        assert listed, expression
        assert sorted(re.findall(r"'([^']*)'", listed.group(1))) == expected, (name, expression)


def test_generated_certificate_is_for_the_service_and_signed_by_the_bundle():
    docs = render({})
    secret = one(docs, "Secret")
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
    # Probes on the admin port, which asks no client certificate (tls.clientAuth).
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "admin", "scheme": "HTTPS"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "admin", "scheme": "HTTPS"}
    assert {p["name"]: p["containerPort"] for p in container["ports"]} == {"https": 8443, "admin": 8444}
    assert "--addr=0.0.0.0:8443" in container["args"] and "--admin-addr=0.0.0.0:8444" in container["args"]
    assert container["resources"]["requests"] and container["resources"]["limits"]
    assert "--drain-timeout=20" in container["args"]
    assert spec["terminationGracePeriodSeconds"] > 20
    service = one(docs, "Service")
    assert service["spec"]["ports"] == [{"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"},
                                        {"name": "metrics", "port": 8444, "targetPort": "admin", "protocol": "TCP"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    tls_volume = next(v for v in spec["volumes"] if v["name"] == "tls")
    assert tls_volume["secret"]["secretName"] == f"{RELEASE}-tls"


def test_client_certificates_are_off_unless_asked_for():
    container = one(render({}), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert not [a for a in container["args"] if a.startswith(("--client-ca", "--client-name"))]
    assert [m["name"] for m in container["volumeMounts"]] == ["tls", "config"]


def test_client_auth_mounts_the_ca_and_names_the_accepted_clients():
    docs = render(VARIANTS["client-auth"])
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    client_args = [a for a in container["args"] if a.startswith(("--client-ca", "--client-name"))]
    assert client_args == ["--client-ca=/etc/sts-guard/client-ca/ca.crt", "--client-name=kube-apiserver",
                           "--client-name=apiserver.platform.example.com"]
    mount = next(m for m in container["volumeMounts"] if m["name"] == "client-ca")
    assert mount == {"name": "client-ca", "mountPath": "/etc/sts-guard/client-ca", "readOnly": True}
    volume = next(v for v in spec["volumes"] if v["name"] == "client-ca")
    assert volume == {"name": "client-ca", "configMap": {"name": "kube-apiserver-client-ca",
                                                          "items": [{"key": "ca.crt", "path": "ca.crt"}]}}
    # No names: any certificate the CA signed.
    container = one(render({"tls": {"clientAuth": {"enabled": True, "caConfigMap": "ca", "names": []}}}),
                    "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert [a for a in container["args"] if a.startswith("--client")] == ["--client-ca=/etc/sts-guard/client-ca/ca.crt"]


def test_the_background_audit_interval_reaches_the_args_and_turns_off_with_0():
    def audit_args(values):
        container = one(render(values), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        return [a for a in container["args"] if a.startswith("--audit-interval")]
    assert audit_args({}) == ["--audit-interval=300"]
    assert audit_args({"auditIntervalSeconds": 0}) == ["--audit-interval=0"]
    # What the chart writes is what serve takes: its parser refuses anything else by name.
    for values, arg in (({"auditIntervalSeconds": 0}, "--audit-interval=0"),
                        ({"auditIntervalSeconds": 90.5}, "--audit-interval=90.5")):
        assert audit_args(values) == [arg]
        assert run_binary("serve", arg, "--help").returncode == 0, arg
    refused = run_binary("serve", "--audit-interval=-1", "--help")
    assert refused.returncode != 0 and b"--audit-interval" in refused.stderr, refused


def config_file(values):
    return yaml.safe_load(one(render(values), "ConfigMap")["data"]["config.yaml"])


def test_mode_reaches_the_config_file():
    assert config_file({"mode": "monitor"})["mode"] == "monitor"
    assert config_file({})["mode"] == "enforce"


def test_the_deployment_passes_only_flags_sts_guard_serve_knows():
    help_text = run_binary("serve", "--help").stdout.decode()
    known = set(re.findall(r"^\s+(?:-\w, )?(--[a-z][-a-z]*)", help_text, re.M))
    assert {"--client-ca", "--client-name", "--config"} <= known, help_text
    for variant in sorted(VARIANTS):
        container = one(render(VARIANTS[variant]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
        assert container["args"][0] == "serve"
        for arg in container["args"][1:]:
            assert arg.split("=", 1)[0] in known, (variant, arg)


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


# --- the PrometheusRule, checked by the real promtool ---------------------------------------


@pytest.fixture(scope="session")
def promtool():
    """promtool built from its Go module (tests/chart/promtool/build.sh, cached outside the
    checkout); scripts/test builds it first and passes PROMTOOL."""
    path = os.environ.get("PROMTOOL")
    if not path:
        path = subprocess.run([str(ROOT / "tests" / "chart" / "promtool" / "build.sh")], check=True,
                              capture_output=True, text=True).stdout.strip()
    assert pathlib.Path(path).is_file(), path
    return path


def rule_groups(values):
    rule = one(render(values), "PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    return rule, rule["spec"]


def run_promtool(promtool, *args):
    return subprocess.run([promtool, *args], capture_output=True, text=True, timeout=120)


def test_prometheus_rule_is_optional():
    assert by_kind(render({}), "PrometheusRule") == []


def test_prometheus_rule_expressions_pass_promtool_check_rules(promtool, tmp_path):
    rule, spec = rule_groups(VARIANTS["extras"])
    assert rule["metadata"]["namespace"] == NAMESPACE
    assert rule["metadata"]["labels"]["prometheus"] == "platform"
    assert {r["alert"] for r in spec["groups"][0]["rules"]} == set(ALERTS)
    for r in spec["groups"][0]["rules"]:
        assert r["labels"]["team"] == "platform" and r["labels"]["severity"] in ("critical", "warning"), r
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(spec))
    result = run_promtool(promtool, "check", "rules", "--lint=all", "--lint-fatal", str(rules_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 6 rules found" in result.stdout, result.stdout
    # promtool does refuse a broken expression (so the check above means something).
    spec["groups"][0]["rules"][0]["expr"] += " +"
    rules_file.write_text(yaml.safe_dump(spec))
    result = run_promtool(promtool, "check", "rules", str(rules_file))
    assert result.returncode != 0 and "parse error" in (result.stdout + result.stderr), result.stdout + result.stderr


# The alerts, what each is about, and which input series below make it fire (by labels).
ALERTS = {
    "StsGuardNoReadyReplica": "critical",
    "StsGuardWebhookCallsFailing": "critical",
    "StsGuardWebhookFailingOpen": "warning",
    "StsGuardMatchConditionErrors": "critical",
    "StsGuardWebhookLatencyNearTimeout": "warning",
    "StsGuardCertificateExpiresSoon": "warning",
}
FOREIGN_WEBHOOK = "validate.other-policy.example.com"
# Webhook names that look like the chart's but are not (the regex is anchored and escaped).
LOOKALIKES = ["pods.validate.sts-guard.io.evil", "podsXvalidate.sts-guard.io", "statefulsets.validate.sts-guard.ioX"]


def promtool_unit_tests(rules_file: pathlib.Path, timeout: int) -> dict:
    """Series as kube-apiserver, kube-state-metrics and sts-guard export them: every chart
    webhook failing, one foreign webhook and look-alike names failing too (never alerted on),
    plain denials (not failures), slow calls to services.validate only, and certificates of two
    pods (one about to expire) plus one of another namespace."""
    hooks = list(WEBHOOKS)
    failing = {"statefulsets.validate.sts-guard.io": "validating", "pods.mutate.sts-guard.io": "admit"}
    series = []
    for name in hooks + [FOREIGN_WEBHOOK] + LOOKALIKES:
        kind = "admit" if ".mutate." in name else "validating"
        series.append({"series": f'apiserver_admission_webhook_rejection_count{{name="{name}",type="{kind}",'
                                 f'operation="CREATE",error_type="calling_webhook_error",rejection_code="500"}}',
                       "values": "0+1x40"})
        series.append({"series": f'apiserver_admission_webhook_fail_open_count{{name="{name}",type="{kind}"}}',
                       "values": "0+1x40" if name not in failing else "0x40"})
        series.append({"series": f'apiserver_admission_match_condition_evaluation_errors_total{{name="{name}",'
                                 f'kind="webhook",type="{kind}",operation="DELETE"}}',
                       "values": "0+1x40" if name == "pods.validate.sts-guard.io" or name not in WEBHOOKS else "0x40"})
        # Fast calls everywhere except services.validate, whose every call takes 2.5-10 s.
        slow = name in ("services.validate.sts-guard.io", FOREIGN_WEBHOOK)
        for le in ["0.005", "0.025", "0.1", "0.5", "1", "2.5", "10", "25", "+Inf"]:
            count = "0+10x40" if (not slow or le in ("10", "25", "+Inf")) else "0x40"
            series.append({"series": f'apiserver_admission_webhook_admission_duration_seconds_bucket{{name="{name}",'
                                     f'type="{kind}",operation="CREATE",rejected="false",le="{le}"}}',
                           "values": count})
    # Denials by sts-guard itself are answers, not failures.
    series.append({"series": 'apiserver_admission_webhook_rejection_count{name="services.validate.sts-guard.io",'
                             'type="validating",operation="DELETE",error_type="no_error",rejection_code="403"}',
                   "values": "0+100x40"})
    series += [
        {"series": f'kube_deployment_status_replicas_available{{namespace="{NAMESPACE}",deployment="{RELEASE}"}}',
         "values": "2x5 0x35"},
        {"series": f'kube_deployment_status_replicas_available{{namespace="other",deployment="{RELEASE}"}}',
         "values": "0x40"},
        {"series": f'kube_deployment_status_replicas_available{{namespace="{NAMESPACE}",deployment="other"}}',
         "values": "0x40"},
        # promtool's clock starts at 0: expiry 3 days and 30 days from then.
        {"series": f'sts_guard_certificate_expiry_timestamp_seconds{{namespace="{NAMESPACE}",pod="{RELEASE}-a"}}',
         "values": f"{3 * 86400}x40"},
        {"series": f'sts_guard_certificate_expiry_timestamp_seconds{{namespace="{NAMESPACE}",pod="{RELEASE}-b"}}',
         "values": f"{30 * 86400}x40"},
        {"series": 'sts_guard_certificate_expiry_timestamp_seconds{namespace="elsewhere",pod="sts-guard-c"}',
         "values": f"{1 * 86400}x40"},
    ]

    def expect(alert, **labels):
        return {"exp_labels": {"severity": ALERTS[alert], "team": "platform", **labels}}

    fired = {
        "StsGuardNoReadyReplica": [expect("StsGuardNoReadyReplica", namespace=NAMESPACE, deployment=RELEASE)],
        "StsGuardWebhookCallsFailing": [expect("StsGuardWebhookCallsFailing", name=n) for n in hooks],
        "StsGuardWebhookFailingOpen": [expect("StsGuardWebhookFailingOpen", name=n) for n in hooks if n not in failing],
        "StsGuardMatchConditionErrors": [expect("StsGuardMatchConditionErrors", name="pods.validate.sts-guard.io")],
        "StsGuardWebhookLatencyNearTimeout": [
            expect("StsGuardWebhookLatencyNearTimeout", name="services.validate.sts-guard.io")],
        "StsGuardCertificateExpiresSoon": [
            expect("StsGuardCertificateExpiresSoon", namespace=NAMESPACE, pod=f"{RELEASE}-a")],
    }
    assert timeout * 0.8 < 9.9, "the slow calls above must be slower than the alert's threshold"
    return {
        "rule_files": [str(rules_file)],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            # At 25 minutes every alert has been pending longer than its `for`.
            "alert_rule_test": [{"eval_time": "25m", "alertname": alert, "exp_alerts": expected}
                                for alert, expected in fired.items()],
        }],
    }


def with_annotations(test: dict, spec: dict) -> dict:
    """Expected annotations: the rule's, with the alert's labels filled in as Prometheus does."""
    annotations = {r["alert"]: r["annotations"] for r in spec["groups"][0]["rules"]}
    for case in test["tests"][0]["alert_rule_test"]:
        for alert in case["exp_alerts"]:
            def fill(text):
                return re.sub(r"\{\{ \$labels\.(\w+) \}\}", lambda m: alert["exp_labels"][m.group(1)], text)
            alert["exp_annotations"] = {k: fill(v) for k, v in annotations[case["alertname"]].items()}
    return test


def test_prometheus_rule_alerts_fire_for_the_charts_webhooks_only(promtool, tmp_path):
    _, spec = rule_groups(VARIANTS["extras"])
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(spec))
    tests = with_annotations(promtool_unit_tests(rules_file, VARIANTS["extras"]["webhook"]["timeoutSeconds"]), spec)
    tests_file = tmp_path / "tests.yaml"
    tests_file.write_text(yaml.safe_dump(tests))
    result = run_promtool(promtool, "test", "rules", str(tests_file))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout, result.stdout


def test_prometheus_rule_latency_threshold_follows_the_timeout():
    for timeout, threshold in [(5, "> 4"), (10, "> 8"), (30, "> 24")]:
        _, spec = rule_groups({"prometheusRule": {"enabled": True}, "webhook": {"timeoutSeconds": timeout}})
        expr = next(r["expr"] for r in spec["groups"][0]["rules"] if r["alert"] == "StsGuardWebhookLatencyNearTimeout")
        assert expr.endswith(threshold), expr

# --- the image the Deployment runs ----------------------------------------------------------
# The Dockerfile is checked always (it is in the checkout); the built image when STS_GUARD_IMAGE
# names it, as scripts/test does after scripts/image (this suite may run before any image
# exists, e.g. `pytest tests/chart` alone).

IMAGE = os.environ.get("STS_GUARD_IMAGE", "")
needs_image = pytest.mark.skipif(not IMAGE, reason="STS_GUARD_IMAGE not set (scripts/test builds it with scripts/image)")


def deployment_container(docs):
    spec = one(docs, "Deployment")["spec"]["template"]["spec"]
    return spec, spec["containers"][0]


def dockerfile_instructions():
    """The Dockerfile's instructions (continuation lines joined, comments dropped) as (NAME, rest)."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines()]
    return [tuple(line.split(None, 1)) for line in lines if line and not line.startswith("#")]


def instruction(name):
    found = [rest for key, rest in dockerfile_instructions() if key.upper() == name]
    assert len(found) == 1, f"Dockerfile: {len(found)} {name} instructions"
    return found[0]


def assert_runs_as_the_deployment_expects(user, entrypoint, exposed_ports, docs):
    spec, container = deployment_container(docs)
    context = {**spec["securityContext"], **container["securityContext"]}
    # The image's user is the one the pod asks for, and not root.
    assert user == f"{context['runAsUser']}:{context['runAsGroup']}"
    assert context["runAsNonRoot"] is True and context["runAsUser"] != 0
    # No `command`: the image's entrypoint runs, with the Deployment's args.
    assert "command" not in container
    assert entrypoint == ["/usr/local/bin/sts-guard"]
    assert container["args"][0] == "serve"
    port = container["ports"][0]["containerPort"]
    assert f"--addr=0.0.0.0:{port}" in container["args"]
    assert f"{port}/tcp" in exposed_ports
    # Every file an arg names lies under a volume mounted read-only where the args look.
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    for flag in ("--tls-cert=", "--tls-key=", "--config="):
        path = next(a[len(flag):] for a in container["args"] if a.startswith(flag))
        mount = next(m for m in mounts.values() if path.startswith(m["mountPath"].rstrip("/") + "/"))
        assert mount["readOnly"] is True, (flag, mount)


def test_the_default_image_is_what_scripts_image_tags():
    name = subprocess.run([str(ROOT / "scripts" / "image"), "--print-name"], capture_output=True, text=True,
                          check=True).stdout.strip()
    _, container = deployment_container(render({}))
    assert container["image"] == name
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert name == f"{values['image']['repository']}:{chart['appVersion']}"


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_dockerfile_runs_as_the_deployment_expects(variant):
    user = instruction("USER")
    entrypoint = json.loads(instruction("ENTRYPOINT"))
    exposed = [f"{p}/tcp" if "/" not in p else p for p in instruction("EXPOSE").split()]
    assert instruction("FROM") == "scratch"
    assert_runs_as_the_deployment_expects(user, entrypoint, exposed, render(VARIANTS[variant]))


def image_inspect():
    result = subprocess.run(["podman", "image", "inspect", IMAGE], capture_output=True, text=True)
    assert result.returncode == 0, f"STS_GUARD_IMAGE={IMAGE}: {result.stderr.strip()}"
    return json.loads(result.stdout)[0]


@needs_image
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_the_built_image_runs_as_the_deployment_expects(variant):
    config = image_inspect()["Config"]
    assert_runs_as_the_deployment_expects(config["User"], config["Entrypoint"], config["ExposedPorts"],
                                          render(VARIANTS[variant]))


@needs_image
def test_the_built_image_accepts_the_deployments_args():
    spec, container = deployment_container(render(VARIANTS["extras"]))
    context = {**spec["securityContext"], **container["securityContext"]}
    # The rendered args parse (clap checks every flag and value before it prints the help).
    result = subprocess.run(
        ["podman", "--runtime", "runc", "run", "--rm", "--pull=never", "--read-only", "--cap-drop", "ALL",
         "--user", f"{context['runAsUser']}:{context['runAsGroup']}",
         "--ulimit", "nofile=1024:4096", "--ulimit", "nproc=1024:4096", "--network", "none",
         IMAGE, *container["args"], "--help"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage: sts-guard serve" in result.stdout


@needs_image
def test_the_built_image_is_labelled_and_ships_its_sbom():
    image = image_inspect()
    labels = image["Config"]["Labels"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert labels["org.opencontainers.image.version"] == chart["appVersion"]
    assert len(labels["org.opencontainers.image.revision"].removesuffix("-dirty")) == 40
    assert labels["org.opencontainers.image.source"]
    assert labels["org.opencontainers.image.licenses"]
    assert image["Architecture"] in ("amd64", "arm64")
    mount = subprocess.run(["podman", "image", "mount", IMAGE], capture_output=True, text=True, check=True)
    try:
        root = pathlib.Path(mount.stdout.strip())
        # Nothing but the binary and its SBOM: no shell, no libc.
        files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
        assert files == ["usr/local/bin/sts-guard", "usr/share/doc/sts-guard/sbom.cdx.json"]
        sbom = json.loads((root / "usr/share/doc/sts-guard/sbom.cdx.json").read_text())
    finally:
        subprocess.run(["podman", "image", "unmount", IMAGE], capture_output=True)
    assert sbom["bomFormat"] == "CycloneDX"
    names = {c["name"] for c in sbom["components"]}
    assert {"mimalloc", "rustls", "ring", "kube-client", "tokio"} <= names


def test_probes_and_metrics_reach_the_admin_port_the_webhook_port_is_kube_apiservers():
    # With tls.clientAuth the webhook port asks kube-apiserver's certificate; the kubelet and
    # Prometheus have none, so they use the admin port (--admin-addr), which serves only
    # /healthz, /readyz and /metrics.
    docs = render({**VARIANTS["extras"], "networkPolicy": {"enabled": True, "apiServerCIDRs": ["10.0.0.0/8"],
                                                            "metricsFrom": [{"namespaceSelector": {}}]}})
    monitor = one(docs, "ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["metrics"]
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["ingress"] == [
        {"ports": [{"port": "https", "protocol": "TCP"}], "from": [{"ipBlock": {"cidr": "10.0.0.0/8"}}]},
        {"ports": [{"port": "admin", "protocol": "TCP"}], "from": [{"namespaceSelector": {}}]},
    ]
    open_policy = one(render({"networkPolicy": {"enabled": True}}), "NetworkPolicy")
    assert open_policy["spec"]["ingress"] == [{"ports": [{"port": "https", "protocol": "TCP"}]},
                                              {"ports": [{"port": "admin", "protocol": "TCP"}]}]
    container = one(render(VARIANTS["client-auth"]), "Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["port"] == "admin"
    assert "--admin-addr=0.0.0.0:8444" in container["args"]

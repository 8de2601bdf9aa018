"""`sts-guard audit` against the real control plane, as the chart's ServiceAccount: objects
with known violations, made the way a brownfield cluster has them (in a namespace the webhook
ignores), a StatefulSet whose pods predate its template, and pods stuck Terminating on a Node
that is gone or shut down (no kubelet runs here, so a graceful delete of a bound pod never
completes). Every assertion is on the real binary's output and exit code.
"""

from __future__ import annotations

import json
import os
import subprocess

from controlplane import kubeconfig, wait_until
from harness import RELEASE_NAMESPACE, STS_GUARD_BIN
from test_admission import bind, service, statefulset, stored_pods

IGNORED = {"sts-guard.io/ignore": "true"}


def audit(config_path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
    env["KUBECONFIG"] = str(config_path)
    env.pop("STS_GUARD_CONFIG", None)
    return subprocess.run([str(STS_GUARD_BIN), "audit", *args], env=env, capture_output=True,
                          text=True, timeout=120)


def objects_by_key(report: dict) -> dict:
    return {f'{o["kind"]} {o["namespace"]}/{o["name"]}': o for o in report["objects"]}


def rules_of(obj: dict) -> list[str]:
    return [f'{v["rule"]}:{v["action"]}' for v in obj["violations"]]


def node(kubectl, name, taints=None):
    spec = {"taints": taints} if taints else {}
    kubectl.ok("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": spec}))


def test_audit_lists_what_a_brownfield_cluster_already_breaks(kubectl, identity):
    ns = kubectl.namespace("a1-audit", labels=IGNORED)
    # A typo in serviceName, and a governing Service with a virtual IP.
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        statefulset("web", "nginx-svc", replicas=0, labels={"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("vip", {"app": "vip"}, headless=False)))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("vip", "vip", replicas=0)))

    # Pods that predate the template: created with tier=v1, then the OnDelete template (and the
    # Service) moved to tier=v2. The template matches the Service; the running pod does not.
    old = statefulset("old", "old", replicas=1, labels={"app": "old"}, strategy={"type": "OnDelete"})
    old["spec"]["template"]["metadata"]["labels"] = {"app": "old", "tier": "v1"}
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("old", {"app": "old"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(old))
    stored_pods(kubectl, ns, "old", 1)
    kubectl.ok("patch", "statefulset", "old", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"template": {"metadata": {"labels": {"app": "old", "tier": "v2"}}}}}))
    kubectl.ok("patch", "service", "old", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"selector": {"app": "old", "tier": "v2"}}}))

    # Pods stuck Terminating: bound to a Node, deleted gracefully (no kubelet confirms it), and
    # then the Node is deleted (stuck-0) or tainted out of service (stuck-1).
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("stuck", {"app": "stuck"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("stuck", "stuck", replicas=2)))
    stored_pods(kubectl, ns, "stuck", 2)
    node(kubectl, "audit-gone")
    node(kubectl, "audit-down")
    bind(kubectl, ns, "stuck-0", "audit-gone")
    bind(kubectl, ns, "stuck-1", "audit-down")
    for pod in ("stuck-0", "stuck-1"):
        kubectl.ok("delete", "pod", pod, "-n", ns, "--grace-period=1", "--wait=false")
    kubectl.ok("delete", "node", "audit-gone")
    kubectl.ok("taint", "node", "audit-down", "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")

    # The grace period (1 s) has to run out before a pod counts as stuck: poll until it has.
    def reported():
        result = audit(identity.kubeconfig, "-o", "json", "-n", ns)
        assert result.returncode in (0, 1), result.stderr
        objects = objects_by_key(json.loads(result.stdout))
        stuck = [k for k in objects if k.startswith("Pod ")]
        return (result, objects) if len(stuck) == 2 else None

    result, objects = wait_until("audit to report both stuck pods", reported, timeout=60, interval=1)
    assert result.returncode == 1, result
    assert {k: rules_of(o) for k, o in objects.items()} == {
        f"StatefulSet {ns}/web": ["sts-service-exists:deny"],
        f"StatefulSet {ns}/vip": ["sts-service-headless:deny"],
        f"StatefulSet {ns}/old": ["sts-service-selects-live-pods:deny"],
        f"Pod {ns}/stuck-0": ["pod-stuck-terminating:warn"],
        f"Pod {ns}/stuck-1": ["pod-stuck-terminating:warn"],
    }
    message = lambda key: objects[key]["violations"][0]["message"]  # noqa: E731
    assert "did you mean serviceName: nginx?" in message(f"StatefulSet {ns}/web")
    assert "none of its 1 pods carries: old-0 (app=old," in message(f"StatefulSet {ns}/old")
    assert "its Node audit-gone no longer exists" in message(f"Pod {ns}/stuck-0")
    assert "its Node audit-down is tainted node.kubernetes.io/out-of-service" in message(f"Pod {ns}/stuck-1")
    assert f"kubectl delete pod stuck-0 -n {ns} --grace-period=0 --force" in message(f"Pod {ns}/stuck-0")

    report = json.loads(result.stdout)
    assert report["scope"] == f"namespaces {ns}"
    assert report["summary"]["denied"] == 3
    assert report["byNamespace"][ns]["pod-stuck-terminating"] == {"deny": 0, "warn": 2}
    assert report["listed"]["pods"] == 3  # old-0, stuck-0, stuck-1

    # The whole cluster, as text: the same findings, a summary per namespace and rule, progress
    # on stderr, and the release namespace and kube-system left to their own devices.
    result = audit(identity.kubeconfig, "--all-namespaces")
    assert result.returncode == 1, result
    assert f"DENY sts-service-exists: StatefulSet {ns}/web:" in result.stdout
    assert "Findings by namespace and rule:" in result.stdout
    row = next(line.split() for line in result.stdout.splitlines() if line.startswith(f"{ns} ")
               and "pod-stuck-terminating" in line)
    assert row == [ns, "pod-stuck-terminating", "0", "2"]
    assert "sts-guard audit: listed" in result.stderr and " Pods\n" in result.stderr

    # The pods the force-delete rule is about can be force-deleted now (the webhook allows it
    # for a gone or shut-down Node; this namespace does not even reach it), and the audit is
    # left with the configuration findings.
    for pod in ("stuck-0", "stuck-1"):
        kubectl.ok("delete", "pod", pod, "-n", ns, "--grace-period=0", "--force")
    result = audit(identity.kubeconfig, "-o", "json", "-n", ns)
    assert result.returncode == 1
    assert not [k for k in objects_by_key(json.loads(result.stdout)) if k.startswith("Pod ")]


def test_audit_of_a_clean_namespace_exits_0(kubectl, identity):
    ns = kubectl.namespace("a2-clean")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("db", {"app": "db"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("db", "db", replicas=1)))
    stored_pods(kubectl, ns, "db", 1)
    result = audit(identity.kubeconfig, "-n", ns, "--quiet")
    assert result.returncode == 0, result
    assert result.stdout.startswith("No findings.\n"), result.stdout
    assert result.stdout.endswith("3 objects checked, 0 skipped: 0 denied, 0 with warnings.\n"), result.stdout
    assert result.stderr == ""


def test_audit_without_the_pods_permission_fails_in_one_line(cluster, kubectl, identity, run_dir):
    """An identity with the chart's old ClusterRole (no pods): exit 2, one line naming the
    missing permission."""
    account = "audit-no-pods"
    kubectl.ok("create", "serviceaccount", account, "-n", RELEASE_NAMESPACE)
    kubectl.ok("create", "clusterrole", account, "--verb=get,list,watch", "--resource=services,nodes,statefulsets.apps")
    kubectl.ok("create", "clusterrolebinding", account, f"--clusterrole={account}",
               f"--serviceaccount={RELEASE_NAMESPACE}:{account}")
    token = kubectl.ok("create", "token", account, "-n", RELEASE_NAMESPACE).stdout.strip()
    config = kubeconfig(run_dir / f"{account}.kubeconfig", cluster.server, cluster.pki.ca, token=token)

    def forbidden():
        result = audit(config, "--quiet")
        # RBAC caches may take a moment to see the new binding: wait for the pods denial.
        return result if "cannot list pods" in result.stderr else None

    result = wait_until("audit to be refused the pods list", forbidden, timeout=30, interval=0.5)
    assert result.returncode == 2, result
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("sts-guard audit: cannot list pods in all namespaces: forbidden: "), lines[0]
    assert f'User "system:serviceaccount:{RELEASE_NAMESPACE}:{account}" cannot list resource "pods"' in lines[0]
    assert "needs get and list on services, nodes, pods and apps/statefulsets" in lines[0]

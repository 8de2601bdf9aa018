"""Living in a cluster: the tools that manage StatefulSets and the control plane are never
refused for doing their job, against the real kube-apiserver, kube-controller-manager, kubectl
and Helm (helm-python-sdk), through both transports. What is still denied is removing or
breaking what a StatefulSet that stays behind depends on.

No kubelet runs here, so pods stay Pending and unscheduled unless a test binds them and
reports them Ready itself (`FakeKubelet`) — the one part of the cluster a test stands in for.
"""

from __future__ import annotations

import json
import pathlib
import threading
import time

import helm_python as helm
import pytest

from controlplane import wait_until
from test_admission import VALIDATE_PODS, VALIDATE_SVC, bind, denied, service, statefulset, stored_pods, warnings

CHARTS = pathlib.Path(__file__).parent / "charts"


def gone(kubectl, ns, *objects) -> bool:
    return not any(kubectl.exists(kind, name, ns) for kind, name in objects)


def marked(obj: dict, labels=None, annotations=None, owners=None) -> dict:
    meta = obj["metadata"]
    # New maps: the fixtures share one map between a Service's labels and its selector.
    if labels:
        meta["labels"] = {**meta.get("labels", {}), **labels}
    if annotations:
        meta["annotations"] = {**meta.get("annotations", {}), **annotations}
    if owners:
        meta["ownerReferences"] = owners
    return obj


def controller_manager_denials(cluster) -> list[str]:
    log = cluster.run_dir / "kube-controller-manager.log"
    return [line for line in log.read_text(errors="replace").splitlines() if "denied the request" in line]


def decisions_about(sts_guard, ns: str, kind: str, operation: str) -> list[dict]:
    return [d for d in sts_guard.decisions()
            if d["object"].startswith(f"{ns}/") and d["kind"] == kind and d["operation"] == operation]


# --- Helm ---------------------------------------------------------------------------------------


def test_helm_installs_and_uninstalls_a_database_chart(cluster, kubectl, sts_guard):
    ns = kubectl.namespace("t1-helm")
    config = helm.Config(kubeconfig_path=str(cluster.admin_kubeconfig), namespace=ns)
    try:
        release = config.install(str(CHARTS / "keyvalue"), "kv", namespace=ns)
        assert release["status"] == "deployed", release
        stored_pods(kubectl, ns, "kv", 3)
        # helm uninstall deletes the Service before the StatefulSet (its uninstall order).
        started = time.monotonic()
        released = config.uninstall("kv")
        assert released is not None
        wait_until("the release's objects gone", lambda: gone(
            kubectl, ns, ("service", "kv-headless"), ("statefulset", "kv")), timeout=60)
        print(f"helm uninstall to nothing left: {time.monotonic() - started:.1f} s")
    finally:
        config.uninstall("kv", ignore_not_found=True)
    assert kubectl.ok("get", "service,statefulset", "-n", ns, "-o", "name").stdout.strip() == ""
    deletes = decisions_about(sts_guard, ns, "Service", "DELETE")
    assert [(d["decision"], d["rules"]) for d in deletes] == [("warn", "svc-governing-delete")], deletes


def test_another_releases_statefulset_keeps_its_service(kubectl, sts_guard):
    ns = kubectl.namespace("t1-releases")
    helm_marks = lambda release: {"meta.helm.sh/release-name": release, "meta.helm.sh/release-namespace": ns}
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        marked(service("shared", {"app": "db"}), annotations=helm_marks("infra"))))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        marked(statefulset("db", "shared", labels={"app": "db"}), annotations=helm_marks("db"))))
    message = denied(kubectl("delete", "service", "shared", "-n", ns), VALIDATE_SVC)
    assert f"svc-governing-delete: Service {ns}/shared: it is the governing Service of StatefulSet {ns}/db" in message
    assert f'They belong to different applications (this Service: Helm release "infra" (namespace {ns})' in message
    assert kubectl.exists("service", "shared", ns)


# --- kubectl delete -f ------------------------------------------------------------------------------


def test_kubectl_delete_f_of_one_application(kubectl, sts_guard, tmp_path):
    ns = kubectl.namespace("t2-delete-f")
    instance = {"app.kubernetes.io/instance": "web", "app.kubernetes.io/managed-by": "kubectl"}
    app = tmp_path / "app.yaml"
    app.write_text("\n---\n".join(json.dumps(o) for o in [
        marked(service("web", {"app": "web"}), labels=instance),
        marked(statefulset("web", "web", labels={"app": "web"}), labels=instance),
    ]))
    kubectl.ok("apply", "-n", ns, "-f", str(app))
    result = kubectl("delete", "-n", ns, "-f", str(app))
    assert result.ok, result
    assert 'service "web" deleted' in result.stdout and 'statefulset.apps "web" deleted' in result.stdout, result
    warned = [w for w in warnings(result) if "svc-governing-delete" in w]
    assert len(warned) == 1 and 'app.kubernetes.io/instance "web" (managed by kubectl)' in warned[0], result
    assert gone(kubectl, ns, ("service", "web"), ("statefulset", "web"))


def test_the_tutorial_shape_is_still_protected(kubectl, sts_guard, tmp_path):
    # Nothing but serviceName ties the Service to the StatefulSet: the delete is a mistake.
    ns = kubectl.namespace("t2-tutorial")
    app = tmp_path / "web.yaml"
    app.write_text("\n---\n".join(json.dumps(o) for o in [
        service("nginx", {"app": "nginx"}), statefulset("web", "nginx", labels={"app": "nginx"})]))
    kubectl.ok("apply", "-n", ns, "-f", str(app))
    message = denied(kubectl("delete", "-n", ns, "-f", str(app)), VALIDATE_SVC)
    assert f"svc-governing-delete: Service {ns}/nginx: it is the governing Service of StatefulSet {ns}/web (3 replicas)" in message
    assert "mark them as one (the same app.kubernetes.io/instance label" in message
    assert kubectl.exists("service", "nginx", ns)


# --- GitOps pruning ---------------------------------------------------------------------------


@pytest.mark.parametrize("tool", ["argocd", "flux"])
def test_gitops_pruning_deletes_service_then_statefulset(kubectl, sts_guard, tool):
    ns = kubectl.namespace(f"t3-{tool}")
    if tool == "argocd":
        marks = lambda kind: {"annotations": {"argocd.argoproj.io/tracking-id": f"shop:{kind}:{ns}/db"}}
        expected = 'Argo CD application "shop"'
    else:
        marks = lambda kind: {"labels": {"kustomize.toolkit.fluxcd.io/name": "apps",
                                         "kustomize.toolkit.fluxcd.io/namespace": "flux-system"}}
        expected = "Flux Kustomization flux-system/apps"
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(marked(service("db", {"app": "db"}), **marks("/Service"))))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        marked(statefulset("db", "db", labels={"app": "db"}), **marks("apps/StatefulSet"))))
    # A prune deletes one object at a time, the Service first here.
    result = kubectl("delete", "service", "db", "-n", ns)
    assert result.ok, result
    assert any(expected in w for w in warnings(result)), result
    kubectl.ok("delete", "statefulset", "db", "-n", ns)
    assert gone(kubectl, ns, ("service", "db"), ("statefulset", "db"))


# --- the controllers ------------------------------------------------------------------------------


def test_a_deleted_namespace_takes_its_statefulsets_and_services(kubectl, sts_guard):
    ns = kubectl.namespace("t4-namespace")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("web", "nginx", labels={"app": "web"})))
    stored_pods(kubectl, ns, "web", 3)
    started = time.monotonic()
    kubectl.ok("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone", lambda: not kubectl.exists("namespace", ns, "default"), timeout=90, interval=0.5)
    print(f"namespace deletion: {time.monotonic() - started:.1f} s")
    # The namespace controller's deletes never reach sts-guard (the chart's matchConditions).
    deletes = decisions_about(sts_guard, ns, "Service", "DELETE")
    assert deletes == [], deletes


def test_the_garbage_collector_removes_what_one_owner_held(kubectl, sts_guard):
    ns = kubectl.namespace("t4-owner")
    kubectl.ok("create", "configmap", "db-cluster", "-n", ns)
    uid = kubectl.get("configmap", "db-cluster", ns)["metadata"]["uid"]
    owner = [{"apiVersion": "v1", "kind": "ConfigMap", "name": "db-cluster", "uid": uid,
              "controller": True, "blockOwnerDeletion": True}]
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(marked(service("db", {"app": "db"}), owners=owner)))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        marked(statefulset("db", "db", labels={"app": "db"}), owners=owner)))
    stored_pods(kubectl, ns, "db", 3)
    kubectl.ok("delete", "configmap", "db-cluster", "-n", ns)
    wait_until("the owner's Service and StatefulSet collected", lambda: gone(
        kubectl, ns, ("service", "db"), ("statefulset", "db")), timeout=60, interval=0.5)
    # The garbage collector's deletes never reach sts-guard (the chart's matchConditions).
    deletes = decisions_about(sts_guard, ns, "Service", "DELETE")
    assert deletes == [], deletes


class FakeKubelet:
    """Binds the StatefulSet's pods to a Node and reports them Running and Ready, as a kubelet
    would once their containers run: the StatefulSet controller waits for that before it scales
    down or rolls the next pod."""

    def __init__(self, kubectl, ns: str, node: str, prefix: str):
        self.kubectl, self.ns, self.node, self.prefix = kubectl, ns, node, prefix
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(timeout=30)

    def run(self):
        while not self.stop.wait(0.3):
            items = json.loads(self.kubectl("get", "pods", "-n", self.ns, "-o", "json").stdout or "{}").get("items", [])
            for pod in items:
                name = pod["metadata"]["name"]
                if not name.startswith(self.prefix) or pod["metadata"].get("deletionTimestamp"):
                    continue
                if not pod["spec"].get("nodeName"):
                    self.kubectl("create", "--raw", f"/api/v1/namespaces/{self.ns}/pods/{name}/binding", "-f", "-",
                                 input=json.dumps({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
                                                   "target": {"apiVersion": "v1", "kind": "Node", "name": self.node}}))
                elif pod.get("status", {}).get("phase") != "Running":
                    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
                    self.kubectl("patch", "pod", name, "-n", self.ns, "--subresource=status", "--type=merge", "-p",
                                 json.dumps({"status": {"phase": "Running", "conditions": [
                                     {"type": "Ready", "status": "True", "lastTransitionTime": now}]}}))


def test_a_zero_grace_statefulset_is_scaled_down_and_rolled_by_its_controller(cluster, kubectl, sts_guard):
    ns = kubectl.namespace("t5-zero-grace")
    node = f"worker-{ns}"
    kubectl.ok("create", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "Node", "metadata": {"name": node}}))
    sts = statefulset("fast", "fast", replicas=3, labels={"app": "fast"})
    sts["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("fast", {"app": "fast"})))
    result = kubectl.apply(sts, args=("-n", ns))
    assert result.ok, result
    assert any("sts-zero-grace: StatefulSet" in w for w in warnings(result)), result
    denials_before = len(controller_manager_denials(cluster))
    with FakeKubelet(kubectl, ns, node, "fast-"):
        def ready(count):
            stored = kubectl.get("statefulset", "fast", ns)
            return stored.get("status", {}).get("readyReplicas", 0) == count

        wait_until("3 pods Ready", lambda: ready(3), timeout=90, interval=0.5)

        # A user's plain delete of a running pod: immediate because of the spec, so denied.
        message = denied(kubectl("delete", "pod", "fast-0", "-n", ns, "--wait=false"), VALIDATE_PODS)
        assert "its spec.terminationGracePeriodSeconds is 0 (from the pod template of StatefulSet fast)" in message
        assert "without --grace-period=0 --force" not in message

        # Scale-down: the controller deletes fast-2 and fast-1, with the pod's grace period, 0.
        kubectl.ok("scale", "statefulset", "fast", "-n", ns, "--replicas=1")
        wait_until("scaled down to fast-0", lambda: gone(kubectl, ns, ("pod", "fast-1"), ("pod", "fast-2")),
                   timeout=60, interval=0.5)

        # A rolling update: the controller deletes and recreates each pod on the new revision.
        kubectl.ok("scale", "statefulset", "fast", "-n", ns, "--replicas=2")
        wait_until("2 pods Ready", lambda: ready(2), timeout=90, interval=0.5)
        kubectl.ok("set", "image", "statefulset/fast", "-n", ns, "app=registry.example/app:2.0")

        def rolled():
            status = kubectl.get("statefulset", "fast", ns).get("status", {})
            return (status.get("updatedReplicas") == 2 and status.get("readyReplicas") == 2
                    and status.get("currentRevision") == status.get("updateRevision"))

        wait_until("rolled to the new revision", rolled, timeout=120, interval=0.5)
    pods = json.loads(kubectl.ok("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
    assert {c["image"] for p in pods for c in p["spec"]["containers"]} == {"registry.example/app:2.0"}
    controller_deletes = [d for d in decisions_about(sts_guard, ns, "Pod", "DELETE")
                          if d["user"] == "system:serviceaccount:kube-system:statefulset-controller"]
    # The controller's deletes never reach sts-guard (the chart's matchConditions).
    assert controller_deletes == [], controller_deletes
    assert controller_manager_denials(cluster)[denials_before:] == []


# --- still denied -----------------------------------------------------------------------------------


def test_breaking_a_service_another_application_depends_on_is_denied(kubectl, sts_guard):
    ns = kubectl.namespace("t6-denied")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        marked(service("nginx", {"app": "web"}), labels={"app.kubernetes.io/instance": "frontend"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        marked(statefulset("web", "nginx", labels={"app": "web"}), labels={"app.kubernetes.io/instance": "web"})))
    message = denied(kubectl("patch", "service", "nginx", "-n", ns, "--type=merge", "-p",
                             json.dumps({"spec": {"selector": {"app": "other"}}})), VALIDATE_SVC)
    assert f"svc-governing-selector: Service {ns}/nginx" in message
    assert 'They belong to different applications (this Service: app.kubernetes.io/instance "frontend"' in message
    message = denied(kubectl("delete", "service", "nginx", "-n", ns), VALIDATE_SVC)
    assert "svc-governing-delete" in message
    assert kubectl.get("service", "nginx", ns)["spec"]["selector"] == {"app": "web"}

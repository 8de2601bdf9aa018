"""What a user sees when sts-guard sits on a real kube-apiserver's admission path: every
scenario runs the real kubectl and asserts on kubectl's output and on the stored objects.

Every scenario runs twice, once per way kube-apiserver calls the webhook (the `sts_guard`
fixture: through the chart's Service over HTTP/1.1, and at a loopback URL over HTTP/2), each
time in namespaces of its own. The tests run in file order: the last two stop sts-guard
(scenario 8) and restart kube-apiserver (scenario 9).
"""

from __future__ import annotations

import json
import re

from controlplane import wait_until

VALIDATE_STS = 'admission webhook "statefulsets.validate.sts-guard.io" denied the request'
VALIDATE_SVC = 'admission webhook "services.validate.sts-guard.io" denied the request'
VALIDATE_PODS = 'admission webhook "pods.validate.sts-guard.io" denied the request'


def service(name, selector, *, headless=True, labels=None):
    spec = {"selector": selector, "ports": [{"name": "web", "port": 80}]}
    if headless:
        spec["clusterIP"] = "None"
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "labels": labels or selector}, "spec": spec}


def statefulset(name, service_name, *, replicas=3, labels=None, annotations=None, strategy=None,
                containers=None, init_containers=None):
    labels = labels or {"app": name}
    pod_spec = {"containers": containers or [{"name": "app", "image": "registry.example/app:1.0"}]}
    if init_containers:
        pod_spec["initContainers"] = init_containers
    spec = {
        "serviceName": service_name,
        "replicas": replicas,
        # No kubelet runs here, so pods never become Ready: Parallel lets the controller create
        # every ordinal instead of waiting for web-0.
        "podManagementPolicy": "Parallel",
        "selector": {"matchLabels": labels},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if strategy:
        spec["updateStrategy"] = strategy
    metadata = {"name": name}
    if annotations:
        metadata["annotations"] = annotations
    return {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": metadata, "spec": spec}


def denied(result, webhook=VALIDATE_STS):
    """The request was refused by sts-guard (not by something else) and kubectl said so."""
    assert not result.ok, result
    assert "Error from server" in result.stderr and webhook in result.stderr, result
    return result.stderr


def warnings(result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]


def env_of(container) -> dict:
    return {e["name"]: e for e in container.get("env", [])}


# --- 1. a typo in serviceName --------------------------------------------------------------


def test_typo_in_service_name_is_denied_with_did_you_mean(kubectl, sts_guard):
    ns = kubectl.namespace("s1-typo")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
    result = kubectl.apply(statefulset("web", "nginx-svc", labels={"app": "web"}), args=("-n", ns))
    message = denied(result)
    assert f'sts-service-exists: StatefulSet {ns}/web: spec.serviceName "nginx-svc" names no Service' in message
    assert "did you mean serviceName: nginx?" in message
    assert not kubectl.exists("statefulset", "web", ns)


# --- 2. Service and StatefulSet together ------------------------------------------------------


def test_service_and_statefulset_in_one_apply_are_allowed(kubectl, sts_guard):
    ns = kubectl.namespace("s2-together")
    result = kubectl.apply(service("db", {"app": "db"}), statefulset("db", "db"), args=("-n", ns))
    assert result.ok, result
    assert "service/db created" in result.stdout and "statefulset.apps/db created" in result.stdout
    # Back to back in two commands: the StatefulSet follows the Service within milliseconds.
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("cache", {"app": "cache"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("cache", "cache")))
    assert kubectl.exists("statefulset", "db", ns) and kubectl.exists("statefulset", "cache", ns)


def test_not_headless_and_selector_mismatch_are_denied(kubectl, sts_guard):
    ns = kubectl.namespace("s2-broken")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("vip", {"app": "vip"}, headless=False)))
    message = denied(kubectl.apply(statefulset("vip", "vip"), args=("-n", ns)))
    assert f'sts-service-headless: StatefulSet {ns}/vip: the governing Service "vip" is not headless' in message

    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("other", {"app": "other"})))
    message = denied(kubectl.apply(statefulset("mismatch", "other"), args=("-n", ns)))
    assert f"sts-service-selects-pods: StatefulSet {ns}/mismatch" in message
    assert not kubectl.exists("statefulset", "vip", ns) and not kubectl.exists("statefulset", "mismatch", ns)


# --- 3. the governing Service's side ----------------------------------------------------------


def test_governing_service_cannot_be_broken_or_deleted_until_scaled_to_zero(kubectl, sts_guard):
    ns = kubectl.namespace("s3-service")
    kubectl.ok("apply", "-n", ns, "-f", "-",
               input=json.dumps({"apiVersion": "v1", "kind": "List",
                                 "items": [service("nginx", {"app": "web"}),
                                           statefulset("web", "nginx", labels={"app": "web"})]}))

    # Non-headless: turning it into an ExternalName Service (the one change of clusterIP the
    # API server itself allows).
    message = denied(kubectl("patch", "service", "nginx", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"type": "ExternalName", "externalName": "db.example.com", "clusterIP": None,
                  "clusterIPs": None, "selector": None, "ports": None}})), VALIDATE_SVC)
    assert f"svc-governing-headless: Service {ns}/nginx" in message
    message = denied(kubectl("patch", "service", "nginx", "-n", ns, "--type=merge", "-p",
                             json.dumps({"spec": {"selector": {"app": "other"}}})), VALIDATE_SVC)
    assert f"svc-governing-selector: Service {ns}/nginx" in message
    stored = kubectl.get("service", "nginx", ns)
    assert stored["spec"]["clusterIP"] == "None" and stored["spec"]["selector"] == {"app": "web"}

    message = denied(kubectl("delete", "service", "nginx", "-n", ns), VALIDATE_SVC)
    assert f"svc-governing-delete: Service {ns}/nginx: it is the governing Service of StatefulSet {ns}/web" in message
    assert kubectl.exists("service", "nginx", ns)

    kubectl.ok("scale", "statefulset", "web", "-n", ns, "--replicas=0")
    kubectl.ok("delete", "service", "nginx", "-n", ns)
    assert not kubectl.exists("service", "nginx", ns)


# --- 4. identity env on the controller's own pods ---------------------------------------------


def stored_pods(kubectl, ns, name, replicas):
    def all_created():
        items = json.loads(kubectl.ok("get", "pods", "-n", ns, "-o", "json").stdout)["items"]
        pods = {p["metadata"]["name"]: p for p in items if p["metadata"]["name"].startswith(f"{name}-")}
        return pods if len(pods) == replicas else None

    return wait_until(f"{replicas} pods of {ns}/{name}", all_created, timeout=90, interval=0.5)


def test_statefulset_pods_get_identity_env_in_every_container(kubectl, sts_guard):
    ns = kubectl.namespace("s4-identity")
    containers = [
        {"name": "app", "image": "registry.example/app:1.0"},
        {"name": "sidecar", "image": "registry.example/sidecar:1.0",
         "env": [{"name": "POD_HOSTNAME", "value": "set-by-user"}]},
    ]
    init = [{"name": "init", "image": "registry.example/init:1.0", "command": ["true"]}]
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        statefulset("web", "nginx", labels={"app": "web"}, containers=containers, init_containers=init)))

    pods = stored_pods(kubectl, ns, "web", 3)
    for ordinal in range(3):
        pod = pods[f"web-{ordinal}"]
        # The values come from what the controller really set: the pod-index label and subdomain.
        assert pod["metadata"]["labels"]["apps.kubernetes.io/pod-index"] == str(ordinal)
        assert pod["spec"]["subdomain"] == "nginx"
        fqdn = f"web-{ordinal}.nginx.{ns}.svc.cluster.local"
        for container in pod["spec"]["initContainers"] + pod["spec"]["containers"]:
            env = env_of(container)
            assert env["POD_ORDINAL"] == {"name": "POD_ORDINAL", "value": str(ordinal)}, container
            assert env["STATEFULSET_NAME"]["value"] == "web"
            assert env["STATEFULSET_SERVICE"]["value"] == "nginx"
            assert env["POD_FQDN"]["value"] == fqdn
            assert env["POD_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
            assert env["POD_NAMESPACE"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"
            names = [e["name"] for e in container["env"]]
            assert len(names) == len(set(names)), f"duplicated env in {container['name']}: {names}"
        sidecar = next(c for c in pod["spec"]["containers"] if c["name"] == "sidecar")
        assert env_of(sidecar)["POD_HOSTNAME"] == {"name": "POD_HOSTNAME", "value": "set-by-user"}
        app = next(c for c in pod["spec"]["containers"] if c["name"] == "app")
        assert env_of(app)["POD_HOSTNAME"]["value"] == f"web-{ordinal}"

    # A pod the controller re-creates gets the same identity, and nothing more.
    before = pods["web-1"]
    kubectl.ok("delete", "pod", "web-1", "-n", ns, "--wait=false")
    recreated = wait_until(
        "web-1 re-created",
        lambda: (lambda p: p if p["metadata"]["uid"] != before["metadata"]["uid"] else None)(
            kubectl.get("pod", "web-1", ns)) if kubectl.exists("pod", "web-1", ns) else None,
        timeout=60,
    )
    assert [c.get("env") for c in recreated["spec"]["containers"]] == [c.get("env") for c in before["spec"]["containers"]]
    assert [c.get("env") for c in recreated["spec"]["initContainers"]] == [
        c.get("env") for c in before["spec"]["initContainers"]]


def test_identity_injection_can_be_switched_off_per_statefulset(kubectl, sts_guard):
    ns = kubectl.namespace("s4-optout")
    sts = statefulset("plain", "plain", replicas=1)
    sts["spec"]["template"]["metadata"]["annotations"] = {"sts-guard.io/inject-identity": "false"}
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("plain", {"app": "plain"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(sts))
    pod = stored_pods(kubectl, ns, "plain", 1)["plain-0"]
    assert "env" not in pod["spec"]["containers"][0]


# --- 5. partition defaults and staged rollouts ------------------------------------------------


def partition_of(sts):
    return sts["spec"]["updateStrategy"].get("rollingUpdate", {}).get("partition")


def test_partition_default_and_canary_rollout(kubectl, sts_guard):
    ns = kubectl.namespace("s5-partition")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("web", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("web", "web")))
    assert partition_of(kubectl.get("statefulset", "web", ns)) == 0

    kubectl.ok("annotate", "statefulset", "web", "-n", ns, "sts-guard.io/canary=1")
    # An update that leaves the pod template as it was starts no rollout: no partition.
    assert partition_of(kubectl.get("statefulset", "web", ns)) == 0
    result = kubectl("set", "image", "statefulset/web", "-n", ns, "app=registry.example/app:2.0")
    assert result.ok, result
    stored = kubectl.get("statefulset", "web", ns)
    assert partition_of(stored) == 2, stored["spec"]["updateStrategy"]
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/app:2.0"
    promote = [w for w in warnings(result) if "sts-partition-default" in w]
    assert len(promote) == 1, result
    assert "partition set to 2, so only the 1 highest ordinals take the new revision" in promote[0]
    assert "promote by lowering spec.updateStrategy.rollingUpdate.partition" in promote[0]

    # An update that sets the partition itself is never touched.
    kubectl.ok("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}},
                  "template": {"spec": {"containers": [{"name": "app", "image": "registry.example/app:3.0"}]}}}}))
    assert partition_of(kubectl.get("statefulset", "web", ns)) == 0


def test_on_delete_statefulset_is_untouched(kubectl, sts_guard):
    ns = kubectl.namespace("s5-ondelete")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("od", {"app": "od"})))
    kubectl.ok("apply", "-n", ns, "-f", "-",
               input=json.dumps(statefulset("od", "od", strategy={"type": "OnDelete"})))
    assert kubectl.get("statefulset", "od", ns)["spec"]["updateStrategy"] == {"type": "OnDelete"}


# --- 6. force deletion of a StatefulSet pod -----------------------------------------------------


def bind(kubectl, ns, pod, node):
    """Schedules a pod the way the scheduler does: POST pods/NAME/binding (no kubelet needed)."""
    binding = {"apiVersion": "v1", "kind": "Binding", "metadata": {"name": pod},
               "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
    kubectl.ok("create", "--raw", f"/api/v1/namespaces/{ns}/pods/{pod}/binding", "-f", "-", input=json.dumps(binding))
    assert kubectl.get("pod", pod, ns)["spec"]["nodeName"] == node


def force_delete(kubectl, ns, pod, *extra):
    return kubectl("delete", "pod", pod, "-n", ns, "--grace-period=0", "--force", *extra)


def recreated_unbound(kubectl, ns, pod, old_uid):
    def fresh():
        if not kubectl.exists("pod", pod, ns):
            return None
        stored = kubectl.get("pod", pod, ns)
        return stored if stored["metadata"]["uid"] != old_uid else None

    return wait_until(f"{ns}/{pod} re-created", fresh, timeout=60)


def test_force_delete_of_a_running_statefulset_pod(kubectl, sts_guard):
    ns = kubectl.namespace("s6-force")
    node = f"worker-{ns}"
    kubectl.ok("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": node, "labels": {"kubernetes.io/hostname": node}}}))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("web", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("web", "web")))
    stored_pods(kubectl, ns, "web", 3)
    bind(kubectl, ns, "web-1", node)

    message = denied(force_delete(kubectl, ns, "web-1"), VALIDATE_PODS)
    assert f"pod-force-delete: Pod {ns}/web-1: force deletion (gracePeriodSeconds 0) removes pod web-1" in message
    assert f"the kubelet on node {node}" in message
    assert "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute" in message
    assert kubectl.exists("pod", "web-1", ns)
    # Server-side dry run: the same answer, nothing deleted.
    denied(force_delete(kubectl, ns, "web-1", "--dry-run=server"), VALIDATE_PODS)

    # The kubelet's own final delete (its node identity) must pass, or pods stay Terminating.
    uid = kubectl.get("pod", "web-1", ns)["metadata"]["uid"]
    result = force_delete(kubectl, ns, "web-1", f"--as=system:node:{node}", "--as-group=system:nodes")
    assert result.ok, result
    recreated_unbound(kubectl, ns, "web-1", uid)

    # A Node confirmed shut down (out-of-service taint): force delete allowed.
    bind(kubectl, ns, "web-2", node)
    denied(force_delete(kubectl, ns, "web-2"), VALIDATE_PODS)
    kubectl.ok("taint", "node", node, "node.kubernetes.io/out-of-service=nodeshutdown:NoExecute")
    result = force_delete(kubectl, ns, "web-2")
    assert result.ok, result

    # A graceful delete is always allowed (it waits for a kubelet that never comes, so don't wait).
    kubectl.ok("taint", "node", node, "node.kubernetes.io/out-of-service-")
    bind(kubectl, ns, "web-0", node)
    kubectl.ok("delete", "pod", "web-0", "-n", ns, "--wait=false")
    assert kubectl.get("pod", "web-0", ns)["metadata"].get("deletionTimestamp")

    # A pod that was never scheduled may be force-deleted.
    unbound = recreated_unbound(kubectl, ns, "web-1", uid)
    assert not unbound["spec"].get("nodeName")
    result = force_delete(kubectl, ns, "web-1")
    assert result.ok, result


# --- 7. server-side dry run and server-side apply --------------------------------------------


def test_server_side_dry_run_gets_the_same_answers(kubectl, sts_guard):
    ns = kubectl.namespace("s7-dryrun")
    message = denied(kubectl.apply(statefulset("web", "missing"), args=("-n", ns, "--dry-run=server")))
    assert "sts-service-exists" in message
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("web", {"app": "web"})))
    result = kubectl.apply(statefulset("web", "web"), args=("-n", ns, "--dry-run=server", "-o", "json"))
    assert result.ok, result
    assert partition_of(json.loads(result.stdout)) == 0  # the mutation shows in the dry-run answer
    assert not kubectl.exists("statefulset", "web", ns)


def test_server_side_apply_works(kubectl, sts_guard):
    ns = kubectl.namespace("s7-ssa")
    kubectl.ok("apply", "--server-side", "-n", ns, "-f", "-", input=json.dumps(service("web", {"app": "web"})))
    result = kubectl.apply(statefulset("web", "web"), args=("--server-side", "-n", ns))
    assert result.ok, result
    assert partition_of(kubectl.get("statefulset", "web", ns)) == 0
    denied(kubectl.apply(statefulset("typo", "wbe"), args=("--server-side", "-n", ns)))


# --- the identity sts-guard runs with -------------------------------------------------------


def test_sts_guard_runs_with_read_only_rbac(kubectl, sts_guard):
    account = sts_guard.account
    for verb, resource in [("list", "services"), ("watch", "statefulsets.apps"), ("get", "nodes"),
                           ("get", "namespaces")]:
        assert kubectl("auth", "can-i", verb, resource, f"--as={account}").stdout.strip() == "yes"
    for verb, resource in [("create", "services"), ("patch", "statefulsets.apps"), ("delete", "pods"),
                           ("update", "validatingwebhookconfigurations.admissionregistration.k8s.io"),
                           ("get", "secrets"), ("list", "namespaces")]:
        assert kubectl("auth", "can-i", verb, resource, f"--as={account}").stdout.strip() == "no"
    metrics = sts_guard.metrics()
    # Decisions were made from the watch cache of the real apiserver; no lookup failed.
    assert re.search(r'^sts_guard_inventory_objects\{kind="Service"\} [1-9]', metrics, re.M), metrics
    assert not re.search(r"^sts_guard_lookup_errors_total\S* [1-9]", metrics, re.M), metrics


def test_kube_apiserver_calls_over_the_protocol_of_the_transport(sts_guard):
    # Through a Service: HTTP/1.1, one connection per concurrent call; at a loopback URL: HTTP/2.
    decisions = sts_guard.decisions()
    assert len(decisions) > 20, decisions
    assert {d["http"] for d in decisions} == {sts_guard.expected_http}
    assert {d["endpoint"] for d in decisions} == {"validate", "mutate"}


# --- 8. namespaces that never reach the webhook --------------------------------------------


def test_ignored_namespaces_do_not_depend_on_the_webhook(kubectl, sts_guard):
    selected = kubectl.namespace("s8-selected")
    ignored = kubectl.namespace("s8-ignored", labels={"sts-guard.io/ignore": "true"})
    sts_guard.stop()
    try:
        # failurePolicy: Fail (the chart's default): no answer means no StatefulSet change here.
        result = kubectl.apply(statefulset("web", "web"), args=("-n", selected))
        assert not result.ok, result
        assert 'failed calling webhook "statefulsets.validate.sts-guard.io"' in result.stderr, result
        assert not kubectl.exists("statefulset", "web", selected)
        # ...but an ignored namespace and kube-system never reach the webhook.
        for ns in (ignored, "kube-system"):
            result = kubectl.apply(statefulset("e2e-no-webhook", "absent"), args=("-n", ns))
            assert result.ok, result
            kubectl.ok("delete", "statefulset", "e2e-no-webhook", "-n", ns)
    finally:
        sts_guard.start()


# --- 9. kube-apiserver restarts under a running sts-guard --------------------------------


def cached(sts_guard, kind: str) -> int:
    found = re.search(rf'^sts_guard_inventory_objects\{{kind="{kind}"\}} (\d+)', sts_guard.metrics(), re.M)
    assert found, sts_guard.metrics()
    return int(found.group(1))


def test_apiserver_restart_is_survived_without_restarting_sts_guard(cluster, kubectl, sts_guard):
    ns = kubectl.namespace("s9-restart")
    pid = sts_guard.process.pid
    cluster.restart_apiserver()
    wait_until("sts-guard /readyz after the apiserver restart", sts_guard.ready, timeout=60)

    # Created after the restart: the decisions must see them through the resumed watches.
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("web", "nginx", labels={"app": "web"})))
    # Right after the restart the watches are still resuming or relisting: a StatefulSet
    # missing from the cache would let this delete through unless sts-guard confirms live
    # while its watches are failing. Denied at the first attempt, not eventually.
    result = kubectl("delete", "service", "nginx", "-n", ns, "--dry-run=server")
    message = denied(result, VALIDATE_SVC)
    assert f"svc-governing-delete: Service {ns}/nginx: it is the governing Service of StatefulSet {ns}/web" in message
    # The watches resumed: the cache itself holds every StatefulSet the API server has, the one
    # created after the restart included (the gauge is refreshed every 5 s).
    def in_step():
        stored = kubectl.ok("get", "statefulsets", "-A", "-o", "name").stdout.split()
        return cached(sts_guard, "StatefulSet") == len(stored)

    wait_until("the cache in step with the API server", in_step, timeout=60, interval=0.5)
    assert sts_guard.process.pid == pid and sts_guard.process.running()

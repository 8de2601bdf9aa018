"""Issue 19: an outage of sts-guard refuses only what its policy could deny.

With sts-guard stopped and every webhook failing closed (`failurePolicy: Fail`), what the
cluster does all day passes, because the chart's matchConditions keep it from the webhooks: a
graceful pod delete and the kubelet's final one, the StatefulSet controller's deletes of
zero-grace pods, label and port changes of a governing Service, scale and status writes,
annotating a StatefulSet. What a rule could deny is refused, by the webhook that judges it.

Then, rule by rule (ROWS: one request per rule of sts-guard's rule table, audit-only rules
exempt, as admission never runs them): with only that rule's webhook failing closed and
sts-guard stopped, the request is refused by that webhook — so no matchCondition filters out a
request the rule acts on — and with sts-guard up, its decision log line names the rule
(sts-canary-partition's with the mutating StatefulSet webhook left out, as if its call had
failed open: the case that rule exists for).

The webhook configurations applied are the chart's, rendered with the failure policies each
test needs (`webhook.failurePolicies`), with only `clientConfig` taken from the running
transport; the fixture's own configurations are applied again afterwards.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest

from controlplane import wait_until
from harness import ROOT, dump_all, render_chart, webhook_configurations
from test_admission import (VALIDATE_PODS, VALIDATE_STS, VALIDATE_SVC, bind, service, statefulset, stored_pods,
                            warnings)

STS_VALIDATE = "statefulsets.validate.sts-guard.io"
SVC_VALIDATE = "services.validate.sts-guard.io"
POD_VALIDATE = "pods.validate.sts-guard.io"
POD_MUTATE = "pods.mutate.sts-guard.io"
STS_MUTATE = "statefulsets.mutate.sts-guard.io"
# In the order kube-apiserver calls them for one request: mutating before validating.
WEBHOOKS = [POD_MUTATE, STS_MUTATE, STS_VALIDATE, SVC_VALIDATE, POD_VALIDATE]
POLICY_VALUES = {STS_VALIDATE: "validateStatefulSets", SVC_VALIDATE: "validateServices",
                 POD_VALIDATE: "validatePodDeletes", POD_MUTATE: "mutatePods", STS_MUTATE: "mutateStatefulSets"}
DENIED_BY = {STS_VALIDATE: VALIDATE_STS, SVC_VALIDATE: VALIDATE_SVC, POD_VALIDATE: VALIDATE_PODS}


def failed_calling(webhook: str) -> str:
    return f'failed calling webhook "{webhook}"'


def refused_by(result, webhook: str) -> str:
    """Refused because `webhook` could not be called: not denied by sts-guard, and not because
    a matchCondition failed to evaluate (kube-apiserver says "expression '...' resulted in
    error" then, and calls no webhook)."""
    assert not result.ok, result
    assert failed_calling(webhook) in result.stderr, result
    assert "resulted in error" not in result.stderr, result
    return result.stderr


# --- the chart's webhook configurations with chosen failure policies ----------------------


def chart_configurations(sts_guard, policies: dict[str, str], leave_out: str | None = None) -> list[dict]:
    """The chart's two configurations rendered with `policies` (webhook name -> Fail|Ignore),
    pointed where the fixture's point (its clientConfig per webhook); without the webhook
    `leave_out` when given."""
    values = {"webhook": {"failurePolicies": {POLICY_VALUES[w]: p for w, p in policies.items()}}}
    rendered = webhook_configurations(render_chart(values))
    clients = {w["name"]: w["clientConfig"] for c in sts_guard.webhook_configurations for w in c["webhooks"]}
    for configuration in rendered:
        for webhook in configuration["webhooks"]:
            webhook["clientConfig"] = clients[webhook["name"]]
    # Nothing else differs from what the fixture registered: these are the chart's webhooks.
    def without_policies(configurations):
        return [{**c, "webhooks": [{k: v for k, v in w.items() if k != "failurePolicy"} for w in c["webhooks"]]}
                for c in configurations]
    assert without_policies(rendered) == without_policies(sts_guard.webhook_configurations)
    assert {w["name"]: w["failurePolicy"] for c in rendered for w in c["webhooks"]} == policies
    for configuration in rendered:
        configuration["webhooks"] = [w for w in configuration["webhooks"] if w["name"] != leave_out]
    return rendered


CHART_DEFAULTS = {POD_MUTATE: "Ignore", STS_MUTATE: "Ignore", STS_VALIDATE: "Fail", SVC_VALIDATE: "Fail",
                  POD_VALIDATE: "Fail"}


def only_failing(webhook: str | None) -> dict[str, str]:
    """`webhook` fails closed, the others open; every one closed when `webhook` is None."""
    return {w: "Fail" if webhook in (None, w) else "Ignore" for w in WEBHOOKS}


class Outage:
    """Stops and starts sts-guard and registers the chart's webhooks with chosen failure
    policies; restores the fixture's configurations and a running sts-guard when done."""

    def __init__(self, kubectl, sts_guard):
        self.kubectl, self.sts_guard = kubectl, sts_guard

    def register(self, policies: dict[str, str], leave_out: str | None = None):
        configurations = chart_configurations(self.sts_guard, policies, leave_out)
        self.kubectl.ok("apply", "-f", "-", input=dump_all(configurations))

    def stop(self):
        self.sts_guard.stop()

    def start(self):
        if self.sts_guard.process is None:
            self.sts_guard.start()

    def restore(self):
        self.kubectl.ok("apply", "-f", "-", input=dump_all(self.sts_guard.webhook_configurations))
        self.start()


@pytest.fixture
def outage(kubectl, sts_guard):
    down = Outage(kubectl, sts_guard)
    try:
        yield down
    finally:
        down.restore()


def in_effect(kubectl, probe: list[str], webhook: str, stdin: str | None = None):
    """Waits until kube-apiserver uses the configurations just applied: a server-side dry run
    (`probe`, changes nothing) is refused for want of `webhook`."""
    def refused():
        result = kubectl(*probe, "--dry-run=server", input=stdin)
        return not result.ok and failed_calling(webhook) in result.stderr

    wait_until(f"kube-apiserver refusing for want of {webhook}", refused, timeout=30, interval=0.3)


def node(kubectl, ns: str) -> str:
    name = f"worker-{ns}"
    kubectl.ok("create", "-f", "-", input=json.dumps(
        {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}))
    return name


def labelled_pod(name: str, owner: dict | None = None) -> dict:
    """A pod as the StatefulSet controller creates it (its label), owned by `owner` when given."""
    metadata = {"name": name, "labels": {"statefulset.kubernetes.io/pod-name": name}}
    if owner:
        metadata["ownerReferences"] = [{"apiVersion": "apps/v1", "kind": "StatefulSet", "name": owner["metadata"]["name"],
                                        "uid": owner["metadata"]["uid"], "controller": True}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata,
            "spec": {"containers": [{"name": "app", "image": "registry.example/app:1.0"}]}}


def controller_manager_log(cluster) -> list[str]:
    return (cluster.run_dir / "kube-controller-manager.log").read_text(errors="replace").splitlines()


# --- 1. what passes, what is refused ---------------------------------------------------------


def test_an_outage_refuses_only_what_the_policy_could_deny(cluster, kubectl, sts_guard, outage):
    ns = kubectl.namespace("o1-outage")
    worker = node(kubectl, ns)
    kubectl.ok("apply", "-n", ns, "-f", "-", input=dump_all([
        service("web", {"app": "web"}), statefulset("web", "web", replicas=2),
        service("pending", {"app": "pending"}), statefulset("pending", "pending", replicas=1)]))
    fast = statefulset("fast", "fast", replicas=3)
    fast["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0
    kubectl.ok("apply", "-n", ns, "-f", "-", input=dump_all([service("fast", {"app": "fast"}), fast]))
    web, fast_pods = stored_pods(kubectl, ns, "web", 2), stored_pods(kubectl, ns, "fast", 3)
    stored_pods(kubectl, ns, "pending", 1)
    for pod in list(web) + list(fast_pods):
        bind(kubectl, ns, pod, worker)

    outage.register(only_failing(None))
    outage.stop()
    # Every webhook fails closed now: a StatefulSet pod the controller would create is refused.
    in_effect(kubectl, ["create", "-n", ns, "-f", "-"], POD_MUTATE, stdin=json.dumps(labelled_pod("probe-0")))
    log_mark = len(controller_manager_log(cluster))

    # A graceful delete (grace period 30 s), then the kubelet's final delete once the
    # containers have stopped: its own node's identity, grace period 0.
    kubectl.ok("delete", "pod", "web-0", "-n", ns, "--wait=false")
    terminating = kubectl.get("pod", "web-0", ns)
    assert terminating["metadata"].get("deletionTimestamp"), terminating
    result = kubectl("delete", "pod", "web-0", "-n", ns, "--grace-period=0", "--force",
                     f"--as=system:node:{worker}", "--as-group=system:nodes")
    assert result.ok, result
    assert not kubectl.exists("pod", "web-0", ns) or kubectl.get("pod", "web-0", ns)["metadata"]["uid"] != \
        terminating["metadata"]["uid"]

    # A pod never scheduled: kube-apiserver makes every delete of it immediate (grace 0).
    kubectl.ok("delete", "pod", "pending-0", "-n", ns, "--wait=false")

    # Scale (the scale subresource), and the StatefulSet controller's own deletes of the
    # condemned pods: grace 0 from the template, pods bound to a node.
    kubectl.ok("scale", "statefulset", "fast", "-n", ns, "--replicas=1")
    wait_until("the controller's deletes of fast-1 and fast-2", lambda: not (
        kubectl.exists("pod", "fast-1", ns) or kubectl.exists("pod", "fast-2", ns)), timeout=60, interval=0.5)

    # The governing Service: a label, a port; the StatefulSet: an annotation, a status write.
    kubectl.ok("label", "service", "web", "-n", ns, "tier=db")
    kubectl.ok("patch", "service", "web", "-n", ns, "--type=json", "-p", json.dumps(
        [{"op": "add", "path": "/spec/ports/-", "value": {"name": "metrics", "port": 9090}}]))
    kubectl.ok("annotate", "statefulset", "web", "-n", ns, "sts-guard.io/canary=1")
    generation = kubectl.get("statefulset", "web", ns)["metadata"]["generation"]
    kubectl.ok("patch", "statefulset", "web", "-n", ns, "--subresource=status", "--type=merge", "-p",
               json.dumps({"status": {"observedGeneration": generation}}))

    # What a rule could deny is refused, by the webhook that would judge it.
    refused_by(kubectl("delete", "pod", "fast-0", "-n", ns, "--grace-period=0", "--force"), POD_VALIDATE)
    # Grace 0 from the pod's spec: a plain delete is a force delete too.
    refused_by(kubectl("delete", "pod", "fast-0", "-n", ns, "--wait=false"), POD_VALIDATE)
    assert kubectl.exists("pod", "fast-0", ns)
    refused_by(kubectl("patch", "service", "web", "-n", ns, "--type=merge", "-p",
                       json.dumps({"spec": {"selector": {"app": "other"}}})), SVC_VALIDATE)
    refused_by(kubectl("delete", "service", "web", "-n", ns), SVC_VALIDATE)
    # A spec change other than the template passes the mutating webhook's condition and is
    # refused by the validating one; a template change is refused by the mutating one first.
    refused_by(kubectl("patch", "statefulset", "web", "-n", ns, "--type=merge", "-p",
                       json.dumps({"spec": {"replicas": 3}})), STS_VALIDATE)
    refused_by(kubectl("set", "image", "statefulset/web", "-n", ns, "app=registry.example/app:2.0"), STS_MUTATE)
    refused_by(kubectl.apply(statefulset("new", "web"), args=("-n", ns)), STS_MUTATE)
    refused_by(kubectl.apply(service("new", {"app": "new"}), args=("-n", ns)), SVC_VALIDATE)
    refused_by(kubectl("create", "-n", ns, "-f", "-", input=json.dumps(labelled_pod("extra-0"))), POD_MUTATE)

    stored = kubectl.get("service", "web", ns)
    assert stored["metadata"]["labels"]["tier"] == "db" and stored["spec"]["selector"] == {"app": "web"}
    assert [p["name"] for p in stored["spec"]["ports"]] == ["web", "metrics"]
    stored = kubectl.get("statefulset", "web", ns)
    assert stored["metadata"]["annotations"]["sts-guard.io/canary"] == "1" and stored["spec"]["replicas"] == 2
    assert stored["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example/app:1.0"
    # None of the controller's deletes met a webhook (its pod creates did: pods.mutate fails
    # closed in this test).
    refusals = [line for line in controller_manager_log(cluster)[log_mark:] if failed_calling(POD_VALIDATE) in line]
    assert refusals == [], refusals


def test_a_namespace_is_deleted_whole_during_an_outage(kubectl, sts_guard, outage):
    # The namespace controller deletes the pods, Services and StatefulSets in no particular
    # order; none of its deletes may wait for a webhook that is down.
    ns = kubectl.namespace("o1-teardown")
    kubectl.ok("apply", "-n", ns, "-f", "-", input=dump_all([
        service("web", {"app": "web"}), statefulset("web", "web", replicas=2)]))
    stored_pods(kubectl, ns, "web", 2)
    outage.register(only_failing(None))
    outage.stop()
    in_effect(kubectl, ["create", "-n", ns, "-f", "-"], POD_MUTATE, stdin=json.dumps(labelled_pod("probe-0")))
    kubectl.ok("delete", "namespace", ns, "--wait=false")
    wait_until(f"namespace {ns} gone with sts-guard down", lambda: not kubectl.exists("namespace", ns, "default"),
               timeout=90, interval=0.5)


# --- 2. rule by rule -----------------------------------------------------------------------


@dataclass
class Row:
    """A kubectl request that triggers `rule` through `webhook`, after `setup` (objects made
    with sts-guard up). `name`, `kind` and `operation` find its decision log line."""

    rule: str
    webhook: str
    kind: str
    operation: str
    name: str
    args: list[str]
    stdin: dict | None = None
    setup: list[dict] = field(default_factory=list)
    # Pods of the setup's StatefulSets to bind to the test's node (as the scheduler would).
    bound: list[str] = field(default_factory=list)
    # A webhook left out while sts-guard is up, as if its call had failed open.
    failed_open: str | None = None

    @property
    def effect(self) -> str:
        if ".mutate." in self.webhook:
            return "mutate"
        return RULE_FACTS[self.rule]["effect"]


def sts(name, service_name, *, replicas=0, **spec):
    """A StatefulSet fixture; `spec` goes into its spec, `grace` into its pod template."""
    obj = statefulset(name, service_name, replicas=replicas, labels={"app": name})
    grace = spec.pop("grace", None)
    if grace is not None:
        obj["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = grace
    obj["spec"].update(spec)
    return obj


def governed(name, **spec):
    """A headless Service and a StatefulSet it governs."""
    return [service(name, {"app": name}), sts(name, name, **spec)]


def create(obj):
    return ["create", "-f", "-"], obj


def patch(kind, name, body, kind_of_patch="merge"):
    return ["patch", kind, name, f"--type={kind_of_patch}", "-p", json.dumps(body)]


def shared_claim():
    obj = sts("shared", "shared", replicas=2)
    pod = obj["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": "data", "persistentVolumeClaim": {"claimName": "shared-data"}}]
    pod["containers"][0]["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
    return obj


ROWS = [
    Row("sts-service-name", STS_VALIDATE, "StatefulSet", "CREATE", "unnamed", *create(sts("unnamed", ""))),
    Row("sts-service-exists", STS_VALIDATE, "StatefulSet", "CREATE", "missing", *create(sts("missing", "absent"))),
    Row("sts-service-headless", STS_VALIDATE, "StatefulSet", "CREATE", "vip", *create(sts("vip", "vip")),
        setup=[service("vip", {"app": "vip"}, headless=False)]),
    Row("sts-service-selects-pods", STS_VALIDATE, "StatefulSet", "CREATE", "mismatch",
        *create(sts("mismatch", "other")), setup=[service("other", {"app": "other"})]),
    # UPDATE: the template changes, the partition stays above every ordinal.
    Row("sts-partition-range", STS_VALIDATE, "StatefulSet", "UPDATE", "range",
        patch("statefulset", "range", {"spec": {
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 5}},
            "template": {"spec": {"containers": [{"name": "app", "image": "registry.example/app:2.0"}]}}}}),
        setup=governed("range", replicas=1)),
    Row("sts-shared-claim", STS_VALIDATE, "StatefulSet", "CREATE", "shared", *create(shared_claim()),
        setup=[service("shared", {"app": "shared"})]),
    Row("sts-pvc-retention", STS_VALIDATE, "StatefulSet", "CREATE", "retain",
        *create(sts("retain", "retain", persistentVolumeClaimRetentionPolicy={"whenDeleted": "Delete"})),
        setup=[service("retain", {"app": "retain"})]),
    Row("sts-ordered-delete", STS_VALIDATE, "StatefulSet", "DELETE", "ordered",
        ["delete", "statefulset", "ordered", "--wait=false"],
        setup=governed("ordered", replicas=1, podManagementPolicy="OrderedReady")),
    Row("sts-zero-grace", STS_VALIDATE, "StatefulSet", "CREATE", "instant", *create(sts("instant", "instant", grace=0)),
        setup=[service("instant", {"app": "instant"})]),
    Row("sts-ready-ordering", STS_VALIDATE, "StatefulSet", "CREATE", "unready",
        *create(sts("unready", "unready", replicas=2, podManagementPolicy="OrderedReady")),
        setup=[service("unready", {"app": "unready"})]),
    Row("svc-governing-headless", SVC_VALIDATE, "Service", "UPDATE", "gov-headless",
        patch("service", "gov-headless", {"spec": {
            "type": "ExternalName", "externalName": "db.example.com", "clusterIP": None, "clusterIPs": None,
            "selector": None, "ports": None}}),
        setup=governed("gov-headless")),
    Row("svc-governing-selector", SVC_VALIDATE, "Service", "UPDATE", "gov-selector",
        patch("service", "gov-selector", {"spec": {"selector": {"app": "elsewhere"}}}), setup=governed("gov-selector")),
    Row("svc-governing-delete", SVC_VALIDATE, "Service", "DELETE", "gov-delete",
        ["delete", "service", "gov-delete"], setup=governed("gov-delete", replicas=1)),
    Row("pod-force-delete", POD_VALIDATE, "Pod", "DELETE", "forced-0",
        ["delete", "pod", "forced-0", "--grace-period=0", "--force"],
        setup=governed("forced", replicas=1), bound=["forced-0"]),
    # A plain delete of a pod whose spec says 0: kube-apiserver fills the grace period in.
    Row("pod-force-delete", POD_VALIDATE, "Pod", "DELETE", "spec-zero-0",
        ["delete", "pod", "spec-zero-0", "--wait=false"],
        setup=governed("spec-zero", replicas=1, grace=0), bound=["spec-zero-0"]),
    # A pod of a StatefulSet, created as its controller would (ordinal 7 of StatefulSet
    # "ident"; the controller removes it afterwards, as it has no such ordinal).
    Row("pod-identity-env", POD_MUTATE, "Pod", "CREATE", "ident-7", ["create", "-f", "-"], "ident-pod",
        setup=governed("ident")),
    # The staged rollout validated after the mutation: a template change of a canary
    # StatefulSet that arrives unstaged, because the mutating webhook failed open (it is
    # left out of the configuration while sts-guard is up; while it is down, it is Ignore).
    Row("sts-canary-partition", STS_VALIDATE, "StatefulSet", "UPDATE", "unstaged",
        ["set", "image", "statefulset/unstaged", "app=registry.example/app:2.0"],
        setup=[service("unstaged", {"app": "unstaged"}),
               {**sts("unstaged", "unstaged", replicas=2), "metadata": {
                   "name": "unstaged", "annotations": {"sts-guard.io/canary": "1"}}}],
        failed_open=STS_MUTATE),
    # The staged rollout: an UPDATE of the template of a StatefulSet with a canary. (On CREATE
    # the rule never acts on a real kube-apiserver: its defaulting sets partition 0 first.)
    Row("sts-partition-default", STS_MUTATE, "StatefulSet", "UPDATE", "canary",
        ["set", "image", "statefulset/canary", "app=registry.example/app:2.0"],
        setup=[service("canary", {"app": "canary"}),
               {**sts("canary", "canary", replicas=2), "metadata": {"name": "canary",
                                                                   "annotations": {"sts-guard.io/canary": "1"}}}]),
]


def rust_rule_facts() -> dict[str, dict]:
    """Every rule of the rule table (src/vocabulary.rs, rule_table!): effect and audit_only."""
    source = (ROOT / "src" / "vocabulary.rs").read_text()
    rows = re.findall(r'id: "([^"]+)", kind: \w+, effect: (\w+), audit_only: (true|false)', source)
    assert rows, "no rows found in rule_table! of src/vocabulary.rs"
    effects = {"DENY": "deny", "WARN": "warn", "WARN_ONLY": "warn", "MUTATING": "mutate"}
    return {rule: {"effect": effects[effect], "audit_only": audit == "true"} for rule, effect, audit in rows}


RULE_FACTS = rust_rule_facts()


def test_every_rule_of_the_rule_table_has_a_row():
    # The chart's values schema lists every rule id (a Rust test keeps it equal to the rule
    # table). Audit-only rules judge live pods, which admission never sees: no row.
    schema = json.loads((ROOT / "charts" / "sts-guard" / "values.schema.json").read_text())
    ids = set(schema["properties"]["config"]["properties"]["rules"]["propertyNames"]["enum"])
    assert ids == set(RULE_FACTS), "values.schema.json and src/vocabulary.rs list different rules"
    admission_rules = {rule for rule in ids if not RULE_FACTS[rule]["audit_only"]}
    assert {row.rule for row in ROWS} == admission_rules, {
        "without a row": sorted(admission_rules - {row.rule for row in ROWS}),
        "not an admission rule": sorted({row.rule for row in ROWS} - admission_rules)}
    for row in ROWS:
        assert (row.webhook == POD_MUTATE) == (row.rule == "pod-identity-env"), row
        assert (".mutate." in row.webhook) == (RULE_FACTS[row.rule]["effect"] == "mutate"), row


def row_input(row: Row, ns: str, owners: dict) -> str | None:
    if row.stdin == "ident-pod":
        return json.dumps(labelled_pod(row.name, owners["ident"]))
    return json.dumps(row.stdin) if row.stdin else None


def run(kubectl, row: Row, ns: str, owners: dict, *extra: str):
    return kubectl(*row.args, "-n", ns, *extra, input=row_input(row, ns, owners))


def decision_of(sts_guard, row: Row, ns: str, seen: int) -> dict | None:
    endpoint = "mutate" if ".mutate." in row.webhook else "validate"
    for record in sts_guard.decisions()[seen:]:
        if (record["object"], record["kind"], record["operation"], record["endpoint"]) == (
                f"{ns}/{row.name}", row.kind, row.operation, endpoint):
            return record
    return None


def test_every_rule_is_refused_by_its_webhook_while_down_and_decided_while_up(kubectl, sts_guard, outage):
    assert {w["name"]: w["failurePolicy"] for c in sts_guard.webhook_configurations
            for w in c["webhooks"]} == CHART_DEFAULTS
    ns = kubectl.namespace("o2-rules")
    worker = node(kubectl, ns)
    for row in ROWS:
        if row.setup:
            kubectl.ok("apply", "-n", ns, "-f", "-", input=dump_all(row.setup))
        for pod in row.bound:
            stored_pods(kubectl, ns, pod.rsplit("-", 1)[0], 1)
            bind(kubectl, ns, pod, worker)
    owners = {"ident": kubectl.get("statefulset", "ident", ns)}

    outage.stop()
    for webhook in WEBHOOKS:
        rows = [row for row in ROWS if row.webhook == webhook]
        outage.register(only_failing(webhook))
        probe = rows[0]
        in_effect(kubectl, [*probe.args, "-n", ns], webhook, stdin=row_input(probe, ns, owners))
        for row in rows:
            refused_by(run(kubectl, row, ns, owners), webhook)

    outage.restore()
    for row in ROWS:
        if row.failed_open:
            # The chart's defaults, without the webhook whose call failed open.
            outage.register(CHART_DEFAULTS, leave_out=row.failed_open)
            wait_until(f"kube-apiserver without {row.failed_open}",
                       lambda: f"{row.rule}:" in run(kubectl, row, ns, owners, "--dry-run=server").stderr, timeout=30)
        seen = len(sts_guard.decisions())
        result = run(kubectl, row, ns, owners)
        if row.failed_open:
            outage.restore()
            # Back in effect: the mutation stages the same update, which then passes.
            wait_until(f"kube-apiserver with {row.failed_open} again",
                       lambda: run(kubectl, row, ns, owners, "--dry-run=server").ok, timeout=30)
        if row.effect == "deny":
            assert not result.ok and DENIED_BY[row.webhook] in result.stderr and f"{row.rule}:" in result.stderr, result
        elif row.effect == "warn":
            assert result.ok and any(f"{row.rule}:" in w for w in warnings(result)), result
        else:
            assert result.ok, result
        record = wait_until(f"the decision on {row.kind} {ns}/{row.name} ({row.operation})",
                            lambda: decision_of(sts_guard, row, ns, seen), timeout=10, interval=0.2)
        assert row.rule in record["rules"].split(","), (row, record)

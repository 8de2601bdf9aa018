"""The background audit of a running sts-guard, the claim and rollout rules, and the policy
report formats, against the real control plane.

- sts-guard is stopped, objects it would refuse are made meanwhile (in a namespace the webhook
  ignores, as a brownfield cluster has them), and it is started again: its first background
  audit, right after its inventory syncs, reports them on `GET /audit` and in
  `sts_guard_audit_findings`, as `sts-guard audit -o json` run as the chart's ServiceAccount
  with the chart's config does. No flag is added: the server's defaults do it.
- `sts-claims-orphaned`, `sts-claim-pending` and `sts-rollout-stalled` on objects the run
  makes: claims created directly (no provisioner runs here, so a claim stays Pending until its
  status is written through the status subresource), claims the StatefulSet controller makes
  for its pods, and a rollout the real controller leaves unfinished (`OnDelete`: no pod is
  replaced until deleted); healthy neighbours of each stay quiet.
- `audit --output policyreport` and `--output openreports` are accepted by the API server
  (strict field validation) once CRDs written from the published schemas are installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

from controlplane import https_get, wait_until
from harness import STS_GUARD_BIN, dump_all
from report_crds import report_crds
from test_admission import service, statefulset

IGNORED = {"sts-guard.io/ignore": "true"}
CLAIM_AND_ROLLOUT_RULES = ("sts-claims-orphaned", "sts-claim-pending", "sts-rollout-stalled")


def audit(identity, *args: str, config=None) -> subprocess.CompletedProcess:
    """`sts-guard audit` as the chart's ServiceAccount, with the chart's config file unless
    another is given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "STS_GUARD_"))}
    env["KUBECONFIG"] = str(identity.kubeconfig)
    return subprocess.run([str(STS_GUARD_BIN), "audit", "--quiet", f"--config={config or identity.config_file}",
                           *args], env=env, capture_output=True, text=True, timeout=120)


def audit_json(identity, *args: str, config=None) -> dict:
    result = audit(identity, "-o", "json", *args, config=config)
    assert result.returncode in (0, 1), result
    return json.loads(result.stdout)


def rules_by_object(report: dict, namespace: str | None = None) -> dict:
    return {f'{o["kind"]} {o["namespace"]}/{o["name"]}': sorted(f'{v["rule"]}:{v["action"]}' for v in o["violations"])
            for o in report["objects"] if namespace is None or o["namespace"] == namespace}


def audit_gauges(metrics: str) -> dict:
    """Non-zero `sts_guard_audit_findings{rule,action}` of a metrics page."""
    gauges = {}
    for line in metrics.splitlines():
        if not line.startswith("sts_guard_audit_findings{"):
            continue
        labels, value = line[len("sts_guard_audit_findings{"):].split("} ")
        pairs = dict(pair.split("=", 1) for pair in labels.split(","))
        if float(value) > 0:
            gauges[(pairs["rule"].strip('"'), pairs["action"].strip('"'))] = int(float(value))
    return gauges


def counts_by_rule(report: dict) -> dict:
    """The same counts from `byNamespace` of `audit -o json`."""
    counts: dict = {}
    for rules in report["byNamespace"].values():
        for rule, c in rules.items():
            for action in ("deny", "warn"):
                if c[action]:
                    counts[(rule, action)] = counts.get((rule, action), 0) + c[action]
    return counts


def get_audit(sts_guard):
    """`GET /audit` where Prometheus and people read: the admin port of the chart's container
    (the webhook port may ask for a client certificate), the only port of a bare server."""
    base = getattr(sts_guard, "admin_url", sts_guard.url)
    return https_get(f"{base}/audit", sts_guard.ca, server_name=sts_guard.server_name)


def test_background_audit_finds_what_was_made_while_sts_guard_was_down(kubectl, sts_guard, identity):
    ns = kubectl.namespace("b1-background", labels=IGNORED)
    sts_guard.stop()
    try:
        # A typo in serviceName, a governing Service with a virtual IP, and a StatefulSet whose
        # pods would be force-deleted by every delete: made while nothing watches.
        kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
        kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
            statefulset("web", "nginx-svc", replicas=0, labels={"app": "web"})))
        kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("vip", {"app": "vip"}, headless=False)))
        kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(statefulset("vip", "vip", replicas=0)))
        fast = statefulset("fast", "nginx", replicas=0, labels={"app": "web"})
        fast["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 0
        kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(fast))
    finally:
        started = time.time()
        sts_guard.start()

    # The first background audit runs as soon as the inventory has synced (no flag asks for it).
    def first_audit():
        status, body = get_audit(sts_guard)
        return json.loads(body) if status == 200 else None

    background = wait_until("the first background audit on /audit", first_audit, timeout=60, interval=0.5)
    assert time.time() - started < 60
    assert rules_by_object(background, ns) == {
        f"StatefulSet {ns}/web": ["sts-service-exists:deny"],
        f"StatefulSet {ns}/vip": ["sts-service-headless:deny"],
        f"StatefulSet {ns}/fast": ["sts-zero-grace:warn"],
    }
    assert background["scope"] == "all namespaces"

    # The CLI, as the chart's ServiceAccount with the chart's config, agrees object for object
    # and count for count; the gauges are those counts. (Objects of other scenarios may still
    # be changing: compare with a CLI run that saw the same cluster.)
    def agreeing_cli_run():
        cli = audit_json(identity)
        same = (cli["objects"] == background["objects"] and cli["byNamespace"] == background["byNamespace"]
                and cli["summary"] == background["summary"])
        return cli if same else None

    cli = wait_until("an audit -o json that agrees with /audit", agreeing_cli_run, timeout=30, interval=1)
    assert audit_gauges(sts_guard.metrics()) == counts_by_rule(cli)
    metrics = sts_guard.metrics()
    assert 'sts_guard_audit_runs_total{result="ok"} 1' in metrics, metrics
    last_run = next(float(line.split()[1]) for line in metrics.splitlines()
                    if line.startswith("sts_guard_audit_last_run_timestamp_seconds "))
    assert started - 5 < last_run < time.time() + 5
    assert any(line.startswith("sts_guard_audit_last_run_duration_seconds ") for line in metrics.splitlines())


def claim(name: str, *, labels=None) -> dict:
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": name, "labels": labels or {}},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}


def bound(kubectl, ns: str, name: str):
    """What the PersistentVolume controller would write once a volume is bound (none runs here)."""
    kubectl.ok("patch", "pvc", name, "-n", ns, "--subresource=status", "--type=merge",
               "-p", json.dumps({"status": {"phase": "Bound"}}))


def with_claims(sts: dict, *templates: str) -> dict:
    sts["spec"]["volumeClaimTemplates"] = [
        {"metadata": {"name": t}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}
        for t in templates]
    # No persistentVolumeClaimRetentionPolicy: Retain, the default, keeps claims after a
    # scale-down, which is what sts-claims-orphaned is about.
    return sts


def status_of(kubectl, ns: str, name: str) -> dict:
    return kubectl.get("statefulset", name, ns).get("status", {})


def test_claim_and_rollout_rules_fire_on_what_the_run_makes_and_stay_quiet_on_healthy_ones(
        kubectl, identity, run_dir):
    ns = kubectl.namespace("b2-claims", labels=IGNORED)
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("db", {"app": "db"})))

    # shrunk: scaled to 1 from 3, its claims for ordinals 1 and 2 kept (made directly, Bound).
    for name in ("data-shrunk-0", "data-shrunk-1", "data-shrunk-2"):
        kubectl.ok("create", "-n", ns, "-f", "-", input=json.dumps(claim(name)))
        bound(kubectl, ns, name)
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        with_claims(statefulset("shrunk", "db", replicas=1, labels={"app": "db"}), "data")))
    # kept: two replicas and exactly their two claims, Bound.
    for name in ("data-kept-0", "data-kept-1"):
        kubectl.ok("create", "-n", ns, "-f", "-", input=json.dumps(claim(name)))
        bound(kubectl, ns, name)
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        with_claims(statefulset("kept", "db", replicas=2, labels={"app": "db"}), "data")))
    # waiting: the controller makes data-waiting-0 for its pod, and no provisioner binds it.
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        with_claims(statefulset("waiting", "db", replicas=1, labels={"app": "db"}), "data")))
    wait_until("the controller's claim data-waiting-0", lambda: kubectl.exists("pvc", "data-waiting-0", ns))

    # stalled: OnDelete, its template changed after its pod was made: the controller records a
    # new update revision and replaces nothing. steady: the same, untouched.
    for name in ("stalled", "steady"):
        kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
            statefulset(name, "db", replicas=1, labels={"app": "db"}, strategy={"type": "OnDelete"})))
        wait_until(f"{name}'s first revision", lambda name=name: status_of(kubectl, ns, name).get("updateRevision"))
    kubectl.ok("patch", "statefulset", "stalled", "-n", ns, "--type=merge", "-p", json.dumps(
        {"spec": {"template": {"metadata": {"annotations": {"example.com/config": "v2"}}}}}))

    def rollout_under_way():
        status = status_of(kubectl, ns, "stalled")
        current, update = status.get("currentRevision"), status.get("updateRevision")
        return status if current and update and current != update else None

    status = wait_until("stalled's rollout to be under way", rollout_under_way)
    assert status_of(kubectl, ns, "steady")["currentRevision"] == status_of(kubectl, ns, "steady")["updateRevision"]

    # With the chart's config (claimPendingAfter 15m, rolloutStalledAfter 1h) only the orphaned
    # claims are reported: the rest is too young.
    report = audit_json(identity, "-n", ns)
    found = {k: [r for r in v if r.split(":")[0] in CLAIM_AND_ROLLOUT_RULES]
             for k, v in rules_by_object(report, ns).items()}
    assert {k: v for k, v in found.items() if v} == {f"StatefulSet {ns}/shrunk": ["sts-claims-orphaned:warn"]}
    message = next(v["message"] for o in report["objects"] if o["name"] == "shrunk" for v in o["violations"]
                   if v["rule"] == "sts-claims-orphaned")
    assert "PersistentVolumeClaims data-shrunk-1 and data-shrunk-2 belong to ordinals 1 and 2" in message, message
    assert f"kubectl delete pvc data-shrunk-1 data-shrunk-2 -n {ns}" in message, message

    # With thresholds of 1 s, the Pending claim and the stalled rollout are reported too, once
    # that long has passed; kept and steady stay quiet.
    config = run_dir / "audit-thresholds.yaml"
    config.write_text(open(identity.config_file).read() + "\naudit:\n  claimPendingAfter: 1s\n  rolloutStalledAfter: 1s\n")
    expected = {
        f"StatefulSet {ns}/shrunk": ["sts-claims-orphaned:warn"],
        f"StatefulSet {ns}/waiting": ["sts-claim-pending:warn"],
        f"StatefulSet {ns}/stalled": ["sts-rollout-stalled:warn"],
    }

    def all_reported():
        report = audit_json(identity, "-n", ns, config=config)
        found = {k: [r for r in v if r.split(":")[0] in CLAIM_AND_ROLLOUT_RULES]
                 for k, v in rules_by_object(report, ns).items()}
        found = {k: v for k, v in found.items() if v}
        return report if found == expected else None

    report = wait_until("the Pending claim and the stalled rollout to be reported", all_reported, timeout=30, interval=1)
    messages = {f'{o["name"]}:{v["rule"]}': v["message"] for o in report["objects"] for v in o["violations"]}
    assert "PersistentVolumeClaim data-waiting-0 (since" in messages["waiting:sts-claim-pending"]
    assert (f'status.updateRevision {status["updateRevision"]} is not status.currentRevision {status["currentRevision"]}'
            in messages["stalled:sts-rollout-stalled"]), messages["stalled:sts-rollout-stalled"]
    assert "With updateStrategy OnDelete a pod is replaced only when it is deleted" in messages["stalled:sts-rollout-stalled"]
    assert report["listed"]["controllerrevisions"] == 1

    # Fixed: shrunk scaled back up to 3 (its kept claims are in use again), the Pending claim
    # bound. The rollout stays stalled: OnDelete waits for someone to delete the pod.
    kubectl.ok("scale", "statefulset", "shrunk", "-n", ns, "--replicas=3")
    bound(kubectl, ns, "data-waiting-0")
    expected = {f"StatefulSet {ns}/stalled": ["sts-rollout-stalled:warn"]}
    wait_until("only the stalled rollout to be left", all_reported, timeout=30, interval=1)


def test_policy_reports_are_accepted_by_the_api_server(kubectl, identity):
    ns = kubectl.namespace("b3-reports", labels=IGNORED)
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(service("nginx", {"app": "web"})))
    kubectl.ok("apply", "-n", ns, "-f", "-", input=json.dumps(
        statefulset("web", "nginx-svc", replicas=0, labels={"app": "web"})))
    crds = report_crds()
    kubectl.ok("apply", "-f", "-", input=dump_all(crds))
    try:
        for crd in crds:
            kubectl.ok("wait", "--for=condition=Established", "--timeout=30s", f'crd/{crd["metadata"]["name"]}')
        for output, resource, singular, api_version in (
                ("policyreport", "policyreports.wgpolicyk8s.io", "policyreport.wgpolicyk8s.io", "wgpolicyk8s.io/v1alpha2"),
                ("openreports", "reports.openreports.io", "report.openreports.io", "openreports.io/v1alpha1")):
            result = audit(identity, "-n", ns, "-o", output)
            assert result.returncode == 1, result

            def applied():
                # Strict field validation: a field the schema lacks is an error, not pruned. (Until
                # kubectl's discovery sees the new kinds, it says it knows no such kind.)
                attempt = kubectl("apply", "--validate=strict", "-f", "-", input=result.stdout)
                assert "unknown field" not in attempt.stderr, attempt
                return attempt if attempt.ok else None

            created = wait_until(f"kubectl apply -f of --output {output}", applied, timeout=30, interval=1)
            assert f"{singular}/sts-guard created" in created.stdout, created
            stored = kubectl.get(resource, "sts-guard", ns)
            assert stored["apiVersion"] == api_version
            assert stored["summary"] == {"pass": 0, "fail": 1, "warn": 0, "error": 0, "skip": 0}
            [result_entry] = stored["results"]
            assert result_entry["source"] == "sts-guard"
            assert result_entry["policy"] == "sts-service-exists"
            assert result_entry["result"] == "fail" and result_entry["severity"] == "high"
            assert result_entry["resources"] == [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                                                 "namespace": ns, "name": "web"}]
            assert "did you mean serviceName: nginx?" in result_entry["message"]
            if output == "openreports":
                assert stored["source"] == "sts-guard"
    finally:
        for crd in crds:
            kubectl("delete", "crd", crd["metadata"]["name"], "--ignore-not-found", "--wait=false")

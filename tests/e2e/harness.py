"""The pieces the end-to-end scenarios and the apiserver latency benchmark share: kubectl as
the user runs it, sts-guard as the chart runs it, and the chart's webhook configurations
pointed at a local server."""

from __future__ import annotations

import copy
import json
import os
import pathlib
import subprocess

import helm_python as helm
import yaml

from controlplane import ControlPlane, Process, b64, free_port, https_get, kubeconfig, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sts-guard"
RELEASE = "sts-guard"
RELEASE_NAMESPACE = "sts-guard"
STS_GUARD_BIN = pathlib.Path(os.environ.get("STS_GUARD_BIN", ROOT / "target" / "debug" / "sts-guard"))


def render_chart(values=None, name=RELEASE, namespace=RELEASE_NAMESPACE) -> list[dict]:
    rendered = helm.Chart.load(str(CHART)).render(values or {}, name=name, namespace=namespace)
    docs = []
    for key in sorted(rendered):
        if not key.endswith("NOTES.txt"):
            docs.extend(doc for doc in yaml.safe_load_all(rendered[key]) if doc)
    return docs


class Result:
    def __init__(self, completed: subprocess.CompletedProcess):
        self.returncode = completed.returncode
        self.stdout = completed.stdout
        self.stderr = completed.stderr
        self.args = completed.args

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def __repr__(self):
        return f"kubectl {' '.join(self.args[3:])} -> {self.returncode}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class Kubectl:
    """The real kubectl against the e2e apiserver; every call returns what the user would see."""

    def __init__(self, binary: str, kubeconfig_path: pathlib.Path):
        self.binary = binary
        self.kubeconfig = kubeconfig_path

    def __call__(self, *args: str, input: str | None = None, timeout: float = 60) -> Result:
        completed = subprocess.run(
            [self.binary, "--kubeconfig", str(self.kubeconfig), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return Result(completed)

    def ok(self, *args: str, input: str | None = None) -> Result:
        result = self(*args, input=input)
        assert result.ok, result
        return result

    def apply(self, *objects: dict, args=()) -> Result:
        """`kubectl apply -f -` of the objects as one multi-document file, in the given order."""
        return self("apply", *args, "-f", "-", input=dump_all(objects))

    def create(self, *objects: dict, args=()) -> Result:
        return self("create", *args, "-f", "-", input=dump_all(objects))

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict:
        ns = ["-n", namespace] if namespace else []
        return json.loads(self.ok("get", kind, name, *ns, "-o", "json").stdout)

    def exists(self, kind: str, name: str, namespace: str) -> bool:
        result = self("get", kind, name, "-n", namespace, "--ignore-not-found", "-o", "name")
        assert result.ok, result
        return bool(result.stdout.strip())

    def namespace(self, name: str, labels: dict | None = None) -> str:
        """Creates a namespace and waits for its default ServiceAccount (pods need it)."""
        self.ok("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        ))
        wait_until(f"ServiceAccount {name}/default", lambda: self.exists("serviceaccount", "default", name))
        return name


class StsGuard:
    """`sts-guard serve` in cluster mode, started and stopped by PID, on a fixed port."""

    def __init__(self, run_dir: pathlib.Path, kubeconfig_path: pathlib.Path, config_file: pathlib.Path):
        self.run_dir = run_dir
        self.kubeconfig = kubeconfig_path
        self.config_file = config_file
        self.port = free_port()
        self.certs = run_dir / "sts-guard-certs"
        subprocess.run(
            [str(STS_GUARD_BIN), "certs", "--dns", "127.0.0.1", "--dns", "localhost", "--out", str(self.certs)],
            check=True, capture_output=True,
        )
        self.ca = self.certs / "ca.crt"
        self.process: Process | None = None
        self.log = run_dir / "sts-guard.log"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(self.kubeconfig)
        env.setdefault("RUST_LOG", "info")
        argv = [
            str(STS_GUARD_BIN), "serve", f"--addr=127.0.0.1:{self.port}",
            f"--tls-cert={self.certs / 'tls.crt'}", f"--tls-key={self.certs / 'tls.key'}",
            f"--config={self.config_file}", "--log-format=json", "--drain-timeout=5",
        ]
        self.process = Process("sts-guard", argv, self.log, env=env)
        wait_until("sts-guard /readyz", self.ready, timeout=60)

    def ready(self) -> bool:
        assert self.process is not None
        self.process.check_running()
        status, _ = https_get(f"{self.url}/readyz", self.ca, timeout=2)
        return status == 200

    def metrics(self) -> str:
        status, body = https_get(f"{self.url}/metrics", self.ca)
        assert status == 200, body
        return body

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None


def chart_webhooks(docs: list[dict], url: str, ca_bundle: str) -> list[dict]:
    """The chart's two webhook configurations with only clientConfig pointed at `url`."""
    configurations = []
    for doc in docs:
        if doc["kind"] not in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration"):
            continue
        doc = copy.deepcopy(doc)
        for webhook in doc["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{url}{path}", "caBundle": ca_bundle}
        configurations.append(doc)
    assert len(configurations) == 2, [d["kind"] for d in docs]
    return configurations




def start_sts_guard(cluster: ControlPlane, kubectl: Kubectl, run_dir: pathlib.Path) -> StsGuard:
    """sts-guard serving `cluster` as the chart's ServiceAccount (bound to the chart's
    ClusterRole, not admin), with the chart's config file. Not yet registered."""
    docs = render_chart()
    kubectl.ok("create", "namespace", RELEASE_NAMESPACE)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert {d["kind"] for d in rbac} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    kubectl.ok("apply", "-f", "-", input=dump_all(rbac))
    account = next(d for d in rbac if d["kind"] == "ServiceAccount")["metadata"]["name"]
    token = kubectl.ok("create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=6h").stdout.strip()
    identity = kubeconfig(run_dir / "sts-guard.kubeconfig", cluster.server, cluster.pki.ca, token=token)

    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    config_file = run_dir / "config.yaml"
    config_file.write_text(config_map["data"]["config.yaml"])

    server = StsGuard(run_dir, identity, config_file)
    server.account = f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}"
    server.start()
    server.webhook_configurations = chart_webhooks(docs, server.url, b64(server.ca))
    return server


def dump_all(objects) -> str:
    return "\n---\n".join(yaml.safe_dump(o) for o in objects)

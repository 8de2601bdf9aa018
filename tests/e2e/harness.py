"""The pieces the end-to-end scenarios and the apiserver latency benchmark share: kubectl as
the user runs it, sts-guard as the chart runs it, and the chart's webhook configurations
pointed at a local server."""

from __future__ import annotations

import base64
import copy
import json
import os
import pathlib
import subprocess
from dataclasses import dataclass

import helm_python as helm
import yaml

from controlplane import ControlPlane, NetworkNamespace, Process, b64, free_port, https_get, kubeconfig, wait_until

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

    # Set while a transport is under test, so each transport's scenarios get namespaces of their own.
    namespace_suffix = ""

    def namespace(self, name: str, labels: dict | None = None) -> str:
        """Creates a namespace and waits for its default ServiceAccount (pods need it)."""
        name += self.namespace_suffix
        self.ok("create", "-f", "-", input=json.dumps(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
        ))
        wait_until(f"ServiceAccount {name}/default", lambda: self.exists("serviceaccount", "default", name))
        return name


class StsGuard:
    """`sts-guard serve` in cluster mode, started and stopped by PID, at a fixed address; in a
    network namespace when `netns` is given."""

    def __init__(self, name: str, run_dir: pathlib.Path, identity: "ChartIdentity", tls_dir: pathlib.Path,
                 address: str, port: int, *, netns: NetworkNamespace | None = None, server_name: str | None = None):
        self.name = name
        self.identity = identity
        self.tls_dir = tls_dir
        self.ca = tls_dir / "ca.crt"
        self.address, self.port = address, port
        self.netns = netns
        self.server_name = server_name
        self.process: Process | None = None
        self.log = run_dir / f"{name}.log"
        self.webhook_configurations: list[dict] = []
        self.service_objects: list[dict] = []
        self.expected_http = ""

    @property
    def url(self) -> str:
        return f"https://{self.address}:{self.port}"

    @property
    def account(self) -> str:
        return self.identity.account

    def start(self):
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(self.identity.kubeconfig)
        env.setdefault("RUST_LOG", "info")
        argv = [
            str(STS_GUARD_BIN), "serve", f"--addr={self.address}:{self.port}",
            f"--tls-cert={self.tls_dir / 'tls.crt'}", f"--tls-key={self.tls_dir / 'tls.key'}",
            f"--config={self.identity.config_file}", "--log-format=json", "--drain-timeout=5",
        ]
        if self.netns:
            argv = self.netns.argv(argv)
        self.process = Process(self.name, argv, self.log, env=env)
        wait_until(f"{self.name} /readyz", self.ready, timeout=60)

    def ready(self) -> bool:
        assert self.process is not None
        self.process.check_running()
        status, _ = https_get(f"{self.url}/readyz", self.ca, timeout=2, server_name=self.server_name)
        return status == 200

    def metrics(self) -> str:
        status, body = https_get(f"{self.url}/metrics", self.ca, server_name=self.server_name)
        assert status == 200, body
        return body

    def stop(self):
        if self.process is not None:
            self.process.stop()
            self.process = None

    def decisions(self) -> list[dict]:
        """The JSON decision log lines written so far."""
        records = []
        for line in self.log.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("message") == "admission decision":
                records.append(record)
        return records


@dataclass
class ChartIdentity:
    """What the chart gives sts-guard: its ServiceAccount (bound to the chart's ClusterRole, not
    admin) as a kubeconfig with that account's token, the config file from its ConfigMap, and the
    rendered objects."""

    docs: list[dict]
    account: str
    kubeconfig: pathlib.Path
    config_file: pathlib.Path


def chart_identity(cluster: ControlPlane, kubectl: Kubectl, run_dir: pathlib.Path) -> ChartIdentity:
    docs = render_chart()
    kubectl.ok("create", "namespace", RELEASE_NAMESPACE)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert {d["kind"] for d in rbac} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    kubectl.ok("apply", "-f", "-", input=dump_all(rbac))
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    token = kubectl.ok("create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=6h").stdout.strip()
    config_file = run_dir / "config.yaml"
    config_file.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    return ChartIdentity(
        docs=docs,
        account=f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}",
        kubeconfig=kubeconfig(run_dir / "sts-guard.kubeconfig", cluster.server, cluster.pki.ca, token=token),
        config_file=config_file,
    )


def one(docs: list[dict], kind: str) -> dict:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, f"{kind}: {len(found)} rendered"
    return found[0]


def webhook_configurations(docs: list[dict]) -> list[dict]:
    found = [copy.deepcopy(d) for d in docs
             if d["kind"] in ("ValidatingWebhookConfiguration", "MutatingWebhookConfiguration")]
    assert len(found) == 2, [d["kind"] for d in docs]
    return found


def chart_webhooks(docs: list[dict], url: str, ca_bundle: str) -> list[dict]:
    """The chart's two webhook configurations with only clientConfig pointed at `url`."""
    configurations = webhook_configurations(docs)
    for configuration in configurations:
        for webhook in configuration["webhooks"]:
            path = webhook["clientConfig"]["service"]["path"]
            webhook["clientConfig"] = {"url": f"{url}{path}", "caBundle": ca_bundle}
    return configurations


def url_server(identity: ChartIdentity, run_dir: pathlib.Path) -> StsGuard:
    """sts-guard on a loopback URL (kube-apiserver offers HTTP/2 there), registered through the
    chart's webhook configurations with only clientConfig rewritten to that URL and its CA."""
    tls_dir = run_dir / "url-certs"
    subprocess.run(
        [str(STS_GUARD_BIN), "certs", "--dns", "127.0.0.1", "--dns", "localhost", "--out", str(tls_dir)],
        check=True, capture_output=True,
    )
    server = StsGuard("sts-guard-url", run_dir, identity, tls_dir, "127.0.0.1", free_port())
    server.expected_http = "HTTP/2.0"
    server.webhook_configurations = chart_webhooks(identity.docs, server.url, b64(server.ca))
    return server


def chart_tls(docs: list[dict], directory: pathlib.Path) -> pathlib.Path:
    """The serving pair and CA the chart generated (tls.mode=generate), as files."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, data in one(docs, "Secret")["data"].items():
        path = directory / key
        path.write_bytes(base64.b64decode(data))
        os.chmod(path, 0o600)
    return directory


def endpoint_slice(service: dict, address: str, port: int) -> dict:
    """What the EndpointSlice controller would publish for one ready webhook pod at `address`."""
    name, namespace = service["metadata"]["name"], service["metadata"]["namespace"]
    port_name = service["spec"]["ports"][0]["name"]
    return {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": f"{name}-e2e", "namespace": namespace,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [address], "conditions": {"ready": True}}],
        "ports": [{"name": port_name, "port": port, "protocol": "TCP"}],
    }


def service_server(identity: ChartIdentity, run_dir: pathlib.Path, netns: NetworkNamespace,
                   cluster: ControlPlane) -> StsGuard:
    """sts-guard as the chart deploys it: behind the chart's Service, with the certificate the chart
    generated, registered through the chart's webhook configurations exactly as rendered.
    kube-apiserver calls it over HTTP/1.1, as it calls every Service-backed webhook. The server
    runs in `netns` (a Service endpoint may not be a loopback address) and reaches the apiserver
    through a relay of the apiserver's loopback port."""
    docs = identity.docs
    service = one(docs, "Service")
    container = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    port = next(p["containerPort"] for p in container["ports"] if p["name"] == service["spec"]["ports"][0]["targetPort"])
    netns.forward_loopback(cluster.apiserver_port)
    server = StsGuard(
        "sts-guard-service", run_dir, identity, chart_tls(docs, run_dir / "chart-certs"), netns.address, port,
        netns=netns, server_name=f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc",
    )
    server.service_objects = [service, endpoint_slice(service, netns.address, port)]
    server.expected_http = "HTTP/1.1"
    server.webhook_configurations = webhook_configurations(docs)
    return server


def dump_all(objects) -> str:
    return "\n---\n".join(yaml.safe_dump(o) for o in objects)

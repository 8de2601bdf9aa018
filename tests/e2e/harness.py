"""The pieces the end-to-end scenarios and the apiserver latency benchmark share: kubectl as
the user runs it, sts-guard as the chart runs it, and the chart's webhook configurations
pointed at a local server."""

from __future__ import annotations

import base64
import copy
import datetime
import http.client
import json
import os
import pathlib
import resource
import secrets
import shutil
import ssl
import subprocess
from dataclasses import dataclass, field

import helm_python as helm
import yaml

from controlplane import ControlPlane, NetworkNamespace, Process, b64, free_port, https_get, kubeconfig, wait_until

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "sts-guard"
RELEASE = "sts-guard"
RELEASE_NAMESPACE = "sts-guard"
STS_GUARD_BIN = pathlib.Path(os.environ.get("STS_GUARD_BIN", ROOT / "target" / "debug" / "sts-guard"))
# The image scripts/image built (scripts/e2e sets it from the script's output).
STS_GUARD_IMAGE = os.environ.get("STS_GUARD_IMAGE", "")
# Containers of this run carry this label, so scripts/e2e finds any that a run left behind.
CONTAINER_LABEL = "io.sts-guard.e2e.run"


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


def kubelet_volume(directory: pathlib.Path, files: dict[str, bytes], mode: int = 0o644) -> pathlib.Path:
    """Lays `files` out in `directory` as the kubelet's atomic writer lays out a Secret,
    ConfigMap or projected volume: the contents in a timestamped directory
    (`..2026_12_01_15_04_05.123456789`), `..data` a symlink to it, each key a symlink
    `KEY -> ..data/KEY`. Called again on the same directory it is an update of the Secret: the
    new contents in a new timestamped directory, `..data` swapped to it in one rename, the old
    directory removed. `mode` is the volume's defaultMode (0644 unless the pod says otherwise,
    so uid 65532 reads the key)."""
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o755)
    now = datetime.datetime.now(datetime.timezone.utc)
    stamp = now.strftime("..%Y_%m_%d_%H_%M_%S.") + str(secrets.randbelow(10**9))
    payload = directory / stamp
    payload.mkdir(mode=0o755)
    for key, data in files.items():
        (payload / key).write_bytes(data)
        os.chmod(payload / key, mode)
    data_link = directory / "..data"
    previous = os.readlink(data_link) if data_link.is_symlink() else None
    staged = directory / "..data_tmp"
    if staged.is_symlink():
        staged.unlink()
    os.symlink(stamp, staged)
    os.rename(staged, data_link)
    for key in files:
        if not (directory / key).is_symlink():
            os.symlink(f"..data/{key}", directory / key)
    for link in directory.iterdir():
        if link.is_symlink() and not link.name.startswith("..") and link.name not in files:
            link.unlink()
    if previous:
        shutil.rmtree(directory / previous)
    return directory


def kubelet_probe(probe: dict, address: str, ports: dict[str, int], timeout: float | None = None) -> bool:
    """One run of a rendered httpGet probe as the kubelet runs it: to the pod's address, the
    port by name or number, HTTPS without verifying the certificate (the kubelet does not),
    `timeoutSeconds` (1 s by default); success is a status from 200 to 399."""
    get = probe["httpGet"]
    port = ports[get["port"]] if isinstance(get["port"], str) else get["port"]
    timeout = timeout or probe.get("timeoutSeconds", 1)
    if get.get("scheme", "HTTP") == "HTTPS":
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection(address, port, timeout=timeout, context=context)
    else:
        connection = http.client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", get.get("path", "/"), headers={"User-Agent": "kube-probe/1.37"})
        return 200 <= connection.getresponse().status < 400
    except OSError:
        return False
    finally:
        connection.close()


def _memory_flag(quantity: str) -> str:
    """A Kubernetes memory quantity (128Mi, 1Gi, 500M, bytes) as podman's --memory value."""
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return str(int(float(quantity[: -len(suffix)]) * factor))
    return str(int(quantity))


class ContainerStsGuard(StsGuard):
    """The image scripts/image built, run by podman the way the kubelet runs the chart's
    Deployment: the container spec `helm template` renders (image entrypoint or `command`,
    `args`, `env`), its securityContext merged over the pod's (`--user` runAsUser:runAsGroup,
    `--read-only` without podman's extra tmpfs mounts, `--cap-drop`, no-new-privileges, the
    default seccomp profile for RuntimeDefault), the memory limit, the rendered volumes laid
    out as the kubelet lays them out (`kubelet_volume`) and mounted at their mountPaths, the
    ServiceAccount's token, ca.crt and namespace at /var/run/secrets/kubernetes.io/serviceaccount
    with KUBERNETES_SERVICE_HOST/PORT (so the binary takes its in-cluster config), in `netns`
    (where 127.0.0.1:<apiserver port> reaches the apiserver). Ready when the rendered readiness
    probe passes, polled every periodSeconds; stopped as the kubelet stops a container: SIGTERM,
    SIGKILL after terminationGracePeriodSeconds. `process` is the `podman run` client, which
    lives as long as the container and writes its output to the log."""

    def __init__(self, name: str, run_dir: pathlib.Path, identity: "ChartIdentity", cluster: ControlPlane,
                 netns: NetworkNamespace, image: str):
        if not image:
            raise RuntimeError("no image to run: scripts/e2e builds it with scripts/image and sets STS_GUARD_IMAGE")
        docs = identity.docs
        self.pod = one(docs, "Deployment")["spec"]["template"]["spec"]
        (self.spec,) = self.pod["containers"]
        self.ports = {p["name"]: p["containerPort"] for p in self.spec["ports"]}
        service = one(docs, "Service")
        port = self.ports[service["spec"]["ports"][0]["targetPort"]]
        self.pod_dir = run_dir / name
        self.volumes: dict[str, pathlib.Path] = {}
        for volume in self.pod["volumes"]:
            self.volumes[volume["name"]] = kubelet_volume(self.pod_dir / "volumes" / volume["name"],
                                                          self._volume_files(docs + identity.mounted, volume))
        tls_volume = next(m["name"] for m in self.spec["volumeMounts"]
                          if self._mounted_file(m, "--tls-cert="))
        super().__init__(name, run_dir, identity, self.volumes[tls_volume], netns.address, port, netns=netns,
                         server_name=f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc")
        self.image = image
        self.cluster = cluster
        self.container_name = f"sts-guard-e2e-{os.getpid()}-{name}"
        self.grace_seconds = self.pod.get("terminationGracePeriodSeconds", 30)
        self.readiness = self.spec["readinessProbe"]
        self.account_dir = None
        if self.pod.get("automountServiceAccountToken", True):
            account = self.pod["serviceAccountName"]
            token = cluster_token(identity, account)
            self.account_dir = kubelet_volume(self.pod_dir / "serviceaccount", {
                "token": token.encode(), "ca.crt": cluster.pki.ca.read_bytes(),
                "namespace": RELEASE_NAMESPACE.encode()})

    def _mounted_file(self, mount: dict, flag: str) -> bool:
        """Whether the rendered arg `flag` (e.g. --tls-cert=) names a file under `mount`."""
        return any(a.startswith(flag) and a[len(flag):].startswith(mount["mountPath"].rstrip("/") + "/")
                   for a in self.spec.get("args", []))

    @staticmethod
    def _volume_files(docs: list[dict], volume: dict) -> dict[str, bytes]:
        if "secret" in volume:
            name = volume["secret"]["secretName"]
            secret = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name)
            return {k: base64.b64decode(v) for k, v in secret.get("data", {}).items()}
        if "configMap" in volume:
            name = volume["configMap"]["name"]
            config_map = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name)
            return {k: v.encode() for k, v in config_map.get("data", {}).items()}
        raise RuntimeError(f"volume {volume['name']}: the e2e lays out secret and configMap volumes only: {volume}")

    def podman_argv(self) -> list[str]:
        context = {**self.pod.get("securityContext", {}), **self.spec.get("securityContext", {})}
        user, group = context.get("runAsUser"), context.get("runAsGroup")
        if context.get("runAsNonRoot"):
            # The kubelet refuses to start a container that would run as root.
            assert user not in (None, 0), f"runAsNonRoot with runAsUser {user}"
        nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        argv = ["podman", "--runtime", "runc", "run", "--rm", "--pull=never", "--name", self.container_name,
                "--label", f"{CONTAINER_LABEL}={self.pod_dir.parent}", "--log-driver=none",
                "--network", f"ns:/run/netns/{self.netns.name}",
                # podman's default rlimits are refused on these machines (../shared/IMAGE.md): open
                # files up to the host's hard limit; processes (threads, per uid) 4,096, far above
                # what the server starts (larger values are refused here too: "error setting
                # rlimit type 6").
                "--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]
        if user is not None:
            argv += ["--user", f"{user}:{group}" if group is not None else str(user)]
        if context.get("readOnlyRootFilesystem"):
            argv += ["--read-only", "--read-only-tmpfs=false"]
        if context.get("allowPrivilegeEscalation") is False:
            argv += ["--security-opt", "no-new-privileges"]
        for capability in context.get("capabilities", {}).get("drop", []):
            argv += ["--cap-drop", capability]
        for capability in context.get("capabilities", {}).get("add", []):
            argv += ["--cap-add", capability]
        seccomp = context.get("seccompProfile", {}).get("type", "RuntimeDefault")
        if seccomp == "Unconfined":
            argv += ["--security-opt", "seccomp=unconfined"]
        elif seccomp != "RuntimeDefault":
            raise RuntimeError(f"seccompProfile {seccomp}: the e2e runs RuntimeDefault or Unconfined")
        memory = self.spec.get("resources", {}).get("limits", {}).get("memory")
        if memory:
            argv += ["--memory", _memory_flag(memory)]
        for variable in self.spec.get("env", []):
            if "value" not in variable:
                raise RuntimeError(f"env {variable['name']}: the e2e passes literal values only: {variable}")
            argv += ["--env", f"{variable['name']}={variable['value']}"]
        for mount in self.spec.get("volumeMounts", []):
            mode = "ro" if mount.get("readOnly") else "rw"
            argv += ["--volume", f"{self.volumes[mount['name']]}:{mount['mountPath']}:{mode}"]
        if self.account_dir:
            # What the kubelet gives every pod with automountServiceAccountToken.
            argv += ["--volume", f"{self.account_dir}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
                     "--env", "KUBERNETES_SERVICE_HOST=127.0.0.1",
                     "--env", f"KUBERNETES_SERVICE_PORT={self.cluster.apiserver_port}"]
        argv += ["--env", f"RUST_LOG={os.environ.get('RUST_LOG', 'info')}"]
        if self.spec.get("command"):
            argv += ["--entrypoint", json.dumps(self.spec["command"])]
        return [*argv, self.image, *self.spec.get("args", [])]

    def start(self):
        self.process = Process(self.name, self.podman_argv(), self.log)
        wait_until(f"{self.name} readiness probe", self.ready, timeout=60,
                   interval=self.readiness.get("periodSeconds", 10))

    def ready(self) -> bool:
        assert self.process is not None
        self.process.check_running()
        return kubelet_probe(self.readiness, self.address, self.ports)

    @property
    def admin_url(self) -> str:
        return f"https://{self.address}:{self.ports['admin']}"

    def metrics(self) -> str:
        """From the admin port, which asks no client certificate (tls.clientAuth)."""
        status, body = https_get(f"{self.admin_url}/metrics", self.ca, server_name=self.server_name)
        assert status == 200, body
        return body

    def inspect(self) -> dict:
        result = subprocess.run(["podman", "container", "inspect", self.container_name],
                                capture_output=True, text=True, check=True)
        return json.loads(result.stdout)[0]

    def terminate(self):
        """SIGTERM to the container's process, as the kubelet's first step of a pod deletion."""
        subprocess.run(["podman", "kill", "--signal", "TERM", self.container_name],
                       capture_output=True, text=True, check=True)

    def wait_exit(self, timeout: float) -> int:
        """The container's exit code, once it has exited (within `timeout`)."""
        assert self.process is not None
        return self.process.popen.wait(timeout)

    def stop(self):
        if self.process is None:
            return
        # SIGTERM, and SIGKILL after the grace period: the kubelet's stop of a container.
        subprocess.run(["podman", "stop", "--time", str(self.grace_seconds), self.container_name],
                       capture_output=True, timeout=self.grace_seconds + 30)
        try:
            self.process.stop()
        finally:
            subprocess.run(["podman", "rm", "--force", "--ignore", self.container_name], capture_output=True)
            self.process = None


def cluster_token(identity: "ChartIdentity", account: str) -> str:
    """A token of the chart's ServiceAccount, as the kubelet's projected volume carries one."""
    expected = identity.account.rsplit(":", 1)[1]
    assert account == expected, f"the Deployment runs as {account}, the chart's ServiceAccount is {expected}"
    return identity.token


@dataclass
class ChartIdentity:
    """What the chart gives sts-guard: its ServiceAccount (bound to the chart's ClusterRole, not
    admin) as a kubeconfig with that account's token, the config file from its ConfigMap, and the
    rendered objects."""

    docs: list[dict]
    account: str
    kubeconfig: pathlib.Path
    config_file: pathlib.Path
    token: str
    # Objects of the cluster's the Deployment mounts besides the chart's own (the client CA).
    mounted: list[dict] = field(default_factory=list)


CLIENT_CA_CONFIG_MAP = "sts-guard-client-ca"


def chart_identity(cluster: ControlPlane, kubectl: Kubectl, run_dir: pathlib.Path) -> ChartIdentity:
    """The chart as rendered for this control plane: with mutual TLS (`tls.clientAuth`) when
    kube-apiserver presents a client certificate to the chart's Service, the CA that signs it in
    the ConfigMap the chart's Deployment mounts (created in the cluster and among the docs, so
    the container's volume is laid out from it)."""
    values = {}
    client_ca = None
    if cluster.webhook_client_hosts:
        values = {"tls": {"clientAuth": {"enabled": True, "caConfigMap": CLIENT_CA_CONFIG_MAP,
                                         "names": [cluster.WEBHOOK_CLIENT_NAME]}}}
        client_ca = {"apiVersion": "v1", "kind": "ConfigMap",
                     "metadata": {"name": CLIENT_CA_CONFIG_MAP, "namespace": RELEASE_NAMESPACE},
                     "data": {"ca.crt": cluster.pki.ca.read_text()}}
    docs = render_chart(values)
    kubectl.ok("create", "namespace", RELEASE_NAMESPACE)
    rbac = [d for d in docs if d["kind"] in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding")]
    assert {d["kind"] for d in rbac} == {"ServiceAccount", "ClusterRole", "ClusterRoleBinding"}
    kubectl.ok("apply", "-f", "-", input=dump_all(rbac))
    if client_ca:
        kubectl.ok("apply", "-f", "-", input=dump_all([client_ca]))
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    token = kubectl.ok("create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=6h").stdout.strip()
    config_file = run_dir / "config.yaml"
    config_file.write_text(one(docs, "ConfigMap")["data"]["config.yaml"])
    return ChartIdentity(
        docs=docs,
        account=f"system:serviceaccount:{RELEASE_NAMESPACE}:{account}",
        kubeconfig=kubeconfig(run_dir / "sts-guard.kubeconfig", cluster.server, cluster.pki.ca, token=token),
        config_file=config_file,
        token=token,
        mounted=[client_ca] if client_ca else [],
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
                   cluster: ControlPlane, image: str = STS_GUARD_IMAGE) -> ContainerStsGuard:
    """sts-guard as the chart deploys it: the image scripts/image built, run as the chart's
    Deployment runs it (`ContainerStsGuard`), behind the chart's Service, with the certificate
    the chart generated, registered through the chart's webhook configurations exactly as
    rendered. kube-apiserver calls it over HTTP/1.1, as it calls every Service-backed webhook.
    The container runs in `netns` (a Service endpoint may not be a loopback address) and
    reaches the apiserver through a relay of the apiserver's loopback port."""
    netns.forward_loopback(cluster.apiserver_port)
    server = ContainerStsGuard("sts-guard-service", run_dir, identity, cluster, netns, image)
    service = one(identity.docs, "Service")
    server.service_objects = [service, endpoint_slice(service, netns.address, server.port)]
    server.expected_http = "HTTP/1.1"
    server.webhook_configurations = webhook_configurations(identity.docs)
    return server


def dump_all(objects) -> str:
    return "\n---\n".join(yaml.safe_dump(o) for o in objects)

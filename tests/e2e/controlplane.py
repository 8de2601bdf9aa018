"""A real Kubernetes control plane on loopback: etcd, kube-apiserver and kube-controller-manager
built from their Go modules (tests/e2e/build-control-plane.sh), with certificates made here.

Every process is started in its own process group with a parent-death signal and stopped by
PID (TERM, then KILL), so nothing outlives the run, also when a test fails or the runner is
killed. Logs go to files in the run directory; `tail_logs()` shows them after a failure.
"""

from __future__ import annotations

import base64
import ctypes
import datetime
import ipaddress
import http.client
import json
import os
import pathlib
import random
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent():
    """Runs in the child before exec: a SIGKILLed test runner takes its processes with it."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(what: str, condition, timeout: float = 60.0, interval: float = 0.2):
    """Polls `condition` until it returns a true value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # noqa: BLE001 - reported if the deadline passes
            last_error = error
        time.sleep(interval)
    raise TimeoutError(f"{what}: not true after {timeout:.0f} s (last error: {last_error!r})")


# --- certificates ---------------------------------------------------------------------------


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class Pki:
    """A CA, the apiserver's serving certificate, client certificates and the service-account
    signing key, written as PEM files under `directory`."""

    def __init__(self, directory: pathlib.Path):
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sts-guard-e2e-ca")])
        self._ca_cert = (
            self._builder(name, name, self._ca_key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca = self._write("ca.crt", self._ca_cert.public_bytes(serialization.Encoding.PEM))
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.sa_key = self._write("sa.key", _pem_key(sa_key))
        self.sa_pub = self._write(
            "sa.pub",
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        )

    @staticmethod
    def _builder(subject, issuer, public_key):
        now = datetime.datetime.now(datetime.timezone.utc)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def _write(self, name: str, data: bytes) -> pathlib.Path:
        path = self.directory / name
        path.write_bytes(data)
        os.chmod(path, 0o600)
        return path

    def issue(self, name: str, common_name: str, *, groups=(), hosts=(), server=False):
        """Writes NAME.crt/NAME.key signed by the CA; returns (cert path, key path)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
        attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        builder = self._builder(x509.Name(attributes), self._ca_cert.subject, key.public_key())
        usage = x509.ExtendedKeyUsageOID.SERVER_AUTH if server else x509.ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        if hosts:
            names = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return (
            self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self._write(f"{name}.key", _pem_key(key)),
        )


def kubeconfig(path: pathlib.Path, server: str, ca: pathlib.Path, *, cert=None, key=None, token=None):
    """Writes a kubeconfig (JSON is YAML) for one user and returns its path."""
    user = {"token": token} if token else {"client-certificate": str(cert), "client-key": str(key)}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "e2e", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "e2e", "user": user}],
        "contexts": [{"name": "e2e", "context": {"cluster": "e2e", "user": "e2e"}}],
        "current-context": "e2e",
    }
    path.write_text(json.dumps(config, indent=2))
    os.chmod(path, 0o600)
    return path


# --- processes ------------------------------------------------------------------------------


class Process:
    """One child process, its log file, and a stop by PID that never leaves it behind."""

    def __init__(self, name: str, argv: list[str], log: pathlib.Path, env=None):
        self.name = name
        self.argv = argv
        self.log = log
        self._log_file = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        self.pid = self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def check_running(self):
        if not self.running():
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail(self.log)}")

    def stop(self, timeout: float = 15.0):
        if self.running():
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
                try:
                    os.killpg(self.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.popen.wait(wait)
                    break
                except subprocess.TimeoutExpired:
                    continue
        # The process group may hold children of the process (none expected): end them too.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self._log_file.close()


def tail(path: pathlib.Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"({path}: {error})"


def https_get(url: str, ca: pathlib.Path, cert=None, key=None, timeout: float = 5.0, server_name=None):
    """GET over TLS verified against `ca` (as `server_name` when given, else the URL's host);
    returns (status, body text)."""
    context = ssl.create_default_context(cafile=str(ca))
    if cert:
        context.load_cert_chain(str(cert), str(key))
    if server_name:
        parsed = urllib.parse.urlsplit(url)
        with socket.create_connection((parsed.hostname, parsed.port), timeout=timeout) as raw:
            connection = http.client.HTTPSConnection(server_name, parsed.port, context=context, timeout=timeout)
            connection.sock = context.wrap_socket(raw, server_hostname=server_name)
            connection.request("GET", parsed.path)
            response = connection.getresponse()
            return response.status, response.read().decode(errors="replace")
    try:
        with urllib.request.urlopen(url, context=context, timeout=timeout) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode(errors="replace")


# --- the control plane ----------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, random free ports."""

    # The identity kube-apiserver presents to webhooks that ask for a client certificate.
    WEBHOOK_CLIENT_NAME = "kube-apiserver"

    def __init__(self, bin_dir: pathlib.Path, run_dir: pathlib.Path, webhook_client_hosts: tuple[str, ...] = ()):
        """`webhook_client_hosts`: the webhook hosts (`<service>.<namespace>.svc`) kube-apiserver
        presents a client certificate to (CN WEBHOOK_CLIENT_NAME, signed by the run's CA), as its
        admission control config says for each host with a `kubeConfigFile` user."""
        self.bin_dir = bin_dir
        self.run_dir = run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(run_dir / "pki")
        self.etcd_port = free_port()
        self.apiserver_port = free_port()
        self.server = f"https://127.0.0.1:{self.apiserver_port}"
        serving = self.pki.issue(
            "apiserver",
            "kube-apiserver",
            hosts=["127.0.0.1", "localhost", "10.0.0.1", "kubernetes", "kubernetes.default",
                   "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
            server=True,
        )
        self.apiserver_cert, self.apiserver_key = serving
        self.admin_cert, self.admin_key = self.pki.issue("admin", "e2e-admin", groups=["system:masters"])
        kcm_cert, kcm_key = self.pki.issue("kcm", "system:kube-controller-manager")
        self.admin_kubeconfig = kubeconfig(
            run_dir / "admin.kubeconfig", self.server, self.pki.ca, cert=self.admin_cert, key=self.admin_key
        )
        self.kcm_kubeconfig = kubeconfig(
            run_dir / "kcm.kubeconfig", self.server, self.pki.ca, cert=kcm_cert, key=kcm_key
        )
        self.webhook_client_hosts = tuple(webhook_client_hosts)
        self.admission_config = self._admission_config(run_dir) if webhook_client_hosts else None
        self.processes: dict[str, Process] = {}

    def _admission_config(self, run_dir: pathlib.Path) -> pathlib.Path:
        """An AdmissionConfiguration whose webhook plugins read a kubeconfig with one user per
        webhook host: the client certificate kube-apiserver presents to that host."""
        cert, key = self.pki.issue("webhook-client", self.WEBHOOK_CLIENT_NAME)
        self.webhook_client_cert, self.webhook_client_key = cert, key
        users = [{"name": host, "user": {"client-certificate": str(cert), "client-key": str(key)}}
                 for host in self.webhook_client_hosts]
        webhook_kubeconfig = run_dir / "admission-webhooks.kubeconfig"
        webhook_kubeconfig.write_text(json.dumps({"apiVersion": "v1", "kind": "Config", "users": users}, indent=2))
        plugin = {"apiVersion": "apiserver.config.k8s.io/v1", "kind": "WebhookAdmissionConfiguration",
                  "kubeConfigFile": str(webhook_kubeconfig)}
        config = run_dir / "admission-config.json"
        config.write_text(json.dumps({
            "apiVersion": "apiserver.config.k8s.io/v1", "kind": "AdmissionConfiguration",
            "plugins": [{"name": name, "configuration": plugin}
                        for name in ("ValidatingAdmissionWebhook", "MutatingAdmissionWebhook")],
        }, indent=2))
        return config

    def binary(self, name: str) -> str:
        return str(self.bin_dir / name)

    # Each start_* leaves the process in self.processes, so stop() finds it whatever happens next.
    def start(self):
        self.start_etcd()
        self.start_apiserver()
        self.start_controller_manager()

    def start_etcd(self):
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{free_port()}"
        argv = [
            self.binary("etcd"), "--name=e2e", f"--data-dir={self.run_dir / 'etcd'}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=e2e={peer}",
            "--unsafe-no-fsync", "--log-level=warn",
        ]
        self._start("etcd", argv)
        wait_until("etcd /health", lambda: self._etcd_healthy(client), timeout=60)

    def _etcd_healthy(self, client: str) -> bool:
        self.processes["etcd"].check_running()
        with urllib.request.urlopen(f"{client}/health", timeout=2) as response:
            return json.load(response).get("health") == "true"

    def start_apiserver(self):
        argv = [
            self.binary("kube-apiserver"),
            "--advertise-address=127.0.0.1", "--bind-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            f"--cert-dir={self.run_dir / 'apiserver-certs'}",
            f"--tls-cert-file={self.apiserver_cert}", f"--tls-private-key-file={self.apiserver_key}",
            f"--client-ca-file={self.pki.ca}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={self.pki.sa_pub}",
            f"--service-account-signing-key-file={self.pki.sa_key}",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            "--authorization-mode=Node,RBAC",
            # NodeRestriction limits node identities as in a real cluster (scenario 6 acts as one).
            "--enable-admission-plugins=NodeRestriction",
            *([f"--admission-control-config-file={self.admission_config}"] if self.admission_config else []),
            "--endpoint-reconciler-type=none",
            # No kube-proxy here: reach a Service-backed webhook at an endpoint of its Service.
            "--enable-aggregator-routing=true",
            "--v=1",
        ]
        self._start("kube-apiserver", argv)
        wait_until("kube-apiserver /readyz", self._apiserver_ready, timeout=120)

    def _apiserver_ready(self) -> bool:
        self.processes["kube-apiserver"].check_running()
        status, _ = https_get(
            f"{self.server}/readyz", self.pki.ca, self.admin_cert, self.admin_key, timeout=3
        )
        return status == 200

    def restart_apiserver(self):
        """Stops kube-apiserver and starts it again on the same port, over the same etcd."""
        self.processes.pop("kube-apiserver").stop()
        self.start_apiserver()

    def start_controller_manager(self):
        argv = [
            self.binary("kube-controller-manager"),
            f"--kubeconfig={self.kcm_kubeconfig}",
            # What StatefulSets need: their controller, garbage collection of owned objects, the
            # namespaces' default ServiceAccounts with their tokens (pods need both), and the
            # namespace controller, which empties and removes deleted namespaces.
            "--controllers=statefulset-controller,garbage-collector-controller,"
            "serviceaccount-controller,serviceaccount-token-controller,namespace-controller",
            f"--service-account-private-key-file={self.pki.sa_key}",
            f"--root-ca-file={self.pki.ca}",
            "--use-service-account-credentials=true",
            # A large cluster's request rates (the defaults are 20/s, burst 30), so that a
            # scale-up calls the webhooks concurrently as a busy control plane does.
            "--kube-api-qps=200", "--kube-api-burst=400",
            "--leader-elect=false",
            "--secure-port=0",
            "--v=1",
        ]
        self._start("kube-controller-manager", argv)

    def _start(self, name: str, argv: list[str], env=None):
        self.processes[name] = Process(name, argv, self.run_dir / f"{name}.log", env=env)

    def stop(self):
        # Reverse order: clients of the apiserver first, etcd last.
        for name in reversed(list(self.processes)):
            self.processes.pop(name).stop()

    def tail_logs(self) -> str:
        return "\n".join(
            f"--- {log.name} ---\n{tail(log)}" for log in sorted(self.run_dir.glob("*.log"))
        )


_CLONE_NEWNET = 0x40000000


class NetworkNamespace:
    """A network namespace of the run's own, joined to the root namespace by a veth pair.

    It gives a webhook server an address kube-apiserver reaches the way it reaches a webhook pod
    through its Service: EndpointSlices reject loopback addresses, and only a Service-backed
    webhook is called over HTTP/1.1 with one connection per concurrent request (a loopback URL
    gets HTTP/2). Needs root (CAP_NET_ADMIN), as CI has.
    """

    def __init__(self, tag: str):
        self.name = f"sts-guard-e2e-{tag}"
        # A /30 no other namespace of this machine uses (a run may have two, e.g. test_image.py).
        used = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True).stdout
        subnet = random.choice([n for n in range(1, 250) if f" 10.213.{n}." not in used])
        self.host_address = f"10.213.{subnet}.1"
        self.address = f"10.213.{subnet}.2"
        self._host_if, self._inner_if = f"sge{tag}h"[:15], f"sge{tag}n"[:15]
        self._listeners: list[socket.socket] = []
        self._run("ip", "netns", "add", self.name)
        try:
            self._run("ip", "link", "add", self._host_if, "type", "veth", "peer", "name", self._inner_if)
            self._run("ip", "link", "set", self._inner_if, "netns", self.name)
            self._run("ip", "addr", "add", f"{self.host_address}/30", "dev", self._host_if)
            self._run("ip", "link", "set", self._host_if, "up")
            for command in (["addr", "add", f"{self.address}/30", "dev", self._inner_if],
                            ["link", "set", self._inner_if, "up"], ["link", "set", "lo", "up"]):
                self._run("ip", "netns", "exec", self.name, "ip", *command)
        except BaseException:
            self.delete()
            raise

    @staticmethod
    def _run(*argv: str):
        completed = subprocess.run(argv, capture_output=True, text=True)
        if completed.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)}: {completed.stderr.strip()} (the e2e run needs root for its network namespace)")

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside the namespace (ip netns exec execs it: the PID is the program's)."""
        return ["ip", "netns", "exec", self.name, *argv]

    def forward_loopback(self, port: int):
        """Makes 127.0.0.1:`port` inside the namespace reach 127.0.0.1:`port` of the root
        namespace (a TCP relay in this process), so a server in the namespace can use the
        apiserver's loopback address and certificate."""
        listener = self._listen_inside("127.0.0.1", port)
        self._listeners.append(listener)
        threading.Thread(target=self._relay, args=(listener, port), daemon=True).start()

    def _listen_inside(self, host: str, port: int) -> socket.socket:
        # setns() moves only the calling thread; a socket keeps the namespace it was made in.
        made: dict = {}

        def enter_and_listen():
            try:
                fd = os.open(f"/var/run/netns/{self.name}", os.O_RDONLY)
                try:
                    if _libc.setns(fd, _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), "setns")
                finally:
                    os.close(fd)
                made["socket"] = socket.create_server((host, port))
            except BaseException as error:  # noqa: BLE001 - re-raised in the caller
                made["error"] = error

        thread = threading.Thread(target=enter_and_listen)
        thread.start()
        thread.join()
        if "error" in made:
            raise made["error"]
        return made["socket"]

    @staticmethod
    def _relay(listener: socket.socket, port: int):
        def pump(source, sink):
            try:
                while data := source.recv(65536):
                    sink.sendall(data)
                sink.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        while True:
            try:
                inside, _ = listener.accept()
            except OSError:
                return  # listener closed
            try:
                outside = socket.create_connection(("127.0.0.1", port), timeout=5)
                outside.settimeout(None)
            except OSError:
                inside.close()
                continue
            for source, sink in ((inside, outside), (outside, inside)):
                threading.Thread(target=pump, args=(source, sink), daemon=True).start()

    def delete(self):
        for listener in self._listeners:
            listener.close()
        subprocess.run(["ip", "link", "del", self._host_if], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)


def b64(path: pathlib.Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()

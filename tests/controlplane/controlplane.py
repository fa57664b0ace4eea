#!/usr/bin/env python3
"""A real Kubernetes control plane on loopback, for the tests and for trying tandem by hand.

etcd, kube-apiserver and kube-controller-manager, built from the Kubernetes Go module by
build.sh (cached outside the clone), started on free 127.0.0.1 ports the way envtest starts
them for Go operators: client-certificate auth, RBAC, a self-generated serving certificate
and service-account key, the controller-manager with per-controller credentials (so
ServiceAccounts, tokens, ReplicaSets, Jobs and garbage collection work). There is no
scheduler, kubelet or kube-proxy: pods are stored and stay Pending, and nothing ever
dials a ClusterIP, so every webhook the tests register points at 127.0.0.1 by
`clientConfig.url`.

As a library (the pytest fixture in tests/cluster/conftest.py):

    with ControlPlane.start(workdir) as cp:
        cp.kubectl("get", "ns")
        cp.restart_apiserver()

From the command line, to try tandem against it by hand:

    python3 tests/controlplane/controlplane.py up      # prints KUBECONFIG=..., Ctrl-C stops it

Every process is started in its own process group and stopped by its PID (SIGTERM, then
SIGKILL) when the block ends, pass or fail; the logs stay in the work directory.
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

HERE = Path(__file__).resolve().parent

# Components that never need a scheduler, a cloud or a node.
CONTROLLERS = "*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle,-service-lb-controller,-node-route-controller,-persistentvolume-binder,-attachdetach,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner"


def build(version: str | None = None) -> Path:
    """The directory holding the four binaries of `version` (default: go.mod's release)."""
    env = dict(os.environ)
    if version:
        env["TANDEM_KUBE_VERSION"] = version
    out = subprocess.run(
        ["bash", str(HERE / "build.sh")], env=env, check=True, stdout=subprocess.PIPE, text=True
    ).stdout
    return Path(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- certificates ----------------------------------------------------------------------


@dataclass
class CA:
    """A CA that signs the API server's serving certificate and its clients'."""

    key: Any
    cert: Any

    @classmethod
    def new(cls, name: str) -> "CA":
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert)

    def issue(self, common_name: str, *, orgs: Iterable[str] = (), dns: Iterable[str] = (), ips: Iterable[str] = (), days: float = 2) -> tuple[bytes, bytes]:
        """A leaf certificate and its key, PEM. With dns/ips: a server certificate."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        names = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs]
        names.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
        now = datetime.datetime.now(datetime.timezone.utc)
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(names))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=days))
        )
        sans = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
            usage = [ExtendedKeyUsageOID.SERVER_AUTH]
        else:
            usage = [ExtendedKeyUsageOID.CLIENT_AUTH]
        builder = builder.add_extension(x509.ExtendedKeyUsage(usage), critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        return (
            cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
        )

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.cert.public_bytes(serialization.Encoding.PEM)


def write(path: Path, data: bytes | str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    path.chmod(mode)
    return path


def kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tandem-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": user, "user": {"client-certificate": str(cert), "client-key": str(key)}}],
        "contexts": [{"name": "tandem-test", "context": {"cluster": "tandem-test", "user": user}}],
        "current-context": "tandem-test",
    }
    return write(path, json.dumps(config, indent=2))


def token_kubeconfig(path: Path, server: str, ca: Path, token: str, namespace: str = "default") -> Path:
    """A kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "tandem-test", "cluster": {"server": server, "certificate-authority": str(ca)}}],
        "users": [{"name": "token", "user": {"token": token}}],
        "contexts": [{"name": "tandem-test", "context": {"cluster": "tandem-test", "user": "token", "namespace": namespace}}],
        "current-context": "tandem-test",
    }
    return write(path, json.dumps(config, indent=2))


# --- processes -------------------------------------------------------------------------


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen | None = None

    def start(self, env: dict[str, str] | None = None) -> "Process":
        handle = open(self.log, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=env
        )
        handle.close()
        return self

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, grace: float = 10) -> None:
        """SIGTERM to its process group, SIGKILL after `grace` seconds."""
        if self.popen is None or self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.popen.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.popen.wait(timeout=wait)
                return
            except subprocess.TimeoutExpired:
                continue

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return ""


class StartError(RuntimeError):
    pass


class KubectlError(RuntimeError):
    """kubectl failed; the message has its arguments and what it printed on stderr."""


@dataclass
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, in `workdir`."""

    workdir: Path
    bin: Path
    etcd_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    apiserver_port: int = field(default_factory=free_port)
    processes: dict[str, Process] = field(default_factory=dict)

    # -- layout --

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki(self) -> Path:
        return self.workdir / "pki"

    @property
    def ca_file(self) -> Path:
        return self.pki / "ca.crt"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def kubectl_bin(self) -> Path:
        return self.bin / "kubectl"

    @property
    def version(self) -> str:
        out = subprocess.run([str(self.kubectl_bin), "version", "--client", "-o", "json"], capture_output=True, text=True, check=True)
        return json.loads(out.stdout)["clientVersion"]["gitVersion"]

    # -- life cycle --

    @classmethod
    def start(cls, workdir: Path, bin_dir: Path | None = None, version: str | None = None) -> "ControlPlane":
        cp = cls(workdir=Path(workdir), bin=bin_dir or build(version))
        try:
            cp._pki()
            cp._start_etcd()
            cp._start_apiserver()
            cp._start_controller_manager()
            cp.wait_for_default_serviceaccount()
        except BaseException:
            cp.stop()
            raise
        return cp

    def __enter__(self) -> "ControlPlane":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def stop(self) -> None:
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            if name in self.processes:
                self.processes[name].stop()

    def logs(self) -> dict[str, Path]:
        return {name: p.log for name, p in self.processes.items()}

    def _pki(self) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.workdir.mkdir(parents=True, exist_ok=True)
        ca = CA.new("tandem-test-ca")
        self.ca = ca
        write(self.ca_file, ca.pem, 0o644)
        write(self.pki / "ca.key", ca.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        cert, key = ca.issue("kube-apiserver", dns=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"], ips=["127.0.0.1", "10.0.0.1"])
        write(self.pki / "apiserver.crt", cert, 0o644)
        write(self.pki / "apiserver.key", key)
        sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        write(self.pki / "sa.key", sa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        write(self.pki / "sa.pub", sa.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), 0o644)
        for user, orgs, kubeconfig_path in (
            ("kubernetes-admin", ["system:masters"], self.admin_kubeconfig),
            ("system:kube-controller-manager", [], self.workdir / "controller-manager.kubeconfig"),
        ):
            cert, key = ca.issue(user, orgs=orgs)
            stem = user.replace(":", "-")
            kubeconfig(
                kubeconfig_path,
                self.url,
                self.ca_file,
                write(self.pki / f"{stem}.crt", cert, 0o644),
                write(self.pki / f"{stem}.key", key),
                user,
            )

    def _spawn(self, name: str, argv: list[str]) -> Process:
        log = self.workdir / f"{name}.log"
        process = Process(name, argv, log).start()
        self.processes[name] = process
        return process

    def _start_etcd(self) -> None:
        client = f"http://127.0.0.1:{self.etcd_port}"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        self._spawn(
            "etcd",
            [
                str(self.bin / "etcd"),
                "--name=tandem-test",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=tandem-test={peer}",
                "--listen-metrics-urls=",
                # A test cluster's data is thrown away: no fsync.
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )
        self._wait(lambda: _http_ok(f"{client}/health"), "etcd", 60)

    def _apiserver_argv(self) -> list[str]:
        pki = self.pki
        return [
            str(self.bin / "kube-apiserver"),
            f"--etcd-servers=http://127.0.0.1:{self.etcd_port}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            f"--cert-dir={self.workdir / 'apiserver-certs'}",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={self.ca_file}",
            "--authorization-mode=Node,RBAC",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--allow-privileged=true",
            # No kubelet exists to answer logs/exec, and nothing may be dialled beyond loopback.
            "--enable-aggregator-routing=false",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            "--v=1",
        ]

    def _start_apiserver(self) -> None:
        self._spawn("kube-apiserver", self._apiserver_argv())
        self._wait(self._readyz, "kube-apiserver", 120)

    def restart_apiserver(self, down_for: float = 0) -> None:
        """Stop the API server and start it again on the same port (etcd keeps the data)."""
        self.processes["kube-apiserver"].stop()
        time.sleep(down_for)
        self._start_apiserver()

    def _start_controller_manager(self) -> None:
        pki = self.pki
        kc = self.workdir / "controller-manager.kubeconfig"
        self._spawn(
            "kube-controller-manager",
            [
                str(self.bin / "kube-controller-manager"),
                f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}",
                f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={self.ca_file}",
                f"--cluster-signing-cert-file={self.ca_file}",
                f"--cluster-signing-key-file={pki / 'ca.key'}",
                f"--controllers={CONTROLLERS}",
                "--leader-elect=false",
                # Quick to notice new objects in tests.
                "--concurrent-deployment-syncs=5",
                "--v=1",
            ],
        )

    def _readyz(self) -> bool:
        return _http_ok(f"{self.url}/readyz", ca=self.ca_file, cert=(self.pki / "kubernetes-admin.crt", self.pki / "kubernetes-admin.key"))

    def _wait(self, ready, name: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        process = self.processes.get(name)
        while time.monotonic() < deadline:
            if process is not None and not process.alive():
                raise StartError(f"{name} exited ({process.popen.returncode}); its log {process.log}:\n{process.tail()}")
            if ready():
                return
            time.sleep(0.2)
        raise StartError(f"{name} not ready within {timeout:.0f}s; its log {process.log if process else ''}:\n{process.tail() if process else ''}")

    def wait_for_default_serviceaccount(self, namespace: str = "default", timeout: float = 90) -> None:
        def ready() -> bool:
            return self.kubectl("get", "serviceaccount", "default", "-n", namespace, check=False).returncode == 0

        self._wait(ready, "kube-controller-manager", timeout)

    # -- using it --

    def kubectl(self, *args: str, input: str | bytes | None = None, check: bool = True, kubeconfig_path: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
        """kubectl against this control plane; stdout and stderr as text."""
        argv = [str(self.kubectl_bin), f"--kubeconfig={kubeconfig_path or self.admin_kubeconfig}", *args]
        if isinstance(input, bytes):
            input = input.decode()
        result = subprocess.run(argv, input=input, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise KubectlError(f"kubectl {' '.join(args)} exited {result.returncode}: {result.stderr.strip()}")
        return result

    def get(self, *args: str, **kw: Any) -> dict:
        """`kubectl get ... -o json`, parsed."""
        return json.loads(self.kubectl("get", *args, "-o", "json", **kw).stdout)

    def apply(self, *objects: dict, server_side: bool = True, **kw: Any) -> subprocess.CompletedProcess:
        doc = json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)})
        flags = ["--server-side", "--field-manager=tandem-tests", "--force-conflicts"] if server_side else []
        return self.kubectl("apply", *flags, "-f", "-", input=doc, **kw)

    def env(self) -> dict[str, str]:
        """The environment of a program that should reach this control plane as admin."""
        return {**os.environ, "KUBECONFIG": str(self.admin_kubeconfig)}


def _http_ok(url: str, ca: Path | None = None, cert: tuple[Path, Path] | None = None) -> bool:
    context = None
    if url.startswith("https"):
        context = ssl.create_default_context(cafile=str(ca) if ca else None)
        if cert:
            context.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except OSError:
        return False


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start a control plane and keep it running until Ctrl-C")
    up.add_argument("--dir", type=Path, help="work directory (default: a new temporary one)")
    up.add_argument("--version", help="Kubernetes release (default: go.mod's; another needs its k8s-<version>.mod)")
    sub.add_parser("build", help="build (or find in the cache) the binaries and print their directory")
    args = parser.parse_args()
    if args.command == "build":
        print(build())
        return 0
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="tandem-controlplane-"))

    # SIGTERM (kill, or the end of a backgrounded shell job, which ignores Ctrl-C) stops
    # everything the way Ctrl-C does.
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)
    with ControlPlane.start(workdir, version=args.version) as cp:
        print(f"control plane {cp.version} at {cp.url}")
        print(f"export KUBECONFIG={cp.admin_kubeconfig}")
        print(f"export PATH={cp.bin}:$PATH      # kubectl of the same release")
        print(f"logs: {workdir}/*.log; Ctrl-C (or SIGTERM) stops everything")
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())

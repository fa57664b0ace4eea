"""What the suite judged by a real control plane (tests/controlplane/) is made of: tandem
as a process on loopback, its serving certificate, the chart's webhook configuration
pointed at it, namespaces. The fixtures in conftest.py and the benchmarks in
benches/apiserver/ use them.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
for sub in ("controlplane", "chart", "validate"):
    sys.path.insert(0, str(ROOT / "tests" / sub))

import chartlib  # noqa: E402
import controlplane  # noqa: E402
from controlplane import CA, ControlPlane, Process, free_port, write  # noqa: E402

PREFIX = "tandem.dev"
RELEASE = chartlib.RELEASE
RELEASE_NAMESPACE = chartlib.NAMESPACE


def cargo_target() -> Path:
    return Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))


def build_tandem(profile: str = "debug") -> Path:
    """tandem's binary of `profile` (`cargo test` has built the debug one: a no-op then)."""
    flags = ["--release"] if profile == "release" else []
    subprocess.run(["cargo", "build", "--locked", "--offline", "--quiet", *flags, "--bin", "tandem"], cwd=ROOT, check=True)
    return cargo_target() / profile / "tandem"


class ServingCert:
    def __init__(self, directory: Path, ca: CA):
        self.dir = directory
        self.ca = ca
        self.ca_file = write(directory / "ca.crt", ca.pem, 0o644)
        self.rotate()

    @classmethod
    def new(cls, directory: Path) -> "ServingCert":
        return cls(directory, CA.new("tandem-webhook-test-ca"))

    def rotate(self) -> None:
        cert, key = self.ca.issue("tandem-webhook", dns=["localhost"], ips=["127.0.0.1"])
        self.cert = write(self.dir / "tls.crt", cert, 0o644)
        self.key = write(self.dir / "tls.key", key)

    @property
    def ca_bundle_pem(self) -> str:
        return self.ca.pem.decode()


class Tandem:
    """One `tandem serve` process on 127.0.0.1."""

    def __init__(self, binary: Path, tls: ServingCert, workdir: Path, args: list[str], env: dict[str, str] | None = None):
        self.port = free_port()
        self.metrics_port = free_port()
        workdir.mkdir(parents=True, exist_ok=True)
        argv = [
            str(binary),
            "serve",
            f"--addr=127.0.0.1:{self.port}",
            f"--metrics-addr=127.0.0.1:{self.metrics_port}",
            f"--tls-cert={tls.cert}",
            f"--tls-key={tls.key}",
            "--shutdown-delay=0s",
            "--shutdown-timeout=5s",
            "--workers=2",
            *args,
        ]
        self.process = Process(f"tandem-{self.port}", argv, workdir / f"tandem-{self.port}.log")
        self.env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "info"), **(env or {})}

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}/mutate"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}"

    def start(self, ready_timeout: float = 60) -> "Tandem":
        self.process.start(self.env)
        deadline = time.monotonic() + ready_timeout
        while time.monotonic() < deadline:
            if not self.process.alive():
                raise RuntimeError(f"tandem exited: {self.process.tail()}")
            if controlplane._http_ok(f"{self.metrics_url}/readyz"):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"tandem not ready in {ready_timeout}s: {self.process.tail()}")

    def stop(self) -> None:
        self.process.stop()

    def log(self) -> str:
        return self.process.log.read_text(errors="replace")

    def metrics(self) -> str:
        import urllib.request

        with urllib.request.urlopen(f"{self.metrics_url}/metrics", timeout=5) as response:
            return response.read().decode()


def render_chart(
    values: dict | None = None,
    *,
    cluster: ControlPlane | None = None,
    name: str = RELEASE,
    namespace: str = RELEASE_NAMESPACE,
    **opts: Any,
) -> chartlib.Rendered:
    """The chart rendered by the real Helm engine: offline, or (with `cluster`)
    cluster-aware against the real API server (`lookup`, Capabilities)."""
    from helm_python.chart import Chart
    from helm_python.config import Config

    with Chart.load(chartlib.CHART_DIR) as chart:
        if cluster is None:
            opts.setdefault("is_install", True)
            return chartlib.parse(chart.render(values=copy.deepcopy(values or {}), name=name, namespace=namespace, **opts))
        with Config(kubeconfig_path=cluster.admin_kubeconfig, namespace=namespace) as cfg:
            return chartlib.parse(cfg.render(chart, copy.deepcopy(values or {}), name=name, namespace=namespace, **opts))


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def url_values(server: Tandem, tls: ServingCert, extra: dict | None = None) -> dict:
    """Chart values for a webhook that calls `server` on loopback by URL."""
    base = {
        "webhook": {"url": server.url},
        "tls": {"mode": "secret", "secret": {"name": "tandem-dev-tls", "caBundle": tls.ca_bundle_pem}},
    }
    return deep_merge(base, extra or {})


class Webhooks:
    """Registers webhook configurations on the control plane and removes them again."""

    def __init__(self, cluster: ControlPlane, tls: ServingCert):
        self.cluster = cluster
        self.tls = tls
        self.names: set[str] = set()

    def chart(self, server: Tandem, values: dict | None = None, *, wait: bool = True) -> dict:
        """The chart's MutatingWebhookConfiguration, rendered with `values` and pointed at
        `server`, applied to the API server; returns the stored object."""
        config = render_chart(url_values(server, self.tls, values)).one("MutatingWebhookConfiguration")
        return self.apply(config, wait=wait)

    def apply(self, config: dict, *, wait: bool = True) -> dict:
        self.cluster.kubectl("delete", "mutatingwebhookconfiguration", config["metadata"]["name"], "--ignore-not-found", "--wait=true")
        self.cluster.apply(config)
        self.names.add(config["metadata"]["name"])
        if wait:
            self.wait_until_called(config)
        return self.cluster.get("mutatingwebhookconfiguration", config["metadata"]["name"])

    def wait_until_called(self, config: dict, timeout: float = 30) -> None:
        """The API server picks up webhook configurations from an informer: wait until a
        server-side dry-run create of an annotated pod comes back mutated."""
        namespace = "default"
        selector = (config["webhooks"][0].get("namespaceSelector") or {})
        for expr in selector.get("matchExpressions", []):
            if expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "In":
                namespace = expr["values"][0]
        pod = probe_pod()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            result = self.cluster.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
            if result.returncode == 0 and f"{PREFIX}/injected" in json.loads(result.stdout)["metadata"].get("annotations", {}):
                return
            time.sleep(0.2)
        raise AssertionError(f"the API server did not call webhook {config['metadata']['name']} within {timeout}s")

    def remove(self, name: str) -> None:
        self.cluster.kubectl("delete", "mutatingwebhookconfiguration", name, "--ignore-not-found", "--wait=true")
        self.names.discard(name)

    def remove_all(self) -> None:
        for name in list(self.names):
            self.remove(name)


def probe_pod() -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "probe-", "annotations": {f"{PREFIX}/log-shipper": "true"}},
        "spec": {"containers": [{"name": "app", "image": "busybox:1.36"}]},
    }


def make_namespace(cluster: ControlPlane, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None) -> str:
    """A new namespace, once the controller-manager has made its `default` ServiceAccount
    (until then the API server's ServiceAccount admission refuses every pod there)."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}, "annotations": annotations or {}}})
    cluster.wait_for_default_serviceaccount(name)
    return name


def to_yaml(*objects: dict) -> str:
    return yaml.safe_dump_all(objects, sort_keys=False)


def wait_for_pods(cluster, namespace: str, selector: str, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        pods = cluster.get("pods", "-n", namespace, "-l", selector)["items"]
        if len(pods) >= count:
            return pods
        time.sleep(0.3)
    events = cluster.kubectl("get", "events", "-n", namespace, check=False).stdout
    raise AssertionError(f"{count} pods {selector} not created within {timeout}s; events:\n{events}")

"""The arguments the chart gives the server start the real server.

The Deployment's command and arguments, with the policies ConfigMap and the TLS Secret the
chart renders written to the paths it mounts them at (moved under a temporary directory),
are run with the `tandem` binary the Rust tests built. The server must load them, serve
HTTPS for the Service's DNS name, answer a review through `/mutate`, and report ready on the
probe's path and port. `--kube` is left out: there is no API server here.
"""

import base64
import json
import re
import socket
import ssl
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
import yaml

from chartlib import NAMESPACE, RELEASE, ROOT, container, pod_of

POLICY = {
    "apiVersion": "tandem.dev/v1alpha1",
    "kind": "InjectionPolicy",
    "metadata": {"name": "everyone-logs"},
    "spec": {"defaults": {"log-shipper": {}}},
}


def tandem_binary() -> Path:
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / "tandem"
        if path.exists():
            return path
    pytest.fail("build tandem first (cargo build): tests/run.sh does")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_rendered_arguments_start_a_serving_ready_webhook(render, tmp_path):
    rendered = render({"policies": [POLICY], "tls": {"mode": "helm"}})
    deployment = rendered.one("Deployment")
    pod = pod_of(deployment)
    server = container(pod, "tandem")

    # What the kubelet would mount, under tmp_path instead of /.
    mounts = {m["name"]: m["mountPath"] for m in server["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    files = {}
    secret = rendered.one("Secret")
    for key, value in secret["data"].items():
        files[Path(mounts[_volume_of(volumes, secret=secret["metadata"]["name"])]) / key] = base64.b64decode(value)
    config_map = next(c for c in rendered.all("ConfigMap") if "policies" in c["metadata"]["name"])
    for key, value in config_map["data"].items():
        files[Path(mounts[_volume_of(volumes, config_map=config_map["metadata"]["name"])]) / key] = value.encode()
    for path, content in files.items():
        target = tmp_path / path.relative_to("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(content)

    webhook_port, metrics_port = free_port(), free_port()
    args = []
    for arg in server["args"]:
        if arg == "--kube":
            continue
        if arg.startswith("--addr="):
            arg = f"--addr=127.0.0.1:{webhook_port}"
        elif arg.startswith("--metrics-addr="):
            arg = f"--metrics-addr=127.0.0.1:{metrics_port}"
        else:
            arg = re.sub(r"=(/etc/[^ ]+)", lambda m: "=" + str(tmp_path / m.group(1).lstrip("/")), arg)
        args.append(arg)
    assert server["command"] == ["tandem"]
    process = subprocess.Popen([str(tandem_binary()), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    try:
        # The probe's port is the metrics listener (test_chart_deployment checks the number).
        probe = server["readinessProbe"]["httpGet"]
        ready = _wait(f"http://127.0.0.1:{metrics_port}{probe['path']}")
        assert ready == 200, process.stdout.read() if process.poll() is not None else "not ready"

        service = rendered.one("Service")
        name = f"{service['metadata']['name']}.{NAMESPACE}.svc"
        context = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["ca.crt"]).decode())
        webhook = rendered.one("MutatingWebhookConfiguration")["webhooks"][0]
        path = webhook["clientConfig"]["service"]["path"]
        review = json.loads((ROOT / "examples" / "admission-review.json").read_text())
        del review["request"]["object"]["metadata"]["annotations"]  # the policy switches it on
        request = urllib.request.Request(f"https://{name}:{webhook_port}{path}", data=json.dumps(review).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with _resolving(name, "127.0.0.1"):
            with urllib.request.urlopen(request, context=context, timeout=10) as response:
                answer = json.load(response)
        assert answer["response"]["allowed"] is True
        assert answer["response"]["uid"] == review["request"]["uid"]
        patch = json.loads(base64.b64decode(answer["response"]["patch"]))
        assert any("tandem-log-shipper" in json.dumps(op.get("value")) for op in patch), patch
    finally:
        process.terminate()
        process.wait(timeout=40)


def _volume_of(volumes: dict, *, secret: str | None = None, config_map: str | None = None) -> str:
    for name, volume in volumes.items():
        if secret and volume.get("secret", {}).get("secretName") == secret:
            return name
        if config_map and volume.get("configMap", {}).get("name") == config_map:
            return name
    pytest.fail(f"no volume for secret={secret} configMap={config_map}")


def _wait(url: str) -> int:
    deadline = time.monotonic() + 20
    status = 0
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                return response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError:
            pass
        time.sleep(0.1)
    return status


class _resolving:
    """Resolves one host name to an address for the duration (no DNS here)."""

    def __init__(self, host: str, address: str):
        self.host, self.address = host, address

    def __enter__(self):
        self.original = socket.getaddrinfo

        def getaddrinfo(host, *args, **kwargs):
            return self.original(self.address if host == self.host else host, *args, **kwargs)

        socket.getaddrinfo = getaddrinfo

    def __exit__(self, *exc):
        socket.getaddrinfo = self.original

"""pytest fixtures for tests that run pods: `tandem` (inject a pod), `run_pod` (start it)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from podrunner import Pod  # noqa: E402


def tandem_binary():
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / "tandem"
        if path.exists():
            return path
    pytest.fail("build tandem first (cargo build): tests/run.sh does")


def inject(pod, policies=None, namespace_labels=None):
    """The pod `tandem inject` makes of `pod` (with a directory or file of policies)."""
    argv = [tandem_binary(), "inject", "-f", "-"]
    if policies:
        argv += ["--policies", str(policies)]
    out = subprocess.run(argv, input=json.dumps(pod), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def container(pod, name):
    """The container (init or app) of that name."""
    for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise KeyError(f"no container {name} in {[c['name'] for c in pod['spec']['containers']]}")


@pytest.fixture
def run_pod():
    """Starts pods; every one is stopped (kubelet order, then SIGKILL) when the test ends."""
    pods = []

    def start(manifest, objects=(), timeout=180, before_start=None, **kwargs):
        pod = Pod(manifest, objects, **kwargs)
        pods.append(pod)
        return pod.start(timeout, before_start)

    yield start
    for pod in pods:
        if pod.holder is not None:
            print(pod.describe())  # pytest shows it when the test failed
        pod.stop()

"""The pod the API server stored, run: all four patterns in one Pod Security "restricted"
pod, created with kubectl through the chart's webhook configuration (tandem on loopback),
then run by the pod runner (tests/podrunner) with the Secret and ConfigMap as the API server
stores them. The scenario (the app, its neighbours, what proves each helper worked, the
kubelet's start and stop order) is tests/programs/allfour.py."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from harness import PREFIX, to_yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/podrunner"))
sys.path.insert(0, str(ROOT / "tests/programs"))

from allfour import AllFour  # noqa: E402
from gitserver import readable_directory  # noqa: E402
from podrunner import Pod  # noqa: E402


@pytest.fixture
def remote():
    """A directory the pod's neighbours can read as other users."""
    with readable_directory() as directory:
        yield directory


def test_the_stored_all_four_pod_runs_in_the_kubelets_order(cluster, webhooks, tandem, namespace, remote):
    webhooks.chart(tandem)
    scenario = AllFour(remote, prefix=PREFIX)
    created = cluster.kubectl("create", "-n", namespace, "-f", "-", input=to_yaml(*scenario.objects(), scenario.pod()),
                              check=False)
    assert created.returncode == 0, created.stderr
    stored = cluster.get("pod", "shop", "-n", namespace)
    objects = [cluster.get("secret", "git-ssh", "-n", namespace), cluster.get("configmap", "nginx", "-n", namespace)]
    pod = Pod(stored, objects)
    try:
        pod.start(180, before_start=scenario.neighbours)
        scenario.check_started(pod, stored)
        scenario.check_stopped(pod, stored)
    finally:
        if pod.holder is not None:
            print(pod.describe())  # pytest shows it when the test failed
        pod.stop()

"""Fixtures of the suite judged by a real control plane (tests/controlplane/).

One control plane serves the whole session (starting one takes seconds; building it takes
minutes the first time, then tests/controlplane/build.sh finds it in the cache outside the
clone). tandem runs as a process on 127.0.0.1 with a certificate for that address, and every
webhook configuration points at it by `clientConfig.url`: nothing here dials a Service.

Every process started here is stopped by its PID when its fixture ends, pass or fail; the
work directories (logs of etcd, kube-apiserver, kube-controller-manager and every tandem)
are named in a failing test's report and kept under pytest's basetemp.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import pytest

from harness import ControlPlane, ServingCert, Tandem, Webhooks, build_tandem, make_namespace

_work_dirs: list[Path] = []


@pytest.fixture(scope="session")
def cluster(tmp_path_factory) -> Iterator[ControlPlane]:
    workdir = tmp_path_factory.mktemp("controlplane")
    _work_dirs.append(workdir)
    with ControlPlane.start(workdir, version=os.environ.get("TANDEM_KUBE_VERSION")) as cp:
        yield cp


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.failed and _work_dirs:
        report.sections.append(("logs", "kept in: " + ", ".join(map(str, _work_dirs))))


@pytest.fixture(scope="session")
def tandem_bin() -> Path:
    return build_tandem()


@pytest.fixture(scope="session")
def webhook_tls(tmp_path_factory) -> ServingCert:
    """A CA and a serving certificate for 127.0.0.1: the caBundle of every webhook here."""
    return ServingCert.new(tmp_path_factory.mktemp("webhook-tls"))


@pytest.fixture(scope="session")
def start_tandem(tandem_bin, webhook_tls, tmp_path_factory):
    """start_tandem(*args, env=..., tls=...) -> a running Tandem; all stopped at the end."""
    workdir = tmp_path_factory.mktemp("tandem")
    _work_dirs.append(workdir)
    started: list[Tandem] = []

    def _start(*args: str, env: dict[str, str] | None = None, tls: ServingCert | None = None) -> Tandem:
        server = Tandem(tandem_bin, tls or webhook_tls, workdir, list(args), env)
        started.append(server)
        return server.start()

    yield _start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def tandem(start_tandem) -> Tandem:
    """The session's tandem: built-in policies only, no --kube."""
    return start_tandem()


@pytest.fixture
def webhooks(cluster, webhook_tls) -> Iterator[Webhooks]:
    """Webhook configurations registered by a test, removed when it ends."""
    hooks = Webhooks(cluster, webhook_tls)
    yield hooks
    hooks.remove_all()


@pytest.fixture
def namespace(cluster) -> Iterator[str]:
    """A fresh namespace for one test, deleted (without waiting) at its end."""
    name = make_namespace(cluster)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)

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

from harness import RELEASE_NAMESPACE, ControlPlane, ServingCert, Tandem, Webhooks, build_tandem, make_namespace, render_chart
from controlplane import token_kubeconfig  # noqa: E402 (harness puts tests/controlplane on the path)

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


@pytest.fixture(scope="module")
def chart_identity(cluster, tmp_path_factory) -> Path:
    """The chart's ServiceAccount, ClusterRole and binding and the CRD, applied; a
    kubeconfig holding a token of that ServiceAccount: tandem gets only what the chart
    grants."""
    rendered = render_chart({"tls": {"mode": "secret", "secret": {"name": "x", "caBundle": "eA=="}}})
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}})
    crd = Path(__file__).resolve().parents[2] / "charts" / "tandem" / "crds" / "injectionpolicies.tandem.dev.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/injectionpolicies.tandem.dev", "--timeout=60s")
    for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
        cluster.apply(rendered.one(kind))
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    token = cluster.kubectl("create", "token", account, "-n", RELEASE_NAMESPACE, "--duration=2h").stdout.strip()
    return token_kubeconfig(tmp_path_factory.mktemp("sa") / "kubeconfig", cluster.url, cluster.ca_file, token, RELEASE_NAMESPACE)


@pytest.fixture(scope="module")
def kube_tandem(start_tandem, chart_identity):
    """A `tandem serve --kube` of the test module's own, as the chart's ServiceAccount."""
    server = start_tandem("--kube", env={"KUBECONFIG": str(chart_identity)})
    yield server
    server.stop()

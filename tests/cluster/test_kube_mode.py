"""`tandem serve --kube` as the chart's ServiceAccount: a token from `kubectl create token`,
the chart's RBAC and nothing more. Namespace annotations are inherited, InjectionPolicy
objects created, changed and deleted at run time take effect within seconds, nothing is
ever forbidden, and the watches survive the API server restarting."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

import promises
from harness import PREFIX, RELEASE_NAMESPACE, make_namespace, render_chart, to_yaml
from controlplane import token_kubeconfig

WAIT = 20  # seconds a change may take to reach a review (the watch, then the snapshot)


@pytest.fixture(scope="module")
def chart_identity(cluster, tmp_path_factory) -> Path:
    """The chart's ServiceAccount, ClusterRole and binding and the CRD, applied; a
    kubeconfig holding a token of that ServiceAccount."""
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
    server = start_tandem("--kube", env={"KUBECONFIG": str(chart_identity)})
    yield server
    server.stop()


@pytest.fixture
def every_pod(cluster, webhooks, kube_tandem):
    """The chart's webhook without the CEL filter: every pod reaches tandem, so namespace
    annotations and policy defaults can apply."""
    webhooks.chart(kube_tandem, {"webhook": {"annotatedPodsOnly": False}})
    return cluster


def dry_run(cluster, namespace: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "p-", "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]},
    }
    return json.loads(cluster.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=to_yaml(pod)).stdout)


def eventually(check, timeout: float = WAIT, what: str = "") -> float:
    """Seconds until `check()` holds; fails after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "tandem.dev/v1alpha1", "kind": "InjectionPolicy", "metadata": {"name": name}, "spec": spec}


def assert_never_forbidden(server, since: int = 0) -> None:
    log = server.log()[since:]
    assert "forbidden" not in log.lower(), [line for line in log.splitlines() if "forbidden" in line.lower()][:5]


def test_namespace_annotations_are_inherited(every_pod, kube_tandem):
    namespace = make_namespace(every_pod, annotations={f"{PREFIX}/log-shipper": "true", f"{PREFIX}/log-shipper.path": "/var/log/team"})
    eventually(lambda: promises.injected(dry_run(every_pod, namespace)) == ["log-shipper"], what="the namespace's annotation applied")
    pod = dry_run(every_pod, namespace)
    assert promises.mounts(promises.find(pod, "app"))["/var/log/team"]
    # The pod's own annotation wins over the namespace's.
    assert promises.injected(dry_run(every_pod, namespace, {f"{PREFIX}/log-shipper": "false"})) == []
    # A change to the namespace is seen at run time.
    every_pod.kubectl("annotate", "namespace", namespace, f"{PREFIX}/log-shipper-", f"{PREFIX}/metrics-adapter=redis")
    eventually(lambda: promises.injected(dry_run(every_pod, namespace)) == ["metrics-adapter"], what="the namespace's new annotation applied")
    assert_never_forbidden(kube_tandem)


def test_policies_created_changed_deleted_at_run_time(every_pod, kube_tandem):
    namespace = make_namespace(every_pod, labels={"team": "payments"})
    assert promises.injected(dry_run(every_pod, namespace)) == []
    spec = {"priority": 100, "selector": {"namespaces": {"matchLabels": {"team": "payments"}}}, "defaults": {"log-shipper": {"profile": "fluent-bit", "path": "/var/log/pay"}}}
    every_pod.apply(policy("payments-logging", spec))
    took = eventually(lambda: promises.injected(dry_run(every_pod, namespace)) == ["log-shipper"], what="a created policy applied")
    print(f"created policy applied after {took:.2f}s")
    # Changed: the default's path moves.
    spec["defaults"]["log-shipper"]["path"] = "/var/log/payments"
    every_pod.apply(policy("payments-logging", spec))
    eventually(lambda: "/var/log/payments" in promises.mounts(promises.find(dry_run(every_pod, namespace), "app")), what="a changed policy applied")
    # Deleted: pods there get nothing again.
    every_pod.kubectl("delete", "injectionpolicy", "payments-logging")
    eventually(lambda: promises.injected(dry_run(every_pod, namespace)) == [], what="a deleted policy gone")
    assert_never_forbidden(kube_tandem)


def test_an_invalid_policy_object_is_skipped_and_logged(every_pod, kube_tandem):
    # Valid for the CRD's schema, refused by tandem: a profile with a placeholder nobody defines.
    bad = {"profiles": {"log-shipper": {"broken": {"image": "cr.fluentbit.io/fluent/fluent-bit:4.2.4", "args": ["{{nope}}"], "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}}}}
    every_pod.apply(policy("broken-profile", bad))
    eventually(lambda: "broken-profile" in kube_tandem.log(), what="the invalid policy logged")
    namespace = make_namespace(every_pod)
    assert promises.injected(dry_run(every_pod, namespace, {f"{PREFIX}/log-shipper": "true"})) == ["log-shipper"]
    every_pod.kubectl("delete", "injectionpolicy", "broken-profile")


def test_watches_survive_the_api_server_restarting(every_pod, kube_tandem, cluster, webhooks):
    assert_never_forbidden(kube_tandem)
    cluster.restart_apiserver(down_for=2)
    # A starting API server serves requests before its RBAC caches are synced, and answers
    # them 403 for a moment (as in any cluster): only what comes after it is ready counts.
    time.sleep(1)
    ready = len(kube_tandem.log())
    # The webhook configuration and the token survive (etcd kept them); the watches resume.
    namespace = make_namespace(cluster, labels={"team": "after-restart"})
    spec = {"selector": {"namespaces": {"matchLabels": {"team": "after-restart"}}}, "defaults": {"metrics-adapter": {"profile": "redis"}}}
    cluster.apply(policy("after-restart", spec))
    took = eventually(lambda: promises.injected(dry_run(cluster, namespace)) == ["metrics-adapter"], timeout=60, what="a policy created after the restart applied")
    print(f"policy created after the API server's restart applied after {took:.2f}s")
    cluster.kubectl("delete", "injectionpolicy", "after-restart")
    assert_never_forbidden(kube_tandem, since=ready)

"""The chart's MutatingWebhookConfiguration, evaluated by the real API server: which pods it
sends to tandem (namespaceSelector, objectSelector, CEL matchConditions) and what happens
to pods while tandem is down (failurePolicy)."""

from __future__ import annotations

import pytest

import promises
from harness import PREFIX, RELEASE_NAMESPACE, make_namespace, to_yaml

ANNOTATED = {f"{PREFIX}/log-shipper": "true"}


def pod(name: str, annotations: dict[str, str] | None = None, labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": labels or {}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]},
    }


def create(cluster, namespace: str, obj: dict):
    return cluster.kubectl("create", "-n", namespace, "-f", "-", input=to_yaml(obj), check=False)


def reviews(server) -> float:
    """Reviews the server has answered, of every outcome."""
    total = 0.0
    for line in server.metrics().splitlines():
        if line.startswith("tandem_admission_reviews_total{"):
            total += float(line.split()[-1])
    return total


@pytest.fixture
def own_tandem(start_tandem):
    """A tandem of this test's own, which it may stop."""
    server = start_tandem()
    yield server
    server.stop()


def ensure_namespace(cluster, name: str, labels: dict[str, str] | None = None) -> str:
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}})
    return name


@pytest.mark.parametrize("where", ["kube-system", "kube-node-lease", "release", "opted-out"])
def test_excluded_namespaces_are_never_sent(cluster, webhooks, own_tandem, where):
    webhooks.chart(own_tandem)
    if where == "release":
        namespace = ensure_namespace(cluster, RELEASE_NAMESPACE)
    elif where == "opted-out":
        namespace = make_namespace(cluster, labels={f"{PREFIX}/inject": "disabled"})
    else:
        namespace = ensure_namespace(cluster, where)
    before = reviews(own_tandem)
    name = f"skip-{where}"
    result = create(cluster, namespace, pod(name, ANNOTATED))
    assert result.returncode == 0, result.stderr
    stored = cluster.get("pod", name, "-n", namespace)
    assert promises.injected(stored) == []
    assert reviews(own_tandem) == before, "the API server sent a pod of an excluded namespace"
    cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")


def test_tandem_own_pods_are_never_sent(cluster, webhooks, own_tandem, namespace):
    webhooks.chart(own_tandem)
    before = reviews(own_tandem)
    result = create(cluster, namespace, pod("self", ANNOTATED, labels={"app.kubernetes.io/name": "tandem"}))
    assert result.returncode == 0, result.stderr
    assert promises.injected(cluster.get("pod", "self", "-n", namespace)) == []
    assert reviews(own_tandem) == before


def test_cel_condition_keeps_unannotated_pods_away(cluster, webhooks, own_tandem, namespace):
    config = webhooks.chart(own_tandem)
    assert config["webhooks"][0]["matchConditions"], "the default chart renders the CEL filter"
    before = reviews(own_tandem)
    assert create(cluster, namespace, pod("plain", {"team": "a"})).returncode == 0
    assert reviews(own_tandem) == before, "an unannotated pod reached tandem"
    assert create(cluster, namespace, pod("annotated", ANNOTATED)).returncode == 0
    # Once: tandem gives the containers it adds the token mount the ServiceAccount
    # admission plugin gave the app, so that plugin, run again after tandem's patch, has
    # nothing to add, and the API server does not reinvoke tandem (IfNeeded).
    assert reviews(own_tandem) == before + 1, "an annotated pod is reviewed once"
    stored = cluster.get("pod", "annotated", "-n", namespace)
    assert promises.injected(stored) == ["log-shipper"]
    token = "/var/run/secrets/kubernetes.io/serviceaccount"
    for container in stored["spec"]["initContainers"] + stored["spec"]["containers"]:
        paths = [m["mountPath"] for m in container.get("volumeMounts", [])]
        assert paths.count(token) == 1, (container["name"], paths)


def test_without_cel_condition_every_pod_is_sent(cluster, webhooks, own_tandem, namespace):
    config = webhooks.chart(own_tandem, {"webhook": {"annotatedPodsOnly": False}})
    assert "matchConditions" not in config["webhooks"][0]
    before = reviews(own_tandem)
    assert create(cluster, namespace, pod("plain", {"team": "a"})).returncode == 0
    assert reviews(own_tandem) == before + 1, "an unannotated pod is reviewed once (nothing to reinvoke for)"


@pytest.mark.parametrize("policy", ["Fail", "Ignore"])
def test_while_tandem_is_down(cluster, webhooks, own_tandem, namespace, policy):
    webhooks.chart(own_tandem, {"webhook": {"failurePolicy": policy, "timeoutSeconds": 2}})
    own_tandem.stop()
    # Unannotated pods never depend on tandem: the CEL condition keeps them away.
    assert create(cluster, namespace, pod("plain")).returncode == 0
    result = create(cluster, namespace, pod("annotated", ANNOTATED))
    if policy == "Fail":
        assert result.returncode != 0
        assert 'failed calling webhook "pods.tandem.dev"' in result.stderr, result.stderr
        assert cluster.kubectl("get", "pod", "annotated", "-n", namespace, check=False).returncode != 0
    else:
        assert result.returncode == 0, result.stderr
        assert promises.injected(cluster.get("pod", "annotated", "-n", namespace)) == [], "admitted unmutated"

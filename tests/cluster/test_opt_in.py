"""Namespace opt-in under the chart's default webhook configuration, judged by the real API
server: the entry `opted-in.pods.tandem.dev` sends every pod of a namespace labelled
`tandem.dev/inject=enabled` (so namespace annotations and policy defaults apply to pods
without annotations), `pods.tandem.dev` keeps the CEL filter everywhere else, and
kube-system, kube-node-lease and the release namespace are never sent, labelled or not.
tandem runs with `--kube` as the chart's ServiceAccount, and says where a platform team
looks (log, metric, `tandem explain`) when a namespace counts on pods it never receives.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path

import pytest

import promises
from harness import PREFIX, RELEASE_NAMESPACE, make_namespace, to_yaml

WAIT = 20  # seconds a namespace or policy change may take to reach tandem's snapshot
LABEL = f"{PREFIX}/inject"
ENABLED = {LABEL: "enabled"}
LOG_SHIPPER = {f"{PREFIX}/log-shipper": "true"}
NOT_OPTED_IN = "namespace has tandem annotations but is not opted in"
POLICY_NOT_OPTED_IN = "policy switches patterns on in namespaces that are not opted in"


@pytest.fixture
def default_chart(cluster, webhooks, kube_tandem) -> dict:
    """The chart's MutatingWebhookConfiguration with its default values (CEL filter on),
    pointed at tandem; the stored object."""
    config = webhooks.chart(kube_tandem)
    names = [hook["name"] for hook in config["webhooks"]]
    assert names == ["pods.tandem.dev", "opted-in.pods.tandem.dev"], names
    assert "matchConditions" in config["webhooks"][0] and "matchConditions" not in config["webhooks"][1]
    return config


def pod(name: str, annotations: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}, "labels": {"app": "web"}},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]},
    }


def create(cluster, namespace: str, obj: dict) -> dict:
    """Creates `obj` for real and returns what the API server stored."""
    result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=to_yaml(obj), check=False)
    assert result.returncode == 0, result.stderr
    return cluster.get("pod", obj["metadata"]["name"], "-n", namespace)


def dry_run(cluster, namespace: str, annotations: dict[str, str] | None = None) -> dict:
    obj = pod("probe", annotations)
    del obj["metadata"]["name"]
    obj["metadata"]["generateName"] = "probe-"
    out = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=to_yaml(obj)).stdout
    return json.loads(out)


def reviews(server) -> float:
    return sum(float(line.split()[-1]) for line in server.metrics().splitlines() if line.startswith("tandem_admission_reviews_total{"))


def gauge(server, series: str) -> float | None:
    """The value of one series (`name` or `name{labels}`), None when it is not exported."""
    for line in server.metrics().splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return None


def eventually(check, what: str, timeout: float = WAIT):
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


def log_lines(server, message: str) -> list[dict]:
    """tandem's log lines (text format: `key=value` fields) carrying `message`."""
    return [line for line in server.log().splitlines() if message in line]


def explain(tandem_bin: Path, cluster, namespace: str, obj: dict) -> str:
    """`tandem explain` on `obj`, given the namespace's labels and annotations as the API
    server has them, as a platform team would run it."""
    ns = cluster.get("namespace", namespace)["metadata"]
    flags = []
    for flag, pairs in (("--namespace-labels", ns.get("labels") or {}), ("--namespace-annotations", ns.get("annotations") or {})):
        tandem_pairs = {k: v for k, v in pairs.items() if "," not in v and "kubectl.kubernetes.io" not in k}
        if tandem_pairs:
            flags += [flag, ",".join(f"{k}={v}" for k, v in tandem_pairs.items())]
    result = subprocess.run(
        [str(tandem_bin), "explain", "-f", "-", "-n", namespace, *flags], input=to_yaml(obj), text=True, capture_output=True, check=True
    )
    return result.stdout


def test_labelled_namespace_sends_unannotated_pods_and_its_annotations_apply(cluster, default_chart, kube_tandem):
    namespace = make_namespace(cluster, labels=ENABLED, annotations=LOG_SHIPPER)
    # The namespace reaches tandem through its watch; wait until a review sees it.
    eventually(lambda: promises.injected(dry_run(cluster, namespace)) == ["log-shipper"], "the namespace's annotation applied")
    before = reviews(kube_tandem)
    stored = create(cluster, namespace, pod("plain"))
    print(f"\nlabelled {namespace}, unannotated pod: injected={promises.injected(stored)}, reviews +{reviews(kube_tandem) - before:g}")
    assert promises.injected(stored) == ["log-shipper"]
    assert promises.find(stored, "tandem-log-shipper") is not None
    assert not promises.errors(stored), promises.errors(stored)
    assert reviews(kube_tandem) > before
    assert not [line for line in log_lines(kube_tandem, NOT_OPTED_IN) if namespace in line]


def test_unlabelled_namespace_gets_nothing_and_tandem_says_why(cluster, default_chart, kube_tandem, tandem_bin):
    namespace = make_namespace(cluster, labels={"team": "web"}, annotations=LOG_SHIPPER)
    said = eventually(lambda: [line for line in log_lines(kube_tandem, NOT_OPTED_IN) if f"namespace={namespace}" in line], "the log names the namespace")
    print(f"\nlog: {said[0]}")
    assert f"kubectl label namespace {namespace} {LABEL}=enabled" in said[0]
    assert f"annotations={PREFIX}/log-shipper" in said[0]
    counted = gauge(kube_tandem, "tandem_namespaces_not_opted_in")
    assert counted is not None and counted >= 1

    # The API server does not send an unannotated pod there: nothing is added, no review.
    before = reviews(kube_tandem)
    stored = create(cluster, namespace, pod("plain"))
    print(f"unlabelled {namespace}, unannotated pod: injected={promises.injected(stored)}, reviews +{reviews(kube_tandem) - before:g}")
    assert promises.injected(stored) == []
    assert reviews(kube_tandem) == before, "an unannotated pod of a namespace not opted in reached tandem"
    # A pod with an annotation of its own passes the CEL filter, and gets the namespace's too.
    annotated = create(cluster, namespace, pod("annotated", {f"{PREFIX}/metrics-adapter": "redis"}))
    assert sorted(promises.injected(annotated)) == ["log-shipper", "metrics-adapter"]

    # explain, given the namespace as the API server has it, says why and how to fix it.
    text = explain(tandem_bin, cluster, namespace, pod("plain"))
    print(f"explain:\n{text}")
    assert f"NOT SENT to tandem: namespace {namespace} is not opted in" in text
    assert f"kubectl label namespace {namespace} {LABEL}=enabled" in text

    # Said once: another change to the namespace is not a new line.
    cluster.kubectl("label", "namespace", namespace, "tier=frontend")
    time.sleep(1)
    assert len([line for line in log_lines(kube_tandem, NOT_OPTED_IN) if f"namespace={namespace}" in line]) == 1

    # Following the advice fixes it: said so, and the gauge comes down (other tests'
    # namespaces may go away meanwhile, never come).
    counted = gauge(kube_tandem, "tandem_namespaces_not_opted_in")
    cluster.kubectl("label", "namespace", namespace, f"{LABEL}=enabled")
    eventually(lambda: [line for line in log_lines(kube_tandem, "namespace is opted in now") if f"namespace={namespace}" in line], "the log says it is fixed")
    assert gauge(kube_tandem, "tandem_namespaces_not_opted_in") <= counted - 1
    eventually(lambda: promises.injected(dry_run(cluster, namespace)) == ["log-shipper"], "the opted-in namespace's pods are sent")
    assert "NOT SENT" not in explain(tandem_bin, cluster, namespace, pod("plain"))


def test_policy_defaults_apply_in_labelled_namespaces_under_the_default_chart(cluster, default_chart, kube_tandem):
    team = f"team-{int(time.time() * 1000) % 100000}"
    labelled = make_namespace(cluster, labels={"team": team, **ENABLED})
    unlabelled = make_namespace(cluster, labels={"team": team})
    name = f"{team}-logging"
    policy = {
        "apiVersion": "tandem.dev/v1alpha1",
        "kind": "InjectionPolicy",
        "metadata": {"name": name},
        "spec": {"priority": 100, "selector": {"namespaces": {"matchLabels": {"team": team}}}, "defaults": {"log-shipper": {"profile": "fluent-bit"}}},
    }
    cluster.apply(policy)
    try:
        eventually(lambda: promises.injected(dry_run(cluster, labelled)) == ["log-shipper"], "the policy's defaults applied")
        stored = create(cluster, labelled, pod("plain"))
        print(f"\npolicy {name}, labelled {labelled}: injected={promises.injected(stored)}")
        assert promises.injected(stored) == ["log-shipper"]
        assert promises.mounts(promises.find(stored, "app"))["/var/log/app"]
        assert not promises.errors(stored), promises.errors(stored)

        before = reviews(kube_tandem)
        stored = create(cluster, unlabelled, pod("plain"))
        print(f"policy {name}, unlabelled {unlabelled}: injected={promises.injected(stored)}, reviews +{reviews(kube_tandem) - before:g}")
        assert promises.injected(stored) == [] and reviews(kube_tandem) == before

        said = eventually(lambda: [line for line in log_lines(kube_tandem, POLICY_NOT_OPTED_IN) if f"policy={name}" in line], "the log names the policy")
        print(f"log: {said[0]}")
        assert re.search(rf"namespaces={unlabelled}\b", said[0]), said[0]
        assert labelled not in said[0]
        series = f'tandem_policy_namespaces_not_opted_in{{policy="{name}"}}'
        assert eventually(lambda: gauge(kube_tandem, series) == 1, "the gauge counts the one namespace")
    finally:
        cluster.kubectl("delete", "injectionpolicy", name, "--ignore-not-found")
    # A policy gone is a series gone.
    eventually(lambda: gauge(kube_tandem, f'tandem_policy_namespaces_not_opted_in{{policy="{name}"}}') is None, "the policy's series removed")


@pytest.mark.parametrize("where", ["kube-system", "kube-node-lease", "release"])
@pytest.mark.parametrize("labelled", [False, True], ids=["unlabelled", "labelled"])
def test_system_and_release_namespaces_are_never_sent(cluster, default_chart, kube_tandem, where, labelled):
    namespace = RELEASE_NAMESPACE if where == "release" else where
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
    if labelled:
        cluster.kubectl("label", "namespace", namespace, f"{LABEL}=enabled", "--overwrite")
    try:
        before = reviews(kube_tandem)
        name = f"never-{where}-{'labelled' if labelled else 'plain'}"
        stored = create(cluster, namespace, pod(name, LOG_SHIPPER))
        print(f"\n{namespace} ({'labelled' if labelled else 'unlabelled'}), annotated pod: injected={promises.injected(stored)}, reviews +{reviews(kube_tandem) - before:g}")
        assert promises.injected(stored) == []
        assert reviews(kube_tandem) == before, f"the API server sent a pod of {namespace}"
        cluster.kubectl("delete", "pod", name, "-n", namespace, "--wait=false")
    finally:
        if labelled:
            cluster.kubectl("label", "namespace", namespace, f"{LABEL}-")

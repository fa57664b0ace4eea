"""The chart against the real API server: every object it renders is accepted by
server-side apply, the CRD becomes Established, every policy file in policies/ passes the
CRD's schema and a malformed one is refused with the server's own message.

The Service-backed webhook configuration (what users install) is only ever applied with
`--dry-run=server`: registered for real, it would make the API server dial a ClusterIP.
The URL-backed one (webhook.url) is registered for real by the other tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from harness import RELEASE_NAMESPACE, render_chart, to_yaml, wait_for_pods

ROOT = Path(__file__).resolve().parents[2]
CRD = ROOT / "charts" / "tandem" / "crds" / "injectionpolicies.tandem.dev.yaml"
POLICY_FILES = sorted((ROOT / "policies").glob("*.yaml")) + sorted((ROOT / "policies" / "examples").glob("*.yaml"))

CA = "-----BEGIN CERTIFICATE-----\nMIIBdzCCAR2gAwIBAgIUEXAMPLE\n-----END CERTIFICATE-----\n"
MODES = {
    "auto": {},
    "helm": {"tls": {"mode": "helm"}},
    "secret": {"tls": {"mode": "secret", "secret": {"name": "my-tls", "caBundle": CA}}},
}


@pytest.fixture(scope="module")
def crd(cluster):
    cluster.kubectl("apply", "--server-side", "--field-manager=tandem-tests", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/injectionpolicies.tandem.dev", "--timeout=60s")
    return cluster.get("crd", "injectionpolicies.tandem.dev")


def test_crd_is_established(crd):
    conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
    assert conditions["Established"] == "True"
    assert conditions["NamesAccepted"] == "True"
    assert crd["status"]["acceptedNames"]["shortNames"] == ["injpol"]


def server_side(cluster, objects: list[dict], *extra: str):
    return cluster.kubectl("apply", "--server-side", "--field-manager=helm", "--force-conflicts", *extra, "-f", "-", input=to_yaml(*objects), check=False)


@pytest.mark.parametrize("mode", sorted(MODES))
def test_every_rendered_object_is_accepted_by_server_side_apply(cluster, crd, mode):
    rendered = render_chart(MODES[mode], cluster=cluster)
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}})
    webhook = [o for o in rendered if o["kind"] == "MutatingWebhookConfiguration"]
    others = [o for o in rendered if o["kind"] != "MutatingWebhookConfiguration"]
    assert webhook and "service" in webhook[0]["webhooks"][0]["clientConfig"]
    result = server_side(cluster, others)
    assert result.returncode == 0, result.stderr
    # The Service-backed webhook: judged by the server, never registered.
    result = server_side(cluster, webhook, "--dry-run=server")
    assert result.returncode == 0, result.stderr
    assert cluster.kubectl("get", "mutatingwebhookconfiguration", webhook[0]["metadata"]["name"], check=False).returncode != 0
    try:
        for obj in others:
            namespace = obj["metadata"].get("namespace", RELEASE_NAMESPACE)
            args = [obj["kind"].lower(), obj["metadata"]["name"]]
            if obj["kind"] not in ("ClusterRole", "ClusterRoleBinding", "Namespace"):
                args += ["-n", namespace]
            stored = cluster.get(*args)
            assert stored["metadata"]["name"] == obj["metadata"]["name"]
        # The Deployment's pod template is real: the ReplicaSet makes its pods from it.
        deployment = rendered.one("Deployment")
        replicas = deployment["spec"]["replicas"]
        selector = ",".join(f"{k}={v}" for k, v in deployment["spec"]["selector"]["matchLabels"].items())
        pods = wait_for_pods(cluster, RELEASE_NAMESPACE, selector, replicas)
        assert all(p["spec"]["securityContext"]["runAsNonRoot"] for p in pods)
    finally:
        cluster.kubectl("delete", "-f", "-", "--ignore-not-found", "--wait=false", input=to_yaml(*[o for o in others if o["kind"] != "CustomResourceDefinition"]), check=False)


def test_the_url_webhook_is_registered_and_called(cluster, webhooks, tandem):
    stored = webhooks.chart(tandem)
    client = stored["webhooks"][0]["clientConfig"]
    assert client["url"] == tandem.url and "service" not in client


@pytest.mark.parametrize("path", POLICY_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_policy_file_passes_the_crd_schema(cluster, crd, path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d]
    assert documents
    result = cluster.kubectl("apply", "--dry-run=server", "--validate=strict", "-f", str(path), check=False)
    assert result.returncode == 0, result.stderr


MALFORMED = {
    "priority-not-a-number": ({"priority": "high"}, "spec.priority"),
    "unknown-pattern-enforced": ({"enforce": ["log-shiper"]}, "spec.enforce[0]"),
    "unknown-field": ({"defaultz": {}}, 'unknown field "spec.defaultz"'),
    "on-invalid-typo": ({"onInvalid": "ignore"}, "spec.onInvalid"),
    # What the schema cannot say, the CRD's CEL rules do.
    "selector-operator": ({"selector": {"pods": {"matchExpressions": [{"key": "app", "operator": "Equals", "values": ["x"]}]}}}, "operator must be In, NotIn, Exists or DoesNotExist"),
    "selector-in-without-values": ({"selector": {"namespaces": {"matchExpressions": [{"key": "team", "operator": "In"}]}}}, "In and NotIn need values"),
    "selector-exists-with-values": ({"selector": {"pods": {"matchExpressions": [{"key": "app", "operator": "Exists", "values": ["x"]}]}}}, "Exists and DoesNotExist take none"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_policy_is_refused_with_the_servers_message(cluster, crd, case):
    spec, expected = MALFORMED[case]
    obj = {"apiVersion": "tandem.dev/v1alpha1", "kind": "InjectionPolicy", "metadata": {"name": f"bad-{case}"}, "spec": spec}
    result = cluster.kubectl("create", "--validate=strict", "-f", "-", input=json.dumps(obj), check=False)
    assert result.returncode != 0
    assert expected in result.stderr, result.stderr
    assert cluster.kubectl("get", "injectionpolicy", f"bad-{case}", check=False).returncode != 0

"""Every scenario renders, lints clean, and yields objects a real API server accepts."""

from __future__ import annotations

import pytest
from helm_python.errors import HelmRenderError, HelmValuesError

from chartlib import NAMESPACE, SCENARIOS, lint_errors, schema_errors

CLUSTER_SCOPED = {"ClusterRole", "ClusterRoleBinding", "MutatingWebhookConfiguration", "CustomResourceDefinition"}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_values_pass_the_schema(chart, scenario):
    chart.validate_schema(SCENARIOS[scenario])


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_every_manifest_is_valid_for_the_api_server(render, scenario):
    """kubernetes-validate strict (newest Kubernetes it knows) and the podcheck oracle."""
    objects = render(SCENARIOS[scenario])
    assert objects, "nothing rendered"
    problems = {
        f"{o['kind']}/{o['metadata'].get('name')}": errors for o in objects if (errors := schema_errors(o))
    }
    assert problems == {}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_lint_reports_no_errors(scenario):
    assert lint_errors(SCENARIOS[scenario]) == []


@pytest.mark.parametrize("kube_version", ["v1.25.0", "v1.27.0", "v1.29.0"])
def test_lint_on_older_kubernetes(kube_version):
    """matchConditions are left out before 1.28; the rest is served by 1.25 already."""
    assert lint_errors({}, kube_version=kube_version) == []


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_objects_are_named_labelled_and_namespaced(render, scenario):
    objects = render(SCENARIOS[scenario])
    seen = set()
    for obj in objects:
        meta = obj["metadata"]
        key = (obj["kind"], meta.get("namespace"), meta["name"])
        assert key not in seen, f"{key} rendered twice"
        seen.add(key)
        assert len(meta["name"]) <= 63, key
        labels = meta.get("labels", {})
        assert labels.get("app.kubernetes.io/managed-by") == "Helm", key
        assert labels.get("app.kubernetes.io/instance") == "tandem", key
        if obj["kind"] in CLUSTER_SCOPED:
            assert "namespace" not in meta, key
        elif obj["kind"] != "ServiceMonitor":
            assert meta.get("namespace") == NAMESPACE, key


def test_default_install_renders_the_whole_webhook(render):
    objects = render({})
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ConfigMap",
            "Deployment",
            "MutatingWebhookConfiguration",
            "Pod",  # helm test
            "PodDisruptionBudget",
            "Role",  # tls.mode=auto: its Secret and Lease
            "RoleBinding",
            "Service",
            "ServiceAccount",
        ]
    )
    assert "tandem-system" in objects.notes and "helm test tandem" in objects.notes


def test_optional_objects_appear_only_when_enabled(render):
    assert not render({}).all("ServiceMonitor") and not render({}).all("NetworkPolicy")
    on = render(SCENARIOS["monitoring"])
    assert len(on.all("ServiceMonitor")) == 1 and len(on.all("NetworkPolicy")) == 1
    assert not render({"tests": {"enabled": False}}).all("Pod")


@pytest.mark.parametrize(
    "values, message",
    [
        ({"terminationGracePeriodSeconds": 25}, "terminationGracePeriodSeconds (25) must exceed"),
        ({"terminationGracePeriodSeconds": 25, "webhook": {"timeoutSeconds": 30}, "server": {"shutdownTimeoutSeconds": 5}}, "webhook.timeoutSeconds"),
        ({"tls": {"mode": "secret", "secret": {"caBundle": "x"}}}, "tls.secret.name is required"),
        ({"tls": {"mode": "secret", "secret": {"name": "mine"}}}, "tls.secret.caBundle is required"),
        ({"serviceAccount": {"create": False}}, "serviceAccount.name is required"),
    ],
)
def test_inconsistent_values_fail_with_a_message(render, values, message):
    with pytest.raises(HelmRenderError, match=message.replace("(", r"\(").replace(")", r"\)")):
        render(values)


def test_unknown_values_are_rejected_at_render(render):
    with pytest.raises(HelmValuesError, match="additional properties 'replicas' not allowed"):
        render({"replicas": 3})

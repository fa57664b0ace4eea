"""The MutatingWebhookConfiguration: what it sends to the server, where, and how."""

from __future__ import annotations

import re

import celpy
import pytest

from chartlib import (
    NAMESPACE,
    SCENARIOS,
    container,
    container_port,
    flags,
    namespace_labels,
    pod_of,
    port_of,
    selects,
)


# The entries' names are fixed: other controllers (a caBundle writer, alerts, people
# reading "failed calling webhook") address them by name.
FILTERED = "pods.tandem.dev"
OPTED_IN = "opted-in.pods.tandem.dev"


def entries(objects) -> dict[str, dict]:
    hooks = objects.one("MutatingWebhookConfiguration")["webhooks"]
    by_name = {hook["name"]: hook for hook in hooks}
    assert len(by_name) == len(hooks), "entry names must be unique"
    return by_name


def webhook(objects) -> dict:
    """The entry for namespaces that have not opted in (the CEL-filtered one)."""
    return entries(objects)[FILTERED]


def test_two_entries_with_fixed_names(render):
    assert list(entries(render({}))) == [FILTERED, OPTED_IN]


@pytest.mark.parametrize("name", [FILTERED, OPTED_IN])
def test_fixed_fields(render, name):
    hook = entries(render({}))[name]
    assert hook["name"].count(".") >= 2  # the API server wants a fully qualified name
    assert hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"]
    assert hook["reinvocationPolicy"] == "IfNeeded"
    assert hook["failurePolicy"] == "Fail"
    assert hook["timeoutSeconds"] == 10
    assert hook["matchPolicy"] == "Equivalent"


def test_failure_policy_and_timeout_are_values(render):
    for hook in entries(render({"webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 3}})).values():
        assert hook["failurePolicy"] == "Ignore" and hook["timeoutSeconds"] == 3


def test_only_pod_create_is_sent(render):
    for hook in entries(render({})).values():
        assert hook["rules"] == [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE"],
                "resources": ["pods"],
                "scope": "Namespaced",
            }
        ]


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_both_entries_reach_the_same_server_alike(render, scenario):
    """One clientConfig (the tandem.clientConfig template), objectSelector and rules."""
    hooks = list(entries(render(SCENARIOS[scenario])).values())
    for field in ("clientConfig", "objectSelector", "rules", "failurePolicy", "timeoutSeconds", "reinvocationPolicy"):
        assert hooks[0][field] == hooks[1][field], field


@pytest.mark.parametrize("scenario", ["default", "everything", "tls-secret"])
def test_client_config_reaches_the_servers_listener(render, scenario):
    """service name/namespace/port/path -> Service port -> targetPort -> containerPort ==
    the port of --addr, and the path the server serves."""
    objects = render(SCENARIOS[scenario])
    service_ref = webhook(objects)["clientConfig"]["service"]
    service = objects.one("Service")
    assert service_ref["name"] == service["metadata"]["name"]
    assert service_ref["namespace"] == service["metadata"]["namespace"] == NAMESPACE
    assert service_ref["path"] == "/mutate"
    assert service_ref["port"] == 443
    (port,) = [p for p in service["spec"]["ports"] if p["port"] == service_ref["port"]]
    deployment = objects.one("Deployment")
    c = container(pod_of(deployment), "tandem")
    assert container_port(c, port["targetPort"]) == port_of(flags(c)["addr"])
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_of(deployment)["metadata"]["labels"])
    assert "url" not in webhook(objects)["clientConfig"]


def sent_by(objects, labels: dict[str, str]) -> list[str]:
    """The entries whose namespaceSelector selects a namespace with `labels`."""
    return [name for name, hook in entries(objects).items() if selects(hook["namespaceSelector"], labels)]


ENABLED = {"tandem.dev/inject": "enabled"}
DISABLED = {"tandem.dev/inject": "disabled"}


@pytest.mark.parametrize(
    "namespace, labels, sent",
    [
        ("default", {}, [FILTERED]),
        ("payments", {"team": "payments"}, [FILTERED]),
        ("odd", {"tandem.dev/inject": "yes"}, [FILTERED]),  # only "enabled" opts in
        ("apps", ENABLED, [OPTED_IN]),
        ("kube-system", {}, []),
        ("kube-system", ENABLED, []),
        ("kube-node-lease", {}, []),
        ("kube-node-lease", ENABLED, []),
        (NAMESPACE, {}, []),
        (NAMESPACE, ENABLED, []),
        ("legacy", DISABLED, []),
    ],
)
def test_namespace_selectors(render, namespace, labels, sent):
    assert sent_by(render({}), namespace_labels(namespace, labels)) == sent


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_no_namespace_is_sent_twice(render, scenario):
    """The two selectors are disjoint: whatever the labels, at most one entry sends a pod."""
    objects = render(SCENARIOS[scenario])
    for name in ("default", "apps", "kube-system", NAMESPACE, "legacy"):
        for value in (None, "enabled", "disabled", "true", ""):
            labels = namespace_labels(name, {} if value is None else {"tandem.dev/inject": value, "team": "a"})
            assert len(sent_by(objects, labels)) <= 1, (scenario, labels)


def test_namespace_selectors_follow_release_namespace_and_extra_exclusions(render):
    objects = render(SCENARIOS["everything"], namespace="injector")
    for ns in ("injector", "legacy", "batch", "kube-system", "kube-node-lease"):
        assert sent_by(objects, namespace_labels(ns)) == [], ns
        assert sent_by(objects, namespace_labels(ns, ENABLED)) == [], ns
    assert sent_by(objects, namespace_labels("tandem-system")) == [FILTERED]
    assert sent_by(objects, namespace_labels("default", ENABLED)) == [OPTED_IN]


def test_opt_in_and_out_labels_follow_the_annotation_prefix(render):
    objects = render({"server": {"annotationPrefix": "inject.example.com"}})
    assert sent_by(objects, namespace_labels("x", {"inject.example.com/inject": "disabled"})) == []
    assert sent_by(objects, namespace_labels("x", {"inject.example.com/inject": "enabled"})) == [OPTED_IN]
    assert sent_by(objects, namespace_labels("x", DISABLED)) == [FILTERED]
    assert sent_by(objects, namespace_labels("x", ENABLED)) == [FILTERED]


@pytest.mark.parametrize("name", [FILTERED, OPTED_IN])
def test_object_selector_skips_tandems_own_pods_only(render, name):
    objects = render({})
    selector = entries(objects)[name]["objectSelector"]
    assert not selects(selector, pod_of(objects.one("Deployment"))["metadata"]["labels"])
    assert not selects(selector, objects.one("Pod")["metadata"]["labels"])  # helm test
    assert selects(selector, {"app": "web"})
    assert selects(selector, {"app.kubernetes.io/name": "nginx", "app.kubernetes.io/instance": "tandem"})
    assert selects(selector, {})


# --- matchConditions ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "scenario, present",
    [
        ("default", True),  # auto, no policies
        ("match-on", True),
        ("match-off", False),
        ("match-auto-with-defaults", False),  # a policy with defaults: CEL cannot see it
        ("match-auto-without-defaults", True),
        ("match-on-with-defaults", True),  # forced
    ],
)
def test_match_conditions_on_off_auto(render, scenario, present):
    objects = render(SCENARIOS[scenario])
    assert ("matchConditions" in webhook(objects)) is present
    assert "matchConditions" not in entries(objects)[OPTED_IN], "opted-in namespaces send every pod"
    if scenario == "match-on-with-defaults":
        assert "WARNING" in objects.notes and "do not get them" in objects.notes
    if scenario == "match-auto-with-defaults":
        assert "turned the CEL filter off" in objects.notes


def cel_program(expression: str):
    env = celpy.Environment()
    return env.program(env.compile(expression))


def admits(program, pod: dict) -> bool:
    return bool(program.evaluate({"object": celpy.json_to_cel(pod)}))


def pod(annotations: dict | None) -> dict:
    meta = {"generateName": "web-", "labels": {"app": "web"}}
    if annotations is not None:
        meta["annotations"] = annotations
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": {"containers": [{"name": "app", "image": "nginx"}]}}


@pytest.mark.parametrize(
    "annotations, sent",
    [
        ({"tandem.dev/log-shipper": "true"}, True),
        ({"tandem.dev/git-clone": "https://github.com/example/site.git", "team": "a"}, True),
        ({"tandem.dev/inject": "false"}, True),  # the server decides what an opt-out means
        ({"tandem.dev/injected": "log-shipper"}, True),  # reinvocation sees its own output
        ({"team": "a", "prometheus.io/scrape": "true"}, False),
        ({"tandem.devx/log-shipper": "true"}, False),
        ({"tandem.dev": "true"}, False),
        ({}, False),
        (None, False),  # no annotations at all
    ],
)
def test_cel_expression_lets_only_tandem_annotated_pods_through(render, annotations, sent):
    (condition,) = webhook(render({}))["matchConditions"]
    assert condition["name"] == "has-tandem-annotation"
    assert admits(cel_program(condition["expression"]), pod(annotations)) is sent


def test_cel_expression_follows_the_annotation_prefix(render):
    (condition,) = webhook(render({"server": {"annotationPrefix": "inject.example.com"}}))["matchConditions"]
    program = cel_program(condition["expression"])
    assert admits(program, pod({"inject.example.com/ambassador": "tcp"}))
    assert not admits(program, pod({"tandem.dev/ambassador": "tcp"}))


def test_cel_expression_is_plausible_kubernetes_cel(render):
    conditions = webhook(render({}))["matchConditions"]
    assert len(conditions) <= 64  # the API server's limit
    (condition,) = conditions
    # a qualified name, as ValidateQualifiedName wants it
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", condition["name"])
    expression = condition["expression"]
    assert len(expression) < 5000
    # only the variables Kubernetes gives matchConditions, and has() guards the optional map
    assert "object.metadata.annotations" in expression and "has(object.metadata.annotations)" in expression
    for name in ("oldObject", "params", "namespaceObject"):
        assert name not in expression
    with pytest.raises(celpy.CELParseError):
        cel_program(expression + " &&")  # the parser is really checking


def test_service_exposes_metrics_for_scraping(render):
    objects = render({})
    service = objects.one("Service")
    c = container(pod_of(objects.one("Deployment")), "tandem")
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert set(ports) == {"https", "metrics"}
    assert container_port(c, ports["metrics"]["targetPort"]) == port_of(flags(c)["metrics-addr"])
    assert service["spec"]["type"] == "ClusterIP"


def test_notes_say_how_to_opt_a_namespace_in(render):
    notes = render({"server": {"annotationPrefix": "inject.example.com"}}).notes
    assert "kubectl label namespace NAME inject.example.com/inject=enabled" in notes
    assert "only in namespaces labelled inject.example.com/inject=enabled" in notes
    unfiltered = render(SCENARIOS["match-off"]).notes
    assert "kubectl label namespace NAME tandem.dev/inject=enabled" in unfiltered
    assert "every pod is sent to the webhook now" in unfiltered and "only in namespaces" not in unfiltered

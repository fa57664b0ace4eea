"""values.yaml, values.schema.json and README.md agree: every value is in the schema and
documented, every schema key is a value, unknown keys are rejected at every level."""

from __future__ import annotations

import json

import jsonschema
import pytest
import yaml
from helm_python.errors import HelmValuesError

import readme
from chartlib import CHART_DIR

VALUES_TEXT = (CHART_DIR / "values.yaml").read_text()
VALUES = yaml.safe_load(VALUES_TEXT)
SCHEMA = json.loads((CHART_DIR / "values.schema.json").read_text())


def walk_values(value, path=()):
    """(path, value) of every mapping entry of values.yaml, depth first."""
    if isinstance(value, dict):
        for key, child in value.items():
            yield path + (key,), child
            yield from walk_values(child, path + (key,))


def walk_schema(node, path=()):
    """(path, node) of every subschema, definitions included."""
    yield path, node
    if not isinstance(node, dict):
        return
    for key in ("properties", "definitions", "$defs"):
        for name, child in node.get(key, {}).items():
            yield from walk_schema(child, path + (key, name))
    for key in ("items", "additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            yield from walk_schema(node[key], path + (key,))
    for key in ("oneOf", "anyOf", "allOf"):
        for i, child in enumerate(node.get(key, [])):
            yield from walk_schema(child, path + (key, str(i)))


def chart_defined_objects(node=SCHEMA, path=()):
    """(values path, schema) of the objects the chart itself defines (not $ref'd
    Kubernetes types, not maps)."""
    yield path, node
    for name, child in node.get("properties", {}).items():
        if "$ref" not in child and child.get("type") == "object" and "properties" in child:
            yield from chart_defined_objects(child, path + (name,))


def test_defaults_satisfy_the_schema():
    jsonschema.Draft7Validator.check_schema(SCHEMA)
    errors = [f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in jsonschema.Draft7Validator(SCHEMA).iter_errors(VALUES)]
    assert errors == []


def test_every_value_is_in_the_schema():
    missing = [".".join(path) for path, _ in walk_values(VALUES) if readme.schema_node(SCHEMA, path) is None]
    assert missing == []


def test_every_schema_key_is_a_value():
    """The chart's own keys: every `properties` entry outside the $ref'd Kubernetes types
    has a default in values.yaml (and so a documented row in the README)."""
    missing = []
    for path, node in chart_defined_objects():
        value = VALUES
        for key in path:
            value = value[key]
        missing += [".".join(path + (name,)) for name in node["properties"] if name not in value]
    assert missing == []


def test_every_object_in_the_schema_rejects_unknown_keys():
    """additionalProperties is false at every level; maps say what their values are; the
    few pass-through Kubernetes objects are marked free-form and say why."""
    loose = []
    for path, node in walk_schema(SCHEMA):
        if not isinstance(node, dict) or (node.get("type") != "object" and "properties" not in node):
            continue
        extra = node.get("additionalProperties", True)
        if "properties" in node and extra is not False:
            loose.append("/".join(path) + ": has properties but allows others")
        elif "properties" not in node and extra is True and not str(node.get("$comment", "")).startswith("free-form:"):
            loose.append("/".join(path) + ": an object that allows anything")
    assert loose == []
    free_form = [p for p, n in walk_schema(SCHEMA) if isinstance(n, dict) and str(n.get("$comment", "")).startswith("free-form:")]
    assert len(free_form) <= 4, free_form  # affinity's three and a policy's spec


@pytest.mark.parametrize("path", [p for p, _ in chart_defined_objects()], ids=lambda p: ".".join(p) or "(root)")
def test_unknown_key_is_rejected_at_every_level(chart, path):
    values: dict = {}
    cursor = values
    for key in path:
        cursor = cursor.setdefault(key, {})
    cursor["surelyNotAValue"] = True
    with pytest.raises(HelmValuesError, match="surelyNotAValue"):
        chart.validate_schema(values)


@pytest.mark.parametrize(
    "values",
    [
        {"webhook": {"failurePolicy": "fail"}},
        {"webhook": {"timeoutSeconds": 31}},
        {"webhook": {"annotatedPodsOnly": "on"}},
        {"tls": {"mode": "certmanager"}},
        {"replicaCount": 0},
        {"server": {"logFormat": "yaml"}},
        {"server": {"annotationPrefix": "Tandem.dev/"}},
        {"podDisruptionBudget": {"maxUnavailable": 0}},
        {"resources": {"requests": {"cpu": "lots"}}},
        {"containerSecurityContext": {"privilegd": True}},
        {"tolerations": [{"key": "a", "effect": "NoSchedul"}]},
        {"networkPolicy": {"metricsFrom": [{"namespaceSelecter": {}}]}},
        {"image": {"digest": "latest"}},
        {"serviceMonitor": {"interval": "30 seconds"}},
    ],
    ids=lambda v: json.dumps(v),
)
def test_mistyped_values_are_rejected(chart, values):
    with pytest.raises(HelmValuesError):
        chart.validate_schema(values)


def test_every_chart_value_has_a_comment():
    keys = readme.documented_keys(VALUES_TEXT)
    assert set(keys) <= {path for path, _ in walk_values(VALUES)}  # the parser reads real keys
    undocumented = [
        ".".join(path)
        for path, value in walk_values(VALUES)
        if readme.is_row(SCHEMA, path, value) and not readme.first_paragraph(keys.get(path, []))
    ]
    assert undocumented == []
    rows = [p for p, v in walk_values(VALUES) if readme.is_row(SCHEMA, p, v)]
    assert len(rows) > 60


def test_readme_values_table_is_generated_from_values_yaml():
    current = (CHART_DIR / "README.md").read_text()
    assert current == readme.render(current), "run: python3 tests/chart/readme.py"


@pytest.mark.parametrize(
    "heading",
    [
        "## Installing",
        "## Upgrading",
        "## Uninstalling",
        "## Choosing failurePolicy",
        "## What happens when the webhook is down",
        "## Excluding a namespace",
        "## Seeing what was injected",
        "## Values",
    ],
)
def test_readme_covers(heading):
    text = (CHART_DIR / "README.md").read_text()
    assert f"\n{heading}\n" in text


def test_readme_install_is_one_command():
    text = (CHART_DIR / "README.md").read_text()
    assert "helm install tandem charts/tandem -n tandem-system --create-namespace\n" in text
    for needle in ("kubectl get pod", "tandem.dev/injected", "/metrics", "tandem.dev/inject=disabled"):
        assert needle in text


def test_trade_offs_are_documented_next_to_the_values():
    keys = readme.documented_keys(VALUES_TEXT)
    failure = " ".join(keys[("webhook", "failurePolicy")])
    assert "Fail" in failure and "Ignore" in failure and "cannot be created" in failure and "without" in failure
    timeout = " ".join(keys[("webhook", "timeoutSeconds")])
    assert "hang" in timeout
    gate = " ".join(keys[("webhook", "annotatedPodsOnly")])
    # what CEL cannot see, and the label that opts a namespace out of the filter
    assert "namespace's annotations" in gate and "defaults" in gate and "false" in gate
    assert "tandem.dev/inject=enabled" in gate
    cidrs = " ".join(keys[("networkPolicy", "apiServerCIDRs")])
    assert "Cluster specific" in cidrs

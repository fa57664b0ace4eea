"""The Grafana dashboard (a ConfigMap for Grafana's sidecar) and the PrometheusRule: off by
default, shaped as their consumers read them, and following the values. That their
queries and alerts work is proven against a real Prometheus in tests/prometheus/."""

from __future__ import annotations

import json
import re

import pytest

from chartlib import NAMESPACE, SCENARIOS

ALERTS = [
    "TandemWebhookDown",
    "TandemDenialRateHigh",
    "TandemCertificateExpiringSoon",
    "TandemPolicyReloadFailing",
    "TandemReviewLatencyHigh",
]


def dashboard_map(objects) -> dict:
    (config_map,) = [o for o in objects.all("ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]
    return config_map


def dashboard(objects) -> dict:
    return json.loads(dashboard_map(objects)["data"]["tandem.json"])


def rules(objects) -> dict[str, dict]:
    (group,) = objects.one("PrometheusRule")["spec"]["groups"]
    assert group["name"] == "tandem"
    return {rule["alert"]: rule for rule in group["rules"]}


def test_both_are_off_by_default(render):
    objects = render({})
    assert not objects.all("PrometheusRule")
    assert not [o for o in objects.all("ConfigMap") if o["metadata"]["name"].endswith("-dashboard")]


def test_dashboard_config_map_is_labelled_for_the_grafana_sidecar(render):
    config_map = dashboard_map(render(SCENARIOS["monitoring"]))
    assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert config_map["metadata"]["namespace"] == NAMESPACE
    everything = dashboard_map(render(SCENARIOS["everything"]))
    assert everything["metadata"]["namespace"] == "monitoring"
    assert everything["metadata"]["annotations"] == {"grafana_folder": "Platform"}
    assert len(json.dumps(config_map)) < 1024 * 1024 / 4  # far from a ConfigMap's 1 MiB


def test_dashboard_panels_ask_prometheus_through_the_variables(render):
    board = dashboard(render(SCENARIOS["monitoring"]))
    assert board["uid"] and board["title"] == "tandem"
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "$job" not in variables["job"]["definition"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    titles = " / ".join(p["title"] for p in board["panels"])
    for asked in ("Reviews per second", "latency", "Denials", "Injections", "Policy reloads", "Certificate", "Replicas ready"):
        assert asked in titles, asked
    cells = set()
    for panel in board["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            # Every selector names the job variable, so the dashboard shows one release.
            selectors = re.findall(r"[a-z_:]+\{([^}]*)\}", expr)
            assert selectors and all('job=~"$job"' in s for s in selectors), expr
        pos = panel["gridPos"]
        for x in range(pos["x"], pos["x"] + pos["w"]):
            for y in range(pos["y"], pos["y"] + pos["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))
        assert pos["x"] + pos["w"] <= 24


def test_rule_has_the_five_alerts_with_severity_and_text(render):
    objects = render(SCENARIOS["monitoring"])
    rule = objects.one("PrometheusRule")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    by_name = rules(objects)
    assert list(by_name) == ALERTS
    for name, alert in by_name.items():
        assert alert["labels"]["severity"] in ("critical", "warning"), name
        assert alert["annotations"]["summary"] and alert["annotations"]["description"], name
        assert re.fullmatch(r"\d+[smh]", alert["for"]), name
        assert 'job="tandem"' in alert["expr"], name  # the ServiceMonitor's job: the Service name
        # Helm left nothing unrendered; Prometheus' own templates remain in the text.
        assert "{{" not in alert["expr"], name


def test_rule_follows_the_values(render):
    by_name = rules(render(SCENARIOS["everything"]))
    for name, alert in by_name.items():
        assert 'job="inject",namespace="tandem-system"' in alert["expr"], name
        assert alert["labels"]["team"] == "platform", name
    assert by_name["TandemWebhookDown"]["labels"]["severity"] == "warning"  # failurePolicy Ignore
    assert by_name["TandemDenialRateHigh"]["expr"].endswith("> 0.25")
    assert by_name["TandemCertificateExpiringSoon"]["expr"].endswith(f"< {21 * 86400}")
    # webhook.timeoutSeconds 5 in that scenario, 0.8 of it
    assert by_name["TandemReviewLatencyHigh"]["expr"].endswith("> 4")
    assert rules(render(SCENARIOS["monitoring"]))["TandemWebhookDown"]["labels"]["severity"] == "critical"


@pytest.mark.parametrize(
    "mode, hint",
    [("auto", "get lease tandem-tls"), ("helm", "delete the Secret"), ("certManager", "describe certificate"), ("tls-secret", "Update the Secret")],
)
def test_certificate_alert_says_how_to_renew_in_each_tls_mode(render, mode, hint):
    values = SCENARIOS[mode] if mode in SCENARIOS else {"tls": {"mode": mode}}
    values = {**values, "prometheusRule": {"enabled": True}}
    text = rules(render(values))["TandemCertificateExpiringSoon"]["annotations"]["description"]
    assert hint in text, text


@pytest.mark.parametrize(
    "values",
    [
        {"prometheusRule": {"denialRatio": 0}},
        {"prometheusRule": {"denialRatio": 2}},
        {"prometheusRule": {"latencyTimeoutRatio": 1.5}},
        {"prometheusRule": {"certificateExpiryDays": 0}},
        {"prometheusRule": {"selector": '{job="x"}'}},
        {"prometheusRule": {"unknown": True}},
        {"grafanaDashboard": {"labels": {"a": 1}}},
    ],
)
def test_schema_rejects_bad_monitoring_values(chart, values):
    from helm_python.errors import HelmValuesError

    with pytest.raises(HelmValuesError):
        chart.validate_schema(values)
    chart.validate_schema({"prometheusRule": {"enabled": True}, "grafanaDashboard": {"enabled": True}})

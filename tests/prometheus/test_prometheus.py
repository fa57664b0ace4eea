"""The chart's Grafana dashboard and PrometheusRule, judged by a real Prometheus (built by
tests/prometheus/build.sh from the Go module proxy, cached outside the clone).

`promtool check rules` passes on the rendered rule. A Prometheus on loopback scrapes a
running tandem under load (good and bad reviews) every second and evaluates the rule
every second; every dashboard query and every selector of every alert expression
returns series from it, so a panel or an alert naming a metric tandem does not export
fails here. Then each alert's condition is brought about for real (bad annotations, a
certificate that expires in a day, a broken policy file, reviews whose bodies take
seconds to arrive, tandem shutting down and stopping) and the alert must show up as
pending or firing in Prometheus' own /api/v1/alerts. The rule is used as the chart
renders it, `for:` durations included: an alert whose expression holds is pending
from its first evaluation, which is what is checked (firing would take the `for:`).
"""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from harness import build_tandem, render_chart  # noqa: E402
from controlplane import CA, Process, free_port, write  # noqa: E402

HERE = Path(__file__).resolve().parent
JOB = "tandem"  # the ServiceMonitor's job for release "tandem": the Service's name
# webhook.timeoutSeconds 2 puts TandemReviewLatencyHigh's threshold at 1 s (half of it,
# the default latencyTimeoutRatio), which a review whose body takes 1.5 s crosses.
VALUES = {
    "prometheusRule": {"enabled": True},
    "grafanaDashboard": {"enabled": True},
    "webhook": {"timeoutSeconds": 2},
}
ALERTS = {"TandemWebhookDown", "TandemDenialRateHigh", "TandemCertificateExpiringSoon", "TandemPolicyReloadFailing", "TandemReviewLatencyHigh"}
WAIT = 60
POLICY = """apiVersion: tandem.dev/v1alpha1
kind: InjectionPolicy
metadata: {name: payments-logging}
spec:
  priority: 100
  selector: {namespaces: {matchLabels: {team: payments}}}
  defaults: {log-shipper: {profile: fluent-bit, path: /var/log/app}}
"""


def bins() -> Path:
    out = subprocess.run(["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True).stdout
    return Path(out.strip().splitlines()[-1])


# --- what the chart renders --------------------------------------------------------------


@pytest.fixture(scope="module")
def rendered():
    return render_chart(VALUES)


@pytest.fixture(scope="module")
def rules_file(rendered, tmp_path_factory) -> Path:
    """The PrometheusRule's groups as a Prometheus rule file, exactly as rendered."""
    spec = rendered.one("PrometheusRule")["spec"]
    return write(tmp_path_factory.mktemp("rules") / "tandem.rules.yaml", yaml.safe_dump({"groups": spec["groups"]}, sort_keys=False), 0o644)


@pytest.fixture(scope="module")
def dashboard(rendered) -> dict:
    (config_map,) = [o for o in rendered.all("ConfigMap") if o["metadata"]["labels"].get("grafana_dashboard") == "1"]
    return json.loads(config_map["data"]["tandem.json"])


def panel_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every target, with Grafana's variables as Grafana would
    fill them in for this job."""
    queries = []
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            expr = target["expr"].replace("$__rate_interval", "1m").replace("$job", JOB)
            queries.append((panel["title"], expr))
    return queries


def test_promtool_accepts_the_rendered_rule(rules_file):
    result = subprocess.run([str(bins() / "promtool"), "check", "rules", str(rules_file)], capture_output=True, text=True)
    print(result.stdout, result.stderr)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(ALERTS)} rules found" in result.stdout


# --- the running parts -------------------------------------------------------------------


def until_ready(process: Process, url: str, timeout: float = 60) -> None:
    """Waits until `url` answers 200, failing early if `process` exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.popen.poll() is None, f"{process.name} exited: {process.tail()}"
        try:
            urllib.request.urlopen(url, timeout=1)
            return
        except OSError:
            time.sleep(0.2)
    raise AssertionError(f"{process.name} not ready within {timeout}s: {process.tail()}")


class Tandem:
    """`tandem serve` on loopback with a certificate from `ca`, policies from `policies`."""

    def __init__(self, workdir: Path, ca: CA, policies: Path):
        self.dir = workdir
        self.ca = ca
        self.port, self.metrics_port = free_port(), free_port()
        self.tls = workdir / "tls"
        self.rotate(days=365)
        argv = [
            str(build_tandem()),
            "serve",
            f"--addr=127.0.0.1:{self.port}",
            f"--metrics-addr=127.0.0.1:{self.metrics_port}",
            f"--tls-cert={self.tls / 'tls.crt'}",
            f"--tls-key={self.tls / 'tls.key'}",
            f"--policies={policies}",
            # Long enough to see it not ready while it still answers scrapes.
            "--shutdown-delay=15s",
            "--shutdown-timeout=2s",
            "--workers=2",
        ]
        self.process = Process("tandem", argv, workdir / "tandem.log")

    def rotate(self, days: float) -> None:
        """A new serving certificate valid for `days`, written as cert-manager would."""
        cert, key = self.ca.issue("tandem", dns=["localhost"], ips=["127.0.0.1"], days=days)
        staging = self.dir / f"tls-{uuid.uuid4().hex[:6]}"
        write(staging / "tls.crt", cert, 0o644)
        write(staging / "tls.key", key)
        for name in ("tls.crt", "tls.key"):
            self.tls.mkdir(exist_ok=True)
            os.replace(staging / name, self.tls / name)
        staging.rmdir()

    def start(self) -> "Tandem":
        self.process.start({**os.environ, "TANDEM_LOG": "info"})
        until_ready(self.process, f"http://127.0.0.1:{self.metrics_port}/readyz")
        return self

    def context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cadata=self.ca.pem.decode())
        return context

    def review(self, annotations: dict[str, str]) -> dict:
        body = json.dumps(admission_review(annotations)).encode()
        request = urllib.request.Request(f"https://127.0.0.1:{self.port}/mutate", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, context=self.context(), timeout=10) as response:
            return json.loads(response.read())["response"]

    def slow_review(self, seconds: float) -> dict:
        """A review whose body arrives in pieces over `seconds`, as from a congested link:
        tandem's duration runs from the request's head to its answer."""
        body = json.dumps(admission_review({"tandem.dev/log-shipper": "true"})).encode()
        pieces = 8
        step = len(body) // pieces + 1
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as raw:
            with self.context().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                head = f"POST /mutate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
                tls.sendall(head.encode())
                for i in range(0, len(body), step):
                    tls.sendall(body[i : i + step])
                    time.sleep(seconds / pieces)
                answer = b""
                while chunk := tls.recv(65536):
                    answer += chunk
        status = answer.split(b"\r\n", 1)[0]
        assert b" 200 " in status, answer[:300]
        return json.loads(answer.split(b"\r\n\r\n", 1)[1])["response"]


def admission_review(annotations: dict[str, str]) -> dict:
    uid = str(uuid.uuid4())
    return {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "shop",
            "operation": "CREATE",
            "userInfo": {"username": "tester"},
            "object": {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"generateName": "web-", "namespace": "shop", "annotations": annotations},
                "spec": {"containers": [{"name": "web", "image": "ghcr.io/example/web:1.0"}]},
            },
        },
    }


class Prometheus:
    """A Prometheus on loopback scraping `target` every second and evaluating `rules`
    every second."""

    def __init__(self, workdir: Path, binary: Path, target: str, rules: Path):
        self.port = free_port()
        config = {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(rules)],
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [target]}]}],
        }
        config_file = write(workdir / "prometheus.yml", yaml.safe_dump(config), 0o644)
        argv = [
            str(binary),
            f"--config.file={config_file}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.process = Process("prometheus", argv, workdir / "prometheus.log")

    def start(self) -> "Prometheus":
        self.process.start(dict(os.environ))
        until_ready(self.process, f"http://127.0.0.1:{self.port}/-/ready")
        return self

    def api(self, path: str, **params) -> dict:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params, doseq=True)
        with urllib.request.urlopen(url, timeout=10) as response:
            answer = json.loads(response.read())
        assert answer["status"] == "success", answer
        return answer["data"]

    def query(self, expr: str) -> list[dict]:
        return self.api("query", query=expr)["result"]

    def active(self) -> dict[str, list[dict]]:
        """The alerts Prometheus holds, by name."""
        out: dict[str, list[dict]] = {}
        for alert in self.api("alerts")["alerts"]:
            out.setdefault(alert["labels"]["alertname"], []).append(alert)
        return out

    def until_active(self, name: str, timeout: float = WAIT) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            alerts = [a for a in self.active().get(name, []) if a["state"] in ("pending", "firing")]
            if alerts:
                return alerts
            time.sleep(0.5)
        raise AssertionError(f"{name} not pending or firing within {timeout}s; active: {json.dumps(self.active(), indent=1)}")


def selectors(ast: dict) -> list[dict]:
    """Every vector and matrix selector in a parsed query (Prometheus' /api/v1/parse_query)."""
    found = []
    if isinstance(ast, dict):
        if ast.get("type") in ("vectorSelector", "matrixSelector"):
            found.append(ast)
        for value in ast.values():
            found += selectors(value)
    elif isinstance(ast, list):
        for value in ast:
            found += selectors(value)
    return found


def selector_text(selector: dict) -> str:
    return "{" + ",".join(f'{m["name"]}{m["type"]}{json.dumps(m["value"])}' for m in selector["matchers"]) + "}"


@pytest.fixture(scope="module")
def stack(tmp_path_factory, rules_file):
    workdir = tmp_path_factory.mktemp("prometheus-stack")
    print(f"\nlogs in {workdir}")
    policies = workdir / "policies"
    write(policies / "payments.yaml", POLICY, 0o644)
    tandem = Tandem(workdir, CA.new("tandem-test-ca"), policies)
    prometheus = Prometheus(workdir, bins() / "prometheus", f"127.0.0.1:{tandem.metrics_port}", rules_file)
    try:
        tandem.start()
        prometheus.start()
        yield tandem, prometheus, policies
    finally:
        tandem.process.stop()
        prometheus.process.stop()


def load(tandem: Tandem, good: int, bad: int) -> None:
    """Reviews as the API server sends them: patched, unchanged and denied ones."""
    for i in range(good):
        annotations = {"tandem.dev/log-shipper": "true"} if i % 2 else {"team": "shop"}
        assert tandem.review(annotations)["allowed"]
    for _ in range(bad):
        answer = tandem.review({"tandem.dev/log-shipper": "true", "tandem.dev/log-shipper.path": "var/log/app"})
        assert not answer["allowed"] and answer["status"]["code"] == 400


def test_dashboard_and_alerts_against_a_real_prometheus(stack, dashboard, rules_file):
    tandem, prometheus, policies = stack

    # Healthy, under load: a few denials among many good reviews, spread over scrapes.
    deadline = time.monotonic() + WAIT
    while not prometheus.query(f'up{{job="{JOB}"}} == 1'):
        assert time.monotonic() < deadline, "Prometheus never scraped tandem"
        time.sleep(0.2)
    for _ in range(4):
        load(tandem, good=50, bad=1)
        time.sleep(1)
    deadline = time.monotonic() + WAIT
    while not prometheus.query(f'rate(tandem_admission_reviews_total{{job="{JOB}"}}[1m]) > 0'):
        assert time.monotonic() < deadline, "Prometheus never saw the reviews"
        time.sleep(0.5)

    # Every dashboard query returns series, and every metric it names is one tandem
    # exports (or Prometheus' own `up` of its target).
    for title, expr in panel_queries(dashboard):
        result = prometheus.query(expr)
        assert result, f"panel {title!r}: no series for {expr}"
        for selector in selectors(prometheus.api("parse_query", query=expr)):
            assert selector["name"] == "up" or selector["name"].startswith("tandem_"), (title, selector["name"])
            assert prometheus.api("series", **{"match[]": selector_text(selector)}), f"panel {title!r}: {selector_text(selector)} has no series"
    print(f"{len(panel_queries(dashboard))} dashboard queries answered")

    # Every alert is loaded, healthy, and reads only series that exist.
    (group,) = prometheus.api("rules")["groups"]
    assert {rule["name"] for rule in group["rules"]} == ALERTS
    rules = yaml.safe_load(rules_file.read_text())["groups"][0]["rules"]
    for rule in rules:
        for selector in selectors(prometheus.api("parse_query", query=rule["expr"])):
            assert prometheus.api("series", **{"match[]": selector_text(selector)}), f"{rule['alert']}: {selector_text(selector)} has no series"
    deadline = time.monotonic() + WAIT
    while any(rule["health"] != "ok" for rule in prometheus.api("rules")["groups"][0]["rules"]):
        assert time.monotonic() < deadline, prometheus.api("rules")
        time.sleep(0.5)
    # …and none is active while all is well (the first scrapes may leave TandemWebhookDown
    # pending for a moment).
    deadline = time.monotonic() + WAIT
    while prometheus.active():
        assert time.monotonic() < deadline, f"alerts while all is well: {json.dumps(prometheus.active(), indent=1)}"
        time.sleep(0.5)

    seen: dict[str, dict] = {}

    def expect(name: str) -> None:
        alert = prometheus.until_active(name)[0]
        seen[name] = alert
        print(f"\n{name}: {json.dumps(alert)}")

    # Bad annotations: the share of denied reviews passes 10 %.
    load(tandem, good=0, bad=60)
    expect("TandemDenialRateHigh")

    # A certificate that expires in a day, rotated in as cert-manager would.
    tandem.rotate(days=1)
    expect("TandemCertificateExpiringSoon")
    assert float(seen["TandemCertificateExpiringSoon"]["value"]) < 86400 + 60

    # A broken policy file: the reload fails and the last good set stays.
    write(policies / "broken.yaml", POLICY.replace("payments-logging", "broken").replace("priority: 100", "priority: high"), 0o644)
    expect("TandemPolicyReloadFailing")
    assert seen["TandemPolicyReloadFailing"]["labels"]["source"] == "files"
    assert tandem.review({"tandem.dev/log-shipper": "true"})["allowed"], "the last good set still serves"

    # Reviews whose bodies take 1.5 s: the p99 passes half of the 2 s webhook timeout.
    threads = [threading.Thread(target=tandem.slow_review, args=(1.5,)) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    expect("TandemReviewLatencyHigh")
    assert float(seen["TandemReviewLatencyHigh"]["value"]) > 1

    # Shutting down: not ready while it still answers scrapes (--shutdown-delay), so
    # the `sum(tandem_ready) == 0` half holds…
    tandem.process.popen.send_signal(15)
    expect("TandemWebhookDown")
    assert prometheus.query(f'up{{job="{JOB}"}} == 1'), "still scraped while not ready"
    assert prometheus.query(f'sum(tandem_ready{{job="{JOB}"}}) == 0')
    # …then gone, its target down: tandem's series go stale and only the `absent(up == 1)`
    # half can hold the alert.
    tandem.process.popen.wait(timeout=30)
    deadline = time.monotonic() + WAIT
    while prometheus.query(f'tandem_ready{{job="{JOB}"}}') or not prometheus.query(f'up{{job="{JOB}"}} == 0'):
        assert time.monotonic() < deadline, "Prometheus never saw the target down"
        time.sleep(0.5)
    assert prometheus.query(f'absent(up{{job="{JOB}"}} == 1)')
    # The alert stays active, now with the absent half's value: 1 (the other half's was 0).
    deadline = time.monotonic() + WAIT
    while not any(float(a["value"]) == 1 for a in prometheus.until_active("TandemWebhookDown")):
        assert time.monotonic() < deadline, json.dumps(prometheus.active(), indent=1)
        time.sleep(0.5)
    expect("TandemWebhookDown")
    assert float(seen["TandemWebhookDown"]["value"]) == 1

    assert set(seen) == ALERTS
    print("\n/api/v1/alerts:\n" + json.dumps(prometheus.api("alerts"), indent=1))

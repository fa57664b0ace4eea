"""RBAC, the policy ConfigMap, ServiceMonitor, NetworkPolicy and the `helm test` pod."""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from chartlib import (
    NAMESPACE,
    POLICY_WITH_DEFAULTS,
    POLICY_WITHOUT_DEFAULTS,
    SCENARIOS,
    container,
    container_port,
    flags,
    pod_of,
    podcheck,
    selects,
)

READ_ONLY = ["get", "list", "watch"]

# --- RBAC -----------------------------------------------------------------------------------


def test_rbac_is_exactly_read_only_on_namespaces_and_injectionpolicies(render):
    objects = render({"tls": {"mode": "helm"}})
    role = objects.one("ClusterRole")
    rules = sorted(role["rules"], key=lambda r: r["apiGroups"])
    assert rules == [
        {"apiGroups": [""], "resources": ["namespaces"], "verbs": READ_ONLY},
        {"apiGroups": ["tandem.dev"], "resources": ["injectionpolicies"], "verbs": READ_ONLY},
    ]
    for rule in rules:
        assert "*" not in rule["verbs"] + rule["resources"] + rule["apiGroups"]
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
    binding = objects.one("ClusterRoleBinding")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    account = objects.one("ServiceAccount")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["metadata"]["name"], "namespace": NAMESPACE}]
    assert pod_of(objects.one("Deployment"))["spec"]["serviceAccountName"] == account["metadata"]["name"]
    assert not objects.all("Role") and not objects.all("RoleBinding")


@pytest.mark.parametrize("values", [{"server": {"watchCluster": False}, "tls": {"mode": "helm"}}, {"rbac": {"create": False}}])
def test_no_rbac_when_not_needed_or_not_wanted(render, values):
    objects = render(values)
    assert not objects.all("ClusterRole") and not objects.all("ClusterRoleBinding")
    assert not objects.all("Role") and not objects.all("RoleBinding")


@pytest.mark.parametrize("watch", [True, False])
def test_auto_tls_rbac_names_its_secret_lease_and_webhook(render, watch):
    """tls.mode=auto: the one Secret and Lease and the chart's own webhook configuration by
    resourceNames; `create` (which RBAC cannot limit by name) only on Secrets and Leases
    in the release namespace; no delete anywhere."""
    objects = render({"server": {"watchCluster": watch}})
    webhook_name = objects.one("MutatingWebhookConfiguration")["metadata"]["name"]
    secret = flags(container(pod_of(objects.one("Deployment")), "tandem"))["tls-secret"]
    rules = objects.one("ClusterRole")["rules"]
    assert rules[-1] == {
        "apiGroups": ["admissionregistration.k8s.io"],
        "resources": ["mutatingwebhookconfigurations"],
        "resourceNames": [webhook_name],
        "verbs": ["get", "list", "watch", "patch"],
    }
    assert len(rules) == (3 if watch else 1)
    role = objects.one("Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    assert role["rules"] == [
        {"apiGroups": [""], "resources": ["secrets"], "resourceNames": [secret], "verbs": ["get", "list", "watch", "update"]},
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "resourceNames": [secret], "verbs": ["get", "update", "patch"]},
        {"apiGroups": ["coordination.k8s.io"], "resources": ["leases"], "verbs": ["create"]},
    ]
    binding = objects.one("RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == objects.one("ClusterRoleBinding")["subjects"]
    for rule in rules + role["rules"]:
        assert "delete" not in rule["verbs"] and "*" not in rule["verbs"] + rule["resources"]
    assert pod_of(objects.one("Deployment"))["spec"]["automountServiceAccountToken"] is True


def test_an_existing_service_account_can_be_used(render):
    objects = render({"serviceAccount": {"create": False, "name": "platform-tandem"}})
    assert not objects.all("ServiceAccount")
    assert pod_of(objects.one("Deployment"))["spec"]["serviceAccountName"] == "platform-tandem"
    assert objects.one("ClusterRoleBinding")["subjects"][0]["name"] == "platform-tandem"


# --- policies ---------------------------------------------------------------------------------


def policy_documents(objects) -> list[dict]:
    text = objects.one("ConfigMap")["data"]["policies.yaml"]
    return [d for d in yaml.safe_load_all(text) if d is not None]


def test_no_policies_by_default(render):
    assert policy_documents(render({})) == []


def test_policies_from_values_become_injection_policy_documents(render):
    docs = policy_documents(render({"policies": [POLICY_WITH_DEFAULTS, POLICY_WITHOUT_DEFAULTS]}))
    assert docs == [
        {"apiVersion": "tandem.dev/v1alpha1", "kind": "InjectionPolicy", **POLICY_WITH_DEFAULTS},
        POLICY_WITHOUT_DEFAULTS,
    ]


def test_policy_values_reject_other_kinds(chart):
    from helm_python.errors import HelmValuesError

    with pytest.raises(HelmValuesError):
        chart.validate_schema({"policies": [{"kind": "ConfigMap", "metadata": {"name": "x"}, "spec": {}}]})
    with pytest.raises(HelmValuesError):
        chart.validate_schema({"policies": [{"metadata": {"name": "x"}}]})  # no spec


# --- ServiceMonitor ---------------------------------------------------------------------------


def test_service_monitor_scrapes_the_metrics_port(render):
    objects = render(SCENARIOS["monitoring"])
    monitor = objects.one("ServiceMonitor")
    service = objects.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == NAMESPACE
    assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert selects(monitor["spec"]["selector"], service["metadata"]["labels"])
    assert monitor["spec"]["namespaceSelector"] == {"matchNames": [NAMESPACE]}
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and endpoint["scheme"] == "http"
    (port,) = [p for p in service["spec"]["ports"] if p["name"] == endpoint["port"]]
    c = container(pod_of(objects.one("Deployment")), "tandem")
    assert container_port(c, port["targetPort"]) == 9090
    assert render(SCENARIOS["everything"]).one("ServiceMonitor")["metadata"]["namespace"] == "monitoring"


# --- NetworkPolicy ----------------------------------------------------------------------------


def test_network_policy_admits_only_the_api_server_and_prometheus(render):
    objects = render(SCENARIOS["monitoring"])
    policy = objects.one("NetworkPolicy")["spec"]
    deployment = objects.one("Deployment")
    c = container(pod_of(deployment), "tandem")
    assert selects(policy["podSelector"], pod_of(deployment)["metadata"]["labels"])
    assert policy["policyTypes"] == ["Ingress"]
    webhook_rule, metrics_rule = policy["ingress"]

    assert [container_port(c, p["port"]) for p in webhook_rule["ports"]] == [8443]
    assert [p["ipBlock"]["cidr"] for p in webhook_rule["from"] if "ipBlock" in p] == ["0.0.0.0/0", "::/0"]
    pods = [p for p in webhook_rule["from"] if "ipBlock" not in p]
    assert len(pods) == 1 and "namespaceSelector" not in pods[0]  # only the helm test pod, this namespace
    assert selects(pods[0]["podSelector"], objects.one("Pod")["metadata"]["labels"])
    assert not selects(pods[0]["podSelector"], {"app": "web"})

    assert [container_port(c, p["port"]) for p in metrics_rule["ports"]] == [9090]
    (prometheus,) = metrics_rule["from"]
    assert prometheus == {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}},
        "podSelector": {"matchLabels": {"app.kubernetes.io/name": "prometheus"}},
    }


def test_network_policy_cidrs_and_selectors_are_values(render):
    policy = render(SCENARIOS["everything"]).one("NetworkPolicy")["spec"]
    webhook_rule, metrics_rule = policy["ingress"]
    assert [p["ipBlock"]["cidr"] for p in webhook_rule["from"] if "ipBlock" in p] == ["10.0.0.0/24"]
    assert metrics_rule["from"] == [{"namespaceSelector": {"matchLabels": {"team": "observability"}}, "podSelector": {}}]
    no_test = render({"networkPolicy": {"enabled": True}, "tests": {"enabled": False}}).one("NetworkPolicy")
    assert all("ipBlock" in p for p in no_test["spec"]["ingress"][0]["from"])


# --- helm test --------------------------------------------------------------------------------


def helm_test_pod(objects) -> tuple[dict, dict]:
    pod = objects.one("Pod")
    return pod, container(pod, "test")


def env(c: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c["env"]}


@pytest.mark.parametrize("scenario", ["default", "tls-certManager", "tls-secret", "everything"])
def test_helm_test_pod_is_valid_and_restricted(render, scenario):
    objects = render(SCENARIOS[scenario])
    pod, c = helm_test_pod(objects)
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert "hook-succeeded" in pod["metadata"]["annotations"]["helm.sh/hook-delete-policy"]
    assert podcheck.validate_pod(pod) == []
    assert podcheck.restricted_errors(pod) == []
    assert pod["spec"]["restartPolicy"] == "Never"
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]


@pytest.mark.parametrize("scenario", ["default", "everything"])
def test_helm_test_calls_the_webhook_through_its_service(render, scenario):
    objects = render(SCENARIOS[scenario])
    pod, c = helm_test_pod(objects)
    service = objects.one("Service")
    hook = objects.one("MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]
    url = urlsplit(env(c)["URL"])
    assert url.scheme == "https"
    assert url.hostname == f"{service['metadata']['name']}.{NAMESPACE}.svc"
    assert url.port == hook["port"] and url.path == hook["path"]
    # it trusts the CA from the TLS Secret the server uses
    (volume,) = pod["spec"]["volumes"]
    server = pod_of(objects.one("Deployment"))
    server_tls = [v["secret"]["secretName"] for v in server["spec"]["volumes"] if v["name"] == "tls"]
    # tls.mode=auto: the Secret tandem keeps; the others: the Secret the server mounts
    secret = server_tls[0] if server_tls else flags(container(server, "tandem"))["tls-secret"]
    assert volume["secret"]["secretName"] == secret
    assert volume["secret"]["items"] == [{"key": "ca.crt", "path": "ca.crt"}]
    (mount,) = c["volumeMounts"]
    assert f"--cacert {mount['mountPath']}/ca.crt" in c["args"][0]
    # a real AdmissionReview of a valid pod
    review = json.loads(env(c)["REVIEW"])
    assert review["apiVersion"] == "admission.k8s.io/v1" and review["kind"] == "AdmissionReview"
    request = review["request"]
    assert request["operation"] == "CREATE" and request["kind"] == {"group": "", "version": "v1", "kind": "Pod"}
    assert request["resource"] == {"group": "", "version": "v1", "resource": "pods"}
    assert request["uid"] and request["userInfo"]["username"]
    assert podcheck.validate_object({**request["object"], "metadata": {**request["object"]["metadata"], "name": "x"}}) == []


class FakeWebhook:
    """An HTTPS /mutate endpoint on loopback, with a certificate of our choice, answering
    the way the test case asks."""

    def __init__(self, cert: Path, key: Path, answer: str = "allow"):
        self.reviews: list[dict] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                review = json.loads(body)
                fake.reviews.append({"path": self.path, "type": self.headers["Content-Type"], "review": review})
                uid = review["request"]["uid"] if answer != "wrong-uid" else "someone-else"
                response = {"uid": uid, "allowed": answer != "deny"}
                if answer == "deny":
                    response["status"] = {"code": 400, "message": "denied"}
                raw = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response},
                    separators=(",", ":"),
                ).encode()
                self.send_response(500 if answer == "error" else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


CURL_SHIM = '''#!{python}
"""curl as the test pod runs it, but the Service name resolves to the loopback fake
and retries are dropped (they only wait for a pod that is not ready yet)."""
import os, sys
args, skip = [], 0
for a in sys.argv[1:]:
    if skip:
        skip -= 1
        continue
    if a in ("--retry", "--retry-delay"):
        skip = 1
        continue
    if a == "--retry-all-errors":
        continue
    args.append(a)
os.execv({curl!r}, ["curl", "--resolve", os.environ["RESOLVE"], *args])
'''


def run_helm_test(tmp_path: Path, objects, cert_pem: str, key_pem: str, answer: str = "allow"):
    """Run the test pod's script with the pod's environment against a fake webhook that
    presents `cert_pem` for the Service's DNS name."""
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    pod, c = helm_test_pod(objects)
    (mount,) = c["volumeMounts"]
    secret = objects.one("Secret")["data"]
    (tmp_path / "ca.crt").write_bytes(base64.b64decode(secret["ca.crt"]))
    (tmp_path / "tls.crt").write_text(cert_pem)
    (tmp_path / "tls.key").write_text(key_pem)
    shim = tmp_path / "bin" / "curl"
    shim.parent.mkdir()
    shim.write_text(CURL_SHIM.format(python=sys.executable, curl=curl))
    shim.chmod(0o755)
    script = c["args"][0].replace(f"{mount['mountPath']}/ca.crt", str(tmp_path / "ca.crt"))
    assert c["command"] == ["sh", "-c"]
    with FakeWebhook(tmp_path / "tls.crt", tmp_path / "tls.key", answer) as fake:
        url = urlsplit(env(c)["URL"])
        environment = {
            "PATH": f"{shim.parent}:{os.environ['PATH']}",
            **env(c),
            "URL": env(c)["URL"].replace(f":{url.port}/", f":{fake.port}/"),
            "RESOLVE": f"{url.hostname}:{fake.port}:127.0.0.1",
        }
        result = subprocess.run(["sh", "-c", script], env=environment, capture_output=True, text=True, timeout=60)
    return result, fake.reviews


def test_helm_test_script_passes_against_a_webhook_with_the_charts_certificate(render, tmp_path):
    objects = render({"tls": {"mode": "helm"}})
    secret = objects.one("Secret")["data"]
    result, reviews = run_helm_test(
        tmp_path, objects, base64.b64decode(secret["tls.crt"]).decode(), base64.b64decode(secret["tls.key"]).decode()
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok: the webhook answered" in result.stdout
    (call,) = reviews
    assert call["path"] == "/mutate" and call["type"] == "application/json"
    assert call["review"] == json.loads(env(helm_test_pod(objects)[1])["REVIEW"])


@pytest.mark.parametrize("answer", ["deny", "error", "wrong-uid"])
def test_helm_test_script_fails_when_the_webhook_does_not_allow(render, tmp_path, answer):
    objects = render({"tls": {"mode": "helm"}})
    secret = objects.one("Secret")["data"]
    result, _ = run_helm_test(
        tmp_path,
        objects,
        base64.b64decode(secret["tls.crt"]).decode(),
        base64.b64decode(secret["tls.key"]).decode(),
        answer,
    )
    assert result.returncode != 0, result.stdout


def test_helm_test_script_fails_on_a_certificate_from_another_ca(render, tmp_path):
    """A certificate for the right name from another CA (another install's) is refused:
    the script trusts only the CA in the Secret."""
    objects = render({"tls": {"mode": "helm"}})
    other = render({"tls": {"mode": "helm"}}).one("Secret")["data"]
    assert other["ca.crt"] != objects.one("Secret")["data"]["ca.crt"]
    result, reviews = run_helm_test(
        tmp_path, objects, base64.b64decode(other["tls.crt"]).decode(), base64.b64decode(other["tls.key"]).decode()
    )
    assert result.returncode != 0 and reviews == []
    assert "could not be reached" in result.stdout

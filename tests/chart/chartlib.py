"""Helpers for the chart tests: render the chart offline (or cluster-aware against a
fake API server on loopback), parse the manifests, and validate them the way an API
server would."""

from __future__ import annotations

import base64
import copy
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from helm_python.chart import lint
from kubernetes_validate import utils as kv

ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = ROOT / "charts" / "tandem"
RELEASE = "tandem"
NAMESPACE = "tandem-system"
LATEST = kv.latest_version()

# The independent oracle (strict OpenAPI schema + the API server's pod rules + PSS
# restricted), shared with the Rust tests.
sys.path.insert(0, str(ROOT / "tests" / "validate"))
import podcheck  # noqa: E402

# Kinds whose schemas kubernetes-validate does not ship (CRDs of cert-manager and the
# Prometheus operator); the tests check their fields themselves.
FOREIGN_KINDS = {
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "ClusterIssuer"),
    ("cert-manager.io/v1", "Certificate"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}


class Rendered(list):
    """The objects of one render, in template order, with lookups by kind."""

    def __init__(self, objects: list[dict], notes: str, sources: dict[int, str]):
        super().__init__(objects)
        self.notes = notes
        self.sources = sources  # id(obj) -> template path

    def all(self, kind: str) -> list[dict]:
        return [o for o in self if o["kind"] == kind]

    def one(self, kind: str) -> dict:
        found = self.all(kind)
        assert len(found) == 1, f"expected one {kind}, got {[o['metadata']['name'] for o in found]}"
        return found[0]

    def maybe(self, kind: str) -> dict | None:
        found = self.all(kind)
        assert len(found) <= 1, f"expected at most one {kind}"
        return found[0] if found else None

    def source(self, obj: dict) -> str:
        return self.sources[id(obj)]


def parse(manifests: dict[str, str]) -> Rendered:
    objects: list[dict] = []
    sources: dict[int, str] = {}
    notes = ""
    for path in sorted(manifests):
        if path.endswith("NOTES.txt"):
            notes = manifests[path]
            continue
        for doc in yaml.safe_load_all(manifests[path]):
            if doc is None:
                continue
            assert isinstance(doc, dict), f"{path}: a document is not an object: {doc!r}"
            objects.append(doc)
            sources[id(doc)] = path
    rendered = Rendered(objects, notes, sources)
    rendered.manifests = dict(manifests)  # the text of every template, as rendered
    return rendered




def lint_errors(values: dict | None = None, chart_dir: Path = CHART_DIR, **opts: Any) -> list[dict]:
    """`helm lint` findings of severity error (3). Lint is lenient with `required` and
    `fail` (it only logs them), so the render tests check those."""
    report = lint(chart_dir, copy.deepcopy(values or {}), namespace=NAMESPACE, **opts)
    return [m for m in report["messages"] if m["severity"] >= 3] + [{"error": e} for e in report.get("errors", [])]


def schema_errors(obj: dict) -> list[str]:
    """kubernetes-validate, strict, for the newest Kubernetes it knows; then the oracle
    (the same schema plus the API server's pod rules for pods and pod templates)."""
    if (obj.get("apiVersion"), obj.get("kind")) in FOREIGN_KINDS:
        return []
    errors: list[str] = []
    try:
        kv.validate(obj, LATEST, strict=True)
    except kv.ValidationError as e:
        errors.append(f"kubernetes-validate: {'.'.join(map(str, e.absolute_path))}: {e.message}")
    except kv.SchemaNotFoundError as e:
        errors.append(f"kubernetes-validate: {e.message}")
    errors += [f"podcheck: {e}" for e in podcheck.validate_object(obj, LATEST)]
    return errors


def pod_of(obj: dict) -> dict:
    """A Pod, or a workload's pod template as a pod-like {metadata, spec}."""
    return obj if obj["kind"] == "Pod" else obj["spec"]["template"]


def container(pod: dict, name: str) -> dict:
    for c in pod["spec"]["containers"]:
        if c["name"] == name:
            return c
    raise AssertionError(f"no container {name}")


def flags(c: dict) -> dict[str, str | bool]:
    """`--name=value` and bare `--name` arguments of a container, as a dict."""
    out: dict[str, str | bool] = {}
    for arg in c.get("args", []):
        if arg.startswith("--"):
            key, sep, value = arg[2:].partition("=")
            out[key] = value if sep else True
    return out


# --- a fake API server for `lookup` ---------------------------------------------------


class FakeAPIServer:
    """Answers what Helm's `lookup "v1" "Secret" NS NAME` asks on loopback: discovery of
    the core group, then a GET of the Secret (404 for everything else). Records requests."""

    def __init__(self) -> None:
        self.secrets: dict[tuple[str, str], dict] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                fake.requests.append(self.path)
                path = self.path.split("?", 1)[0].rstrip("/")
                status, body = 404, {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "status": "Failure",
                    "reason": "NotFound",
                    "code": 404,
                }
                if path == "/api":
                    status, body = 200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
                elif path == "/api/v1":
                    status, body = 200, {
                        "kind": "APIResourceList",
                        "apiVersion": "v1",
                        "groupVersion": "v1",
                        "resources": [
                            {"name": "secrets", "singularName": "secret", "namespaced": True, "kind": "Secret", "verbs": ["get", "list"]}
                        ],
                    }
                elif path == "/apis":
                    status, body = 200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []}
                else:
                    parts = path.split("/")
                    # /api/v1/namespaces/NS/secrets/NAME
                    if len(parts) == 7 and parts[1:4] == ["api", "v1", "namespaces"] and parts[5] == "secrets":
                        secret = fake.secrets.get((parts[4], parts[6]))
                        if secret is not None:
                            status, body = 200, secret
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def add_secret(self, manifest: dict) -> None:
        """Store a Secret as the API server would return it."""
        secret = copy.deepcopy(manifest)
        secret.setdefault("metadata", {})["uid"] = "5c1e2b7a-0000-4000-8000-000000000001"
        self.secrets[(secret["metadata"]["namespace"], secret["metadata"]["name"])] = secret

    def __enter__(self) -> "FakeAPIServer":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)




def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# --- Kubernetes semantics the assertions need ------------------------------------------


def selects(selector: dict | None, labels: dict[str, str]) -> bool:
    """metav1.LabelSelector semantics (an empty selector selects everything)."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def namespace_labels(name: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """A namespace's labels as the API server sets them (kubernetes.io/metadata.name)."""
    return {"kubernetes.io/metadata.name": name, **(extra or {})}


def seconds(duration: str) -> float:
    """`5s`, `500ms`, `1m`, `1m30s` -> seconds (the forms tandem's flags accept)."""
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, number = 0.0, ""
    i = 0
    while i < len(duration):
        ch = duration[i]
        if ch.isdigit() or ch == ".":
            number += ch
            i += 1
            continue
        unit = "ms" if duration.startswith("ms", i) else ch
        total += float(number) * units[unit]
        number = ""
        i += len(unit)
    if number:
        assert float(number) == 0, f"a duration without a unit: {duration}"
    return total


def port_of(addr: str) -> int:
    """The port of `host:port` or `[v6]:port`."""
    return int(addr.rsplit(":", 1)[1])


def container_port(c: dict, name_or_number: str | int) -> int:
    """Resolve a named (or numbered) port of a container, as a Service or probe does."""
    if isinstance(name_or_number, int):
        return name_or_number
    for port in c.get("ports", []):
        if port.get("name") == name_or_number:
            return port["containerPort"]
    raise AssertionError(f"container {c['name']} has no port named {name_or_number}")


def make_ca(common_name: str = "test-ca") -> tuple[str, str]:
    """A self-signed CA (certificate PEM, key PEM), for tls.mode=secret."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM).decode(),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode(),
    )


# --- the values the suite renders ------------------------------------------------------

POLICY_WITH_DEFAULTS = {
    "metadata": {"name": "payments-logging"},
    "spec": {
        "priority": 100,
        "selector": {"namespaces": {"matchLabels": {"team": "payments"}}},
        "defaults": {"log-shipper": {"profile": "fluent-bit", "path": "/var/log/app"}},
        "enforce": ["log-shipper"],
    },
}
POLICY_WITHOUT_DEFAULTS = {
    "apiVersion": "tandem.dev/v1alpha1",
    "kind": "InjectionPolicy",
    "metadata": {"name": "git-hosts", "labels": {"team": "platform"}},
    "spec": {"priority": 10, "allowedGitHosts": ["github.com"], "onInvalid": "warn"},
}
CA_PEM, _ = make_ca()

SCENARIOS: dict[str, dict] = {
    "default": {},
    "tls-certManager": {"tls": {"mode": "certManager"}},
    "tls-certManager-issuer": {
        "tls": {"mode": "certManager", "certManager": {"issuerRef": {"name": "corp-ca", "kind": "ClusterIssuer"}}}
    },
    "tls-secret": {"tls": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": CA_PEM}}},
    "tls-secret-base64": {"tls": {"mode": "secret", "secret": {"name": "my-webhook-tls", "caBundle": b64(CA_PEM)}}},
    "ha-off": {"replicaCount": 1},
    "ha-on": {"replicaCount": 3, "topologySpread": {"whenUnsatisfiable": "DoNotSchedule"}},
    "match-on": {"webhook": {"annotatedPodsOnly": True}},
    "match-off": {"webhook": {"annotatedPodsOnly": False}},
    "match-auto-with-defaults": {"policies": [POLICY_WITH_DEFAULTS]},
    "match-auto-without-defaults": {"policies": [POLICY_WITHOUT_DEFAULTS]},
    "match-on-with-defaults": {"webhook": {"annotatedPodsOnly": True}, "policies": [POLICY_WITH_DEFAULTS]},
    "monitoring": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "networkPolicy": {"enabled": True},
    },
    "no-cluster-watch": {"server": {"watchCluster": False}},
    "everything": {
        "fullnameOverride": "inject",
        "image": {"digest": "sha256:" + "ab" * 32},
        "imagePullSecrets": [{"name": "regcred"}],
        "replicaCount": 3,
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/owner": "platform"},
        "podLabels": {"team": "platform"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [{"matchExpressions": [{"key": "node-role", "operator": "In", "values": ["infra"]}]}]
                }
            }
        },
        "server": {
            "logFormat": "text",
            "clientCASecret": "apiserver-client-ca",
            "extraArgs": ["--max-body=1048576"],
            "extraEnv": [{"name": "TANDEM_LOG", "value": "debug"}],
            "shutdownDelaySeconds": 10,
            "shutdownTimeoutSeconds": 25,
        },
        "terminationGracePeriodSeconds": 45,
        "webhook": {"failurePolicy": "Ignore", "timeoutSeconds": 5, "excludeNamespaces": ["legacy", "batch"]},
        "tls": {"mode": "certManager"},
        "serviceAccount": {"annotations": {"example.com/role": "tandem"}},
        "policies": [POLICY_WITHOUT_DEFAULTS, POLICY_WITH_DEFAULTS],
        "serviceMonitor": {"enabled": True, "namespace": "monitoring"},
        "networkPolicy": {
            "enabled": True,
            "apiServerCIDRs": ["10.0.0.0/24"],
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"team": "observability"}}, "podSelector": {}}],
        },
    },
}

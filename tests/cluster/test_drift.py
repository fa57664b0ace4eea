"""`tandem drift` and the server's stale-pod count, judged by the real control plane.

Deployments, a StatefulSet, a Job and bare pods get a log shipper from a cluster policy's
profile; the policy then changes the shipper's image. `tandem drift` must list exactly the
pods made before the change, each under its workload, naming the image on both sides;
`--restart` must make the controller-manager create pods that carry the new image, after
which those workloads are clean.

There is no kubelet: pods stay Pending, so a rolling update stops after its first new pod
(nothing becomes available). The test plays the kubelet's part: it reports each new pod
Running and Ready through the status subresource, as a kubelet would, and the controllers
go on — they delete old pods (a pod never scheduled to a node is deleted at once, with no
grace period, so none stays Terminating here) and create the rest. A pod held by a
finalizer stands for a terminating one: drift must leave it out and count it.
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from harness import PREFIX, RELEASE_NAMESPACE, make_namespace, render_chart
from controlplane import token_kubeconfig

OLD = "cr.fluentbit.io/fluent/fluent-bit:4.2.4"
NEW = "cr.fluentbit.io/fluent/fluent-bit:4.3.0"
SHIPPER = "tandem-log-shipper"
WAIT = 60


def eventually(check, timeout: float = WAIT, what: str = ""):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"not within {timeout}s: {what} (last: {last!r})")


@pytest.fixture(scope="module")
def identities(cluster, tmp_path_factory) -> dict[bool, Path]:
    """Kubeconfigs of two chart installs' ServiceAccounts: with `drift.metric` (True) and
    with the chart's default (False), each with exactly the chart's RBAC."""
    cluster.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": RELEASE_NAMESPACE}})
    crd = Path(__file__).resolve().parents[2] / "charts" / "tandem" / "crds" / "injectionpolicies.tandem.dev.yaml"
    cluster.kubectl("apply", "--server-side", "-f", str(crd))
    cluster.kubectl("wait", "--for=condition=Established", "crd/injectionpolicies.tandem.dev", "--timeout=60s")
    out = {}
    for metric in (True, False):
        name = "drift-metric-on" if metric else "drift-metric-off"
        rendered = render_chart({
            "fullnameOverride": name,
            "drift": {"metric": metric},
            "tls": {"mode": "secret", "secret": {"name": "x", "caBundle": "eA=="}},
        })
        for kind in ("ServiceAccount", "ClusterRole", "ClusterRoleBinding"):
            for obj in rendered.all(kind):
                cluster.apply(obj)
        token = cluster.kubectl("create", "token", name, "-n", RELEASE_NAMESPACE, "--duration=2h").stdout.strip()
        out[metric] = token_kubeconfig(tmp_path_factory.mktemp(name) / "kubeconfig", cluster.url, cluster.ca_file, token, RELEASE_NAMESPACE)
    return out


def policy(name: str, image: str) -> dict:
    """A profile `name` for the log shipper, with `image`."""
    profile = {
        "image": image,
        "args": ["-i", "tail", "-p", "path={{path}}/*.log", "-o", "stdout"],
        "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}},
    }
    return {"apiVersion": "tandem.dev/v1alpha1", "kind": "InjectionPolicy", "metadata": {"name": name},
            "spec": {"profiles": {"log-shipper": {name: profile}}}}


def pod_spec(restart: str = "Always") -> dict:
    return {"restartPolicy": restart, "containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]}


def template(app: str, annotations: dict[str, str], restart: str = "Always") -> dict:
    return {"metadata": {"labels": {"app": app}, "annotations": annotations}, "spec": pod_spec(restart)}


def drift(cluster, binary: Path, *args: str) -> tuple[int, str]:
    result = subprocess.run([str(binary), "drift", f"--kubeconfig={cluster.admin_kubeconfig}", *args],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode in (0, 1), f"tandem drift failed ({result.returncode}): {result.stderr}"
    return result.returncode, result.stdout


def report(cluster, binary: Path, namespace: str, *args: str) -> tuple[int, dict]:
    code, out = drift(cluster, binary, "-n", namespace, "-o", "json", *args)
    return code, json.loads(out)


def shipper_image(pod: dict) -> str | None:
    for c in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
        if c["name"] == SHIPPER:
            return c["image"]
    return None


def pods(cluster, namespace: str, app: str) -> list[dict]:
    return cluster.get("pods", "-n", namespace, "-l", f"app={app}")["items"]


def stale_pods(rep: dict) -> dict[str, str]:
    """Stale pod name -> its workload as `Kind/name`."""
    return {p["name"]: f"{w['kind']}/{w['name']}" for w in rep["workloads"] for p in w["pods"]}


def gauge(server, kind: str) -> float | None:
    match = re.search(rf'^tandem_stale_pods{{kind="{kind}"}} (\S+)$', server.metrics(), re.M)
    return float(match.group(1)) if match else None


def play_kubelet(cluster, namespace: str, app: str) -> int:
    """Reports every pod of `app` that carries the new image Running and Ready, as a
    kubelet would once its containers run; returns how many it reported."""
    reported = 0
    for pod in pods(cluster, namespace, app):
        ready = any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))
        if ready or pod["metadata"].get("deletionTimestamp") or shipper_image(pod) != NEW:
            continue
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        status = {"status": {"phase": "Running", "conditions": [
            {"type": t, "status": "True", "lastTransitionTime": now} for t in ("Initialized", "ContainersReady", "Ready")]}}
        cluster.kubectl("patch", "pod", "-n", namespace, pod["metadata"]["name"], "--subresource=status",
                        "--type=merge", "-p", json.dumps(status), check=False)
        reported += 1
    return reported


def test_drift_lists_the_pods_made_before_a_policy_change_and_restart_replaces_them(
        cluster, start_tandem, webhooks, identities, tandem_bin):
    name = f"drift-{uuid.uuid4().hex[:8]}"
    cluster.apply(policy(name, OLD))
    server = start_tandem("--kube", "--drift-interval=1s", env={"KUBECONFIG": str(identities[True])})
    webhooks.chart(server)
    namespace = make_namespace(cluster)
    ours = {f"{PREFIX}/log-shipper": name}

    def probe_image() -> str | None:
        pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"generateName": "probe-", "annotations": ours}, "spec": pod_spec()}
        out = cluster.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(pod), check=False)
        return shipper_image(json.loads(out.stdout)) if out.returncode == 0 else None

    eventually(lambda: probe_image() == OLD, what="the policy's profile served")

    # Four helpers at once, from the built-in catalog: unaffected by the change, and a
    # check that what the API server stores (defaults, token mounts) is not taken for drift.
    everything = {
        f"{PREFIX}/log-shipper": "true",
        f"{PREFIX}/metrics-adapter": "redis",
        f"{PREFIX}/ambassador": "tcp",
        f"{PREFIX}/ambassador.upstream": "redis-a.db:6379=3,redis-b.db:6379=1",
        f"{PREFIX}/ambassador.port": "6380",
        f"{PREFIX}/git-clone": "https://github.com/example/site.git",
        f"{PREFIX}/git-clone.secret": "git-credentials",
    }
    deployment = lambda app, replicas, annotations: {  # noqa: E731
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": app, "namespace": namespace},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app}}, "template": template(app, annotations)}}
    cluster.apply(
        deployment("web", 2, ours),
        deployment("api", 1, everything),
        {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": {"name": "db", "namespace": namespace},
         "spec": {"replicas": 2, "serviceName": "db", "podManagementPolicy": "Parallel",
                  "selector": {"matchLabels": {"app": "db"}}, "template": template("db", ours)}},
        {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "batch", "namespace": namespace},
         "spec": {"backoffLimit": 0, "template": template("batch", ours, restart="Never")}},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "lonely", "namespace": namespace, "labels": {"app": "lonely"}, "annotations": ours}, "spec": pod_spec()},
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "leaving", "namespace": namespace, "annotations": ours,
                                                         "finalizers": ["tandem.dev/test-hold"]}, "spec": pod_spec()},
    )
    try:
        counts = {"web": 2, "api": 1, "db": 2, "batch": 1, "lonely": 1}
        eventually(lambda: all(len(pods(cluster, namespace, app)) == n for app, n in counts.items()), what="the controllers' pods")
        before = {p["metadata"]["name"] for app in counts for p in pods(cluster, namespace, app)}
        cluster.kubectl("delete", "pod", "leaving", "-n", namespace, "--wait=false")

        code, rep = report(cluster, tandem_bin, namespace)
        assert code == 0, rep
        assert rep["summary"]["checked"] == len(before) and rep["summary"]["stale"] == 0, rep["summary"]
        assert rep["summary"]["terminating"] == 1, "the pod held by its finalizer is left out and counted"
        eventually(lambda: gauge(server, "Deployment") is not None, what="tandem_stale_pods exported")

        # The policy changes the shipper's image; a pod made afterwards gets the new one.
        cluster.apply(policy(name, NEW))
        eventually(lambda: probe_image() == NEW, what="the changed profile served")
        cluster.apply({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "fresh", "namespace": namespace, "annotations": ours}, "spec": pod_spec()})

        code, rep = report(cluster, tandem_bin, namespace)
        assert code == 1
        expected = {}
        for app, kind in (("web", "Deployment/web"), ("db", "StatefulSet/db"), ("batch", "Job/batch"), ("lonely", "Pod/lonely")):
            for pod in pods(cluster, namespace, app):
                expected[pod["metadata"]["name"]] = kind
        assert stale_pods(rep) == expected, "exactly the pods made before the change, by workload"
        assert set(expected) <= before
        for workload in rep["workloads"]:
            assert workload["differences"] == [{"subject": f"container {SHIPPER}", "field": "image", "carried": OLD, "expected": NEW}], workload
        assert [(w["kind"], w["name"], w["checked"]) for w in rep["workloads"]] == [
            ("Deployment", "web", 2), ("Job", "batch", 1), ("Pod", "lonely", 1), ("StatefulSet", "db", 2)]
        assert rep["summary"]["checked"] == len(before) + 1 and rep["summary"]["stale"] == len(expected)

        print(f"\n$ tandem drift -n {namespace} -o json    # the first workload, and the summary\n"
              + json.dumps({"workloads": rep["workloads"][:1], "summary": rep["summary"]}, indent=2, ensure_ascii=False))
        code, table = drift(cluster, tandem_bin, "-n", namespace)
        print(f"\n$ tandem drift -n {namespace}\n{table}")
        assert code == 1
        rows = [line.split()[:4] for line in table.splitlines() if line and not line.startswith(" ")]
        assert rows[0] == ["KIND", "NAMESPACE", "NAME", "STALE"]
        assert rows[1:5] == [["Deployment", namespace, "web", "2/2"], ["Job", namespace, "batch", "1/1"],
                             ["Pod", namespace, "lonely", "1/1"], ["StatefulSet", namespace, "db", "2/2"]]
        assert f"container {SHIPPER} image: {OLD} → {NEW}" in table

        # The server counts what drift (over every namespace) counts.
        def same_count():
            _, everywhere = drift(cluster, tandem_bin, "-o", "json")
            by_kind = json.loads(everywhere)["summary"]["stale_by_kind"]
            return all(gauge(server, kind) == by_kind.get(kind, 0) for kind in ("Deployment", "StatefulSet", "Job", "Pod"))
        eventually(same_count, what="tandem_stale_pods equal to tandem drift's counts")
        assert gauge(server, "StatefulSet") >= 2 and gauge(server, "Deployment") >= 2

        # A dry run: the API server accepts the patches, nothing changes.
        code, rep = report(cluster, tandem_bin, namespace, "--restart", "--dry-run")
        actions = {w["name"]: w["restart"]["action"] for w in rep["workloads"]}
        assert actions == {"web": "would-restart", "db": "would-restart", "batch": "skipped", "lonely": "skipped"}, rep
        code, table = drift(cluster, tandem_bin, "-n", namespace, "--restart", "--dry-run")
        print(f"\n$ tandem drift -n {namespace} --restart --dry-run\n{table}")
        assert table.count("would restart (dry run") == 2 and table.count("not restarted: ") == 2
        restarted_at = "kubectl.kubernetes.io/restartedAt"
        assert restarted_at not in (cluster.get("deployment", "web", "-n", namespace)["spec"]["template"]["metadata"].get("annotations") or {})

        # One restart per run: the Deployment (first in order), not the StatefulSet.
        code, rep = report(cluster, tandem_bin, namespace, "--restart", "--max-restarts=1")
        actions = {w["name"]: w["restart"] for w in rep["workloads"]}
        assert actions["web"] == {"action": "restarted"}
        assert actions["db"]["action"] == "skipped" and "--max-restarts" in actions["db"]["reason"]
        assert restarted_at in cluster.get("deployment", "web", "-n", namespace)["spec"]["template"]["metadata"]["annotations"]
        # The next run does not restart the Deployment again: its stale pods belong to an
        # older revision that the rollout is replacing.
        eventually(lambda: any(shipper_image(p) == NEW for p in pods(cluster, namespace, "web")), what="a new web pod")
        code, rep = report(cluster, tandem_bin, namespace, "--restart")
        actions = {w["name"]: w["restart"]["action"] for w in rep["workloads"]}
        assert actions == {"web": "rolling-out", "db": "restarted", "batch": "skipped", "lonely": "skipped"}, rep

        # The controllers replace the pods as the new ones become ready.
        def replaced():
            play_kubelet(cluster, namespace, "web")
            play_kubelet(cluster, namespace, "db")
            current = pods(cluster, namespace, "web") + pods(cluster, namespace, "db")
            return len(current) == 4 and all(shipper_image(p) == NEW for p in current)
        eventually(replaced, timeout=120, what="web and db replaced by pods with the new image")

        code, table = drift(cluster, tandem_bin, "-n", namespace)
        print(f"\n$ tandem drift -n {namespace}    # after the restarts\n{table}")
        code, rep = report(cluster, tandem_bin, namespace)
        assert code == 1, "the bare pod and the Job's pod are never restarted"
        assert sorted(stale_pods(rep).values()) == ["Job/batch", "Pod/lonely"]
        new_pods = {p["metadata"]["name"] for app in ("web", "db") for p in pods(cluster, namespace, app)}
        assert not new_pods & set(stale_pods(rep))
        assert rep["summary"]["checked"] == len(new_pods) + 1 + 1 + 1 + 1  # api, batch, lonely, fresh
    finally:
        cluster.kubectl("patch", "pod", "leaving", "-n", namespace, "--type=merge", "-p", '{"metadata":{"finalizers":null}}', check=False)
        cluster.kubectl("delete", "injectionpolicy", name, check=False)
        cluster.kubectl("delete", "namespace", namespace, "--wait=false", check=False)


def test_without_the_permission_the_count_is_not_exported(cluster, start_tandem, identities):
    server = start_tandem("--kube", "--drift-interval=1s", env={"KUBECONFIG": str(identities[False])})
    eventually(lambda: "may not list pods" in server.log(), what="the server says why there is no count")
    time.sleep(2)
    assert "tandem_stale_pods" not in server.metrics().replace("# HELP tandem_stale_pods", "").replace("# TYPE tandem_stale_pods", "")
    assert server.log().count("may not list pods") == 1, "said once, not at every interval"
    assert "forbidden" not in server.log().lower()
    server.stop()

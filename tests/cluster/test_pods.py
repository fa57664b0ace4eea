"""Pods created with kubectl through the real API server, with the chart's webhook
configuration pointed at tandem on loopback: what the server stored is what is judged."""

from __future__ import annotations

import json
import subprocess

import pytest

import promises
from harness import PREFIX, make_namespace, to_yaml, wait_for_pods


@pytest.fixture
def hooked(cluster, webhooks, tandem):
    """The chart's default webhook configuration, calling the session's tandem."""
    webhooks.chart(tandem)
    return cluster


def pod(name: str, annotations: dict[str, str], **spec) -> dict:
    spec.setdefault("containers", [{"name": "app", "image": "ghcr.io/example/app:1.0"}])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "annotations": annotations}, "spec": spec}


def create(cluster, namespace: str, *objects: dict) -> subprocess.CompletedProcess:
    return cluster.kubectl("create", "-n", namespace, "-f", "-", input=to_yaml(*objects), check=False)


def stored(cluster, namespace: str, name: str) -> dict:
    return cluster.get("pod", name, "-n", namespace)


def assert_kept(p: dict) -> None:
    broken = promises.errors(p)
    assert not broken, "\n".join(broken)


PATTERNS = {
    "log-shipper": {f"{PREFIX}/log-shipper": "true"},
    "metrics-adapter": {f"{PREFIX}/metrics-adapter": "redis"},
    "ambassador": {f"{PREFIX}/ambassador": "tcp", f"{PREFIX}/ambassador.upstream": "redis.db.svc:6379", f"{PREFIX}/ambassador.port": "6380"},
    "git-clone": {f"{PREFIX}/git-clone": "https://github.com/example/site.git", f"{PREFIX}/git-clone.path": "/srv/site"},
    "git-sync": {f"{PREFIX}/git-clone": "https://github.com/example/site.git", f"{PREFIX}/git-clone.sync": "30s"},
}


@pytest.mark.parametrize("case", sorted(PATTERNS))
def test_each_pattern_alone(hooked, namespace, case):
    annotations = PATTERNS[case]
    result = create(hooked, namespace, pod("p", annotations))
    assert result.returncode == 0, result.stderr
    p = stored(hooked, namespace, "p")
    pattern = "git-clone" if case == "git-sync" else case
    assert promises.injected(p) == [pattern]
    helper = promises.GIT_SYNC_CONTAINER if case == "git-sync" else promises.PATTERN_CONTAINER[pattern]
    assert promises.find(p, helper) is not None
    assert_kept(p)


def test_all_four_together(hooked, namespace):
    annotations = {k: v for case in ("log-shipper", "metrics-adapter", "ambassador", "git-clone") for k, v in PATTERNS[case].items()}
    spec = {
        "initContainers": [{"name": "migrate", "image": "ghcr.io/example/migrate:1.0"}],
        "containers": [
            {"name": "web", "image": "ghcr.io/example/web:1.0", "ports": [{"name": "http", "containerPort": 8080}]},
            {"name": "worker", "image": "ghcr.io/example/worker:1.0"},
        ],
    }
    assert create(hooked, namespace, pod("all", annotations, **spec)).returncode == 0
    p = stored(hooked, namespace, "all")
    assert sorted(promises.injected(p)) == sorted(["log-shipper", "metrics-adapter", "ambassador", "git-clone"])
    init = [c["name"] for c in p["spec"]["initContainers"]]
    assert init[0] == "tandem-git-clone", init
    assert init.index("migrate") > init.index("tandem-ambassador"), "the user's init container runs after the sidecars are up"
    assert_kept(p)


# Real-world specs: what users' pods look like, not minimal ones.
REAL_WORLD = {
    "nginx-with-probes": {
        "metadata": {"labels": {"app": "web"}, "annotations": {f"{PREFIX}/log-shipper": "true", f"{PREFIX}/log-shipper.path": "/var/log/nginx", f"{PREFIX}/metrics-adapter": "nginx", f"{PREFIX}/metrics-adapter.target": "localhost:8080"}},
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "image": "nginx:1.27.3",
                    "ports": [{"name": "http", "containerPort": 80}],
                    "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 10},
                    "readinessProbe": {"httpGet": {"path": "/", "port": 80}},
                    "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}},
                    "volumeMounts": [{"name": "conf", "mountPath": "/etc/nginx/conf.d"}],
                }
            ],
            "volumes": [{"name": "conf", "configMap": {"name": "nginx-conf"}}],
        },
    },
    "django-with-migrations-and-secrets": {
        "metadata": {"annotations": {f"{PREFIX}/log-shipper": "true", f"{PREFIX}/log-shipper.containers": "web", f"{PREFIX}/ambassador": "tcp", f"{PREFIX}/ambassador.upstream": "pg-a.db:5432=3,pg-b.db:5432=1", f"{PREFIX}/ambassador.port": "15432"}},
        "spec": {
            "initContainers": [{"name": "migrate", "image": "ghcr.io/example/shop:2.3", "command": ["python", "manage.py", "migrate"], "envFrom": [{"secretRef": {"name": "db"}}]}],
            "containers": [
                {"name": "web", "image": "ghcr.io/example/shop:2.3", "env": [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "db", "key": "url"}}}]},
                {"name": "celery", "image": "ghcr.io/example/shop:2.3", "args": ["celery", "worker"]},
            ],
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "fsGroup": 1000},
        },
    },
    "names-already-taken": {
        "metadata": {"annotations": {f"{PREFIX}/log-shipper": "true", f"{PREFIX}/metrics-adapter": "redis"}},
        "spec": {
            "containers": [{"name": "redis", "image": "redis:7.4", "ports": [{"name": "redis", "containerPort": 6379}], "volumeMounts": [{"name": "tandem-logs", "mountPath": "/data"}]}],
            "volumes": [{"name": "tandem-logs", "emptyDir": {}}],
        },
    },
}


@pytest.mark.parametrize("case", sorted(REAL_WORLD))
def test_real_world_pods(hooked, namespace, case):
    spec = REAL_WORLD[case]
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": case, **spec["metadata"]}, "spec": spec["spec"]}
    result = create(hooked, namespace, obj)
    assert result.returncode == 0, result.stderr
    p = stored(hooked, namespace, case)
    assert promises.injected(p), "nothing was injected"
    assert_kept(p)
    # The user's own containers, volumes and probes are as they were.
    for original in spec["spec"]["containers"]:
        mine = promises.find(p, original["name"])
        for key in ("image", "livenessProbe", "readinessProbe", "env", "args"):
            if key in original:
                assert mine[key] == _with_defaults(original[key], mine[key]), key


def _with_defaults(original, stored_value):
    """The API server defaults fields (probe timeouts, protocol): compare what the user set."""
    if isinstance(original, dict):
        return {k: _with_defaults(v, stored_value.get(k)) if isinstance(stored_value, dict) else v for k, v in original.items()} | {k: v for k, v in (stored_value or {}).items() if k not in original}
    if isinstance(original, list) and isinstance(stored_value, list) and len(original) == len(stored_value):
        return [_with_defaults(o, s) for o, s in zip(original, stored_value)]
    return original


def test_names_taken_are_not_reused(hooked, namespace):
    spec = REAL_WORLD["names-already-taken"]
    obj = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "taken", **spec["metadata"]}, "spec": spec["spec"]}
    assert create(hooked, namespace, obj).returncode == 0
    p = stored(hooked, namespace, "taken")
    volumes = [v["name"] for v in p["spec"]["volumes"]]
    assert volumes.count("tandem-logs") == 1
    shipper = promises.find(p, "tandem-log-shipper")
    assert promises.mounts(shipper)["/var/log/app"]["name"] == "tandem-logs-2"


# --- workloads the controller-manager turns into pods -----------------------------------


def workload(kind: str, name: str, annotations: dict[str, str]) -> dict:
    template = {
        "metadata": {"labels": {"app": name}, "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "ghcr.io/example/app:1.0"}]},
    }
    if kind in ("Job", "CronJob"):
        template["spec"]["restartPolicy"] = "Never"
    if kind == "Deployment":
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {"replicas": 2, "selector": {"matchLabels": {"app": name}}, "template": template}}
    if kind == "StatefulSet":
        return {"apiVersion": "apps/v1", "kind": kind, "metadata": {"name": name}, "spec": {"serviceName": name, "replicas": 2, "podManagementPolicy": "Parallel", "selector": {"matchLabels": {"app": name}}, "template": template}}
    if kind == "Job":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name}, "spec": {"template": template}}
    if kind == "CronJob":
        return {"apiVersion": "batch/v1", "kind": kind, "metadata": {"name": name}, "spec": {"schedule": "0 0 1 1 *", "jobTemplate": {"spec": {"template": template}}}}
    raise ValueError(kind)


@pytest.mark.parametrize("kind,count", [("Deployment", 2), ("StatefulSet", 2), ("Job", 1), ("CronJob", 1)])
def test_workloads_become_mutated_pods(hooked, namespace, kind, count):
    annotations = {**PATTERNS["log-shipper"], **PATTERNS["metrics-adapter"]}
    name = kind.lower()
    assert create(hooked, namespace, workload(kind, name, annotations)).returncode == 0
    if kind == "CronJob":
        hooked.kubectl("create", "job", "-n", namespace, f"--from=cronjob/{name}", f"{name}-now")
    pods = wait_for_pods(hooked, namespace, f"app={name}", count)
    for p in pods:
        assert p["metadata"].get("generateName") or kind == "StatefulSet"
        assert sorted(promises.injected(p)) == ["log-shipper", "metrics-adapter"]
        assert_kept(p)


# --- what kubectl shows the user -------------------------------------------------------


def test_bad_annotation_is_denied_with_what_is_accepted(hooked, namespace):
    result = create(hooked, namespace, pod("bad", {f"{PREFIX}/log-shipper": "true", f"{PREFIX}/log-shipper.path": "var/log/app"}))
    assert result.returncode != 0
    message = result.stderr
    assert 'admission webhook "pods.tandem.dev" denied the request' in message, message
    assert f'{PREFIX}/log-shipper.path="var/log/app"' in message, message
    assert "accepted: an absolute path" in message, message
    assert hooked.kubectl("get", "pod", "bad", "-n", namespace, check=False).returncode != 0, "a denied pod was stored"


def test_misspelled_key_is_denied_with_a_suggestion(hooked, namespace):
    result = create(hooked, namespace, pod("typo", {f"{PREFIX}/log-shiper": "true"}))
    assert result.returncode != 0
    assert "did you mean log-shipper?" in result.stderr, result.stderr


def test_dry_run_server_shows_the_mutated_pod_and_stores_nothing(hooked, namespace):
    result = hooked.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=to_yaml(pod("dry", PATTERNS["log-shipper"])))
    shown = json.loads(result.stdout)
    assert promises.injected(shown) == ["log-shipper"]
    assert_kept(shown)
    assert hooked.kubectl("get", "pod", "dry", "-n", namespace, check=False).returncode != 0, "dry-run stored the pod"


def test_pod_update_is_left_alone(hooked, namespace, tandem):
    assert create(hooked, namespace, pod("plain", {"team": "a"})).returncode == 0
    before = stored(hooked, namespace, "plain")
    # Annotating a running pod with a pattern adds nothing: only CREATE is mutated.
    hooked.kubectl("annotate", "pod", "plain", "-n", namespace, f"{PREFIX}/log-shipper=true")
    after = stored(hooked, namespace, "plain")
    assert after["spec"]["containers"] == before["spec"]["containers"]
    assert "initContainers" not in after["spec"]
    assert promises.injected(after) == []


def test_update_sent_to_tandem_is_allowed_unchanged(cluster, webhooks, tandem, namespace):
    """A configuration that also sends UPDATE (not the chart's): tandem allows it as it is."""
    config = webhooks.chart(tandem)
    config = {k: v for k, v in config.items() if k in ("apiVersion", "kind")} | {"metadata": {"name": config["metadata"]["name"]}, "webhooks": config["webhooks"]}
    config["webhooks"][0]["rules"][0]["operations"] = ["CREATE", "UPDATE"]
    webhooks.apply(config)
    assert create(cluster, namespace, pod("u", PATTERNS["log-shipper"])).returncode == 0
    before = stored(cluster, namespace, "u")
    skipped = _metric(tandem, 'tandem_admission_reviews_total{outcome="skipped"}')
    cluster.kubectl("label", "pod", "u", "-n", namespace, "touched=yes")
    after = stored(cluster, namespace, "u")
    assert after["metadata"]["labels"]["touched"] == "yes"
    assert after["spec"] == before["spec"]
    assert _metric(tandem, 'tandem_admission_reviews_total{outcome="skipped"}') > skipped


def _metric(server, series: str) -> float:
    for line in server.metrics().splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0


def test_pod_security_restricted_admits_every_pattern(hooked):
    namespace = make_namespace(hooked, labels={"pod-security.kubernetes.io/enforce": "restricted", "pod-security.kubernetes.io/enforce-version": "latest"})
    annotations = {k: v for case in ("log-shipper", "metrics-adapter", "ambassador", "git-sync") for k, v in PATTERNS[case].items()}
    restricted = {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}}
    compliant = pod("compliant", annotations, containers=[{"name": "app", "image": "ghcr.io/example/app:1.0", "securityContext": restricted}])
    result = create(hooked, namespace, compliant)
    assert result.returncode == 0, result.stderr
    p = stored(hooked, namespace, "compliant")
    assert len(promises.injected(p)) == 4
    assert_kept(p)
    # The same admission refuses a pod that is not compliant: it is really enforcing.
    loose = pod("loose", PATTERNS["log-shipper"])
    refused = create(hooked, namespace, loose)
    assert refused.returncode != 0 and "violates PodSecurity" in refused.stderr, refused.stderr
    hooked.kubectl("delete", "namespace", namespace, "--wait=false")


def test_inject_false_opts_out_of_the_pods_own_patterns(hooked, namespace):
    annotations = {f"{PREFIX}/inject": "false", **PATTERNS["log-shipper"], **PATTERNS["metrics-adapter"]}
    assert create(hooked, namespace, pod("opted-out", annotations)).returncode == 0
    p = stored(hooked, namespace, "opted-out")
    assert promises.injected(p) == []
    assert [c["name"] for c in promises.all_containers(p)] == ["app"]

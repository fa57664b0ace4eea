#!/usr/bin/env python3
"""Writes the AdmissionReview requests under tests/data/reviews/.

Each is what kube-apiserver (1.33+) sends a mutating webhook when a controller creates a pod:
the pod after defaulting and after the admission plugins that run before webhooks
(ServiceAccount's projected token volume and mounts, DefaultTolerationSeconds, Priority),
with ownerReferences and the controller's managedFields. A pod made from generateName has no
name yet. One file per scenario: each pattern alone, the classic examples, all four together.

    python3 tests/data/gen.py            # (re)write tests/data/reviews/*.json
"""

import json
import uuid
from pathlib import Path

HERE = Path(__file__).resolve().parent
NS_UUID = uuid.UUID("1b7e2c64-93f5-4c1e-8d2a-0f3c6b9e4a21")  # fixed: same files every run

CONTAINER_ORDER = ["name", "image", "command", "args", "workingDir", "ports", "envFrom", "env", "resources",
                   "volumeMounts", "livenessProbe", "readinessProbe", "startupProbe", "lifecycle",
                   "terminationMessagePath", "terminationMessagePolicy", "imagePullPolicy", "securityContext"]
SPEC_ORDER = ["volumes", "initContainers", "containers", "restartPolicy", "terminationGracePeriodSeconds",
              "dnsPolicy", "serviceAccountName", "serviceAccount", "securityContext", "schedulerName",
              "tolerations", "priority", "enableServiceLinks", "preemptionPolicy"]


def uid(name):
    return str(uuid.uuid5(NS_UUID, name))


def container(name, image, *, args=None, ports=(), env=(), mounts=(), resources=None, probe_port=None):
    c = {"name": name, "image": image}
    if args:
        c["args"] = args
    if ports:
        c["ports"] = [{"name": n, "containerPort": p, "protocol": "TCP"} for n, p in ports]
    if env:
        c["env"] = [{"name": k, "value": v} for k, v in env]
    c["resources"] = resources or {"limits": {"memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}}
    if mounts:
        c["volumeMounts"] = [{"name": n, "mountPath": p} for n, p in mounts]
    if probe_port:
        c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": probe_port, "scheme": "HTTP"},
                               "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                               "failureThreshold": 3}
    c["terminationMessagePath"] = "/dev/termination-log"
    c["terminationMessagePolicy"] = "File"
    c["imagePullPolicy"] = "IfNotPresent"
    return c


def fieldset(obj):
    """FieldsV1 for what the controller wrote (keyed lists by name, the rest as leaves)."""

    def walk(value, key=None):
        if isinstance(value, list) and key in ("containers", "initContainers", "volumes", "env",
                                               "ownerReferences", "volumeMounts"):
            ident = {"ownerReferences": "uid", "volumeMounts": "mountPath"}.get(key, "name")
            out = {".": {}}
            for item in value:
                out["k:" + json.dumps({ident: item[ident]}, separators=(",", ":"))] = walk(item)
            return out
        if isinstance(value, dict) and value:
            out = {".": {}}
            for k, v in sorted(value.items()):
                out[f"f:{k}"] = walk(v, k)
            return out
        return {}

    top = walk(obj)
    top.pop(".", None)
    for section in top.values():
        section.pop(".", None)
    return top


def review(name, namespace, app, containers, *, annotations=None, volumes=(), init=(), owner_kind="ReplicaSet",
           restart="Always"):
    owner_name = f"{app}-7d9f8b6c5" if owner_kind == "ReplicaSet" else app
    owner = {"apiVersion": "apps/v1" if owner_kind == "ReplicaSet" else "batch/v1", "kind": owner_kind,
             "name": owner_name, "uid": uid(owner_name), "controller": True, "blockOwnerDeletion": True}
    labels = {"app.kubernetes.io/name": app}
    labels |= {"pod-template-hash": "7d9f8b6c5"} if owner_kind == "ReplicaSet" else {
        "batch.kubernetes.io/job-name": app, "job-name": app}
    spec = {"volumes": list(volumes), "initContainers": list(init), "containers": containers,
            "restartPolicy": restart, "terminationGracePeriodSeconds": 30, "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default", "serviceAccount": "default", "securityContext": {},
            "schedulerName": "default-scheduler"}
    for key in ("volumes", "initContainers"):
        if not spec[key]:
            del spec[key]
    written = {"generateName": f"{owner_name}-", "labels": labels} | (
        {"annotations": annotations} if annotations else {}) | {"ownerReferences": [owner]}
    fields = fieldset({"metadata": written, "spec": {k: v for k, v in spec.items() if k != "serviceAccount"}})

    token = "kube-api-access-" + uid(name)[:5].replace("-", "x")
    spec.setdefault("volumes", []).append({"name": token, "projected": {"sources": [
        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ], "defaultMode": 420}})
    for c in containers + list(init):
        c["volumeMounts"] = c.get("volumeMounts", []) + [
            {"name": token, "readOnly": True, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]
        ordered = {k: c[k] for k in CONTAINER_ORDER if k in c}
        c.clear()
        c.update(ordered)
    spec["tolerations"] = [
        {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
         "tolerationSeconds": 300}]
    spec |= {"priority": 0, "enableServiceLinks": True, "preemptionPolicy": "PreemptLowerPriority"}
    spec = {k: spec[k] for k in SPEC_ORDER if k in spec}

    metadata = {"generateName": f"{owner_name}-", "namespace": namespace, "labels": labels}
    if annotations:
        metadata["annotations"] = annotations
    metadata["ownerReferences"] = [owner]
    metadata["managedFields"] = [{"manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
                                  "time": "2026-11-02T10:04:11Z", "fieldsType": "FieldsV1", "fieldsV1": fields}]
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": metadata, "spec": spec, "status": {}}
    gvk = {"group": "", "version": "v1", "kind": "Pod"}
    gvr = {"group": "", "version": "v1", "resource": "pods"}
    user = f"system:serviceaccount:kube-system:{'replicaset' if owner_kind == 'ReplicaSet' else 'job'}-controller"
    return {"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {
        "uid": uid(f"request/{name}"), "kind": gvk, "resource": gvr, "requestKind": gvk, "requestResource": gvr,
        "namespace": namespace, "operation": "CREATE",
        "userInfo": {"username": user, "uid": uid(user),
                     "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system",
                                "system:authenticated"]},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}}}


def web(name="web", image="ghcr.io/example/shop-web:1.8.2", port=8080, **kw):
    return container(name, image, ports=[("http", port)], probe_port="http", **kw)


def nginx():
    return container("nginx", "nginx:1.27.3", ports=[("http", 80)], probe_port="http")


GIT = "https://github.com/example/site.git"

SCENARIOS = {
    # A web app with a log agent: the classic sidecar.
    "log-shipper": lambda: review("log-shipper", "shop", "shop-web", [web()], annotations={
        "tandem.dev/log-shipper": "true"}),
    # A policy-free profile choice, only one of two containers logging to files.
    "log-shipper-loki": lambda: review("log-shipper-loki", "shop", "shop", [
        web(), container("worker", "ghcr.io/example/shop-worker:1.8.2")], annotations={
        "tandem.dev/log-shipper": "fluent-bit-loki",
        "tandem.dev/log-shipper.path": "/app/logs",
        "tandem.dev/log-shipper.containers": "web",
        "tandem.dev/log-shipper.host": "loki.monitoring.svc"}),
    # Logs to an S3-compatible store (MinIO), with its keys from a Secret.
    "log-shipper-s3": lambda: review("log-shipper-s3", "shop", "shop", [web()], annotations={
        "tandem.dev/log-shipper": "fluent-bit-s3",
        "tandem.dev/log-shipper.endpoint": "http://minio.storage.svc:9000",
        "tandem.dev/log-shipper.bucket": "shop-logs",
        "tandem.dev/log-shipper.secret": "minio-keys"}),
    "metrics-adapter-redis": lambda: review("metrics-adapter-redis", "cache", "redis", [
        container("redis", "redis:7.4", ports=[("redis", 6379)])], annotations={
        "tandem.dev/metrics-adapter": "redis",
        "tandem.dev/metrics-adapter.secret": "redis-exporter"}),
    "metrics-adapter-nginx": lambda: review("metrics-adapter-nginx", "web", "nginx", [nginx()], annotations={
        "tandem.dev/metrics-adapter": "nginx",
        "tandem.dev/metrics-adapter.target": "localhost:80"}),
    "metrics-adapter-json": lambda: review("metrics-adapter-json", "shop", "shop-api", [web()], annotations={
        "tandem.dev/metrics-adapter": "json",
        "tandem.dev/metrics-adapter.config": "shop-api-metrics",
        "tandem.dev/metrics-adapter.json-path": "/internal/stats"}),
    "ambassador-tcp": lambda: review("ambassador-tcp", "shop", "cart", [web("cart")], annotations={
        "tandem.dev/ambassador": "tcp",
        "tandem.dev/ambassador.upstream": "redis-a.db:6379=3,redis-b.db:6379=1",
        "tandem.dev/ambassador.port": "6380"}),
    "ambassador-http-tls": lambda: review("ambassador-http-tls", "shop", "payments", [web("payments")],
                                          annotations={
        "tandem.dev/ambassador": "http",
        "tandem.dev/ambassador.upstream": "api.stripe-mock.example.com:443",
        "tandem.dev/ambassador.port": "8081",
        "tandem.dev/ambassador.tls": "true",
        "tandem.dev/ambassador.retries": "3",
        "tandem.dev/ambassador.timeout": "10s"}),
    # A pod whose init container clones a repository.
    "git-clone": lambda: review("git-clone", "web", "site", [nginx()], annotations={
        "tandem.dev/git-clone": GIT,
        "tandem.dev/git-clone.ref": "v1.4.0",
        "tandem.dev/git-clone.path": "/usr/share/nginx/html"}),
    # nginx with a git-pull sidecar: push to deploy.
    "git-sync": lambda: review("git-sync", "web", "site", [nginx()], annotations={
        "tandem.dev/git-clone": GIT,
        "tandem.dev/git-clone.path": "/usr/share/nginx/html",
        "tandem.dev/git-clone.sync": "30s"}),
    "git-clone-ssh": lambda: review("git-clone-ssh", "build", "builder", [
        container("builder", "ghcr.io/example/builder:2.0")], annotations={
        "tandem.dev/git-clone": "git@github.com:example/private.git",
        "tandem.dev/git-clone.secret": "git-creds",
        "tandem.dev/git-clone.path": "/src",
        "tandem.dev/git-clone.writable": "true"}),
    "git-clone-basic": lambda: review("git-clone-basic", "web", "docs", [nginx()], annotations={
        "tandem.dev/git-clone": "https://gitlab.example.com/team/docs.git",
        "tandem.dev/git-clone.secret": "gitlab-token",
        "tandem.dev/git-clone.ca": "gitlab-ca",
        "tandem.dev/git-clone.depth": "0",
        "tandem.dev/git-clone.path": "/usr/share/nginx/html"}),
    # A Job: native sidecars let it complete; the shipper flushes after the app exits.
    "job": lambda: review("job", "batch", "nightly-report", [
        container("report", "ghcr.io/example/report:5.1", args=["--date=yesterday"])],
        annotations={"tandem.dev/log-shipper": "true"}, owner_kind="Job", restart="Never"),
    # All four, on a pod that already has init containers and volumes of its own.
    "all-four": lambda: review("all-four", "shop", "checkout", [
        web("checkout", mounts=[("cache", "/var/cache/app")]),
        container("worker", "ghcr.io/example/checkout-worker:3.1")],
        volumes=[{"name": "cache", "emptyDir": {}}],
        init=[container("migrate", "ghcr.io/example/checkout-migrate:3.1", args=["up"])],
        annotations={
            "tandem.dev/log-shipper": "true",
            "tandem.dev/metrics-adapter": "statsd",
            "tandem.dev/ambassador": "tcp",
            "tandem.dev/ambassador.upstream": "postgres-primary.db.svc.cluster.local:5432",
            "tandem.dev/ambassador.port": "15432",
            "tandem.dev/git-clone": "https://github.com/example/checkout-templates.git",
            "tandem.dev/git-clone.path": "/srv/templates",
            "tandem.dev/git-clone.containers": "checkout",
            "app.kubernetes.io/managed-by": "argocd"}),
}


def main():
    out = HERE / "reviews"
    out.mkdir(exist_ok=True)
    for name, make in SCENARIOS.items():
        text = json.dumps(make(), indent=1) + "\n"
        (out / f"{name}.json").write_text(text)
        print(f"reviews/{name}.json: {len(text)} bytes")


if __name__ == "__main__":
    main()

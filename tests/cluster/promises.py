"""What product.md (§1, §2) promises about a mutated pod, checked on the pod the API server
stored. Independent of tandem's code: it reads only the pod and the annotations a user wrote.
"""

from __future__ import annotations

import podcheck

PREFIX = "tandem.dev"
PATTERN_CONTAINER = {
    "log-shipper": "tandem-log-shipper",
    "metrics-adapter": "tandem-metrics-adapter",
    "ambassador": "tandem-ambassador",
    "git-clone": "tandem-git-clone",
}
# A git clone that keeps syncing is a sidecar of its own name.
GIT_SYNC_CONTAINER = "tandem-git-sync"
NATIVE_SIDECARS = {"log-shipper", "metrics-adapter", "ambassador"}


def injected(pod: dict) -> list[str]:
    value = (pod["metadata"].get("annotations") or {}).get(f"{PREFIX}/injected", "")
    return [p for p in value.split(",") if p]


def all_containers(pod: dict) -> list[dict]:
    spec = pod["spec"]
    return list(spec.get("initContainers") or []) + list(spec.get("containers") or [])


def find(pod: dict, name: str) -> dict | None:
    return next((c for c in all_containers(pod) if c["name"] == name), None)


def app_containers(pod: dict) -> list[dict]:
    return [c for c in pod["spec"]["containers"] if not c["name"].startswith("tandem-")]


def mounts(container: dict) -> dict[str, dict]:
    """mountPath -> mount."""
    return {m["mountPath"]: m for m in container.get("volumeMounts") or []}


def volume(pod: dict, name: str) -> dict:
    for v in pod["spec"].get("volumes") or []:
        if v["name"] == name:
            return v
    raise AssertionError(f"no volume {name} in the pod")


def template_pod(template: dict) -> dict:
    """A workload's pod template as the Pod its controller would make from it."""
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "from-template", **template.get("metadata", {})}, "spec": template["spec"]}


def errors(pod: dict) -> list[str]:
    """Every broken promise of §2 on this stored pod, as messages (empty: all kept)."""
    found: list[str] = []
    annotations = pod["metadata"].get("annotations") or {}
    patterns = injected(pod)
    names = [c["name"] for c in all_containers(pod)]
    ours = [n for n in names if n.startswith("tandem-")]
    found += podcheck.validate_pod(pod)
    if ours:
        found += podcheck.restricted_errors(pod, ours)
        found += podcheck.tandem_container_errors(pod, ours)
    for pattern in patterns:
        name = PATTERN_CONTAINER[pattern]
        container = find(pod, name)
        if pattern == "git-clone" and f"{PREFIX}/git-clone.sync" in annotations:
            name, container = GIT_SYNC_CONTAINER, find(pod, GIT_SYNC_CONTAINER)
        if container is None:
            found.append(f"{pattern}: injected, but no container {name}")
            continue
        in_init = any(c["name"] == name for c in pod["spec"].get("initContainers") or [])
        if pattern in NATIVE_SIDECARS or name == GIT_SYNC_CONTAINER:
            native = in_init and container.get("restartPolicy") == "Always"
            classic = not in_init
            if not (native or classic):
                found.append(f"{pattern}: {name} is an init container that is not a native sidecar")
        for m in container.get("volumeMounts") or []:
            v = volume(pod, m["name"])
            if m["name"].startswith("tandem-") and "emptyDir" not in v:
                found.append(f"{pattern}: {name} mounts {m['name']}, which is not an emptyDir")
    if "log-shipper" in patterns:
        found += _log_shipper(pod, annotations)
    if "git-clone" in patterns:
        found += _git_clone(pod, annotations)
    if "metrics-adapter" in patterns:
        for key in ("prometheus.io/scrape", "prometheus.io/port", "prometheus.io/path"):
            if key not in annotations:
                found.append(f"metrics-adapter: no {key} annotation")
        exporter = find(pod, PATTERN_CONTAINER["metrics-adapter"]) or {}
        ports = {p.get("name"): p["containerPort"] for p in exporter.get("ports") or []}
        if str(ports.get("metrics")) != annotations.get("prometheus.io/port"):
            found.append(f"metrics-adapter: port 'metrics' {ports.get('metrics')} is not prometheus.io/port {annotations.get('prometheus.io/port')}")
    if patterns and "kubectl.kubernetes.io/default-container" not in annotations:
        found.append("no kubectl.kubernetes.io/default-container annotation")
    return found


def _selected(pod: dict, annotations: dict, pattern: str) -> list[dict]:
    wanted = annotations.get(f"{PREFIX}/{pattern}.containers")
    apps = app_containers(pod)
    if not wanted:
        return apps
    names = {n.strip() for n in wanted.split(",")}
    return [c for c in apps if c["name"] in names]


def _log_shipper(pod: dict, annotations: dict) -> list[str]:
    found = []
    path = annotations.get(f"{PREFIX}/log-shipper.path", "/var/log/app")
    shipper = find(pod, "tandem-log-shipper") or {}
    shipper_mount = mounts(shipper).get(path)
    if not shipper_mount or not shipper_mount.get("readOnly"):
        found.append(f"log-shipper: the shipper does not mount {path} read-only")
        return found
    for app in _selected(pod, annotations, "log-shipper"):
        mount = mounts(app).get(path)
        if not mount or mount["name"] != shipper_mount["name"] or mount.get("readOnly"):
            found.append(f"log-shipper: app container {app['name']} does not mount {shipper_mount['name']} read-write at {path}")
    return found


def _git_clone(pod: dict, annotations: dict) -> list[str]:
    found = []
    path = annotations.get(f"{PREFIX}/git-clone.path", "/git")
    writable = annotations.get(f"{PREFIX}/git-clone.writable") == "true"
    sync = f"{PREFIX}/git-clone.sync" in annotations
    init = pod["spec"].get("initContainers") or []
    clone = find(pod, GIT_SYNC_CONTAINER if sync else "tandem-git-clone") or {}
    if not sync and (not init or init[0]["name"] != "tandem-git-clone"):
        found.append("git-clone: the one-time clone is not the first init container")
    if not sync and clone.get("restartPolicy"):
        found.append("git-clone: the one-time clone is a sidecar")
    clone_volumes = {m["name"] for m in clone.get("volumeMounts") or []}
    for app in _selected(pod, annotations, "git-clone"):
        mount = mounts(app).get(path)
        if not mount or mount["name"] not in clone_volumes:
            found.append(f"git-clone: app container {app['name']} does not mount the clone at {path}")
        elif bool(mount.get("readOnly")) == writable:
            found.append(f"git-clone: app container {app['name']} mounts the clone {'read-only' if not writable else 'read-write'} against the writable option")
    return found

"""Pod Security Standard "restricted", and tandem's own rules for injected containers.

restricted_errors re-reads the Pod Security Admission checks
(kubernetes/kubernetes staging/src/k8s.io/pod-security-admission/policy/check_*.go,
https://kubernetes.io/docs/concepts/security/pod-security-standards/): the baseline
controls plus the restricted ones, with the pod-level securityContext inherited by
containers that do not set a field, as the admission plugin evaluates it.

When `containers` names some containers (the injected ones), only those containers
are judged, with the pod-level values they inherit; checks of pod-only fields
(host namespaces, sysctls, volumes no named container mounts) then stay out, because
they judge the user's pod, not what tandem added.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")

# check_restrictedVolumes.go
RESTRICTED_VOLUME_TYPES = {
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
}
# check_capabilities_restricted.go
RESTRICTED_ADD_CAPABILITIES = {"NET_BIND_SERVICE"}
# check_seccompProfile_restricted.go
RESTRICTED_SECCOMP_TYPES = {"RuntimeDefault", "Localhost"}
# check_sysctls.go (the 1.0 list: the later additions do not hold on every version)
SAFE_SYSCTLS = {
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
}
# check_seLinuxOptions.go
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t"}
APPARMOR_ANNOTATION_PREFIX = "container.apparmor.security.beta.kubernetes.io/"


def _in(value: Any, allowed: set[str]) -> bool:
    """Set membership that tolerates wrongly typed (unhashable) values."""
    return isinstance(value, str) and value in allowed


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _containers(spec: dict, prefix: str) -> Iterable[tuple[str, dict]]:
    """(path, container) for init, app and ephemeral containers."""
    for key in CONTAINER_LISTS:
        for i, container in enumerate(_list(spec.get(key))):
            if isinstance(container, dict):
                yield f"{prefix}spec.{key}[{i}]", container


def _select(pod: dict, names: list[str] | None, prefix: str) -> tuple[list[tuple[str, dict]], list[str]]:
    """The containers to judge, and an error for each requested name that is missing."""
    spec = _dict(pod.get("spec"))
    everything = list(_containers(spec, prefix))
    if names is None:
        return everything, []
    chosen = [(p, c) for p, c in everything if c.get("name") in names]
    found = [c.get("name") for _, c in chosen]
    missing = [f"{prefix}spec: container {n!r} not found" for n in names if n not in found]
    return chosen, missing


def _effective(container: dict, pod_sc: dict, key: str) -> Any:
    """A container securityContext field, falling back to the pod-level one."""
    value = _dict(container.get("securityContext")).get(key)
    return pod_sc.get(key) if value is None else value


def _container_errors(path: str, container: dict, spec: dict) -> list[str]:
    """All restricted-profile checks that look at one container."""
    errs = []
    sc = _dict(container.get("securityContext"))
    pod_sc = _dict(spec.get("securityContext"))
    sc_path = f"{path}.securityContext"
    if sc.get("privileged") is True:  # check_privileged.go
        errs.append(f"{sc_path}.privileged: must be false or unset")
    if sc.get("allowPrivilegeEscalation") is not False:  # check_allowPrivilegeEscalation.go
        errs.append(f"{sc_path}.allowPrivilegeEscalation: must be false")
    if _effective(container, pod_sc, "runAsNonRoot") is not True:  # check_runAsNonRoot.go
        errs.append(f"{sc_path}.runAsNonRoot: must be true (on the container or the pod)")
    if _effective(container, pod_sc, "runAsUser") == 0:  # check_runAsUser.go
        errs.append(f"{sc_path}.runAsUser: must not be 0")
    seccomp = _dict(_effective(container, pod_sc, "seccompProfile")).get("type")
    if not _in(seccomp, RESTRICTED_SECCOMP_TYPES):  # check_seccompProfile_restricted.go
        errs.append(
            f"{sc_path}.seccompProfile.type: {seccomp!r} must be RuntimeDefault or Localhost "
            "(on the container or the pod)"
        )
    errs += _capabilities_errors(sc_path, _dict(sc.get("capabilities")))
    if (
        _dict(_effective(container, pod_sc, "windowsOptions")).get("hostProcess") is True
    ):  # check_windowsHostProcess.go
        errs.append(f"{sc_path}.windowsOptions.hostProcess: must not be true")
    if sc.get("procMount") not in (None, "Default"):  # check_procMount.go
        errs.append(f"{sc_path}.procMount: {sc['procMount']!r} must be Default or unset")
    errs += _selinux_errors(sc_path, sc.get("seLinuxOptions"))
    errs += _apparmor_errors(sc_path, sc.get("appArmorProfile"))
    for i, port in enumerate(_list(container.get("ports"))):  # check_hostPorts.go
        if _dict(port).get("hostPort"):
            errs.append(f"{path}.ports[{i}].hostPort: must be 0 or unset")
    errs += _probe_host_errors(path, container)
    errs += _mounted_volume_errors(path, container, spec)
    return errs


def _capabilities_errors(sc_path: str, capabilities: dict) -> list[str]:
    """check_capabilities_restricted.go: drop ALL, add at most NET_BIND_SERVICE."""
    errs = []
    if "ALL" not in _list(capabilities.get("drop")):
        errs.append(f'{sc_path}.capabilities.drop: must include "ALL"')
    added = [c for c in _list(capabilities.get("add")) if not _in(c, RESTRICTED_ADD_CAPABILITIES)]
    if added:
        errs.append(f"{sc_path}.capabilities.add: {added} not allowed (only NET_BIND_SERVICE)")
    return errs


def _selinux_errors(sc_path: str, options: Any) -> list[str]:
    """check_seLinuxOptions.go: a container_* type, no user or role."""
    options = _dict(options)
    errs = []
    if not _in(options.get("type", ""), SELINUX_TYPES):
        errs.append(f"{sc_path}.seLinuxOptions.type: {options['type']!r} not allowed")
    for key in ("user", "role"):
        if options.get(key):
            errs.append(f"{sc_path}.seLinuxOptions.{key}: may not be set")
    return errs


def _apparmor_errors(sc_path: str, profile: Any) -> list[str]:
    """check_appArmorProfile.go: RuntimeDefault or Localhost when set."""
    kind = _dict(profile).get("type")
    if profile is not None and kind not in ("RuntimeDefault", "Localhost"):
        return [f"{sc_path}.appArmorProfile.type: {kind!r} must be RuntimeDefault or Localhost"]
    return []


def _probe_host_errors(path: str, container: dict) -> list[str]:
    """check_hostProbesAndhostLifecycle.go (1.34+): no `host` in probes and hooks."""
    errs = []
    handlers = [(k, container.get(k)) for k in ("livenessProbe", "readinessProbe", "startupProbe")]
    handlers += [
        (f"lifecycle.{k}", _dict(container.get("lifecycle")).get(k)) for k in ("postStart", "preStop")
    ]
    for key, handler in handlers:
        for kind in ("httpGet", "tcpSocket"):
            if _dict(_dict(handler).get(kind)).get("host"):
                errs.append(f"{path}.{key}.{kind}.host: must be unset")
    return errs


def _volume_type(volume: dict) -> str:
    return next((k for k in volume if k != "name"), "")


def _mounted_volume_errors(path: str, container: dict, spec: dict) -> list[str]:
    """check_restrictedVolumes.go / check_hostPathVolumes.go, for the volumes this container mounts."""
    volumes = {str(v.get("name")): v for v in _list(spec.get("volumes")) if isinstance(v, dict)}
    errs = []
    for i, mount in enumerate(_list(container.get("volumeMounts"))):
        volume = volumes.get(str(_dict(mount).get("name")))
        if volume is not None and _volume_type(volume) not in RESTRICTED_VOLUME_TYPES:
            errs.append(
                f"{path}.volumeMounts[{i}]: mounts volume {volume.get('name')!r} of restricted type "
                f"{_volume_type(volume)!r}"
            )
    return errs


def _pod_level_errors(pod: dict, prefix: str) -> list[str]:
    """Checks of pod-only fields (only when the whole pod is judged)."""
    spec = _dict(pod.get("spec"))
    sc = _dict(spec.get("securityContext"))
    errs = []
    for key in ("hostNetwork", "hostPID", "hostIPC"):  # check_hostNamespaces.go
        if spec.get(key) is True:
            errs.append(f"{prefix}spec.{key}: must be false or unset")
    if sc.get("runAsNonRoot") is False:  # check_runAsNonRoot.go
        errs.append(f"{prefix}spec.securityContext.runAsNonRoot: must not be false")
    if sc.get("runAsUser") == 0:  # check_runAsUser.go
        errs.append(f"{prefix}spec.securityContext.runAsUser: must not be 0")
    seccomp = _dict(sc.get("seccompProfile")).get("type")
    if seccomp is not None and not _in(seccomp, RESTRICTED_SECCOMP_TYPES):
        errs.append(
            f"{prefix}spec.securityContext.seccompProfile.type: {seccomp!r} must be RuntimeDefault or Localhost"
        )
    for i, sysctl in enumerate(_list(sc.get("sysctls"))):  # check_sysctls.go
        if not _in(_dict(sysctl).get("name"), SAFE_SYSCTLS):
            errs.append(
                f"{prefix}spec.securityContext.sysctls[{i}]: {_dict(sysctl).get('name')!r} is not a safe sysctl"
            )
    errs += _selinux_errors(f"{prefix}spec.securityContext", sc.get("seLinuxOptions"))
    errs += _apparmor_errors(f"{prefix}spec.securityContext", sc.get("appArmorProfile"))
    for i, volume in enumerate(_list(spec.get("volumes"))):  # check_restrictedVolumes.go
        if isinstance(volume, dict) and _volume_type(volume) not in RESTRICTED_VOLUME_TYPES:
            errs.append(f"{prefix}spec.volumes[{i}]: volume type {_volume_type(volume)!r} is not allowed")
    for key, value in _dict(_dict(pod.get("metadata")).get("annotations")).items():  # check_apparmor.go
        if (
            key.startswith(APPARMOR_ANNOTATION_PREFIX)
            and value != "runtime/default"
            and not str(value).startswith("localhost/")
        ):
            errs.append(
                f"{prefix}metadata.annotations[{key!r}]: {value!r} must be runtime/default or localhost/*"
            )
    return errs


def restricted_errors(pod: dict, containers: list[str] | None = None, *, prefix: str = "") -> list[str]:
    """Violations of the Pod Security Standard "restricted" for the named containers.

    `containers=None` judges the whole pod (every container plus pod-only fields), as
    the admission plugin does. `prefix` is prepended to paths ("spec.template." ...).
    """
    chosen, errs = _select(pod, containers, prefix)
    spec = _dict(pod.get("spec"))
    for path, container in chosen:
        errs += _container_errors(path, container, spec)
    if containers is None:
        errs += _pod_level_errors(pod, prefix)
    return errs


def tandem_container_errors(pod: dict, containers: list[str] | None = None, *, prefix: str = "") -> list[str]:
    """tandem's own rule (product.md section 2) for injected containers: a read-only root
    filesystem, cpu and memory requests, and a memory limit."""
    chosen, errs = _select(pod, containers, prefix)
    for path, container in chosen:
        if _dict(container.get("securityContext")).get("readOnlyRootFilesystem") is not True:
            errs.append(f"{path}.securityContext.readOnlyRootFilesystem: must be true")
        resources = _dict(container.get("resources"))
        for key in ("cpu", "memory"):
            if key not in _dict(resources.get("requests")):
                errs.append(f"{path}.resources.requests: must request {key}")
        if "memory" not in _dict(resources.get("limits")):
            errs.append(f"{path}.resources.limits: must limit memory")
    return errs

"""The API server's pod validation rules that the OpenAPI schema cannot express.

A Python re-reading of kubernetes/kubernetes pkg/apis/core/validation/validation.go
(and the apimachinery ObjectMeta helpers it calls). Every rule names the Go function
it comes from. The input is the JSON a client would send *after* the API server's
defaulting, so fields that defaulting fills in (protocol, imagePullPolicy,
terminationMessagePolicy, restartPolicy, dnsPolicy, probe thresholds, httpGet
path/scheme...) are checked only when present.

Messages read `<field path>: <problem>`, e.g.
`spec.initContainers[1].volumeMounts[0].name: "x" names no volume`.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from typing import Any

import k8s_formats as fmt

# --- small helpers -------------------------------------------------------------


def _q(value: Any) -> str:
    """A value as it appears in messages: JSON-quoted."""
    return json.dumps(value)


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _items(value: Any, path: str) -> Iterable[tuple[str, dict]]:
    """(path[i], item) for each object of a list, skipping what the schema rejects anyway."""
    for i, item in enumerate(_list(value)):
        if isinstance(item, dict):
            yield f"{path}[{i}]", item


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _in(value: Any, allowed: set[str]) -> bool:
    """Enum membership that tolerates wrongly typed (unhashable) values."""
    return isinstance(value, str) and value in allowed


def _get(obj: dict, key: str) -> Any:
    """A scalar field (names, paths); a wrongly typed value becomes its JSON text, so it
    still compares and hashes (the schema reports the type error)."""
    value = obj.get(key)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return json.dumps(value, sort_keys=True)


class Errors(list):
    """A list of `path: message` strings."""

    def add(self, path: str, message: str) -> None:
        self.append(f"{path}: {message}")

    def each(self, path: str, value: Any, messages: list[str]) -> None:
        for message in messages:
            self.add(path, f"{_q(value)}: {message}")


# --- ObjectMeta (staging/src/k8s.io/apimachinery/pkg/api/validation/objectmeta.go) ---

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024  # TotalAnnotationSizeLimitB
STANDARD_FINALIZERS = {"kubernetes", "orphan", "foregroundDeletion"}  # IsStandardFinalizerName


def labels_errors(labels: Any, path: str) -> Errors:
    """v1validation.ValidateLabels: qualified-name keys, label-value values."""
    errs = Errors()
    for key, value in _dict(labels).items():
        errs.each(path, key, fmt.qualified_name(key))
        if isinstance(value, str):
            errs.each(f"{path}[{_q(key)}]", value, fmt.label_value(value))
    return errs


def annotations_errors(annotations: Any, path: str) -> Errors:
    """ValidateAnnotations: case-insensitive qualified-name keys, 256 KiB in total."""
    errs = Errors()
    annotations = _dict(annotations)
    for key in annotations:
        errs.each(path, key, fmt.qualified_name(key.lower()))
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.add(path, f"too long: annotations total {size} bytes, limit {TOTAL_ANNOTATION_SIZE_LIMIT}")
    return errs


def owner_references_errors(refs: Any, path: str) -> Errors:
    """ValidateOwnerReferences / validateOwnerReference."""
    errs = Errors()
    controllers = []
    for ref_path, ref in _items(refs, path):
        api_version = str(ref.get("apiVersion") or "")
        if not api_version.split("/")[-1]:
            errs.add(f"{ref_path}.apiVersion", "version must not be empty")
        for key in ("kind", "name", "uid"):
            if not ref.get(key):
                errs.add(f"{ref_path}.{key}", "must not be empty")
        if api_version == "v1" and ref.get("kind") == "Event":
            errs.add(ref_path, "v1 Event is disallowed from being an owner")
        if ref.get("controller") is True:
            controllers.append(f"{ref.get('kind')}/{ref.get('name')}")
    if len(controllers) > 1:
        errs.add(path, f"only one reference can have controller set to true, found {controllers}")
    return errs


def finalizers_errors(finalizers: Any, path: str) -> Errors:
    """ValidateFinalizers + validateKubeFinalizerName."""
    errs = Errors()
    for i, name in enumerate(_list(finalizers)):
        if not isinstance(name, str):
            continue
        errs.each(f"{path}[{i}]", name, fmt.qualified_name(name))
        if "/" not in name and name not in STANDARD_FINALIZERS:
            errs.add(f"{path}[{i}]", f"{_q(name)}: neither a standard finalizer name nor fully qualified")
    if {"orphan", "foregroundDeletion"} <= set(_list(finalizers)):
        errs.add(path, "finalizers orphan and foregroundDeletion cannot be both set")
    return errs


def managed_fields_errors(entries: Any, path: str) -> Errors:
    """v1validation.ValidateManagedFields."""
    errs = Errors()
    for entry_path, entry in _items(entries, path):
        if entry.get("operation") not in ("Apply", "Update"):
            errs.add(f"{entry_path}.operation", f"{_q(entry.get('operation'))}: must be `Apply` or `Update`")
        if entry.get("fieldsType") not in (None, "", "FieldsV1"):
            errs.add(f"{entry_path}.fieldsType", f"{_q(entry.get('fieldsType'))}: must be `FieldsV1`")
        manager = entry.get("manager")
        if isinstance(manager, str) and len(manager) > 128:
            errs.add(f"{entry_path}.manager", "must be no more than 128 characters")
    return errs


def object_meta_errors(meta: dict, path: str) -> Errors:
    """ValidateObjectMeta with ValidatePodName, as validatePodMetadataAndSpec calls it.

    The namespace is not required: at admission time a webhook may see pods whose
    metadata.namespace is still empty (the request carries it).
    """
    errs = Errors()
    name, generate_name = _get(meta, "name"), meta.get("generateName")
    if generate_name:
        errs.each(f"{path}.generateName", generate_name, fmt.name_is_dns_subdomain(str(generate_name), True))
    if name:
        errs.each(f"{path}.name", name, fmt.name_is_dns_subdomain(str(name), False))
    elif not generate_name:
        errs.add(f"{path}.name", "name or generateName is required")
    if meta.get("namespace"):
        errs.each(f"{path}.namespace", meta["namespace"], fmt.dns1123_label(str(meta["namespace"])))
    generation = _int(meta.get("generation"))
    if generation is not None and generation < 0:
        errs.add(f"{path}.generation", "must be greater than or equal to 0")
    errs += labels_errors(meta.get("labels"), f"{path}.labels")
    errs += annotations_errors(meta.get("annotations"), f"{path}.annotations")
    errs += owner_references_errors(meta.get("ownerReferences"), f"{path}.ownerReferences")
    errs += finalizers_errors(meta.get("finalizers"), f"{path}.finalizers")
    errs += managed_fields_errors(meta.get("managedFields"), f"{path}.managedFields")
    return errs


def pod_annotations_errors(annotations: Any, path: str) -> Errors:
    """ValidatePodSpecificAnnotations: the pod-deletion-cost must be an int32."""
    errs = Errors()
    key = "controller.kubernetes.io/pod-deletion-cost"
    value = _dict(annotations).get(key)
    if value is not None:
        try:
            ok = -(2**31) <= int(str(value), 10) < 2**31 and str(value).strip() == str(value)
        except ValueError:
            ok = False
        if not ok:
            errs.add(f"{path}[{_q(key)}]", f"{_q(value)}: must be a 32bit integer")
    return errs


# --- volumes (ValidateVolumes, validateVolumeSource) --------------------------------

FILE_MODE_MAX = 0o777


def _mode_errors(errs: Errors, path: str, mode: Any) -> None:
    """fileModeErrorMsg: defaultMode / mode between 0 and 0777."""
    mode = _int(mode)
    if mode is not None and not 0 <= mode <= FILE_MODE_MAX:
        errs.add(path, f"{mode}: must be a number between 0 and 0777 (octal), both inclusive")


def local_descending_path_errors(errs: Errors, path: str, value: str) -> None:
    """validateLocalDescendingPath: relative, no '..' element."""
    if posixpath.isabs(value):
        errs.add(path, f"{_q(value)}: must be a relative path")
    no_backsteps_errors(errs, path, value)


def no_backsteps_errors(errs: Errors, path: str, value: str) -> None:
    """validatePathNoBacksteps."""
    if ".." in value.replace("\\", "/").split("/"):
        errs.add(path, f"{_q(value)}: must not contain '..'")


def local_non_reserved_path_errors(errs: Errors, path: str, value: str) -> None:
    """ValidateLocalNonReservedPath: also may not start with '..'."""
    local_descending_path_errors(errs, path, value)
    if value.startswith("..") and not value.startswith("../"):
        errs.add(path, f"{_q(value)}: must not start with '..'")


def key_to_path_errors(errs: Errors, path: str, item: dict) -> None:
    """validateKeyToPath."""
    if not item.get("key"):
        errs.add(f"{path}.key", "required")
    if not _get(item, "path"):
        errs.add(f"{path}.path", "required")
    local_non_reserved_path_errors(errs, f"{path}.path", str(_get(item, "path") or ""))
    _mode_errors(errs, f"{path}.mode", item.get("mode"))


def _downward_api_file_errors(errs: Errors, path: str, item: dict) -> None:
    """validateDownwardAPIVolumeFile."""
    if not _get(item, "path"):
        errs.add(f"{path}.path", "required")
    local_non_reserved_path_errors(errs, f"{path}.path", str(_get(item, "path") or ""))
    if ("fieldRef" in item) == ("resourceFieldRef" in item):
        errs.add(path, "exactly one of fieldRef and resourceFieldRef is required")
    _mode_errors(errs, f"{path}.mode", item.get("mode"))


def _projected_errors(errs: Errors, path: str, projected: dict) -> None:
    """validateProjectedVolumeSource / validateProjectionSources."""
    _mode_errors(errs, f"{path}.defaultMode", projected.get("defaultMode"))
    seen_paths: set[str] = set()

    def claim(file_path: Any) -> None:
        if isinstance(file_path, str) and file_path:
            if file_path in seen_paths:
                errs.add(path, f"{_q(file_path)}: conflicting duplicate paths")
            seen_paths.add(file_path)

    for src_path, source in _items(projected.get("sources"), f"{path}.sources"):
        kinds = [k for k in source if source[k] is not None]
        if len(kinds) != 1:
            errs.add(src_path, f"must specify exactly 1 volume type per source, found {kinds}")
        for kind in ("secret", "configMap"):
            ref = _dict(source.get(kind))
            if kind in source and not _get(ref, "name"):
                errs.add(f"{src_path}.{kind}.name", "required")
            for item_path, item in _items(ref.get("items"), f"{src_path}.{kind}.items"):
                key_to_path_errors(errs, item_path, item)
                claim(_get(item, "path"))
        for item_path, item in _items(
            _dict(source.get("downwardAPI")).get("items"), f"{src_path}.downwardAPI.items"
        ):
            _downward_api_file_errors(errs, item_path, item)
            claim(_get(item, "path"))
        if "serviceAccountToken" in source:
            token = _dict(source["serviceAccountToken"])
            seconds = _int(token.get("expirationSeconds"))
            if seconds is not None and not 600 <= seconds <= 2**32:
                errs.add(
                    f"{src_path}.serviceAccountToken.expirationSeconds",
                    f"{seconds}: must be between 10 minutes and 2^32 seconds",
                )
            if not _get(token, "path"):
                errs.add(f"{src_path}.serviceAccountToken.path", "required")
            else:
                local_non_reserved_path_errors(
                    errs, f"{src_path}.serviceAccountToken.path", str(token["path"])
                )
        if "clusterTrustBundle" in source:
            bundle = _dict(source["clusterTrustBundle"])
            if not _get(bundle, "path"):
                errs.add(f"{src_path}.clusterTrustBundle.path", "required")
            claim(_get(bundle, "path"))


def _volume_source_errors(errs: Errors, path: str, volume: dict) -> None:
    """validateVolumeSource: exactly one source, and the checks of the common ones."""
    sources = [k for k in volume if k != "name" and volume[k] is not None]
    if not sources:
        errs.add(path, "must specify a volume type")
    elif len(sources) > 1:
        errs.add(path, f"may not specify more than 1 volume type, found {sources}")
    empty_dir = volume.get("emptyDir")
    if isinstance(empty_dir, dict) and "sizeLimit" in empty_dir:
        size = fmt.parse_quantity(empty_dir["sizeLimit"])
        if size is None or size < 0:
            errs.add(
                f"{path}.emptyDir.sizeLimit",
                f"{_q(empty_dir['sizeLimit'])}: must be a valid, non-negative quantity",
            )
    if "hostPath" in volume:
        host_path = str(_dict(volume["hostPath"]).get("path") or "")
        if not host_path:
            errs.add(f"{path}.hostPath.path", "required")
        no_backsteps_errors(errs, f"{path}.hostPath.path", host_path)
    for kind, name_key in (
        ("secret", "secretName"),
        ("configMap", "name"),
        ("persistentVolumeClaim", "claimName"),
    ):
        if kind in volume:
            source = _dict(volume[kind])
            if not source.get(name_key):
                errs.add(f"{path}.{kind}.{name_key}", "required")
            _mode_errors(errs, f"{path}.{kind}.defaultMode", source.get("defaultMode"))
            for item_path, item in _items(source.get("items"), f"{path}.{kind}.items"):
                key_to_path_errors(errs, item_path, item)
    if "downwardAPI" in volume:
        source = _dict(volume["downwardAPI"])
        _mode_errors(errs, f"{path}.downwardAPI.defaultMode", source.get("defaultMode"))
        for item_path, item in _items(source.get("items"), f"{path}.downwardAPI.items"):
            _downward_api_file_errors(errs, item_path, item)
    if "projected" in volume:
        _projected_errors(errs, f"{path}.projected", _dict(volume["projected"]))
    if "ephemeral" in volume and not _dict(volume["ephemeral"]).get("volumeClaimTemplate"):
        errs.add(f"{path}.ephemeral.volumeClaimTemplate", "required")  # validateEphemeralVolumeSource


def volumes_errors(volumes: Any, path: str) -> tuple[dict[str, dict], Errors]:
    """ValidateVolumes: names are unique DNS-1123 labels; returns the volumes by name."""
    errs = Errors()
    by_name: dict[str, dict] = {}
    for vol_path, volume in _items(volumes, path):
        name = _get(volume, "name")
        _volume_source_errors(errs, vol_path, volume)
        if not name:
            errs.add(f"{vol_path}.name", "required")
        else:
            errs.each(f"{vol_path}.name", name, fmt.dns1123_label(str(name)))
        if name in by_name:
            errs.add(f"{vol_path}.name", f"duplicate volume name {_q(name)}")
        elif name:
            # Go only registers error-free volumes; registering every named one avoids a
            # second "names no volume" error for mounts of a volume already reported.
            by_name[name] = volume
    return by_name, errs


# --- containers ---------------------------------------------------------------

TERMINATION_MESSAGE_POLICIES = {"File", "FallbackToLogsOnError"}
PULL_POLICIES = {"Always", "IfNotPresent", "Never"}
PROTOCOLS = {"TCP", "UDP", "SCTP"}
MOUNT_PROPAGATIONS = {"None", "HostToContainer", "Bidirectional"}
ENV_FIELD_PATHS = {
    "metadata.name",
    "metadata.namespace",
    "metadata.uid",
    "spec.nodeName",
    "spec.serviceAccountName",
    "status.hostIP",
    "status.hostIPs",
    "status.podIP",
    "status.podIPs",
}  # validEnvDownwardAPIFieldPathExpressions
RESOURCE_FIELD_PATHS = {
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
}  # validContainerResourceFieldPathExpressions (plus hugepages prefixes)
STANDARD_CONTAINER_RESOURCES = {"cpu", "memory", "ephemeral-storage"}


def container_ports_errors(ports: Any, path: str) -> Errors:
    """validateContainerPorts: IANA_SVC_NAME names unique per container, 1..65535."""
    errs = Errors()
    names: set[str] = set()
    for port_path, port in _items(ports, path):
        name = _get(port, "name")
        if name:
            problems = fmt.port_name(str(name))
            errs.each(f"{port_path}.name", name, problems)
            if not problems and name in names:
                errs.add(f"{port_path}.name", f"duplicate port name {_q(name)}")
            names.add(name)
        if not port.get("containerPort"):
            errs.add(f"{port_path}.containerPort", "required")
        else:
            errs.each(
                f"{port_path}.containerPort", port["containerPort"], fmt.port_number(port["containerPort"])
            )
        if port.get("hostPort"):
            errs.each(f"{port_path}.hostPort", port["hostPort"], fmt.port_number(port["hostPort"]))
        if "protocol" in port and not _in(port["protocol"], PROTOCOLS):
            errs.add(f"{port_path}.protocol", f"{_q(port['protocol'])}: must be one of TCP, UDP, SCTP")
    return errs


def _object_field_selector_errors(errs: Errors, path: str, ref: dict) -> None:
    """validateObjectFieldSelector (env): known paths, or labels/annotations subscripts."""
    field_path = ref.get("fieldPath")
    if not field_path:
        errs.add(f"{path}.fieldPath", "required")
        return
    field_path = str(field_path)
    if "[" in field_path and field_path.endswith("]"):
        base, subscript = field_path[:-1].split("[", 1)
        subscript = subscript.strip("'\"")
        if base in ("metadata.labels", "metadata.annotations"):
            key = subscript.lower() if base == "metadata.annotations" else subscript
            errs.each(path, subscript, fmt.qualified_name(key))
        else:
            errs.add(path, f"{_q(base)}: does not support subscript")
    elif not _in(field_path, ENV_FIELD_PATHS):
        errs.add(f"{path}.fieldPath", f"{_q(field_path)}: supported values: {sorted(ENV_FIELD_PATHS)}")


def _key_selector_errors(errs: Errors, path: str, ref: dict) -> None:
    """validateConfigMapKeySelector / validateSecretKeySelector."""
    errs.each(f"{path}.name", _get(ref, "name"), fmt.dns1123_subdomain(str(_get(ref, "name") or "")))
    if not ref.get("key"):
        errs.add(f"{path}.key", "required")
    else:
        errs.each(f"{path}.key", ref["key"], fmt.config_map_key(str(ref["key"])))


def _env_value_from_errors(errs: Errors, path: str, var: dict) -> None:
    """validateEnvVarValueFrom: exactly one source, and not together with `value`."""
    value_from = var.get("valueFrom")
    if value_from is None:
        return
    value_from = _dict(value_from)
    sources = [
        k
        for k in ("fieldRef", "resourceFieldRef", "configMapKeyRef", "secretKeyRef")
        if value_from.get(k) is not None
    ]
    if not sources:
        errs.add(
            path, "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"
        )
    elif var.get("value"):
        errs.add(path, "may not be specified when `value` is not empty")
    elif len(sources) > 1:
        errs.add(path, f"may not have more than one field specified at a time, found {sources}")
    if "fieldRef" in sources:
        _object_field_selector_errors(errs, f"{path}.fieldRef", _dict(value_from["fieldRef"]))
    if "resourceFieldRef" in sources:
        resource = str(_dict(value_from["resourceFieldRef"]).get("resource") or "")
        if not resource:
            errs.add(f"{path}.resourceFieldRef.resource", "required")
        elif resource not in RESOURCE_FIELD_PATHS and not resource.startswith(
            ("requests.hugepages-", "limits.hugepages-")
        ):
            errs.add(
                f"{path}.resourceFieldRef.resource",
                f"{_q(resource)}: supported values: {sorted(RESOURCE_FIELD_PATHS)}",
            )
    for kind in ("configMapKeyRef", "secretKeyRef"):
        if kind in sources:
            _key_selector_errors(errs, f"{path}.{kind}", _dict(value_from[kind]))


def env_errors(env: Any, path: str) -> Errors:
    """ValidateEnv."""
    errs = Errors()
    for var_path, var in _items(env, path):
        name = _get(var, "name")
        if not name:
            errs.add(f"{var_path}.name", "required")
        else:
            errs.each(f"{var_path}.name", name, fmt.env_var_name(str(name)))
        _env_value_from_errors(errs, f"{var_path}.valueFrom", var)
    return errs


def env_from_errors(env_from: Any, path: str) -> Errors:
    """ValidateEnvFrom: exactly one of configMapRef/secretRef, a valid prefix."""
    errs = Errors()
    for src_path, source in _items(env_from, path):
        if source.get("prefix"):
            errs.each(f"{src_path}.prefix", source["prefix"], fmt.env_var_name(str(source["prefix"])))
        refs = [k for k in ("configMapRef", "secretRef") if source.get(k) is not None]
        if len(refs) != 1:
            errs.add(src_path, "must specify exactly one of: `configMapRef` or `secretRef`")
        for kind in refs:
            name = _dict(source[kind]).get("name")
            if not name:
                errs.add(f"{src_path}.{kind}.name", "required")
            else:
                errs.each(f"{src_path}.{kind}.name", name, fmt.name_is_dns_subdomain(str(name), True))
    return errs


def volume_mounts_errors(container: dict, volumes: dict[str, dict], path: str) -> Errors:
    """ValidateVolumeMounts: names an existing volume, unique non-empty mountPath, subPath rules."""
    errs = Errors()
    device_names = {_get(d, "name") for _, d in _items(container.get("volumeDevices"), "")}
    device_paths = {_get(d, "devicePath") for _, d in _items(container.get("volumeDevices"), "")}
    privileged = _dict(container.get("securityContext")).get("privileged") is True
    mount_paths: set[str] = set()
    for mount_path, mount in _items(container.get("volumeMounts"), path):
        name, target = _get(mount, "name"), _get(mount, "mountPath")
        if not name:
            errs.add(f"{mount_path}.name", "required")
        elif name not in volumes:
            errs.add(f"{mount_path}.name", f"{_q(name)} names no volume")
        if not target:
            errs.add(f"{mount_path}.mountPath", "required")
        elif target in mount_paths:
            errs.add(f"{mount_path}.mountPath", f"{_q(target)}: must be unique")
        mount_paths.add(target)
        if name and name in device_names:
            errs.add(f"{mount_path}.name", f"{_q(name)}: must not already exist in volumeDevices")
        if target and target in device_paths:
            errs.add(
                f"{mount_path}.mountPath", f"{_q(target)}: must not already exist as a path in volumeDevices"
            )
        sub_path, sub_path_expr = mount.get("subPath"), mount.get("subPathExpr")
        if name in volumes and "image" in volumes[name] and (sub_path or sub_path_expr):
            errs.add(mount_path, "subPath/subPathExpr not allowed in image volume sources")
        if sub_path:
            local_descending_path_errors(errs, f"{mount_path}.subPath", str(sub_path))
        if sub_path_expr:
            if sub_path:
                errs.add(f"{mount_path}.subPathExpr", "subPathExpr and subPath are mutually exclusive")
            local_descending_path_errors(errs, f"{mount_path}.subPathExpr", str(sub_path_expr))
        propagation = mount.get("mountPropagation")
        if propagation is not None:  # validateMountPropagation
            if not _in(propagation, MOUNT_PROPAGATIONS):
                errs.add(
                    f"{mount_path}.mountPropagation",
                    f"{_q(propagation)}: supported values: {sorted(MOUNT_PROPAGATIONS)}",
                )
            elif propagation == "Bidirectional" and not privileged:
                errs.add(
                    f"{mount_path}.mountPropagation",
                    "Bidirectional mount propagation is available only to privileged containers",
                )
        rro = mount.get("recursiveReadOnly")  # validateMountRecursiveReadOnly
        if rro in ("Enabled", "IfPossible"):
            if mount.get("readOnly") is not True:
                errs.add(f"{mount_path}.recursiveReadOnly", "may only be specified when readOnly is true")
            if propagation not in (None, "None"):
                errs.add(
                    f"{mount_path}.recursiveReadOnly",
                    "may only be specified when mountPropagation is None or not specified",
                )
        elif rro not in (None, "Disabled"):
            errs.add(
                f"{mount_path}.recursiveReadOnly",
                f"{_q(rro)}: supported values: Disabled, Enabled, IfPossible",
            )
    return errs


def volume_devices_errors(container: dict, volumes: dict[str, dict], path: str) -> Errors:
    """ValidateVolumeDevices: block devices come from PVC or ephemeral volumes."""
    errs = Errors()
    mount_names = {_get(m, "name") for _, m in _items(container.get("volumeMounts"), "")}
    mount_paths = {_get(m, "mountPath") for _, m in _items(container.get("volumeMounts"), "")}
    names: set[str] = set()
    paths: set[str] = set()
    for dev_path, device in _items(container.get("volumeDevices"), path):
        name, target = _get(device, "name"), _get(device, "devicePath")
        if not name:
            errs.add(f"{dev_path}.name", "required")
        elif name not in volumes:
            errs.add(f"{dev_path}.name", f"{_q(name)} names no volume")
        elif not ({"persistentVolumeClaim", "ephemeral"} & set(volumes[name])):
            errs.add(
                f"{dev_path}.name",
                f"{_q(name)}: can only use volume source type of PersistentVolumeClaim or Ephemeral for block mode",
            )
        if name in names:
            errs.add(f"{dev_path}.name", f"{_q(name)}: must be unique")
        names.add(name)
        if not target:
            errs.add(f"{dev_path}.devicePath", "required")
        elif target in paths:
            errs.add(f"{dev_path}.devicePath", f"{_q(target)}: must be unique")
        paths.add(target)
        if target:
            no_backsteps_errors(errs, f"{dev_path}.devicePath", str(target))
        if name in mount_names:
            errs.add(f"{dev_path}.name", f"{_q(name)}: must not already exist in volumeMounts")
        if target in mount_paths:
            errs.add(
                f"{dev_path}.devicePath", f"{_q(target)}: must not already exist as a path in volumeMounts"
            )
    return errs


def _resource_name_errors(errs: Errors, path: str, name: str) -> None:
    """validateContainerResourceName: a standard name, hugepages-*, or a qualified extended name."""
    problems = fmt.qualified_name(name)
    if problems:
        errs.each(path, name, problems)
    elif "/" not in name:
        if name not in STANDARD_CONTAINER_RESOURCES and not name.startswith("hugepages-"):
            errs.add(path, f"{_q(name)}: must be a standard resource for containers")
    elif not _native(name) and name.startswith("requests."):  # helper.IsExtendedResourceName
        errs.add(path, f"{_q(name)}: doesn't follow extended resource name standard")


def _native(name: str) -> bool:
    """helper.IsNativeResource: unprefixed, or in the kubernetes.io namespace."""
    return "/" not in name or "kubernetes.io/" in name


def _overcommit_allowed(name: str) -> bool:
    """helper.IsOvercommitAllowed: only native resources other than hugepages."""
    return _native(name) and not name.startswith("hugepages-")


def resources_errors(resources: Any, claim_names: set[str], path: str) -> Errors:
    """validateResourceRequirements: valid names, quantities >= 0, requests <= limits."""
    errs = Errors()
    resources = _dict(resources)
    limits, requests = _dict(resources.get("limits")), _dict(resources.get("requests"))
    parsed: dict[str, dict] = {"limits": {}, "requests": {}}
    for kind, values in (("limits", limits), ("requests", requests)):
        for name, raw in values.items():
            key_path = f"{path}.{kind}[{_q(name)}]"
            _resource_name_errors(errs, key_path, name)
            quantity = fmt.parse_quantity(raw)
            if quantity is None:
                errs.add(key_path, f"{_q(raw)}: not a quantity (like 100m, 64Mi, 1.5, 2e3)")
            elif quantity < 0:
                errs.add(key_path, f"{_q(raw)}: must be greater than or equal to 0")
            elif not _native(name) and quantity != quantity.to_integral_value():
                errs.add(key_path, f"{_q(raw)}: must be an integer")  # ValidateResourceQuantityValue
            else:
                parsed[kind][name] = quantity
    for name, request in parsed["requests"].items():
        limit = parsed["limits"].get(name)
        if limit is None:
            if name not in limits and not _overcommit_allowed(name):
                errs.add(f"{path}.limits", f"limit must be set for non overcommitable resource {_q(name)}")
        elif not _overcommit_allowed(name) and request != limit:
            errs.add(
                f"{path}.requests", f"{_q(requests[name])}: must be equal to {name} limit of {limits[name]}"
            )
        elif request > limit:
            errs.add(
                f"{path}.requests",
                f"{_q(requests[name])}: must be less than or equal to {name} limit of {limits[name]}",
            )
    for claim_path, claim in _items(resources.get("claims"), f"{path}.claims"):  # validateResourceClaimNames
        name = _get(claim, "name")
        if not name:
            errs.add(claim_path, "required")
        elif name not in claim_names:
            errs.add(claim_path, f"{_q(name)}: must be one of the names in pod.spec.resourceClaims")
    return errs


def _seccomp_profile_errors(errs: Errors, path: str, profile: Any) -> None:
    """validateSeccompProfileField."""
    if profile is None:
        return
    profile = _dict(profile)
    kind = profile.get("type")
    if kind not in ("Localhost", "RuntimeDefault", "Unconfined"):
        errs.add(f"{path}.type", f"{_q(kind)}: supported values: Localhost, RuntimeDefault, Unconfined")
    elif kind == "Localhost" and not profile.get("localhostProfile"):
        errs.add(f"{path}.localhostProfile", "must be set when seccomp type is Localhost")
    elif kind != "Localhost" and profile.get("localhostProfile"):
        errs.add(f"{path}.localhostProfile", "can only be set when seccomp type is Localhost")


def _apparmor_profile_errors(errs: Errors, path: str, profile: Any) -> None:
    """ValidateAppArmorProfileField."""
    if profile is None:
        return
    profile = _dict(profile)
    kind, localhost = profile.get("type"), profile.get("localhostProfile")
    if not _in(kind, {"Localhost", "RuntimeDefault", "Unconfined"}):
        errs.add(f"{path}.type", f"{_q(kind)}: supported values: Localhost, RuntimeDefault, Unconfined")
    elif kind == "Localhost" and not (isinstance(localhost, str) and localhost.strip()):
        errs.add(f"{path}.localhostProfile", "must be set when AppArmor type is Localhost")
    elif kind != "Localhost" and localhost is not None:
        errs.add(f"{path}.localhostProfile", "can only be set when AppArmor type is Localhost")


def security_context_errors(sc: Any, path: str) -> Errors:
    """ValidateSecurityContext (container)."""
    errs = Errors()
    if sc is None:
        return errs
    sc = _dict(sc)
    for key in ("runAsUser", "runAsGroup"):
        if sc.get(key) is not None:
            errs.each(f"{path}.{key}", sc[key], fmt.user_id(sc[key]))
    if sc.get("procMount") not in (None, "Default", "Unmasked"):
        errs.add(f"{path}.procMount", f"{_q(sc['procMount'])}: supported values: Default, Unmasked")
    _seccomp_profile_errors(errs, f"{path}.seccompProfile", sc.get("seccompProfile"))
    _apparmor_profile_errors(errs, f"{path}.appArmorProfile", sc.get("appArmorProfile"))
    if sc.get("allowPrivilegeEscalation") is False:
        if sc.get("privileged") is True:
            errs.add(path, "cannot set `allowPrivilegeEscalation` to false and `privileged` to true")
        if "CAP_SYS_ADMIN" in _list(_dict(sc.get("capabilities")).get("add")):
            errs.add(
                path, "cannot set `allowPrivilegeEscalation` to false and `capabilities.Add` CAP_SYS_ADMIN"
            )
    return errs


def _handler_errors(errs: Errors, path: str, handler: dict, kinds: tuple[str, ...], grace: int) -> None:
    """validateHandler: exactly one handler type, and each handler's own rules."""
    present = [k for k in kinds if handler.get(k) is not None]
    if not present:
        errs.add(path, f"must specify a handler type, one of {list(kinds)}")
    elif len(present) > 1:
        errs.add(path, f"may not specify more than 1 handler type, found {present}")
    if "exec" in present and not _list(_dict(handler["exec"]).get("command")):
        errs.add(f"{path}.exec.command", "required")  # validateExecAction
    if "httpGet" in present:  # validateHTTPGetAction (path and scheme are defaulted)
        http = _dict(handler["httpGet"])
        errs.each(f"{path}.httpGet.port", http.get("port"), fmt.port_num_or_name(http.get("port")))
        if "scheme" in http and http["scheme"] not in ("HTTP", "HTTPS"):
            errs.add(f"{path}.httpGet.scheme", f"{_q(http['scheme'])}: supported values: HTTP, HTTPS")
        for header_path, header in _items(http.get("httpHeaders"), f"{path}.httpGet.httpHeaders"):
            errs.each(
                header_path, _get(header, "name"), fmt.http_header_name(str(_get(header, "name") or ""))
            )
    if "tcpSocket" in present:
        port = _dict(handler["tcpSocket"]).get("port")
        errs.each(f"{path}.tcpSocket.port", port, fmt.port_num_or_name(port))
    if "grpc" in present:
        port = _dict(handler["grpc"]).get("port")
        errs.each(f"{path}.grpc.port", port, fmt.port_number(port))
    if "sleep" in present:  # validateSleepAction
        seconds = _int(_dict(handler["sleep"]).get("seconds"))
        if seconds is None or not 0 < seconds <= grace:
            errs.add(
                f"{path}.sleep.seconds",
                f"must be greater than 0 and less than terminationGracePeriodSeconds ({grace})",
            )


PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
LIFECYCLE_HANDLERS = ("exec", "httpGet", "tcpSocket", "sleep")


def probe_errors(probe: Any, kind: str, grace: int, path: str) -> Errors:
    """validateLivenessProbe / validateReadinessProbe / validateStartupProbe / validateProbe."""
    errs = Errors()
    if probe is None:
        return errs
    probe = _dict(probe)
    _handler_errors(errs, path, probe, PROBE_HANDLERS, grace)
    for key in (
        "initialDelaySeconds",
        "timeoutSeconds",
        "periodSeconds",
        "successThreshold",
        "failureThreshold",
    ):
        value = _int(probe.get(key))
        if value is not None and value < 0:
            errs.add(f"{path}.{key}", f"{value}: must be greater than or equal to 0")
    tgps = _int(probe.get("terminationGracePeriodSeconds"))
    if tgps is not None and tgps <= 0:
        errs.add(f"{path}.terminationGracePeriodSeconds", f"{tgps}: must be greater than 0")
    if kind in ("livenessProbe", "startupProbe") and probe.get("successThreshold") not in (None, 0, 1):
        errs.add(f"{path}.successThreshold", f"{probe['successThreshold']}: must be 1")
    if kind == "readinessProbe" and probe.get("terminationGracePeriodSeconds") is not None:
        errs.add(f"{path}.terminationGracePeriodSeconds", "must not be set for readinessProbes")
    return errs


def lifecycle_errors(lifecycle: Any, grace: int, path: str) -> Errors:
    """validateLifecycle."""
    errs = Errors()
    for hook in ("postStart", "preStop"):
        handler = _dict(lifecycle).get(hook)
        if handler is not None:
            _handler_errors(errs, f"{path}.{hook}", _dict(handler), LIFECYCLE_HANDLERS, grace)
    return errs


def probes_and_lifecycle_errors(container: dict, grace: int, path: str) -> Errors:
    errs = Errors()
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        errs += probe_errors(container.get(kind), kind, grace, f"{path}.{kind}")
    if container.get("lifecycle") is not None:
        errs += lifecycle_errors(container["lifecycle"], grace, f"{path}.lifecycle")
    return errs


def container_common_errors(container: dict, ctx: PodContext, path: str) -> Errors:
    """validateContainerCommon (+ validateContainerOnlyForPod for pods)."""
    errs = Errors()
    name = _get(container, "name")
    if not name:
        errs.add(f"{path}.name", "required")
    else:
        errs.each(f"{path}.name", name, fmt.dns1123_label(str(name)))
    image = container.get("image")
    if not image:
        errs.add(f"{path}.image", "required")
    elif not ctx.template and str(image) != str(image).strip():
        errs.add(f"{path}.image", f"{_q(image)}: must not have leading or trailing whitespace")
    policy = container.get("terminationMessagePolicy")
    if policy is not None and not _in(policy, TERMINATION_MESSAGE_POLICIES):
        errs.add(
            f"{path}.terminationMessagePolicy", f"{_q(policy)}: supported values: File, FallbackToLogsOnError"
        )
    pull = container.get("imagePullPolicy")
    if pull is not None and not _in(pull, PULL_POLICIES):
        errs.add(f"{path}.imagePullPolicy", f"{_q(pull)}: supported values: Always, IfNotPresent, Never")
    errs += container_ports_errors(container.get("ports"), f"{path}.ports")
    errs += env_errors(container.get("env"), f"{path}.env")
    errs += env_from_errors(container.get("envFrom"), f"{path}.envFrom")
    errs += volume_mounts_errors(container, ctx.volumes, f"{path}.volumeMounts")
    errs += volume_devices_errors(container, ctx.volumes, f"{path}.volumeDevices")
    errs += resources_errors(container.get("resources"), ctx.claim_names, f"{path}.resources")
    errs += security_context_errors(container.get("securityContext"), f"{path}.securityContext")
    return errs


def host_port_conflicts(containers: list[tuple[str, dict]]) -> Errors:
    """checkHostPortConflicts: protocol/hostIP/hostPort unique among containers running together."""
    errs = Errors()
    seen: set[str] = set()
    for path, container in containers:
        for port_path, port in _items(container.get("ports"), f"{path}.ports"):
            if port.get("hostPort"):
                key = f"{port.get('protocol', 'TCP')}/{port.get('hostIP', '')}/{port['hostPort']}"
                if key in seen:
                    errs.add(f"{port_path}.hostPort", f"duplicate host port {_q(key)}")
                seen.add(key)
    return errs


class PodContext:
    """What container validation needs to know about the rest of the pod."""

    def __init__(self, spec: dict, volumes: dict[str, dict], template: bool):
        self.spec = spec
        self.volumes = volumes
        self.template = template
        self.claim_names = {_get(c, "name") for _, c in _items(spec.get("resourceClaims"), "")}
        grace = _int(spec.get("terminationGracePeriodSeconds"))
        self.grace = 30 if grace is None else grace  # the API server's default


def containers_errors(ctx: PodContext, path: str) -> Errors:
    """validateContainers: at least one, unique names, no restartPolicy, valid probes."""
    errs = Errors()
    containers = list(_items(ctx.spec.get("containers"), f"{path}.containers"))
    if not containers:
        errs.add(f"{path}.containers", "required: a pod needs at least one container")
    names: set[str] = set()
    for c_path, container in containers:
        errs += container_common_errors(container, ctx, c_path)
        name = _get(container, "name")
        if name in names:
            errs.add(f"{c_path}.name", f"duplicate container name {_q(name)}")
        names.add(name)
        errs += probes_and_lifecycle_errors(container, ctx.grace, c_path)
        if container.get("restartPolicy") is not None:
            errs.add(f"{c_path}.restartPolicy", "may not be set for non-init containers")
    errs += host_port_conflicts(containers)
    return errs


def init_containers_errors(ctx: PodContext, path: str) -> Errors:
    """validateInitContainers + validateInitContainerRestartPolicy (native sidecars)."""
    errs = Errors()
    names = {_get(c, "name") for _, c in _items(ctx.spec.get("containers"), "")}
    for c_path, container in _items(ctx.spec.get("initContainers"), f"{path}.initContainers"):
        errs += container_common_errors(container, ctx, c_path)
        restart = container.get("restartPolicy")
        if restart is not None and restart != "Always":
            errs.add(f"{c_path}.restartPolicy", f"{_q(restart)}: supported values: Always")
        name = _get(container, "name")
        if name in names:
            errs.add(f"{c_path}.name", f"duplicate container name {_q(name)}")
        elif name:
            names.add(name)
        errs += host_port_conflicts([(c_path, container)])
        if restart == "Always":
            errs += probes_and_lifecycle_errors(container, ctx.grace, c_path)
        else:
            for key in ("lifecycle", "livenessProbe", "readinessProbe", "startupProbe"):
                if container.get(key) is not None:
                    errs.add(
                        f"{c_path}.{key}", "may not be set for init containers without restartPolicy=Always"
                    )
    return errs


# Fields an ephemeral container may not set (allowedEphemeralContainerFields, false or absent).
EPHEMERAL_FORBIDDEN = (
    "ports",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
    "resizePolicy",
    "restartPolicy",
)


def ephemeral_containers_errors(ctx: PodContext, path: str) -> Errors:
    """validateEphemeralContainers: names unique across all containers, few fields allowed."""
    errs = Errors()
    ephemeral = list(_items(ctx.spec.get("ephemeralContainers"), f"{path}.ephemeralContainers"))
    if ctx.template and ephemeral:
        errs.add(f"{path}.ephemeralContainers", "ephemeral containers not allowed in pod template")
    others = {
        _get(c, "name") for key in ("containers", "initContainers") for _, c in _items(ctx.spec.get(key), "")
    }
    names = set(others)
    for c_path, container in ephemeral:
        errs += container_common_errors(container, ctx, c_path)
        name = _get(container, "name")
        if name in names:
            errs.add(f"{c_path}.name", f"duplicate container name {_q(name)}")
        names.add(name)
        target = _get(container, "targetContainerName")
        if target and target not in others:
            errs.add(f"{c_path}.targetContainerName", f"{_q(target)} names no container")
        for key in EPHEMERAL_FORBIDDEN:
            if container.get(key) not in (None, [], {}):
                errs.add(f"{c_path}.{key}", "cannot be set for an Ephemeral Container")
        for m_path, mount in _items(container.get("volumeMounts"), f"{c_path}.volumeMounts"):
            for key in ("subPath", "subPathExpr"):
                if mount.get(key):
                    errs.add(f"{m_path}.{key}", "cannot be set for an Ephemeral Container")
    return errs


# --- the rest of PodSpec --------------------------------------------------------

RESTART_POLICIES = {"Always", "OnFailure", "Never"}
SYSCTL_SEGMENT = "[a-z0-9]([-_a-z0-9]*[a-z0-9])?"
SYSCTL_NAME = re.compile(rf"^({SYSCTL_SEGMENT}[\./])*{SYSCTL_SEGMENT}$")  # SysctlContainSlashFmt
DNS_POLICIES = {"ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"}


def pod_security_context_errors(sc: Any, path: str) -> Errors:
    """validatePodSpecSecurityContext: IDs in range, a valid seccomp profile."""
    errs = Errors()
    sc = _dict(sc)
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        if sc.get(key) is not None:
            errs.each(f"{path}.{key}", sc[key], fmt.user_id(sc[key]))
    for i, gid in enumerate(_list(sc.get("supplementalGroups"))):
        errs.each(f"{path}.supplementalGroups[{i}]", gid, fmt.user_id(gid))
    _seccomp_profile_errors(errs, f"{path}.seccompProfile", sc.get("seccompProfile"))
    _apparmor_profile_errors(errs, f"{path}.appArmorProfile", sc.get("appArmorProfile"))
    _sysctls_errors(errs, f"{path}.sysctls", sc.get("sysctls"))
    return errs


def _sysctls_errors(errs: Errors, path: str, sysctls: Any) -> None:
    """validateSysctls: valid (IsValidSysctlName), unique names."""
    seen: set[Any] = set()
    for s_path, sysctl in _items(sysctls, path):
        name = _get(sysctl, "name")
        if not name:
            errs.add(f"{s_path}.name", "required")
        elif not (isinstance(name, str) and len(name) <= 253 and SYSCTL_NAME.match(name)):
            errs.add(f"{s_path}.name", f"{_q(name)}: not a valid sysctl name")
        elif name in seen:
            errs.add(f"{s_path}.name", f"duplicate sysctl {_q(name)}")
        seen.add(name)


def tolerations_errors(tolerations: Any, path: str) -> Errors:
    """ValidateTolerations."""
    errs = Errors()
    for t_path, toleration in _items(tolerations, path):
        key, operator = toleration.get("key") or "", toleration.get("operator") or ""
        if key:
            errs.each(f"{t_path}.key", key, fmt.qualified_name(key))
        if not key and operator != "Exists":
            errs.add(f"{t_path}.operator", f"{_q(operator)}: operator must be Exists when `key` is empty")
        if toleration.get("tolerationSeconds") is not None and toleration.get("effect") != "NoExecute":
            errs.add(f"{t_path}.effect", "effect must be 'NoExecute' when `tolerationSeconds` is set")
        if operator in ("", "Equal"):
            errs.each(
                f"{t_path}.value",
                toleration.get("value") or "",
                fmt.label_value(str(toleration.get("value") or "")),
            )
        elif operator == "Exists":
            if toleration.get("value"):
                errs.add(f"{t_path}.value", "value must be empty when `operator` is 'Exists'")
        else:
            errs.add(f"{t_path}.operator", f"{_q(operator)}: supported values: Equal, Exists")
        effect = toleration.get("effect")
        if effect and effect not in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
            errs.add(
                f"{t_path}.effect", f"{_q(effect)}: supported values: NoSchedule, PreferNoSchedule, NoExecute"
            )
    return errs


def pod_spec_fields_errors(spec: dict, path: str) -> Errors:
    """The scalar parts of ValidatePodSpec and validatePodHostNetworkDeps."""
    errs = Errors()
    if "restartPolicy" in spec and not _in(spec["restartPolicy"], RESTART_POLICIES):
        errs.add(
            f"{path}.restartPolicy",
            f"{_q(spec['restartPolicy'])}: supported values: Always, OnFailure, Never",
        )
    if "dnsPolicy" in spec and not _in(spec["dnsPolicy"], DNS_POLICIES):
        errs.add(f"{path}.dnsPolicy", f"{_q(spec['dnsPolicy'])}: supported values: {sorted(DNS_POLICIES)}")
    if spec.get("dnsPolicy") == "None" and not _list(_dict(spec.get("dnsConfig")).get("nameservers")):
        errs.add(f"{path}.dnsConfig", "must provide at least one DNS nameserver when `dnsPolicy` is None")
    for key, check in (
        ("serviceAccountName", fmt.dns1123_subdomain),
        ("nodeName", fmt.dns1123_subdomain),
        ("priorityClassName", fmt.dns1123_subdomain),
        ("hostname", fmt.dns1123_label),
        ("subdomain", fmt.dns1123_label),
    ):
        if spec.get(key):
            errs.each(f"{path}.{key}", spec[key], check(str(spec[key])))
    deadline = _int(spec.get("activeDeadlineSeconds"))
    if deadline is not None and not 1 <= deadline <= 2**31 - 1:
        errs.add(f"{path}.activeDeadlineSeconds", f"{deadline}: must be between 1 and 2147483647, inclusive")
    errs += labels_errors(spec.get("nodeSelector"), f"{path}.nodeSelector")
    errs += pod_security_context_errors(spec.get("securityContext"), f"{path}.securityContext")
    errs += tolerations_errors(spec.get("tolerations"), f"{path}.tolerations")
    if spec.get("hostNetwork") is True:  # validatePodHostNetworkDeps
        for c_path, container in _items(spec.get("containers"), f"{path}.containers"):
            for p_path, port in _items(container.get("ports"), f"{c_path}.ports"):
                host_port = port.get("hostPort")
                if host_port and host_port != port.get("containerPort"):
                    errs.add(
                        f"{p_path}.hostPort",
                        f"{host_port}: must match `containerPort` when `hostNetwork` is true",
                    )
    if (
        spec.get("shareProcessNamespace") is True and spec.get("hostPID") is True
    ):  # validatePodSpecSecurityContext
        errs.add(f"{path}.shareProcessNamespace", "ShareProcessNamespace and HostPID cannot both be enabled")
    if spec.get("hostUsers") is False:  # validateHostUsers
        for key in ("hostNetwork", "hostPID", "hostIPC"):
            if spec.get(key) is True:
                errs.add(f"{path}.{key}", "forbidden when `hostUsers` is false")
    return errs


def pod_spec_errors(spec: dict, path: str, template: bool) -> Errors:
    """ValidatePodSpec."""
    volumes, errs = volumes_errors(spec.get("volumes"), f"{path}.volumes")
    ctx = PodContext(spec, volumes, template)
    errs += containers_errors(ctx, path)
    errs += init_containers_errors(ctx, path)
    errs += ephemeral_containers_errors(ctx, path)
    errs += pod_spec_fields_errors(spec, path)
    return errs


def pod_rule_errors(
    pod_spec: dict, metadata: dict | None = None, *, template: bool = False, prefix: str = ""
) -> list[str]:
    """Pod validation rules of the API server beyond the OpenAPI schema.

    `metadata` is the pod's (or template's) metadata; None skips metadata checks.
    `template=True` applies ValidatePodTemplateSpec instead of pod creation rules
    (labels and annotations only, no ephemeral containers, image whitespace allowed).
    `prefix` is prepended to every path, e.g. "spec.template." for a Deployment.
    """
    errs = Errors()
    meta_path, spec_path = f"{prefix}metadata", f"{prefix}spec"
    if metadata is not None:
        metadata = _dict(metadata)
        if template:  # ValidatePodTemplateSpec
            errs += labels_errors(metadata.get("labels"), f"{meta_path}.labels")
            errs += annotations_errors(metadata.get("annotations"), f"{meta_path}.annotations")
        else:  # validatePodMetadataAndSpec
            errs += object_meta_errors(metadata, meta_path)
        errs += pod_annotations_errors(metadata.get("annotations"), f"{meta_path}.annotations")
    errs += pod_spec_errors(_dict(pod_spec), spec_path, template)
    if not template:
        errs += pod_create_errors(_dict(pod_spec), spec_path)
    return list(errs)


def pod_create_errors(spec: dict, path: str) -> Errors:
    """ValidatePodCreate: what only a new Pod (not a template) may not carry."""
    errs = Errors()
    if _list(spec.get("ephemeralContainers")):  # only the ephemeralcontainers subresource adds them
        errs.add(f"{path}.ephemeralContainers", "cannot be set on create")
    if spec.get("nodeName") and _list(spec.get("schedulingGates")):
        errs.add(f"{path}.nodeName", "cannot be set until all schedulingGates have been cleared")
    return errs

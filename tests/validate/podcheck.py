#!/usr/bin/env python3
"""podcheck: the independent test oracle for tandem.

Says whether a real Kubernetes API server would accept an object, above all a Pod
produced by applying tandem's JSON patch. It shares no code with the Rust webhook:
  * the OpenAPI schema, strict (unknown fields rejected), from the kubernetes-validate
    package, for each version in VERSIONS_TO_CHECK;
  * the API server's pod validation rules the schema cannot express (pod_rules.py,
    a re-reading of pkg/apis/core/validation/validation.go);
  * on request, the Pod Security Standard "restricted" and tandem's own container
    rules (pod_security.py).

Use it as a library (validate_pod, validate_object, ...), from the command line
(`podcheck.py FILE...`, YAML or JSON, multi-document; exit 1 on errors), or as a
line server for the Rust tests (`podcheck.py --serve`: one JSON request per stdin
line, `{"object": {...}, "restricted": ["name", ...]}`, one `{"errors": [...]}` line
back per request).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Iterable
from typing import Any

import jsonschema
import yaml
from kubernetes_validate import utils as kv
from referencing import Registry, Resource

from pod_rules import pod_rule_errors
from pod_security import restricted_errors, tandem_container_errors

__all__ = [
    "DEFAULT_VERSION",
    "VERSIONS_TO_CHECK",
    "check",
    "pod_rule_errors",
    "restricted_errors",
    "schema_errors",
    "tandem_container_errors",
    "validate_object",
    "validate_pod",
]

KNOWN_VERSIONS = frozenset(kv.all_versions())
DEFAULT_VERSION = kv.latest_version()
# The newest schema the package knows, and 1.29: the first release with native
# sidecars (init containers with restartPolicy: Always) in beta, on by default.
VERSIONS_TO_CHECK = tuple(dict.fromkeys([DEFAULT_VERSION, "1.29.0"]))

MAX_MESSAGE = 300  # jsonschema quotes whole sub-objects in some messages

# kind -> (path of the pod template inside the object, restartPolicy values its controller accepts)
TEMPLATE_PATHS: dict[str, tuple[tuple[str, ...], set[str] | None]] = {
    "Deployment": (("spec", "template"), {"Always"}),
    "StatefulSet": (("spec", "template"), {"Always"}),
    "DaemonSet": (("spec", "template"), {"Always"}),
    "ReplicaSet": (("spec", "template"), {"Always"}),
    "ReplicationController": (("spec", "template"), {"Always"}),
    "Job": (("spec", "template"), {"OnFailure", "Never"}),
    "CronJob": (("spec", "jobTemplate", "spec", "template"), {"OnFailure", "Never"}),
    "PodTemplate": (("template",), None),
}


# --- schema -----------------------------------------------------------------------


@functools.cache
def _definitions(version: str) -> Registry:
    """The shared definitions of one strict schema set, loaded once per version."""
    defs = kv.schema_contents(f"kubernetes-json-schema/v{version}-local-strict/_definitions.json", version)
    return Resource.from_contents(defs) @ Registry()


@functools.cache
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    """A strict validator for one kind, as kubernetes_validate.validate builds it (but cached)."""
    group_version = api_version.split("/")
    mangled = (
        group_version[0]
        if len(group_version) == 1
        else f"{group_version[0].split('.')[0]}-{group_version[1]}"
    )
    try:
        schema = kv.schema_contents(
            f"kubernetes-json-schema/v{version}-local-strict/{kind.lower()}-{mangled}.json", version
        )
    except (FileNotFoundError, kv.VersionNotSupportedError):  # the latter for kinds with a "/"
        return None
    registry = Resource.from_contents(schema) @ _definitions(version)
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _json_path(parts: Iterable[Any]) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path or "(root)"


def _short(message: str) -> str:
    return message if len(message) <= MAX_MESSAGE else message[:MAX_MESSAGE] + "..."


def schema_errors(obj: dict, version: str = DEFAULT_VERSION) -> list[str]:
    """OpenAPI schema errors of `obj` for Kubernetes `version`, unknown fields included."""
    if not isinstance(obj, dict) or not obj.get("kind") or not obj.get("apiVersion"):
        return ["(root): an object needs apiVersion and kind"]
    version = version.removeprefix("v")
    if version not in KNOWN_VERSIONS:
        raise ValueError(f"kubernetes-validate has no schema for Kubernetes {version}")
    validator = _validator(version, str(obj["kind"]), str(obj["apiVersion"]))
    if validator is None:
        return [f"(root): no schema for kind {obj['kind']} in {obj['apiVersion']} (Kubernetes {version})"]
    errors = sorted(validator.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{_json_path(e.absolute_path)}: {_short(e.message)}" for e in errors]


# --- objects that hold pods -----------------------------------------------------------


def _dig(obj: Any, path: tuple[str, ...]) -> Any:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    return obj


def _selector_errors(obj: dict, template: dict, prefix: str) -> list[str]:
    """apps/v1 validation: `selector` must select the template's labels (ValidateDeploymentSpec...)."""
    selector = _dig(obj, ("spec", "selector"))
    if obj.get("kind") not in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet") or not isinstance(
        selector, dict
    ):
        return []
    labels = _dig(template, ("metadata", "labels")) or {}
    ok = all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        ok &= {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }.get(op, False)
    return [] if ok else [f"{prefix}metadata.labels: `selector` does not match template `labels`"]


def _pod_views(obj: dict, prefix: str = "") -> list[tuple[str, dict, bool]]:
    """(path prefix, pod-like {metadata, spec}, is_template) for every pod `obj` holds."""
    kind = str(obj.get("kind"))
    if kind == "Pod":
        return [(prefix, obj, False)]
    if kind in TEMPLATE_PATHS:
        path, _ = TEMPLATE_PATHS[kind]
        template = _dig(obj, path)
        return [(prefix + ".".join(path) + ".", template, True)] if isinstance(template, dict) else []
    return []


def _template_rules(obj: dict, template: dict, prefix: str) -> list[str]:
    """Controller-specific template rules (apps and batch validation)."""
    _, restart_policies = TEMPLATE_PATHS[str(obj["kind"])]
    errs = _selector_errors(obj, template, prefix)
    policy = _dig(template, ("spec", "restartPolicy")) or "Always"  # defaulting fills in Always
    if restart_policies and not (isinstance(policy, str) and policy in restart_policies):
        errs.append(
            f"{prefix}spec.restartPolicy: {json.dumps(policy)}: supported values: {sorted(restart_policies)}"
        )
    return errs


def _is_list(obj: dict) -> bool:
    return str(obj.get("kind", "")).endswith("List") and isinstance(obj.get("items"), list)


def validate_object(obj: dict, version: str = DEFAULT_VERSION) -> list[str]:
    """Schema errors plus, for a Pod, a workload's pod template, or the items of a List,
    the pod rules. Other kinds: schema only."""
    if isinstance(obj, dict) and _is_list(obj):
        return [
            f"items[{i}].{e}" for i, item in enumerate(obj["items"]) for e in validate_object(item, version)
        ]
    errs = schema_errors(obj, version)
    if not isinstance(obj, dict):
        return errs
    for prefix, pod, template in _pod_views(obj):
        errs += pod_rule_errors(pod.get("spec"), pod.get("metadata", {}), template=template, prefix=prefix)
        if template:
            errs += _template_rules(obj, pod, prefix)
    return errs


def validate_pod(pod: dict) -> list[str]:
    """validate_object for every version in VERSIONS_TO_CHECK, messages deduplicated.

    A message that only some versions give says so: `... (Kubernetes 1.29.0 only)`.
    Works for any object validate_object accepts, not only Pods.
    """
    seen: dict[str, list[str]] = {}
    for version in VERSIONS_TO_CHECK:
        for message in validate_object(pod, version):
            versions = seen.setdefault(message, [])
            if version not in versions:
                versions.append(version)
    return [
        m if len(v) == len(VERSIONS_TO_CHECK) else f"{m} (Kubernetes {', '.join(v)} only)"
        for m, v in seen.items()
    ]


def check(obj: dict, restricted: list[str] | None = None) -> list[str]:
    """validate_pod, plus restricted_errors and tandem_container_errors for the named
    containers of every pod `obj` holds (what the --serve protocol answers)."""
    errs = validate_pod(obj)
    if restricted:
        errs += _container_rules(obj, restricted)
    return errs


def _container_rules(obj: dict, names: list[str], prefix: str = "") -> list[str]:
    if _is_list(obj):
        return [
            e
            for i, item in enumerate(obj["items"])
            if isinstance(item, dict)
            for e in _container_rules(item, names, f"{prefix}items[{i}].")
        ]
    views = _pod_views(obj, prefix)
    if not views:
        return [f"{prefix or '(root)'}: {obj.get('kind')} holds no pod to check containers {names} in"]
    errs = []
    for path, pod, _ in views:
        errs += restricted_errors(pod, names, prefix=path)
        errs += tandem_container_errors(pod, names, prefix=path)
    return list(dict.fromkeys(errs))  # both report a missing container


# --- command line and line server -------------------------------------------------------


def serve(stdin=sys.stdin, stdout=sys.stdout) -> None:
    """One JSON request per line in, one `{"errors": [...]}` line out, flushed."""
    for line in stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict) or not isinstance(request.get("object"), dict):
                raise ValueError('a request is {"object": {...}, "restricted": [names]}')
            restricted = request.get("restricted") or []
            if not isinstance(restricted, list) or not all(isinstance(n, str) for n in restricted):
                raise ValueError("restricted must be a list of container names")
            errors = check(request["object"], restricted)
        except Exception as exc:  # a bad request must not stop the server
            errors = [f"oracle: {type(exc).__name__}: {exc}"]
        stdout.write(json.dumps({"errors": errors}) + "\n")
        stdout.flush()


def _documents(path: str) -> list[Any]:
    with sys.stdin if path == "-" else open(path, encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]  # JSON is YAML


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", help="YAML or JSON files ('-' for stdin)")
    parser.add_argument("--serve", action="store_true", help="answer JSON requests line by line")
    parser.add_argument(
        "--restricted",
        default="",
        help="comma-separated container names to hold to PSS restricted and tandem's rules",
    )
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return 0
    if not args.files:
        parser.error("give FILE... or --serve")
    restricted = [n for n in args.restricted.split(",") if n]
    failed = False
    for path in args.files:
        for i, doc in enumerate(_documents(path)):
            meta = (doc.get("metadata") or {}) if isinstance(doc, dict) else {}
            name = meta.get("name") or (meta.get("generateName") or "?") + "*"
            name = f"{path}[{i}] {doc.get('kind', '?')}/{name}" if isinstance(doc, dict) else f"{path}[{i}]"
            for error in check(doc, restricted) if isinstance(doc, dict) else ["(root): not an object"]:
                print(f"{name}: {error}")
                failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""Proves the oracle catches what a real API server rejects.

Each rule has one case: a valid pod (what tandem produces for a pod with a log
shipper, a git clone and an ambassador) changed by a JSON patch, and a substring the
oracle's message must contain. The valid pod, and a pod exactly as the API server
hands it to a webhook (defaults, managedFields, service-account token volume,
ownerReferences), must pass.
"""

from __future__ import annotations

import copy
import io
import json
import os
import random
import subprocess
import sys
import time

import jsonpatch
import pytest
import yaml

import k8s_formats
import podcheck
from podcheck import (
    VERSIONS_TO_CHECK,
    pod_rule_errors,
    restricted_errors,
    schema_errors,
    tandem_container_errors,
    validate_object,
    validate_pod,
)

HERE = os.path.dirname(os.path.abspath(__file__))
INJECTED = ["tandem-git-clone", "tandem-log-shipper", "tandem-ambassador"]

HARDENED = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "runAsUser": 65532,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
RESOURCES = {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"memory": "64Mi"}}

# A pod as tandem would leave it: git clone (plain init), two native sidecars, the app.
MUTATED_POD = yaml.safe_load(f"""
apiVersion: v1
kind: Pod
metadata:
  generateName: web-7d9c5b-
  namespace: shop
  labels: {{app: web}}
  annotations:
    tandem.dev/log-shipper: "true"
    tandem.dev/git-clone: https://github.com/example/site.git
    tandem.dev/ambassador: tcp
    tandem.dev/injected: git-clone,log-shipper,ambassador
spec:
  initContainers:
  - name: tandem-git-clone
    image: registry.k8s.io/git-sync/git-sync:v4.2.4
    args: ["--one-time", "--repo=https://github.com/example/site.git", "--root=/git"]
    resources: {json.dumps(RESOURCES)}
    securityContext: {json.dumps(HARDENED)}
    volumeMounts:
    - {{name: tandem-git, mountPath: /git}}
  - name: tandem-log-shipper
    image: cr.fluentbit.io/fluent/fluent-bit:3.2
    restartPolicy: Always
    resources: {json.dumps(RESOURCES)}
    securityContext: {json.dumps(HARDENED)}
    startupProbe: {{tcpSocket: {{port: 2020}}, periodSeconds: 2}}
    ports: [{{name: tandem-logs, containerPort: 2020}}]
    volumeMounts:
    - {{name: tandem-logs, mountPath: /var/log/app, readOnly: true}}
  - name: tandem-ambassador
    image: envoyproxy/envoy:v1.31.0
    restartPolicy: Always
    resources: {json.dumps(RESOURCES)}
    securityContext: {json.dumps(HARDENED)}
    readinessProbe: {{tcpSocket: {{port: tandem-amb}}}}
    lifecycle: {{preStop: {{sleep: {{seconds: 5}}}}}}
    ports: [{{name: tandem-amb, containerPort: 6380}}]
    env:
    - {{name: POD_NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    - {{name: MEMORY_LIMIT, valueFrom: {{resourceFieldRef: {{resource: limits.memory}}}}}}
  containers:
  - name: web
    image: nginx:1.27
    ports: [{{name: http, containerPort: 80}}]
    envFrom: [{{configMapRef: {{name: web-config}}}}]
    volumeMounts:
    - {{name: tandem-logs, mountPath: /var/log/app}}
    - {{name: tandem-git, mountPath: /usr/share/nginx/html, readOnly: true}}
  volumes:
  - {{name: tandem-logs, emptyDir: {{}}}}
  - {{name: tandem-git, emptyDir: {{sizeLimit: 256Mi}}}}
""")

# A pod exactly as the API server sends it to a mutating webhook: created by a ReplicaSet,
# defaulted, with managedFields and the service-account token volume the ServiceAccount
# admission plugin adds. Name and status are still empty at that point.
DEFAULTED_POD = {
    "kind": "Pod",
    "apiVersion": "v1",
    "metadata": {
        "generateName": "api-6b7f9d4c8-",
        "namespace": "payments",
        "creationTimestamp": None,
        "labels": {"app.kubernetes.io/name": "api", "pod-template-hash": "6b7f9d4c8"},
        "annotations": {"kubectl.kubernetes.io/restartedAt": "2024-05-01T10:00:00Z"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "api-6b7f9d4c8",
                "uid": "5c1e7b1a-3f0d-4b8e-9a57-2f1f1c8d9e01",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
        "managedFields": [
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "apiVersion": "v1",
                "time": "2024-05-01T10:00:01Z",
                "fieldsType": "FieldsV1",
                "fieldsV1": {
                    "f:metadata": {
                        "f:generateName": {},
                        "f:labels": {".": {}, "f:app.kubernetes.io/name": {}},
                        "f:ownerReferences": {
                            ".": {},
                            'k:{"uid":"5c1e7b1a-3f0d-4b8e-9a57-2f1f1c8d9e01"}': {},
                        },
                    },
                    "f:spec": {"f:containers": {'k:{"name":"api"}': {".": {}, "f:image": {}, "f:name": {}}}},
                },
            }
        ],
    },
    "spec": {
        "volumes": [
            {
                "name": "kube-api-access-x7k2p",
                "projected": {
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {
                            "configMap": {
                                "name": "kube-root-ca.crt",
                                "items": [{"key": "ca.crt", "path": "ca.crt"}],
                            }
                        },
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                    "defaultMode": 420,
                },
            }
        ],
        "containers": [
            {
                "name": "api",
                "image": "ghcr.io/example/api:1.4.2",
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "env": [
                    {
                        "name": "GOMAXPROCS",
                        "valueFrom": {
                            "resourceFieldRef": {
                                "containerName": "api",
                                "resource": "limits.cpu",
                                "divisor": "1",
                            }
                        },
                    }
                ],
                "resources": {
                    "limits": {"cpu": "1", "memory": "256Mi"},
                    "requests": {"cpu": "250m", "memory": "128Mi"},
                },
                "volumeMounts": [
                    {
                        "name": "kube-api-access-x7k2p",
                        "readOnly": True,
                        "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    }
                ],
                "livenessProbe": {
                    "httpGet": {"path": "/healthz", "port": "http", "scheme": "HTTP"},
                    "timeoutSeconds": 1,
                    "periodSeconds": 10,
                    "successThreshold": 1,
                    "failureThreshold": 3,
                },
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
                "imagePullPolicy": "IfNotPresent",
                "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
            }
        ],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "default",
        "serviceAccount": "default",
        "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
        "schedulerName": "default-scheduler",
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "priority": 0,
        "enableServiceLinks": True,
        "preemptionPolicy": "PreemptLowerPriority",
    },
    "status": {},
}


def patched(pod: dict, patch: list[dict]) -> dict:
    return jsonpatch.apply_patch(copy.deepcopy(pod), patch)


def op(verb: str, path: str, value=None) -> dict:
    """One JSON patch operation."""
    return {"op": verb, "path": path} if verb == "remove" else {"op": verb, "path": path, "value": value}


def case(name: str, expected: str, *patch: dict):
    """A table row: the patch that breaks the valid pod, and a substring of the expected error."""
    return pytest.param(list(patch), expected, id=name)


INIT0, INIT1, INIT2 = (f"/spec/initContainers/{i}" for i in range(3))
APP = "/spec/containers/0"


# --- the valid pods pass ----------------------------------------------------------------


@pytest.mark.parametrize("pod", [MUTATED_POD, DEFAULTED_POD], ids=["tandem-output", "api-server-defaulted"])
def test_valid_pods_pass(pod):
    assert validate_pod(pod) == []
    assert restricted_errors(pod, INJECTED if pod is MUTATED_POD else None) == []


def test_injected_containers_meet_tandem_rules():
    assert tandem_container_errors(MUTATED_POD, INJECTED) == []


def test_versions_to_check():
    assert VERSIONS_TO_CHECK[0] == podcheck.DEFAULT_VERSION == "1.37.0"
    assert "1.29.0" in VERSIONS_TO_CHECK


# --- schema (strict) ------------------------------------------------------------------

# fmt: off
SCHEMA_CASES = [
    case("unknown-container-field",
         "spec.initContainers[1]: Additional properties are not allowed ('restartPolicyy' was unexpected)",
         op("add", f"{INIT1}/restartPolicyy", "Always")),
    case("unknown-spec-field", "('sidecars' was unexpected)", op("add", "/spec/sidecars", [])),
    case("port-as-string", "spec.containers[0].ports[0].containerPort: '80' is not of type 'integer'",
         op("replace", f"{APP}/ports/0/containerPort", "80")),
    case("env-value-not-string", "spec.containers[0].env[0].value: 3 is not of type 'string'",
         op("add", f"{APP}/env", [{"name": "N", "value": 3}])),
    case("missing-container-name", "'name' is a required property", op("remove", f"{APP}/name")),
    case("mount-missing-mountPath", "'mountPath' is a required property",
         op("remove", f"{APP}/volumeMounts/0/mountPath")),
]
# fmt: on


@pytest.mark.parametrize("patch, expected", SCHEMA_CASES)
def test_schema_rejects(patch, expected):
    errors = schema_errors(patched(MUTATED_POD, patch))
    assert any(expected in e for e in errors), errors


def test_schema_reports_version_specific_fields():
    # Pod-level resources exist from 1.32 (PodLevelResources): 1.29 refuses the field.
    pod = patched(MUTATED_POD, [op("add", "/spec/resources", {"limits": {"cpu": "2"}})])
    assert schema_errors(pod, VERSIONS_TO_CHECK[0]) == []
    assert validate_pod(pod) == [
        "spec: Additional properties are not allowed ('resources' was unexpected) (Kubernetes 1.29.0 only)"
    ]


# --- pod rules the schema cannot express ----------------------------------------------

# fmt: off
RULE_CASES = [
    # names (validateContainers, validateInitContainers, validateEphemeralContainers)
    case("init-name-clashes-app", 'spec.initContainers[1].name: duplicate container name "web"',
         op("replace", f"{INIT1}/name", "web")),
    case("app-names-clash", 'spec.containers[1].name: duplicate container name "web"',
         op("add", "/spec/containers/-", {"name": "web", "image": "x"})),
    case("ephemeral-name-clashes", 'spec.ephemeralContainers[0].name: duplicate container name "tandem-log-shipper"',
         op("add", "/spec/ephemeralContainers", [{"name": "tandem-log-shipper", "image": "busybox"}])),
    case("container-name-not-dns-label", "lowercase RFC 1123 label", op("replace", f"{INIT1}/name", "Tandem_Log")),
    case("container-name-too-long", "must be no more than 63 characters", op("replace", f"{INIT1}/name", "t" * 64)),
    # volumes (ValidateVolumes, validateVolumeSource, validateProjectionSources, validateKeyToPath)
    case("volume-names-clash", 'spec.volumes[2].name: duplicate volume name "tandem-logs"',
         op("add", "/spec/volumes/-", {"name": "tandem-logs", "emptyDir": {}})),
    case("volume-name-with-dot", "must not contain dots", op("replace", "/spec/volumes/1/name", "tandem.git")),
    case("volume-two-sources", "may not specify more than 1 volume type",
         op("add", "/spec/volumes/0/secret", {"secretName": "s"})),
    case("volume-no-source", "must specify a volume type", op("add", "/spec/volumes/-", {"name": "empty"})),
    case("negative-size-limit", "must be a valid, non-negative quantity",
         op("replace", "/spec/volumes/1/emptyDir/sizeLimit", "-1Gi")),
    case("short-token-expiry", "must be between 10 minutes",
         op("add", "/spec/volumes/-", {"name": "tok", "projected": {"sources": [
             {"serviceAccountToken": {"path": "token", "expirationSeconds": 60}}]}})),
    case("projected-two-kinds-in-source", "must specify exactly 1 volume type per source",
         op("add", "/spec/volumes/-", {"name": "p", "projected": {"sources": [
             {"secret": {"name": "a"}, "configMap": {"name": "b"}}]}})),
    case("projected-duplicate-paths", "conflicting duplicate paths",
         op("add", "/spec/volumes/-", {"name": "p", "projected": {"sources": [
             {"secret": {"name": "a", "items": [{"key": "k", "path": "x"}]}},
             {"configMap": {"name": "b", "items": [{"key": "k", "path": "x"}]}}]}})),
    case("default-mode-too-big", "between 0 and 0777",
         op("add", "/spec/volumes/-", {"name": "s", "secret": {"secretName": "s", "defaultMode": 1000}})),
    case("key-to-path-escapes", "must not contain '..'",
         op("add", "/spec/volumes/-", {"name": "c", "configMap": {"name": "c", "items": [
             {"key": "k", "path": "../x"}]}})),
    # mounts (ValidateVolumeMounts, ValidateVolumeDevices, validateMountPropagation)
    case("mount-names-no-volume", 'spec.initContainers[1].volumeMounts[0].name: "x" names no volume',
         op("replace", f"{INIT1}/volumeMounts/0/name", "x")),
    case("device-names-no-volume", 'spec.containers[0].volumeDevices[0].name: "disk" names no volume',
         op("add", f"{APP}/volumeDevices", [{"name": "disk", "devicePath": "/dev/xvda"}])),
    case("device-on-emptydir", "can only use volume source type of PersistentVolumeClaim or Ephemeral",
         op("add", f"{APP}/volumeDevices", [{"name": "tandem-git", "devicePath": "/dev/xvda"}])),
    case("mount-path-twice", 'spec.containers[0].volumeMounts[1].mountPath: "/var/log/app": must be unique',
         op("replace", f"{APP}/volumeMounts/1/mountPath", "/var/log/app")),
    case("mount-path-empty", "spec.containers[0].volumeMounts[0].mountPath: required",
         op("replace", f"{APP}/volumeMounts/0/mountPath", "")),
    case("subpath-absolute", "must be a relative path", op("add", f"{APP}/volumeMounts/0/subPath", "/etc")),
    case("subpath-backsteps", "must not contain '..'", op("add", f"{APP}/volumeMounts/0/subPath", "logs/../../etc")),
    case("subpath-and-expr", "subPathExpr and subPath are mutually exclusive",
         op("add", f"{APP}/volumeMounts/0/subPath", "a"), op("add", f"{APP}/volumeMounts/0/subPathExpr", "$(POD)")),
    case("bidirectional-unprivileged", "available only to privileged containers",
         op("add", f"{APP}/volumeMounts/0/mountPropagation", "Bidirectional")),
    case("recursive-readonly-on-rw-mount", "may only be specified when readOnly is true",
         op("add", f"{APP}/volumeMounts/0/recursiveReadOnly", "Enabled")),
    # ports (validateContainerPorts, checkHostPortConflicts)
    case("port-name-16-chars", "must be no more than 15 characters",
         op("replace", f"{INIT1}/ports/0/name", "tandem-logs-2020")),
    case("port-name-uppercase", "must contain only alpha-numeric characters",
         op("replace", f"{APP}/ports/0/name", "HTTP")),
    case("port-name-no-letter", "must contain at least one letter", op("replace", f"{APP}/ports/0/name", "8080")),
    case("port-name-double-hyphen", "must not contain consecutive hyphens",
         op("replace", f"{APP}/ports/0/name", "my--http")),
    case("port-name-edge-hyphen", "must not begin or end with a hyphen", op("replace", f"{APP}/ports/0/name", "http-")),
    case("port-names-clash", 'spec.containers[0].ports[1].name: duplicate port name "http"',
         op("add", f"{APP}/ports/-", {"name": "http", "containerPort": 81})),
    case("container-port-zero", "spec.containers[0].ports[0].containerPort: required",
         op("replace", f"{APP}/ports/0/containerPort", 0)),
    case("container-port-too-big", "must be between 1 and 65535", op("replace", f"{APP}/ports/0/containerPort", 70000)),
    case("bad-protocol", "must be one of TCP, UDP, SCTP", op("add", f"{APP}/ports/0/protocol", "HTTP")),
    case("host-port-conflict", "duplicate host port",
         op("add", f"{APP}/ports/0/hostPort", 8080),
         op("add", f"{APP}/ports/-", {"containerPort": 81, "hostPort": 8080})),
    # env (ValidateEnv, validateEnvVarValueFrom, validateObjectFieldSelector, ValidateEnvFrom)
    case("env-name-starts-with-digit", "must not start with a digit",
         op("add", f"{APP}/env", [{"name": "1ST", "value": "x"}])),
    case("env-name-empty", "spec.containers[0].env[0].name: required",
         op("add", f"{APP}/env", [{"name": "", "value": "x"}])),
    case("env-value-and-valueFrom", "may not be specified when `value` is not empty",
         op("add", f"{INIT2}/env/0/value", "x")),
    case("env-two-sources", "may not have more than one field specified at a time",
         op("add", f"{INIT2}/env/0/valueFrom/secretKeyRef", {"name": "s", "key": "k"})),
    case("env-no-source", "must specify one of: `fieldRef`", op("replace", f"{INIT2}/env/0/valueFrom", {})),
    case("env-bad-field-path", "supported values",
         op("replace", f"{INIT2}/env/0/valueFrom/fieldRef/fieldPath", "spec.containers")),
    case("env-bad-resource-field", "supported values",
         op("replace", f"{INIT2}/env/1/valueFrom/resourceFieldRef/resource", "limits.gpu")),
    case("env-secret-key-invalid", "a valid config key",
         op("add", f"{APP}/env", [{"name": "K", "valueFrom": {"secretKeyRef": {"name": "s", "key": "a/b"}}}])),
    case("envfrom-no-source", "must specify exactly one of: `configMapRef` or `secretRef`",
         op("add", f"{APP}/envFrom/-", {"prefix": "X_"})),
    # resources (validateResourceRequirements, validateContainerResourceName, ValidateResourceQuantityValue)
    case("request-above-limit",
         'spec.initContainers[1].resources.requests: "128Mi": must be less than or equal to memory limit of 64Mi',
         op("replace", f"{INIT1}/resources/requests/memory", "128Mi")),
    case("quantity-unparsable", "not a quantity", op("replace", f"{INIT1}/resources/requests/cpu", "20 m")),
    case("quantity-negative", "must be greater than or equal to 0",
         op("replace", f"{INIT1}/resources/requests/cpu", "-1")),
    case("resource-name-unknown", "must be a standard resource for containers",
         op("add", f"{INIT1}/resources/limits/gpu", "1")),
    case("extended-resource-fraction", "must be an integer",
         op("add", f"{APP}/resources", {"limits": {"example.com/dongle": "500m"}})),
    case("extended-resource-request-only", "limit must be set for non overcommitable resource",
         op("add", f"{APP}/resources", {"requests": {"example.com/dongle": "1"}})),
    # native sidecars (validateInitContainerRestartPolicy, validateInitContainers, validateContainers)
    case("init-restart-onfailure", 'spec.initContainers[1].restartPolicy: "OnFailure": supported values: Always',
         op("replace", f"{INIT1}/restartPolicy", "OnFailure")),
    case("app-with-restart-policy", "may not be set for non-init containers",
         op("add", f"{APP}/restartPolicy", "Always")),
    case("probe-on-plain-init",
         "spec.initContainers[0].readinessProbe: may not be set for init containers without restartPolicy=Always",
         op("add", f"{INIT0}/readinessProbe", {"exec": {"command": ["true"]}})),
    case("lifecycle-on-plain-init",
         "spec.initContainers[0].lifecycle: may not be set for init containers without restartPolicy=Always",
         op("add", f"{INIT0}/lifecycle", {"preStop": {"exec": {"command": ["true"]}}})),
    case("sidecar-loses-restart-policy",
         "spec.initContainers[1].startupProbe: may not be set for init containers without restartPolicy=Always",
         op("remove", f"{INIT1}/restartPolicy")),
    # probes and hooks (validateProbe, validateHandler, validateSleepAction)
    case("probe-two-handlers", "may not specify more than 1 handler type",
         op("add", f"{INIT1}/startupProbe/exec", {"command": ["true"]})),
    case("probe-no-handler", "must specify a handler type",
         op("replace", f"{INIT1}/startupProbe", {"periodSeconds": 2})),
    case("probe-exec-no-command", "startupProbe.exec.command: required",
         op("replace", f"{INIT1}/startupProbe", {"exec": {}})),
    case("probe-port-name-invalid", "must contain only alpha-numeric",
         op("replace", f"{INIT2}/readinessProbe/tcpSocket/port", "Amb_Port")),
    case("probe-negative-period", "must be greater than or equal to 0",
         op("replace", f"{INIT1}/startupProbe/periodSeconds", -1)),
    case("startup-success-threshold", "successThreshold: 2: must be 1",
         op("add", f"{INIT1}/startupProbe/successThreshold", 2)),
    case("readiness-grace-period", "must not be set for readinessProbes",
         op("add", f"{INIT2}/readinessProbe/terminationGracePeriodSeconds", 5)),
    case("sleep-longer-than-grace", "less than terminationGracePeriodSeconds (30)",
         op("replace", f"{INIT2}/lifecycle/preStop/sleep/seconds", 45)),
    # containers (validateContainerCommon, validateContainerOnlyForPod, ValidateSecurityContext)
    case("image-missing", "spec.initContainers[1].image: required", op("remove", f"{INIT1}/image")),
    case("image-whitespace", "must not have leading or trailing whitespace",
         op("replace", f"{APP}/image", " nginx:1.27")),
    case("bad-pull-policy", "supported values: Always, IfNotPresent, Never",
         op("add", f"{APP}/imagePullPolicy", "Sometimes")),
    case("no-privesc-but-privileged", "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
         op("add", f"{INIT1}/securityContext/privileged", True)),
    case("seccomp-localhost-without-profile", "must be set when seccomp type is Localhost",
         op("replace", f"{INIT1}/securityContext/seccompProfile", {"type": "Localhost"})),
    case("run-as-user-negative", "must be between 0 and", op("replace", f"{INIT1}/securityContext/runAsUser", -1)),
    case("ephemeral-with-ports", "spec.ephemeralContainers[0].ports: cannot be set for an Ephemeral Container",
         op("add", "/spec/ephemeralContainers", [
             {"name": "debug", "image": "busybox", "ports": [{"containerPort": 1}]}])),
    case("ephemeral-on-create", "spec.ephemeralContainers: cannot be set on create",
         op("add", "/spec/ephemeralContainers", [{"name": "debug", "image": "busybox"}])),
    case("no-containers", "spec.containers: required", op("replace", "/spec/containers", [])),
    case("apparmor-localhost-without-profile", "must be set when AppArmor type is Localhost",
         op("add", f"{INIT1}/securityContext/appArmorProfile", {"type": "Localhost"})),
    # pod fields (ValidatePodSpec, validatePodDNSConfig, validatePodHostNetworkDeps, ValidateTolerations)
    case("bad-restart-policy", "supported values: Always, OnFailure, Never",
         op("add", "/spec/restartPolicy", "Sometimes")),
    case("bad-service-account-name", "lowercase RFC 1123 subdomain", op("add", "/spec/serviceAccountName", "Default")),
    case("toleration-seconds-without-noexecute", "effect must be 'NoExecute'",
         op("add", "/spec/tolerations", [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}])),
    case("bad-sysctl-name", "not a valid sysctl name",
         op("add", "/spec/securityContext", {"sysctls": [{"name": "Kernel.X", "value": "1"}]})),
    case("share-pid-with-host-pid", "ShareProcessNamespace and HostPID cannot both be enabled",
         op("add", "/spec/shareProcessNamespace", True), op("add", "/spec/hostPID", True)),
    case("node-name-with-scheduling-gates", "cannot be set until all schedulingGates have been cleared",
         op("add", "/spec/nodeName", "node-1"), op("add", "/spec/schedulingGates", [{"name": "example.com/wait"}])),
    case("dns-none-without-config", "must provide at least one DNS nameserver", op("add", "/spec/dnsPolicy", "None")),
    case("host-network-host-port-mismatch", "must match `containerPort` when `hostNetwork` is true",
         op("add", "/spec/hostNetwork", True), op("add", f"{APP}/ports/0/hostPort", 8080)),
    # metadata (ValidateObjectMeta, ValidateAnnotations, ValidateLabels, ValidateOwnerReferences, ...)
    case("annotation-key-with-space", "name part must consist of",
         op("add", "/metadata/annotations/tandem.dev~1bad key", "x")),
    case("annotation-key-two-slashes", "a qualified name must consist of",
         op("add", "/metadata/annotations/a~1b~1c", "x")),
    case("annotations-too-big", "too long: annotations total",
         op("add", "/metadata/annotations/tandem.dev~1big", "x" * (256 * 1024))),
    case("label-value-too-long", "must be no more than 63 characters", op("replace", "/metadata/labels/app", "w" * 64)),
    case("label-key-bad-prefix", "prefix part", op("add", "/metadata/labels/Tandem.Dev~1x", "y")),
    case("no-name-nor-generate-name", "metadata.name: name or generateName is required",
         op("remove", "/metadata/generateName")),
    case("name-uppercase", "lowercase RFC 1123 subdomain", op("add", "/metadata/name", "Web")),
    case("generate-name-invalid", "metadata.generateName", op("replace", "/metadata/generateName", "web_")),
    case("namespace-invalid", "metadata.namespace", op("replace", "/metadata/namespace", "Shop")),
    case("two-controllers", "only one reference can have controller set to true",
         op("add", "/metadata/ownerReferences", [
             {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": "1", "controller": True},
             {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "b", "uid": "2", "controller": True}])),
    case("owner-without-uid", "metadata.ownerReferences[0].uid: must not be empty",
         op("add", "/metadata/ownerReferences", [
             {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "a", "uid": ""}])),
    case("bad-finalizer", "neither a standard finalizer name nor fully qualified",
         op("add", "/metadata/finalizers", ["cleanup"])),
    case("bad-managed-fields-operation", "must be `Apply` or `Update`",
         op("add", "/metadata/managedFields", [{"manager": "m", "operation": "Patch"}])),
    case("bad-deletion-cost", "must be a 32bit integer",
         op("add", "/metadata/annotations/controller.kubernetes.io~1pod-deletion-cost", "cheap")),
]
# fmt: on


@pytest.mark.parametrize("patch, expected", RULE_CASES)
def test_pod_rules_reject(patch, expected):
    pod = patched(MUTATED_POD, patch)
    errors = validate_pod(pod)
    assert any(expected in e for e in errors), errors
    if expected != "spec.containers: required":  # the one case the schema also sees (minItems)
        assert schema_errors(pod) == [], "the schema alone must not catch it"


def test_pod_rule_errors_takes_spec_and_metadata():
    pod = patched(MUTATED_POD, [op("replace", f"{INIT1}/volumeMounts/0/name", "x")])
    assert pod_rule_errors(pod["spec"], None) == [
        'spec.initContainers[1].volumeMounts[0].name: "x" names no volume'
    ]
    assert pod_rule_errors(MUTATED_POD["spec"], MUTATED_POD["metadata"]) == []


# --- Pod Security Standard "restricted" and tandem's container rules -------------------

# fmt: off
RESTRICTED_CASES = [
    case("privilege-escalation-unset", "spec.initContainers[1].securityContext.allowPrivilegeEscalation: must be false",
         op("remove", f"{INIT1}/securityContext/allowPrivilegeEscalation")),
    case("run-as-non-root-unset", "runAsNonRoot: must be true", op("remove", f"{INIT1}/securityContext/runAsNonRoot")),
    case("run-as-root", "runAsUser: must not be 0", op("replace", f"{INIT1}/securityContext/runAsUser", 0)),
    case("no-drop-all", 'capabilities.drop: must include "ALL"',
         op("replace", f"{INIT1}/securityContext/capabilities", {"drop": ["NET_RAW"]})),
    case("adds-sys-admin", "['SYS_ADMIN'] not allowed",
         op("add", f"{INIT1}/securityContext/capabilities/add", ["SYS_ADMIN"])),
    case("seccomp-unconfined", "must be RuntimeDefault or Localhost",
         op("replace", f"{INIT1}/securityContext/seccompProfile/type", "Unconfined")),
    case("seccomp-unset", "must be RuntimeDefault or Localhost",
         op("remove", f"{INIT1}/securityContext/seccompProfile")),
    case("privileged", "privileged: must be false or unset", op("add", f"{INIT1}/securityContext/privileged", True)),
    case("host-port", "spec.initContainers[1].ports[0].hostPort: must be 0 or unset",
         op("add", f"{INIT1}/ports/0/hostPort", 2020)),
    case("mounts-host-path", "mounts volume 'host' of restricted type 'hostPath'",
         op("add", "/spec/volumes/-", {"name": "host", "hostPath": {"path": "/var/log"}}),
         op("add", f"{INIT1}/volumeMounts/-", {"name": "host", "mountPath": "/host"})),
    case("selinux-user", "seLinuxOptions.user: may not be set",
         op("add", f"{INIT1}/securityContext/seLinuxOptions", {"user": "root"})),
    case("probe-host", "startupProbe.tcpSocket.host: must be unset",
         op("add", f"{INIT1}/startupProbe/tcpSocket/host", "10.0.0.1")),
    case("proc-mount-unmasked", "procMount", op("add", f"{INIT1}/securityContext/procMount", "Unmasked")),
]
# fmt: on


@pytest.mark.parametrize("patch, expected", RESTRICTED_CASES)
def test_restricted_rejects(patch, expected):
    errors = restricted_errors(patched(MUTATED_POD, patch), INJECTED)
    assert any(expected in e for e in errors), errors


def test_restricted_takes_pod_level_values_into_account():
    # Pod-level runAsNonRoot and seccompProfile cover a container that sets neither...
    moved = patched(MUTATED_POD, [
        op("remove", f"{INIT1}/securityContext/runAsNonRoot"),
        op("remove", f"{INIT1}/securityContext/seccompProfile"),
        op("add", "/spec/securityContext", {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}}),
    ])  # fmt: skip
    assert restricted_errors(moved, ["tandem-log-shipper"]) == []
    # ...and a pod-level root user is inherited by a container that does not override it.
    root = patched(moved, [
        op("remove", f"{INIT1}/securityContext/runAsUser"),
        op("add", "/spec/securityContext/runAsUser", 0),
    ])  # fmt: skip
    assert restricted_errors(root, ["tandem-log-shipper"]) == [
        "spec.initContainers[1].securityContext.runAsUser: must not be 0"
    ]


def test_restricted_judges_only_the_named_containers():
    # The app container is not hardened: that is the user's business, not tandem's.
    assert restricted_errors(MUTATED_POD, INJECTED) == []
    whole = restricted_errors(MUTATED_POD)
    assert whole and all(e.startswith("spec.containers[0].") for e in whole), whole


# fmt: off
POD_LEVEL_CASES = [
    case("host-network", "spec.hostNetwork: must be false or unset", op("add", "/spec/hostNetwork", True)),
    case("host-path-volume", "volume type 'hostPath' is not allowed",
         op("add", "/spec/volumes/-", {"name": "h", "hostPath": {"path": "/"}})),
    case("unsafe-sysctl", "not a safe sysctl",
         op("add", "/spec/securityContext/sysctls", [{"name": "kernel.msgmax", "value": "1"}])),
    case("pod-run-as-root", "spec.securityContext.runAsUser: must not be 0",
         op("add", "/spec/securityContext/runAsUser", 0)),
]
# fmt: on


@pytest.mark.parametrize("patch, expected", POD_LEVEL_CASES)
def test_restricted_whole_pod_checks_pod_fields(patch, expected):
    errors = restricted_errors(patched(DEFAULTED_POD, patch))
    assert any(expected in e for e in errors), errors


# fmt: off
TANDEM_CASES = [
    case("writable-root", "spec.initContainers[1].securityContext.readOnlyRootFilesystem: must be true",
         op("replace", f"{INIT1}/securityContext/readOnlyRootFilesystem", False)),
    case("no-cpu-request", "spec.initContainers[2].resources.requests: must request cpu",
         op("remove", f"{INIT2}/resources/requests/cpu")),
    case("no-memory-request", "must request memory", op("remove", f"{INIT0}/resources/requests/memory")),
    case("no-memory-limit", "spec.initContainers[1].resources.limits: must limit memory",
         op("remove", f"{INIT1}/resources/limits")),
    case("container-missing", "container 'tandem-ambassador' not found", op("remove", "/spec/initContainers/2")),
]
# fmt: on


@pytest.mark.parametrize("patch, expected", TANDEM_CASES)
def test_tandem_container_rules(patch, expected):
    errors = tandem_container_errors(patched(MUTATED_POD, patch), INJECTED)
    assert any(expected in e for e in errors), errors


# --- objects that hold pods ---------------------------------------------------------------


def workload(kind: str, api_version: str, pod: dict, restart_policy: str | None = None) -> dict:
    template = {"metadata": copy.deepcopy(pod["metadata"]), "spec": copy.deepcopy(pod["spec"])}
    for key in ("generateName", "namespace"):
        template["metadata"].pop(key, None)
    if restart_policy:
        template["spec"]["restartPolicy"] = restart_policy
    if kind == "CronJob":
        return {
            "apiVersion": api_version,
            "kind": kind,
            "metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    spec = {"template": template}
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet"):
        spec["selector"] = {"matchLabels": {"app": "web"}}
    if kind == "StatefulSet":
        spec["serviceName"] = "web"
    return {"apiVersion": api_version, "kind": kind, "metadata": {"name": "web"}, "spec": spec}


WORKLOADS = [
    ("Deployment", "apps/v1", None, "spec.template."),
    ("StatefulSet", "apps/v1", None, "spec.template."),
    ("DaemonSet", "apps/v1", None, "spec.template."),
    ("ReplicaSet", "apps/v1", None, "spec.template."),
    ("Job", "batch/v1", "Never", "spec.template."),
    ("CronJob", "batch/v1", "OnFailure", "spec.jobTemplate.spec.template."),
]


@pytest.mark.parametrize("kind, api_version, restart, prefix", WORKLOADS, ids=[w[0] for w in WORKLOADS])
def test_workload_templates(kind, api_version, restart, prefix):
    good = workload(kind, api_version, MUTATED_POD, restart)
    assert validate_pod(good) == []
    bad = workload(kind, api_version, patched(MUTATED_POD, [op("replace", f"{INIT1}/name", "web")]), restart)
    assert f'{prefix}spec.initContainers[1].name: duplicate container name "web"' in validate_pod(bad)


def test_controller_template_rules():
    job = workload("Job", "batch/v1", MUTATED_POD)  # no restartPolicy: defaulted to Always, which Jobs refuse
    assert (
        "spec.template.spec.restartPolicy: \"Always\": supported values: ['Never', 'OnFailure']"
        in validate_pod(job)
    )
    deployment = workload("Deployment", "apps/v1", MUTATED_POD)
    deployment["spec"]["selector"] = {"matchLabels": {"app": "api"}}
    assert "spec.template.metadata.labels: `selector` does not match template `labels`" in validate_pod(
        deployment
    )
    template = workload(
        "Deployment",
        "apps/v1",
        patched(
            MUTATED_POD, [op("add", "/spec/ephemeralContainers", [{"name": "debug", "image": "busybox"}])]
        ),
    )
    assert (
        "spec.template.spec.ephemeralContainers: ephemeral containers not allowed in pod template"
        in validate_pod(template)
    )


def test_list_items_are_checked_one_by_one():
    bad = patched(MUTATED_POD, [op("replace", f"{INIT1}/volumeMounts/0/name", "x")])
    errors = validate_object({"apiVersion": "v1", "kind": "List", "items": [MUTATED_POD, bad]})
    assert errors == ['items[1].spec.initContainers[1].volumeMounts[0].name: "x" names no volume']


def test_other_kinds_get_schema_only():
    service = {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "Not_Checked"},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": "http"}]},
    }
    assert validate_object(service) == []
    service["spec"]["ports"][0]["nodePort"] = "x"
    assert validate_object(service) == ["spec.ports[0].nodePort: 'x' is not of type 'integer', 'null'"]
    assert validate_object({"apiVersion": "example.com/v1", "kind": "Widget"}) == [
        "(root): no schema for kind Widget in example.com/v1 (Kubernetes 1.37.0)"
    ]


# --- formats -----------------------------------------------------------------------------

QUANTITIES = [
    ("100m", "0.1"),
    ("64Mi", str(64 * 2**20)),
    ("1e3", "1000"),
    ("1.5Gi", str(3 * 2**29)),
    (0.5, "0.5"),
    (2, "2"),
    ("+1k", "1000"),
    (".5", "0.5"),
    ("12 Mi", None),
    ("1.2.3", None),
    ("Mi", None),
    ("", None),
    (True, None),
]


@pytest.mark.parametrize("raw, value", QUANTITIES, ids=[repr(q[0]) for q in QUANTITIES])
def test_parse_quantity(raw, value):
    parsed = k8s_formats.parse_quantity(raw)
    assert (parsed is None and value is None) or (parsed is not None and parsed == k8s_formats.Decimal(value))


@pytest.mark.parametrize(
    "name, ok",
    [
        ("http", True),
        ("h2c", True),
        ("a-b-c", True),
        ("tandem-metrics1", True),
        ("tandem-metrics-1", False),
        ("", False),
        ("80", False),
        ("-a", False),
    ],
)
def test_port_name(name, ok):
    assert (k8s_formats.port_name(name) == []) == ok


def test_malformed_values_never_crash_the_oracle():
    """The schema reports wrongly typed values; the pod rules must not trip over them."""
    rng = random.Random(7)
    junk = [None, 0, -1, 1.5, True, "", "../x", [], {}, [1], {"a": 1}, [{}], [None], "a/b/c", "9" * 70]

    def paths(node, path=()):
        yield path
        children = (
            node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        )
        for key, child in children:
            yield from paths(child, (*path, key))

    for _ in range(150):
        pod = copy.deepcopy(rng.choice([MUTATED_POD, DEFAULTED_POD]))
        for _ in range(rng.randint(1, 3)):
            *parents, last = rng.choice([p for p in paths(pod) if p])
            target = pod
            for key in parents:
                target = target[key]
            target[last] = copy.deepcopy(rng.choice(junk))
        assert isinstance(podcheck.check(pod, INJECTED), list)
        assert isinstance(restricted_errors(pod), list)


# --- command line and line server ----------------------------------------------------------


def test_cli(tmp_path, capsys):
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.json"
    good.write_text(yaml.safe_dump_all([MUTATED_POD, DEFAULTED_POD]))
    bad.write_text(json.dumps(patched(MUTATED_POD, [op("replace", f"{APP}/ports/0/name", "HTTP")])))
    assert podcheck.main([str(good)]) == 0
    assert podcheck.main([str(good), str(bad)]) == 1
    assert 'bad.json[0] Pod/web-7d9c5b-*: spec.containers[0].ports[0].name: "HTTP"' in capsys.readouterr().out
    assert (
        podcheck.main([str(good), "--restricted", ",".join(INJECTED)]) == 1
    )  # the second pod has none of them
    assert (
        "good.yaml[1] Pod/api-6b7f9d4c8-*: spec: container 'tandem-git-clone' not found"
        in capsys.readouterr().out
    )


def test_serve_in_process():
    requests = [
        json.dumps({"object": MUTATED_POD, "restricted": INJECTED}),
        "not json",
        json.dumps(
            {
                "object": patched(MUTATED_POD, [op("replace", f"{INIT1}/securityContext/runAsUser", 0)]),
                "restricted": ["tandem-log-shipper"],
            }
        ),
        json.dumps({"object": DEFAULTED_POD}),
    ]
    out = io.StringIO()
    podcheck.serve(io.StringIO("\n".join(requests) + "\n"), out)
    answers = [json.loads(line)["errors"] for line in out.getvalue().splitlines()]
    assert answers[0] == [] and answers[3] == []
    assert answers[1][0].startswith("oracle: JSONDecodeError")
    assert answers[2] == ["spec.initContainers[1].securityContext.runAsUser: must not be 0"]


def test_serve_subprocess_is_fast():
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "podcheck.py"), "--serve"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = json.dumps({"object": MUTATED_POD, "restricted": INJECTED}) + "\n"
        proc.stdin.write(line)
        proc.stdin.flush()
        assert json.loads(proc.stdout.readline()) == {"errors": []}  # warm-up: schemas load
        start, rounds = time.perf_counter(), 50
        for _ in range(rounds):
            proc.stdin.write(line)
            proc.stdin.flush()
            assert json.loads(proc.stdout.readline()) == {"errors": []}
        per_check = (time.perf_counter() - start) / rounds
        assert per_check < 0.05, f"{per_check * 1000:.1f} ms per check"
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)

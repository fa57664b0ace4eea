"""The webhook Deployment: what the server needs, restricted security, probes, shutdown,
and high availability."""

from __future__ import annotations

import pytest

from chartlib import (
    SCENARIOS,
    container,
    container_port,
    flags,
    pod_of,
    podcheck,
    port_of,
    schema_errors,
    seconds,
    selects,
)

WORKLOAD_SCENARIOS = ["default", "ha-off", "ha-on", "no-cluster-watch", "tls-secret", "everything"]


def webhook_container(objects) -> dict:
    return container(pod_of(objects.one("Deployment")), "tandem")


def test_the_validators_are_not_vacuous(render):
    deployment = render({}).one("Deployment")
    broken = {**deployment, "spec": {**deployment["spec"], "replica": 2}}
    assert schema_errors(broken), "an unknown field must be reported"
    assert schema_errors({"apiVersion": "v1", "kind": "Podd", "metadata": {"name": "x"}})
    pod = pod_of(deployment)
    root = {**pod, "spec": {**pod["spec"], "securityContext": {}, "containers": [
        {**c, "securityContext": {}} for c in pod["spec"]["containers"]]}}
    assert podcheck.restricted_errors(root), "a pod without security contexts is not restricted"


@pytest.mark.parametrize("scenario", WORKLOAD_SCENARIOS)
def test_pod_template_passes_the_oracle_and_pss_restricted(render, scenario):
    deployment = render(SCENARIOS[scenario]).one("Deployment")
    assert podcheck.validate_pod(deployment) == []  # newest Kubernetes and 1.29
    assert podcheck.restricted_errors(pod_of(deployment)) == []


@pytest.mark.parametrize("scenario", WORKLOAD_SCENARIOS)
def test_security_context_is_restricted_with_a_read_only_root(render, scenario):
    pod = pod_of(render(SCENARIOS[scenario]).one("Deployment"))
    spec = pod["spec"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 65532
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True
        assert sc["allowPrivilegeEscalation"] is False
        assert sc["capabilities"] == {"drop": ["ALL"]}
        assert sc["runAsNonRoot"] is True
        assert sc["seccompProfile"] == {"type": "RuntimeDefault"}
        assert not sc.get("privileged", False)
    assert spec["enableServiceLinks"] is False
    assert not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")


def test_resources_have_requests_and_a_memory_limit(render):
    resources = webhook_container(render({}))["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert "memory" in resources["limits"]


def test_server_flags_match_the_interface(render):
    objects = render({})
    c = webhook_container(objects)
    assert c["image"] == "ghcr.io/tandem-dev/tandem:0.1.0"  # the chart's appVersion
    assert c["command"] == ["tandem"] and c["args"][0] == "serve"
    f = flags(c)
    assert f["addr"] == "0.0.0.0:8443" and f["metrics-addr"] == "0.0.0.0:9090"
    assert f["kube"] is True
    assert f["log-format"] == "json" and f["annotation-prefix"] == "tandem.dev"
    assert seconds(f["shutdown-delay"]) == 5 and seconds(f["shutdown-timeout"]) == 20
    assert "client-ca" not in f
    assert port_of(f["addr"]) == container_port(c, "https")
    assert port_of(f["metrics-addr"]) == container_port(c, "metrics")


def test_values_flow_into_the_flags(render):
    objects = render(SCENARIOS["everything"])
    c = webhook_container(objects)
    f = flags(c)
    assert c["image"] == "ghcr.io/tandem-dev/tandem@sha256:" + "ab" * 32
    assert f["log-format"] == "text" and f["max-body"] == "1048576"
    assert seconds(f["shutdown-delay"]) == 10 and seconds(f["shutdown-timeout"]) == 25
    assert c["env"] == [{"name": "TANDEM_LOG", "value": "debug"}]
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod_of(objects.one("Deployment"))["spec"]["volumes"]}
    assert f["client-ca"] == mounts["client-ca"]["mountPath"] + "/ca.crt"
    assert volumes["client-ca"]["secret"]["secretName"] == "apiserver-client-ca"
    spec = pod_of(objects.one("Deployment"))["spec"]
    assert spec["priorityClassName"] == "system-cluster-critical"
    assert spec["imagePullSecrets"] == [{"name": "regcred"}]
    assert spec["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in spec["affinity"]
    assert pod_of(objects.one("Deployment"))["metadata"]["labels"]["team"] == "platform"


def test_tls_and_policies_are_mounted_as_directories(render):
    """The server reloads certificates and policies on the kubelet's ..data symlink swap,
    which a subPath mount never sees. (tls.mode=helm: a mounted Secret.)"""
    objects = render({"tls": {"mode": "helm"}})
    deployment = objects.one("Deployment")
    spec = pod_of(deployment)["spec"]
    c = container(pod_of(deployment), "tandem")
    f = flags(c)
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for m in c["volumeMounts"]:
        assert "subPath" not in m and "subPathExpr" not in m, m
    tls = mounts["tls"]["mountPath"]
    assert f["tls-cert"] == f"{tls}/tls.crt" and f["tls-key"] == f"{tls}/tls.key"
    assert volumes["tls"]["secret"]["secretName"] == objects.one("Secret")["metadata"]["name"]
    assert "items" not in volumes["tls"]["secret"]
    assert f["policies"] == mounts["policies"]["mountPath"]
    assert volumes["policies"]["configMap"]["name"] == objects.one("ConfigMap")["metadata"]["name"]
    assert mounts["tls"]["readOnly"] and mounts["policies"]["readOnly"]
    # the only writable place, since the root filesystem is read-only
    assert volumes["tmp"] == {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}}


def test_probes_hit_healthz_and_readyz_on_the_metrics_listener(render):
    c = webhook_container(render({}))
    f = flags(c)
    live, ready = c["livenessProbe"]["httpGet"], c["readinessProbe"]["httpGet"]
    assert live["path"] == "/healthz" and ready["path"] == "/readyz"
    for probe in (live, ready):
        assert probe["scheme"] == "HTTP"  # --metrics-addr is plain HTTP
        assert container_port(c, probe["port"]) == port_of(f["metrics-addr"])
    assert c["readinessProbe"]["periodSeconds"] <= seconds(f["shutdown-delay"]), (
        "readiness must be probed at least once while /readyz is false after SIGTERM"
    )


@pytest.mark.parametrize("scenario", ["default", "everything", "ha-on"])
def test_grace_period_outlasts_shutdown_and_the_webhook_timeout(render, scenario):
    objects = render(SCENARIOS[scenario])
    spec = pod_of(objects.one("Deployment"))["spec"]
    f = flags(container(pod_of(objects.one("Deployment")), "tandem"))
    grace = spec["terminationGracePeriodSeconds"]
    timeout = objects.one("MutatingWebhookConfiguration")["webhooks"][0]["timeoutSeconds"]
    assert grace > seconds(f["shutdown-delay"]) + seconds(f["shutdown-timeout"])
    assert grace > timeout


def test_two_replicas_with_a_pdb_and_spread_across_nodes_by_default(render):
    objects = render({})
    deployment = objects.one("Deployment")
    labels = pod_of(deployment)["metadata"]["labels"]
    assert deployment["spec"]["replicas"] == 2
    assert selects(deployment["spec"]["selector"], labels)
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": 0, "maxSurge": 1}
    pdb = objects.one("PodDisruptionBudget")
    assert selects(pdb["spec"]["selector"], labels)
    assert pdb["spec"]["maxUnavailable"] == 1 and "minAvailable" not in pdb["spec"]
    (spread,) = pod_of(deployment)["spec"]["topologySpreadConstraints"]
    assert spread["topologyKey"] == "kubernetes.io/hostname"
    assert spread["maxSkew"] == 1
    assert selects(spread["labelSelector"], labels)
    assert spread["matchLabelKeys"] == ["pod-template-hash"]  # count only this rollout's pods


def test_a_single_replica_gets_no_pdb_that_could_block_drains(render):
    objects = render(SCENARIOS["ha-off"])
    assert objects.one("Deployment")["spec"]["replicas"] == 1
    assert objects.maybe("PodDisruptionBudget") is None


@pytest.mark.parametrize("replicas, max_unavailable", [(2, 1), (3, 1), (5, "50%")])
def test_the_pdb_always_allows_a_disruption(render, replicas, max_unavailable):
    objects = render({"replicaCount": replicas, "podDisruptionBudget": {"maxUnavailable": max_unavailable}})
    spec = objects.one("PodDisruptionBudget")["spec"]
    value = spec["maxUnavailable"]
    allowed = int(value) if isinstance(value, int) else int(replicas * int(value.rstrip("%")) / 100 + 0.999999)
    assert allowed >= 1


def test_ha_on_can_require_distinct_nodes(render):
    objects = render(SCENARIOS["ha-on"])
    assert objects.one("Deployment")["spec"]["replicas"] == 3
    (spread,) = pod_of(objects.one("Deployment"))["spec"]["topologySpreadConstraints"]
    assert spread["whenUnsatisfiable"] == "DoNotSchedule"
    assert objects.one("PodDisruptionBudget")


def test_pdb_and_spread_can_be_turned_off(render):
    objects = render({"podDisruptionBudget": {"enabled": False}, "topologySpread": {"enabled": False}})
    assert objects.maybe("PodDisruptionBudget") is None
    assert "topologySpreadConstraints" not in pod_of(objects.one("Deployment"))["spec"]


@pytest.mark.parametrize("watch", [True, False])
def test_service_account_token_only_when_watching_the_cluster(render, watch):
    objects = render({"server": {"watchCluster": watch}, "tls": {"mode": "helm"}})
    spec = pod_of(objects.one("Deployment"))["spec"]
    assert spec["automountServiceAccountToken"] is watch
    assert ("kube" in flags(container(pod_of(objects.one("Deployment")), "tandem"))) is watch
    assert spec["serviceAccountName"] == objects.one("ServiceAccount")["metadata"]["name"]

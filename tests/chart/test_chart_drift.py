"""`drift.metric`: the RBAC the server's stale-pod count needs exists only when asked for,
in a ClusterRole of its own, with nothing but reads. tests/cluster/test_drift.py runs the
server with exactly this role against the real API server."""

import pytest

from chartlib import NAMESPACE, schema_errors

DRIFT_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["replicationcontrollers"], "verbs": ["get"]},
    {"apiGroups": ["apps"], "resources": ["replicasets", "controllerrevisions"], "verbs": ["get"]},
    {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get"]},
]


def drift_objects(rendered) -> list[dict]:
    return [o for o in rendered if o["kind"].startswith("ClusterRole") and o["metadata"]["name"].endswith("-drift")]


def test_off_by_default(render):
    rendered = render({})
    assert drift_objects(rendered) == []
    assert all(r["resources"] != ["pods"] for r in rendered.one("ClusterRole")["rules"])


def test_on_grants_reads_in_a_role_of_its_own(render):
    rendered = render({"drift": {"metric": True}})
    role, binding = drift_objects(rendered)
    assert role["kind"] == "ClusterRole" and binding["kind"] == "ClusterRoleBinding"
    assert role["rules"] == DRIFT_RULES
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role["metadata"]["name"]}
    account = rendered.one("ServiceAccount")["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}]
    for obj in (role, binding):
        assert schema_errors(obj) == [], obj
    # The other roles are the same as without it.
    others = [o for o in rendered if o not in (role, binding) and o["kind"] in ("ClusterRole", "Role")]
    assert others == [o for o in render({}) if o["kind"] in ("ClusterRole", "Role")]


@pytest.mark.parametrize("values", [
    {"drift": {"metric": True}, "server": {"watchCluster": False}},
    {"drift": {"metric": True}, "rbac": {"create": False}},
])
def test_no_role_without_the_cluster_watch_or_rbac(render, values):
    assert drift_objects(render(values)) == []


def test_the_schema_takes_only_a_boolean(chart):
    from helm_python.errors import HelmError

    chart.validate_schema({"drift": {"metric": True}})
    for bad in ({"drift": {"metric": "yes"}}, {"drift": {"metrics": True}}):
        with pytest.raises(HelmError):
            chart.validate_schema(bad)

"""All four patterns in one Pod Security "restricted" pod, as `tandem inject` makes it, run
for real (the scenario: allfour.py; the same pod as the API server stores it is run by
tests/cluster/test_stored_pods_run.py). Every helper runs under the security context tandem
gave it, started and stopped in the kubelet's order."""

import pytest

from allfour import AllFour
from fixtures import container, inject
from pod_security import restricted_errors
from podcheck import check
from podrunner import Pod, PodError


def test_all_four_in_a_restricted_pod_start_and_stop_in_the_kubelets_order(run_pod, remote):
    scenario = AllFour(remote)
    mutated = inject(scenario.pod())
    # The pod tandem made is valid and "restricted" as a whole, the user's nginx included.
    assert check(mutated) == []
    assert restricted_errors(mutated) == []
    pod = run_pod(mutated, scenario.objects(), before_start=scenario.neighbours)
    scenario.check_started(pod, mutated)
    scenario.check_stopped(pod, mutated)


def test_the_runner_refuses_a_helper_that_would_run_as_root_under_run_as_non_root():
    mutated = inject({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "x", "annotations": {"tandem.dev/metrics-adapter": "statsd"}},
                      "spec": {"containers": [{"name": "app", "image": "docker.io/library/busybox:1.37",
                                               "command": ["sleep", "1000"]}]}})
    container(mutated, "tandem-metrics-adapter")["securityContext"]["runAsUser"] = 0
    with pytest.raises(PodError, match="runAsNonRoot"):
        Pod(mutated).start()

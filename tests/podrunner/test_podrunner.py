"""The pod runner itself: the kubelet behaviour the program tests rely on, shown with small
shell-script containers (host programs) whose own output says what they saw."""

import base64
import signal
import socket
import time

import pytest

from podrunner import PodError, Pod

SH = "docker.io/library/busybox:1.37"


def pod(containers, init=(), volumes=(), **spec):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runner"},
            "spec": {"initContainers": list(init), "containers": list(containers), "volumes": list(volumes),
                     **spec}}


def sh(name, script, **extra):
    return {"name": name, "image": SH, "command": ["sh", "-c", script], **extra}


def secret(name, **data):
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_pod_has_its_own_loopback(run_pod):
    port = free_port()
    p = run_pod(pod([sh("web", f"echo hello > /tmp/index.html; cd /tmp; exec python3 -m http.server --bind 127.0.0.1 {port}")]))
    assert p.wait_for(lambda: _get(p, f"http://127.0.0.1:{port}/index.html"), what="the pod's server") == "hello\n"
    # The host's loopback is another one: the pod's port is not there.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    # And the pod reaches nothing of the host's: a host listener is invisible from inside.
    with socket.socket() as host:
        host.bind(("127.0.0.1", 0))
        host.listen()
        result = p.exec("web", ["sh", "-c", f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {host.getsockname()[1]}), timeout=2)' 2>&1 | tail -1"])
        assert "Connection refused" in result.stdout
        result = p.exec("web", ["ip", "-o", "link"])
        assert [line.split(":")[1].strip() for line in result.stdout.splitlines()] == ["lo"]


def _get(p, url):
    try:
        status, body = p.http_get(url, timeout=1)
    except OSError:
        return None
    return body if status == 200 else None


def test_volumes_users_and_read_only_paths_are_the_kubelets(run_pod):
    restricted = {"runAsUser": 1234, "runAsGroup": 2345, "runAsNonRoot": True, "readOnlyRootFilesystem": True,
                  "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    writer = sh("writer", "id -u; id -g; echo from-init > /shared/made-by-init; mkdir -p /shared/dir/inner; "
                          "echo inner > /shared/dir/inner/f; ln -s dir/inner /shared/link",
                volumeMounts=[{"name": "shared", "mountPath": "/shared"}], securityContext=restricted)
    reader = sh("reader", """
        echo "user $(id -u):$(id -g)"
        stat -c 'owner %u:%g' /ro/made-by-init
        cat /ro/made-by-init
        touch /ro/x 2>/dev/null && echo ro-writable || echo ro-refused
        touch /rw/y && echo rw-writable
        touch /etc/z 2>/dev/null && echo root-writable || echo root-refused
        cat /sub/f
        echo "secret $(cat /secret/token) env $TOKEN $MESSAGE"
        grep NoNewPrivs /proc/self/status; grep CapBnd /proc/self/status
        echo done; exec sleep 1000""",
                volumeMounts=[{"name": "shared", "mountPath": "/ro", "readOnly": True},
                              {"name": "shared", "mountPath": "/rw"},
                              {"name": "shared", "mountPath": "/sub", "subPath": "link"},
                              {"name": "creds", "mountPath": "/secret"}],
                env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
                     {"name": "MESSAGE", "value": "$(TOKEN)-expanded"}],
                securityContext=restricted)
    p = run_pod(pod([reader], init=[writer], volumes=[{"name": "shared", "emptyDir": {}},
                                                     {"name": "creds", "secret": {"secretName": "creds"}}]),
                objects=[secret("creds", token="s3cret")])
    out = p.wait_for(lambda: "done" in p.logs("reader") and p.logs("reader"), what="the reader's report")
    assert p.logs("writer").split() == ["1234", "2345"]
    assert out.splitlines()[:9] == [
        "user 1234:2345", "owner 1234:2345", "from-init", "ro-refused", "rw-writable", "root-refused", "inner",
        "secret s3cret env s3cret s3cret-expanded", "NoNewPrivs:\t1"]
    assert out.splitlines()[9] == "CapBnd:\t0000000000000000"


def test_run_as_non_root_refuses_user_zero():
    with pytest.raises(PodError, match="runAsNonRoot"):
        Pod(pod([sh("app", "true", securityContext={"runAsNonRoot": True})])).start()


def test_sidecars_start_in_order_and_stop_in_reverse_after_the_app(run_pod):
    def sidecar(name):
        # Ready two seconds after it starts; says when it is told to stop.
        return sh(name, f"trap 'echo {name} got TERM; exit 0' TERM; sleep 2; touch /tmp/ready-{name}; "
                        f"while true; do sleep 0.1; done",
                  restartPolicy="Always",
                  startupProbe={"exec": {"command": ["test", "-f", f"/tmp/ready-{name}"]}, "periodSeconds": 1,
                                "failureThreshold": 30})
    first, second = sidecar("first"), sidecar("second")
    app = sh("app", "trap 'echo app got TERM; exit 0' TERM; echo app up; while true; do sleep 0.1; done")
    p = run_pod(pod([app], init=[sh("once", "echo once ran"), first, second]))
    p.wait_for(lambda: "app up" in p.logs("app"), what="the app")
    order = [(name, what) for _, name, what in p.events]
    assert order == [("once", "started"), ("once", "exited 0"), ("first", "started"),
                     ("first", "startup probe succeeded"), ("second", "started"),
                     ("second", "startup probe succeeded"), ("app", "started")]
    stopping = [(name, what) for _, name, what in p.stop()]
    assert stopping == [("app", "signal SIGTERM"), ("app", "exited 0"), ("second", "signal SIGTERM"),
                        ("second", "exited 0"), ("first", "signal SIGTERM"), ("first", "exited 0")]
    for name in ("app", "second", "first"):
        assert f"{name} got TERM" in p.logs(name)


def test_a_crashed_sidecar_is_restarted_and_every_process_ends_with_the_pod(run_pod):
    p = run_pod(pod([sh("app", "sleep 1000 & sleep 1000")],
                    init=[sh("side", "echo run; sleep 1000", restartPolicy="Always")]))
    p.wait_for(lambda: p.logs("side") == "run\n", what="the sidecar's first run")
    first = p.pid("side")
    p.kill("side", signal.SIGKILL)
    p.wait_for(lambda: len(p.containers["side"].runs) == 2 and p.containers["side"].running(), what="a restart")
    assert p.pid("side") != first
    p.wait_for(lambda: p.logs("side", attempt=None) == "run\nrun\n", what="both runs' output")
    pids = [run.process.pid for c in p.containers.values() for run in c.runs]
    children = [int(x) for pid in pids for x in _children(pid)]
    p.stop()
    for pid in pids + children:
        assert _gone(pid), f"process {pid} outlived the pod"


def _gone(pid):
    """Dead: no longer in /proc, or a zombie its new parent (init) has yet to reap."""
    for _ in range(50):
        try:
            if open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except FileNotFoundError:
            return True
        time.sleep(0.1)
    return False


def _children(pid):
    try:
        return open(f"/proc/{pid}/task/{pid}/children").read().split()
    except FileNotFoundError:
        return []


def test_an_image_whose_tag_is_not_the_built_version_does_not_start():
    spec = pod([{"name": "exporter", "image": "prom/statsd-exporter:v0.29.0"}])
    with pytest.raises(PodError, match=r"names version v0\.29\.0, but the statsd_exporter the tests built is 0\.30\.0"):
        Pod(spec).start()


def test_an_init_container_that_fails_stops_the_pod_with_its_log():
    with pytest.raises(PodError, match="init container broken failed with 3: oops"):
        Pod(pod([sh("app", "sleep 1000")], init=[sh("broken", "echo oops; exit 3")])).start()

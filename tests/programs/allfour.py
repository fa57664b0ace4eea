"""All four patterns in one Pod Security "restricted" pod: the app, what it needs around it,
and what proves each helper did its job, for the pod `tandem inject` makes
(tests/programs/test_all_four.py) and the pod the API server stored (tests/cluster).

The app is nginx, as a non-root user, doing what a user's pod would with each helper: it
serves the site git-sync cloned over ssh before it started, writes its access log into the
log shipper's directory, answers stub_status for the nginx exporter, and proxies /api/ to
the ambassador on localhost (with HTTP/1.0, nginx's default), which forwards to the upstream.
"""

import http.server
import pwd
import re
import threading

from apps import config_map, get, nginx_conf, secret
from gitserver import Repository, make_ssh_keys, start_sshd

NGINX_CONF = nginx_conf("""    root /usr/share/nginx/html;
    location = /stub_status { stub_status; }
    location /api/ { proxy_pass http://127.0.0.1:6380; }""",
                        http="""  log_format plain '$request_method $uri $status';
  access_log /var/log/app/access.log plain;""")

RESTRICTED = {"runAsNonRoot": True, "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
              "seccompProfile": {"type": "RuntimeDefault"}}
HELPERS = {"tandem-git-clone", "tandem-log-shipper", "tandem-metrics-adapter", "tandem-ambassador"}


class Upstream(http.server.ThreadingHTTPServer):
    """The service behind the ambassador: answers with the path and Host it was asked for."""

    daemon_threads = True

    def __init__(self):
        pass  # listens once the pod's loopback exists

    def listen(self, pod, port):
        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = f"upstream saw {self.path} for {self.headers['Host']}".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        with pod.netns():
            super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()


class AllFour:
    """The scenario: the user's pod and objects, the neighbours, and the checks."""

    def __init__(self, remote, prefix="tandem.dev"):
        self.remote = remote
        self.repository = Repository(remote)
        self.repository.commit({"index.html": "<h1>shop</h1>\n"})
        self.key, self.known_hosts = make_ssh_keys(remote / "ssh", port=2222)
        self.upstream = Upstream()
        self.prefix = prefix

    def pod(self):
        """The user's pod: nginx, restricted, and one annotation per pattern."""
        www = pwd.getpwnam("www-data")
        nginx = {"name": "web", "image": "docker.io/library/nginx:1.22",
                 "command": ["nginx", "-c", "/etc/app/nginx.conf", "-g", "daemon off;"],
                 "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}],
                 "securityContext": {**RESTRICTED, "runAsUser": www.pw_uid, "runAsGroup": www.pw_gid}}
        p = self.prefix
        return {"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "shop", "annotations": {
                    f"{p}/git-clone": f"ssh://git@localhost:2222{self.repository.bare}",
                    f"{p}/git-clone.path": "/usr/share/nginx/html",
                    f"{p}/git-clone.secret": "git-ssh",
                    f"{p}/log-shipper": "true",
                    f"{p}/log-shipper.path": "/var/log/app",
                    f"{p}/metrics-adapter": "nginx",
                    f"{p}/ambassador": "http",
                    f"{p}/ambassador.upstream": "localhost:7070",
                    f"{p}/ambassador.port": "6380",
                }},
                "spec": {"securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
                         "automountServiceAccountToken": False,
                         "containers": [nginx], "volumes": [{"name": "conf", "configMap": {"name": "nginx"}}]}}

    def objects(self):
        """The Secret and ConfigMap the pod names."""
        return [secret("git-ssh", ssh=self.key, known_hosts=self.known_hosts),
                config_map("nginx", **{"nginx.conf": NGINX_CONF})]

    def neighbours(self, pod):
        """The git remote and the upstream, on the pod's loopback before its containers start."""
        start_sshd(pod, self.remote / "ssh", self.repository.bare.parent, port=2222)
        self.upstream.listen(pod, 7070)

    def check_started(self, pod, mutated):
        """Started in the kubelet's order: the clone to completion, each sidecar (its startup
        probe awaited where it has one), then the app; and each helper did its job."""
        init = [c["name"] for c in mutated["spec"]["initContainers"]]
        assert init[0] == "tandem-git-clone" and set(init) == HELPERS, init
        expected = []
        for c in mutated["spec"]["initContainers"]:
            expected.append((c["name"], "started"))
            if c.get("restartPolicy") != "Always":
                expected.append((c["name"], "exited 0"))
            elif c.get("startupProbe"):
                expected.append((c["name"], "startup probe succeeded"))
        expected.append(("web", "started"))
        assert [(name, what) for _, name, what in pod.events][:len(expected)] == expected

        assert pod.wait_for(lambda: get(pod, 8080, "/index.html"), what="the cloned site") == "<h1>shop</h1>\n"
        # nginx proxies with HTTP/1.0 (its default), which the ambassador accepts.
        assert get(pod, 8080, "/api/orders") == "upstream saw /api/orders for localhost"
        port = int(mutated["metadata"]["annotations"]["prometheus.io/port"])
        metrics = pod.wait_for(lambda: (m := get(pod, port, "/metrics")) and re.search(r"^nginx_up 1$", m, re.M) and m,
                               what="nginx_up 1")
        assert re.search(r"^nginx_connections_accepted [1-9]", metrics, re.M)
        shipped = pod.wait_for(lambda: "GET /api/orders 200" in pod.logs("tandem-log-shipper") and
                               pod.logs("tandem-log-shipper"), what="the access log shipped")
        assert "GET /index.html 200" in shipped

        # Each helper ran as the user tandem gave it, without privileges, on a read-only root.
        for c in mutated["spec"]["initContainers"]:
            launch = pod.containers[c["name"]].launch
            assert launch["uid"] == c["securityContext"]["runAsUser"] != 0
            assert launch["noNewPrivs"] and launch["dropAllCaps"] and launch["readOnlyRoot"]

    def check_stopped(self, pod, mutated):
        """Stopped in the kubelet's order: the app, then the sidecars in reverse, each exiting
        on SIGTERM within the grace period (no SIGKILL)."""
        stopping = [(name, what.split()[0]) for _, name, what in pod.terminate()]
        sidecars = [c["name"] for c in mutated["spec"]["initContainers"] if c.get("restartPolicy") == "Always"]
        expected = [("web", "signal"), ("web", "exited")]
        for name in reversed(sidecars):
            expected += [(name, "signal"), (name, "exited")]
        assert stopping == expected

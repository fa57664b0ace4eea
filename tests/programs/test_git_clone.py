"""Git clone, run for real: git-sync as tandem injects it (a one-time init container, or a
sync sidecar held by its startup probe), against remotes on the pod's loopback: smart HTTP
over TLS from a private CA with basic credentials, and ssh with a key and known_hosts.

The app is what a user would run: nginx serving the clone (one-time), or a reader that
resolves `path/current` once per look and prints what it sees (sync), so a half-written or
mixed tree would show in its own output.
"""

import pytest

from apps import config_map, get, nginx_conf, secret
from fixtures import container, inject
from certs import make_ca_and_cert
from gitserver import HttpsGitServer, Repository, make_ssh_keys, start_sshd
from podrunner import PodError

USER, PASSWORD = "deploy", "t0ken-for-git"

NGINX_CONF = nginx_conf("    root /usr/share/nginx/html;")

# A slow reader: resolves `current` once per look (as a web server resolves a request's path
# once), then reads the commit's two files a third of a second apart, and prints what it saw
# each time that changes. A tree that is swapped half-written, or removed while read, shows.
READER = """
last=""
while true; do
  now=$(cd -P /srv/site/current 2>&1 && a=$(cat a.txt 2>&1) && sleep 0.3 && echo "$a $(cat b.txt 2>&1)")
  if [ "$now" != "$last" ]; then echo "seen: $now"; last=$now; fi
done
"""


class Transport:
    """One way to reach the repository: its URL, the Secret and ConfigMap the pod names, and
    the server to start on the pod's loopback."""

    def __init__(self, kind, directory, repository):
        self.kind = kind
        self.annotations = {"tandem.dev/git-clone.secret": "git-credentials"}
        if kind == "https":
            ca, self.cert, self.key = make_ca_and_cert(directory, ["localhost"])
            self.url = f"https://localhost:8443/{repository.bare.name}"
            self.annotations["tandem.dev/git-clone.ca"] = "git-ca"
            self.objects = [secret("git-credentials", username=USER, password=PASSWORD),
                            config_map("git-ca", **{"ca.crt": ca.read_text()})]
        else:
            self.url = f"ssh://git@localhost:2222{repository.bare}"
            self.ssh_dir = directory / "ssh"
            key, known_hosts = make_ssh_keys(self.ssh_dir, port=2222)
            self.objects = [secret("git-credentials", ssh=key, known_hosts=known_hosts)]
        self.root = repository.bare.parent

    def start(self, pod):
        """Starts the remote on the pod's loopback (before the pod's containers)."""
        if self.kind == "https":
            self.server = HttpsGitServer(pod, self.root, self.cert, self.key, USER, PASSWORD)
        else:
            start_sshd(pod, self.ssh_dir, self.root, port=2222)


@pytest.mark.parametrize("kind", ["https", "ssh"])
def test_one_time_clone_is_served_by_nginx_from_the_documented_path(run_pod, remote, kind):
    repository = Repository(remote)
    repository.commit({"index.html": "<h1>release 1</h1>\n"})
    transport = Transport(kind, remote, repository)
    nginx = {"name": "web", "image": "docker.io/library/nginx:debian",
             "command": ["nginx", "-c", "/etc/app/nginx.conf", "-g", "daemon off;"],
             "volumeMounts": [{"name": "conf", "mountPath": "/etc/app"}]}
    mutated = inject({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "site", "annotations": {
                          "tandem.dev/git-clone": transport.url, "tandem.dev/git-clone.ref": "main",
                          "tandem.dev/git-clone.path": "/usr/share/nginx/html", **transport.annotations}},
                      "spec": {"containers": [nginx], "volumes": [{"name": "conf", "configMap": {"name": "nginx"}}]}})
    clone = container(mutated, "tandem-git-clone")
    assert "--one-time" in clone["args"]
    pod = run_pod(mutated, objects=[*transport.objects, config_map("nginx", **{"nginx.conf": NGINX_CONF})],
                  before_start=transport.start)
    assert pod.containers["tandem-git-clone"].current.exit_code == 0
    body = pod.wait_for(lambda: get(pod, 8080, "/index.html"), what="nginx serving the clone")
    assert body == "<h1>release 1</h1>\n"
    # The app's view is read-only: it cannot change what git-sync checked out.
    assert "Read-only file system" in pod.exec("web", ["touch", "/usr/share/nginx/html/x"]).stderr
    if kind == "https":
        # git asked without credentials first, was told 401, then authenticated.
        assert transport.server.requests[0][2] is False and transport.server.requests[-1][2] is True


@pytest.mark.parametrize("kind", ["https", "ssh"])
def test_sync_shows_each_new_commit_whole_within_the_interval(run_pod, remote, kind):
    repository = Repository(remote)
    repository.commit({"a.txt": "1", "b.txt": "1"})
    transport = Transport(kind, remote, repository)
    reader = {"name": "reader", "image": "docker.io/library/busybox:1.37", "command": ["sh", "-c", READER]}
    mutated = inject({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "site", "annotations": {
                          "tandem.dev/git-clone": transport.url, "tandem.dev/git-clone.ref": "main",
                          "tandem.dev/git-clone.path": "/srv/site", "tandem.dev/git-clone.sync": "2s",
                          **transport.annotations}},
                      "spec": {"containers": [reader]}})
    syncer = container(mutated, "tandem-git-sync")
    assert syncer["restartPolicy"] == "Always" and syncer["startupProbe"]
    pod = run_pod(mutated, objects=transport.objects, before_start=transport.start)
    # The startup probe held the app back until the first sync: its first look sees commit 1.
    pod.wait_for(lambda: "seen: " in pod.logs("reader"), what="the reader's first look")
    assert pod.logs("reader").splitlines()[0] == "seen: 1 1"
    for version in ("2", "3"):
        repository.commit({"a.txt": version, "b.txt": version})
        pod.wait_for(lambda: f"seen: {version} {version}" in pod.logs("reader"), timeout=30,
                     what=f"commit {version} under /srv/site/current")
    seen = pod.logs("reader").splitlines()
    assert seen == ["seen: 1 1", "seen: 2 2", "seen: 3 3"], "the reader saw a mixed or missing tree"


def test_without_the_private_ca_the_clone_fails_on_the_certificate(remote):
    from podrunner import Pod

    repository = Repository(remote)
    repository.commit({"index.html": "x"})
    transport = Transport("https", remote, repository)
    del transport.annotations["tandem.dev/git-clone.ca"]
    mutated = inject({"apiVersion": "v1", "kind": "Pod",
                      "metadata": {"name": "site", "annotations": {
                          "tandem.dev/git-clone": transport.url, **transport.annotations}},
                      "spec": {"containers": [{"name": "app", "image": "docker.io/library/busybox:1.37",
                                               "command": ["sleep", "1000"]}]}})
    with pytest.raises(PodError, match="certificate"):
        Pod(mutated, transport.objects).start(timeout=120, before_start=transport.start)

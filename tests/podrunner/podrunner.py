"""Runs a pod spec the way the kubelet would, with processes instead of containers.

Tests give it the pod tandem produced (from `tandem inject`, or the pod the API server
stored) and the Secrets and ConfigMaps it refers to. It then does what the kubelet and the
container runtime do, as far as a test on one machine can:

- one network namespace per pod, with only `lo` (up): `localhost` is the pod's own, as in
  Kubernetes, and nothing but loopback can be reached from it. `Pod.netns()` puts the test's
  own sockets there: the test's sinks and clients are the pod's neighbours on loopback;
- each emptyDir a directory (mode 0777, as the kubelet makes them), bind-mounted at every
  `mountPath` of every container that mounts it, read-only where `readOnly`; `subPath`
  resolved inside the volume as the kubelet does (symlinks followed, never out of the
  volume; a missing one created); ConfigMap and Secret volumes written from the test's
  objects (read-only, `defaultMode`, `items`), env from `secretKeyRef` and
  `configMapKeyRef`, `envFrom`, and `$(VAR)` expansion in env, command and args;
- each image mapped to the program of the same name (the table `IMAGES`): the binary the
  tests built (tests/programs/build.sh) appears at the image's own path, with the image's
  entrypoint, environment, working directory and users. The image's tag must equal the
  version the binary reports (`--version`), or the pod does not start. App containers whose
  image is not in the table run the host's (Debian's) programs named by their `command`;
- `runAsUser`/`runAsGroup`, `allowPrivilegeEscalation: false` (no new privileges),
  `capabilities.drop: [ALL]` and `readOnlyRootFilesystem` honoured; `runAsNonRoot` refused
  for user 0, as the kubelet refuses it;
- init containers one after the other, each to success; native sidecars
  (`restartPolicy: Always`) started in their place and their startup probes (httpGet,
  tcpSocket, exec) awaited before the next container; then the app containers. Exited
  sidecars, and app containers under the pod's restartPolicy, are restarted;
- at the end, the kubelet's order: app containers (and classic sidecars) get SIGTERM
  together, then the native sidecars one by one in reverse order, each within what is left of
  `terminationGracePeriodSeconds`, then SIGKILL. Every process is stopped by its process
  group when the test ends, pass or fail, and the pod's mounts go with their namespaces.

Known differences from a cluster: a container's root filesystem is the host's root under
an overlay (its image is not pulled: only the program, its entrypoint, environment and
users are the image's), so libraries and helper programs (git and ssh for git-sync) are
Debian's; no seccomp profile is applied; probes dial 127.0.0.1 in the pod (there is no pod
IP); a crashed container is restarted after one second, not the kubelet's 10 s back-off;
host files that change while a container runs are seen through its overlay root only if
they are bound in (volumes are).
"""

import base64
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLONE_NEWNET = 0x40000000
# The kubelet's /etc/hosts, with 127.0.0.1 for the pod IP the pod does not have.
HOSTS = """# Kubernetes-managed hosts file.
127.0.0.1\tlocalhost
::1\tlocalhost ip6-localhost ip6-loopback
fe00::0\tip6-localnet
fe00::0\tip6-mcastprefix
fe00::1\tip6-allnodes
fe00::2\tip6-allrouters
127.0.0.1\t{hostname}
"""
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_libc = ctypes.CDLL(None, use_errno=True)


class PodError(Exception):
    """The pod could not be run as specified: what the kubelet would report as an event."""


@dataclass(frozen=True)
class Image:
    """What the runner takes from an image besides its program (from its Dockerfile)."""

    program: str  # tests/programs/build.sh name
    path: str  # where the image has the program
    entrypoint: tuple = ()
    cmd: tuple = ()
    user: tuple = (0, 0)  # USER uid:gid
    env: tuple = ()  # ENV, (name, value) pairs
    workdir: str = "/"
    passwd: tuple = ()  # /etc/passwd lines the image adds to the base image's
    group: tuple = ()


DISTROLESS_USERS = ("nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin",)

# Image repository -> the program the tests built. Each from the program's own Dockerfile.
IMAGES = {
    "cr.fluentbit.io/fluent/fluent-bit": Image(
        "fluent-bit", "/fluent-bit/bin/fluent-bit", entrypoint=("/fluent-bit/bin/fluent-bit",),
        cmd=("/fluent-bit/bin/fluent-bit", "-c", "/fluent-bit/etc/fluent-bit.conf"),
        passwd=DISTROLESS_USERS),
    "registry.k8s.io/git-sync/git-sync": Image(
        "git-sync", "/git-sync", entrypoint=("/git-sync",), user=(65533, 65533),
        env=(("HOME", "/tmp"), ("GITSYNC_ROOT", "/git")), workdir="/tmp",
        passwd=("git-sync:x:65533:65533::/tmp:/sbin/nologin",), group=("git-sync:x:65533:git-sync",)),
    "oliver006/redis_exporter": Image(
        "redis_exporter", "/redis_exporter", entrypoint=("/redis_exporter",), user=(59000, 59000)),
    "nginx/nginx-prometheus-exporter": Image(
        "nginx-prometheus-exporter", "/usr/bin/nginx-prometheus-exporter",
        entrypoint=("/usr/bin/nginx-prometheus-exporter",), user=(1001, 1001)),
    "quay.io/prometheuscommunity/postgres-exporter": Image(
        "postgres_exporter", "/bin/postgres_exporter", entrypoint=("/bin/postgres_exporter",),
        user=(65534, 65534)),
    "prom/mysqld-exporter": Image(
        "mysqld_exporter", "/bin/mysqld_exporter", entrypoint=("/bin/mysqld_exporter",), user=(65534, 65534)),
    "prom/statsd-exporter": Image(
        "statsd_exporter", "/bin/statsd_exporter", entrypoint=("/bin/statsd_exporter",), user=(65534, 65534)),
    "quay.io/prometheuscommunity/json-exporter": Image(
        "json_exporter", "/bin/json_exporter", entrypoint=("/bin/json_exporter",), user=(65534, 65534)),
    # The image's entrypoint script drops to user envoy (101); tandem runs the binary itself.
    "envoyproxy/envoy": Image(
        "envoy", "/usr/local/bin/envoy", entrypoint=("/docker-entrypoint.sh",),
        cmd=("envoy", "-c", "/etc/envoy/envoy.yaml"), passwd=("envoy:x:101:101::/home/envoy:/bin/sh",)),
}


def split_image(image):
    """`registry/repo:tag` -> (repository, tag); a digest is refused (nothing to compare)."""
    if "@" in image:
        raise PodError(f"image {image}: a digest names no version the runner can check")
    repository, _, tag = image.rpartition(":")
    if not repository or "/" in tag:
        return image, "latest"
    return repository, tag


def version_of(binary):
    """The first x.y.z the program prints for --version."""
    out = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=60)
    # Envoy starts with its own path, which may hold other versions (a Python's).
    text = (out.stdout + out.stderr).replace(str(binary), "")
    match = re.search(r"(?<![\d.])(\d+\.\d+\.\d+)(?![\d.])", text)
    if not match:
        raise PodError(f"{binary} --version printed no version: {out.stdout}{out.stderr}")
    return match.group(1)


_versions = {}


def checked_version(binary):
    if binary not in _versions:
        _versions[binary] = version_of(binary)
    return _versions[binary]


def expand(text, env):
    """The kubelet's $(VAR) expansion: known names replaced, $$ escapes, others kept."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


@dataclass
class Run:
    """One process of a container (a restart is a new Run)."""

    process: subprocess.Popen
    log: Path
    started: float
    exit_code: int = None
    saved: str = None  # the log, once the pod's files are gone

    def text(self):
        if self.saved is not None:
            return self.saved
        return self.log.read_text(errors="replace") if self.log.exists() else ""


@dataclass
class Container:
    spec: dict
    kind: str  # init | sidecar | app
    runs: list = field(default_factory=list)
    ready: bool = False

    @property
    def name(self):
        return self.spec["name"]

    @property
    def current(self):
        return self.runs[-1] if self.runs else None

    def running(self):
        return bool(self.runs) and self.current.process.poll() is None


class Pod:
    """A pod run as processes. Use as a context manager, or call `stop()` in a finally."""

    def __init__(self, manifest, objects=(), programs=None, workdir=None, restart_delay=1.0,
                 image_files=None):
        """`objects`: the Secrets and ConfigMaps the pod refers to, as API objects.
        `programs`: build name -> binary (default: tests/programs/build.sh).
        `image_files`: container name -> {path in the container: host file}, files its
        image would hold (a CA bundle, say)."""
        self.manifest = manifest
        self.spec = manifest["spec"]
        self.name = manifest["metadata"].get("name") or manifest["metadata"].get("generateName", "pod") + "x"
        self.namespace = manifest["metadata"].get("namespace", "default")
        self.objects = {(o["kind"], o["metadata"]["name"]): o for o in objects}
        self.programs = programs or build_program
        self.restart_delay = restart_delay
        self.image_files = image_files or {}
        self._tmp = tempfile.TemporaryDirectory(prefix=f"pod-{self.name}-", dir=workdir)
        self.dir = Path(self._tmp.name)
        self.events = []  # (monotonic time, container, what)
        self._lock = threading.Lock()
        self.holder = None
        self.terminating = False
        self.terminated = False
        self.containers = {}
        for c in self.spec.get("initContainers", []):
            kind = "sidecar" if c.get("restartPolicy") == "Always" else "init"
            self.containers[c["name"]] = Container(c, kind)
        for c in self.spec["containers"]:
            self.containers[c["name"]] = Container(c, "app")
        self._monitor = None
        self._volumes = {}
        self.neighbours = {}  # name -> Run: processes beside the pod, on its loopback

    # ---- lifecycle --------------------------------------------------------------------

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self, timeout=120, before_start=None):
        """Runs init containers and sidecars in order, then starts the app containers.
        `before_start(pod)` runs once the pod's network exists, before any container (to
        start the neighbours the containers talk to)."""
        try:
            self._start(timeout, before_start)
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self, timeout, before_start):
        deadline = time.monotonic() + timeout
        self.holder = subprocess.Popen(["unshare", "--net", "--", "sleep", "infinity"], start_new_session=True)
        self._wait_for_netns()
        subprocess.run(["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", "ip", "link", "set", "lo", "up"],
                       check=True)
        if before_start:
            before_start(self)
        self._make_volumes()
        for c in self.containers.values():
            self._prepare(c)  # every image resolved and every reference checked before anything runs
        for c in self.containers.values():
            if c.kind == "init":
                self._run_to_completion(c, deadline)
            elif c.kind == "sidecar":
                self._launch(c)
                self._await_startup(c, deadline)
        for c in self.containers.values():
            if c.kind == "app":
                self._launch(c)
        self._monitor = threading.Thread(target=self._watch, daemon=True)
        self._monitor.start()

    def _wait_for_netns(self):
        own = os.stat("/proc/self/ns/net").st_ino
        for _ in range(500):
            try:
                if os.stat(f"/proc/{self.holder.pid}/ns/net").st_ino != own:
                    return
            except FileNotFoundError:
                pass
            if self.holder.poll() is not None:
                raise PodError("unshare --net failed (the runner must run as root)")
            time.sleep(0.01)
        raise PodError("the pod's network namespace never appeared")

    def terminate(self):
        """Deletes the pod as the kubelet would: the app containers (and classic sidecars) get
        SIGTERM together, then the native sidecars one by one in reverse order, each within
        what is left of the grace period, then SIGKILL. The pod's network and its neighbours
        stay until `stop()`. Returns the events of the termination."""
        if self.holder is None or self.terminated:
            return []
        mark = len(self.events)
        self.terminating = True
        grace = self.spec.get("terminationGracePeriodSeconds", 30)
        deadline = time.monotonic() + grace
        try:
            apps = [c for c in self.containers.values() if c.kind == "app"]
            for c in apps:
                self._signal(c, signal.SIGTERM)
            for c in apps:
                self._wait_exit(c, deadline)
            for c in reversed([c for c in self.containers.values() if c.kind == "sidecar"]):
                self._signal(c, signal.SIGTERM)
                self._wait_exit(c, deadline)
        finally:
            for c in self.containers.values():
                for run in c.runs:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(run.process.pid, signal.SIGKILL)
                    run.process.wait()
            if self._monitor:
                self._monitor.join(timeout=5)
            self.terminated = True
        return self.events[mark:]

    def stop(self):
        """Terminates the pod (see `terminate`), then stops its neighbours and removes its
        network and files; the logs stay readable. Returns the events of the termination."""
        if self.holder is None:
            self._tmp.cleanup()
            return []
        try:
            events = self.terminate()
        finally:
            for run in self.neighbours.values():
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.process.pid, signal.SIGTERM)
                try:
                    run.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(run.process.pid, signal.SIGKILL)
                    run.process.wait()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.holder.pid, signal.SIGKILL)
            self.holder.wait()
            self.holder = None
            for run in [r for c in self.containers.values() for r in c.runs] + list(self.neighbours.values()):
                run.saved = run.log.read_text(errors="replace") if run.log.exists() else ""
            self._tmp.cleanup()
        return events

    def _signal(self, c, sig):
        if c.running():
            self._event(c.name, f"signal {signal.Signals(sig).name}")
            with contextlib.suppress(ProcessLookupError):
                os.kill(c.current.process.pid, sig)

    def _wait_exit(self, c, deadline):
        if not c.runs:
            return
        try:
            c.current.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self._event(c.name, "grace period over: SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.current.process.pid, signal.SIGKILL)
            c.current.process.wait()
        self._record_exit(c)

    def _record_exit(self, c):
        with self._lock:
            run = c.current
            if run.exit_code is None and run.process.poll() is not None:
                run.exit_code = run.process.returncode
                self.events.append((time.monotonic(), c.name, f"exited {run.exit_code}"))

    def _event(self, name, what):
        with self._lock:
            self.events.append((time.monotonic(), name, what))

    def _watch(self):
        """Restarts what the kubelet would restart, while the pod runs."""
        while self.holder is not None and not self.terminating:
            for c in list(self.containers.values()):
                if c.kind == "init" or not c.runs or c.running() or self.terminating:
                    continue
                self._record_exit(c)
                policy = "Always" if c.kind == "sidecar" else self.spec.get("restartPolicy", "Always")
                code = c.current.exit_code
                if policy == "Always" or (policy == "OnFailure" and code != 0):
                    if time.monotonic() - c.current.started < self.restart_delay:
                        continue
                    time.sleep(self.restart_delay)
                    if not self.terminating:
                        self._launch(c)
            time.sleep(0.1)

    # ---- containers ---------------------------------------------------------------------

    def _prepare(self, c):
        spec = c.spec
        repository, tag = split_image(spec["image"])
        image = IMAGES.get(repository)
        binary = None
        if image:
            binary = self.programs(image.program)
            version = checked_version(binary)
            if tag.lstrip("v") != version:
                raise PodError(f"container {c.name}: image {spec['image']} names version {tag}, but the "
                               f"{image.program} the tests built is {version}")
        elif "command" not in spec:
            raise PodError(f"container {c.name}: image {spec['image']} is not one of tandem's programs, so "
                           "it runs a host program: give it a command")
        env = {"PATH": DEFAULT_PATH, "HOSTNAME": self.name}
        if image:
            env.update(dict(image.env))
        env.update(self._env(c))
        # $(VAR) in env values refers to variables defined before it; in command and args, to all.
        command = [expand(a, env) for a in spec["command"]] if "command" in spec else list(image.entrypoint)
        if "args" in spec:
            args = [expand(a, env) for a in spec["args"]]
        elif "command" in spec:
            args = []
        else:
            args = list(image.cmd)
        argv = command + args
        if not argv:
            raise PodError(f"container {c.name}: nothing to run")
        if image and argv[0] != image.path and "/" in argv[0]:
            raise PodError(f"container {c.name}: {argv[0]} is not in image {spec['image']} (the runner has "
                           f"only its program, at {image.path})")
        security = {**self.spec.get("securityContext", {}), **spec.get("securityContext", {})}
        uid = security.get("runAsUser", image.user[0] if image else 0)
        gid = security.get("runAsGroup", self._primary_group(image, uid))
        if security.get("runAsNonRoot") and uid == 0:
            raise PodError(f"container {c.name}: runAsNonRoot and the image will run as root")
        groups = list(self.spec.get("securityContext", {}).get("supplementalGroups", []))
        if "fsGroup" in self.spec.get("securityContext", {}):
            groups.append(self.spec["securityContext"]["fsGroup"])
        if "HOME" not in env:
            env["HOME"] = self._home(image, uid)
        # DNS: the pod's resolver is on its own loopback (where nothing answers), so a name
        # not in /etc/hosts fails at once instead of reaching the host's resolver.
        files = [{"path": "/etc/resolv.conf", "content": "nameserver 127.0.0.1\n"},
                 {"path": "/etc/hosts", "content": HOSTS.format(hostname=self.name)}]
        if image:
            files.append({"path": image.path, "source": str(binary)})
            if image.passwd:
                files.append({"path": "/etc/passwd", "append": True, "content": "".join(f"{l}\n" for l in image.passwd)})
            if image.group:
                files.append({"path": "/etc/group", "append": True, "content": "".join(f"{l}\n" for l in image.group)})
        for path, source in self.image_files.get(c.name, {}).items():
            files.append({"path": path, "source": str(source)})
        c.launch = {
            "dir": None,
            "image_files": files,
            "mounts": [self._mount(c, m) for m in spec.get("volumeMounts", [])],
            "readOnlyRoot": bool(security.get("readOnlyRootFilesystem")),
            "workingDir": spec.get("workingDir") or (image.workdir if image else "/"),
            "uid": uid,
            "gid": gid,
            "groups": groups,
            "noNewPrivs": security.get("allowPrivilegeEscalation") is False,
            "dropAllCaps": "ALL" in (security.get("capabilities") or {}).get("drop", []),
            "env": env,
            "argv": argv,
        }

    def _primary_group(self, image, uid):
        for line in (image.passwd if image else ()):
            fields = line.split(":")
            if int(fields[2]) == uid:
                return int(fields[3])
        if image and image.user[0] == uid:
            return image.user[1]
        return 0

    def _home(self, image, uid):
        for line in (image.passwd if image else ()):
            fields = line.split(":")
            if int(fields[2]) == uid:
                return fields[5]
        return "/"

    def _launch(self, c):
        attempt = len(c.runs)
        base = self.dir / "containers" / f"{c.name}.{attempt}"
        base.mkdir(parents=True)
        launch = dict(c.launch, dir=str(base))
        # subPath is resolved when the container starts (git-sync's link changes between runs).
        launch["mounts"] = [self._resolve(m) for m in launch["mounts"]]
        (base / "spec.json").write_text(json.dumps(launch))
        log = base / "log"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                ["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--",
                 "unshare", "--mount", "--propagation", "private", "--",
                 sys.executable, str(HERE / "launch.py"), str(base / "spec.json")],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        c.runs.append(Run(process, log, time.monotonic()))
        c.ready = False
        self._event(c.name, "started" if attempt == 0 else f"restarted ({attempt})")

    def _run_to_completion(self, c, deadline):
        self._launch(c)
        try:
            c.current.process.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            raise PodError(f"init container {c.name} did not finish: {self.logs(c.name)}") from None
        self._record_exit(c)
        if c.current.exit_code != 0:
            raise PodError(f"init container {c.name} failed with {c.current.exit_code}: {self.logs(c.name)}")

    def _await_startup(self, c, deadline):
        probe = c.spec.get("startupProbe")
        if not probe:
            c.ready = True
            return
        time.sleep(probe.get("initialDelaySeconds", 0))
        failures = 0
        while True:
            if not c.running():
                self._record_exit(c)
                raise PodError(f"sidecar {c.name} exited with {c.current.exit_code} before it started: "
                               f"{self.logs(c.name)}")
            if self.probe(c, probe):
                c.ready = True
                self._event(c.name, "startup probe succeeded")
                return
            failures += 1
            if failures >= probe.get("failureThreshold", 3) or time.monotonic() > deadline:
                raise PodError(f"sidecar {c.name}: startup probe failed {failures} times: {self.logs(c.name)}")
            time.sleep(probe.get("periodSeconds", 10))

    def probe(self, c, probe):
        """One probe, from the kubelet's side: True if it succeeded."""
        timeout = probe.get("timeoutSeconds", 1)
        if "httpGet" in probe:
            get = probe["httpGet"]
            scheme = get.get("scheme", "HTTP").lower()
            url = f"{scheme}://127.0.0.1:{self._port(c, get['port'])}{get.get('path', '/')}"
            try:
                status, _ = self.http_get(url, timeout=timeout)
            except OSError:
                return False
            return 200 <= status < 400
        if "tcpSocket" in probe:
            try:
                with self.netns():
                    socket.create_connection(("127.0.0.1", self._port(c, probe["tcpSocket"]["port"])),
                                             timeout=timeout).close()
                return True
            except OSError:
                return False
        if "exec" in probe:
            return self.exec(c.name, probe["exec"]["command"], timeout=timeout).returncode == 0
        raise PodError(f"container {c.name}: probe {probe} has no handler the runner knows")

    def _port(self, c, port):
        if isinstance(port, int):
            return port
        for p in c.spec.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
        raise PodError(f"container {c.name}: probe names port {port!r}, which the container does not declare")

    # ---- volumes and environment --------------------------------------------------------

    def _make_volumes(self):
        for volume in self.spec.get("volumes", []):
            path = self.dir / "volumes" / volume["name"]
            path.mkdir(parents=True)
            if "emptyDir" in volume:
                path.chmod(0o777)
                fs_group = self.spec.get("securityContext", {}).get("fsGroup")
                if fs_group is not None:
                    os.chown(path, -1, fs_group)
                    path.chmod(0o2777)
            elif "secret" in volume or "configMap" in volume:
                kind = "Secret" if "secret" in volume else "ConfigMap"
                source = volume["secret"] if kind == "Secret" else volume["configMap"]
                name = source.get("secretName") if kind == "Secret" else source.get("name")
                data = self._data(kind, name, optional=source.get("optional", False))
                items = source.get("items") or [{"key": k, "path": k} for k in sorted(data)]
                for item in items:
                    if item["key"] not in data:
                        raise PodError(f"volume {volume['name']}: {kind} {name} has no key {item['key']}")
                    target = path / item["path"]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(data[item["key"]])
                    target.chmod(item.get("mode", source.get("defaultMode", 0o644)))
                path.chmod(0o755)
            else:
                raise PodError(f"volume {volume['name']}: only emptyDir, secret and configMap volumes are run")
            self._volumes[volume["name"]] = (path, "emptyDir" not in volume)

    def volume(self, name):
        """The host directory behind a volume (to look at what the containers wrote)."""
        return self._volumes[name][0]

    def _mount(self, c, mount):
        if mount["name"] not in self._volumes:
            raise PodError(f"container {c.name}: volumeMount names volume {mount['name']}, which the pod lacks")
        _, always_ro = self._volumes[mount["name"]]
        return {"volume": mount["name"], "subPath": mount.get("subPath"), "path": mount["mountPath"],
                "readOnly": bool(mount.get("readOnly")) or always_ro}

    def _resolve(self, mount):
        root = self._volumes[mount["volume"]][0]
        source = root
        if mount["subPath"]:
            # As the kubelet: symlinks followed, but never out of the volume; created if missing.
            source = Path(os.path.realpath(root / mount["subPath"]))
            if source != root and root not in source.parents:
                raise PodError(f"subPath {mount['subPath']} of volume {mount['volume']} leaves the volume")
            if not source.exists():
                source.mkdir(parents=True, mode=0o750)
        return {"source": str(source), "path": mount["path"], "readOnly": mount["readOnly"]}

    def _data(self, kind, name, optional=False):
        obj = self.objects.get((kind, name))
        if obj is None:
            if optional:
                return {}
            raise PodError(f"{kind} {name} not found (the test gives it in objects)")
        if kind == "Secret":
            data = {k: base64.b64decode(v) for k, v in (obj.get("data") or {}).items()}
            data.update({k: v.encode() for k, v in (obj.get("stringData") or {}).items()})
        else:
            data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
        return data

    def _env(self, c):
        env = {}
        for source in c.spec.get("envFrom", []):
            ref = source.get("secretRef") or source.get("configMapRef")
            kind = "Secret" if "secretRef" in source else "ConfigMap"
            data = self._data(kind, ref["name"], optional=ref.get("optional", False))
            for key, value in data.items():
                env[source.get("prefix", "") + key] = value.decode()
        for var in c.spec.get("env", []):
            if "value" in var or "valueFrom" not in var:
                env[var["name"]] = expand(var.get("value", ""), env)
                continue
            source = var["valueFrom"]
            if "secretKeyRef" in source or "configMapKeyRef" in source:
                ref = source.get("secretKeyRef") or source.get("configMapKeyRef")
                kind = "Secret" if "secretKeyRef" in source else "ConfigMap"
                data = self._data(kind, ref["name"], optional=ref.get("optional", False))
                if ref["key"] in data:
                    env[var["name"]] = data[ref["key"]].decode()
                elif not ref.get("optional"):
                    raise PodError(f"container {c.name}: env {var['name']}: {kind} {ref['name']} has no key "
                                   f"{ref['key']}")
            elif "fieldRef" in source:
                fields = {"metadata.name": self.name, "metadata.namespace": self.namespace,
                          "status.podIP": "127.0.0.1", "spec.nodeName": "localhost"}
                env[var["name"]] = fields[source["fieldRef"]["fieldPath"]]
            else:
                raise PodError(f"container {c.name}: env {var['name']}: {source} is not run")
        return env

    # ---- what tests use -----------------------------------------------------------------

    @contextlib.contextmanager
    def netns(self):
        """Sockets made inside are the pod's: listen as its neighbours, dial its localhost."""
        own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        pod = os.open(f"/proc/{self.holder.pid}/ns/net", os.O_RDONLY)
        try:
            if _libc.setns(pod, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns into the pod's network namespace")
            yield
        finally:
            if _libc.setns(own, CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), "setns back")
            os.close(own)
            os.close(pod)

    def http_get(self, url, timeout=5, headers=None):
        """GET from inside the pod: (status, body)."""
        request = urllib.request.Request(url, headers=headers or {})
        with self.netns():
            try:
                with urllib.request.urlopen(request, timeout=timeout) as r:
                    return r.status, r.read().decode(errors="replace")
            except urllib.error.HTTPError as e:
                return e.code, e.read().decode(errors="replace")

    def logs(self, name, attempt=-1):
        """What the container wrote to stdout and stderr (kubectl logs); attempt=None: all runs."""
        c = self.containers[name]
        runs = c.runs if attempt is None else c.runs[attempt:][:1] if c.runs else []
        return "".join(run.text() for run in runs)

    def beside(self, name, argv, env=None):
        """Starts a process on the pod's loopback that is not one of its containers (a sink,
        a server: what would be another pod or a Service). It stops after the pod's containers."""
        log = self.dir / f"neighbour-{name}.log"
        with open(log, "wb") as out:
            process = subprocess.Popen(["nsenter", f"--net=/proc/{self.holder.pid}/ns/net", "--", *map(str, argv)],
                                       stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                       start_new_session=True, env=env)
        self.neighbours[name] = Run(process, log, time.monotonic())
        return process

    def beside_container(self, name, argv, passwd=(), directories=(), binds=()):
        """Like `beside`, as root in a root filesystem of its own (the host's under an overlay)
        with `passwd` lines added and `directories` made: a server that needs a user account
        the host does not have, without touching the host's /etc/passwd. Host directories it
        must see change while it runs are `binds` (an overlay's lower layer may not show them)."""
        base = self.dir / "neighbours" / name
        base.mkdir(parents=True)
        mounts = [{"source": str(path), "path": str(path), "readOnly": False} for path in binds]
        spec = {"dir": str(base), "mounts": mounts, "readOnlyRoot": False, "workingDir": "/", "uid": 0, "gid": 0,
                "groups": [], "noNewPrivs": False, "dropAllCaps": False, "directories": list(directories),
                "image_files": [{"path": "/etc/passwd", "append": True, "content": "".join(f"{l}\n" for l in passwd)},
                                {"path": "/etc/resolv.conf", "content": "nameserver 127.0.0.1\n"},
                                {"path": "/etc/hosts", "content": HOSTS.format(hostname=name)}],
                "env": {"PATH": DEFAULT_PATH, "HOME": "/root"}, "argv": list(map(str, argv))}
        (base / "spec.json").write_text(json.dumps(spec))
        return self.beside(name, ["unshare", "--mount", "--propagation", "private", "--",
                                  sys.executable, HERE / "launch.py", base / "spec.json"])

    def neighbour_logs(self, name):
        return self.neighbours[name].text()

    def pid(self, name):
        return self.containers[name].current.process.pid

    def kill(self, name, sig=signal.SIGKILL):
        """Signals the container's process (a crash, an OOM kill)."""
        self._signal(self.containers[name], sig)

    def exec(self, name, argv, timeout=30, input=None):
        """kubectl exec: runs argv in the container's namespaces, root and user."""
        c = self.containers[name]
        launch = c.launch
        command = ["nsenter", f"--target={self.pid(name)}", "--mount", "--net", "--root", "--wd", "--",
                   "/usr/bin/setpriv", f"--reuid={launch['uid']}", f"--regid={launch['gid']}", "--clear-groups",
                   "--", "/usr/bin/env", "-i", *[f"{k}={v}" for k, v in launch["env"].items()], *argv]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout, input=input)

    def wait_for(self, check, timeout=60, what="the condition", interval=0.2):
        """Polls check() until it returns a true value (returned); fails with the logs."""
        deadline = time.monotonic() + timeout
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not reached within {timeout} s\n{self.describe()}")
            time.sleep(interval)

    def describe(self):
        """Each container's state and the end of its log, for failure messages."""
        lines = []
        for c in self.containers.values():
            state = "running" if c.running() else f"exited {c.current.exit_code}" if c.runs else "not started"
            lines.append(f"--- {c.kind} {c.name}: {state}, {len(c.runs)} run(s)")
            lines.extend(self.logs(c.name)[-3000:].splitlines()[-30:])
        for name, run in self.neighbours.items():
            lines.append(f"--- neighbour {name}: {'running' if run.process.poll() is None else 'exited'}")
            lines.extend(self.neighbour_logs(name)[-3000:].splitlines()[-30:])
        return "\n".join(lines)


# ---- programs ---------------------------------------------------------------------------

_built = {}


def build_program(name):
    """The binary tests/programs/build.sh built (or found in the cache) for a program."""
    if name not in _built:
        out = subprocess.run(["bash", str(ROOT / "tests/programs/build.sh"), name], capture_output=True, text=True)
        if out.returncode != 0:
            raise PodError(f"tests/programs/build.sh {name} failed:\n{out.stderr[-4000:]}")
        _built[name] = Path(out.stdout.strip().splitlines()[-1])
    return _built[name]

"""The image the chart deploys: built by image/build.sh, loaded and exported by podman, and
run the way a kubelet runs the chart's pod.

Containers cannot be run in this sandbox (crun's setrlimit is refused), so the test does
what the runtime would: the image's root filesystem, exported by `podman export`, is the
lower layer of an overlay in a mount namespace of its own; the chart's volumes (the TLS
Secret, the policies ConfigMap, the /tmp emptyDir) are mounted at their mount points; the
root is then remounted read-only (the chart's `readOnlyRootFilesystem: true`), and the
Deployment's own command and arguments are run in it with `chroot --userspec=65532:65532`
and nothing but the image's environment. A review sent over TLS to the chart's certificate
must come back with a patch that, applied to the pod, gives a valid pod with the sidecars.

TANDEM_IMAGE_PROFILE=debug builds the image around the debug binary, to try this quickly.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import stat
import subprocess
import sys
import tarfile
import time
import tomllib
import urllib.request
from pathlib import Path

import jsonpatch
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
for sub in ("chart", "validate", "cluster"):
    sys.path.insert(0, str(ROOT / "tests" / sub))

import chartlib  # noqa: E402
import promises  # noqa: E402

PROFILE = os.environ.get("TANDEM_IMAGE_PROFILE", "release")
CARGO = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]
CHART = yaml.safe_load((chartlib.CHART_DIR / "Chart.yaml").read_text())
LABEL = "org.opencontainers.image."
POLICY = {
    "metadata": {"name": "shop-metrics"},
    "spec": {"selector": {"pods": {"matchLabels": {"app.kubernetes.io/name": "shop-web"}}},
             "defaults": {"metrics-adapter": {"profile": "redis"}}},
}


def run(*argv: str | Path, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, text=True, timeout=600, **kw)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("image")
    result = subprocess.run(["bash", "image/build.sh", "--profile", PROFILE, "--out", str(out)], cwd=ROOT,
                            check=True, stdout=subprocess.PIPE, text=True, timeout=3600)
    archive, chart = map(Path, result.stdout.split()[-2:])
    return {"archive": archive, "chart": chart}


@pytest.fixture(scope="module")
def image(built, tmp_path_factory):
    """The archive loaded into a podman storage of its own, inspected, and a container of it
    exported (created, never started) and unpacked."""
    work = tmp_path_factory.mktemp("podman")
    podman = ["podman", "--root", work / "storage", "--runroot", work / "run", "--storage-driver", "vfs"]
    loaded = run(*podman, "load", "-i", built["archive"]).stdout
    ref = loaded.strip().splitlines()[-1].split("Loaded image:")[-1].strip()
    inspected = json.loads(run(*podman, "image", "inspect", ref).stdout)[0]
    run(*podman, "create", "--name", "exported", ref)
    run(*podman, "export", "-o", work / "rootfs.tar", "exported")
    rootfs = work / "rootfs"
    rootfs.mkdir()
    with tarfile.open(work / "rootfs.tar") as tar:
        tar.extractall(rootfs, filter="fully_trusted")
    yield {"ref": ref, "config": inspected["Config"], "size": inspected["Size"], "rootfs": rootfs}
    subprocess.run([*map(str, podman), "rm", "-f", "exported"], capture_output=True)
    subprocess.run([*map(str, podman), "rmi", "-a", "-f"], capture_output=True)
    shutil.rmtree(work / "storage", ignore_errors=True)


def render(values: dict | None = None, chart: Path = chartlib.CHART_DIR) -> chartlib.Rendered:
    from helm_python.chart import Chart

    with Chart.load(chart) as loaded:
        return chartlib.parse(loaded.render(values=copy.deepcopy(values or {}), name=chartlib.RELEASE,
                                            namespace=chartlib.NAMESPACE, is_install=True))


def server_container(rendered: chartlib.Rendered) -> dict:
    return chartlib.container(chartlib.pod_of(rendered.one("Deployment")), "tandem")


def test_the_image_config_is_what_the_chart_expects(image):
    config = image["config"]
    values = yaml.safe_load((chartlib.CHART_DIR / "values.yaml").read_text())
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["/usr/local/bin/tandem"] and config["Cmd"] == ["serve"]
    assert set(config["ExposedPorts"]) == {f"{values['server']['port']}/tcp", f"{values['server']['metricsPort']}/tcp"}
    labels = config["Labels"]
    revision = run("git", "rev-parse", "HEAD", cwd=ROOT).stdout.strip()
    assert labels[LABEL + "version"] == CARGO["version"]
    assert labels[LABEL + "revision"] in (revision, revision + "-dirty")
    assert labels[LABEL + "licenses"] == CARGO["license"]
    assert labels[LABEL + "source"] == CHART["sources"][0]
    assert labels[LABEL + "created"] == run("git", "log", "-1", "--format=%cI", cwd=ROOT).stdout.strip()
    # The chart deploys this very image by default: its tag is the version label.
    assert server_container(render())["image"] == image["ref"] == f"{values['image']['repository']}:{labels[LABEL + 'version']}"
    assert CHART["appVersion"] == labels[LABEL + "version"]
    # The chart's command is looked up with the image's PATH, as a runtime does.
    command = server_container(render())["command"][0]
    path = dict(e.split("=", 1) for e in config["Env"])["PATH"]
    found = [Path(d) / command for d in path.split(":") if (image["rootfs"] / Path(d).relative_to("/") / command).is_file()]
    assert found == [Path(config["Entrypoint"][0])]


def test_the_image_holds_the_binary_and_its_libraries_only(image):
    rootfs = image["rootfs"]
    files = {"/" + str(p.relative_to(rootfs)) for p in rootfs.rglob("*") if not p.is_dir()}
    binary = rootfs / "usr/local/bin/tandem"
    # What the loader will look for, as ldd resolves it here.
    needed = {line.split()[2] if "=>" in line else line.split()[0]
              for line in run("ldd", binary).stdout.splitlines() if "/" in line}
    assert files == {"/usr/local/bin/tandem", *needed}, "no shell, no package manager, nothing else"
    assert not any((rootfs / p).exists() for p in ("bin/sh", "usr/bin/apt", "etc/passwd"))
    for p in rootfs.rglob("*"):
        mode = p.lstat()
        assert not mode.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_IWOTH), p
        assert mode.st_uid == 0, p
    total = sum((rootfs / f.lstrip("/")).stat().st_size for f in files)
    print(f"\nimage {image['ref']}: {image['size'] / 1e6:.1f} MB in podman's storage, files {total / 1e6:.1f} MB: {sorted(files)}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


MOUNT = r"""
set -eu
stage=$1 rootfs=$2 image_path=$3; shift 3
chroot=$(command -v chroot)
mount -t tmpfs -o mode=0755 tandem-stage "$stage"
mkdir "$stage/upper" "$stage/work" "$stage/root"
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$stage/upper,workdir=$stage/work" "$stage/root"
while [ "$1" != -- ]; do
  kind=$1 source=$2 target=$stage/root$3; shift 3
  mkdir -p "$target"
  case $kind in
    ro) mount --bind "$source" "$target"; mount -o remount,bind,ro "$target" ;;
    tmpfs) mount -t tmpfs -o mode=1777,size=16m tandem-tmp "$target" ;;
  esac
done
shift
mount -o remount,bind,ro "$stage/root"
exec env -i PATH="$image_path" "$chroot" --userspec=65532:65532 "$stage/root" "$@"
"""


def test_the_chart_s_command_serves_from_the_image_read_only_as_65532(image, tmp_path):
    # tls.mode helm: the chart makes the certificate (auto needs an API server).
    rendered = render({"policies": [POLICY], "tls": {"mode": "helm"}})
    pod = chartlib.pod_of(rendered.one("Deployment"))
    server = server_container(rendered)
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}

    # The chart's volumes, as the kubelet would fill them: the Secret's files 0440 and
    # group 65532 (defaultMode, fsGroup), the ConfigMap's 0644, an emptyDir at /tmp.
    mounts = []
    secret = rendered.one("Secret")
    config_map = next(c for c in rendered.all("ConfigMap") if c["metadata"]["name"].endswith("-policies"))
    for mount in server["volumeMounts"]:
        volume = volumes[mount["name"]]
        source = tmp_path / mount["name"]
        if "emptyDir" in volume:
            mounts += ["tmpfs", "none", mount["mountPath"]]
            continue
        source.mkdir()
        if "secret" in volume:
            assert volume["secret"]["secretName"] == secret["metadata"]["name"]
            for key, value in secret["data"].items():
                (source / key).write_bytes(base64.b64decode(value))
                os.chown(source / key, 0, pod["spec"]["securityContext"]["fsGroup"])
                (source / key).chmod(volume["secret"]["defaultMode"])
        else:
            assert volume["configMap"]["name"] == config_map["metadata"]["name"]
            for key, value in config_map["data"].items():
                (source / key).write_text(value)
                (source / key).chmod(0o644)
        mounts += ["ro", str(source), mount["mountPath"]]

    webhook_port, metrics_port = _free_port(), _free_port()
    args = []
    for arg in server["args"]:
        if arg.startswith("--addr="):
            arg = f"--addr=127.0.0.1:{webhook_port}"
        elif arg.startswith("--metrics-addr="):
            arg = f"--metrics-addr=127.0.0.1:{metrics_port}"
        args.append(arg)
    assert "--kube" in args and "--policies=/etc/tandem/policies" in args
    args.remove("--kube")  # no API server here
    env = dict(e.split("=", 1) for e in image["config"]["Env"])
    stage = tmp_path / "stage"
    stage.mkdir()
    log = (tmp_path / "tandem.log").open("w")
    process = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", MOUNT, "mount",
         str(stage), str(image["rootfs"]), env["PATH"], *mounts, "--", *server["command"], *args],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, (tmp_path / "tandem.log").read_text()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/readyz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "tandem.log").read_text()
            time.sleep(0.2)

        # Every exec kept the PID: this is tandem, running as 65532 on a read-only root.
        status = Path(f"/proc/{process.pid}/status").read_text()
        assert "\nUid:\t65532\t65532\t65532\t65532\n" in status and "\nGid:\t65532\t65532\t65532\t65532\n" in status
        assert Path(f"/proc/{process.pid}/exe").resolve().name == "tandem"
        root = next(line.split() for line in Path(f"/proc/{process.pid}/mountinfo").read_text().splitlines() if line.split()[4] == "/")
        assert "ro" in root[5].split(","), root

        # A review over TLS, checked against the chart's CA for the Service's name.
        name = f"{rendered.one('Service')['metadata']['name']}.{chartlib.NAMESPACE}.svc"
        context = ssl.create_default_context(cadata=base64.b64decode(secret["data"]["ca.crt"]).decode())
        review = json.loads((ROOT / "examples" / "admission-review.json").read_text())
        connection = http.client.HTTPConnection(name, webhook_port, timeout=10)
        connection.sock = context.wrap_socket(socket.create_connection(("127.0.0.1", webhook_port)), server_hostname=name)
        path = rendered.one("MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["service"]["path"]
        connection.request("POST", path, json.dumps(review), {"Content-Type": "application/json"})
        answer = json.loads(connection.getresponse().read())
        response = answer["response"]
        assert response["uid"] == review["request"]["uid"] and response["allowed"] is True, response
        patched = jsonpatch.apply_patch(review["request"]["object"], json.loads(base64.b64decode(response["patch"])))
        assert promises.errors(patched) == []
        # The log shipper from the pod's annotation, the metrics adapter from the chart's
        # policy (the ConfigMap mounted into the image's root).
        assert promises.injected(patched) == ["log-shipper", "metrics-adapter"]
        sidecars = {c["name"]: c for c in patched["spec"]["initContainers"]}
        assert sidecars["tandem-log-shipper"]["restartPolicy"] == "Always"
        assert sidecars["tandem-metrics-adapter"]["image"].startswith("oliver006/redis_exporter:")
        assert promises.mounts(promises.find(patched, "web"))["/var/log/app"]["name"] == "tandem-logs"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        code = process.wait(timeout=40)
        log.close()
    assert code == 0, f"no clean shutdown on SIGTERM: {(tmp_path / 'tandem.log').read_text()}"


def test_the_chart_is_packaged_in_step_with_the_image(built, image):
    from helm_python.chart import Chart

    archive = built["chart"]
    version = image["config"]["Labels"][LABEL + "version"]
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert all(n.startswith("tandem/") for n in names)
    assert {"tandem/Chart.yaml", "tandem/values.yaml", "tandem/values.schema.json", "tandem/crds/injectionpolicies.tandem.dev.yaml"} <= set(names)
    with Chart.load(archive) as chart:
        assert chart.metadata["appVersion"] == version
        assert chart.metadata["version"] == CHART["version"]
    assert server_container(render(chart=archive))["image"] == image["ref"]

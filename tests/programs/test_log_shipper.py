"""The log shipper, run for real: Fluent Bit as tandem injects it, beside an app writing log
files, shipping to a receiver on the pod's loopback for every profile of the catalog.

Each test takes the pod `tandem inject` makes of an app pod with the profile's annotations,
runs it with the pod runner (the shipper a native sidecar, its user, its read-only log mount
and state emptyDir, its arguments exactly as injected) and reads what arrived at the sink:
the shipper's own stdout, a receiving Fluent Bit (forward), HTTP JSON lines, Loki's push
API, Elasticsearch's bulk API, OTLP/HTTP logs, S3 (moto's server).
"""

import json
import re
import signal
import sys

import pytest

from fixtures import container, inject
from sinks import HttpSink, elasticsearch_answer

SHIPPER = "tandem-log-shipper"
APP_IMAGE = "docker.io/library/busybox:1.37"


def app_pod(annotations, script):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "shop", "annotations": {"tandem.dev/log-shipper.path": "/var/log/app", **annotations}},
            "spec": {"containers": [{"name": "app", "image": APP_IMAGE, "command": ["sh", "-c", script]}]}}


def writer(count, prefix="line", then="", log="/var/log/app/app.log"):
    """An app that writes `count` numbered lines, then `then`, and on SIGTERM one last line."""
    return (f"trap 'echo \"{prefix} last\" >> {log}; exit 0' TERM; "
            f"i=1; while [ $i -le {count} ]; do echo \"{prefix} $i\" >> {log}; i=$((i+1)); done; {then}"
            "echo written; while true; do sleep 0.1; done")


def expected(count, prefix="line"):
    return [f"{prefix} {i}" for i in range(1, count + 1)]


STDOUT_RECORD = re.compile(r'"log"=>"((?:[^"\\]|\\.)*)"')


def stdout_lines(text):
    """The `log` field of each record Fluent Bit's stdout output printed."""
    return STDOUT_RECORD.findall(text)


def test_the_default_profile_prints_every_line_on_the_shippers_stdout(run_pod):
    mutated = inject(app_pod({"tandem.dev/log-shipper": "true"}, writer(300)))
    shipper = container(mutated, SHIPPER)
    assert shipper["restartPolicy"] == "Always"
    pod = run_pod(mutated)
    lines = pod.wait_for(lambda: len(stdout_lines(pod.logs(SHIPPER))) >= 300 and stdout_lines(pod.logs(SHIPPER)),
                         what="300 lines on the shipper's stdout")
    assert lines == expected(300)
    # The shipper really runs as the injected user, on a read-only root and log mount.
    status = pod.exec(SHIPPER, ["sh", "-c", "id -u; touch /var/log/app/x 2>&1; touch /fluent-bit/x 2>&1"]).stdout
    assert status.splitlines()[0] == str(shipper["securityContext"]["runAsUser"])
    assert status.count("Read-only file system") == 2
    assert (pod.volume(_volume(mutated, SHIPPER, "/fluent-bit/state")) / "tail.db").exists()


def _volume(pod, name, path):
    return next(m["name"] for m in container(pod, name)["volumeMounts"] if m["mountPath"] == path)


def test_forward_reaches_a_receiving_fluent_bit(run_pod):
    # The pod's loopback is its own, so the profile's default port (24224) is free for the aggregator.
    mutated = inject(app_pod({"tandem.dev/log-shipper": "fluent-bit-forward",
                              "tandem.dev/log-shipper.host": "127.0.0.1"}, writer(200)))
    pod = run_pod(mutated, before_start=lambda p: p.beside(
        "aggregator", [p.programs("fluent-bit"), "-i", "forward", "-p", "listen=127.0.0.1", "-p", "port=24224",
                       "-o", "stdout", "-m", "*", "-f", "1"]))
    lines = pod.wait_for(lambda: len(stdout_lines(pod.neighbour_logs("aggregator"))) >= 200 and
                         stdout_lines(pod.neighbour_logs("aggregator")), what="200 lines at the aggregator")
    assert lines == expected(200)
    assert "app.var.log.app.app.log" in pod.neighbour_logs("aggregator")  # the tag travelled


def http_lines(sink, path):
    return [json.loads(line)["log"] for body in sink.bodies(path) for line in body.splitlines() if line.strip()]


def loki_streams(sink):
    return [stream for body in sink.bodies("/loki/api/v1/push") for stream in json.loads(body)["streams"]]


def loki_lines(sink):
    return [json.loads(value[1])["log"] for stream in loki_streams(sink) for value in stream["values"]]


def bulk_pairs(sink):
    pairs = []
    for body in sink.bodies("/_bulk"):
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        pairs.extend(zip(lines[::2], lines[1::2]))
    return pairs


def otlp_records(sink):
    from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest

    records = []
    for body in sink.bodies("/v1/logs"):
        request = ExportLogsServiceRequest()
        request.ParseFromString(body)
        for resource in request.resource_logs:
            for scope in resource.scope_logs:
                records.extend(scope.log_records)
    return records


def otlp_line(record):
    body = record.body
    if body.HasField("string_value"):
        return body.string_value
    return {kv.key: kv.value.string_value for kv in body.kvlist_value.values}["log"]


# Each backend on the port the profile defaults to (the pod's loopback is the test's alone).
HTTP_BACKENDS = {"fluent-bit-http": 80, "fluent-bit-loki": 3100, "fluent-bit-elasticsearch": 9200,
                 "fluent-bit-opentelemetry": 4318}


@pytest.mark.parametrize("profile", sorted(HTTP_BACKENDS))
def test_every_http_backend_receives_every_line(run_pod, profile):
    answer = elasticsearch_answer if profile == "fluent-bit-elasticsearch" else (lambda path, body: b"{}")
    sinks = []
    annotations = {"tandem.dev/log-shipper": profile, "tandem.dev/log-shipper.host": "127.0.0.1"}
    if profile == "fluent-bit-http":
        annotations["tandem.dev/log-shipper.uri"] = "/ingest"
    pod = run_pod(inject(app_pod(annotations, writer(200))),
                  before_start=lambda p: sinks.append(HttpSink(p, answer, port=HTTP_BACKENDS[profile])))
    sink = sinks[0]
    extract = {
        "fluent-bit-http": lambda: http_lines(sink, "/ingest"),
        "fluent-bit-loki": lambda: loki_lines(sink),
        "fluent-bit-elasticsearch": lambda: [doc["log"] for _, doc in bulk_pairs(sink)],
        "fluent-bit-opentelemetry": lambda: [otlp_line(r) for r in otlp_records(sink)],
    }[profile]
    lines = pod.wait_for(lambda: len(extract()) >= 200 and extract(), what=f"200 lines at the {profile} sink")
    assert lines == expected(200)
    if profile == "fluent-bit-http":
        assert all(h.get("Content-Type") == "application/x-ndjson" for _, p, h, _ in sink.requests if p == "/ingest")
    if profile == "fluent-bit-loki":
        assert {json.dumps(s["stream"], sort_keys=True) for s in loki_streams(sink)} == {'{"job": "fluent-bit"}'}
    if profile == "fluent-bit-elasticsearch":
        assert {json.dumps(action, sort_keys=True) for action, _ in bulk_pairs(sink)} == \
            {'{"create": {"_index": "app-logs"}}'}
    if profile == "fluent-bit-opentelemetry":
        assert all(h.get("Content-Type") == "application/x-protobuf" for _, p, h, _ in sink.requests)


# Writes numbered lines steadily (about 100 a second) into app.log, renaming it to app.log.1
# (and the older one away) every `every` seconds, as logrotate's default rename does, while
# writing on into a new app.log; then idles.
ROTATING = """
n=1
for f in $(seq {files}); do
  end=$(( $(date +%s) + {every} ))
  while [ $(date +%s) -lt $end ]; do echo "line $n" >> /var/log/app/app.log; n=$((n+1)); sleep 0.01; done
  if [ $f -lt {files} ]; then
    [ -e /var/log/app/app.log.1 ] && mv /var/log/app/app.log.1 /var/log/app/app.log.2
    mv /var/log/app/app.log /var/log/app/app.log.1
  fi
done
echo "written $((n-1))"; while true; do sleep 0.1; done
"""


def test_rotation_by_rename_loses_nothing_and_repeats_nothing(run_pod):
    # Each file lives longer than the shipper's refresh_interval (5 s), as a rotated log does.
    pod = run_pod(inject(app_pod({"tandem.dev/log-shipper": "true"}, ROTATING.format(files=3, every=7))))
    written = pod.wait_for(lambda: re.search(r"written (\d+)", pod.logs("app")), what="the app done", timeout=60)
    count = int(written.group(1))
    lines = pod.wait_for(lambda: len(stdout_lines(pod.logs(SHIPPER))) >= count and stdout_lines(pod.logs(SHIPPER)),
                         what=f"{count} lines across three files", timeout=60)
    assert sorted(lines, key=lambda l: int(l.split()[1])) == expected(count)
    assert pod.exec("app", ["ls", "/var/log/app"]).stdout.split() == ["app.log", "app.log.1", "app.log.2"]


# Writes numbered lines steadily for a while (the shipper is killed meanwhile), then idles.
STEADY = """
for i in $(seq {count}); do echo "line $i" >> /var/log/app/app.log; sleep {gap}; done
echo written; while true; do sleep 0.1; done
"""


def test_a_killed_shipper_restarts_without_losing_or_repeating_lines(run_pod):
    count = 600
    pod = run_pod(inject(app_pod({"tandem.dev/log-shipper": "true"}, STEADY.format(count=count, gap=0.01))))
    pod.wait_for(lambda: len(stdout_lines(pod.logs(SHIPPER))) >= 100, what="the first lines shipped")
    pod.kill(SHIPPER, signal.SIGKILL)  # as the OOM killer would; the kubelet restarts it
    pod.wait_for(lambda: len(pod.containers[SHIPPER].runs) == 2, what="the restart")
    pod.wait_for(lambda: "written" in pod.logs("app"), what="the app done", timeout=120)
    shipped = lambda: stdout_lines(pod.logs(SHIPPER, attempt=None))  # noqa: E731 - both runs' output
    pod.wait_for(lambda: f"line {count}" in shipped(), what="the last line shipped", timeout=60)
    first, second = stdout_lines(pod.logs(SHIPPER, attempt=0)), stdout_lines(pod.logs(SHIPPER, attempt=1))
    assert first and second, "the kill fell outside the run"
    assert sorted(shipped(), key=lambda l: int(l.split()[1])) == expected(count), \
        f"lost {sorted(set(expected(count)) - set(shipped()))[:10]}, repeated {len(shipped()) - len(set(shipped()))}"


# On SIGTERM the app writes its last 50 lines and exits; then the shipper gets SIGTERM.
LAST_WORDS = """
trap 'for i in $(seq 50); do echo "final $i" >> /var/log/app/app.log; done; exit 0' TERM
for i in $(seq 100); do echo "line $i" >> /var/log/app/app.log; done
echo written; while true; do sleep 0.1; done
"""


def test_on_sigterm_the_shipper_flushes_the_apps_last_lines(run_pod):
    pod = run_pod(inject(app_pod({"tandem.dev/log-shipper": "true"}, LAST_WORDS)))
    pod.wait_for(lambda: len(stdout_lines(pod.logs(SHIPPER))) >= 100, what="the first 100 lines")
    events = [(name, what.split()[0]) for _, name, what in pod.stop()]
    assert events == [("app", "signal"), ("app", "exited"), (SHIPPER, "signal"), (SHIPPER, "exited")]
    assert stdout_lines(pod.logs(SHIPPER)) == expected(100) + expected(50, "final")


def test_s3_uploads_to_an_s3_compatible_endpoint_with_keys_from_the_secret(run_pod):
    import boto3

    keys = {"AWS_ACCESS_KEY_ID": "tandem-test", "AWS_SECRET_ACCESS_KEY": "tandem-test-secret"}
    endpoint = "http://127.0.0.1:5000"

    def s3(pod):
        with pod.netns():
            return boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                                aws_access_key_id=keys["AWS_ACCESS_KEY_ID"],
                                aws_secret_access_key=keys["AWS_SECRET_ACCESS_KEY"])

    def start_s3(pod):
        # moto's S3 server, as MinIO or another S3-compatible store would be.
        pod.beside("s3", [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", "5000"])
        client = s3(pod)
        pod.wait_for(lambda: _ok(lambda: _in(pod, lambda: client.create_bucket(Bucket="app-logs"))),
                     what="moto's S3 up")

    mutated = inject(app_pod({"tandem.dev/log-shipper": "fluent-bit-s3",
                              "tandem.dev/log-shipper.endpoint": endpoint,
                              "tandem.dev/log-shipper.secret": "s3-keys"}, writer(200)))
    assert f"endpoint={endpoint}" in container(mutated, SHIPPER)["args"]
    pod = run_pod(mutated, before_start=start_s3,
                  objects=[{"kind": "Secret", "metadata": {"name": "s3-keys"}, "stringData": keys}])
    pod.wait_for(lambda: "written" in pod.logs("app"), what="the app's lines")
    # The plugin buffers on the state emptyDir and uploads every upload_timeout (10 minutes)
    # or when it stops: on SIGTERM it uploads what it holds.
    state = pod.volume(_volume(mutated, SHIPPER, "/fluent-bit/state"))
    pod.wait_for(lambda: any(p.is_file() and p.stat().st_size for p in (state / "s3").rglob("*")),
                 what="lines in the shipper's S3 buffer")
    events = [(name, what.split()[0]) for _, name, what in pod.terminate()]
    assert events == [("app", "signal"), ("app", "exited"), (SHIPPER, "signal"), (SHIPPER, "exited")]
    client = s3(pod)
    objects = _in(pod, lambda: client.list_objects_v2(Bucket="app-logs")).get("Contents", [])
    assert objects, pod.logs(SHIPPER)[-2000:]
    lines = []
    for obj in sorted(objects, key=lambda o: o["Key"]):
        body = _in(pod, lambda: client.get_object(Bucket="app-logs", Key=obj["Key"])["Body"].read().decode())
        lines += [json.loads(line)["log"] for line in body.splitlines() if line.strip()]
    assert lines == expected(200) + ["line last"]


def _in(pod, call):
    with pod.netns():
        return call()


def _ok(call):
    try:
        call()
        return True
    except Exception:
        return False

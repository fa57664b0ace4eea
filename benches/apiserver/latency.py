#!/usr/bin/env python3
"""Pod-creation latency through the real API server (tests/controlplane), three ways:

  none    no webhook; the pod created is the final pod tandem would have produced
  bare    a webhook that allows without a patch: the bench kit's `limit` server
          (../shared/bench/servers/limit), the floor any webhook pays
  tandem  tandem (the release build), mutating an annotated pod into that final pod

Each is measured with N sequential creates over one keep-alive HTTPS connection (as a
controller's client does), then with C concurrent clients. The two webhooks are registered
with the same configuration (the chart's, pointed at 127.0.0.1 by URL); only the URL differs.
Prints a markdown table; --json writes the raw numbers.

    python3 benches/apiserver/latency.py [--creates 300] [--concurrency 8] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import http.client
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "cluster"))

from harness import ControlPlane, Process, ServingCert, Tandem, Webhooks, build_tandem, free_port, make_namespace, render_chart, url_values  # noqa: E402

KIT = ROOT.parent / "shared" / "bench" / "servers"
ANNOTATIONS = {
    "tandem.dev/log-shipper": "true",
    "tandem.dev/git-clone": "https://github.com/example/site.git",
    "tandem.dev/git-clone.path": "/usr/share/nginx/html",
}


def pod(annotations: dict[str, str]) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "bench-", "labels": {"app": "bench"}, "annotations": annotations},
        "spec": {"containers": [{"name": "web", "image": "nginx:1.27.3", "ports": [{"containerPort": 80}], "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}]},
    }


class Client:
    """One keep-alive HTTPS connection to the API server, as the admin."""

    def __init__(self, cp: ControlPlane):
        context = ssl.create_default_context(cafile=str(cp.ca_file))
        context.load_cert_chain(str(cp.pki / "kubernetes-admin.crt"), str(cp.pki / "kubernetes-admin.key"))
        self.conn = http.client.HTTPSConnection("127.0.0.1", cp.apiserver_port, context=context)

    def create(self, namespace: str, body: bytes) -> float:
        start = time.perf_counter()
        self.conn.request("POST", f"/api/v1/namespaces/{namespace}/pods", body, {"Content-Type": "application/json"})
        response = self.conn.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if response.status != 201:
            raise RuntimeError(f"create: HTTP {response.status}: {data[:300]!r}")
        return elapsed


def sequential(cp: ControlPlane, namespace: str, body: bytes, count: int) -> list[float]:
    client = Client(cp)
    for _ in range(20):  # warm-up: connection, caches, the webhook's connection pool
        client.create(namespace, body)
    return [client.create(namespace, body) for _ in range(count)]


def concurrent(cp: ControlPlane, namespace: str, body: bytes, count: int, clients: int) -> tuple[list[float], float]:
    per = count // clients
    results: list[list[float]] = [[] for _ in range(clients)]
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            client = Client(cp)
            client.create(namespace, body)
            results[i] = [client.create(namespace, body) for _ in range(per)]
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise errors[0]
    flat = [x for r in results for x in r]
    return flat, len(flat) / wall


def quantile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def build_limit() -> Path:
    subprocess.run(["cargo", "build", "--release", "--quiet", "--manifest-path", str(KIT / "Cargo.toml")], check=True)
    return KIT / "target" / "release" / "limit"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--creates", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--profile", default="release", choices=["release", "debug"], help="tandem's build (release is what users run)")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="tandem-latency-"))
    tls = ServingCert.new(work / "tls")
    tandem_bin = build_tandem(args.profile)
    limit_bin = build_limit()
    with ControlPlane.start(work / "controlplane") as cp:
        tandem = Tandem(tandem_bin, tls, work, []).start()
        limit_port = free_port()
        limit = Process("limit", [str(limit_bin), "--port", str(limit_port), "--cert", str(tls.cert), "--key", str(tls.key)], work / "limit.log").start()
        try:
            time.sleep(0.5)
            hooks = Webhooks(cp, tls)
            namespace = make_namespace(cp)
            # The final pod tandem produces, created with no webhook for the baseline.
            hooks.chart(tandem)
            final = json.loads(cp.kubectl("create", "--dry-run=server", "-o", "json", "-n", namespace, "-f", "-", input=json.dumps(pod(ANNOTATIONS))).stdout)
            for key in ("uid", "creationTimestamp", "resourceVersion", "managedFields", "name"):
                final["metadata"].pop(key, None)
            final.pop("status", None)
            final_body = json.dumps(final).encode()
            annotated_body = json.dumps(pod(ANNOTATIONS)).encode()
            hooks.remove_all()

            rows = {}
            config = render_chart(url_values(tandem, tls)).one("MutatingWebhookConfiguration")
            bare = copy.deepcopy(config)
            bare["webhooks"][0]["clientConfig"]["url"] = f"https://127.0.0.1:{limit_port}/mutate"
            for name, body, webhook in (("none", final_body, None), ("bare", annotated_body, bare), ("tandem", annotated_body, config)):
                if webhook:
                    hooks.apply(webhook, wait=False)
                    time.sleep(2)  # the API server's webhook informer
                seq = sequential(cp, namespace, body, args.creates)
                conc, rate = concurrent(cp, namespace, body, args.creates, args.concurrency)
                rows[name] = {
                    "sequential_ms": [x * 1000 for x in seq],
                    "concurrent_ms": [x * 1000 for x in conc],
                    "concurrent_rate": rate,
                }
                if webhook:
                    hooks.remove_all()
                cp.kubectl("delete", "pods", "--all", "-n", namespace, "--wait=false")
        finally:
            limit.stop()
            tandem.stop()

    def stats(ms: list[float]) -> tuple[float, float, float]:
        return statistics.median(ms), quantile(ms, 0.99), statistics.mean(ms)

    base_p50 = stats(rows["none"]["sequential_ms"])[0]
    print(f"Pod creation through kube-apiserver {cp_version(cp)} on {platform.node()} ({os.cpu_count()} CPUs), "
          f"{args.creates} sequential creates on one connection, then {args.concurrency} concurrent clients:\n")
    print("| webhook | sequential p50 ms | p99 ms | mean ms | added p50 ms | concurrent p50 ms | p99 ms | pods/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        p50, p99, mean = stats(row["sequential_ms"])
        c50, c99, _ = stats(row["concurrent_ms"])
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {mean:.2f} | {p50 - base_p50:+.2f} | {c50:.2f} | {c99:.2f} | {row['concurrent_rate']:.0f} |")
    added_bare = stats(rows["bare"]["sequential_ms"])[0] - base_p50
    added_tandem = stats(rows["tandem"]["sequential_ms"])[0] - base_p50
    print(f"\ntandem's added p50 against the bare webhook's: {added_tandem:.2f} / {added_bare:.2f} ms = {added_tandem / added_bare:.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"creates": args.creates, "concurrency": args.concurrency, "rows": rows}, indent=1))
    return 0


def cp_version(cp: ControlPlane) -> str:
    return cp.version


if __name__ == "__main__":
    sys.exit(main())

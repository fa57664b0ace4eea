"""`tandem inject` and `tandem explain` with real objects: what `inject` writes is accepted
by the API server (server-side dry run, strict field validation), and what the API server
returns (`kubectl get -o yaml`, with status, managedFields and defaults) is what `explain`
and `inject` read."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import yaml

import promises

ROOT = Path(__file__).resolve().parents[2]
WORKLOADS = ROOT / "tests" / "data" / "manifests" / "workloads.yaml"


def tandem(binary: Path, *args: str, input: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(binary), *args], input=input, capture_output=True, text=True, check=False)


def test_inject_output_is_accepted_by_the_api_server(cluster, tandem_bin, namespace):
    """Every document of the workloads file the API server accepts before `tandem inject`,
    it accepts after (strict field validation), and the pods in it come back mutated."""
    source = [d for d in yaml.safe_load_all(WORKLOADS.read_text()) if d]
    for doc in source:
        doc.setdefault("metadata", {}).pop("namespace", None)
    result = tandem(tandem_bin, "inject", "-f", "-", "-n", namespace, input=yaml.safe_dump_all(source))
    assert result.returncode == 0, result.stderr
    injected = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(injected) == len(source)
    mutated = 0
    for before, after in zip(source, injected):
        what = f"{before['kind']}/{before['metadata'].get('name')}"
        accepted_before = _dry_run(cluster, namespace, before)
        accepted_after = _dry_run(cluster, namespace, after)
        if accepted_before.returncode != 0:
            # Refused whatever tandem does (the file holds a ConfigMap whose keys the
            # server refuses, to prove inject leaves other kinds alone): still refused.
            assert accepted_after.returncode != 0, what
            continue
        assert accepted_after.returncode == 0, f"{what}: {accepted_after.stderr}"
        for item in _flatten(_objects(accepted_after.stdout)):
            template = _pod_of(item)
            if template is None or not promises.injected(template):
                continue
            mutated += 1
            broken = promises.errors(promises.template_pod(template))
            assert not broken, f"{what}: " + "\n".join(broken)
    assert mutated >= 6, f"only {mutated} workloads came back mutated"


def _objects(text: str) -> list[dict]:
    """kubectl -o json prints one object per created object (a List's items one by one)."""
    decoder, objects, at = json.JSONDecoder(), [], 0
    text = text.strip()
    while at < len(text):
        obj, end = decoder.raw_decode(text, at)
        objects += obj["items"] if obj.get("kind") == "List" else [obj]
        at = end
        while at < len(text) and text[at].isspace():
            at += 1
    return objects


def _dry_run(cluster, namespace: str, obj: dict):
    return cluster.kubectl("create", "--dry-run=server", "--validate=strict", "-n", namespace, "-o", "json", "-f", "-", input=json.dumps(obj), check=False)


def _flatten(items: list[dict]) -> list[dict]:
    out = []
    for item in items:
        if item.get("kind") == "List":
            out += _flatten(item["items"])
        else:
            out.append(item)
    return out


def _pod_of(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind == "Pod":
        return obj
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]
    return None


def test_explain_and_inject_read_what_the_api_server_returns(cluster, tandem_bin, namespace):
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "site"},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "site"}},
            "template": {
                "metadata": {"labels": {"app": "site"}, "annotations": {"tandem.dev/git-clone": "https://github.com/example/site.git", "tandem.dev/git-clone.path": "/usr/share/nginx/html", "tandem.dev/git-clone.sync": "30s"}},
                "spec": {"containers": [{"name": "nginx", "image": "nginx:1.27.3"}]},
            },
        },
    }
    cluster.kubectl("create", "-n", namespace, "-f", "-", input=json.dumps(deployment))
    live = cluster.kubectl("get", "deployment", "site", "-n", namespace, "-o", "yaml").stdout
    assert "managedFields" in live or "status:" in live
    explained = tandem(tandem_bin, "explain", "-f", "-", "-n", namespace, "-o", "json", input=live)
    assert explained.returncode == 0, explained.stderr
    report = json.loads(explained.stdout)
    text = json.dumps(report)
    assert "git-clone" in text and "/usr/share/nginx/html" in text, text[:2000]
    injected = tandem(tandem_bin, "inject", "-f", "-", "-n", namespace, input=live)
    assert injected.returncode == 0, injected.stderr
    # The mutated live object goes back through the API server as an update would.
    applied = cluster.kubectl("apply", "--server-side", "--force-conflicts", "--field-manager=tandem-tests", "--dry-run=server", "-n", namespace, "-o", "json", "-f", "-", input=injected.stdout, check=False)
    assert applied.returncode == 0, applied.stderr
    template = json.loads(applied.stdout)["spec"]["template"]
    assert promises.injected(template) == ["git-clone"]
    assert not promises.errors(promises.template_pod(template))

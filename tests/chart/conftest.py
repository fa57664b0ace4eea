"""Fixtures for the chart tests; the helpers they use live in chartlib.py."""

from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest
from helm_python.chart import Chart
from helm_python.config import Config

from chartlib import CHART_DIR, NAMESPACE, RELEASE, FakeAPIServer, Rendered, parse


@pytest.fixture(scope="session")
def chart() -> Iterator[Chart]:
    with Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="session")
def render(chart):
    """render(values, **opts) -> Rendered, as `helm install` would offline (`lookup`
    finds nothing, Capabilities are the SDK's defaults)."""

    def _render(values: dict | None = None, *, name: str = RELEASE, namespace: str = NAMESPACE, **opts: Any) -> Rendered:
        opts.setdefault("is_install", not opts.get("is_upgrade", False))
        return parse(chart.render(values=copy.deepcopy(values or {}), name=name, namespace=namespace, **opts))

    return _render


@pytest.fixture
def fake_apiserver() -> Iterator[FakeAPIServer]:
    with FakeAPIServer() as fake:
        yield fake


@pytest.fixture
def render_against(chart):
    """render_against(fake, values, is_upgrade=...) -> Rendered, cluster-aware: `lookup`
    asks the fake API server on loopback."""

    def _render(fake: FakeAPIServer, values: dict | None = None, **opts: Any) -> Rendered:
        with Config(kube_apiserver=fake.url, namespace=NAMESPACE) as cfg:
            manifests = cfg.render(chart, copy.deepcopy(values or {}), name=RELEASE, namespace=NAMESPACE, **opts)
        return parse(manifests)

    return _render

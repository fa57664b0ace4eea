"""Fixtures for the program tests: `run_pod` (tests/podrunner) and `remote`."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "podrunner"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "validate"))

from fixtures import run_pod  # noqa: E402,F401  (the fixture, for this directory's tests)
from gitserver import readable_directory  # noqa: E402


@pytest.fixture
def remote():
    """A directory the pods' neighbours can read as other users."""
    with readable_directory() as directory:
        yield directory

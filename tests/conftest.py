"""Fixtures: a FakeClock, and a fresh store on every backend."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import botmemory
from botmemory.testing import FakeClock
from botmemory.testing.backends import BACKENDS, open_test_store, server_missing

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_backend(name: str) -> None:
    """Skip (or, with CI=true, fail) when the backend's server cannot be used."""
    why = server_missing(name)
    if why is None and name in ("postgres", "redis"):
        module = {"postgres": "botmemory.backends.postgres", "redis": "botmemory.backends.redis"}[name]
        try:
            __import__(module)
        except ImportError as exc:
            why = f"{name} backend not available: {exc}"
    if why is not None:
        if IN_CI:
            pytest.fail(f"required in CI: {why}")
        pytest.skip(why)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture(params=BACKENDS)
def backend_name(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    require_backend(name)
    return name


@pytest.fixture
async def store(backend_name: str, clock: FakeClock, tmp_path: Path) -> AsyncIterator[botmemory.Store]:
    async with open_test_store(backend_name, tmp_path, clock=clock) as s:
        yield s


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print the figures the reliability suite measured (tests/reliability), when it ran."""
    import sys

    suite = sys.modules.get("reliability_suite")
    if suite is not None:
        terminalreporter.section("reliability figures")
        suite.summary(terminalreporter.write)

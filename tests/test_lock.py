"""The committed lock covers every dependency, and the suite runs on exactly it."""

from __future__ import annotations

import os
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _norm(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _pins() -> dict[str, str]:
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not name==version"
            pins[_norm(name)] = version
    return pins


def _requirements() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for extra in project["optional-dependencies"].values():
        found += [Requirement(r) for r in extra if not r.startswith("botmemory")]
    bench = (ROOT / "benchmarks" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    found += [Requirement(line.split("#", 1)[0]) for line in bench if line.split("#", 1)[0].strip()]
    return found


def test_every_dependency_is_pinned_within_its_declared_range() -> None:
    pins = _pins()
    missing = [str(r) for r in _requirements() if _norm(r.name) not in pins]
    assert not missing, f"not in constraints.txt (run `make lock`): {missing}"
    outside = [
        f"{r} but locked {pins[_norm(r.name)]}" for r in _requirements() if pins[_norm(r.name)] not in r.specifier
    ]
    assert not outside, f"the lock disagrees with pyproject.toml (run `make lock`): {outside}"


@pytest.mark.skipif(os.environ.get("BOTMEMORY_TEST_LATEST") == "1", reason="make test-latest runs the newest releases")
def test_the_suite_runs_on_the_locked_versions() -> None:
    pins = _pins()
    drifted = []
    for dist in metadata.distributions():
        name = _norm(dist.metadata["Name"])
        if name in pins and dist.version != pins[name] and name not in ("pip", "setuptools"):
            drifted.append(f"{name} {dist.version} (lock: {pins[name]})")
    assert not drifted, f"installed versions differ from constraints.txt (`make install`): {sorted(drifted)}"


def test_the_bot_framework_suite_lock_covers_its_requirements() -> None:
    """constraints-botbuilder.txt (the venv of `make test-botbuilder`) pins what that venv installs."""
    pins: dict[str, str] = {}
    for line in (ROOT / "constraints-botbuilder.txt").read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints-botbuilder.txt: {line!r} is not name==version"
            pins[_norm(name)] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for name in ("botbuilder", "postgres", "redis") for r in extras[name]]
    suite = (ROOT / "suites" / "botbuilder" / "requirements.txt").read_text(encoding="utf-8").splitlines()
    wanted += [Requirement(line.split("#", 1)[0]) for line in suite if line.split("#", 1)[0].strip()]
    problems = [
        f"{r} but locked {pins.get(_norm(r.name))}"
        for r in wanted
        if _norm(r.name) not in pins or pins[_norm(r.name)] not in r.specifier
    ]
    assert not problems, f"constraints-botbuilder.txt disagrees (run `make lock`): {problems}"

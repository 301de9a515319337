"""The Hypothesis state machine (``botmemory.testing.statemachine``) on every backend.

Deterministic (derandomize) so CI runs the same steps each time; at least
2,000 steps per backend.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis.stateful import run_state_machine_as_test

from botmemory import Store
from botmemory.testing import FakeClock
from botmemory.testing.backends import open_test_store, unique_suffix
from botmemory.testing.statemachine import kvs_state_machine

MIN_STEPS = 2_000

SETTINGS = settings(
    max_examples=60,
    stateful_step_count=50,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


def test_kvs_matches_a_dict_model(backend_name: str, tmp_path: Path) -> None:
    def open_store(clock: FakeClock) -> AbstractAsyncContextManager[Store]:
        # a fresh directory per test case: SQLite would otherwise reopen the last file
        directory = tmp_path / unique_suffix()
        directory.mkdir()
        return open_test_store(backend_name, directory, clock=clock)

    machine = kvs_state_machine(open_store)
    run_state_machine_as_test(machine, settings=SETTINGS)
    assert machine.steps_run >= MIN_STEPS, f"only {machine.steps_run} steps in {machine.examples_run} test cases"

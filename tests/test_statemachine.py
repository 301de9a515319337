"""The Hypothesis state machine (``botmemory.testing.statemachine``) on every backend.

Deterministic (derandomize) so CI runs the same steps each time; at least
2,000 steps per backend.
"""

from __future__ import annotations

import asyncio
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
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


# -- dialog memory ids: any valid id or name stays its own ------------------------------------

_FORBIDDEN = "\u2028\u2029"
_ids = st.text(
    st.characters(exclude_categories=["Cs", "Cc"], exclude_characters=_FORBIDDEN), min_size=1, max_size=12
).filter(lambda s: not s[0].isspace() and not s[-1].isspace())
# ids that look like the layout itself are the interesting ones
_tricky = st.sampled_from(
    ["u/x", "u%2Fx", "%", "%25", ".", "..", "/", "//", "a/b", "storage", "users/x", "%C3%A9", "é"]
)


@settings(max_examples=60, deadline=None, derandomize=True, database=None)
@given(
    users=st.lists(_ids | _tricky, min_size=2, max_size=5, unique=True),
    names=st.lists(_ids | _tricky, min_size=1, max_size=3, unique=True),
)
def test_memory_ids_never_collide(users: list[str], names: list[str]) -> None:
    async def check() -> None:
        # the key layout is built above the backends (the contract runs tricky ids on each): memory suffices
        async with open_test_store("memory", Path("."), clock=FakeClock()) as store:
            memory = store.bot("b").memory
            for user in users:
                for name in names:
                    await memory.set_user_variable(user, name, [user, name])
                    await memory.set_conversation_variable(user, name, {"c": [user, name]})
            await memory.set_global_variable(names[0], "global")
            for user in users:
                expected = {name: [user, name] for name in names}
                assert await memory.user(user).items() == expected
                assert await memory.conversation(user).items() == {n: {"c": v} for n, v in expected.items()}
            assert await memory.global_scope().items() == {names[0]: "global"}
            assert await memory.user(users[0]).clear() == len(names)
            for user in users[1:]:
                assert await memory.get_user_variable(user, names[0]) == [user, names[0]]
            assert await memory.end_conversation(users[-1]) == len(names)
            assert await memory.get_conversation_variable(users[0], names[0]) == {"c": [users[0], names[0]]}

    asyncio.run(check())

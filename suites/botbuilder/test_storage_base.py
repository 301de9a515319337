"""The Bot Framework's own storage tests (botbuilder-testing's StorageBaseTests) on BotMemoryStorage.

Every test of the suite, on every backend; PostgreSQL and Redis are
required with CI=true, as in the main suite. Run by `make test` (through
`make test-botbuilder`, in .venv-botbuilder).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from botbuilder.testing import StorageBaseTests

from botmemory.integrations.botbuilder import BotMemoryStorage
from botmemory.testing.backends import BACKENDS, open_test_store, server_missing

# every test the suite has, so a new botbuilder-testing release cannot add one we skip
CASES = sorted(name for name, fn in vars(StorageBaseTests).items() if isinstance(fn, staticmethod))


def test_the_suite_is_the_one_we_expect() -> None:
    assert len(CASES) >= 11, CASES  # 11 in botbuilder-testing 4.17.1
    assert all(inspect.iscoroutinefunction(getattr(StorageBaseTests, name)) for name in CASES)


@pytest.fixture(params=BACKENDS)
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[BotMemoryStorage]:
    name: str = request.param
    why = server_missing(name)
    if why is not None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"required in CI: {why}")
        pytest.skip(why)
    async with open_test_store(name, tmp_path) as store:
        yield BotMemoryStorage(store, bot_id="storage-base-tests")


@pytest.mark.parametrize("case", CASES)
async def test_storage_base_tests(storage: BotMemoryStorage, case: str) -> None:
    # the suite's convention: each test returns True once its assertions passed
    assert await getattr(StorageBaseTests, case)(storage) is True

"""The runnable examples in examples/ run, and say what their docstrings promise."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(name: str, store: str) -> list[str]:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name), "--store", store],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_botframework_echo_bot_forgets_idle_users(where: str, tmp_path: Path) -> None:
    store = "memory://" if where == "memory" else f"sqlite:///{tmp_path / 'echo.db'}"
    out = _run("botframework_echo.py", store)
    assert out[:4] == [
        "ada: turn 1: you said 'hello'",
        "ada: turn 2: you said 'how are you?'",
        "bob: turn 1: you said 'hi'",
        "ada: turn 3: you said 'back again'",
    ]
    assert "ada's user variables: ['emulator/users/ada']" in out
    assert "bob's user variables: []" in out  # idle for 31 days: expired and purged
    assert "audit for bob: [('user', 'expired')]" in out
    assert out[-2] == "bob: turn 1: you said 'hi again'"
    assert out[-1].startswith("forget ada: {'user': 1,") and "'conversation': 1" in out[-1]


@pytest.mark.parametrize("where", ["memory", "sqlite"])
def test_langgraph_graph_remembers_a_user_then_forget_erases_everything(where: str, tmp_path: Path) -> None:
    store = "memory://" if where == "memory" else f"sqlite:///{tmp_path / 'agent.db'}"
    out = _run("langgraph_memory.py", store)
    assert out[:5] == [
        "[ada-monday] bot asks: Hello! What's your name?",
        "[ada-monday] bot: Nice to meet you, Ada.",
        "[ada-tuesday] bot: Welcome back, Ada.",
        "[bob-monday] bot asks: Hello! What's your name?",
        "[bob-monday] bot: Nice to meet you, Bob.",
    ]
    assert "ada's threads: ['ada-monday', 'ada-tuesday']" in out
    assert "checkpoints of ada-monday: erased" in out and "checkpoints of ada-tuesday: erased" in out
    assert "checkpoints of bob-monday: kept" in out
    assert "memories: [('memories', 'u-bob')]" in out
    assert out[-1] == "[bob-tuesday] bot: Welcome back, Bob."

"""RELIABILITY.md is what the committed figures render to: it cannot drift from the measurements."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_reliability_md_is_rendered_from_the_committed_figures() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "render_reliability.py"), "--check"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_figure_the_template_names_was_measured() -> None:
    """A figure the template asks for that no test records shows as an em dash: only the soak columns may."""
    text = (ROOT / "RELIABILITY.md").read_text()
    assert (ROOT / "reliability" / "figures-ci.json").exists()
    lines_with_gaps = [line for line in text.splitlines() if "| —" in line or "— |" in line]
    # the durability table's "server crash" cell for memory:// and the Redis maxmemory integrity cell
    assert all("memory://" in line or "maxmemory" in line for line in lines_with_gaps), lines_with_gaps

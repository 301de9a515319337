"""Sizes and figures of the reliability suite.

``BOTMEMORY_SOAK=1`` (``make soak``) runs the long variants: more kills,
longer load and a 10-minute soak. Every test records what it measured with
:func:`record`; the figures are printed at the end of the pytest run and
written as JSON to ``$BOTMEMORY_FIGURES`` (default
``.reliability/figures-<ci|soak>.json``, not committed).
``make reliability`` and ``make soak`` write ``reliability/figures-*.json``,
which ``scripts/render_reliability.py`` turns into ``RELIABILITY.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["MODE", "SOAK", "figures", "record", "size", "socket_inodes", "summary"]

SOAK = os.environ.get("BOTMEMORY_SOAK", "") == "1"
MODE = "soak" if SOAK else "ci"
ROOT = Path(__file__).resolve().parents[2]

_recorded: dict[str, dict[str, Any]] = {}


def size(ci: Any, soak: Any) -> Any:
    """The CI-sized value, or the soak one under ``BOTMEMORY_SOAK=1``."""
    return soak if SOAK else ci


def _path() -> Path:
    given = os.environ.get("BOTMEMORY_FIGURES")
    return Path(given) if given else ROOT / ".reliability" / f"figures-{MODE}.json"


def record(section: str, **values: Any) -> None:
    """Record the figures of one measurement (replacing an earlier run's), with the machine's load."""
    values = {**values, "loadavg": [round(x, 2) for x in os.getloadavg()], "at": time.strftime("%Y-%m-%d %H:%M")}
    _recorded[section] = values
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault("figures", {})[section] = values
    data["meta"] = {
        "mode": MODE,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(terse=True),
        "sqlite": __import__("sqlite3").sqlite_version,
    }
    data["figures"] = dict(sorted(data["figures"].items()))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    tmp.replace(path)


def figures() -> dict[str, dict[str, Any]]:
    """What this process recorded."""
    return dict(_recorded)


def summary(write: Any) -> None:
    """Print the recorded figures (pytest's terminal summary calls this)."""
    if not _recorded:
        return
    write(f"reliability figures ({MODE}; written to {_path()}):\n")
    for section, values in sorted(_recorded.items()):
        shown = ", ".join(f"{k}={v}" for k, v in values.items() if k not in ("at",))
        write(f"  {section}: {shown}\n")
    sys.stdout.flush()


def socket_inodes(port: int, *, remote: bool) -> set[str]:
    """Inodes of this network namespace's TCP sockets whose remote (else local) port is ``port``."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as f:
            next(f)
            for line in f:
                parts = line.split()
                address = parts[2] if remote else parts[1]
                if int(address.rsplit(":", 1)[1], 16) == port:
                    inodes.add(parts[9])
    return inodes

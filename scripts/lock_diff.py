"""Print the installed packages whose version differs from the lock (``make test-latest``)."""

from __future__ import annotations

import sys
from importlib import metadata
from pathlib import Path


def main(lock: str) -> None:
    pinned: dict[str, str] = {}
    for line in Path(lock).read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            pinned[name.strip().lower().replace("_", "-")] = version.strip()
    moved = []
    for dist in metadata.distributions():
        name = dist.metadata["Name"].lower().replace("_", "-")
        if name in pinned and pinned[name] != dist.version:
            moved.append(f"  {name}: {pinned[name]} (lock) -> {dist.version}")
    print(f"{len(moved)} package(s) newer than {lock}:" if moved else f"every package matches {lock}")
    print("\n".join(sorted(moved)))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "constraints.txt")

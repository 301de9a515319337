"""A child process for the crash loop: ``python crash_worker.py URL RUN TASKS``.

Opens the store, writes "R" (ready), then runs TASKS concurrent copies of
the workload (``workload.run_workload``) until it is killed, writing every
intent and acknowledgement to stdout as one line per ``os.write`` (atomic on
a pipe), so a SIGKILL never leaves half a line behind.
"""

from __future__ import annotations

import asyncio
import os
import sys

import botmemory
from workload import run_workload


def emit(line: str) -> None:
    os.write(1, (line + "\n").encode())


async def main(url: str, run: str, tasks: int) -> None:
    store = await botmemory.open(url)
    emit("R")
    await asyncio.gather(*(run_workload(store, emit, run, t) for t in range(tasks)))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3])))

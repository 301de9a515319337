"""What a user's message can make a template cost: time, event-loop stalls, memory.

``python -m benchmarks.template_cost [--text-length 400] [--doublings 21]``

Two hostile templates a bot author may innocently write, driven by the
user's text (the issue-11 walk):

- ``loops``: three nested ``{% for %}`` over ``event.text`` (400 characters:
  64 million iterations);
- ``concat``: a chain of ``{% set %}`` that doubles ``event.text`` with ``~``
  ``--doublings`` times (21: 400 x 2**21 characters, about 0.8 GB).

Each case runs in a fresh process (so peak memory is its own): one turn
through ``Runtime.converse`` on ``memory://``, while a ticker task measures
the longest the event loop went without running it (other conversations
would have waited as long). Prints the turn's time, its reply, the longest
stall and the process's peak RSS. Not a test: nothing fails on timing.
Figures move with the machine's load (other processes share its cores).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import botmemory

FLOWS = {
    "loops": (
        "{% for a in event.text %}{% for b in event.text %}{% for c in event.text %}"
        "{% endfor %}{% endfor %}{% endfor %}done"
    ),
}


def _concat_template(doublings: int) -> str:
    sets = "{% set s0 = event.text %}" + "".join(
        f"{{% set s{i} = s{i - 1} ~ s{i - 1} %}}" for i in range(1, doublings + 1)
    )
    return sets + f"{{{{ s{doublings} | length }}}}"


def _write_bot(root: Path, template: str) -> None:
    folder = root / "hostile"
    (folder / "flows").mkdir(parents=True)
    (folder / "bot.yaml").write_text("id: hostile\nerror_message: refused\n")
    flow = textwrap.dedent(
        """\
        start: listen
        nodes:
          listen:
            on_receive:
              - say: {template}
            next: [{{goto: listen}}]
        """
    ).format(template=json.dumps(template))
    (folder / "flows" / "main.yaml").write_text(flow)


async def _one_case(template: str, text: str) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        _write_bot(Path(tmp), template)
        store = await botmemory.open("memory://")
        try:
            runtime = await botmemory.Runtime.open(store, tmp)
            await runtime.converse("hostile", user_id="u", text="start", conversation_id="c")
            stall = 0.0
            stop = False

            async def ticker() -> None:
                nonlocal stall
                last = time.perf_counter()
                while not stop:
                    await asyncio.sleep(0.001)
                    now = time.perf_counter()
                    stall = max(stall, now - last - 0.001)
                    last = now

            tick = asyncio.ensure_future(ticker())
            await asyncio.sleep(0.01)
            started = time.perf_counter()
            replies = await runtime.converse("hostile", user_id="u", text=text, conversation_id="c")
            took = time.perf_counter() - started
            stop = True
            await tick
        finally:
            await store.close()
    reply = replies[0]["text"] if replies else ""
    return {
        "turn_seconds": round(took, 3),
        "reply": reply if len(reply) <= 40 else reply[:37] + "...",
        "max_loop_stall_ms": round(stall * 1000, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def _child(case: str, text_length: int, doublings: int) -> None:
    template = FLOWS[case] if case in FLOWS else _concat_template(doublings)
    result = asyncio.run(_one_case(template, "x" * text_length))
    sys.stdout.write(json.dumps(result) + "\n")


def main(argv: list[str] | None = None) -> int:
    """Run both cases, each in its own process, and print a table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.template_cost", description=__doc__)
    parser.add_argument("--text-length", type=int, default=400)
    parser.add_argument("--doublings", type=int, default=21)
    parser.add_argument("--case", choices=["loops", "concat"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        _child(args.case, args.text_length, args.doublings)
        return 0
    print(f"botmemory {botmemory.__version__} from {Path(botmemory.__file__).parent}")
    print(f"{'case':8} {'turn s':>8} {'max stall ms':>13} {'peak RSS MB':>12}  reply")
    for case in ("loops", "concat"):
        command = [sys.executable, "-m", "benchmarks.template_cost", "--case", case,
                   "--text-length", str(args.text_length), "--doublings", str(args.doublings)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            print(f"{case:8} failed: {done.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"{case:8} {r['turn_seconds']:>8} {r['max_loop_stall_ms']:>13} {r['peak_rss_mb']:>12}  {r['reply']!r}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Render RELIABILITY.md from the figures the reliability suite measured.

``make reliability`` (the CI-sized suite) writes ``reliability/figures-ci.json``,
``make soak`` (the long variants) ``reliability/figures-soak.json``; both then
run this script, which fills ``reliability/RELIABILITY.md.j2`` with them.
``--check`` exits 1 when RELIABILITY.md is not what the committed figures
render to (tests/test_reliability_doc.py runs it).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import jinja2

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "reliability" / "RELIABILITY.md.j2"
OUTPUT = ROOT / "RELIABILITY.md"
MODES = ("ci", "soak")


def load() -> dict[str, dict[str, Any]]:
    data = {}
    for mode in MODES:
        path = ROOT / "reliability" / f"figures-{mode}.json"
        data[mode] = json.loads(path.read_text()) if path.exists() else {"meta": {}, "figures": {}}
    return data


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, list):
        return ", ".join(_show(v) for v in value) if value else "none"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_show(v)}" for k, v in value.items())
    return str(value)


def render(data: dict[str, dict[str, Any]] | None = None) -> str:
    data = load() if data is None else data

    def get(section: str, key: str, mode: str = "ci") -> Any:
        return data[mode]["figures"].get(section, {}).get(key)

    def f(section: str, key: str, mode: str = "ci") -> str:
        """A figure, formatted, or an em dash when it was not measured."""
        value = get(section, key, mode)
        return "—" if value is None else _show(value)

    def pct(section: str, key: str, mode: str = "ci") -> str:
        """A share (0..1) as a percentage."""
        value = get(section, key, mode)
        return "—" if value is None else f"{100 * value:.4g} %"

    def cs(section: str, key: str) -> str:
        """The CI-sized figure, and the soak one when measured: ``200 (soak: 1,000)``."""
        ci, soak = f(section, key, "ci"), f(section, key, "soak")
        return ci if soak == "—" else f"{ci} (soak: {soak})"

    def sections(prefix: str, mode: str = "ci") -> list[tuple[str, dict[str, Any]]]:
        return [(name[len(prefix):], v) for name, v in data[mode]["figures"].items() if name.startswith(prefix)]

    def total(prefix: str, key: str, mode: str = "ci") -> str:
        values = [v.get(key) for _, v in sections(prefix, mode) if isinstance(v.get(key), int | float)]
        return _show(sum(values)) if values else "—"

    def when(mode: str = "ci") -> str:
        dates = sorted(v.get("at", "") for v in data[mode]["figures"].values() if v.get("at"))
        return f"{dates[0]} to {dates[-1]}" if dates else "not run yet"

    def load_range(mode: str = "ci") -> str:
        loads = [v["loadavg"][0] for v in data[mode]["figures"].values() if v.get("loadavg")]
        return f"{min(loads):.1f} to {max(loads):.1f}" if loads else "—"

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
        autoescape=False,  # noqa: S701 - Markdown from our own figures, not HTML
    )
    template = env.from_string(TEMPLATE.read_text())
    return template.render(
        f=f, pct=pct, cs=cs, get=get, sections=sections, total=total, when=when, load_range=load_range,
        meta=data["ci"]["meta"] or data["soak"]["meta"], show=_show,
    )


def main(argv: list[str]) -> int:
    text = render()
    if "--check" in argv:
        if not OUTPUT.exists() or OUTPUT.read_text() != text:
            print("RELIABILITY.md is not what reliability/figures-*.json render to: run scripts/render_reliability.py")
            return 1
        return 0
    OUTPUT.write_text(text)
    print(f"wrote {OUTPUT.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

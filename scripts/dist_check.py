"""Build the sdist and wheel, install the wheel with ``[all]`` into a fresh venv
outside the checkout, and there run what a user of the package runs: the
README's Python example, ``botmemory --help``, ``botmemory init`` and a chat
with the starter bot. ``make dist-check`` runs it; ``.ci/run`` calls that.

Everything is installed from the committed lock (``constraints.txt``), the
build backend included, so an upstream release cannot change the result.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "constraints.txt"


def step(title: str) -> None:
    print(f"dist-check: {title}", flush=True)


def run(args: list[str], *, cwd: Path, env: dict[str, str], stdin: str | None = None) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, input=stdin, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        sys.stderr.write(done.stdout + done.stderr)
        raise SystemExit(f"dist-check: failed ({done.returncode}): {' '.join(args)}")
    return done.stdout


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    start = text.index("<!-- example: quickstart")
    match = re.search(r"```python\n(.*?)```", text[start:], re.S)
    if match is None:
        raise SystemExit("dist-check: no quickstart block in README.md")
    return match.group(1)


def main() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_CONSTRAINT"] = str(LOCK)  # the isolated build environment too
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    with tempfile.TemporaryDirectory(prefix="botmemory-dist-") as tmp_name:
        tmp = Path(tmp_name)
        dist = tmp / "dist"
        step("python -m build (sdist, then the wheel from the sdist)")
        run([sys.executable, "-m", "build", "--outdir", str(dist), str(ROOT)], cwd=tmp, env=env)
        wheels = sorted(dist.glob("botmemory-*.whl"))
        sdists = sorted(dist.glob("botmemory-*.tar.gz"))
        if len(wheels) != 1 or len(sdists) != 1:
            names = sorted(p.name for p in dist.iterdir())
            raise SystemExit(f"dist-check: expected one wheel and one sdist, got {names}")
        step(f"fresh venv outside the checkout, pip install {wheels[0].name}[all]")
        venv = tmp / "venv"
        run([sys.executable, "-m", "venv", str(venv)], cwd=tmp, env=env)
        python = venv / "bin" / "python"
        run([str(python), "-m", "pip", "install", "--quiet", f"{wheels[0]}[all]"], cwd=tmp, env=env)
        work = tmp / "work"
        work.mkdir()
        where = run([str(python), "-c", "import botmemory; print(botmemory.__file__)"], cwd=work, env=env).strip()
        if not where.startswith(str(venv)):
            raise SystemExit(f"dist-check: botmemory imported from {where}, not from the fresh venv")

        step("the README's Python example")
        (work / "quickstart.py").write_text(readme_example(), encoding="utf-8")
        out = run([str(python), "quickstart.py"], cwd=work, env=env)
        if "['orders/42']" not in out:
            raise SystemExit(f"dist-check: unexpected quickstart output: {out!r}")

        cli = str(venv / "bin" / "botmemory")
        step("botmemory --help")
        out = run([cli, "--help"], cwd=work, env=env)
        if "chat" not in out or "init" not in out:
            raise SystemExit(f"dist-check: --help lists no chat/init: {out!r}")

        step("botmemory init, then a chat with the starter bot")
        run([cli, "init"], cwd=work, env=env)
        out = run([cli, "--store", "sqlite:///chat.db", "chat", "example"], cwd=work, env=env, stdin="hi\nAda\n")
        if "Ada" not in out:
            raise SystemExit(f"dist-check: the starter bot did not answer as expected: {out!r}")
        shutil.rmtree(work)
    step("ok")


if __name__ == "__main__":
    main()

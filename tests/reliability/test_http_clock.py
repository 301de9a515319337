"""Clock jumps through the HTTP server (issue 16, item 4): nothing expired is ever returned.

``botmemory serve`` runs with ``BOTMEMORY_CLOCK_OFFSET=file:PATH``: the
test steps the running server's clock by rewriting the offset in the file
(+1 h, back to 0, -1 h, +2 h...; in the soak, a random walk of steps and
jumps). After every step, every read path of the API (GET of each key, the
key listing (keys and the user's variables), a batch get, the user's variables, one variable, the export)
is checked against the deadlines the server gave at write time:

- nothing returned has a deadline at or before the latest clock time the
  server has read (its store's time never goes back: at least the clock's
  time when the request was sent, and at least any earlier step's);
- everything whose deadline is after the store's time when the answer came
  back is returned (after a jump back the store's time stands still until
  the clock catches up, so what expired stays expired: the documented
  behaviour, ``test_clock_jumps.py``);
- a returned entry's ``ttl`` is positive.

SQLite (the server's process is the one whose clock moves; the backends are
covered by ``test_clock_jumps.py`` through the library's injected clock).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import httpx

from http_server import serve
from reliability_suite import record, size

HOUR = 3600.0
BOT = "example"
KVS = f"/api/v1/bots/{BOT}/kvs"
TTLS = {"t30s": "30s", "t10m": "10m", "t59m": "59m", "t1h": "1h", "t61m": "61m", "t2h": "2h", "never": None}
VARIABLES = {"v10m": "10m", "v2h": "2h", "vnever": None}
USER_PREFIX = "storage/users/u/"


def _reads(client: httpx.Client) -> dict[str, set[str]]:
    """What each read path returns (keys and variable names), with positive TTLs."""
    seen: dict[str, set[str]] = {"get": set(), "var_get": set()}
    for key in TTLS:
        response = client.get(f"{KVS}/{key}")
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200:
            body = response.json()
            assert body["ttl"] is None or body["ttl"] > 0, body
            seen["get"].add(key)
    listing = client.get(KVS, params={"limit": 100})
    assert listing.status_code == 200, listing.text
    keys = set(listing.json()["keys"])
    variable_keys = {k for k in keys if k.startswith(USER_PREFIX)}  # user variables live in the bot's KVS
    seen["list"] = keys - variable_keys
    seen["list_vars"] = {k.removeprefix(USER_PREFIX) for k in variable_keys}
    batch = client.post(f"{KVS}:batch", json={"get": list(TTLS)})
    assert batch.status_code == 200, batch.text
    seen["batch"] = set(batch.json()["values"])
    variables = client.get(f"/api/v1/bots/{BOT}/users/u/variables")
    assert variables.status_code == 200, variables.text
    seen["vars"] = {v["name"] for v in variables.json()["variables"]}
    assert all(v["ttl"] is None or v["ttl"] > 0 for v in variables.json()["variables"])
    for name in VARIABLES:
        response = client.get(f"/api/v1/bots/{BOT}/users/u/variables/{name}")
        assert response.status_code in (200, 404), response.text
        if response.status_code == 200:
            seen["var_get"].add(name)
    export = client.get(f"/api/v1/bots/{BOT}/users/u/export")
    assert export.status_code == 200, export.text
    seen["export"] = set(export.json()["user"])
    return seen


def test_clock_jumps_through_the_server(tmp_path: Path) -> None:
    offset_file = tmp_path / "offset"
    offset_file.write_text("0")

    def step(offset: float) -> None:
        tmp = offset_file.with_suffix(".tmp")
        tmp.write_text(repr(offset))
        tmp.replace(offset_file)  # a new inode: the server sees a new mtime, never a half-written file

    rng = random.Random(16)
    offsets = [HOUR + 1, 0.0, -HOUR, 2 * HOUR + 1, -HOUR, HOUR + 60]
    offsets += [rng.choice([-HOUR, HOUR, 0.0]) + rng.uniform(-900, 900) for _ in range(size(4, 60))]
    env = {"BOTMEMORY_CLOCK_OFFSET": f"file:{offset_file}"}
    steps = hidden_checks = 0
    with serve(f"sqlite:///{tmp_path / 'clock.db'}", tmp_path, "--no-janitor", env=env) as served, \
            httpx.Client(base_url=served.url, headers=served.headers(), timeout=30) as client:
        deadlines: dict[str, float | None] = {}
        for key, ttl in TTLS.items():
            response = client.put(f"{KVS}/{key}", json={"key": key}, params={"expiry": ttl} if ttl else {})
            assert response.status_code == 200, response.text
            deadlines[key] = client.get(f"{KVS}/{key}").json()["expires_at"]
        for name, ttl in VARIABLES.items():
            response = client.put(f"/api/v1/bots/{BOT}/users/u/variables/{name}", json=name,
                                  params={"expiry": ttl} if ttl else {})
            assert response.status_code == 200, response.text
            deadlines[name] = client.get(f"/api/v1/bots/{BOT}/users/u/variables/{name}").json()["expires_at"]
        written = time.time()
        assert abs(deadlines["t1h"] - (written + HOUR)) < 60  # type: ignore[operator]  # the offset starts at 0

        read_at_least = read_at_most = float("-inf")  # bounds of the latest time the server has read
        for offset in offsets:
            step(offset)
            sent = max(time.time() + offset, read_at_least)
            seen = _reads(client)
            answered = max(time.time() + offset, read_at_most)
            read_at_least, read_at_most = sent, answered
            for path, names in seen.items():
                universe = TTLS if path in ("get", "list", "batch") else VARIABLES
                for name in universe:
                    deadline = deadlines[name]
                    if name in names:
                        assert deadline is None or deadline > sent, (
                            f"offset {offset:+.0f} s: {path} returned {name}, expired {sent - deadline:.1f} s ago")
                    else:
                        assert deadline is not None and deadline <= answered, (
                            f"offset {offset:+.0f} s: {path} hid {name}, live for {deadline - answered:.1f} s")
                        hidden_checks += 1
                assert names <= set(universe), (path, names)
            steps += 1
    record("http_clock.jumps", steps=steps, offsets_s=[round(o) for o in offsets[:6]], read_paths=8,
           hidden_as_expected=hidden_checks, expired_returned=0)


def test_a_bad_offset_stops_serve_at_once(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    for value in ("nan", "1e12", "soon", "file:/nonexistent/offset"):
        done = subprocess.run(
            [sys.executable, "-m", "botmemory", "--store", f"sqlite:///{tmp_path / 'x.db'}", "serve", "--port", "0"],
            capture_output=True, text=True, timeout=60, check=False, cwd=tmp_path,
            env={**os.environ, "BOTMEMORY_CLOCK_OFFSET": value},
        )
        assert done.returncode == 2, (value, done.stdout, done.stderr)
        assert done.stderr.startswith("error: BOTMEMORY_CLOCK_OFFSET") and "Traceback" not in done.stderr, done.stderr

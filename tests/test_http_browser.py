"""The admin UI in a real browser (Playwright driving Debian's chromium).

Sign in, chat with the example bot, see the user's variable appear in the
memory browser, edit it and see the bot use the new value, forget the user
and see everything gone. Every page is screenshotted into
``test-artifacts/screenshots/`` (at 1280x800, and the main pages at 390x844);
``BOTMEMORY_UPDATE_SCREENSHOTS=1`` also refreshes the two in ``docs/screenshots/``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest import IN_CI
from http_server import ROOT, Served, serve

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts" / "screenshots"
DOCS = ROOT / "docs" / "screenshots"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER = "admin-tester"

playwright_sync = pytest.importorskip("playwright.sync_api")


def _ensure_chromium() -> None:
    """Install Debian's chromium when it is missing (no browser download: Playwright's own builds are not used)."""
    if CHROMIUM.exists():
        return
    why = None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        why = "chromium is missing and apt-get cannot install it here"
    else:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", "chromium"]):
            done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
            if done.returncode != 0:
                why = f"{' '.join(command)} failed: {done.stderr[-500:]}"
                break
    if why is not None or not CHROMIUM.exists():
        message = why or "chromium did not install at /usr/bin/chromium"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    _ensure_chromium()
    with playwright_sync.sync_playwright() as p:
        instance = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("browser")
    with serve(f"sqlite:///{folder / 'ui.db'}", folder, "--no-janitor") as served:
        yield served


def shot(page: object, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)  # type: ignore[attr-defined]


def nav(page: object, name: str) -> None:
    page.locator(".top nav").get_by_role("link", name=name, exact=True).click()  # type: ignore[attr-defined]


def send(page: object, text: str, expect: str) -> None:
    page.fill("#chat-text", text)  # type: ignore[attr-defined]
    page.keyboard.press("Enter")  # type: ignore[attr-defined]
    playwright_sync.expect(page.locator("#chat-log")).to_contain_text(expect, timeout=10_000)  # type: ignore[attr-defined]


def test_sign_in_chat_edit_forget(browser: object, server: Served) -> None:
    expect = playwright_sync.expect
    context = browser.new_context(viewport={"width": 1280, "height": 800})  # type: ignore[attr-defined]
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # expected: the 401 of the session check before signing in, the 403 of the CSRF check below
    expected = ("status of 401", "status of 403")
    page.on(
        "console",
        lambda msg: (
            errors.append(msg.text) if msg.type == "error" and not any(e in msg.text for e in expected) else None
        ),
    )

    # sign in with the token serve printed, from the keyboard
    page.goto(server.url + "/ui/")
    expect(page.locator("#login-token")).to_be_focused()
    shot(page, "login")
    page.keyboard.type(server.token or "")
    page.keyboard.press("Enter")
    expect(page.locator("#view-dashboard")).to_be_visible()
    expect(page.locator("#who")).to_have_text("admin")
    cookie = next(c for c in context.cookies() if c["name"] == "botmemory_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert server.token not in cookie["value"]

    # chat: the bot asks the name, the user gives it
    nav(page, "Chat")
    page.fill("#chat-user", USER)
    send(page, "hi", "What's your name?")
    send(page, "Ada", "Nice to meet you, Ada!")
    expect(page.locator("#chat-changes")).to_contain_text("firstname")
    expect(page.locator("#chat-changes")).to_contain_text('"Ada"')
    shot(page, "chat")

    # the memory browser shows the user's variable, with version and TTL
    nav(page, "Memory")
    page.click(".tabs >> text=Users")
    page.click(f"#mem-list >> text={USER}")
    row = page.locator("#mem-detail tr", has_text="firstname")
    expect(row).to_contain_text('"Ada"')
    expect(row.locator(".ttl")).to_have_text(re.compile(r"^\d+d"))
    shot(page, "memory")

    # edit it, and the bot uses the new value
    row.get_by_role("button", name="Edit firstname").click()
    page.fill("#edit-value", '"Grace"')
    page.click("#mem-detail form.editor >> text=Save")
    expect(page.locator("#mem-detail tr", has_text="firstname")).to_contain_text('"Grace"')
    nav(page, "Chat")
    send(page, "bye", "Bye Grace!")

    # the dashboard and the audit log
    nav(page, "Dashboard")
    expect(page.locator("#dash-cards")).to_contain_text("users")
    expect(page.locator("#dash-expiring svg")).to_be_visible()
    shot(page, "dashboard")
    nav(page, "Audit")
    page.click("#audit-form >> text=Filter")
    expect(page.locator("#audit-table")).to_contain_text("end_of_conversation")
    shot(page, "audit")

    # a state change without the CSRF header is refused, even with the cookie
    status = page.evaluate(
        "async (u) => (await fetch(`/api/v1/bots/example/users/${u}/variables/firstname`,"
        " {method: 'DELETE', credentials: 'same-origin'})).status",
        USER,
    )
    assert status == 403

    # export, forget (dry run, then for real), and everything is gone
    nav(page, "Users")
    page.fill("#users-id", USER)
    with page.expect_download() as download:
        page.click("#users-form >> text=Export JSON")
    assert '"Grace"' in Path(download.value.path()).read_text()
    page.click("#users-form >> text=Forget: dry run")
    expect(page.locator("#users-result")).to_contain_text("Dry run")
    page.click(f"text=Forget {USER} now")
    expect(page.locator("#users-result")).to_contain_text("receipt")
    shot(page, "forget")
    nav(page, "Memory")
    page.click(".tabs >> text=Users")
    expect(page.locator("#mem-list")).not_to_contain_text(USER)
    export = httpx.get(f"{server.url}/api/v1/bots/example/users/{USER}/export", headers=server.headers()).json()
    assert export["user"] == {} and export["kvs"] == {} and export["conversations"] == [] and export["sessions"] == {}

    # signed out: the API refuses the page
    page.click("#logout")
    expect(page.locator("#view-login")).to_be_visible()
    assert errors == [], errors
    context.close()


def test_one_time_login_link_and_phone_layout(browser: object, server: Served) -> None:
    expect = playwright_sync.expect
    assert server.login_link is not None
    context = browser.new_context(viewport={"width": 390, "height": 844})  # type: ignore[attr-defined]
    page = context.new_page()
    page.goto(server.login_link)
    expect(page.locator("#view-dashboard")).to_be_visible()
    assert "login=" not in page.url  # the code leaves the address bar
    shot(page, "dashboard-phone")
    nav(page, "Memory")
    page.click(".tabs >> text=Global")
    expect(page.locator("#mem-detail")).to_contain_text("conversations")
    shot(page, "memory-phone")
    nav(page, "Chat")
    shot(page, "chat-phone")
    # nothing is wider than the phone's screen
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    context.close()

    again = browser.new_context()  # type: ignore[attr-defined]
    page = again.new_page()
    page.goto(server.login_link)
    expect(page.locator("#login-error")).to_contain_text("already used")
    again.close()

    if os.environ.get("BOTMEMORY_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        for name in ("dashboard", "memory"):
            shutil.copy(ARTIFACTS / f"{name}.png", DOCS / f"{name}.png")

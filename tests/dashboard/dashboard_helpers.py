"""Helpers of the dashboard tests: API keys, users (two teams), the running dashboard,
Debian's Chromium."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import shutil
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.dashboard import DashboardServer, DashboardSink, DashboardState, start_dashboard
from qa_pipeline.dashboard.users import User, UserRole, hash_password, save_users

TOKEN = "test-token-full-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"
PASSWORD = "correct horse battery"
#: name -> (role, teams, agent_id): two teams, north (agent A1) and east (agent B1)
USERS: dict[str, tuple[str, tuple[str, ...], str | None]] = {
    "admin": ("admin", (), None),
    "qa": ("qa", (), None),
    "viewer": ("viewer", (), None),
    "sup-north": ("supervisor", ("north",), None),
    "sup-east": ("supervisor", ("east",), None),
    "agent-a": ("agent", ("north",), "A1"),
    "agent-b": ("agent", ("east",), "B1"),
}


@functools.cache
def _hash() -> str:
    return hash_password(PASSWORD)  # one hash for all (argon2 takes a while each)


def write_users(path: Path, names: tuple[str, ...] | None = None) -> Path:
    """The test users (all, or ``names``), each with :data:`PASSWORD`."""
    h = _hash()
    save_users(
        path,
        [
            User(name=n, role=UserRole(r), teams=t, agent_id=a, password_hash=h)
            for n, (r, t, a) in USERS.items()
            if names is None or n in names
        ],
    )
    return path


ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
INSTALL_HINT = "apt-get update && apt-get install -y chromium fonts-noto-cjk"


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser"):
        path = shutil.which(name)
        if path:
            return path
    pytest.fail(f"the browser test needs Debian's chromium on PATH. Install: {INSTALL_HINT}")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (a browser test module skips
    itself first when Playwright is not installed: ``pytest.importorskip``)."""
    from playwright.sync_api import sync_playwright

    exe = chromium_path()
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def browser_login(page: Any, url: str, name: str, password: str = PASSWORD) -> None:
    """``page`` opens the dashboard at ``url`` and logs in as ``name`` (the caller waits
    for what it needs to see next)."""
    page.goto(url)
    page.wait_for_selector("#login:not([hidden])", timeout=5000)
    page.fill("#name", name)
    page.fill("#password", password)
    page.click("#login button[type=submit]")


class Dashboard:
    def __init__(self, server: DashboardServer, state: DashboardState) -> None:
        self.server = server
        self.state = state
        self.sink = DashboardSink(state)
        self.url = server.url

    def stop(self) -> None:
        self.state.close()
        self.server.stop()

    def login(self, name: str, password: str = PASSWORD) -> tuple[int, str]:
        """``POST /login``: the status and the ``Set-Cookie`` header ('' when none)."""
        u = urllib.parse.urlsplit(self.url)
        c = http.client.HTTPConnection(u.hostname or "", u.port, timeout=10)
        body = urllib.parse.urlencode({"name": name, "password": password})
        c.request(
            "POST",
            "/login",
            body=body,
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        r = c.getresponse()
        r.read()
        c.close()
        return r.status, r.getheader("Set-Cookie") or ""

    def session(self, name: str, password: str = PASSWORD) -> str:
        """A ``Cookie`` header value of a fresh session of ``name``."""
        status, cookie = self.login(name, password)
        assert status == 303 and cookie, (status, cookie)
        return cookie.split(";")[0]

    def get(
        self, path: str, token: str | None = None, *, cookie: str | None = None, **headers: str
    ) -> tuple[int, Any]:
        h = dict(headers)
        if token:
            h["Authorization"] = f"Bearer {token}"
        if cookie:
            h["Cookie"] = cookie
        req = urllib.request.Request(self.url.rstrip("/") + path, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body = r.read().decode()
                status = r.status
                ctype = r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            body, status, ctype = e.read().decode(), e.code, e.headers.get("Content-Type", "")
        return status, json.loads(body) if ctype.startswith("application/json") else body


def start_test_dashboard(tmp_path: Path, **options: Any) -> Dashboard:
    """A dashboard on a free loopback port with both API keys, the test users (two teams)
    and the audit log in ``tmp_path``; ``options``: :func:`start_dashboard`'s others
    (``store=``, ``recordings=``, ``review_pack=``, ...). Stop it with ``.stop()``."""
    state = DashboardState()
    server = start_dashboard(
        state,
        "127.0.0.1",
        0,
        TOKEN,
        viewer_token=VIEWER_TOKEN,
        users=write_users(tmp_path / "users.yaml"),
        audit_log=tmp_path / "audit.jsonl",
        **options,
    )
    return Dashboard(server, state)

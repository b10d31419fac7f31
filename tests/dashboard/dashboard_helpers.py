"""Helpers of the dashboard tests: tokens, the running dashboard, Debian's Chromium."""

from __future__ import annotations

import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.dashboard import DashboardServer, DashboardSink, DashboardState

TOKEN = "test-token-full-0123456789"
VIEWER_TOKEN = "viewer-token-0123456789"
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


class Dashboard:
    def __init__(self, server: DashboardServer, state: DashboardState) -> None:
        self.server = server
        self.state = state
        self.sink = DashboardSink(state)
        self.url = server.url

    def get(self, path: str, token: str | None = None, **headers: str) -> tuple[int, Any]:
        h = dict(headers)
        if token:
            h["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url.rstrip("/") + path, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body = r.read().decode()
                status = r.status
                ctype = r.headers.get("Content-Type", "")
        except urllib.error.HTTPError as e:
            body, status, ctype = e.read().decode(), e.code, e.headers.get("Content-Type", "")
        return status, json.loads(body) if ctype.startswith("application/json") else body

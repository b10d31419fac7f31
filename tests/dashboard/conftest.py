"""Fixtures of the dashboard tests: a running dashboard on a free port, the browser."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dashboard_helpers import Dashboard, chromium, start_test_dashboard  # noqa: E402


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """Both API keys, the test users (two teams), the audit log in ``tmp_path``."""
    d = start_test_dashboard(tmp_path)
    try:
        yield d
    finally:
        d.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless (Playwright), one per test module (each test opens its
    own contexts); a module using it skips itself first without Playwright."""
    with chromium() as b:
        yield b

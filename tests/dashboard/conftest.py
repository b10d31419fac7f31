"""Fixtures of the dashboard tests: a running dashboard on a free port."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from dashboard_helpers import TOKEN, VIEWER_TOKEN, Dashboard, write_users  # noqa: E402

from qa_pipeline.dashboard import DashboardState, start_dashboard  # noqa: E402


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[Dashboard]:
    """Both API keys, the test users (two teams), the audit log in ``tmp_path``."""
    state = DashboardState()
    server = start_dashboard(
        state,
        "127.0.0.1",
        0,
        TOKEN,
        viewer_token=VIEWER_TOKEN,
        users=write_users(tmp_path / "users.yaml"),
        audit_log=tmp_path / "audit.jsonl",
    )
    try:
        yield Dashboard(server, state)
    finally:
        state.close()
        server.stop()

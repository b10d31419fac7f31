"""Stored calls for the dashboard's review queue tests: scored by the review tests' small
pack (tests/review/conftest.py) and stored as the pipeline stores them, each with its agent
and team (the test users' two teams: north = agent A1, east = agent B1)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from dashboard_helpers import Dashboard, start_test_dashboard

from qa_pipeline.dashboard.server import COOKIE
from qa_pipeline.messages import replace
from qa_pipeline.rules import RulePack
from qa_pipeline.store import open_store
from qa_pipeline.store.recordings import put_recording
from qa_pipeline.testing import transcript
from qa_pipeline.transcript import Transcript

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from review.conftest import call_a, store_call, write_pack  # noqa: E402

__all__ = [
    "call_a",
    "fill_store",
    "greetless",
    "put_wav",
    "session_of",
    "start_review_dashboard",
    "store_call",
    "tagged",
    "write_pack",
]


def tagged(t: Transcript, agent: str, team: str) -> Transcript:
    """``t`` as a call of ``agent`` in ``team``."""
    call = replace(t.call, agent_id=agent, metadata=(("team", team),))
    return dataclasses.replace(t, call=call)


def greetless(call_id: str) -> Transcript:
    """No 您好 (GREET, major, 10 points, fails): 90, not failed, nothing uncertain, so
    nothing puts it in the queue but an appeal."""
    return transcript(
        [("a", 0.5, 3.0, "请问有什么可以帮您"), ("c", 3.5, 5.0, "查一下话费")], call_id=call_id
    )


def fill_store(url: str, pack: RulePack) -> None:
    """CA1 (A1, north) and CB1 (B1, east): :func:`call_a` — BAN-POLICY uncertain (pending
    20), NO-PHONE failed (5), BAN-N failed twice (4): 91, in the queue as uncertain. CA2
    (A1, north): GREET failed, 90, not queued."""
    with open_store(url) as st:
        store_call(st, tagged(call_a("CA1"), "A1", "north"), pack)
        store_call(st, tagged(call_a("CB1"), "B1", "east"), pack)
        store_call(st, tagged(greetless("CA2"), "A1", "north"), pack)


def start_review_dashboard(
    tmp_path: Path, url: str, pack: RulePack, scan_s: float = 60.0
) -> Dashboard:
    """The dashboard with the test users on the store at ``url`` (the queue scanned at
    start and every ``scan_s`` seconds)."""
    return start_test_dashboard(tmp_path, store=url, review_pack=pack, review_scan_s=scan_s)


def session_of(d: Dashboard, name: str) -> str:
    """A ``Cookie`` header of a server-side session of ``name``, made as a login makes one
    but without its password check (argon2 takes a while each; logins are tested in
    test_auth.py): these tests are about what the session may do."""
    return f"{COOKIE}={d.server.app.sessions.create(name)}"


def put_wav(url: str, call_id: str, path: Path, *, redacted: bool = True) -> None:
    """A 20-second 8 kHz mono recording of ``call_id`` (a tone), kept in the store."""
    rate, seconds = 8000, 20.0
    t = np.arange(int(rate * seconds)) / rate
    sf.write(str(path), (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), rate)
    with open_store(url) as st:
        put_recording(
            st, call_id, path, sample_rate=rate, channels=1, duration_s=seconds, redacted=redacted
        )

"""Evidence audio in a real browser (headless Debian Chromium, Playwright): a finished call
whose redacted recording is kept (the files ``serve`` keeps in ``live.record.dir``) gets a
play control (an ``<audio>`` element) on each finding's evidence turn once the recording
is announced; the clip URL answers ``audio/wav`` with the page's session and Chromium reads
it (its length: the evidence turn and the padding). A viewer (no transcript text) gets no
control. Screenshot: ``tests/artifacts/dashboard-audio.png``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf
from dashboard_helpers import ARTIFACTS, browser_login, chromium, write_users
from generated_calls import call_events, generated_call

from qa_pipeline.dashboard import DashboardSink, DashboardState, start_dashboard
from qa_pipeline.dashboard.recordings import PAD_S, dir_recordings
from qa_pipeline.store.recordings import recording_path

playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")

CID = "call-audio-001"


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, DashboardState]]:
    rec = tmp_path / "rec"
    rec.mkdir()
    transcript, _ = generated_call("stonewalling", CID, agent_id="A1")
    n = int(transcript.duration * 8000)
    noise = np.random.default_rng(1).standard_normal((n, 2)) * 0.05
    sf.write(recording_path(rec, CID, "wav"), noise, 8000, subtype="PCM_16")
    state = DashboardState()
    server = start_dashboard(
        state,
        "127.0.0.1",
        0,
        users=write_users(tmp_path / "users.yaml", ("qa", "viewer")),
        audit_log=tmp_path / "audit.jsonl",
        recordings=dir_recordings(rec),
    )
    sink = DashboardSink(state)
    sink.call_started(transcript.call)
    for e in call_events("stonewalling", CID, agent_id="A1"):
        sink.emit(e)
    try:
        yield server.url, state
    finally:
        state.close()
        server.stop()


def _login(browser: Any, url: str, name: str) -> Any:
    page = browser.new_page(viewport={"width": 1440, "height": 1000}, locale="zh-CN")
    browser_login(page, url, name)
    page.wait_for_selector("#conn.on", timeout=5000)
    page.click(f'tr.call[data-call-id="{CID}"]')
    page.wait_for_selector(".utt.hit", timeout=5000)
    return page


def test_evidence_plays_in_the_browser(served: tuple[str, DashboardState]) -> None:
    url, state = served
    with chromium() as browser:
        page = _login(browser, url, "qa")
        assert page.query_selector(".play") is None  # no recording announced yet
        state.recording_kept(CID)  # serve, once the redacted file is kept
        page.wait_for_selector(".play audio", timeout=5000)
        # the banned phrase said in utterance 2 (10.94-16.44 s): its turn plays
        src = page.get_attribute('.utt[data-utt-index="2"] .play audio', "src")
        assert src == f"/api/calls/{CID}/audio?start=10.94&end=16.44", src
        r = page.request.get(url.rstrip("/") + src)
        assert r.status == 200 and r.headers["content-type"] == "audio/wav"
        seconds = page.evaluate(
            """(src) => new Promise((ok, no) => { const a = new Audio(src);
            a.onloadedmetadata = () => ok(a.duration); a.onerror = () => no(a.error.code); })""",
            src,
        )
        assert seconds == pytest.approx(16.44 - 10.94 + 2 * PAD_S, abs=0.01)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "dashboard-audio.png"), full_page=True)
        viewer = _login(browser, url, "viewer")
        assert viewer.query_selector(".play") is None

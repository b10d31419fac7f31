"""End to end: a generated call (espeak-ng sample "stonewalling") played into the real live
service (replay source, real Whisper model, real rule engine), the DashboardSink in its
FanOut, the page in headless Chromium. Marked ``slow`` (runs the model)."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import ARTIFACTS, browser_login, chromium, write_users

from qa_pipeline.dashboard import DashboardSink, DashboardState, start_dashboard
from qa_pipeline.sinks.base import Event, EventKind

pytestmark = pytest.mark.slow
playwright_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright==1.65.2")


class TimedSink(DashboardSink):
    def __init__(self, state: DashboardState) -> None:
        super().__init__(state)
        self.emitted: list[tuple[float, Event]] = []

    def emit(self, event: Event) -> None:
        self.emitted.append((time.monotonic(), event))
        super().emit(event)


def test_live_service_to_browser(engine: Any, tmp_path: Path) -> None:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.samples.generate import generate_call
    from qa_pipeline.sinks import FanOut

    wav = generate_call("stonewalling", tmp_path)
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "replay", "files": [str(wav)], "speed": 2.0}],
            "live": {"window": "fitted", "beam_size": 1},
            "shutdown_timeout_s": 30,
        },
    )
    state = DashboardState()
    sink = TimedSink(state)
    svc = LiveService(
        cfg,
        engine=engine,
        sinks=FanOut([("dashboard", sink)]),
        metrics=LiveMetrics(CollectorRegistry()),
    )
    server = start_dashboard(
        state,
        "127.0.0.1",
        0,
        users=write_users(tmp_path / "users.yaml", ("qa",)),
        audit_log=tmp_path / "audit.jsonl",
    )
    errors: list[BaseException] = []

    async def run() -> None:
        await svc.start()
        src = svc.sources[0]
        await asyncio.wait_for(src.done.wait(), 120)  # type: ignore[attr-defined]
        deadline = time.monotonic() + 60
        while not any(e.kind is EventKind.SCORECARD for _, e in sink.emitted):
            if time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        await svc.shutdown()

    def service() -> None:
        try:
            asyncio.run(run())
        except BaseException as e:  # reported by the test thread
            errors.append(e)

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        try:
            browser_login(page, server.url, "qa")
            page.wait_for_selector("#conn.on", timeout=5000)
            t = threading.Thread(target=service, daemon=True)
            t.start()
            page.wait_for_selector('tr.call[data-call-id="stonewalling"]', timeout=60_000)
            page.wait_for_selector("#transcript .utt.agent", timeout=60_000)
            item = page.wait_for_selector(
                '#alerts .alert-item[data-call-id="stonewalling"][data-rule="BAN-POLICY"]',
                timeout=90_000,
            )
            seen = time.monotonic()
            assert item is not None
            alert_at = next(t for t, e in sink.emitted if e.kind is EventKind.ALERT)
            assert seen - alert_at < 1.0, seen - alert_at
            page.wait_for_selector("#transcript .utt.hit.critical .finding[data-rule=BAN-POLICY]")
            t.join(150)
            assert not errors, errors
            page.wait_for_function(
                """() => { const r = document.querySelector('tr.call[data-call-id="stonewalling"]');
                return r && r.innerText.includes('已结束'); }""",
                timeout=10_000,
            )
            page.wait_for_selector('#chart rect.bar[data-rule="BAN-POLICY"]')
            page.wait_for_selector("#agents tr[data-agent]")
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard-live.png"), full_page=True)
        finally:
            state.close()
            server.stop()

"""Flat memory of the live service (issue 14): everything kept per call ends with the call,
and what is kept across calls is bounded by its setting.

A real running service (WebSocket source on 127.0.0.1, media token), the real VAD on the
real clips, the default rule pack, and a stub decoder whose every utterance has a text of
its own (so the per-text caches fill as with real ASR output). 300 short calls. Measured
as structure sizes, live sessions and allocated blocks (not RSS: stable on a loaded machine);
``benchmarks/bench_memory.py`` measures RSS over thousands of calls."""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import time
import weakref
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.messages import CallInfo, Role, Scorecard
from qa_pipeline.notify.message import Notification
from qa_pipeline.sources.codec import ulaw_encode
from qa_pipeline.sources.twilio import TwilioSerializer
from qa_pipeline.testing import FakeDecoder

from .conftest import ANSWER_CLIP, BAN_CLIP, clip8k, two_channel

TOKEN = "memory-test-token"
FRAME = 1600  # 200 ms of 8 kHz audio per media message
WARM, MORE = 100, 200  # calls before the first count, then calls until the second
RECENT, TEXTS = 20, 20  # live.recent_scorecards, live.text_cache


class CountingSink:
    def __init__(self) -> None:
        self.scored: list[str] = []  # call ids in the order their scorecards came

    def emit(self, event: Any) -> None:
        if event.kind.value == "scorecard":
            self.scored.append(event.call_id)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class QuietNotifier:
    name = "quiet"

    def send(self, n: Notification) -> None:
        pass


@pytest.fixture()
def short_call(speech_dir: Path) -> list[str]:
    """The media messages of a 3.8 s call: the agent speaks (1.5 s), the customer answers."""
    a = clip8k(speech_dir, BAN_CLIP)[:12000]
    b = clip8k(speech_dir, ANSWER_CLIP)[:12000]
    audio = two_channel([(0, 0.2, a), (1, 2.1, b)], 3.8)
    ser = TwilioSerializer("MZm", "CAm")
    agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
    msgs = []
    for i in range(0, audio.shape[1] - FRAME + 1, FRAME):
        msgs.append(ser.media("outbound", i // 8, agent[i : i + FRAME]))
        msgs.append(ser.media("inbound", i // 8, customer[i : i + FRAME]))
    return msgs


def test_per_call_state_ends_with_the_call_and_caches_stay_bounded(
    monkeypatch: pytest.MonkeyPatch, short_call: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    # pytest keeps every log record a test emits: at INFO (a service's default) that is a
    # few records a call, which is not the service's memory
    caplog.set_level(logging.WARNING)
    from prometheus_client import CollectorRegistry
    from websockets.asyncio.client import connect

    import qa_pipeline.live.service as service
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.notify import NotifierSink
    from qa_pipeline.notify.config import NotifyConfig
    from qa_pipeline.sinks import FanOut

    alive: weakref.WeakSet[Any] = weakref.WeakSet()

    class TrackedSession(service.CallSession):
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            alive.add(self)

    # no model: each utterance gets a sentence with a number of its own, at once
    decoder = FakeDecoder(
        lambda s, k: f"您好，工号{k}为您服务" if s.role is Role.AGENT else f"这笔交易的单号是{k}",
    )
    monkeypatch.setattr(service, "LiveDecoder", decoder)
    monkeypatch.setattr(service, "CallSession", TrackedSession)
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "token", "token": TOKEN}],
            "live": {
                "warmup": False,
                "max_speed": 0.0,
                "max_batch": 16,
                "recent_scorecards": RECENT,
                "text_cache": TEXTS,
            },
        },
    )
    counter = CountingSink()
    notify = NotifierSink(
        NotifyConfig.model_validate({"triggers": {"score_below": 100}}),
        notifiers=[QuietNotifier()],
    )
    engine: Any = type("E", (), {"config": type("C", (), {"workers": 1, "beam_size": 1})})()
    svc = service.LiveService(
        cfg,
        engine=engine,
        sinks=FanOut([("count", counter), ("notify", notify)]),
        metrics=LiveMetrics(CollectorRegistry()),
    )

    async def one(url: str, i: int) -> None:
        ser = TwilioSerializer(f"MZ{i}", f"CA{i}")
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with connect(url, additional_headers=headers, compression=None) as ws:
            await ws.send(ser.connected())
            await ws.send(ser.start({"call_id": f"mem-{i}", "agent_id": f"agent-{i}"}))
            for m in short_call:
                await ws.send(m)
            await ws.send(ser.stop())
            await asyncio.wait_for(ws.wait_closed(), 30)

    async def calls(url: str, first: int, n: int) -> None:
        it = iter(range(first, first + n))

        async def lane() -> None:
            for i in it:
                await one(url, i)

        await asyncio.gather(*(lane() for _ in range(6)))
        deadline = time.monotonic() + 30
        while (svc.sessions or svc.scored < first + n) and time.monotonic() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    def blocks() -> tuple[int, int]:
        """Allocated blocks (every object: scorecards are not tracked by gc), and the
        fuzzy-window memo's entries (bounded per phrase, still filling: new texts)."""
        gc.collect()
        return sys.getallocatedblocks(), svc.pack.index.cache_sizes()["fuzzy_windows"]

    async def main() -> list[tuple[int, int]]:
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"  # type: ignore[attr-defined]
        try:
            await calls(url, 0, WARM)
            marks = [blocks()]
            for k in range(2):  # two windows: a leak grows in both, another thread's
                await calls(url, WARM + k * MORE // 2, MORE // 2)  # passing use in one
                marks.append(blocks())
            return marks
        finally:
            await svc.shutdown()

    t0 = time.monotonic()
    marks = asyncio.run(asyncio.wait_for(main(), 240))
    assert time.monotonic() - t0 < 240
    n = WARM + MORE

    # every call was scored, each utterance had a new text: the caches had to fill
    assert svc.scored == n and len(counter.scored) == n
    assert decoder.count >= n  # at least one utterance a call
    # per call: nothing left of a finished call
    assert svc.sessions == {}
    gc.collect()
    assert len(alive) == 0, f"{len(alive)} sessions of finished calls still alive"
    assert not svc._finishing
    assert svc.worker is not None and svc.worker.depth == 0 and not svc.worker._queues
    assert svc.metrics._active == set()
    assert notify._agents == {}
    # no call id in any metric label (label sets would grow with every call)
    for metric in svc.metrics.registry.collect():
        for sample in metric.samples:
            assert not any("mem-" in v for v in sample.labels.values()), sample
    # across calls: the last RECENT scorecards, the newest last; the text cache bounded
    assert list(svc.scorecards) == counter.scored[-RECENT:]
    assert svc.pack.index.cache_sizes()["texts"] <= TEXTS
    # allocations do not grow with calls once the caches are warm: every scorecard kept
    # was measured at ~75 blocks a call; allow 10 a call, and 3 per new fuzzy memo entry
    # (blocks are counted process-wide: the quieter of the two windows is judged)
    over = [(b[0] - a[0]) - 3 * (b[1] - a[1]) for a, b in zip(marks, marks[1:], strict=False)]
    assert min(over) <= 10 * (MORE // 2), f"blocks beyond the memo's per {MORE // 2} calls: {over}"


def test_notifier_forgets_a_calls_agent_with_its_scorecard() -> None:
    from qa_pipeline.notify import NotifierSink
    from qa_pipeline.notify.config import NotifyConfig
    from qa_pipeline.sinks.base import EventFactory

    sink = NotifierSink(NotifyConfig(), notifiers=[QuietNotifier()])
    call = CallInfo("c1", agent_id="a1")
    sink.call_started(call)
    assert sink._agents == {"c1": "a1"}
    card = Scorecard(call_id="c1", score=90.0, grade="A", failed=False, verdicts=())
    sink.emit(EventFactory.for_call(call).scorecard(card))
    assert sink._agents == {}
    sink.close()

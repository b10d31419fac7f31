"""Fair, bounded ASR on a real running service (WebSocket on 127.0.0.1, real VAD on the
real clips, a stub decoder with a fixed cost per utterance so that capacity is short):
a flooding client beside a normal call, timestamps that jump, admission, shutdown."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from qa_pipeline.messages import Role, SpeechSegment
from qa_pipeline.sources.codec import ulaw_encode
from qa_pipeline.sources.twilio import TwilioSerializer
from qa_pipeline.testing import FakeDecoder, Recorder, wait_for

from .conftest import BAN_CLIP, clip8k, two_channel

FRAME = 160  # 20 ms at 8 kHz
TEXT = {Role.AGENT: "甚至出现交易几乎停滞的情况", Role.CUSTOMER: "换一首歌"}


@pytest.fixture()
def stub_decoder(monkeypatch: pytest.MonkeyPatch) -> FakeDecoder:
    """Stands in for the live decoder: 0.25 s of a slot per utterance, and the text the
    clip says on its channel (the test is about which utterances reach the rules).
    Capacity is short for the calls its ``gated`` picks (none at first): their decodes
    also wait for its ``gate`` (at most 10 s), so their queue fills however fast this
    machine is."""
    import qa_pipeline.live.service as service

    fake = FakeDecoder(
        lambda s, _: TEXT[s.role],
        cost_s=0.25,
        gate=threading.Event(),
        gated=lambda s: False,
        gate_s=10.0,
    )
    monkeypatch.setattr(service, "LiveDecoder", fake)
    return fake


FLOOD_S = 180.0  # seconds of audio the flooding client has to send
TOKEN = "fairness-test-token"  # the media token the test clients present


def make_service(pack_path: Path, sink: Recorder, **live: Any) -> Any:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.sinks import FanOut

    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "token", "token": TOKEN}],
            "live": {
                "warmup": False,
                "max_batch": 1,
                "queue_max": 6,
                "per_call_queue_max": 3,
                "max_speed": 8.0,  # the normal call is sent at 4x
                "burst_s": 12.0,
                **live,
            },
            "rules": {"pack": str(pack_path)},
            "shutdown_timeout_s": 20,
        },
    )
    engine = SimpleNamespace(config=SimpleNamespace(workers=1, beam_size=1))
    return LiveService(
        cfg,
        engine=engine,  # type: ignore[arg-type]
        sinks=FanOut([("memory", sink)]),
        metrics=LiveMetrics(CollectorRegistry()),
    )


async def send_call(
    url: str,
    call_id: str,
    audio: np.ndarray,
    *,
    speed: float | None,
    stop: bool = True,
    step_s: float = 0.02,
) -> tuple[int | None, str]:
    """Stream a 2-channel 8 kHz call as Twilio media at ``speed`` x real time (None: as
    fast as the socket takes it), timestamps ``step_s`` apart per 20 ms frame. Returns the
    close code and reason the service sent (None if it did not close the call)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    ser = TwilioSerializer(f"MZ{call_id}", f"CA{call_id}")
    ws = await connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        await ws.send(ser.connected())
        await ws.send(ser.start({"call_id": call_id, "agent_id": "7"}))
        agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
        t0 = time.monotonic()
        for k, i in enumerate(range(0, audio.shape[1] - FRAME + 1, FRAME)):
            ts = int(k * step_s * 1000)
            await ws.send(ser.media("outbound", ts, agent[i : i + FRAME]))
            await ws.send(ser.media("inbound", ts, customer[i : i + FRAME]))
            if speed is not None:
                delay = t0 + (k + 1) * 0.02 / speed - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
            elif k % 25 == 0:
                await asyncio.sleep(0)
        if stop:
            await ws.send(ser.stop())
        await asyncio.wait_for(ws.wait_closed(), 20)
    except ConnectionClosed:
        pass
    if ws.close_code is None:
        return None, ""
    return ws.close_code, ws.close_reason or ""


def card_of(sink: Recorder, call_id: str) -> dict[str, Any]:
    ((_, ev),) = sink.of("scorecard", call_id)
    return dict(ev.payload)


@pytest.fixture()
def flood_call(speech_dir: Path) -> np.ndarray:
    """180 s of the agent saying the clip again and again (0.6 s apart), a quiet customer:
    long enough that a loaded machine still sends it faster than the pacing allows (8x
    wall time + 30 s burst: under 19 s of wall time)."""
    clip = clip8k(speech_dir, BAN_CLIP)
    step = len(clip) / 8000 + 0.6
    n = int(FLOOD_S / step)
    return two_channel([(0, 0.2 + i * step, clip) for i in range(n)], FLOOD_S)


def test_a_flood_beside_a_normal_call_leaves_its_scorecard_unchanged(
    stub_decoder: FakeDecoder, pack_path: Path, ban_call: np.ndarray, flood_call: np.ndarray
) -> None:
    # a share of 2 waiting utterances a call; the flooder gets 30 s of audio in before
    # its pacing cuts it off: 6 or more utterances, one decoding at a time
    LIVE = {"per_call_queue_max": 2, "burst_s": 30.0}

    async def alone() -> dict[str, Any]:
        sink = Recorder()
        svc = make_service(pack_path, sink, **LIVE)
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"
        await send_call(url, "normal", ban_call, speed=4.0)
        await wait_for(lambda: sink.of("scorecard", "normal"))
        await svc.shutdown()
        return card_of(sink, "normal")

    async def beside_a_flood() -> tuple[dict[str, Any], dict[str, Any], Any, Any, float]:
        sink = Recorder()
        svc = make_service(pack_path, sink, **LIVE)
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"
        stub_decoder.gated = lambda s: s.call_id == "flood"
        t_flood = time.monotonic()
        flood = asyncio.create_task(send_call(url, "flood", flood_call, speed=None))
        await asyncio.sleep(0.3)  # the flood is under way when the normal call starts
        await send_call(url, "normal", ban_call, speed=4.0)
        closed = await flood
        t_flood = time.monotonic() - t_flood
        assert stub_decoder.gate is not None
        stub_decoder.gate.set()
        await wait_for(lambda: len(sink.of("scorecard")) == 2)
        await svc.shutdown()
        return card_of(sink, "normal"), card_of(sink, "flood"), closed, svc, t_flood

    t0 = time.monotonic()
    ref = asyncio.run(asyncio.wait_for(alone(), 60))
    normal, flood, closed, svc, flood_wall = asyncio.run(asyncio.wait_for(beside_a_flood(), 90))
    assert time.monotonic() - t0 < 120

    # the normal call: everything heard, and scored exactly as alone
    assert ref["complete"] is True and ref["failed"] is True  # it says the banned word
    assert dict(ref["extras"])["utterances"] >= 2
    assert normal == ref

    # the flooder: cut off with its reason, its own utterances shed and counted
    assert closed == (1008, "faster_than_real_time")
    assert flood["complete"] is False
    assert "faster_than_real_time" in flood["incomplete_reasons"]
    assert "asr_call_share" in flood["incomplete_reasons"]
    fx = dict(flood["extras"])
    shed = fx["asr_dropped_call_share"]
    assert shed >= 1 and fx["asr_dropped"] == shed
    # the audio the flooder got in is bounded by the pacing (8x its wall time + 30 s burst)
    assert fx["audio_seconds"] < min(FLOOD_S, 8 * flood_wall + 30.0)
    g = svc.metrics.registry.get_sample_value
    assert g("qa_dropped_total", {"stage": "asr", "reason": "call_share"}) == shed
    assert g("qa_dropped_total", {"stage": "asr", "reason": "queue_full"}) is None
    assert (
        g(
            "qa_live_call_errors_total",
            {"source": "websocket", "reason": "faster_than_real_time"},
        )
        == 1
    )
    assert g("qa_live_incomplete_scorecards_total", {"reason": "faster_than_real_time"}) == 1
    assert g("qa_live_incomplete_scorecards_total", {"reason": "asr_call_share"}) == 1


def test_timestamps_that_jump_ahead_are_refused(
    stub_decoder: FakeDecoder, pack_path: Path, ban_call: np.ndarray
) -> None:
    """Frames stamped 30 s apart (a 16.7 h call once): the call is cut off at the first
    frame past the burst allowance; the silence is never filled."""
    sink = Recorder()

    async def main() -> Any:
        svc = make_service(pack_path, sink, max_speed=1.0, burst_s=5.0)
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"
        closed = await send_call(url, "jumpy", ban_call[:, : 400 * FRAME], speed=None, step_s=30)
        await wait_for(lambda: sink.of("scorecard", "jumpy"))
        await svc.shutdown()
        return closed

    closed = asyncio.run(asyncio.wait_for(main(), 60))
    assert closed == (1008, "faster_than_real_time")
    card = card_of(sink, "jumpy")
    assert card["complete"] is False and card["incomplete_reasons"] == ["faster_than_real_time"]
    assert dict(card["extras"])["audio_seconds"] <= 5.0


def test_admission_limit_and_shutdown_mark_what_they_cut(
    stub_decoder: FakeDecoder, pack_path: Path, ban_call: np.ndarray
) -> None:
    sink = Recorder()

    async def main() -> Any:
        svc = make_service(pack_path, sink, max_calls=1)
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"
        first = asyncio.create_task(send_call(url, "open", ban_call, speed=1.0, stop=False))
        await wait_for(lambda: "open" in svc.sessions)
        refused = await send_call(url, "second", ban_call[:, :FRAME], speed=None)
        await asyncio.sleep(1.0)
        await svc.shutdown()  # the first call is still talking
        await first
        return refused, svc

    refused, svc = asyncio.run(asyncio.wait_for(main(), 60))
    assert refused == (1008, "call refused")
    g = svc.metrics.registry.get_sample_value
    assert g("qa_live_call_errors_total", {"source": "websocket", "reason": "at_capacity"}) == 1
    assert not sink.of("scorecard", "second")
    card = card_of(sink, "open")
    assert card["complete"] is False and "shutdown" in card["incomplete_reasons"]


def make_session(**kw: Any) -> Any:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.config import VadConfig
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.session import CallSession
    from qa_pipeline.messages import CallInfo
    from qa_pipeline.rules import load_pack

    return CallSession(
        CallInfo("c"),
        8000,
        vad=VadConfig(),
        pack=load_pack(None),
        emit=lambda e: None,
        metrics=LiveMetrics(CollectorRegistry()),
        source="test",
        **kw,
    )


def chunk(start: float, seconds: float = 0.02) -> Any:
    from qa_pipeline.messages import AudioChunk

    return AudioChunk("c", 0, Role.AGENT, start, 8000, np.zeros(int(seconds * 8000), np.float32))


def test_pacing_allows_a_burst_then_cuts_and_caps_the_duration() -> None:
    s = make_session(max_speed=1.0, burst_s=5.0, max_audio_s=60.0)
    t0 = s.started
    assert s.overrun(chunk(0.0, 4.0), now=t0) is None  # a burst of 4 s at once
    s.push(chunk(0.0, 4.0))
    over = s.overrun(chunk(4.0, 2.0), now=t0 + 0.5)  # 6 s of media after 0.5 s
    assert over is not None and over[0] == "faster_than_real_time"
    assert s.overrun(chunk(4.0, 2.0), now=t0 + 1.5) is None  # real time caught up
    # a timestamp 30 s ahead would be filled with silence: refused before it is
    assert s.overrun(chunk(34.0), now=t0 + 2.0) is not None
    assert s.clock == 4.0
    unpaced = make_session(max_audio_s=60.0)
    assert unpaced.overrun(chunk(50.0), now=unpaced.started) is None
    unpaced.push(chunk(50.0, 8.0))  # a 30 s+ jump is not filled (clamped): clock 8 s
    assert unpaced.overrun(chunk(8.0, 53.0)) == (
        "duration_cap",
        "audio reached 61.0 s (cap 60 s)",
    )


def test_scorecard_says_what_it_is_missing() -> None:
    from qa_pipeline.sources.base import EndReason

    s = make_session()
    card = s.end(EndReason.STOP)
    assert card.complete is True and card.incomplete_reasons == ()
    assert make_session().end(EndReason.DISCONNECT).complete is True

    s = make_session()
    seg = SpeechSegment("c", 0, Role.AGENT, 0.0, 1.0, np.zeros(16000, np.float32))
    jobs = s._jobs([seg, seg, seg])  # no ASR given: the test answers for it
    s.asr_done(jobs[0], None, "call_share")
    s.asr_done(jobs[1], None, "call_share")
    s.asr_done(jobs[2], None, "decode_RuntimeError")
    card = s.end(EndReason.SHUTDOWN)
    assert card.complete is False
    assert card.incomplete_reasons == ("asr_call_share", "asr_decode_RuntimeError", "shutdown")
    ex = dict(card.extras)
    assert ex["asr_dropped"] == 3 and ex["asr_dropped_call_share"] == 2

    s = make_session()
    s.cut = "faster_than_real_time"
    card = s.end(EndReason.ERROR)  # the cut names why; "error" is not added
    assert card.incomplete_reasons == ("faster_than_real_time",)

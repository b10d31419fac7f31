"""The live service end to end on the real model: real WebSocket and AudioSocket servers,
real clients, calls made of the real Mandarin clips (streamed faster than real time)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.sources.audiosocket import audio_frame, hangup_frame, uuid_frame
from qa_pipeline.sources.codec import slin16_encode, ulaw_encode
from qa_pipeline.sources.twilio import SIGNATURE_HEADER, TwilioSerializer, twilio_signature
from qa_pipeline.testing import Recorder, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
FRAME = 160  # 20 ms at 8 kHz
SPEED = 4.0  # x real time
AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # the (made-up) Twilio account's auth token


def signed(url: str) -> dict[str, str]:
    """The header Twilio sends: its signature of the wss:// URL it was given (TLS in front)."""
    return {SIGNATURE_HEADER: twilio_signature(AUTH_TOKEN, url.replace("ws://", "wss://", 1))}


def make_service(engine: Any, pack_path: Path, sink: Recorder, **live: Any) -> Any:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.sinks import FanOut

    cfg = load_serve_config(
        None,
        {
            "sources": [
                {
                    "type": "websocket",
                    "port": 0,
                    "auth": "twilio",
                    "twilio_auth_token": AUTH_TOKEN,
                },
                {"type": "audiosocket", "port": 0, "leg_wait_s": 0.5, "idle_timeout_s": 5},
            ],
            # the calls are sent at SPEED x real time: allow it
            "live": {"window": "fitted", "beam_size": 1, "max_speed": 2 * SPEED, **live},
            "rules": {"pack": str(pack_path)},
            "shutdown_timeout_s": 30,
        },
    )
    return LiveService(
        cfg,
        engine=engine,
        sinks=FanOut([("memory", sink)]),
        metrics=LiveMetrics(CollectorRegistry()),
    )


async def stream_twilio(
    url: str,
    call_id: str,
    audio: np.ndarray,
    *,
    until_s: float | None = None,
    stop: bool = True,
    before_stop: Any = None,
) -> Any:
    from websockets.asyncio.client import connect

    ser = TwilioSerializer(f"MZ{call_id}", f"CA{call_id}")
    ws = await connect(url, additional_headers=signed(url))
    await ws.send(ser.connected())
    await ws.send(ser.start({"call_id": call_id, "agent_id": "7"}))
    agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
    n = audio.shape[1] if until_s is None else int(until_s * 8000)
    t0 = time.monotonic()
    for k, i in enumerate(range(0, n - FRAME + 1, FRAME)):
        ts = i // 8
        await ws.send(ser.media("outbound", ts, agent[i : i + FRAME]))
        await ws.send(ser.media("inbound", ts, customer[i : i + FRAME]))
        delay = t0 + (k + 1) * 0.02 / SPEED - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
    if before_stop is not None:
        await before_stop()
    if stop:
        await ws.send(ser.stop())
        await ws.wait_closed()
    return ws


def test_findings_arrive_before_the_call_ends(
    engine: Any, pack_path: Path, ban_call: np.ndarray
) -> None:
    sink = Recorder()
    marks: dict[str, float] = {}

    async def main() -> Any:
        svc = make_service(engine, pack_path, sink)
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"

        async def hold_until_alert() -> None:
            # the call is still open: the banned word (said at 0.3-4.5 s) must alert now
            await wait_for(lambda: sink.of("alert", "live-1"), 30)
            marks["stop"] = time.monotonic()

        await stream_twilio(url, "live-1", ban_call, before_stop=hold_until_alert)
        await wait_for(lambda: sink.of("scorecard", "live-1"), 60)
        await svc.shutdown()
        return svc

    svc = asyncio.run(main())
    ((t_alert, alert),) = sink.of("alert", "live-1")
    ((t_find, finding),) = sink.of("finding", "live-1")
    assert finding.payload["rule_id"] == "LIVE-BAN" and finding.payload["severity"] == "critical"
    assert t_find <= t_alert < marks["stop"]
    ((t_card, card),) = sink.of("scorecard", "live-1")
    assert t_card > marks["stop"]
    assert card.payload["failed"] is True
    assert dict(card.payload["extras"])["live_errors"] == 0
    utts = [e.payload for _, e in sink.of("utterance", "live-1")]
    assert [u["role"] for u in utts][:1] == ["agent"]
    assert "交易" in utts[0]["text"]
    assert any(u["role"] == "customer" for u in utts), utts
    seqs = [e.seq for _, e in sink.events if e.call_id == "live-1"]
    assert seqs == list(range(len(seqs)))
    m = svc.metrics
    assert m.registry.get_sample_value("qa_finding_latency_seconds_count") == 1.0
    assert m.registry.get_sample_value("qa_live_calls_ended_total", {"reason": "stop"}) == 1.0


def test_killed_connection_still_scored_and_bad_calls_isolated(
    engine: Any, pack_path: Path, ban_call: np.ndarray
) -> None:
    sink = Recorder()

    async def killed(url: str) -> None:
        ws = await stream_twilio(url, "killed", ban_call, until_s=5.5, stop=False)
        ws.transport.abort()  # no stop, no close frame: the line just drops

    async def malformed(url: str) -> None:
        from websockets.asyncio.client import connect

        ser = TwilioSerializer("MZbad", "CAbad")
        async with connect(url, additional_headers=signed(url)) as ws:
            await ws.send(ser.start({"call_id": "garbage"}))
            await ws.send(ser.media("inbound", 0, b"\xff" * FRAME))
            await ws.send("{this is not json")
            await ws.wait_closed()
            assert ws.close_code == 1008

    async def wrong_codec(url: str) -> None:
        from websockets.asyncio.client import connect

        ser = TwilioSerializer("MZalaw", "CAalaw")
        async with connect(url, additional_headers=signed(url)) as ws:
            await ws.send(ser.start({"call_id": "alaw"}, encoding="audio/x-alaw"))
            await ws.wait_closed()
            assert ws.close_code == 1003

    async def main() -> Any:
        svc = make_service(engine, pack_path, sink)
        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"
        await asyncio.gather(
            stream_twilio(url, "good", ban_call),
            killed(url),
            malformed(url),
            wrong_codec(url),
        )
        await wait_for(lambda: len(sink.of("scorecard")) == 4, 60)
        await svc.shutdown()
        return svc

    svc = asyncio.run(main())
    cards = {e.call_id: e.payload for _, e in sink.of("scorecard")}
    assert set(cards) == {"good", "killed", "garbage", "alaw"}
    extras = {k: dict(v["extras"]) for k, v in cards.items()}
    # the good call is untouched by its neighbours
    assert extras["good"]["live_errors"] == 0 and cards["good"]["failed"] is True
    assert [e.payload["rule_id"] for _, e in sink.of("alert", "good")] == ["LIVE-BAN"]
    # the killed call is scored with what arrived (the banned word was in it)
    assert extras["killed"]["live_errors"] == 1 and cards["killed"]["failed"] is True
    assert extras["garbage"]["live_errors"] == 1 and extras["alaw"]["live_errors"] == 1
    g = svc.metrics.registry.get_sample_value
    lbl = {"source": "websocket"}
    assert g("qa_live_call_errors_total", {**lbl, "reason": "disconnect"}) == 1
    assert g("qa_live_call_errors_total", {**lbl, "reason": "malformed_json"}) == 1
    assert g("qa_live_call_errors_total", {**lbl, "reason": "bad_codec"}) == 1


def test_audiosocket_two_legs_over_tcp(engine: Any, pack_path: Path, ban_call: np.ndarray) -> None:
    sink = Recorder()
    call = uuid.uuid4()

    async def leg(port: int, samples: np.ndarray, hang_up: bool) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(uuid_frame(call))
        pcm = slin16_encode(samples)
        for i in range(0, len(pcm), 2 * FRAME):
            writer.write(audio_frame(pcm[i : i + 2 * FRAME]))
            await writer.drain()
            await asyncio.sleep(0.02 / SPEED)
        if hang_up:
            writer.write(hangup_frame())
            await writer.drain()
        writer.close()
        await writer.wait_closed()

    async def main() -> None:
        svc = make_service(engine, pack_path, sink)
        await svc.start()
        port = svc.sources[1].bound_port
        first = asyncio.create_task(leg(port, ban_call[0], True))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, leg(port, ban_call[1], False))  # second leg just drops
        await wait_for(lambda: sink.of("scorecard"), 60)
        await svc.shutdown()

    asyncio.run(main())
    cid = str(call)
    utts = [e.payload for _, e in sink.of("utterance", cid)]
    assert {u["channel"] for u in utts} == {0, 1}  # both legs, one call
    assert [e.payload["rule_id"] for _, e in sink.of("alert", cid)] == ["LIVE-BAN"]
    ((_, card),) = sink.of("scorecard", cid)
    assert dict(card.payload["extras"])["live_errors"] == 1  # the leg that dropped


def test_serve_drains_on_sigterm(tmp_path: Path, pack_path: Path, ban_call: np.ndarray) -> None:
    cfg = tmp_path / "serve.yaml"
    events = tmp_path / "events"
    cfg.write_text(
        json.dumps(
            {
                "sources": [{"type": "websocket", "port": 0, "auth": "twilio"}],
                "live": {"window": "fitted", "beam_size": 1, "max_speed": 2 * SPEED},
                "rules": {"pack": str(pack_path)},
                "sinks": {"jsonl": {"directory": str(events)}},
                "metrics": {"enabled": False},
                "shutdown_timeout_s": 60,
            }
        ),
        encoding="utf-8",
    )
    code = (
        "import typer\nfrom qa_pipeline.live.cli import serve_command\ntyper.run(serve_command)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, "--config", str(cfg)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1", "TWILIO_AUTH_TOKEN": AUTH_TOKEN},
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + (proc.stderr.read() if proc.stderr else "")
        port = int(line.split("websocket=")[1].split()[0])

        async def client() -> None:
            # speech, then SIGTERM while the call is still connected
            ws = await stream_twilio(
                f"ws://127.0.0.1:{port}/media", "drain-1", ban_call, until_s=6.0, stop=False
            )
            proc.send_signal(signal.SIGTERM)
            await ws.wait_closed()

        asyncio.run(client())
        assert proc.wait(timeout=90) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    cards = [json.loads(x) for x in (events / "scorecard.jsonl").read_text().splitlines()]
    assert [c["call_id"] for c in cards] == ["drain-1"]
    assert cards[0]["payload"]["failed"] is True  # the banned word was drained and scored
    # but the call was cut by the shutdown: its scorecard says so
    assert cards[0]["payload"]["complete"] is False
    assert "shutdown" in cards[0]["payload"]["incomplete_reasons"]
    alerts = (events / "alert.jsonl").read_text().splitlines()
    assert len(alerts) == 1

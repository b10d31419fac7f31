"""A live call (Twilio Media Streams over a real WebSocket, a scripted decoder, the JSONL
sink): the caller's number the platform sends and the numbers the customer reads out reach
no event file, log record or metric; the utterance events carry the masks' spans and an
``entity`` rule still fires."""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from qa_pipeline.messages import CallInfo
from qa_pipeline.sinks import build_sinks
from qa_pipeline.testing import FakeDecoder

from .conftest import (
    MOBILE,
    SENTENCE,
    clip8k,
    files_under,
    leaks,
    metric_labels,
    two_channel,
)

PACK = """\
name: live-privacy
version: "1"
rules:
  - id: LIVE-MOBILE
    description: 客户报了手机号（测试规则）
    severity: critical
    weight: 5
    forbid: {role: customer, entity: mobile}
"""
CALLER = "+8613912345678"


class CallsSeen:
    """A sink that keeps the calls it is told have started."""

    def __init__(self) -> None:
        self.calls: list[CallInfo] = []

    def call_started(self, call: CallInfo) -> None:
        self.calls.append(call)

    def emit(self, event: Any) -> None:
        pass

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


def test_live_call_leaves_no_digits(
    speech_dir: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import qa_pipeline.live.service as service_mod
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.sources.codec import ulaw_encode
    from qa_pipeline.sources.twilio import TwilioSerializer

    said = SENTENCE["mobile"]
    monkeypatch.setattr(
        service_mod,
        "LiveDecoder",
        FakeDecoder(lambda s, _: "您好，请讲" if s.role.value == "agent" else said),
    )
    caplog.set_level(logging.DEBUG)
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK, encoding="utf-8")
    out = tmp_path / "out"
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "none"}],
            "live": {"warmup": False, "max_speed": 0},  # sent as fast as it goes
            "rules": {"pack": str(pack)},
            "metrics": {"enabled": False},
            "sinks": {"jsonl": {"directory": str(out), "layout": "single"}},
        },
    )
    metrics = LiveMetrics(CollectorRegistry())
    engine: Any = type("Engine", (), {"config": type("C", (), {"workers": 1})()})()
    sinks = build_sinks(cfg.sinks, metrics)
    started = CallsSeen()  # what a dashboard or notifier sink is told when a call starts
    sinks.sinks.append(("seen", started))
    svc: Any = service_mod.LiveService(cfg, engine=engine, metrics=metrics, sinks=sinks)
    audio = two_channel(
        [
            (0, 0.3, clip8k(speech_dir, "zh/aishell1_BAC009S0764W0121.wav")),
            (1, 5.0, clip8k(speech_dir, "zh/aishell2_IT0011W0001.wav")),
        ],
        9.0,
    )

    async def main() -> None:
        from websockets.asyncio.client import connect

        await svc.start()
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"
        ser = TwilioSerializer("MZ" + "1" * 32, "CA" + "2" * 32)
        agent, customer = ulaw_encode(audio[0]), ulaw_encode(audio[1])
        async with connect(url) as ws:
            await ws.send(ser.start({"call_id": "live-pii", "From": CALLER, "queue": "vip"}))
            for i in range(0, audio.shape[1] - 160 + 1, 160):
                await ws.send(ser.media("outbound", i // 8, agent[i : i + 160]))
                await ws.send(ser.media("inbound", i // 8, customer[i : i + 160]))
                if i % 8000 == 0:
                    await asyncio.sleep(0)
            await ws.send(ser.stop())
            await ws.wait_closed()
        for _ in range(400):
            if svc.scored:
                break
            await asyncio.sleep(0.05)
        await svc.shutdown(5)

    asyncio.run(asyncio.wait_for(main(), 60))
    assert svc.scored == 1
    texts = files_under(out)
    # the service's log (the test's own client logs what it sends, at debug level)
    texts += [
        (f"log {r.name}", r.getMessage())
        for r in caplog.records
        if r.name.startswith("qa_pipeline")
    ]
    texts.append(("metric labels", metric_labels(generate_latest(metrics.registry).decode())))
    assert not leaks(texts, [MOBILE, CALLER])

    events = [json.loads(ln) for _, t in files_under(out) for ln in t.splitlines()]
    utts = [e["payload"] for e in events if e["kind"] == "utterance"]
    cust = [u for u in utts if u["role"] == "customer"]
    assert cust and cust[0]["text"] == "我的手机号是[手机号]"
    assert cust[0]["entities"][0]["kind"] == "mobile"
    (alert,) = [e["payload"] for e in events if e["kind"] == "alert"]
    assert alert["rule_id"] == "LIVE-MOBILE" and alert["evidence"][0]["matched"] == "手机号"
    (call,) = started.calls
    assert dict(call.metadata) == {
        "From": "[手机号]", "call_sid": "CA" + "2" * 32, "queue": "vip",
        "stream_sid": "MZ" + "1" * 32,
    }  # fmt: skip

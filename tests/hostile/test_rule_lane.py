"""Rule evaluation cannot stall the event loop: a heavy pack (hundreds of fuzzy phrases)
evaluated on long utterances of three concurrent calls of a running service (WebSocket on
127.0.0.1, real VAD on the real clips, a stub decoder that writes 300 characters per
utterance), while a 10 ms periodic task on the service's loop measures its worst delay.
The loop serves health, new connections and SIGTERM: the rules run on their own thread."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from qa_pipeline.messages import SpeechSegment
from qa_pipeline.testing import FakeDecoder, Recorder

from .helpers import (
    CHARS,
    TOKEN,
    ban_call_audio,
    send_twilio_call,
    wait_for,
)

pytestmark = pytest.mark.hostile

N_RULES = 300  # x 5 fuzzy phrases of 4-10 characters, on every utterance
TEXT_CHARS = 300  # a long (~60 s) utterance's text


def heavy_pack(path: Path) -> Path:
    rng = random.Random(5)

    def phrase(n: int) -> str:
        return "".join(rng.choice(CHARS) for _ in range(n))

    lines = ["name: heavy", 'version: "1"', "rules:"]
    lines += [
        "  - {id: LIVE-BAN, description: 不说交易, severity: critical, weight: 20,",
        "     scope: {role: agent}, forbid: {keyword: [交易]}}",
    ]
    for i in range(N_RULES):
        phrases = ", ".join(phrase(rng.randint(4, 10)) for _ in range(5))
        lines.append(
            f"  - {{id: H{i:03d}, description: heavy {i}, severity: minor, weight: 1,"
            f" forbid: {{fuzzy: [{phrases}]}}}}"
        )
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def long_text(s: SpeechSegment, _: int) -> str:
    """The text of a long utterance: 300 characters, a new one per utterance (no cache),
    the banned word in the agent's first."""
    rng = random.Random(f"{s.call_id}/{s.channel}/{s.start:.2f}")
    return "交易" + "".join(rng.choice(CHARS) for _ in range(TEXT_CHARS - 2))


def test_heavy_rule_evaluation_leaves_the_event_loop_turning(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, speech_dir: Path
) -> None:
    from prometheus_client import CollectorRegistry

    import qa_pipeline.live.service as service
    import qa_pipeline.live.session as session
    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.sinks import FanOut

    feeds: list[tuple[float, str]] = []  # (seconds, thread name) of each utterance's rules

    real_evaluator = session.CallEvaluator

    class TimedEvaluator:
        """Times each utterance's rules (a wrapper: the compiled engine's classes cannot be
        subclassed by interpreted ones)."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._inner = real_evaluator(*args, **kwargs)

        def feed(self, utt: Any) -> Any:
            t = time.perf_counter()
            out = self._inner.feed(utt)
            feeds.append((time.perf_counter() - t, threading.current_thread().name))
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self._inner, name)

    monkeypatch.setattr(service, "LiveDecoder", FakeDecoder(long_text))
    monkeypatch.setattr(session, "CallEvaluator", TimedEvaluator)
    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "token", "token": TOKEN}],
            "live": {"warmup": False, "max_speed": 8.0, "burst_s": 12.0},
            "rules": {"pack": str(heavy_pack(tmp_path / "heavy.yaml"))},
            "shutdown_timeout_s": 60,
        },
    )
    audio = ban_call_audio(speech_dir)
    sink = Recorder()

    async def main() -> tuple[float, float, Any]:
        svc = service.LiveService(
            cfg,
            engine=SimpleNamespace(config=SimpleNamespace(workers=1, beam_size=1)),  # type: ignore[arg-type]
            sinks=FanOut([("memory", sink)]),
            metrics=LiveMetrics(CollectorRegistry()),
        )
        await svc.start()
        worst = 0.0
        done = asyncio.Event()

        async def probe() -> None:  # what a health check or a signal handler waits for
            nonlocal worst
            while not done.is_set():
                t = time.perf_counter()
                await asyncio.sleep(0.01)
                worst = max(worst, time.perf_counter() - t - 0.01)

        probing = asyncio.create_task(probe())
        url = f"ws://127.0.0.1:{svc.sources[0].bound_port}/media"  # type: ignore[attr-defined]
        await asyncio.gather(
            *(send_twilio_call(url, f"heavy-{i}", audio, speed=4.0) for i in range(3))
        )
        await wait_for(lambda: len(sink.of("scorecard")) == 3, 120)
        t = time.perf_counter()
        await svc.shutdown()
        drained = time.perf_counter() - t
        done.set()
        await probing
        return worst, drained, svc

    worst, drained, svc = asyncio.run(asyncio.wait_for(main(), 240))
    longest = max(s for s, _ in feeds)
    print(  # noqa: T201 - the figures the README quotes
        f"\n{len(feeds)} utterances evaluated, longest {longest * 1000:.0f} ms, "
        f"total {sum(s for s, _ in feeds) * 1000:.0f} ms; worst event-loop delay "
        f"{worst * 1000:.0f} ms; shutdown {drained * 1000:.0f} ms"
    )
    assert len(feeds) >= 6  # two utterances a call, each through the whole pack
    # evaluated off the loop, on the one rule thread (one at a time: each call in order)
    assert {name for _, name in feeds} == {"live-rules_0"}
    # measured on a quiet 2-core machine: 0.12-0.33 s (the rules of one utterance take
    # 1.3-1.9 s); 0.25 s was inside that spread and failed one run in three
    assert worst < 0.5, f"the event loop stalled {worst:.3f} s (longest rules {longest:.3f} s)"
    for i in range(3):
        card = sink.of("scorecard", f"heavy-{i}")[0][1].payload
        assert card["complete"] is True
        assert "LIVE-BAN" in {f["rule_id"] for f in card["findings"]}
    # per call, events in order: each utterance before its findings, the scorecard last
    for i in range(3):
        kinds = [e.kind.value for _, e in sink.events if e.call_id == f"heavy-{i}"]
        assert kinds[0] == "utterance" and kinds[-1] == "scorecard"
    assert svc.sessions == {}

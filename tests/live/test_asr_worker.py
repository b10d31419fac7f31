"""The shared ASR worker without a model: overflow policies, batching across lines,
failures, and the session's in-order release of results."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import numpy as np
import pytest

from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.live.asr_worker import AsrJob, AsrWorker
from qa_pipeline.live.decoder import DecodeOptions, cut_at_timestamp, fitted_window
from qa_pipeline.messages import Role, SpeechSegment
from qa_pipeline.testing import FakeDecoder


def fake(fail: bool = False) -> FakeDecoder:
    """Blocks until released (``gate``); records each batch; text = segment's call id."""
    return FakeDecoder(
        lambda s, _: s.call_id,
        gate=threading.Event(),
        fail=fail,
        record=True,
        confidence=1.0,
        tokens=1,
    )


def seg(call: str, start: float = 0.0) -> SpeechSegment:
    return SpeechSegment(call, 0, Role.AGENT, start, start + 1, np.zeros(16000, np.float32))


class Replies:
    """The reply target of the jobs below: (call id, drop reason) of each answer, in order."""

    def __init__(self) -> None:
        self.done: list[tuple[str, str | None]] = []

    def asr_done(self, job: AsrJob, result: AsrResult | None, drop: str | None) -> None:
        self.done.append((job.segment.call_id, drop))


REPLIES = Replies()


def run_worker(
    decoder: FakeDecoder, jobs: list[AsrJob], **kw: Any
) -> tuple[list[tuple[str, str | None]], AsrWorker]:
    done = REPLIES.done = []

    async def main() -> AsrWorker:
        w = AsrWorker(decoder, **kw)  # type: ignore[arg-type]
        for j in jobs:
            w.submit(j)
        w.start()
        assert decoder.gate is not None
        decoder.gate.set()
        await asyncio.wait_for(w.drain(), 5)
        await w.close()
        return w

    return done, asyncio.run(main())


def jobs(n: int) -> list[AsrJob]:
    return [AsrJob("", i, seg(f"c{i}"), REPLIES) for i in range(n)]


@pytest.mark.parametrize("overflow", ["drop_oldest", "reject_newest"])
def test_full_queue_sheds_new_load_not_a_neighbours(overflow: str) -> None:
    # five calls with one utterance each, room for three: no call has excess, so the
    # newcomers are shed (new load), never an utterance another call already queued
    done, w = run_worker(fake(), jobs(5), queue_max=3, overflow=overflow, slots=1)
    assert w.dropped["queue_full"] == 2
    assert {c for c, d in done if d == "queue_full"} == {"c3", "c4"}
    assert sorted(c for c, d in done if d is None) == ["c0", "c1", "c2"]


def call_jobs(call: str, n: int) -> list[AsrJob]:
    return [AsrJob("", i, seg(call, 2.0 * i), REPLIES) for i in range(n)]


def interleave(*lists: list[AsrJob]) -> list[AsrJob]:
    out: list[AsrJob] = []
    for i in range(max(len(x) for x in lists)):
        out += [x[i] for x in lists if i < len(x)]
    return out


@pytest.mark.parametrize("overflow", ["drop_oldest", "reject_newest"])
def test_a_flood_sheds_only_its_own_utterances(overflow: str) -> None:
    flood, normal = call_jobs("flood", 40), call_jobs("normal", 3)
    order = flood[:20] + interleave(flood[20:], normal)  # the flood started first
    done, w = run_worker(fake(), order, queue_max=8, per_call_max=5, overflow=overflow, slots=1)
    assert [d for c, d in done if c == "normal"] == [None, None, None]
    shed = [d for c, d in done if c == "flood" and d is not None]
    assert len(shed) == 35 and set(shed) == {"call_share"}
    assert w.dropped == {"call_share": 35}
    assert w.decoded == 8  # the normal call's 3 and the flood's own share, 5


def test_the_longest_queue_gives_way_when_the_whole_queue_is_full() -> None:
    # one call within its share but holding the whole queue; a second call's utterance
    # takes the place of the first call's oldest (drop_oldest) instead of being refused
    a, b = call_jobs("a", 6), call_jobs("b", 2)
    done, w = run_worker(fake(), a + b, queue_max=6, per_call_max=6, slots=1)
    assert [d for c, d in done if c == "b"] == [None, None]
    assert [d for c, d in done if c == "a"].count("queue_full") == 2
    assert w.dropped == {"queue_full": 2}


def test_batches_are_taken_round_robin_across_calls() -> None:
    dec = fake()
    order = call_jobs("a", 5) + call_jobs("b", 2)
    done, w = run_worker(dec, order, slots=1, max_batch=4)
    assert dec.batches == [["a", "b", "a", "b"], ["a", "a", "a"]]
    assert w.dropped == {} and w.decoded == 7


def test_batches_across_lines_off_the_loop() -> None:
    dec = fake()
    done, w = run_worker(dec, jobs(6), slots=1, max_batch=4)
    assert dec.batches == [["c0", "c1", "c2", "c3"], ["c4", "c5"]]
    assert all(t.startswith("live-asr") for t in dec.threads)
    assert len(done) == 6 and w.decoded == 6


def test_a_failed_decode_drops_only_its_batch() -> None:
    done, w = run_worker(fake(fail=True), jobs(2), slots=1, max_batch=8)
    assert done == [("c0", "decode_RuntimeError"), ("c1", "decode_RuntimeError")]


def test_fitted_window_and_timestamp_cut() -> None:
    o = DecodeOptions(min_window_s=10, pad_s=1)
    assert fitted_window(3.0, o) == 10
    assert fitted_window(12.2, o) == 14
    assert fitted_window(29.5, o) == 30
    tb = 1000
    toks = [tb + 0, 5, 6, tb + 100, tb + 100, 7, 8, tb + 160, tb + 160, 5, 6, tb + 250]
    assert cut_at_timestamp(toks, tb, 3.0) == [5, 6, 7, 8]  # the copy after 3.2 s is cut


def test_session_releases_in_order(tmp_path: Any) -> None:
    from prometheus_client import CollectorRegistry

    from qa_pipeline.config import VadConfig
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.session import CallSession
    from qa_pipeline.messages import CallInfo
    from qa_pipeline.rules import load_pack

    pack_file = tmp_path / "p.yaml"
    pack_file.write_text(
        'name: t\nversion: "1"\nrules:\n  - {id: T-ANY, description: x, severity: minor, '
        "weight: 1, forbid: {regex: '.'}, max_findings: 100}\n",
        encoding="utf-8",
    )
    events: list[Any] = []
    s = CallSession(
        CallInfo("c"),
        8000,
        vad=VadConfig(),
        pack=load_pack(str(pack_file)),
        emit=events.append,
        metrics=LiveMetrics(CollectorRegistry()),
        source="test",
    )
    js = s._jobs([seg("c", 0.0), seg("c", 2.0), seg("c", 4.0)])
    res = [AsrResult(j.segment, f"第{j.seq}句", "", 1.0, 0.0, "zh", 1, 0.0) for j in js]
    s.resolve(js[2], res[2], None)
    s.resolve(js[1], res[1], None)
    assert events == []  # waiting for the first
    s.resolve(js[0], None, "queue_full")  # the first was dropped: the others go out
    utts = [e.payload["text"] for e in events if e.kind.value == "utterance"]
    assert utts == ["第1句", "第2句"]
    assert [e.payload["index"] for e in events if e.kind.value == "utterance"] == [0, 1]
    card = s.end()
    assert dict(card.extras)["asr_dropped"] == 1.0
    assert events[-1].kind.value == "scorecard"


@pytest.mark.parametrize("rate", [8000, 44100])
def test_channel_input_resamples_once_and_fills_gaps(rate: int) -> None:
    from qa_pipeline.config import VadConfig
    from qa_pipeline.live.session import ChannelInput
    from qa_pipeline.messages import AudioChunk

    ci = ChannelInput(VadConfig(), call_id="c", channel=0, role=Role.AGENT, sample_rate=rate)
    t = np.arange(rate * 2) / rate
    tone = (0.3 * np.sin(2 * np.pi * 300 * t) * (1 + np.sin(2 * np.pi * 3 * t))).astype(np.float32)
    segs = ci.push(AudioChunk("c", 0, Role.AGENT, 0.0, rate, np.zeros(rate, np.float32)))
    # one second lost, then speech
    segs += ci.push(AudioChunk("c", 0, Role.AGENT, 2.0, rate, tone))
    segs += ci.flush()
    if rate == 8000:
        assert ci.gaps == 1 and abs(ci.seconds - 4.0) < 1e-6
    for s in segs:
        assert s.sample_rate == 16000
        assert abs(len(s.samples) / 16000 - s.duration) < 0.05

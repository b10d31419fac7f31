"""The shared test harness (``qa_pipeline.testing``): the call builder makes the same calls
as before it moved out of ``benchmarks/bench_rules.py``; ``run_stage`` drives each stage
as the pipeline does."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.testing import FakeDecoder, Recorder, make_call, make_calls, run_stage
from qa_pipeline.text import utterance
from qa_pipeline.transcript import Transcript


def _fields(t: Transcript) -> tuple[object, ...]:
    """Everything ``make_call`` draws, independent of any codec."""
    c = t.call
    assert c.started_at is not None
    return (
        c.call_id,
        c.started_at.isoformat(),
        c.direction.value,
        tuple(
            (u.index, u.channel, u.role.value, u.start, u.end, u.text, u.level_dbfs)
            for u in t.utterances
        ),
        t.ended.end,
        tuple(t.ended.channel_ends),
    )


def _digest(calls: list[Transcript]) -> str:
    h = hashlib.sha256()
    for t in calls:
        h.update(repr(_fields(t)).encode())
    return h.hexdigest()


def test_same_seed_same_calls_as_before_the_move() -> None:
    """Digests of the first calls, computed with ``bench_rules.make_call`` at 9189237
    (before it moved): the benchmark's store (seed 7, 40 utterances) and the parity
    test's draw (seed 23, company named)."""
    assert (
        _digest(make_calls(200, seed=7, n_utts=40, company="华冠"))
        == "154ddc19af0d079b6fc9bdc47ad84beb347be6e933952d7ce4d4124675b7a4ad"
    )
    rng = random.Random(23)
    assert (
        _digest([make_call(i, rng, 40, "华夏") for i in range(50)])
        == "5935b248efb5a6e60d3f68dcde43dd62a43981685fcedd0def69486812812c6d"
    )


def test_a_different_seed_gives_different_calls() -> None:
    assert _digest(make_calls(20, seed=7, company="华夏")) != _digest(
        make_calls(20, seed=8, company="华夏")
    )


def test_run_stage_on_the_rule_evaluator_gives_the_batch_scorecard() -> None:
    """A transcript fed through the harness is scored as ``score_transcript`` scores it."""
    from qa_pipeline.rules import CallEvaluator, load_pack, score_transcript

    pack = load_pack()
    for t in make_calls(12, seed=5, n_utts=30):
        out = run_stage(CallEvaluator(pack, t.call), [t])
        *findings, card = out
        assert card == score_transcript(pack, t)
        assert set(findings) <= set(card.findings)


BAN_PACK = """\
name: harness-test
version: "1"
rules:
  - id: BAN
    description: 坐席不说“交易”（测试规则）
    severity: critical
    weight: 20
    scope: {role: agent}
    forbid: {keyword: [交易]}
"""


def test_stages_chained_in_process(speech_dir: Path, tmp_path: Path) -> None:
    """A real clip through the real VAD, the fake decoder, the rule evaluator and the
    recording sink, each driven by ``run_stage``."""
    from audio_helpers import read_clip

    from qa_pipeline.config import load_config
    from qa_pipeline.messages import CallEnded, CallInfo, Role
    from qa_pipeline.rules import CallEvaluator, load_pack
    from qa_pipeline.sinks.base import events_for_call
    from qa_pipeline.vad import StreamingVad

    clip = read_clip(speech_dir, "zh/aishell1_BAC009S0764W0121.wav")  # says 交易, 4.2 s
    audio = np.concatenate([np.zeros(8000, np.float32), clip, np.zeros(16000, np.float32)])
    vad = StreamingVad(load_config().vad, call_id="h-1", channel=0, role=Role.AGENT)
    segments = run_stage(vad, [audio[i : i + 3200] for i in range(0, len(audio), 3200)])
    assert len(segments) == 1
    # the speech lies inside the clip's place in the call (0.5-4.7 s)
    assert 0.5 <= segments[0].start < 1.2 and 4.0 < segments[0].end <= 4.8

    decoder = FakeDecoder(lambda s, k: f"甚至出现交易{k}", record=True)
    results = run_stage(decoder, segments)
    assert [r.text for r in results] == ["甚至出现交易1"]
    assert decoder.batches == [["h-1"]] and decoder.count == 1

    (pack_dir := tmp_path / "pack").mkdir()
    (pack_dir / "pack.yaml").write_text(BAN_PACK, encoding="utf-8")
    call = CallInfo(call_id="h-1")
    utts = [utterance(r, i) for i, r in enumerate(results)]
    ended = CallEnded(call_id="h-1", end=len(audio) / 16000, channel_ends=(len(audio) / 16000,))
    *findings, card = run_stage(CallEvaluator(load_pack(pack_dir), call), [*utts, ended])
    assert [f.rule_id for f in findings] == ["BAN"] and card.failed

    t = Transcript(call=call, utterances=tuple(utts), ended=ended)
    rec = Recorder()
    events = events_for_call(t, findings, card)
    assert run_stage(rec, events) == events == rec.emitted
    assert rec.closed and rec.flushes == 1
    ((_, sc),) = rec.of("scorecard", "h-1")
    assert sc.payload["failed"] is True


def test_run_stage_leaves_out_what_a_sink_refused() -> None:
    from qa_pipeline.sinks.base import EventDropped

    class NoB(Recorder):
        def emit(self, event: Any) -> None:
            if event == "b":
                raise EventDropped("queue_full")
            super().emit(event)

    assert run_stage(NoB(), ["a", "b", "c"]) == ["a", "c"]


def test_run_stage_refuses_what_is_not_a_stage() -> None:
    with pytest.raises(TypeError, match="not a stage"):
        run_stage(object(), [])

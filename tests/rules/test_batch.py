"""Scoring many calls: no reference cycles left per call, and the batch GC settings."""

from __future__ import annotations

import gc
import random

from qa_pipeline.messages import to_dict
from qa_pipeline.rules import RulePack, batch_gc, score_transcript
from qa_pipeline.testing import make_call


def _calls(n: int) -> list:
    rng = random.Random(5)
    return [make_call(i, rng, rng.choice([1, 5, 40, 80])) for i in range(n)]


def test_scoring_leaves_no_reference_cycles(default_pack: RulePack) -> None:
    """Every call's evaluator, rule runs, utterance contexts and timeline are freed by
    reference counting (what makes ``batch_gc`` safe): the collector finds nothing."""
    calls = _calls(200)
    score_transcript(default_pack, calls[0])  # pack tables and caches made outside
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        cards = [score_transcript(default_pack, t) for t in calls]
        assert gc.collect() == 0
    finally:
        if was:
            gc.enable()
    assert sum(c.failed for c in cards) > 0  # the calls did exercise failing rules


def test_batch_gc_restores_settings_and_changes_no_result(default_pack: RulePack) -> None:
    calls = _calls(60)
    plain = [to_dict(score_transcript(default_pack, t)) for t in calls]
    before = gc.get_threshold()
    frozen = gc.get_freeze_count()
    with batch_gc(threshold=50_000):
        assert gc.get_threshold()[0] == max(50_000, before[0])
        assert gc.get_freeze_count() >= frozen
        batched = [to_dict(score_transcript(default_pack, t)) for t in calls]
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    assert batched == plain

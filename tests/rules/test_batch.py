"""Scoring many calls: no reference cycles left per call, and the batch GC settings."""

from __future__ import annotations

import gc
import random
import subprocess
import sys

from qa_pipeline.messages import to_dict
from qa_pipeline.rules import RulePack, batch_gc, score_transcript
from qa_pipeline.testing import make_call


def _calls(n: int) -> list:
    rng = random.Random(5)
    return [make_call(i, rng, rng.choice([1, 5, 40, 80])) for i in range(n)]


_NO_CYCLES = """
import gc, random
from qa_pipeline.rules import load_pack, score_transcript
from qa_pipeline.testing import make_call

rng = random.Random(5)
calls = [make_call(i, rng, rng.choice([1, 5, 40, 80])) for i in range(200)]
pack = load_pack()
score_transcript(pack, calls[0])  # pack tables and caches made outside
gc.collect()
gc.disable()
cards = [score_transcript(pack, t) for t in calls]
print(gc.collect(), sum(c.failed for c in cards))
"""


def test_scoring_leaves_no_reference_cycles() -> None:
    """Every call's evaluator, rule runs, utterance contexts and timeline are freed by
    reference counting (what makes ``batch_gc`` safe): the collector finds nothing. Run in
    a fresh interpreter, so that threads other tests leave behind cannot add garbage."""
    out = subprocess.run(
        [sys.executable, "-c", _NO_CYCLES], capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr
    cycles, failed = map(int, out.stdout.split())
    assert cycles == 0
    assert failed > 0  # the calls did exercise failing rules


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

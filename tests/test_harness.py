"""The shared test harness (``qa_pipeline.testing``): the call builder makes the same calls
as before it moved out of ``benchmarks/bench_rules.py``."""

from __future__ import annotations

import hashlib
import random

from qa_pipeline.testing import make_call, make_calls
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

"""Garbage-collector settings for long scoring loops (re-scoring archives, benchmarks)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def batch_gc(threshold: int = 100_000) -> Iterator[None]:
    """Score many calls with less garbage-collector work.

    Objects alive on entry (rule packs, their text caches, loaded transcripts) are moved out
    of the collector's sight (:func:`gc.freeze`) and young-generation collections run every
    ``threshold`` allocations instead of every 700. Scoring a call leaves no reference
    cycles behind (the evaluator drops them at call end, so reference counting frees each
    call), so this only skips traversals that would find nothing; the process's own cycles
    are still collected, later. Thresholds are restored and the frozen objects released to
    the collector on exit. Not for the live service, where calls interleave for hours.
    """
    old = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(threshold, old[0]), old[1], old[2])
    try:
        yield
    finally:
        gc.set_threshold(*old)
        gc.unfreeze()

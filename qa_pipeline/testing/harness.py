"""``run_stage``: drive one stage of the pipeline in-process and get what it put out.

A stage is recognised by what it does (duck typing), so the harness does not pin where a
stage's class lives:

========================  ===========================  ==================================
stage                     inputs                       outputs, in order
========================  ===========================  ==================================
rule evaluator            utterances (in the order     the findings as they are decided,
(``feed`` / ``end``:      they closed), then a         then the scorecard (when ended)
``CallEvaluator``)        ``CallEnded``; or one
                          ``Transcript``
VAD (``push`` /           blocks of samples            the speech segments; the stage is
``flush``:                                             flushed after the last block
``StreamingVad``)
sink (``emit``)           events                       the events it kept (one it refused
                                                       with ``EventDropped`` is left out);
                                                       flushed and closed after the last
ASR engine                speech segments              one result per segment, in input
(``transcribe_many``:                                  order
``AsrEngine``,
``FakeDecoder``)
decoder (``decode``:      speech segments              one result per segment (decoded one
``LiveDecoder``)                                       at a time)
========================  ===========================  ==================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from qa_pipeline.messages import CallEnded
from qa_pipeline.transcript import Transcript

__all__ = ["run_stage", "wait_for"]


def run_stage(stage: Any, inputs: Iterable[Any]) -> list[Any]:
    """Feed ``inputs`` to ``stage`` and return its outputs (see the module's table)."""
    if hasattr(stage, "feed") and hasattr(stage, "end"):
        return _evaluate(stage, inputs)
    if hasattr(stage, "push") and hasattr(stage, "flush"):
        out: list[Any] = []
        for block in inputs:
            out.extend(stage.push(block))
        out.extend(stage.flush())
        return out
    if hasattr(stage, "emit"):
        return _sink(stage, inputs)
    if hasattr(stage, "transcribe_many"):
        return list(stage.transcribe_many(list(inputs)))
    if hasattr(stage, "decode"):
        return [r for seg in inputs for r in stage.decode([seg])]
    raise TypeError(f"run_stage: {type(stage).__name__} is not a stage it knows")


def _evaluate(evaluator: Any, inputs: Iterable[Any]) -> list[Any]:
    items = list(inputs)
    if len(items) == 1 and isinstance(items[0], Transcript):
        t = items[0]
        # the order the live service closes them in (score_transcript gives the same)
        items = [*sorted(t.utterances, key=lambda u: (u.end, u.start, u.index)), t.ended]
    out: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, CallEnded):
            if i != len(items) - 1:
                raise ValueError("run_stage: the CallEnded must be the last input")
            out.append(evaluator.end(item))
        else:
            out.extend(evaluator.feed(item))
    return out


def _sink(sink: Any, events: Iterable[Any]) -> list[Any]:
    from qa_pipeline.sinks.base import EventDropped

    kept = []
    for e in events:
        try:
            sink.emit(e)
        except EventDropped:
            continue
        kept.append(e)
    sink.flush(5.0)
    sink.close()
    return kept


async def wait_for(pred: Callable[[], object], limit_s: float = 30.0) -> None:
    """Poll ``pred`` every 50 ms on the running loop until it holds; ``TimeoutError`` after
    ``limit_s`` (for waiting on a running service's output, e.g. a :class:`Recorder`)."""
    deadline = time.monotonic() + limit_s
    while not pred():  # noqa: ASYNC110 - polling state another task or thread changes
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.05)

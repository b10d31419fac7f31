"""One fake decoder: scoring without a model.

:class:`FakeDecoder` answers as the live service's decoder does (``decode(segments)`` →
one :class:`~qa_pipeline.asr.engine.AsrResult` per segment, ``opts``) and as the ASR
engine does (``transcribe_many``), with a text chosen per segment. Calling an instance
with ``(engine, opts)`` returns it, so it can stand in for the decoder's class where a
service builds its own (``monkeypatch.setattr(service, "LiveDecoder", fake)``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from qa_pipeline.asr.engine import AsrResult
from qa_pipeline.messages import SpeechSegment

__all__ = ["FakeDecoder", "TextFor"]

TextFor = Callable[[SpeechSegment, int], str]
"""The text of a segment, given the segment and its number (1, 2, ... in decode order)."""


class FakeDecoder:
    """Answers every segment with ``text`` (a string, or a function of the segment and its
    number). ``cost_s``: seconds of sleep per segment (a decoder with a cost, so capacity
    can run short). ``gate``: decodes of segments that ``gated`` picks (all by default)
    first wait for it to be set, at most ``gate_s``. ``fail``: every decode raises.
    Counts the segments it decoded (``count``) and the threads decodes ran on
    (``threads``); ``record``: also keeps each batch's call ids (``batches``, which grows
    with every decode: leave it off where memory is measured)."""

    def __init__(
        self,
        text: str | TextFor = "",
        *,
        cost_s: float = 0.0,
        gate: threading.Event | None = None,
        gated: Callable[[SpeechSegment], bool] | None = None,
        gate_s: float = 5.0,
        fail: bool = False,
        record: bool = False,
        confidence: float = 0.95,
        tokens: int = 8,
        opts: Any = None,
    ) -> None:
        self.text = text
        self.cost_s = cost_s
        self.gate = gate
        self.gated = gated
        self.gate_s = gate_s
        self.fail = fail
        self.record = record
        self.confidence = confidence
        self.tokens = tokens
        if opts is None:
            from qa_pipeline.live.decoder import DecodeOptions

            opts = DecodeOptions(window="fitted")
        self.opts = opts
        self.engine: Any = None
        self.batches: list[list[str]] = []
        self.threads: set[str] = set()
        self.count = 0
        self._lock = threading.Lock()

    def __call__(self, engine: Any, opts: Any) -> FakeDecoder:
        """Stands in for ``LiveDecoder(engine, opts)``: this decoder, with those."""
        self.engine = engine
        self.opts = opts
        return self

    def _text(self, seg: SpeechSegment) -> str:
        with self._lock:
            self.count += 1
            k = self.count
        return self.text if isinstance(self.text, str) else self.text(seg, k)

    def decode(self, segs: Sequence[SpeechSegment]) -> list[AsrResult]:
        with self._lock:
            self.threads.add(threading.current_thread().name)
        if self.gate is not None and any(self.gated is None or self.gated(s) for s in segs):
            self.gate.wait(self.gate_s)
        if self.cost_s:
            time.sleep(self.cost_s * len(segs))
        if self.record:
            with self._lock:
                self.batches.append([s.call_id for s in segs])
        if self.fail:
            raise RuntimeError("decode failed (FakeDecoder(fail=True))")
        out = []
        for s in segs:
            t = self._text(s)
            out.append(AsrResult(s, t, t, self.confidence, 0.0, "zh", self.tokens, self.cost_s))
        return out

    def transcribe_many(
        self,
        segments: Iterable[SpeechSegment],
        on_result: Callable[[AsrResult], None] | None = None,
    ) -> Iterator[AsrResult]:
        """As :meth:`AsrEngine.transcribe_many <qa_pipeline.asr.engine.AsrEngine.transcribe_many>`:
        results in input order, one segment at a time."""
        for s in segments:
            (r,) = self.decode([s])
            if on_result:
                on_result(r)
            yield r

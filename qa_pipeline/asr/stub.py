"""A STUB decoder for tests and benchmarks of the distributed stages: no Whisper, no model.

:class:`StubEngine` answers every segment with a fixed Mandarin sentence picked by a hash of
the segment's call id, channel and times (never of its audio: the 8 kHz wire audio is
resampled per segment, the in-process audio per file), so the same segment gets the same
text in any process, batch or order; about one segment in ten comes back dropped as a
hallucination, so the dropped path is exercised too. Some sentences hold a mobile number
(redacted by the text step like a real decode). ``sleep`` seconds per segment imitate the
decode time (a *sleeping* stub: it scales across processes on any number of cores, which a
CPU-burning stub could not on two).

It has the parts of :class:`~qa_pipeline.asr.engine.AsrEngine` that the recorded pipeline
and the ASR worker use (``transcribe_many``, ``transcribe_segment``, ``settings``,
``provenance``, ``with_bias``, ``config`` with verification off), so ``Pipeline(cfg, engine=StubEngine())``
scores a call in-process with the same texts the workers produce.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterable, Iterator

from ..messages import SpeechSegment
from .config import AsrConfig
from .result import AsrResult

__all__ = ["STUB_SENTENCES", "StubEngine", "parse_stub"]

#: what the stub "hears" (a hash of the segment picks one)
STUB_SENTENCES = (
    "您好，这里是客服中心，请问有什么可以帮您？",
    "我想查询一下我的订单。",
    "好的，请稍等，我帮您查一下。",
    "我的手机号是13812345678。",
    "请问还有其他问题吗？",
    "没有了，谢谢。",
    "感谢您的来电，再见。",
    "这个问题我们会尽快处理。",
    "你们的服务太差了。",
)
#: one segment in this many is dropped as a hallucination
DROP_EVERY = 10


class StubEngine:
    """The stub decoder (see the module docstring). ``sleep``: seconds per segment."""

    def __init__(self, sleep: float = 0.0, config: AsrConfig | None = None) -> None:
        if sleep < 0:
            raise ValueError("stub sleep must be >= 0")
        self.sleep = sleep
        self.config = (config or AsrConfig()).model_copy(update={"verify": False})
        self.bias: tuple[str, ...] = ()

    @property
    def settings(self) -> dict[str, object]:
        return {"model": "stub", "stub_sleep": self.sleep}

    @property
    def provenance(self) -> dict[str, object]:
        return {"decoder": "stub"}

    def with_bias(self, bias: tuple[str, ...]) -> StubEngine:
        """The same stub "biased" to ``bias`` (kept, never used: the texts depend only on
        the segment), as :meth:`Pipeline.for_pack <qa_pipeline.pipeline.Pipeline.for_pack>`
        asks of an engine when ``score`` biases it to the rule pack."""
        clone = StubEngine(self.sleep, self.config)
        clone.bias = tuple(bias)
        return clone

    @staticmethod
    def key(seg: SpeechSegment) -> int:
        """The hash a segment's stub text is picked by (call, channel, times to the ms)."""
        name = f"{seg.call_id}|{seg.channel}|{seg.start:.3f}|{seg.end:.3f}"
        return zlib.crc32(name.encode())

    def transcribe_segment(self, seg: SpeechSegment) -> AsrResult:
        t0 = time.perf_counter()
        if self.sleep:
            time.sleep(self.sleep)
        k = self.key(seg)
        dropped = k % DROP_EVERY == 0
        text = "" if dropped else STUB_SENTENCES[(k // DROP_EVERY) % len(STUB_SENTENCES)]
        return AsrResult(
            segment=seg,
            text=text,
            raw_text="谢谢观看" if dropped else text,
            confidence=0.0 if dropped else 0.9,
            no_speech_prob=0.01,
            language="zh",
            tokens=len(text),
            seconds=time.perf_counter() - t0,
            dropped_reason="hallucination" if dropped else None,
        )

    def transcribe_many(
        self,
        segments: Iterable[SpeechSegment],
        on_result: Callable[[AsrResult], None] | None = None,
    ) -> Iterator[AsrResult]:
        """One segment after the other (one decoder: the sleeps add up)."""
        for s in segments:
            r = self.transcribe_segment(s)
            if on_result:
                on_result(r)
            yield r

    def transcribe_batch(self, segments: Iterable[SpeechSegment]) -> list[AsrResult]:
        return list(self.transcribe_many(segments))


def parse_stub(spec: str) -> StubEngine:
    """``stub`` or ``stub:sleep=SECONDS`` -> a :class:`StubEngine`; ValueError otherwise."""
    name, _, opts = spec.partition(":")
    if name != "stub":
        raise ValueError(f"decoder {spec!r}: expected 'whisper' or 'stub[:sleep=SECONDS]'")
    sleep = 0.0
    for opt in filter(None, opts.split(",")):
        key, _, value = opt.partition("=")
        if key != "sleep":
            raise ValueError(f"decoder {spec!r}: unknown stub option {key!r} (known: sleep)")
        try:
            sleep = float(value)
        except ValueError:
            raise ValueError(f"decoder {spec!r}: sleep must be a number of seconds") from None
        if not 0 <= sleep <= 60:
            raise ValueError(f"decoder {spec!r}: sleep must be 0-60 seconds")
    return StubEngine(sleep)

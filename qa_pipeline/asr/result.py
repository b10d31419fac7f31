"""What one ASR decode produced (:class:`AsrResult`), and the checks every decoder applies to
its raw text: the token cap, U+FFFD clean-up and why a decode is suspect.

Its own module so that the decoders (:mod:`.engine`'s 30 s path, :mod:`.fitted`) and the
callers that only carry results (the live service, the session, the recorded pipeline)
share them without importing each other.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from ..audio import level_dbfs
from ..messages import SpeechSegment, Utterance
from .guard import GuardResult

MAX_TARGET_TOKENS = 224  # Whisper's own sample length; leaves room for the prompt
COMPRESSION_RATIO_MAX = 2.4  # temperature fallback: more = a repetitive decode
REPLACEMENT = "\ufffd"  # what a byte-level token cut inside a character decodes to


@dataclass(frozen=True, slots=True)
class AsrResult:
    """What one decode produced for one segment (before it becomes an Utterance)."""

    segment: SpeechSegment
    text: str
    raw_text: str
    confidence: float
    no_speech_prob: float
    language: str | None
    tokens: int
    seconds: float
    dropped_reason: str | None = None
    #: why this decode cannot be trusted as it is (decode it again): "token_cap", "loop",
    #: "compression", "broken_char"; None = fine
    suspect: str | None = None

    def to_utterance(self, index: int) -> Utterance:
        """The kept result as the message the rules see (audio level measured here)."""
        s = self.segment
        lvl = level_dbfs(s.samples)
        return Utterance(
            call_id=s.call_id,
            index=index,
            channel=s.channel,
            role=s.role,
            start=s.start,
            end=s.end,
            text="" if self.dropped_reason else self.text,
            raw_text=self.raw_text,
            confidence=0.0 if self.dropped_reason else self.confidence,
            no_speech_prob=self.no_speech_prob,
            level_dbfs=round(lvl, 2) if math.isfinite(lvl) else None,
            language=self.language,
        )


def compression_ratio(text: str) -> float:
    b = text.encode("utf-8")
    return len(b) / len(zlib.compress(b)) if b else 0.0


def clean_raw(text: str) -> str:
    """Decoded text without U+FFFD: the rest of a character whose bytes were split across
    tokens that never came (a decode cut at its token cap), or a byte-level token Whisper
    emitted on its own."""
    return text.replace(REPLACEMENT, "") if REPLACEMENT in text else text


def suspect_reason(raw: str, guarded: GuardResult, *, capped: bool) -> str | None:
    """Why a decode is not to be trusted as it is, or None. ``capped``: it stopped at the
    token cap instead of at its end-of-text token."""
    if guarded.dropped_reason is not None:
        return None  # silence / hallucination: nothing to recover
    if capped:
        return "token_cap"
    if guarded.collapsed_loop:
        return "loop"
    if compression_ratio(raw) > COMPRESSION_RATIO_MAX:
        return "compression"
    if REPLACEMENT in raw:
        return "broken_char"
    return None


#: drop reasons of segments that were speech whose words could not be read: they stay in
#: the transcript as *unreadable* utterances (no text, confidence 0) so that the timing
#: rules still see the speech (a reply dropped as a loop must not open a fake response gap)
UNREADABLE_REASONS = frozenset({"loop"})


def is_kept(r: AsrResult) -> bool:
    """Whether a result becomes an utterance: read text, or unreadable speech."""
    if r.dropped_reason is None:
        return bool(r.text)
    return r.dropped_reason in UNREADABLE_REASONS


def to_utterances(results: Iterable[AsrResult]) -> list[Utterance]:
    """Kept results -> Utterances, numbered in call order (start time, then channel).
    Speech whose decode was dropped as unreadable (:data:`UNREADABLE_REASONS`) is kept as
    an utterance without text at confidence 0 (its decode in ``raw_text``)."""
    kept = sorted(filter(is_kept, results), key=lambda r: (r.segment.start, r.segment.channel))
    return [r.to_utterance(i) for i, r in enumerate(kept)]

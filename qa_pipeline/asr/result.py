"""What one ASR decode produced (:class:`AsrResult`), and the checks every decoder applies to
its raw text: the token cap, U+FFFD clean-up and why a decode is suspect; which results are
kept (the text step, :mod:`qa_pipeline.text`, makes them utterances).

Its own module so that the decoders (:mod:`.engine`'s 30 s path, :mod:`.fitted`) and the
callers that only carry results (the live service, the session, the recorded pipeline)
share them without importing each other.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from dataclasses import dataclass

from ..messages import SpeechSegment
from .guard import PROMPT_ECHO, GuardResult

MAX_TARGET_TOKENS = 224  # Whisper's own sample length; leaves room for the prompt
COMPRESSION_RATIO_MAX = 2.4  # temperature fallback: more = a repetitive decode
REPLACEMENT = "\ufffd"  # what a byte-level token cut inside a character decodes to


@dataclass(frozen=True, slots=True)
class AsrResult:
    """What one decode produced for one segment (before the text step makes it an
    :class:`~qa_pipeline.messages.Utterance`)."""

    segment: SpeechSegment
    #: the decode after the hallucination guard, as Whisper wrote it (traditional or
    #: simplified, any width); the text step (:func:`qa_pipeline.text.utterance`) normalises
    #: it into ``Utterance.text``
    text: str
    #: the decode before the guard
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
    if guarded.dropped_reason == PROMPT_ECHO:
        return PROMPT_ECHO  # decoded again without the prompt
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


def kept_in_order(results: Iterable[AsrResult]) -> list[AsrResult]:
    """The kept results (:func:`is_kept`) in call order (start time, then channel): the
    order their utterances are numbered in."""
    return sorted(filter(is_kept, results), key=lambda r: (r.segment.start, r.segment.channel))

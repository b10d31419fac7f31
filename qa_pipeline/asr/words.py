"""A decode with word timestamps (:func:`timed_decode`): when each word was said.

The pipeline's decoders (:mod:`.engine`, :mod:`.fitted`) write text without word times;
redacting personal data in audio needs them, only for the few utterances that held some
(:mod:`qa_pipeline.audio_redact`). Those are decoded once more here, exactly as the
pipeline decodes a segment (:meth:`AsrEngine.transcribe_segment
<qa_pipeline.asr.engine.AsrEngine.transcribe_segment>`: its window, beam, prompt and
recovery), and that text is aligned to the audio by Whisper's cross-attention
(faster-whisper's ``find_alignment``, what its ``word_timestamps`` use) on the encoder
output of the same window. Decoding again, rather than aligning the stored transcript, is
what a redacted transcript leaves possible: its digits are gone.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from ..messages import Role, Samples, SpeechSegment
from ..privacy.audio import TimedWord
from .fitted import HOP, MAX_WINDOW_S, SAMPLE_RATE, fitted_window

if TYPE_CHECKING:
    from .engine import AsrEngine


@dataclass(frozen=True, slots=True)
class TimedDecode:
    """A decode's text (as Whisper wrote it, not normalised; empty when it was dropped),
    its words with their times (seconds from the start of the decoded audio) and the
    seconds the decode and the alignment took."""

    text: str
    words: tuple[TimedWord, ...]
    seconds: float


def timed_decode(
    engine: AsrEngine, samples: Samples, sample_rate: int = SAMPLE_RATE
) -> TimedDecode:
    """Decode ``samples`` (16 kHz float32, at most 30 s: one utterance) as the pipeline
    does, and place its words in time. Blocking; safe from several threads."""
    if sample_rate != SAMPLE_RATE:
        raise ValueError("timed_decode takes 16 kHz audio (the pipeline's rate)")
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    t0 = time.perf_counter()
    seg = SpeechSegment("timed", 0, Role.UNKNOWN, 0.0, len(audio) / SAMPLE_RATE, audio)
    r = engine.transcribe_segment(seg)
    text = r.text if r.dropped_reason is None else ""
    words = align(engine, audio, text, r.language) if text else ()
    return TimedDecode(text, words, time.perf_counter() - t0)


def align(
    engine: AsrEngine, audio: Samples, text: str, language: str | None
) -> tuple[TimedWord, ...]:
    """The words of ``text`` placed in ``audio`` (16 kHz) by cross-attention, on the
    encoder window the engine decodes it with (fitted, or Whisper's 30 s)."""
    import ctranslate2
    from faster_whisper.tokenizer import Tokenizer

    from .engine import FITTED_PAD_S

    wm = engine.model
    c = engine.config
    duration = len(audio) / SAMPLE_RATE
    window = (
        fitted_window(duration, c.min_window_seconds, FITTED_PAD_S)
        if c.window == "fitted"
        else MAX_WINDOW_S
    )
    padded = np.zeros(window * SAMPLE_RATE, dtype=np.float32)
    clip = audio[: len(padded)]
    padded[: len(clip)] = clip
    feats = wm.feature_extractor(padded, padding=0)[:, : window * SAMPLE_RATE // HOP]
    encoded = wm.model.encode(
        ctranslate2.StorageView.from_array(np.ascontiguousarray(feats[None], dtype=np.float32)),
        to_cpu=False,
    )
    multilingual = bool(wm.model.is_multilingual)
    lang = (language or c.language or "zh") if multilingual else "en"
    tok: Any = Tokenizer(wm.hf_tokenizer, multilingual, task="transcribe", language=lang)
    tokens = tok.encode(text.strip())
    frames = min(window * SAMPLE_RATE // HOP, math.ceil(len(clip) / HOP))
    (found,) = wm.find_alignment(tok, [tokens], encoded, frames)
    return tuple(TimedWord(str(w["word"]), float(w["start"]), float(w["end"])) for w in found)

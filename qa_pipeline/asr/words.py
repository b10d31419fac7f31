"""A decode with word timestamps (:func:`timed_decode`): when each word was said.

The pipeline's decoders (:mod:`.engine`, :mod:`.fitted`) write text without word times;
redacting personal data in audio needs them, only for the few utterances that held some
(:mod:`qa_pipeline.audio_redact`). So those are decoded once more here, with
faster-whisper's ``word_timestamps`` (cross-attention alignment) on the engine's loaded
model and its language, beam and prompt: Whisper's 30 s window, temperature 0.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..messages import Samples
from ..privacy.audio import TimedWord

if TYPE_CHECKING:
    from .engine import AsrEngine


@dataclass(frozen=True, slots=True)
class TimedDecode:
    """A decode's text (as Whisper wrote it, not normalised), its words with their times
    (seconds from the start of the decoded audio) and the seconds it took."""

    text: str
    words: tuple[TimedWord, ...]
    seconds: float


def timed_decode(engine: AsrEngine, samples: Samples, sample_rate: int = 16000) -> TimedDecode:
    """Decode ``samples`` (16 kHz float32, at most 30 s: one utterance) with word
    timestamps, as ``engine`` decodes (language, beam, prompt, hotwords), at temperature 0
    and without conditioning on earlier text. Blocking; safe from several threads."""
    if sample_rate != 16000:
        raise ValueError("timed_decode takes 16 kHz audio (the pipeline's rate)")
    c = engine.config
    audio = np.ascontiguousarray(samples, dtype=np.float32)
    t0 = time.perf_counter()
    segments, _info = engine.model.transcribe(
        audio,
        language=c.language,
        task="transcribe",
        beam_size=c.beam_size,
        temperature=0.0,
        condition_on_previous_text=False,
        initial_prompt=c.initial_prompt,
        hotwords=engine._hotwords,
        word_timestamps=True,
        vad_filter=False,
    )
    parts = list(segments)  # decoding happens here
    words = tuple(
        TimedWord(w.word, float(w.start), float(w.end)) for p in parts for w in (p.words or ())
    )
    text = "".join(p.text for p in parts).strip()
    return TimedDecode(text, words, time.perf_counter() - t0)

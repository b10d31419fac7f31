"""Personal data in audio: the spans that held it beeped or silenced (:func:`redact_samples`),
and where in an utterance's audio a piece of its text was said (:func:`entity_times`,
from a decode's word timestamps).

Pure functions on arrays and word lists: the timed decode that produces the words lives
with the ASR (:mod:`qa_pipeline.asr.words`), the orchestration over a call in
:mod:`qa_pipeline.audio_redact`.
"""

from __future__ import annotations

import difflib
import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

BEEP_HZ = 1000.0
#: the beep's peak, relative to full scale (-16 dBFS peak, -19 dBFS RMS: a moderate level,
#: about that of the speech it replaces on a levelled call)
BEEP_PEAK = 0.16
#: the cross-fade at each edge of a masked span (no click where it starts and stops)
FADE_S = 0.005
DEFAULT_PAD_S = 0.15

Mode = Literal["beep", "silence"]


def merge_spans(
    spans_s: Sequence[tuple[float, float]], pad_s: float = 0.0, *, duration: float | None = None
) -> list[tuple[float, float]]:
    """Spans widened by ``pad_s`` on each side, clipped to ``[0, duration]``, sorted, the
    overlapping ones joined; empty spans left out."""
    out: list[tuple[float, float]] = []
    for a, b in sorted((min(s, e) - pad_s, max(s, e) + pad_s) for s, e in spans_s):
        a = max(0.0, a)
        if duration is not None:
            b = min(duration, b)
        if b <= a:
            continue
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def redact_samples(
    samples: npt.NDArray[np.generic],
    sample_rate: int,
    spans_s: Sequence[tuple[float, float]],
    mode: Mode = "beep",
    pad_s: float = DEFAULT_PAD_S,
) -> npt.NDArray[np.generic]:
    """A copy of ``samples`` with each span (seconds, widened by ``pad_s`` each side)
    replaced by a 1 kHz beep at a moderate level (``mode="beep"``) or by silence.

    ``samples``: one channel (1-D) or frames x channels (2-D, every channel masked), float
    (full scale 1.0: PCM read as float, mu-law or A-law decoded) or integer PCM (full
    scale the type's maximum). The original fades out and the replacement in over
    :data:`FADE_S` at each edge, inside the padded span, so no click is added and nothing
    of the span itself stays audible."""
    if mode not in ("beep", "silence"):
        raise ValueError(f"mode must be 'beep' or 'silence', not {mode!r}")
    if sample_rate <= 2 * BEEP_HZ and mode == "beep":
        raise ValueError(f"a {BEEP_HZ:.0f} Hz beep needs a sample rate above {2 * BEEP_HZ:.0f} Hz")
    if samples.ndim not in (1, 2):
        raise ValueError("samples must be one channel (1-D) or frames x channels (2-D)")
    out = samples.copy()
    n = samples.shape[0]
    dtype = samples.dtype
    if np.issubdtype(dtype, np.integer):
        info = np.iinfo(dtype)  # type: ignore[type-var]
        scale, lo, hi = float(info.max), float(info.min), float(info.max)
    elif np.issubdtype(dtype, np.floating):
        scale, lo, hi = 1.0, -1.0, 1.0
    else:
        raise ValueError(f"cannot redact samples of type {dtype}")
    fade = max(1, round(FADE_S * sample_rate))
    for a_s, b_s in merge_spans(spans_s, pad_s, duration=n / sample_rate):
        a, b = round(a_s * sample_rate), min(n, round(b_s * sample_rate))
        if b <= a:
            continue
        length = b - a
        # 1 where the span is replaced, ramping from and back to 0 over the fades (none
        # at the start or end of the audio: nothing there to click against)
        w = np.ones(length, dtype=np.float64)
        k = min(fade, length // 2)
        if k:
            ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(k) + 0.5) / k)
            if a > 0:
                w[:k] = ramp
            if b < n:
                w[length - k :] = ramp[::-1]
        if mode == "beep":
            t = np.arange(a, b, dtype=np.float64) / sample_rate
            fill = BEEP_PEAK * scale * np.sin(2 * np.pi * BEEP_HZ * t)
        else:
            fill = np.zeros(length, dtype=np.float64)
        part = samples[a:b].astype(np.float64)
        if part.ndim == 2:
            mixed = part * (1 - w)[:, None] + (w * fill)[:, None]
        else:
            mixed = part * (1 - w) + w * fill
        if np.issubdtype(dtype, np.integer):
            mixed = np.rint(mixed)
        out[a:b] = np.clip(mixed, lo, hi).astype(dtype)
    return out


@dataclass(frozen=True, slots=True)
class TimedWord:
    """One word of a decode with word timestamps (seconds from the start of the audio that
    was decoded). For Chinese, Whisper's "words" are often one to three characters."""

    text: str
    start: float
    end: float


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKC", text).strip()


def char_words(
    text: str, words: Sequence[TimedWord], form: Callable[[str], str] = _fold
) -> list[int | None]:
    """For each character of ``text``, the index of the word that said it (None for a
    character no word holds: punctuation the normalisation added, a changed character).

    ``text`` is the decode's text as the recognisers saw it (normalised); each word's text
    is put into the same form (``form``: e.g. :func:`qa_pipeline.text.normalise`) and the
    two are aligned character by character, so punctuation or spacing that the
    normalisation adds, drops or changes does not shift the words."""
    joined: list[str] = []
    owner: list[int] = []
    for i, w in enumerate(words):
        f = form(w.text)
        joined.append(f)
        owner.extend([i] * len(f))
    out: list[int | None] = [None] * len(text)
    sm = difflib.SequenceMatcher(None, text, "".join(joined), autojunk=False)
    for blk in sm.get_matching_blocks():
        for k in range(blk.size):
            out[blk.a + k] = owner[blk.b + k]
    return out


def entity_times(
    text: str,
    words: Sequence[TimedWord],
    spans: Sequence[tuple[int, int]],
    form: Callable[[str], str] = _fold,
) -> list[tuple[float, float]]:
    """The time span (seconds, the words' clock) that held each character span of ``text``.

    The span runs from the end of the last word said wholly before it to the start of the
    first word said wholly after it: the words holding a character of it and the pauses
    around them (word timestamps from cross-attention are often early at a word's end,
    most of all at the end of an utterance; a pause holds no other speech). Characters
    that no word holds are masked with the gap between their neighbours, never dropped.
    Nothing before: from ``0``; nothing after: to ``inf`` (the end of the audio); so with
    no words at all, each span is the whole audio."""
    owner = char_words(text, words, form)
    n = len(owner)
    out: list[tuple[float, float]] = []
    for s, e in spans:
        s, e = max(0, min(s, n)), max(0, min(e, n))
        held = sorted({w for w in owner[s:e] if w is not None})
        if held:
            prev, nxt = held[0] - 1, held[-1] + 1
        else:
            prev = next((w for w in reversed(owner[:s]) if w is not None), -1)
            nxt = next((w for w in owner[e:] if w is not None), len(words))
        start = words[prev].end if prev >= 0 else 0.0
        end = words[nxt].start if nxt < len(words) else math.inf
        if held:
            start = min(start, words[held[0]].start)
            end = max(end, words[held[-1]].end)
        out.append((start, end))
    return out

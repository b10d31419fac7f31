"""Personal data out of a call's audio: each utterance that held some is decoded once more
as the pipeline decodes it and its words placed in time (:mod:`qa_pipeline.asr.words`), the
personal data is found in *that* decode's text, and the time spans of its words (with the
pauses around them) are beeped or silenced in the utterance's channel.

Finding the entities in the timed decode's own text (not mapping the transcript's
offsets onto it) means the digits silenced are the ones that decode heard where it heard
them. When the timed decode finds fewer entities of a kind than the utterance held, or
cannot place one in time, the whole utterance is masked instead (``how: "utterance"``),
never less. Used by ``qa-pipeline redact-audio``; the recordings and evidence clips of the
QA workflow reuse :func:`find_spans` and :func:`write_redacted`.

Between the text step and the rules in the import layers: it reads the ASR (the timed
decode), the text step's normalisation and the recognisers, and nothing above them.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf

from .asr.engine import AsrEngine
from .asr.words import timed_decode
from .audio import CallAudio
from .errors import AudioError
from .messages import Utterance
from .privacy import find_entities
from .privacy.audio import DEFAULT_PAD_S, Mode, entity_times, merge_spans, redact_samples
from .text import normalise

_INT16_SUBTYPES = frozenset({"PCM_16", "PCM_S8", "PCM_U8", "ULAW", "ALAW"})


@dataclass(frozen=True, slots=True)
class MaskedSpan:
    """A stretch of a channel that held personal data (seconds on the call clock, before
    the pad). ``how``: ``"words"`` (placed by word timing) or ``"utterance"`` (the timed
    decode did not confirm it: the whole utterance)."""

    kind: str
    channel: int
    start: float
    end: float
    how: str
    utterance: int


@dataclass(frozen=True, slots=True)
class SpanSearch:
    """What :func:`find_spans` found, and what it cost."""

    spans: tuple[MaskedSpan, ...]
    timed_decodes: int
    decode_seconds: float

    @property
    def fallbacks(self) -> int:
        """Utterances masked whole because the timed decode did not confirm their data."""
        return len({s.utterance for s in self.spans if s.how == "utterance"})


def held_kinds(u: Utterance) -> Counter[str]:
    """The kinds of personal data an utterance held: its redaction spans, or (text not yet
    redacted) what the recognisers find in its text."""
    if u.entities:
        return Counter(e.kind for e in u.entities)
    return Counter(e.kind.value for e in find_entities(u.text))


def find_spans(engine: AsrEngine, audio: CallAudio, utterances: Iterable[Utterance]) -> SpanSearch:
    """The spans of ``audio`` (16 kHz channels, as the pipeline read them) that held the
    personal data of ``utterances``. Only utterances holding some are decoded again."""
    rate = audio.sample_rate
    spans: list[MaskedSpan] = []
    decodes = 0
    seconds = 0.0
    for u in utterances:
        kinds = held_kinds(u)
        if not kinds or u.channel >= len(audio.channels):
            continue
        ch = audio.channels[u.channel]
        # the segment the pipeline decoded, no more: the timed decode writes the same text
        t0, t1 = max(0.0, u.start), min(len(ch) / rate, u.end)
        timed = timed_decode(engine, ch[round(t0 * rate) : round(t1 * rate)], rate)
        decodes += 1
        seconds += timed.seconds
        text = normalise(timed.text)
        found = find_entities(text)
        times = entity_times(text, timed.words, [(e.start, e.end) for e in found], normalise)
        placed = [
            (e.kind.value, t0 + a, min(t1, t0 + b)) for e, (a, b) in zip(found, times, strict=True)
        ]
        confirmed = Counter(k for k, _, _ in placed)
        if any(confirmed[k] < n for k, n in kinds.items()):
            spans.extend(
                MaskedSpan(k, u.channel, u.start, u.end, "utterance", u.index) for k in kinds
            )
        # what the timed decode placed is masked either way (it may lie beyond the utterance)
        spans.extend(MaskedSpan(k, u.channel, a, b, "words", u.index) for k, a, b in placed)
    return SpanSearch(tuple(spans), decodes, seconds)


def channel_spans(spans: Sequence[MaskedSpan], channel: int) -> list[tuple[float, float]]:
    return [(s.start, s.end) for s in spans if s.channel == channel]


def write_redacted(
    src: str | Path,
    dst: str | Path,
    spans: Sequence[MaskedSpan],
    *,
    mode: Mode = "beep",
    pad_s: float = DEFAULT_PAD_S,
) -> None:
    """Write ``src`` to ``dst`` with ``spans`` beeped or silenced in their channels: the
    same container, encoding, rate and channels (a format libsndfile reads and writes:
    WAV, FLAC, OGG...; others are an :class:`AudioError`)."""
    try:
        info = sf.info(str(src))
        # 16-bit and narrower encodings (mu-law, A-law) as int16: unmasked samples are
        # written back exactly as they were read
        dtype = "int16" if info.subtype in _INT16_SUBTYPES else "float32"
        audio, rate = sf.read(str(src), dtype=dtype, always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as e:
        raise AudioError(
            str(src), "cannot write a redacted copy of this format (convert it to WAV first)"
        ) from e
    out = audio.copy()
    for c in range(audio.shape[1]):
        mine = channel_spans(spans, c)
        if mine:
            out[:, c] = redact_samples(audio[:, c], rate, mine, mode, pad_s)
    dst = Path(dst)
    tmp = dst.with_name(f".{dst.name}.tmp")
    sf.write(str(tmp), out, rate, subtype=info.subtype, format=info.format)
    os.replace(tmp, dst)


def masked_seconds(spans: Sequence[MaskedSpan], pad_s: float = DEFAULT_PAD_S) -> float:
    """Seconds of audio masked, all channels together (pads included, overlaps once)."""
    total = 0.0
    for c in sorted({s.channel for s in spans}):
        total += sum(b - a for a, b in merge_spans(channel_spans(spans, c), pad_s))
    return float(np.round(total, 3))

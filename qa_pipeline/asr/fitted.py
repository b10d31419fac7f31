"""Whisper decoding with the encoder window fitted to the utterance (recorded and live).

faster-whisper pads every input to Whisper's 30 s window, and on CPU that encoder pass is
most of a short utterance's cost. Here the utterance is put in a window of
``max(min_window_s, duration + pad_s)`` seconds (whole seconds, at most 30;
:func:`window_features`), encoded and decoded directly on the CTranslate2 model. Windows shorter than 30 s
cost accuracy (Whisper was trained on 30 s windows; how much depends on the CPU's int8
kernels): recorded calls decode in 30 s windows by default, the live service in shorter
ones for latency.

A segment's text depends on the segment alone: segments are batched only with segments of
the same window and the same token cap (both functions of the segment's own duration), so
nothing is padded to a neighbour's length and no decode runs longer because of a neighbour.

A decode that cannot be trusted is marked ``suspect`` (it hit the token cap, the guard had
to collapse a repetition loop, its text compresses like a loop, or it ends in half a
character) for the engine to decode again (:meth:`AsrEngine.recover`).

Results go through the engine's hallucination guard, as the 30 s path's do (their text is
normalised later, by the text step). Used by :class:`~qa_pipeline.asr.engine.AsrEngine` (``asr.window: fitted``) and
the live service's :class:`~qa_pipeline.live.decoder.LiveDecoder`. Thread-safe.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..messages import SpeechSegment
from .guard import HallucinationGuard
from .result import MAX_TARGET_TOKENS, AsrResult, clean_raw, suspect_reason

if TYPE_CHECKING:
    from .config import AsrConfig

SAMPLE_RATE = 16000
HOP = 160  # samples per log-mel frame
TIME_PRECISION = 0.02  # seconds per Whisper timestamp token
MAX_WINDOW_S = 30
MAX_PROMPT_PART = 223  # faster-whisper's cap on hotword / previous-text prompt tokens


@dataclass(frozen=True, slots=True)
class FittedOptions:
    """How a fitted-window decode runs."""

    min_window_s: float = 10.0
    pad_s: float = 1.0
    beam_size: int = 5
    timestamps: bool = False  # decode in timestamp mode (timestamp tokens left out of the text)
    cut_at_end: bool = False  # timestamp mode: stop at the first timestamp at/after the end
    no_repeat_ngram_size: int = 0
    initial_prompt: str | None = None
    hotwords: str | None = None


def fitted_window(duration: float, min_window_s: float, pad_s: float) -> int:
    """Encoder window in whole seconds for an utterance of ``duration`` seconds."""
    want = max(min_window_s, duration + pad_s)
    return int(min(MAX_WINDOW_S, math.ceil(want)))


def cut_at_timestamp(tokens: Sequence[int], timestamp_begin: int, duration: float) -> list[int]:
    """Text tokens before the first timestamp at or after ``duration`` seconds."""
    out: list[int] = []
    for t in tokens:
        if t >= timestamp_begin:
            if (t - timestamp_begin) * TIME_PRECISION >= duration:
                break
            continue
        out.append(t)
    return out


def window_features(fe: Any, audio: np.ndarray, window_s: int) -> np.ndarray:
    """Log-mel of ``audio`` (cut to ``window_s`` seconds) in a ``window_s``-second encoder
    window. ``fe``: faster-whisper's feature extractor.

    Whisper's own 30 s window is built as faster-whisper builds it: the log-mel of the
    audio alone (its level floor set by the audio's loudest frame), zero frames after it.
    A shorter window gets the audio padded with silence, its log-mel at the floor. Measured
    (2026-12-07, int8 on an AVX512-VNNI/AMX CPU): at 30 s, zero frames read the shared zh
    clips at 0.234 pooled CER against 0.257 with silence; at 10-15 s, zero frames read a
    quiet 1.4 s customer turn of a live test call as nothing (or one character) where
    silence reads it, and were no better on the clips (0.288 vs 0.297 at 15 s)."""
    frames = window_s * SAMPLE_RATE // HOP
    a = audio[: window_s * SAMPLE_RATE].astype(np.float32, copy=False)
    if window_s < MAX_WINDOW_S:
        padded = np.zeros(window_s * SAMPLE_RATE, dtype=np.float32)
        padded[: len(a)] = a
        feats = fe(padded, padding=0)
        return np.ascontiguousarray(feats[:, :frames], dtype=np.float32)
    out = np.zeros((fe.mel_filters.shape[0], frames), dtype=np.float32)
    if len(a):
        feats = fe(a)[:, :-1]  # faster-whisper's 160-sample pad, its last frame dropped
        m = min(frames, feats.shape[1])
        out[:, :m] = feats[:, :m]
    return out


class AsrEngine(Protocol):
    """What a fitted decode uses of :class:`~qa_pipeline.asr.engine.AsrEngine` (which
    builds the decoder, so this module does not import it): the loaded faster-whisper
    model, the decode settings and the hallucination guard."""

    model: Any
    config: AsrConfig
    guard: HallucinationGuard


class FittedDecoder:
    """Decodes batches of segments on one loaded :class:`AsrEngine`'s model with a fitted
    encoder window. ``language: None`` in the engine's config = detected per segment."""

    def __init__(self, engine: AsrEngine, opts: FittedOptions) -> None:
        wm = engine.model
        self.engine = engine
        self.opts = opts
        self._ct2 = wm.model
        self._fe = wm.feature_extractor
        self._hf = wm.hf_tokenizer
        self._multilingual = bool(wm.model.is_multilingual)
        self._language = engine.config.language if self._multilingual else "en"
        self._tokenizers: dict[str, Any] = {}
        self._tokenizer(self._language or "en")  # an unknown language code fails here

    def _tokenizer(self, lang: str) -> Any:
        from faster_whisper.tokenizer import Tokenizer

        tok = self._tokenizers.get(lang)
        if tok is None:  # a harmless race: two threads may build the same tokenizer
            tok = Tokenizer(self._hf, self._multilingual, task="transcribe", language=lang)
            self._tokenizers[lang] = tok
        return tok

    def prompt(self, tok: Any) -> list[int]:
        """faster-whisper's prompt: [<|startofprev|> hotwords previous-text]
        <|startoftranscript|> <|lang|> <|transcribe|> [<|notimestamps|>]."""
        o = self.opts
        prompt: list[int] = []
        previous = tok.encode(" " + o.initial_prompt.strip()) if o.initial_prompt else []
        if previous or o.hotwords:
            prompt.append(tok.sot_prev)
            if o.hotwords:
                prompt.extend(tok.encode(" " + o.hotwords.strip())[:MAX_PROMPT_PART])
            prompt.extend(previous[-MAX_PROMPT_PART:])
        prompt.extend(tok.sot_sequence)
        if not o.timestamps:
            prompt.append(tok.no_timestamps)
        return prompt

    def features(self, audio: np.ndarray, window_s: int) -> np.ndarray:
        """Log-mel of ``audio`` in a ``window_s`` window (:func:`window_features`)."""
        return window_features(self._fe, audio, window_s)

    def max_new_tokens(self, duration: float) -> int:
        """The token cap of a segment: from its duration in whole seconds (so that segments
        of nearly the same length can share a batch), at most Whisper's sample length."""
        extra = 8 + (4 if self.opts.timestamps else 0)
        per_s = self.engine.config.max_tokens_per_second
        return min(MAX_TARGET_TOKENS, int(per_s * math.ceil(duration)) + extra)

    def batch_key(self, seg: SpeechSegment) -> tuple[int, int]:
        """(window, token cap): segments decode together only when both are equal."""
        d = len(seg.samples) / seg.sample_rate
        o = self.opts
        return fitted_window(d, o.min_window_s, o.pad_s), self.max_new_tokens(d)

    def decode(self, segments: Sequence[SpeechSegment]) -> list[AsrResult]:
        """Decode ``segments`` (blocking): one batched encode + generate per group of
        segments with the same window and token cap; results in input order."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, seg in enumerate(segments):
            groups.setdefault(self.batch_key(seg), []).append(i)
        out: list[AsrResult | None] = [None] * len(segments)
        for (window, max_new), idx in groups.items():
            for i, r in zip(
                idx, self._decode_group([segments[i] for i in idx], window, max_new), strict=True
            ):
                out[i] = r
        return [r for r in out if r is not None]

    def _decode_group(
        self, segments: Sequence[SpeechSegment], window: int, max_new: int
    ) -> list[AsrResult]:
        import ctranslate2

        o = self.opts
        t0 = time.perf_counter()
        audios = [s.samples.astype(np.float32, copy=False) for s in segments]
        durations = [len(a) / s.sample_rate for a, s in zip(audios, segments, strict=True)]
        feats = np.stack([self.features(a, window) for a in audios])
        encoded = self._ct2.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
        if self._language is None:
            detected = self._ct2.detect_language(encoded)
            langs = [d[0][0][2:-2] for d in detected]  # '<|zh|>' -> 'zh'
        else:
            langs = [self._language] * len(segments)
        toks = [self._tokenizer(lang) for lang in langs]
        prompts = [self.prompt(t) for t in toks]
        results = self._ct2.generate(
            encoded,
            prompts,
            beam_size=o.beam_size,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=o.no_repeat_ngram_size,
            max_length=max(len(p) for p in prompts) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=[-1],
            max_initial_timestamp_index=50,
        )
        share = (time.perf_counter() - t0) / len(segments)
        guard = self.engine.guard
        out: list[AsrResult] = []
        for seg, dur, res, tok, lang in zip(segments, durations, results, toks, langs, strict=True):
            ids = list(res.sequences_ids[0])
            tb = tok.timestamp_begin
            text_ids = cut_at_timestamp(ids, tb, dur) if o.cut_at_end else ids
            text_ids = [t for t in text_ids if t < tok.eot]  # no timestamps, no specials
            raw = tok.decode(text_ids).strip()
            n = max(1, len(ids))
            avg_lp = float(res.scores[0]) * n / (n + 1) if res.scores else -math.inf
            no_speech = float(res.no_speech_prob)
            guarded = guard.check(clean_raw(raw), no_speech_prob=no_speech, avg_logprob=avg_lp)
            out.append(
                AsrResult(
                    segment=seg,
                    text=guarded.text,
                    raw_text=raw,
                    confidence=round(math.exp(avg_lp), 4) if math.isfinite(avg_lp) else 0.0,
                    no_speech_prob=round(no_speech, 4),
                    language=lang,
                    tokens=len(text_ids),
                    seconds=share,
                    dropped_reason=guarded.dropped_reason,
                    suspect=suspect_reason(raw, guarded, capped=len(ids) >= max_new),
                )
            )
        return out

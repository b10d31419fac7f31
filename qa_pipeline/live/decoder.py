"""Live Whisper decoding on the shared model: the 30 s window, or a window fitted to the
utterance with queued utterances of all lines decoded as one batch.

* ``full``: :meth:`AsrEngine.transcribe_segment` per utterance (Whisper pads every
  utterance to 30 s; the encoder pass is ~0.7 s of one core whatever the utterance's
  length). The same decode as the recorded-call path.
* ``fitted``: log-mel of the utterance padded with silence to
  ``max(min_window_s, duration + pad_s)`` (rounded up to whole seconds, at most 30 s), one
  CTranslate2 ``encode`` + ``generate`` for a whole batch (each utterance padded to the
  longest in the batch). Optionally (``timestamps_cut``) decoding runs in timestamp mode and
  stops at the first timestamp at or after the utterance's end: Whisper sometimes writes the
  sentence again into the padding, and that copy is stamped past the end of the audio.
  Without it the engine's guard collapses a repeated sentence.

Both return :class:`~qa_pipeline.asr.engine.AsrResult` through the engine's hallucination
guard and text normalisation. Every method is blocking and thread-safe; call it from a
worker thread (see :mod:`.asr_worker`).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..asr.engine import MAX_TARGET_TOKENS, AsrEngine, AsrResult
from ..messages import SpeechSegment
from ..text import normalise

log = logging.getLogger("qa_pipeline.live.asr")

SAMPLE_RATE = 16000
HOP = 160  # samples per log-mel frame
TIME_PRECISION = 0.02  # seconds per Whisper timestamp token


@dataclass(frozen=True, slots=True)
class DecodeOptions:
    """How the live worker decodes (from ``live:`` and ``asr:`` of the serve config)."""

    window: str = "fitted"  # "full" | "fitted"
    min_window_s: float = 10.0
    pad_s: float = 1.0
    beam_size: int = 1
    timestamps_cut: bool = False
    no_repeat_ngram_size: int = 0


def fitted_window(duration: float, opts: DecodeOptions) -> int:
    """Encoder window in whole seconds for an utterance of ``duration`` seconds."""
    want = max(opts.min_window_s, duration + opts.pad_s)
    return int(min(30, math.ceil(want)))


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


class LiveDecoder:
    """Decodes batches of speech segments on one loaded :class:`AsrEngine`."""

    def __init__(self, engine: AsrEngine, opts: DecodeOptions) -> None:
        if opts.window not in ("full", "fitted"):
            raise ValueError(f"window must be 'full' or 'fitted', not {opts.window!r}")
        self.opts = opts
        self.engine = (
            engine
            if engine.config.beam_size == opts.beam_size
            else engine.with_options(beam_size=opts.beam_size)
        )
        self._fitted_ready = False

    @property
    def settings(self) -> dict[str, object]:
        s = dict(self.engine.settings)
        s.update(
            window=self.opts.window,
            min_window_s=self.opts.min_window_s,
            pad_s=self.opts.pad_s,
            timestamps_cut=self.opts.timestamps_cut,
        )
        return s

    def _prepare_fitted(self) -> None:
        from faster_whisper.tokenizer import Tokenizer

        wm = self.engine.model
        c = self.engine.config
        self._ct2 = wm.model
        self._fe = wm.feature_extractor
        self._tok = Tokenizer(
            wm.hf_tokenizer, wm.model.is_multilingual, task="transcribe", language=c.language
        )
        prompt = list(self._tok.sot_sequence)
        if not self.opts.timestamps_cut:
            prompt.append(self._tok.no_timestamps)
        self._prompt = prompt
        self._suppress = [-1]
        self._fitted_ready = True

    def decode(self, segments: Sequence[SpeechSegment]) -> list[AsrResult]:
        """Decode ``segments`` (blocking). ``full``: one after the other on this thread;
        ``fitted``: one batched encode + generate."""
        if not segments:
            return []
        if self.opts.window == "full":
            return [self.engine.transcribe_segment(s) for s in segments]
        return self._decode_fitted(segments)

    def _features(self, audio: np.ndarray, window_s: int) -> np.ndarray:
        n = window_s * SAMPLE_RATE
        padded = np.zeros(n, dtype=np.float32)
        a = audio[:n]
        padded[: len(a)] = a
        feats = self._fe(padded, padding=0)
        return np.ascontiguousarray(feats[:, : window_s * SAMPLE_RATE // HOP], dtype=np.float32)

    def _decode_fitted(self, segments: Sequence[SpeechSegment]) -> list[AsrResult]:
        import ctranslate2

        if not self._fitted_ready:
            self._prepare_fitted()
        c = self.engine.config
        t0 = time.perf_counter()
        audios = [s.samples.astype(np.float32, copy=False) for s in segments]
        durations = [len(a) / s.sample_rate for a, s in zip(audios, segments, strict=True)]
        window = max(fitted_window(d, self.opts) for d in durations)
        feats = np.stack([self._features(a, window) for a in audios])
        max_new = min(
            MAX_TARGET_TOKENS,
            int(c.max_tokens_per_second * max(durations))
            + 8
            + (4 if self.opts.timestamps_cut else 0),
        )
        encoded = self._ct2.encode(ctranslate2.StorageView.from_array(feats), to_cpu=False)
        results = self._ct2.generate(
            encoded,
            [self._prompt] * len(segments),
            beam_size=self.opts.beam_size,
            patience=1.0,
            length_penalty=1.0,
            repetition_penalty=1.0,
            no_repeat_ngram_size=self.opts.no_repeat_ngram_size,
            max_length=len(self._prompt) + max_new,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=self._suppress,
            max_initial_timestamp_index=50,
        )
        seconds = time.perf_counter() - t0
        share = seconds / len(segments)
        out: list[AsrResult] = []
        tb = self._tok.timestamp_begin
        for seg, dur, res in zip(segments, durations, results, strict=True):
            toks = list(res.sequences_ids[0])
            text_toks = cut_at_timestamp(toks, tb, dur) if self.opts.timestamps_cut else toks
            text_toks = [t for t in text_toks if t < self._tok.eot]
            raw = self._tok.decode(text_toks).strip()
            n = max(1, len(toks))
            avg_lp = float(res.scores[0]) * n / (n + 1) if res.scores else -math.inf
            no_speech = float(res.no_speech_prob)
            guarded = self.engine.guard.check(raw, no_speech_prob=no_speech, avg_logprob=avg_lp)
            text = normalise(guarded.text) if guarded.text else ""
            out.append(
                AsrResult(
                    segment=seg,
                    text=text,
                    raw_text=raw,
                    confidence=round(math.exp(avg_lp), 4) if math.isfinite(avg_lp) else 0.0,
                    no_speech_prob=round(no_speech, 4),
                    language=c.language,
                    tokens=len(text_toks),
                    seconds=share,
                    dropped_reason=guarded.dropped_reason,
                )
            )
        return out

"""Live Whisper decoding on the shared model: the 30 s window, or a window fitted to the
utterance with queued utterances of all lines decoded as one batch.

* ``full``: :meth:`AsrEngine.transcribe_full` per utterance (Whisper pads every utterance
  to 30 s; the encoder pass is ~0.7 s of one core whatever the utterance's length). The
  recorded-call path's ``asr.window: full`` decode.
* ``fitted``: :class:`~qa_pipeline.asr.fitted.FittedDecoder` (shared with the recorded-call
  path): log-mel of the utterance padded with silence to ``max(min_window_s, duration +
  pad_s)`` (rounded up to whole seconds, at most 30 s), one CTranslate2 ``encode`` +
  ``generate`` per group of queued utterances with the same window and token cap (an
  utterance's text never depends on what it was queued with).
  Optionally (``timestamps_cut``) decoding runs in timestamp mode and stops at the first
  timestamp at or after the utterance's end: Whisper sometimes writes the sentence again
  into the padding, and that copy is stamped past the end of the audio. Without it the
  engine's guard collapses a repeated sentence. Live decoding is told the same terms as
  recorded calls (``asr.hotwords`` and the rule pack's bias, ``asr.bias``) but uses no prompt
  or temperature fallback (``asr.initial_prompt``, ``asr.temperatures``),
  except that a decode that loops, hits its token cap or breaks a character is decoded again
  (:meth:`AsrEngine.recover <qa_pipeline.asr.engine.AsrEngine.recover>`), as on recorded calls.

Both return :class:`~qa_pipeline.asr.result.AsrResult` through the engine's hallucination
guard (the session's text step normalises the text). Every method is blocking and thread-safe; call it from a
worker thread (see :mod:`.asr_worker`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from ..asr import fitted as _fitted
from ..asr.engine import AsrEngine
from ..asr.fitted import FittedDecoder, FittedOptions, cut_at_timestamp
from ..asr.result import AsrResult
from ..messages import SpeechSegment

__all__ = ["DecodeOptions", "LiveDecoder", "cut_at_timestamp", "fitted_window"]

log = logging.getLogger("qa_pipeline.live.asr")


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
    return _fitted.fitted_window(duration, opts.min_window_s, opts.pad_s)


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
        self._fitted: FittedDecoder | None = None

    @property
    def settings(self) -> dict[str, object]:
        s = dict(self.engine.settings)
        s.pop("min_window_seconds", None)  # the recorded-call window; live has its own
        s.update(
            window=self.opts.window,
            min_window_s=self.opts.min_window_s,
            pad_s=self.opts.pad_s,
            timestamps_cut=self.opts.timestamps_cut,
        )
        return s

    def _fitted_decoder(self) -> FittedDecoder:
        if self._fitted is None:
            o = self.opts
            self._fitted = FittedDecoder(
                self.engine,
                FittedOptions(
                    min_window_s=o.min_window_s,
                    pad_s=o.pad_s,
                    beam_size=o.beam_size,
                    # Whisper's timestamp mode as recorded calls decode (asr.timestamps)
                    timestamps=o.timestamps_cut or self.engine.config.timestamps,
                    cut_at_end=o.timestamps_cut,
                    no_repeat_ngram_size=o.no_repeat_ngram_size,
                    hotwords=self.engine._hotwords,
                ),
            )
        return self._fitted

    def decode(self, segments: Sequence[SpeechSegment]) -> list[AsrResult]:
        """Decode ``segments`` (blocking). ``full``: one after the other on this thread;
        ``fitted``: batched encode + generate. Suspect decodes are decoded again."""
        if not segments:
            return []
        if self.opts.window == "full":
            results = [self.engine.transcribe_full(s) for s in segments]
        else:
            results = self._fitted_decoder().decode(segments)
        return [self.engine.recover(r) if r.suspect else r for r in results]

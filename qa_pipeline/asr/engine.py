"""Whisper ASR over VAD segments: one shared model, N parallel decodes, guarded output.

Each :class:`~qa_pipeline.messages.SpeechSegment` (at most 30 s, cut by the VAD) is one
decode: this project's decode with an encoder window of at least ``asr.min_window_seconds``
(``asr.window: fitted``, the default; :mod:`.fitted`), or faster-whisper's own decode in
Whisper's 30 s window (``asr.window: full``). The default minimum is 30 s: on CPU a shorter
window roughly halves the cost of a call's turns at 15 s, but costs accuracy by an amount
that depends on the CPU's int8 kernels (``benchmarks/README.md``). Decoding is guarded against
runaway output: a token cap per audio second, bounded temperature fallback (at most three
temperatures; one = no fallback), no conditioning on previous text, and the
:mod:`hallucination guard <.guard>`. A decode that loops, hits the token cap, needs the
guard to collapse a repetition or ends in half a character is not cut and kept: it is
decoded again (:meth:`AsrEngine.recover`: Whisper's 30 s window with a repetition
penalty, then faster-whisper's temperature fallback), and dropped (``dropped_reason: "loop"``) only when that fails too.
Text never holds U+FFFD (a multi-byte character cut between tokens); it is the guarded
decode as Whisper wrote it, normalised later by the text step (:mod:`qa_pipeline.text`).
``workers`` decodes run in parallel on one CTranslate2 model (``num_workers``), each with
``threads_per_worker`` threads: on two cores, two one-thread workers give the most
throughput (see ``../shared/design/perf-notes.md``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ModelError
from ..messages import SpeechSegment
from .bias import bias_prompt, bias_version, told_terms
from .config import AsrConfig
from .guard import PROMPT_ECHO, HallucinationGuard
from .model import ModelInfo, resolve_model
from .result import (
    COMPRESSION_RATIO_MAX,
    MAX_TARGET_TOKENS,
    AsrResult,
    clean_raw,
    suspect_reason,
)
from .result import compression_ratio as _compression_ratio

if TYPE_CHECKING:
    from .fitted import FittedDecoder

log = logging.getLogger("qa_pipeline.asr")

FITTED_PAD_S = 1.0  # fitted window >= segment + this (recorded calls)
RECOVERY_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # faster-whisper's default ladder
RECOVERY_REPETITION_PENALTY = 1.2  # the deterministic retry of a looping decode
_RECOVERY_LOCK = threading.Lock()  # one sampling decode at a time (the seed is process-wide)


def pick_device(device: str) -> str:
    if device != "auto":
        return device
    try:
        import ctranslate2

        return "cuda" if ctranslate2.get_cuda_device_count() > 0 else "cpu"
    except (ImportError, RuntimeError):
        return "cpu"


def _guard_for(config: AsrConfig, told: tuple[str, ...] = ()) -> HallucinationGuard:
    return HallucinationGuard(
        config.hallucinations,
        max_repeats=config.repetition_max,
        no_speech_threshold=config.no_speech_threshold,
        log_prob_threshold=config.log_prob_threshold,
        prompt_terms=told,
    )


def decode_settings(c: AsrConfig) -> dict[str, object]:
    """The configured decode options that determine a transcript (part of
    :attr:`AsrEngine.settings` and of the transcript cache key). The window appears only
    when it is ``fitted``: transcripts stored before the option existed used the full
    window, and their key stays valid for ``window: full``."""
    s: dict[str, object] = {
        "language": c.language,
        "beam_size": c.beam_size,
        "temperatures": list(c.temperatures),
        "max_tokens_per_second": c.max_tokens_per_second,
        "initial_prompt": c.initial_prompt,
        "timestamps": c.timestamps,
        "hotwords": list(c.hotwords),
    }
    if c.window == "fitted":
        s.update(window="fitted", min_window_seconds=c.min_window_seconds)
    if c.bias != "off":  # the list itself is provenance (bias_version), not part of the key
        s["bias"] = c.bias
    return s


def _fitted_for(engine: AsrEngine) -> FittedDecoder | None:
    c = engine.config
    if c.window != "fitted":
        return None
    from .fitted import FittedDecoder, FittedOptions

    return FittedDecoder(
        engine,
        FittedOptions(
            min_window_s=c.min_window_seconds,
            pad_s=FITTED_PAD_S,
            beam_size=c.beam_size,
            timestamps=c.timestamps,
            initial_prompt=c.initial_prompt,
            hotwords=engine._hotwords,
        ),
    )


class AsrEngine:
    """Loads the model once; transcribes segments, several at a time."""

    def __init__(
        self,
        config: AsrConfig,
        model_info: ModelInfo | None = None,
        bias: tuple[str, ...] = (),
    ) -> None:
        """``bias``: terms from the rule pack (:func:`qa_pipeline.rules.terms.pack_terms`), told to the
        decoder after ``config.hotwords`` unless ``config.bias`` is ``"off"``."""
        self.config = config
        self.bias = bias
        self.model_info = model_info or resolve_model(config.model, config.cache_dir)
        self.device = pick_device(config.device)
        compute = config.compute_type
        if compute == "default":
            compute = "float16" if self.device == "cuda" else "int8"
        self.compute_type = compute
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelError("faster-whisper is not installed: pip install qa-pipeline") from e
        t0 = time.perf_counter()
        try:
            self.model = WhisperModel(
                str(self.model_info.path),
                device=self.device,
                compute_type=compute,
                cpu_threads=config.threads_per_worker,
                num_workers=config.workers,
                local_files_only=True,
            )
        except (RuntimeError, ValueError, OSError) as e:
            raise ModelError(
                f"cannot load Whisper model from {self.model_info.path}: {e}. "
                "If it is the embedded model, run 'qa-pipeline model install --force'."
            ) from e
        self.load_seconds = time.perf_counter() - t0
        self._hotwords = self._prompt_terms()
        self.guard = _guard_for(config, self._terms())
        self._fitted = _fitted_for(self)
        log.info(
            "loaded %s on %s/%s in %.2fs",
            self.model_info.name,
            self.device,
            compute,
            self.load_seconds,
        )

    def with_options(self, **changes: object) -> AsrEngine:
        """Another engine on the same loaded model with other decode options (language,
        beam, prompt, ...). Options that pick or load the model cannot change."""
        fixed = {"model", "device", "compute_type", "workers", "threads_per_worker", "cache_dir"}
        if bad := fixed & changes.keys():
            raise ValueError(f"{', '.join(sorted(bad))} need a new engine (they load the model)")
        return self._clone(self.config.model_copy(update=changes), self.bias)

    def with_bias(self, bias: tuple[str, ...]) -> AsrEngine:
        """Another engine on the same loaded model biased to other terms."""
        return self._clone(self.config, bias)

    def _clone(self, config: AsrConfig, bias: tuple[str, ...]) -> AsrEngine:
        clone = object.__new__(AsrEngine)
        clone.__dict__.update(self.__dict__)
        clone.config = config
        clone.bias = bias
        clone._hotwords = clone._prompt_terms()
        clone.guard = _guard_for(config, clone._terms())
        clone._fitted = _fitted_for(clone)
        return clone

    def _terms(self) -> tuple[str, ...]:
        return told_terms(self.config, self.bias)

    def _prompt_terms(self) -> str | None:
        return bias_prompt(self._terms())

    @property
    def provenance(self) -> dict[str, object]:
        """What a transcript records besides :attr:`settings` (not part of the cache key):
        the version of the bias list it was decoded with."""
        return {"bias_version": bias_version(self._terms())}

    @property
    def settings(self) -> dict[str, object]:
        """The settings that determine the transcript (for caching and provenance)."""
        return {
            "model": self.model_info.name,
            "model_sha256": self.model_info.sha256,
            "compute_type": self.compute_type,
            **decode_settings(self.config),
        }

    def transcribe_segment(self, seg: SpeechSegment) -> AsrResult:
        """Decode one segment with the configured window (blocking; safe to call from
        several threads). The fitted window decodes at temperature 0 (beam search); with
        temperature fallback configured, a decode that fails the fallback thresholds is
        decoded again the full way (30 s window, faster-whisper's bounded fallback), as is
        every segment when the first temperature is above 0. A decode that is
        :attr:`~AsrResult.suspect` either way is :meth:`recovered <recover>`."""
        c = self.config
        if self._fitted is None or c.temperatures[0] > 0:
            r = self.transcribe_full(seg)
            return self.recover(r) if r.suspect else r
        return self._after_fitted(self._fitted.decode([seg])[0])

    def _after_fitted(self, r: AsrResult) -> AsrResult:
        """A fitted-window decode decoded again where :meth:`transcribe_segment` says."""
        c = self.config
        if (
            r.suspect is None
            and len(c.temperatures) > 1
            and (
                _compression_ratio(r.raw_text) > COMPRESSION_RATIO_MAX
                or r.confidence < math.exp(c.log_prob_threshold)
            )
        ):
            full = self.transcribe_full(r.segment)
            r = replace(full, seconds=full.seconds + r.seconds)
        return self.recover(r) if r.suspect else r

    def transcribe_batch(self, segments: Iterable[SpeechSegment]) -> list[AsrResult]:
        """:meth:`transcribe_segment` of each segment, in input order, with the fitted
        window's first pass batched across them (one encode and generate per group of the
        same window and token cap, :meth:`FittedDecoder.decode
        <qa_pipeline.asr.fitted.FittedDecoder.decode>`: a segment's text does not depend
        on its neighbours); second passes (fallback, recovery) one by one. A GPU's way to
        decode many calls' segments; on CPU :meth:`transcribe_many`'s parallel workers
        are faster. Without the fitted window: :meth:`transcribe_many`."""
        segs = list(segments)
        if self._fitted is None or self.config.temperatures[0] > 0 or len(segs) <= 1:
            return list(self.transcribe_many(segs))
        return [self._after_fitted(r) for r in self._fitted.decode(segs)]

    def recover(self, first: AsrResult) -> AsrResult:
        """Decode a :attr:`~AsrResult.suspect` result's segment again: Whisper's 30 s window
        at temperature 0 with a repetition penalty (:data:`RECOVERY_REPETITION_PENALTY`:
        deterministic, so the same audio always reads the same), and only if that is
        suspect too, faster-whisper's temperature fallback (0.0 to 1.0, sampling). Returns
        the new decode when it can be trusted, else the segment dropped as ``"loop"`` (its
        text kept in ``raw_text`` for inspection). A retry that only reached the token cap,
        without a loop, is kept: dense speech.

        Sampling first (as before 2026-12-07) was not repeatable: CTranslate2's random
        generators live in its worker threads, so seeding from the audio did not fix the
        draws, and a looping far-field clip read 很好好了 or 很好的 from run to run. The
        penalty reads that clip with 20 errors of 37, as the plain loop does.

        A decode that only copied the prompt (``prompt_echo``: the company name ×13 for an
        agent's farewell on a corpus call) is decoded without the prompt instead (the
        farewell then read 祝我愉快…; a burst of noise read as 星辰，星辰，星辰 came out as
        no speech)."""
        import ctranslate2

        seg = first.segment
        if first.suspect == PROMPT_ECHO:  # the same decode without the prompt it copied
            bare = self._clone(self.config.model_copy(update={"hotwords": ()}), ())
            retry = bare.transcribe_full(seg, temperatures=(0.0,))
            retry = replace(retry, seconds=first.seconds + retry.seconds)
            if retry.suspect is None:
                return retry  # read, or dropped (no speech, hallucination) on its own
            return bare.recover(retry)
        retry = self.transcribe_full(
            seg, temperatures=(0.0,), repetition_penalty=RECOVERY_REPETITION_PENALTY
        )
        seconds = first.seconds + retry.seconds
        if retry.suspect not in (None, "token_cap"):
            with _RECOVERY_LOCK:  # the last resort samples: one at a time, seeded
                ctranslate2.set_random_seed(zlib.crc32(seg.samples.tobytes()) & 0x7FFFFFFF)
                retry = self.transcribe_full(seg, temperatures=RECOVERY_TEMPERATURES)
            seconds += retry.seconds
        log.debug(
            "%s %.2f-%.2f s: %s decode recovered (%s)",
            first.segment.call_id,
            first.segment.start,
            first.segment.end,
            first.suspect,
            retry.suspect or "ok",
        )
        if retry.suspect in (None, "token_cap"):
            return replace(retry, seconds=seconds, suspect=None)
        return replace(first, text="", seconds=seconds, dropped_reason="loop", suspect=None)

    def transcribe_full(
        self,
        seg: SpeechSegment,
        temperatures: tuple[float, ...] | None = None,
        repetition_penalty: float = 1.0,
    ) -> AsrResult:
        """Decode one segment with Whisper's 30 s window (faster-whisper's decode), with the
        configured temperatures unless others are given (more than one = fallback on
        faster-whisper's compression-ratio and log-prob thresholds)."""
        c = self.config
        temps = tuple(temperatures or c.temperatures)
        audio = seg.samples.astype(np.float32, copy=False)
        duration = len(audio) / seg.sample_rate
        max_new = min(MAX_TARGET_TOKENS, int(c.max_tokens_per_second * duration) + 8)
        t0 = time.perf_counter()
        segments, info = self.model.transcribe(
            audio,
            language=c.language,
            task="transcribe",
            beam_size=c.beam_size,
            temperature=list(temps),
            condition_on_previous_text=False,
            initial_prompt=c.initial_prompt,
            hotwords=self._hotwords,
            without_timestamps=not c.timestamps,
            max_new_tokens=max_new,
            no_speech_threshold=None,
            log_prob_threshold=c.log_prob_threshold if len(temps) > 1 else None,
            compression_ratio_threshold=COMPRESSION_RATIO_MAX if len(temps) > 1 else None,
            vad_filter=False,
            suppress_blank=True,
            repetition_penalty=repetition_penalty,
        )
        parts = list(segments)  # decoding happens here, in this thread
        seconds = time.perf_counter() - t0
        raw = "".join(p.text for p in parts).strip()
        tokens = sum(len(p.tokens) for p in parts)
        if parts:
            weights = [max(1, len(p.tokens)) for p in parts]
            avg_lp = sum(p.avg_logprob * w for p, w in zip(parts, weights, strict=True)) / sum(
                weights
            )
            no_speech = max(p.no_speech_prob for p in parts)
        else:
            avg_lp, no_speech = -math.inf, 1.0
        guarded = self.guard.check(clean_raw(raw), no_speech_prob=no_speech, avg_logprob=avg_lp)
        text = guarded.text
        # stopped at the cap (for a segment within one window; a long decode that went on
        # from a timestamp may also reach it: at worst one more decode)
        capped = tokens >= max_new
        return AsrResult(
            segment=seg,
            text=text,
            raw_text=raw,
            confidence=round(math.exp(avg_lp), 4) if math.isfinite(avg_lp) else 0.0,
            no_speech_prob=round(float(no_speech), 4),
            language=info.language,
            tokens=tokens,
            seconds=seconds,
            dropped_reason=guarded.dropped_reason,
            suspect=suspect_reason(raw, guarded, capped=capped),
        )

    def transcribe_many(
        self,
        segments: Iterable[SpeechSegment],
        on_result: Callable[[AsrResult], None] | None = None,
    ) -> Iterator[AsrResult]:
        """Decode segments on ``workers`` threads; yields results in input order."""
        segs = list(segments)
        if self.config.workers <= 1 or len(segs) <= 1:
            for s in segs:
                r = self.transcribe_segment(s)
                if on_result:
                    on_result(r)
                yield r
            return
        with ThreadPoolExecutor(self.config.workers, thread_name_prefix="asr") as pool:
            futures = [pool.submit(self.transcribe_segment, s) for s in segs]
            if on_result:
                for f in futures:
                    f.add_done_callback(lambda fut: on_result(fut.result()))
            for f in futures:
                yield f.result()

"""The recorded-call path: file -> VAD -> ASR -> text (normalised utterances) -> rules -> scorecard.

Live lines use the same stages fed incrementally; here a whole file is fed in one go.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from dataclasses import replace as replace_stats
from dataclasses import replace as replace_transcript
from pathlib import Path
from typing import Any

from . import roles
from .asr.engine import AsrEngine
from .asr.result import AsrResult
from .audio import TARGET_RATE, CallAudio, asr_cut, channel_end, load_call, resample_cut
from .callinfo import read_call_info
from .config import PipelineConfig
from .errors import QAError
from .messages import CallEnded, CallInfo, Scorecard, SpeechSegment, replace
from .privacy import Redactor, no_redaction, redact_call, redact_utterances
from .text import utterances
from .transcript import Transcript
from .vad import merge_by_start, merge_turns, segment_channel

log = logging.getLogger("qa_pipeline")

ProgressFn = Callable[[str, float, float], None]
"""progress(stage, done, total): seconds of speech decoded so far out of the total."""


@dataclass(frozen=True, slots=True)
class AsrStats:
    audio_seconds: float
    speech_seconds: float
    asr_seconds: float
    wall_seconds: float
    segments: int
    dropped: tuple[tuple[str, int], ...] = ()
    cached: bool = False  # the transcript came from the store: no ASR ran
    verify_seconds: float = 0.0  # of asr_seconds: verification decodes (verify.py)

    @property
    def rtf(self) -> float:
        """Wall time of the whole transcription / call duration."""
        return self.wall_seconds / self.audio_seconds if self.audio_seconds else 0.0


@dataclass(frozen=True, slots=True, eq=False)
class PreparedCall:
    """A decoded, segmented recording waiting for the ASR."""

    path: Path
    call: CallInfo
    audio: CallAudio
    segments: tuple[SpeechSegment, ...]
    started: float
    nonspeech: int = 0  # VAD segments the non-speech screen dropped before the ASR
    mono: Any = None  # a mono call's speaker turns (roles.MonoTurns), audio.mono_roles: auto


@dataclass(frozen=True, slots=True)
class CallResult:
    transcript: Transcript
    stats: AsrStats
    scorecard: Scorecard | None = None


def audio_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Pipeline:
    """Holds the loaded model; transcribes and scores recorded calls."""

    def __init__(self, config: PipelineConfig, engine: AsrEngine | None = None) -> None:
        self.config = config
        self._engine = engine
        self._pack: Any = None
        # personal data masked in every transcript and call this pipeline hands out
        self.redactor = Redactor(config.privacy)

    @property
    def engine(self) -> AsrEngine:
        if self._engine is None:
            self._engine = AsrEngine(self.config.asr, bias=self.bias_terms())
        return self._engine

    def bias_terms(self, pack: Any = None) -> tuple[str, ...]:
        """The rule pack's decoder bias (company name, required agent phrases): of
        ``pack``, else of the configured pack; () when ``asr.bias`` is off."""
        if self.config.asr.bias == "off":
            return ()
        from .rules.terms import pack_terms

        return tuple(pack_terms(pack if pack is not None else self.pack(), self.config.asr.bias))

    def for_pack(self, pack: Any) -> Pipeline:
        """This pipeline (same loaded model) with the decoder biased to ``pack`` and its
        required phrases verified against it."""
        if pack is self._pack:
            return self
        terms = self.bias_terms(pack)
        if self._engine is None:
            pipe = Pipeline(self.config, engine=AsrEngine(self.config.asr, bias=terms))
        elif terms == self._engine.bias:
            pipe = Pipeline(self.config, engine=self._engine)
        else:
            pipe = Pipeline(self.config, engine=self._engine.with_bias(terms))
        pipe._pack = pack
        pipe.redactor = self.redactor
        return pipe

    def segment(
        self, audio: CallAudio, call_id: str, rejected: Counter[str] | None = None
    ) -> list[SpeechSegment]:
        """VAD per channel, then same-channel segments joined into turns. Segments the
        non-speech screen drops are counted by reason into ``rejected`` when given."""
        segments = merge_by_start(
            segment_channel(
                samples,
                self.config.vad,
                call_id=call_id,
                channel=ch,
                role=audio.roles[ch],
                sample_rate=audio.sample_rate,
                rejected=rejected,
            )
            for ch, samples in enumerate(audio.channels)
        )
        return merge_turns(
            segments,
            audio.channels,
            max_gap_s=self.config.vad.turn_gap_s,
            max_len_s=self.config.vad.max_utterance_s,
            sample_rate=audio.sample_rate,
        )

    def prepare(self, path: str | Path, call: CallInfo | None = None) -> PreparedCall:
        """Decode, check and segment a recording (everything before the ASR)."""
        p = Path(path)
        t0 = time.perf_counter()
        audio = load_call(
            p, self.config.audio.channels, min_level_dbfs=self.config.audio.min_level_dbfs
        )
        info = redact_call(_with_roles(call or read_call_info(p), audio), self.redactor)
        rejected: Counter[str] = Counter()
        mono = None
        if roles.applies(self.config, len(audio.channels)):
            mono = roles.speaker_turns(
                audio.channels[0], self.config, call_id=info.call_id, rejected=rejected
            )
            segments = mono.segments
        else:
            segments = tuple(self.segment(audio, info.call_id, rejected))
        if audio.source_channels is not None:
            segments = tuple(_from_source(s, audio) for s in segments)
        return PreparedCall(p, info, audio, segments, t0, sum(rejected.values()), mono)

    def assemble(self, prep: PreparedCall, results: list[AsrResult]) -> CallResult:
        """Turn a call's ASR results into its transcript and stats.

        The transcript leaves redacted (``privacy:``). Its utterances are redacted last,
        after the steps that read them here in the process: naming a mono call's voices and
        the verification decode, which weighs what Whisper heard, digits included, against
        the audio (a mask in the heard text would tilt that comparison)."""
        dropped: dict[str, int] = {"nonspeech": prep.nonspeech} if prep.nonspeech else {}
        for r in results:
            if r.dropped_reason:
                dropped[r.dropped_reason] = dropped.get(r.dropped_reason, 0) + 1
        audio = prep.audio
        stats = AsrStats(
            audio_seconds=audio.duration,
            speech_seconds=sum(s.duration for s in prep.segments),
            asr_seconds=sum(r.seconds for r in results),
            wall_seconds=time.perf_counter() - prep.started,
            segments=len(prep.segments),
            dropped=tuple(sorted(dropped.items())),
        )
        info = prep.call
        transcript = Transcript(
            call=info,
            utterances=tuple(utterances(results, no_redaction())),
            ended=CallEnded(
                call_id=info.call_id,
                end=audio.duration,
                # a side that hung up before the recording stopped: its audio ends there
                channel_ends=tuple(channel_end(ch, audio.sample_rate) for ch in audio.channels),
            ),
            asr=tuple(sorted({**self.engine.settings, **self.engine.provenance}.items())),
        )
        if prep.mono is not None:
            transcript = roles.name_transcript(transcript, prep.mono, self.pack())
            if prep.mono.two_voices and dict(transcript.asr).get("roles") == "unknown":
                # the voices were split into turns only to name them, and naming failed:
                # decode the channel's ordinary turns instead (a sentence cut at a change
                # of voice loses words: issue #13, never worse than plain Whisper)
                prep, results, transcript = self._unsplit(prep, transcript)
                stats = replace_stats(
                    stats,
                    speech_seconds=sum(s.duration for s in prep.segments),
                    asr_seconds=sum(r.seconds for r in results),
                    segments=len(prep.segments),
                    wall_seconds=time.perf_counter() - prep.started,
                )
        # nothing decoded (silence, non-speech): nothing to verify; the phrases are Mandarin
        if results and self.config.asr.verify and self._verifies():
            t1 = time.perf_counter()
            transcript = self.verify(transcript, results)
            spent = time.perf_counter() - t1
            stats = replace_stats(
                stats, asr_seconds=stats.asr_seconds + spent, verify_seconds=spent,
                wall_seconds=time.perf_counter() - prep.started,
            )  # fmt: skip
        transcript = redact_utterances(transcript, self.redactor)  # its call: in prepare
        return CallResult(transcript=transcript, stats=stats)

    def _unsplit(
        self, prep: PreparedCall, named: Transcript
    ) -> tuple[PreparedCall, list[AsrResult], Transcript]:
        """A mono call whose two voices could not be named, transcribed again from its
        channel's ordinary turns (roles stay unknown, ``roles_detail`` kept)."""
        audio = prep.audio
        turns = tuple(
            roles.channel_turns(
                audio.channels[0], self.config, call_id=prep.call.call_id,
                sample_rate=audio.sample_rate,
            )
        )  # fmt: skip
        results = list(self.engine.transcribe_many(turns))
        prep = replace_stats(prep, segments=turns)
        transcript = replace_transcript(
            named, utterances=tuple(utterances(results, no_redaction()))
        )
        return prep, results, transcript

    def _verifies(self) -> bool:
        eng = self.engine.config
        return bool(eng.verify) and eng.language in ("zh", None)

    def verify(self, transcript: Transcript, results: list[AsrResult]) -> Transcript:
        """The transcript with the required phrases a targeted second decode verifies
        (:mod:`.verify`; only where a ``require`` rule on utterances is not met), and
        the version of the phrase lists in its provenance."""
        from .asr.result import kept_in_order
        from .verify import verify_transcript, verify_version

        pack = self.pack()
        kept = kept_in_order(results)
        segments = {i: r.segment for i, r in enumerate(kept)}
        margin = self.config.asr.verify_margin
        out = verify_transcript(self.engine, pack, transcript, segments, margin)
        asr = {**dict(out.asr), "verify_version": verify_version(pack, margin)}
        return replace_transcript(out, asr=tuple(sorted(asr.items())))

    def pack(self) -> Any:
        """The configured rule pack, loaded once: the decoder's bias and the naming of a
        mono call's voices both read it."""
        if self._pack is None:
            from .rules import load_pack

            self._pack = load_pack(self.config.rules.pack, self.config.rules.settings or None)
        return self._pack

    def transcribe(
        self,
        path: str | Path,
        *,
        call: CallInfo | None = None,
        progress: ProgressFn | None = None,
    ) -> CallResult:
        """Transcribe one recording; its segments are decoded on all workers."""
        prep = self.prepare(path, call)
        total = sum(s.duration for s in prep.segments)
        done = 0.0
        if progress:
            progress("asr", 0.0, total)

        def on_result(r: AsrResult) -> None:
            nonlocal done
            done += r.segment.duration
            if progress:
                progress("asr", done, total)

        results = list(self.engine.transcribe_many(prep.segments, on_result=on_result))
        return self.assemble(prep, results)

    def transcribe_paths(
        self, paths: Iterable[str | Path], *, batch_files: int = 8
    ) -> Iterator[tuple[Path, CallResult | QAError]]:
        """Transcribe many recordings, keeping every worker busy across file boundaries
        (a file with one utterance would otherwise use one core). Yields each path with
        its result, or with the error that made it unusable; one bad file never stops
        the others."""
        pending: list[Path] = []
        for path in paths:
            pending.append(Path(path))
            if len(pending) >= batch_files:
                yield from self._batch(pending)
                pending = []
        if pending:
            yield from self._batch(pending)

    def _batch(self, paths: list[Path]) -> Iterator[tuple[Path, CallResult | QAError]]:
        prepared: list[tuple[Path, PreparedCall | QAError]] = []
        for p in paths:
            try:
                prepared.append((p, self.prepare(p)))
            except QAError as e:
                prepared.append((p, e))
        good = [x for _, x in prepared if isinstance(x, PreparedCall)]
        segments = [s for prep in good for s in prep.segments]
        results = iter(self.engine.transcribe_many(segments))
        for p, prep in prepared:
            if isinstance(prep, QAError):
                yield p, prep
                continue
            mine = [next(results) for _ in prep.segments]
            yield p, self.assemble(prep, mine)

    def score(
        self,
        path: str | Path,
        *,
        pack: Any = None,
        call: CallInfo | None = None,
        progress: ProgressFn | None = None,
        store: Any = None,
    ) -> CallResult:
        """Transcribe (or take the stored transcript) and score a recording.

        With a :class:`~qa_pipeline.store.Store`, a transcript already made from the same
        audio with the same settings is reused (no ASR), and the transcript and the
        scorecard are kept in the store."""
        from .rules import load_pack, score_transcript

        rule_pack = (
            pack
            if pack is not None
            else load_pack(self.config.rules.pack, self.config.rules.settings or None)
        )
        pipe = self.for_pack(rule_pack)
        if store is None:
            result = pipe.transcribe(path, call=call, progress=progress)
            card = score_transcript(rule_pack, result.transcript)
        else:
            result, key = pipe._transcribe_cached(Path(path), store, call, progress)
            card = score_transcript(rule_pack, result.transcript)
            store.record_score(result.transcript, card, rule_pack, key=key)
            _keep_recording(store, Path(path), result.transcript)
        return CallResult(transcript=result.transcript, stats=result.stats, scorecard=card)

    def _transcribe_cached(
        self, path: Path, store: Any, call: CallInfo | None, progress: ProgressFn | None
    ) -> tuple[CallResult, str]:
        """The stored transcript for this audio and these settings, else a new one (stored);
        with the store key it is kept under."""
        from dataclasses import replace as _replace

        from .store import transcript_settings
        from .transcript import transcript_from_dict

        t0 = time.perf_counter()
        sha = audio_sha256(path) if path.is_file() else ""
        h = store.put_settings(transcript_settings(self.config))
        info = redact_call(call or read_call_info(path), self.redactor)
        doc = store.cached_doc(sha, h) if sha else None
        if doc is not None:
            # redacted when stored; again here (idempotent) in case the store predates it;
            # its call metadata is replaced by ``info`` below
            cached = redact_utterances(transcript_from_dict(doc), self.redactor)
            transcript = _replace(  # a Transcript (dataclass) of messages (structs)
                cached,
                call=replace(info, channels=cached.call.channels),
                utterances=tuple(replace(u, call_id=info.call_id) for u in cached.utterances),
                ended=replace(cached.ended, call_id=info.call_id),
            )
            speech = sum(u.duration for u in transcript.utterances)
            stats = AsrStats(
                transcript.duration, speech, 0.0, time.perf_counter() - t0, 0, cached=True
            )
            return CallResult(transcript=transcript, stats=stats), f"{sha}:{h}"
        result = self.transcribe(path, call=call, progress=progress)
        stored = store.put_transcript(result.transcript, audio_sha=sha, settings_hash_=h)
        return result, stored.transcript_key


def _keep_recording(store: Any, path: Path, transcript: Any) -> None:
    """The scored call's reference to its audio (``recordings``): the file as given, not
    redacted (the dashboard does not play it until a redacted copy is stored)."""
    import soundfile as sf

    from .store.recordings import put_recording

    if not path.is_file():
        return
    call = transcript.call
    try:
        info = sf.info(str(path))
        rate, channels, duration = int(info.samplerate), int(info.channels), float(info.duration)
    except (sf.LibsndfileError, RuntimeError):  # a format soundfile does not read (mp3...)
        rate, channels, duration = 0, len(call.channels), float(transcript.duration)
    put_recording(
        store,
        call.call_id,
        path,
        sample_rate=rate,
        channels=channels,
        duration_s=duration,
        redacted=False,
    )


def _from_source(seg: SpeechSegment, audio: CallAudio) -> SpeechSegment:
    """A segment of a source below 16 kHz with the samples the ASR decodes: resampled from
    the source around the segment (:func:`~qa_pipeline.audio.asr_cut`), as an ASR worker
    fed by ``ingest`` resamples them, rather than cut from the whole channel's resampling
    (the two differ at float rounding, and Whisper's reading of an 8 kHz turn can turn on
    that)."""
    assert audio.source_channels is not None
    src = audio.source_channels[seg.channel]
    start16 = round(seg.start * TARGET_RATE)
    cut = asr_cut(audio.source_rate, len(src), start16, len(seg.samples))
    samples = resample_cut(src[cut.a : cut.b], audio.source_rate, cut.trim, cut.keep)
    return replace(seg, samples=samples)


def _with_roles(info: CallInfo, audio: CallAudio) -> CallInfo:
    return replace(info, channels=audio.roles)

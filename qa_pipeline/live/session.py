"""One live call: per-channel audio input and streaming VAD, ASR results back in order,
the incremental rule evaluator, the call's events. Nothing here is shared between calls.

Audio arrives float32 at the source rate (codecs are decoded at the source edge). The VAD
runs at that rate when webrtcvad supports it (8/16/32/48 kHz: telephone audio stays at
8 kHz, the cheapest); each closed segment is resampled once to 16 kHz for Whisper. Other
rates are resampled to 16 kHz as a stream before the VAD. Gaps in a channel's call clock
(lost packets, a leg that joined late) are filled with silence so both channels keep the
same clock.

Utterances go to the rules in the order their segments closed, whatever order the shared
ASR finishes them in (a small reorder buffer); an utterance the ASR dropped is skipped.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import soxr

from ..asr.engine import AsrResult, is_kept
from ..audio import DIGITAL_SILENCE, MIN_HANGUP_SILENCE_S, resample
from ..config import VadConfig
from ..messages import (
    AudioChunk,
    CallEnded,
    CallInfo,
    Finding,
    Scorecard,
    SpeechSegment,
    replace,
)
from ..rules import CallEvaluator, RulePack
from ..sinks.base import Event, EventFactory
from ..vad import StreamingVad
from .asr_worker import AsrJob

log = logging.getLogger("qa_pipeline.live.session")

ASR_RATE = 16000
VAD_RATES = (8000, 16000, 32000, 48000)
MAX_GAP_S = 30.0  # a clock jump larger than this is not filled (counted as an error)


class ChannelInput:
    """One channel: clock alignment, (resampling), VAD; yields 16 kHz segments."""

    def __init__(
        self, vad: VadConfig, *, call_id: str, channel: int, role: Any, sample_rate: int
    ) -> None:
        self.rate = sample_rate
        self.vad_rate = sample_rate if sample_rate in VAD_RATES else ASR_RATE
        self._stream = (
            soxr.ResampleStream(sample_rate, ASR_RATE, 1, dtype="float32", quality="HQ")
            if self.vad_rate != sample_rate
            else None
        )
        self.vad = StreamingVad(
            vad, call_id=call_id, channel=channel, role=role, sample_rate=self.vad_rate
        )
        self.samples = 0  # at the source rate
        self.gaps = 0
        self._last_sound = 0  # samples up to the last one above digital silence

    @property
    def seconds(self) -> float:
        return self.samples / self.rate

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        data = chunk.samples
        want = int(round(chunk.start * self.rate))
        gap = want - self.samples
        if gap > self.rate // 50 and gap <= MAX_GAP_S * self.rate:  # > 20 ms missing
            data = np.concatenate([np.zeros(gap, dtype=np.float32), data])
            self.gaps += 1
        sound = np.flatnonzero(np.abs(data) > DIGITAL_SILENCE)
        if len(sound):
            self._last_sound = self.samples + int(sound[-1]) + 1
        self.samples += len(data)
        if self._stream is not None:
            data = self._stream.resample_chunk(data)
        return [self._to_asr(s) for s in self.vad.push(data)]

    @property
    def end(self) -> float:
        """When this side's audio ended, as the recorded path sees it
        (:func:`~qa_pipeline.audio.channel_end`): a side that hung up while the line went on
        carries digital silence from then on."""
        if (self.samples - self._last_sound) / self.rate < MIN_HANGUP_SILENCE_S:
            return self.seconds
        return self._last_sound / self.rate

    def flush(self) -> list[SpeechSegment]:
        return [self._to_asr(s) for s in self.vad.flush()]

    def _to_asr(self, seg: SpeechSegment) -> SpeechSegment:
        if seg.sample_rate == ASR_RATE:
            return seg
        return replace(
            seg, samples=resample(seg.samples, seg.sample_rate, ASR_RATE), sample_rate=ASR_RATE
        )


class CallSession:
    """State of one call. Every method runs on the event loop; ``emit`` sends an event to
    the sinks, ``metrics`` is the shared observer."""

    def __init__(
        self,
        call: CallInfo,
        sample_rate: int,
        *,
        vad: VadConfig,
        pack: RulePack,
        emit: Callable[[Event], None],
        metrics: Any,
        source: str,
        hold_s: float = 0.6,
    ) -> None:
        self.call = call
        self.source = source
        self.rate = sample_rate
        self.started = time.monotonic()
        self.channels = [
            ChannelInput(vad, call_id=call.call_id, channel=ch, role=role, sample_rate=sample_rate)
            for ch, role in enumerate(call.channels)
        ]
        self.evaluator = CallEvaluator(pack, call)
        self.factory = EventFactory(call.call_id)
        self._emit = emit
        self.metrics = metrics
        self._hold_s = hold_s  # the VAD's stop hangover: speech may still be open this far back
        self._seq = 0
        self._next = 0
        self._ready: dict[int, tuple[AsrJob, AsrResult | None]] = {}
        self._pending: dict[int, AsrJob] = {}
        self._utt_index = 0
        self._advanced = 0.0
        self.errors: collections.Counter[str] = collections.Counter()
        self.dropped: collections.Counter[str] = collections.Counter()
        self.findings: list[Finding] = []
        self.utterances = 0
        self.closing = False
        self.idle: asyncio.Event | None = None  # set when the last pending utterance is back
        self.scorecard: Scorecard | None = None

    # -- audio in -------------------------------------------------------------------------

    @property
    def clock(self) -> float:
        return max((c.seconds for c in self.channels), default=0.0)

    def push(self, chunk: AudioChunk) -> list[AsrJob]:
        if not 0 <= chunk.channel < len(self.channels):
            raise ValueError(f"channel {chunk.channel} of a {len(self.channels)}-channel call")
        return self._jobs(self.channels[chunk.channel].push(chunk))

    def flush(self) -> list[AsrJob]:
        """End of audio: close every channel's open segment."""
        segs = [s for c in self.channels for s in c.flush()]
        segs.sort(key=lambda s: (s.end, s.channel))
        return self._jobs(segs)

    def _jobs(self, segs: list[SpeechSegment]) -> list[AsrJob]:
        now = time.monotonic()
        jobs = []
        for s in segs:
            job = AsrJob(owner=self, seq=self._seq, segment=s, closed_at=now)
            self._pending[self._seq] = job
            self._seq += 1
            jobs.append(job)
        return jobs

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    # -- ASR results back -----------------------------------------------------------------

    def resolve(self, job: AsrJob, result: AsrResult | None, drop_reason: str | None) -> None:
        """A job is done (decoded or dropped). Releases results in submission order."""
        if job.seq not in self._pending:
            return
        del self._pending[job.seq]
        if drop_reason is not None:
            self.dropped[drop_reason] += 1
        self._ready[job.seq] = (job, result)
        while self._next in self._ready:
            j, r = self._ready.pop(self._next)
            self._next += 1
            if r is not None:
                self._utterance(j, r)
        if not self._pending and self.idle is not None:
            self.idle.set()

    def _utterance(self, job: AsrJob, r: AsrResult) -> None:
        if r.dropped_reason is not None:
            self.dropped[r.dropped_reason] += 1  # counted, and kept if unreadable speech
        if not is_kept(r):
            if r.dropped_reason is None:
                self.dropped["empty"] += 1
            return
        utt = r.to_utterance(self._utt_index)
        self._utt_index += 1
        self.utterances += 1
        self._emit(self.factory.utterance(utt))
        now = time.monotonic()
        self.metrics.on_utterance(utt, r.seconds)
        self.metrics.on_transcript(utt, now - job.closed_at)
        for f in self.evaluator.feed(utt):
            self._finding(f, time.monotonic() - job.closed_at)

    def _finding(self, f: Finding, latency: float | None) -> None:
        self.findings.append(f)
        for e in self.factory.finding(f):
            self._emit(e)
        self.metrics.on_finding(f, latency)

    # -- time ----------------------------------------------------------------------------

    def tick(self) -> None:
        """Move the rules' clock on without a new utterance (silence rules, windows). The
        clock stays behind any speech not yet transcribed: behind the VAD's hangover and
        behind the start of the oldest utterance still at the ASR."""
        safe = self.clock - self._hold_s
        if self._pending:
            safe = min(safe, min(j.segment.start for j in self._pending.values()))
        if safe > self._advanced:
            self._advanced = safe
            for f in self.evaluator.advance(safe):
                self._finding(f, None)

    # -- end -----------------------------------------------------------------------------

    def abandon_pending(self, reason: str) -> None:
        """Give up on utterances still at the ASR (shutdown timeout)."""
        for job in list(self._pending.values()):
            self.resolve(job, None, reason)

    def end(self) -> Scorecard:
        """Score the call with what arrived and emit the scorecard."""
        ends = tuple(round(c.end, 3) for c in self.channels)  # who hung up first
        card = self.evaluator.end(
            CallEnded(call_id=self.call.call_id, end=round(self.clock, 3), channel_ends=ends)
        )
        emitted = set(self.findings)
        for f in card.findings:  # decided at the end: emitted too, before the scorecard
            if f not in emitted:
                self._finding(f, None)
        extras = dict(card.extras)
        extras.update(
            live_errors=float(sum(self.errors.values())),
            asr_dropped=float(sum(v for k, v in self.dropped.items() if k not in _GUARD)),
            utterances=float(self.utterances),
            audio_seconds=round(self.clock, 3),
        )
        card = replace(card, extras=tuple(sorted(extras.items())))
        self.scorecard = card
        self._emit(self.factory.scorecard(card))
        self.metrics.on_scorecard(card)
        return card


_GUARD = frozenset({"hallucination", "no_speech", "empty"})

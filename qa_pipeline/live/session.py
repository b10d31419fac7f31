"""One live call: per-channel audio input and streaming VAD, ASR results back in order,
the incremental rule evaluator, the call's events. Nothing here is shared between calls.

Audio arrives float32 at the source rate (codecs are decoded at the source edge). The VAD
runs at that rate when webrtcvad supports it (8/16/32/48 kHz: telephone audio stays at
8 kHz, the cheapest); each closed segment is resampled once to 16 kHz for Whisper. Other
rates are resampled to 16 kHz as a stream before the VAD. Gaps in a channel's call clock
(lost packets, a leg that joined late) are filled with silence so both channels keep the
same clock.

Utterances go to the rules in the order their segments closed, whatever order the shared
ASR finishes them in (a small reorder buffer); an utterance the ASR dropped is skipped,
counted, logged once per reason naming the call, and marks the scorecard incomplete.

Pacing (:meth:`CallSession.overrun`): a call's media clock may not run ahead of the wall
clock since it started by more than ``burst_s`` beyond ``max_speed`` x real time, nor past
``max_audio_s``. The check runs before a chunk is taken, on the clock the chunk would reach
(gap filling included), so a timestamp that jumps far ahead is refused, never filled.

A scorecard says whether it was built from the whole call (:meth:`CallSession.end`):
``complete: false`` with ``incomplete_reasons`` when utterances were lost at the ASR
(``asr_<reason>``: shed, stale, failed decode, shutdown), the call was cut off
(``faster_than_real_time``, ``duration_cap``) or ended by ``shutdown``, ``timeout`` or an
``error``. A call whose line simply dropped (``disconnect``) is scored as what it was.

Rules run off the event loop (:class:`RuleLane`, when the service gives one): a pack of
hundreds of fuzzy phrases takes a second or more on a long utterance, and the loop serves
every call's media, health and SIGTERM. One thread evaluates every call's rules in the
order they were asked for, so each call's utterances, clock advances and end reach its
evaluator in order; the findings come back to the loop and are emitted there, each after
its utterance, the scorecard last.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

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
from ..sinks.base import Event, EventFactory, with_session
from ..sources.base import EndReason
from ..vad import StreamingVad
from .asr_worker import AsrJob

log = logging.getLogger("qa_pipeline.live.session")

ASR_RATE = 16000
VAD_RATES = (8000, 16000, 32000, 48000)
MAX_GAP_S = 30.0  # a clock jump larger than this is not filled (counted as an error)

T = TypeVar("T")


class RuleLane:
    """One thread that evaluates the rules of every call, in the order asked (first in,
    first out): a call's evaluator is never used by two threads, nor out of order."""

    #: the rule thread lets the event loop run at least this often (the compiled rule
    #: engine holds Python's lock for a whole evaluation otherwise)
    #: for a real pause (a bare switch left the loop waiting 0.3-0.7 s behind a heavy pack
    #: on the compiled engine; 5 ms / 1 ms: ~0.1 s, evaluation up to ~15 % slower)
    SHARE_EVERY_S = 0.005
    SHARE_SLEEP_S = 0.001

    def __init__(self) -> None:
        from ..rules.runtime.textindex import share_gil

        share_gil(self.SHARE_EVERY_S, self.SHARE_SLEEP_S)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="live-rules")

    def run(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """``work()`` on the rule thread; its result (or exception) on the running loop."""
        return asyncio.get_running_loop().run_in_executor(self._pool, work)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


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

    def _gap(self, chunk: AudioChunk) -> int:
        """Samples of silence to fill before ``chunk`` (a clock gap > 20 ms, <= MAX_GAP_S)."""
        gap = int(round(chunk.start * self.rate)) - self.samples
        return gap if self.rate // 50 < gap <= MAX_GAP_S * self.rate else 0

    def seconds_after(self, chunk: AudioChunk) -> float:
        """This channel's clock once ``chunk`` is taken (gap filling included)."""
        return (self.samples + self._gap(chunk) + len(chunk.samples)) / self.rate

    def push(self, chunk: AudioChunk) -> list[SpeechSegment]:
        data = chunk.samples
        gap = self._gap(chunk)
        if gap:
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
        max_speed: float = 0.0,
        burst_s: float = 5.0,
        max_audio_s: float = 0.0,
        rules: RuleLane | None = None,
        on_error: Callable[[CallSession, Exception], None] | None = None,
    ) -> None:
        self.call = call = with_session(call)  # this run of the call: its events' ids
        self.source = source
        self.rate = sample_rate
        self.started = time.monotonic()
        self.channels = [
            ChannelInput(vad, call_id=call.call_id, channel=ch, role=role, sample_rate=sample_rate)
            for ch, role in enumerate(call.channels)
        ]
        self.evaluator = CallEvaluator(pack, call)
        self._rules = rules  # None: the rules run here, on the caller's thread
        self._on_error = on_error  # an evaluation on the lane raised (None: re-raised)
        self._evaluating = 0  # evaluations sent to the lane, not yet back
        self.factory = EventFactory.for_call(call)
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
        self.idle: asyncio.Event | None = None  # set when nothing is at the ASR or the rules
        self.scorecard: Scorecard | None = None
        self.max_speed = max_speed  # 0 = not paced
        self.burst_s = burst_s
        self.max_audio_s = max_audio_s  # 0 = no cap
        self.cut: str | None = None  # why the call was cut off, if it was

    # -- audio in -------------------------------------------------------------------------

    @property
    def clock(self) -> float:
        return max((c.seconds for c in self.channels), default=0.0)

    def overrun(self, chunk: AudioChunk, now: float | None = None) -> tuple[str, str] | None:
        """``(reason, detail)`` if taking ``chunk`` would break the call's pacing or its
        duration cap, else None. Nothing is changed: the caller cuts the call off."""
        if not 0 <= chunk.channel < len(self.channels):
            return None  # push() raises for it
        after = self.channels[chunk.channel].seconds_after(chunk)
        if self.max_audio_s and after > self.max_audio_s:
            return "duration_cap", f"audio reached {after:.1f} s (cap {self.max_audio_s:.0f} s)"
        if self.max_speed:
            wall = (time.monotonic() if now is None else now) - self.started
            allowed = self.max_speed * wall + self.burst_s
            if after > allowed:
                return (
                    "faster_than_real_time",
                    f"media clock {after:.1f} s after {wall:.1f} s of wall clock "
                    f"(limit {self.max_speed:g}x + {self.burst_s:g} s burst)",
                )
        return None

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
        """Utterances at the ASR and evaluations at the rules, not yet back."""
        return len(self._pending) + self._evaluating

    @property
    def lost(self) -> int:
        """Utterances the ASR never transcribed (shed, stale, failed, shutdown)."""
        return sum(v for k, v in self.dropped.items() if k not in _GUARD)

    # -- ASR results back -----------------------------------------------------------------

    def resolve(self, job: AsrJob, result: AsrResult | None, drop_reason: str | None) -> None:
        """A job is done (decoded or dropped). Releases results in submission order."""
        if job.seq not in self._pending:
            return
        del self._pending[job.seq]
        if drop_reason is not None:
            self.dropped[drop_reason] += 1
            if self.dropped[drop_reason] == 1:  # once per reason; the scorecard has counts
                seg = job.segment
                log.warning(
                    "call %s: utterance %.1f-%.1f s (channel %d) not transcribed: %s; "
                    "its scorecard will be incomplete",
                    self.call.call_id,
                    seg.start,
                    seg.end,
                    seg.channel,
                    drop_reason,
                )
        self._ready[job.seq] = (job, result)
        while self._next in self._ready:
            j, r = self._ready.pop(self._next)
            self._next += 1
            if r is not None:
                self._utterance(j, r)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.in_flight and self.idle is not None:
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
        self._evaluate(lambda: self.evaluator.feed(utt), job.closed_at)

    def _evaluate(self, work: Callable[[], list[Finding]], closed_at: float | None) -> None:
        """Run ``work`` (the evaluator's) on the rule lane; emit its findings when back.
        ``closed_at``: when the utterance closed (a finding's latency), None for none."""
        if self._rules is None:
            for f in work():
                self._finding(f, None if closed_at is None else time.monotonic() - closed_at)
            return
        self._evaluating += 1
        self._rules.run(work).add_done_callback(lambda fut: self._evaluated(fut, closed_at))

    def _evaluated(self, fut: asyncio.Future[list[Finding]], closed_at: float | None) -> None:
        self._evaluating -= 1
        try:
            if not fut.cancelled():  # cancelled: the lane was closed (shutdown)
                for f in fut.result():
                    self._finding(f, None if closed_at is None else time.monotonic() - closed_at)
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(self, exc)
        finally:
            self._check_idle()

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
            if self._evaluating:  # the lane is behind on this call: the next tick
                return
            self._advanced = safe
            self._evaluate(lambda: self.evaluator.advance(safe), None)

    # -- end -----------------------------------------------------------------------------

    def abandon_pending(self, reason: str) -> None:
        """Give up on utterances still at the ASR (shutdown timeout)."""
        for job in list(self._pending.values()):
            self.resolve(job, None, reason)

    def incomplete_reasons(self, ended: EndReason | None = None) -> tuple[str, ...]:
        """Why this call's scorecard does not cover the whole call (empty: it does)."""
        reasons = {f"asr_{k}" for k, v in self.dropped.items() if v and k not in _GUARD}
        if self.cut is not None:
            reasons.add(self.cut)
        elif ended is not None and ended.value in _INCOMPLETE_ENDS:
            reasons.add(ended.value)
        return tuple(sorted(reasons))

    def end(self, ended: EndReason | None = None) -> Scorecard:
        """Score the call with what arrived and emit the scorecard. ``ended``: why the call
        ended (shutdown, timeout and error make the scorecard incomplete)."""
        return self._scored(self.evaluator.end(self._ended()), ended)

    async def finish(self, ended: EndReason | None = None) -> Scorecard:
        """:meth:`end`, the rules' end on the rule lane (once nothing is in flight)."""
        if self._rules is None:
            return self.end(ended)
        call_ended = self._ended()
        card = await self._rules.run(lambda: self.evaluator.end(call_ended))
        return self._scored(card, ended)

    def _ended(self) -> CallEnded:
        ends = tuple(round(c.end, 3) for c in self.channels)  # who hung up first
        return CallEnded(call_id=self.call.call_id, end=round(self.clock, 3), channel_ends=ends)

    def _scored(self, card: Scorecard, ended: EndReason | None) -> Scorecard:
        """The evaluator's scorecard with the live measures: emitted, kept, returned."""
        emitted = set(self.findings)
        for f in card.findings:  # decided at the end: emitted too, before the scorecard
            if f not in emitted:
                self._finding(f, None)
        extras = dict(card.extras)
        extras.update(
            live_errors=float(sum(self.errors.values())),
            asr_dropped=float(self.lost),
            utterances=float(self.utterances),
            audio_seconds=round(self.clock, 3),
        )
        for k, v in self.dropped.items():
            if k not in _GUARD:
                extras[f"asr_dropped_{k}"] = float(v)
        reasons = self.incomplete_reasons(ended)
        card = replace(
            card,
            extras=tuple(sorted(extras.items())),
            complete=not reasons,
            incomplete_reasons=reasons,
        )
        self.scorecard = card
        self._emit(self.factory.scorecard(card))
        self.metrics.on_scorecard(card)
        return card


_GUARD = frozenset({"hallucination", "no_speech", "empty"})
# end reasons that cut a call short (a dropped line, "disconnect", is how some calls end)
_INCOMPLETE_ENDS = frozenset(
    {EndReason.SHUTDOWN.value, EndReason.TIMEOUT.value, EndReason.ERROR.value}
)

"""One live call, end to end: audio frames in; utterances, findings and the scorecard out
(through the ``emit`` callback it is given). Nothing here is shared between calls.

A session is three parts behind narrow interfaces, each of which could run in its own
process (messages between them are the typed ones of :mod:`qa_pipeline.messages`):

* audio: :class:`~.segmenter.CallSegmenter` (clock alignment, resampling, streaming VAD),
  :class:`AudioChunk` in, 16 kHz :class:`SpeechSegment` out;
* ASR: each segment goes to the shared ASR (:class:`~.asr_worker.AsrQueue`, the service's
  :class:`~.asr_worker.AsrWorker`) as an immutable :class:`~.asr_worker.AsrJob` whose reply
  target is this session (:meth:`CallSession.asr_done`);
* rules: :class:`~.evaluator.CallRules` (the call's incremental evaluator on the service's
  rule lane), utterances and clock advances in, findings out, the scorecard last.

The service only routes: it admits a call, pushes its frames (:meth:`CallSession.push`),
moves its clock (:meth:`CallSession.tick`) and ends it (:meth:`CallSession.flush`, then
:meth:`CallSession.finish`); ASR answers come straight back here.

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

Findings are emitted on the loop, each after its utterance, the scorecard last.

Verification (``verifier``, :mod:`.verifier`): the session keeps its utterances and, bounded,
their audio; when the call ends, required phrases its rules missed are verified and the
scorecard is scored again from the verified utterances.

Recording (``recording``, :mod:`.recorder`, ``live.record``): each frame taken is also
written to the call's recording file; utterances that held personal data are noted for its
redaction at the end (the service finishes the recording after the scorecard).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ..asr.result import AsrResult, is_kept
from ..messages import (
    AudioChunk,
    CallEnded,
    CallInfo,
    Finding,
    Scorecard,
    SpeechSegment,
    Utterance,
    replace,
)
from ..privacy import Redactor, default_redactor, no_redaction
from ..rules import CallEvaluator, RulePack
from ..sinks.base import Event, EventFactory, with_session
from ..sources.base import EndReason
from ..text import utterance
from ..vad import VadConfig
from .asr_worker import AsrJob, AsrQueue
from .evaluator import CallRules, RuleLane
from .recorder import CallRecording
from .segmenter import ASR_RATE, MAX_GAP_S, VAD_RATES, CallSegmenter, ChannelInput
from .verifier import KeptAudio, LiveVerifier

__all__ = [
    "ASR_RATE",
    "MAX_GAP_S",
    "VAD_RATES",
    "CallSession",
    "ChannelInput",
    "RuleLane",
]

log = logging.getLogger("qa_pipeline.live.session")


class CallSession:
    """State of one call. Every method runs on the event loop; ``emit`` sends an event to
    the sinks, ``metrics`` is the shared observer. ``asr``: where closed utterances go
    (None: nowhere; they wait for :meth:`asr_done`, as tests drive it)."""

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
        asr: AsrQueue | None = None,
        hold_s: float = 0.6,
        max_speed: float = 0.0,
        burst_s: float = 5.0,
        max_audio_s: float = 0.0,
        rules: RuleLane | None = None,
        on_error: Callable[[CallSession, Exception], None] | None = None,
        redactor: Redactor | None = None,
        verifier: LiveVerifier | None = None,
        verify_keep_s: float = 0.0,
        recording: CallRecording | None = None,
    ) -> None:
        self.call = call = with_session(call)  # this run of the call: its events' ids
        self.source = source
        self.rate = sample_rate
        self.started = time.monotonic()
        #: when the call reached the service (UTC, ISO 8601): its start for the store when
        #: the source gave none
        self.wall_started = datetime.now(UTC).isoformat(timespec="milliseconds")
        self.segmenter = CallSegmenter(vad, call, sample_rate)
        self.evaluator = CallEvaluator(pack, call)
        self._on_error = on_error  # processing of this call raised (None: re-raised)
        self.rules = CallRules(
            self.evaluator,
            rules,  # None: the rules run here, on the caller's thread
            on_error=None if on_error is None else self._failed,
            settled=self._check_idle,
        )
        self._asr = asr
        # the text step masks personal data (the service passes its privacy: section's)
        self.redactor = redactor if redactor is not None else default_redactor()
        self.factory = EventFactory.for_call(call)
        self._emit = emit
        self.metrics = metrics
        self._hold_s = hold_s  # the VAD's stop hangover: speech may still be open this far back
        self._seq = 0
        self._next = 0
        self._ready: dict[int, tuple[float, AsrResult | None]] = {}
        self._pending: dict[int, tuple[AsrJob, float]] = {}  # seq -> (job, closed at)
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
        # for verification at the end: the utterances as the rules saw them, and audio
        self.verifier = verifier if verify_keep_s > 0 else None
        self.kept = KeptAudio(verify_keep_s if self.verifier is not None else 0.0)
        #: the utterances as the rules saw them (redacted): verification at the end and
        #: the transcript the store keeps
        self.transcript: list[Utterance] = []
        # live.record: both legs written to disk as they come (the service finishes it)
        self.recording = recording

    def _failed(self, exc: Exception) -> None:
        assert self._on_error is not None
        self._on_error(self, exc)

    # -- audio in -------------------------------------------------------------------------

    @property
    def channels(self) -> list[ChannelInput]:
        return self.segmenter.channels

    @property
    def clock(self) -> float:
        return self.segmenter.clock

    def overrun(self, chunk: AudioChunk, now: float | None = None) -> tuple[str, str] | None:
        """``(reason, detail)`` if taking ``chunk`` would break the call's pacing or its
        duration cap, else None. Nothing is changed: the caller cuts the call off."""
        after = self.segmenter.seconds_after(chunk)
        if after is None:
            return None  # push() raises for it
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
        """One frame of one channel. Utterances it closes go to the ASR; returned (for
        inspection) are the jobs sent."""
        segs = self.segmenter.push(chunk)
        if self.recording is not None:
            try:
                self.recording.write(chunk)
            except Exception as exc:  # a full disk: the call goes on, unrecorded
                log.error(
                    "call %s: recording stopped (%r); its partial file is deleted",
                    self.call.call_id,
                    exc,
                )
                self.errors["recording_failed"] += 1
                self.recording.discard()
                self.recording = None
        return self._jobs(segs)

    def flush(self) -> list[AsrJob]:
        """End of audio: close every channel's open segment and send it to the ASR."""
        return self._jobs(self.segmenter.flush())

    def _jobs(self, segs: list[SpeechSegment]) -> list[AsrJob]:
        now = time.monotonic()
        jobs = []
        for s in segs:
            job = AsrJob(self.call.session_id, self._seq, s, self)
            self._pending[self._seq] = (job, now)
            self._seq += 1
            jobs.append(job)
        if self._asr is not None:  # after all are pending: a shed job is answered at once
            for job in jobs:
                self._asr.submit(job)
        return jobs

    @property
    def in_flight(self) -> int:
        """Utterances at the ASR and evaluations at the rules, not yet back."""
        return len(self._pending) + self.rules.busy

    @property
    def lost(self) -> int:
        """Utterances the ASR never transcribed (shed, stale, failed, shutdown)."""
        return sum(v for k, v in self.dropped.items() if k not in _GUARD)

    # -- ASR results back -----------------------------------------------------------------

    def asr_done(self, job: AsrJob, result: AsrResult | None, drop_reason: str | None) -> None:
        """The ASR's answer (:class:`~.asr_worker.AsrReplyTo`): a failure in handling it
        stays with this call (``on_error``)."""
        try:
            self.resolve(job, result, drop_reason)
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(self, exc)

    def resolve(self, job: AsrJob, result: AsrResult | None, drop_reason: str | None) -> None:
        """A job is done (decoded or dropped). Releases results in submission order."""
        pending = self._pending.pop(job.seq, None)
        if pending is None:
            return
        closed_at = pending[1]
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
        self._ready[job.seq] = (closed_at, result)
        while self._next in self._ready:
            c, r = self._ready.pop(self._next)
            self._next += 1
            if r is not None:
                self._utterance(c, r)
        self._check_idle()

    def _check_idle(self) -> None:
        if not self.in_flight and self.idle is not None:
            self.idle.set()

    def _utterance(self, closed_at: float, r: AsrResult) -> None:
        if r.dropped_reason is not None:
            self.dropped[r.dropped_reason] += 1  # counted, and kept if unreadable speech
        if not is_kept(r):
            if r.dropped_reason is None:
                self.dropped["empty"] += 1
            return
        utt = utterance(r, self._utt_index, self.redactor)  # the text step
        self._utt_index += 1
        self.utterances += 1
        self._emit(self.factory.utterance(utt))
        if self.recording is not None:  # its personal data is masked in the kept file
            self.recording.utterance(utt)
        now = time.monotonic()
        self.metrics.on_utterance(utt, r.seconds)
        self.metrics.on_transcript(utt, now - closed_at)
        self.transcript.append(utt)
        if self.verifier is not None:
            plain = (  # the text the audio is scored against: as decoded
                utt
                if not utt.entities and utt.raw_text == r.raw_text
                else utterance(r, utt.index, _PLAIN)
            )
            self.kept.add(plain, r.segment)
        self.rules.feed(utt, lambda found: self._findings(found, closed_at))

    def _findings(self, found: list[Finding], closed_at: float | None) -> None:
        """Emit what the rules decided. ``closed_at``: when the utterance closed (a
        finding's latency), None for none."""
        for f in found:
            self._finding(f, None if closed_at is None else time.monotonic() - closed_at)

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
            safe = min(safe, min(j.segment.start for j, _ in self._pending.values()))
        if safe > self._advanced:
            if self.rules.busy:  # the lane is behind on this call: the next tick
                return
            self._advanced = safe
            self.rules.advance(safe, lambda found: self._findings(found, None))

    # -- end -----------------------------------------------------------------------------

    def abandon_pending(self, reason: str) -> None:
        """Give up on utterances still at the ASR (shutdown timeout)."""
        for job, _ in list(self._pending.values()):
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
        return self._scored(self.rules.end_now(self._ended()), ended)

    async def finish(self, ended: EndReason | None = None) -> Scorecard:
        """Once nothing is at the ASR or the rules: :meth:`end`, the rules' end on the rule
        lane."""
        self.idle = asyncio.Event()
        if self.in_flight:
            await self.idle.wait()
        done = self._ended()
        card = await self.rules.end(done)
        if self.verifier is not None:
            card = await self.verifier.rescore(
                card, self.call, self.transcript, done, self.kept, self.findings, self.evaluator
            )
            self.kept = KeptAudio(0.0)  # the audio is not needed any more
        return self._scored(card, ended)

    def ended_message(self) -> CallEnded:
        """How the call ended (its end on the call clock, each channel's end)."""
        return self._ended()

    def _ended(self) -> CallEnded:
        return CallEnded(
            call_id=self.call.call_id,
            end=round(self.clock, 3),
            channel_ends=self.segmenter.channel_ends(),  # who hung up first
        )

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
_PLAIN = no_redaction()
# end reasons that cut a call short (a dropped line, "disconnect", is how some calls end)
_INCOMPLETE_ENDS = frozenset(
    {EndReason.SHUTDOWN.value, EndReason.TIMEOUT.value, EndReason.ERROR.value}
)

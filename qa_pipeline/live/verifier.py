"""Verification of required phrases at a live call's end (``asr.verify``, as on recorded
calls: :mod:`qa_pipeline.verify`).

While a call runs, its session keeps the audio of its utterances (:class:`KeptAudio`,
bounded by ``live.verify_keep_s``). When the call has ended and its rules have scored it,
:meth:`LiveVerifier.rescore` looks for ``require`` rules the call did not meet; if there
are any, the utterances in their scope are decoded again with the rules' phrases as
hotwords and the call is scored again from the verified utterances: the scorecard sent is
that one. Findings already emitted stay emitted (a finding is never taken back; the
scorecard is what changes).

Where it runs: which rules are unmet, and which phrases a decode adds, are read on the
service's rule thread (:class:`~.evaluator.RuleLane`: the rule pack is not shared between
threads); each utterance's decodes run on an ASR slot (:meth:`.AsrWorker.run`), one step
at a time, never holding every slot. Past ``live.verify_timeout_s`` (or the shutdown's
drain time) or on an error the call keeps its unverified scorecard; both are counted
(``qa_live_verify_total{outcome}``) and logged.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..asr.engine import AsrEngine
from ..messages import (
    CallEnded,
    CallInfo,
    Finding,
    Scorecard,
    SpeechSegment,
    Utterance,
    Verdict,
    replace,
)
from ..rules import CallEvaluator, RulePack
from ..transcript import Transcript
from ..verify import Verifier, take_checks, verify_apply, verify_plan
from .asr_worker import AsrWorker
from .evaluator import RuleLane

log = logging.getLogger("qa_pipeline.live.verify")

RATE = 16000
BYTES_PER_S = 2 * RATE  # kept as 16-bit samples
HEAD_SHARE = 0.25  # of the cap, per side: its first turns (greetings, identification)
_EMPTY = np.zeros(0, dtype=np.float32)


@dataclass(slots=True)
class _Kept:
    heard: Utterance  # as decoded (not redacted: the text the audio is scored against)
    samples: np.ndarray  # int16, 16 kHz
    seconds: float
    head: bool  # one of its side's first turns


class KeptAudio:
    """One call's utterance audio for verification, at most ``cap_s`` seconds. Each side's
    first turns (up to ``HEAD_SHARE`` of the cap) are kept whatever follows; past the cap
    the oldest later turn of the side with the most such audio goes, so each side keeps
    its latest turns (closings) and loses middle ones."""

    def __init__(self, cap_s: float) -> None:
        self.cap_s = cap_s
        self._kept: dict[int, _Kept] = {}  # by utterance index, in call order
        self._segments: dict[int, SpeechSegment] = {}
        self._head_s: dict[int, float] = {}  # per channel: seconds kept as head
        self._head_done: set[int] = set()  # channels whose head is complete
        self.seconds = 0.0
        self.dropped = 0  # utterances whose audio was let go (or never kept)

    def __len__(self) -> int:
        return len(self._kept)

    def __contains__(self, index: int) -> bool:
        return index in self._kept

    @property
    def nbytes(self) -> int:
        return sum(k.samples.nbytes for k in self._kept.values())

    def add(self, heard: Utterance, seg: SpeechSegment) -> None:
        """Keep ``seg``'s audio (16 kHz) as the audio of utterance ``heard``."""
        if self.cap_s <= 0 or not heard.text:  # no text: nothing for verification to weigh
            self.dropped += self.cap_s > 0
            return
        a = np.asarray(seg.samples, dtype=np.float32)
        samples = np.clip(np.rint(a * 32768.0), -32768, 32767).astype(np.int16)
        secs = len(samples) / RATE
        ch = seg.channel
        head = False
        if ch not in self._head_done:
            if self._head_s.get(ch, 0.0) + secs <= HEAD_SHARE * self.cap_s:
                head = True
                self._head_s[ch] = self._head_s.get(ch, 0.0) + secs
            else:
                self._head_done.add(ch)  # a side's head is its first turns, in a row
        self._kept[heard.index] = _Kept(heard, samples, secs, head)
        self._segments[heard.index] = replace(seg, samples=_EMPTY)  # where and whose
        self.seconds += secs
        while self.seconds > self.cap_s:
            victim = self._victim()
            if victim is None:
                break
            self.seconds -= self._kept.pop(victim).seconds
            del self._segments[victim]
            self.dropped += 1

    def _victim(self) -> int | None:
        tails: dict[int, float] = {}
        for k in self._kept.values():
            if not k.head:
                tails[k.heard.channel] = tails.get(k.heard.channel, 0.0) + k.seconds
        if not tails:
            return None
        ch = max(tails, key=lambda c: tails[c])
        return next(i for i, k in self._kept.items() if not k.head and k.heard.channel == ch)

    def indices(self) -> list[int]:
        return list(self._kept)

    def heard(self, index: int) -> Utterance:
        return self._kept[index].heard

    def segment(self, index: int) -> SpeechSegment:
        """The utterance's audio as float32 (as the ASR had it, to 16-bit precision)."""
        k = self._kept[index]
        seg = self._segments[index]
        return replace(seg, samples=k.samples.astype(np.float32) / 32768.0)


class LiveVerifier:
    """The live service's verification of its calls (one per service)."""

    def __init__(
        self,
        engine: AsrEngine | None,
        margin: float,
        asr: AsrWorker,
        lane: RuleLane,
        pack: RulePack,
        *,
        timeout_s: float,
        metrics: object = None,
        verifier: Verifier | None = None,
        heard_beam: int | None = None,
    ) -> None:
        """``heard_beam``: the beam the live decoder used (the live default is 1), so that
        a hasty reading does not set the bar (:data:`~qa_pipeline.verify.REFERENCE_BEAM`)."""
        if verifier is None:
            assert engine is not None, "an engine or a verifier"
            verifier = Verifier(engine, margin, heard_beam=heard_beam)
        self.verifier = verifier
        self.asr = asr
        self.lane = lane
        self.pack = pack
        self.timeout_s = timeout_s
        self.until: float | None = None  # monotonic: verification ends by then (shutdown)
        self.metrics = metrics
        self.outcomes: dict[str, int] = {}

    async def rescore(
        self,
        card: Scorecard,
        call: CallInfo,
        utterances: Sequence[Utterance],
        ended: CallEnded,
        kept: KeptAudio,
        emitted: Sequence[Finding],
        evaluator: CallEvaluator,
    ) -> Scorecard:
        """``card`` (the call's scorecard from its live rules), or the call scored again from
        its utterances with what verification accepted. ``utterances``: as the rules saw
        them, in that order; ``emitted``: the findings already sent; ``evaluator``: the
        call's (ended) evaluator, whose unmet rules say whether there is anything to do."""
        open_ = {
            v.rule_id for v in card.verdicts if v.verdict in (Verdict.FAILED, Verdict.UNCERTAIN)
        }
        if not len(kept) or not any(r in open_ for r, _ in evaluator.unmet):
            return card
        limit = self.timeout_s
        if self.until is not None:
            limit = min(limit, self.until - time.monotonic())
        t0 = time.monotonic()
        spent: list[float] = [0.0]
        try:
            if limit <= 0:
                raise TimeoutError
            out = await asyncio.wait_for(
                self._rescore(card, call, utterances, ended, kept, emitted, spent), limit
            )
        except TimeoutError:
            self._count("timeout", spent[0])
            log.warning(
                "call %s: verification gave up after %.1f s; the scorecard is unverified",
                call.call_id,
                time.monotonic() - t0,
            )
            return card
        except (Exception, asyncio.CancelledError):
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this call's end itself is cancelled (not a decode the pool dropped)
            self._count("failed", spent[0])
            log.exception("call %s: verification failed; the scorecard is unverified", call.call_id)
            return card
        changed = out is not card
        self._count("verified" if changed else "unchanged", spent[0])
        log.info(
            "call %s: verification %s in %.2f s (%.2f s of ASR)",
            call.call_id,
            "accepted phrases (the call scored again)" if changed else "accepted nothing",
            time.monotonic() - t0,
            spent[0],
        )
        return out

    def _count(self, outcome: str, seconds: float) -> None:
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        on = getattr(self.metrics, "on_verify", None)
        if on is not None:
            on(outcome, seconds)

    async def _rescore(
        self,
        card: Scorecard,
        call: CallInfo,
        utterances: Sequence[Utterance],
        ended: CallEnded,
        kept: KeptAudio,
        emitted: Sequence[Finding],
        spent: list[float],
    ) -> Scorecard:
        pack, verifier = self.pack, self.verifier
        # the rules' view of the call, each kept utterance with its text as decoded
        heard = Transcript(
            call,
            tuple(kept.heard(u.index) if u.index in kept else u for u in utterances),
            ended,
        )
        have = kept.indices()
        wanted = await self.lane.run(lambda: verify_plan(pack, heard, have))
        found: dict[int, list[str]] = {}
        for i, hints in sorted(wanted.items()):
            seg, utt = kept.segment(i), kept.heard(i)
            decoded = await self.asr.run(functools.partial(verifier.decode, seg, utt, hints))
            spent[0] += decoded.share * len(hints)  # the decode's own time, not its wait
            checks = await self.lane.run(functools.partial(verifier.judge, decoded, hints, pack))
            take_checks(call.call_id, found, checks)
        if not found:
            return card
        # the call scored again: its utterances as the rules saw them (redacted), in the
        # same order, with the verified phrases
        verified = verify_apply(Transcript(call, tuple(utterances), ended), found)

        def score() -> Scorecard:
            ev = CallEvaluator(pack, call)
            for u in verified.utterances:
                ev.feed(u)
            return ev.end(ended)

        new = await self.lane.run(score)
        # a finding decided again as it was emitted is that finding (not sent twice)
        sent = {(f.rule_id, f.evidence): f for f in emitted}
        return replace(
            new, findings=tuple(sent.get((f.rule_id, f.evidence), f) for f in new.findings)
        )

"""A live call's rule stage: the incremental evaluator of one call, run on the rule lane.

Utterances, clock advances and the call's end go in, in order; each one's findings come
back (to a callback, on the event loop), the scorecard last. Nothing here knows of audio,
the ASR or the sinks.

Rules run off the event loop (:class:`RuleLane`, when the service gives one): a pack of
hundreds of fuzzy phrases takes a second or more on a long utterance, and the loop serves
every call's media, health and SIGTERM. One thread evaluates every call's rules in the
order they were asked for, so each call's utterances, clock advances and end reach its
evaluator in order; the findings come back to the loop.

Between processes, :class:`~qa_pipeline.messages.Utterance`, a clock advance (call id,
seconds) and :class:`~qa_pipeline.messages.CallEnded` go in (keyed by call, in order);
:class:`~qa_pipeline.messages.Finding` lists and the
:class:`~qa_pipeline.messages.Scorecard` come out. The evaluator's state stays with it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..messages import CallEnded, Finding, Scorecard, Utterance
from ..rules import CallEvaluator

T = TypeVar("T")

FindingsFn = Callable[[list[Finding]], None]


class RuleLane:
    """One thread that evaluates the rules of every call, in the order asked (first in,
    first out): a call's evaluator is never used by two threads, nor out of order."""

    #: the rule thread lets the event loop run at least this often (the compiled rule
    #: engine holds Python's lock for a whole evaluation otherwise)
    #: for a real pause (a bare switch left the loop waiting 0.3-0.7 s behind a heavy pack
    #: on the compiled engine; 5 ms / 1 ms: 0.1-0.3 s, evaluation up to ~15 % slower)
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


class CallRules:
    """One call's rules: :meth:`feed` an utterance, :meth:`advance` the clock, :meth:`end`
    the call. ``lane``: where they run (None: at once, on the caller's thread, and a
    failure is raised to the caller). On the lane, a failure goes to ``on_error`` (None:
    re-raised on the loop) and ``settled`` is called after each result is handled."""

    def __init__(
        self,
        evaluator: CallEvaluator,
        lane: RuleLane | None = None,
        *,
        on_error: Callable[[Exception], None] | None = None,
        settled: Callable[[], None] | None = None,
    ) -> None:
        self.evaluator = evaluator
        self._lane = lane
        self._on_error = on_error
        self._settled = settled
        self.busy = 0  # evaluations on the lane, not yet back

    def feed(self, utt: Utterance, then: FindingsFn) -> None:
        """Evaluate ``utt``; ``then(findings)`` once decided."""
        ev = self.evaluator
        self._run(lambda: ev.feed(utt), then)

    def advance(self, t: float, then: FindingsFn) -> None:
        """Move the rules' clock to ``t`` s (silence rules, windows); ``then(findings)``."""
        ev = self.evaluator
        self._run(lambda: ev.advance(t), then)

    def end_now(self, ended: CallEnded) -> Scorecard:
        """Score the call here, on the caller's thread."""
        return self.evaluator.end(ended)

    async def end(self, ended: CallEnded) -> Scorecard:
        """Score the call (on the lane, after everything asked before)."""
        if self._lane is None:
            return self.end_now(ended)
        ev = self.evaluator
        return await self._lane.run(lambda: ev.end(ended))

    def _run(self, work: Callable[[], list[Finding]], then: FindingsFn) -> None:
        if self._lane is None:
            then(work())
            return
        self.busy += 1
        self._lane.run(work).add_done_callback(lambda fut: self._back(fut, then))

    def _back(self, fut: asyncio.Future[list[Finding]], then: FindingsFn) -> None:
        self.busy -= 1
        try:
            if not fut.cancelled():  # cancelled: the lane was closed (shutdown)
                then(fut.result())
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)
        finally:
            if self._settled is not None:
                self._settled()

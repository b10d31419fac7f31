"""One ASR worker shared by every line: a bounded queue, batches across lines, decodes in
threads off the event loop.

* **Fair queue**: every call has its own queue of waiting utterances, at most
  ``per_call_max`` long, and all of them together at most ``queue_max``. Load is only ever
  shed from the call that brings it: a call over its own share loses its own excess
  (``reason="call_share"``); when the whole queue is full, the utterance shed is one of the
  call with the longest queue if that queue is longer than the submitter's by two or more
  (its excess), else one of the submitter's (new load) (``reason="queue_full"``). A call
  that sends one utterance at a time therefore never loses one to a neighbour's flood.
  Within the call that sheds, ``overflow`` picks which: ``drop_oldest`` (default: its
  oldest waiting utterance) or ``reject_newest`` (its newest). Every shed utterance is
  reported to its call (which counts it, logs it and marks its scorecard incomplete) and
  counted in ``qa_dropped_total{stage="asr",reason}``. ``max_age_s`` > 0 also drops
  utterances that waited too long (``reason="stale"``).
* **Slots**: ``slots`` decodes run at once (one per CTranslate2 worker of the shared model).
  When a slot frees, it takes up to ``max_batch`` waiting utterances round-robin across the
  calls (one from each call in turn, each call's in order) as one decode: under light load
  every utterance is decoded alone at once; under load batches form by themselves and a
  call's utterance waits behind at most one of each other call's.
* **Threads**: the decode, including reading every result, runs in the worker's thread pool
  (style item 3); results come back to the event loop and to ``on_done``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

from ..asr.result import AsrResult
from ..messages import SpeechSegment
from .decoder import LiveDecoder

log = logging.getLogger("qa_pipeline.live.asr")


@dataclass(eq=False, slots=True)
class AsrJob:
    """One utterance waiting for the ASR. ``closed_at`` is the monotonic time the VAD closed
    it (the start of the finding-latency clock); ``owner`` is the call's session."""

    owner: Any
    seq: int
    segment: SpeechSegment
    closed_at: float
    enqueued_at: float = 0.0

    @property
    def key(self) -> Any:
        """Whose share of the queue this job uses: its session (else its call id)."""
        return self.owner if self.owner is not None else self.segment.call_id


DoneFn = Callable[[AsrJob, AsrResult | None, str | None], None]
"""on_done(job, result, drop_reason): exactly once per submitted job, on the event loop."""


class AsrWorker:
    def __init__(
        self,
        decoder: LiveDecoder,
        on_done: DoneFn,
        *,
        slots: int = 2,
        max_batch: int = 8,
        queue_max: int = 256,
        per_call_max: int = 16,
        overflow: Literal["drop_oldest", "reject_newest"] = "drop_oldest",
        max_age_s: float = 0.0,
        metrics: Any = None,
    ) -> None:
        self.decoder = decoder
        self.on_done = on_done
        self.slots = slots
        self.max_batch = max_batch if decoder.opts.window == "fitted" else 1
        self.queue_max = queue_max
        self.per_call_max = max(1, min(per_call_max, queue_max))
        self.overflow = overflow
        self.max_age_s = max_age_s
        self.metrics = metrics
        # per call, in round-robin order: the call served next is first
        self._queues: collections.OrderedDict[Any, collections.deque[AsrJob]] = (
            collections.OrderedDict()
        )
        self._waiting = 0
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="live-asr")
        self._sem = asyncio.Semaphore(slots)
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._inflight = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self.dropped: collections.Counter[str] = collections.Counter()
        self.decoded = 0

    # -- producer side --------------------------------------------------------------------

    def submit(self, job: AsrJob) -> None:
        job.enqueued_at = time.monotonic()
        own = self._queues.get(job.key)
        n_own = len(own) if own is not None else 0
        if n_own >= self.per_call_max:
            self._shed(job.key, job, "call_share")
        elif self._waiting >= self.queue_max:
            longest = max(self._queues, key=lambda k: len(self._queues[k]))
            heavy = longest if len(self._queues[longest]) >= n_own + 2 else job.key
            self._shed(heavy, job, "queue_full")
        else:
            self._append(job)
        self._idle.clear()
        self._check_idle()
        self._depth()
        self._wake.set()

    def _append(self, job: AsrJob) -> None:
        q = self._queues.get(job.key)
        if q is None:
            q = self._queues[job.key] = collections.deque()
        q.append(job)
        self._waiting += 1

    def _shed(self, key: Any, new: AsrJob, reason: str) -> None:
        """The queue (of ``key``'s call, or all of it) is full: ``key``'s call loses one
        utterance (its oldest waiting or its newest, by ``overflow``) and ``new`` is queued
        in its place, unless ``new`` itself is the one shed."""
        q = self._queues.get(key)
        if not q:  # the submitter has nothing waiting: the new utterance is the one shed
            self._drop(new, reason)
            return
        if self.overflow == "reject_newest":
            if key == new.key:
                self._drop(new, reason)
                return
            victim = q.pop()
        else:
            victim = q.popleft()
        self._waiting -= 1
        if not q:
            del self._queues[key]
        self._drop(victim, reason)
        self._append(new)

    def _drop(self, job: AsrJob, reason: str) -> None:
        self.dropped[reason] += 1
        if self.metrics is not None:
            self.metrics.on_drop("asr", reason)
        self.on_done(job, None, reason)

    def _depth(self) -> None:
        if self.metrics is not None:
            self.metrics.on_queue_depth("asr", self._waiting)

    @property
    def depth(self) -> int:
        return self._waiting

    def waiting(self, key: Any) -> int:
        """Utterances of one call (its session) waiting for the ASR."""
        q = self._queues.get(key)
        return len(q) if q is not None else 0

    @property
    def busy(self) -> int:
        return self._inflight

    # -- consumer side --------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="live-asr-scheduler")

    async def _run(self) -> None:
        while True:
            await self._sem.acquire()
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            batch = self._take()
            if not batch:
                self._sem.release()
                self._check_idle()
                continue
            self._inflight += len(batch)
            t = asyncio.create_task(self._decode(batch))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def _take(self) -> list[AsrJob]:
        """Up to ``max_batch`` jobs, one from each call in turn (round robin)."""
        now = time.monotonic()
        batch: list[AsrJob] = []
        while self._queues and len(batch) < self.max_batch:
            key, q = next(iter(self._queues.items()))
            job = q.popleft()
            self._waiting -= 1
            if q:
                self._queues.move_to_end(key)  # served: to the back of the line
            else:
                del self._queues[key]
            if self.max_age_s and now - job.enqueued_at > self.max_age_s:
                self._drop(job, "stale")
                continue
            batch.append(job)
        self._depth()
        return batch

    async def _decode(self, batch: list[AsrJob]) -> None:
        loop = asyncio.get_running_loop()
        segs = [j.segment for j in batch]
        t0 = time.monotonic()
        if self.metrics is not None:
            for j in batch:
                self.metrics.asr_wait.observe(t0 - j.enqueued_at)
        try:
            results = await loop.run_in_executor(self._pool, self.decoder.decode, segs)
        except Exception as exc:  # a failed decode loses these utterances, never the worker
            log.exception("ASR decode of %d utterance(s) failed", len(batch))
            for j in batch:
                self._drop(j, f"decode_{type(exc).__name__}")
            results = []
        else:
            self.decoded += len(batch)
            if self.metrics is not None:
                self.metrics.on_asr_batch(
                    len(batch), time.monotonic() - t0, sum(s.duration for s in segs)
                )
            for j, r in zip(batch, results, strict=True):
                try:
                    self.on_done(j, r, None)
                except Exception:  # a call's failure stays with that call
                    log.exception("delivering an ASR result to call %s", j.segment.call_id)
        finally:
            self._inflight -= len(batch)
            self._sem.release()
            self._check_idle()

    def _check_idle(self) -> None:
        if not self._waiting and self._inflight == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until nothing is queued or being decoded."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        while self._queues:
            _, q = self._queues.popitem(last=False)
            while q:
                self._waiting -= 1
                self._drop(q.popleft(), "shutdown")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)

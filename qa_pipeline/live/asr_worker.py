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
* **Other work** (:meth:`AsrWorker.run`: the verification decodes at a call's end) takes a
  slot like a batch does, one step at a time, and never more than ``slots - 1`` slots at
  once (all of them when there is one): utterances always have a slot of their own, and
  one waits behind at most one step of each call that verifies.
* **Threads**: the decode, including reading every result, runs in the worker's thread pool
  (style item 3); results come back to the event loop and to each job's ``reply_to``.
* **Messages**: a job is an immutable :class:`AsrJob` (session id, sequence number, speech
  segment, reply target); the worker keeps its own bookkeeping (when a job was queued)
  beside it. Nothing here calls into a session but through :class:`AsrReplyTo`.
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
from typing import Any, Literal, Protocol, TypeVar

from ..asr.result import AsrResult
from ..messages import SpeechSegment
from .decoder import LiveDecoder

log = logging.getLogger("qa_pipeline.live.asr")

T = TypeVar("T")


class AsrReplyTo(Protocol):
    """Where a job's answer goes: the call's session (in one process), or a transport that
    sends it back to the process holding that session (keyed by ``session_id``)."""

    def asr_done(self, job: AsrJob, result: AsrResult | None, drop_reason: str | None) -> None:
        """``job`` decoded (``result``) or dropped (``drop_reason``): exactly once per job,
        on the event loop."""


@dataclass(frozen=True, eq=False, slots=True)
class AsrJob:
    """One utterance for the ASR (immutable). ``session_id`` names the call's run (its share
    of the queue), ``seq`` its place in that call (results are released in this order),
    ``segment`` the 16 kHz speech; ``reply_to`` takes the answer. Between processes the
    first three travel and ``reply_to`` becomes the reply address of ``session_id``."""

    session_id: str
    seq: int
    segment: SpeechSegment
    reply_to: AsrReplyTo

    @property
    def key(self) -> str:
        """Whose share of the queue this job uses: its session (else its call id)."""
        return self.session_id or self.segment.call_id


class AsrQueue(Protocol):
    """What a call's session needs of the ASR: take a job; answer it later (or at once, if
    it is shed) through ``job.reply_to``. :class:`AsrWorker` in one process; a producer
    onto a topic keyed by session between processes."""

    def submit(self, job: AsrJob) -> None: ...


@dataclass(eq=False, slots=True)
class _Waiting:
    job: AsrJob
    enqueued_at: float  # the worker's monotonic clock (for ``max_age_s``, ``asr_wait``)


class AsrWorker:
    def __init__(
        self,
        decoder: LiveDecoder,
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
        self.slots = slots
        self.max_batch = max_batch if decoder.opts.window == "fitted" else 1
        self.queue_max = queue_max
        self.per_call_max = max(1, min(per_call_max, queue_max))
        self.overflow = overflow
        self.max_age_s = max_age_s
        self.metrics = metrics
        # per call, in round-robin order: the call served next is first
        self._queues: collections.OrderedDict[str, collections.deque[_Waiting]] = (
            collections.OrderedDict()
        )
        self._waiting = 0
        self._pool = ThreadPoolExecutor(slots, thread_name_prefix="live-asr")
        self._sem = asyncio.Semaphore(slots)
        self._other = asyncio.Semaphore(max(1, slots - 1))  # slots other work may hold
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
        new = _Waiting(job, time.monotonic())
        own = self._queues.get(job.key)
        n_own = len(own) if own is not None else 0
        if n_own >= self.per_call_max:
            self._shed(job.key, new, "call_share")
        elif self._waiting >= self.queue_max:
            longest = max(self._queues, key=lambda k: len(self._queues[k]))
            heavy = longest if len(self._queues[longest]) >= n_own + 2 else job.key
            self._shed(heavy, new, "queue_full")
        else:
            self._append(new)
        self._idle.clear()
        self._check_idle()
        self._depth()
        self._wake.set()

    def _append(self, w: _Waiting) -> None:
        q = self._queues.get(w.job.key)
        if q is None:
            q = self._queues[w.job.key] = collections.deque()
        q.append(w)
        self._waiting += 1

    def _shed(self, key: str, new: _Waiting, reason: str) -> None:
        """The queue (of ``key``'s call, or all of it) is full: ``key``'s call loses one
        utterance (its oldest waiting or its newest, by ``overflow``) and ``new`` is queued
        in its place, unless ``new`` itself is the one shed."""
        q = self._queues.get(key)
        if not q:  # the submitter has nothing waiting: the new utterance is the one shed
            self._drop(new.job, reason)
            return
        if self.overflow == "reject_newest":
            if key == new.job.key:
                self._drop(new.job, reason)
                return
            victim = q.pop()
        else:
            victim = q.popleft()
        self._waiting -= 1
        if not q:
            del self._queues[key]
        self._drop(victim.job, reason)
        self._append(new)

    def _drop(self, job: AsrJob, reason: str) -> None:
        self.dropped[reason] += 1
        if self.metrics is not None:
            self.metrics.on_drop("asr", reason)
        job.reply_to.asr_done(job, None, reason)

    def _depth(self) -> None:
        if self.metrics is not None:
            self.metrics.on_queue_depth("asr", self._waiting)

    @property
    def depth(self) -> int:
        return self._waiting

    def waiting(self, key: str) -> int:
        """Utterances of one call (its session id) waiting for the ASR."""
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
            while not self._waiting:
                self._wake.clear()
                await self._wake.wait()
            # a slot only once there is work: an idle scheduler holds none (run() takes it)
            await self._sem.acquire()
            batch = self._take()
            if not batch:
                self._sem.release()
                self._check_idle()
                continue
            self._inflight += len(batch)
            t = asyncio.create_task(self._decode(batch))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    def _take(self) -> list[_Waiting]:
        """Up to ``max_batch`` jobs, one from each call in turn (round robin)."""
        now = time.monotonic()
        batch: list[_Waiting] = []
        while self._queues and len(batch) < self.max_batch:
            key, q = next(iter(self._queues.items()))
            w = q.popleft()
            self._waiting -= 1
            if q:
                self._queues.move_to_end(key)  # served: to the back of the line
            else:
                del self._queues[key]
            if self.max_age_s and now - w.enqueued_at > self.max_age_s:
                self._drop(w.job, "stale")
                continue
            batch.append(w)
        self._depth()
        return batch

    async def _decode(self, waiting: list[_Waiting]) -> None:
        loop = asyncio.get_running_loop()
        batch = [w.job for w in waiting]
        segs = [j.segment for j in batch]
        t0 = time.monotonic()
        if self.metrics is not None:
            for w in waiting:
                self.metrics.asr_wait.observe(t0 - w.enqueued_at)
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
                    j.reply_to.asr_done(j, r, None)
                except Exception:  # a call's failure stays with that call
                    log.exception("delivering an ASR result to call %s", j.segment.call_id)
        finally:
            self._inflight -= len(batch)
            self._sem.release()
            self._check_idle()

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` on an ASR slot, in the worker's threads (one step of work other than
        the queue's, e.g. a verification decode: it waits for a slot in turn with the
        batches). Cancelled, the slot stays taken until the thread is done."""
        async with self._other:
            await self._sem.acquire()
            try:
                fut = asyncio.get_running_loop().run_in_executor(self._pool, work)
            except BaseException:
                self._sem.release()
                raise
            fut.add_done_callback(lambda _: self._sem.release())
            return await asyncio.shield(fut)

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
                self._drop(q.popleft().job, "shutdown")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)

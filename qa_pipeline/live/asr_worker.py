"""One ASR worker shared by every line: a bounded queue, batches across lines, decodes in
threads off the event loop.

* **Queue**: at most ``queue_max`` utterances wait. Overflow policy ``drop_oldest`` (default:
  the oldest waiting utterance is the one whose finding would be latest anyway) or
  ``reject_newest``; either way the dropped utterance is reported to its call (which goes
  on without it) and counted in ``qa_dropped_total{stage="asr",reason="queue_full"}``.
  ``max_age_s`` > 0 also drops utterances that waited too long (``reason="stale"``).
* **Slots**: ``slots`` decodes run at once (one per CTranslate2 worker of the shared model).
  When a slot frees, it takes up to ``max_batch`` of the oldest waiting utterances, from any
  lines, as one decode: under light load every utterance is decoded alone at once; under
  load batches form by themselves.
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

from ..asr.engine import AsrResult
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
        overflow: Literal["drop_oldest", "reject_newest"] = "drop_oldest",
        max_age_s: float = 0.0,
        metrics: Any = None,
    ) -> None:
        self.decoder = decoder
        self.on_done = on_done
        self.slots = slots
        self.max_batch = max_batch if decoder.opts.window == "fitted" else 1
        self.queue_max = queue_max
        self.overflow = overflow
        self.max_age_s = max_age_s
        self.metrics = metrics
        self._queue: collections.deque[AsrJob] = collections.deque()
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
        if len(self._queue) >= self.queue_max:
            if self.overflow == "reject_newest":
                self._drop(job, "queue_full")
                return
            self._drop(self._queue.popleft(), "queue_full")
        self._queue.append(job)
        self._idle.clear()
        self._depth()
        self._wake.set()

    def _drop(self, job: AsrJob, reason: str) -> None:
        self.dropped[reason] += 1
        if self.metrics is not None:
            self.metrics.on_drop("asr", reason)
        self.on_done(job, None, reason)

    def _depth(self) -> None:
        if self.metrics is not None:
            self.metrics.on_queue_depth("asr", len(self._queue))

    @property
    def depth(self) -> int:
        return len(self._queue)

    @property
    def busy(self) -> int:
        return self._inflight

    # -- consumer side --------------------------------------------------------------------

    def start(self) -> None:
        self._runner = asyncio.create_task(self._run(), name="live-asr-scheduler")

    async def _run(self) -> None:
        while True:
            await self._sem.acquire()
            while not self._queue:
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
        now = time.monotonic()
        batch: list[AsrJob] = []
        while self._queue and len(batch) < self.max_batch:
            job = self._queue.popleft()
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
        if not self._queue and self._inflight == 0:
            self._idle.set()

    async def drain(self) -> None:
        """Wait until nothing is queued or being decoded."""
        await self._idle.wait()

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
        while self._queue:
            self._drop(self._queue.popleft(), "shutdown")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=30)
        self._pool.shutdown(wait=False, cancel_futures=True)

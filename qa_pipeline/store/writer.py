"""Every ended call into the store, off the caller's thread: the writer that ``serve`` and
the distributed evaluators (``qa-pipeline evaluate``) share.

A call is handed over as its (redacted) transcript document and its scorecard
(:meth:`StoreWriter.submit`, or a ``scorecard`` + ``transcript`` event pair through
:class:`StoreSink`). ``submit`` never blocks: it puts the call on a **bounded queue** and
returns; when the queue is full the call is **dropped and counted**
(``qa_store_dropped_total{reason="queue_full"}``, a rate-limited warning naming the store).
One **writer thread** with its own connection takes what is queued, up to ``batch_max``
calls at a time, and writes each batch in **one transaction** (one commit per batch): per
call its transcript (``transcripts``, ``calls``, ``utterances``) and its scorecard as a
result row (``results``, ``verdicts``, ``findings``) of the live run.

**The store down** (a PostgreSQL server that does not answer, a SQLite file that cannot be
written): the batch in hand is kept and tried again with exponential **backoff** (0.5 s
doubling to 30 s), the connection opened anew; the first failure is logged as a warning
naming the store, later ones at most every 30 s, and the recovery once
(``qa_store_write_errors_total{reason}`` counts the failed attempts, ``qa_store_up`` is 0
meanwhile). Calls ended meanwhile wait in the queue; past its size they are dropped and
counted. A call the database refuses while the store answers (a bad row) is dropped alone
(``reason="rejected"``), logged with the error, so one bad call cannot stall the rest. At
:meth:`StoreWriter.close` what could not be written within the timeout is counted too
(``reason="shutdown"``). So every call accepted is either written or counted as dropped,
never lost silently (a process killed outright loses its queue: the evaluator flushes the
store before it commits its offsets, so a new owner writes those calls again).

**Idempotent**: the rows are keyed by call id (``calls``, ``utterances``), by the
transcript's content (``transcripts``: ``doc:<sha256>``) and by run and call
(``results``, ``verdicts``, ``findings``): writing the same call again (an evaluator that
took over a partition replays the calls that were open on it) replaces its rows, it never
adds a second result.

**The live run** (:class:`LiveRun`): live results belong to one ``runs`` row per rule pack
version, ``live:<pack name>:<pack version>``, role ``active`` (the pack in service: its
latest result per call is the call's current score, see :meth:`Store.current_results`).
It is shared by every ``serve`` process and every evaluator scoring with that version, and
across restarts: a run is the pack that scored the calls, not a process, so a call scored
again by another process after a failover replaces its row instead of adding one. A new
pack version starts a new run (its calls' results sit beside those of the old version; the
latest counts). ``runs.inputs`` says ``live``; ``runs.args`` names the producer that
created the row first (``serve`` / ``evaluate``).

Incomplete calls (``Scorecard.complete`` false: lost utterances, cut off, shutdown,
timeout) are written like the others with ``results.complete = 0``: kept, but out of
trends and agent averages.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..errors import QAError
from ..messages import Scorecard, from_dict
from ..privacy import Redactor, redact_json
from ..sinks.base import DROP_LOG, Event, EventDropped, EventKind
from .base import Store, database_errors, store_label
from .keys import compact_json, doc_key
from .rows import result_row

log = logging.getLogger("qa_pipeline.store.writer")

#: the prefix of the live runs' ids (``live:<pack name>:<pack version>``)
LIVE_RUN_PREFIX = "live:"
QUEUE_MAX = 1000
BATCH_MAX = 100
BACKOFF_S = (0.5, 30.0)
#: repeated "store down" warnings: at most one per this many seconds
WARN_EVERY_S = 30.0


@dataclass(frozen=True)
class LiveRun:
    """The ``runs`` row live results belong to (see the module docstring)."""

    run_id: str
    pack_name: str
    pack_version: str
    producer: str

    @classmethod
    def for_pack(cls, pack: Any, producer: str) -> LiveRun:
        run_id = f"{LIVE_RUN_PREFIX}{pack.name}:{pack.version}"
        return cls(run_id, str(pack.name), str(pack.version), producer)


@dataclass
class WriterCounts:
    """What the writer did (also the ``qa_store_*`` metrics)."""

    submitted: int = 0
    written: int = 0
    batches: int = 0
    failed_attempts: int = 0
    dropped: Counter[str] = field(default_factory=Counter)

    @property
    def dropped_total(self) -> int:
        return sum(self.dropped.values())


#: why a call is dropped (the ``reason`` label of ``qa_store_dropped_total``)
DROP_REASONS = ("queue_full", "rejected", "shutdown")


class _Metrics:
    def __init__(self, registry: Any, queue_max: int) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge

        self.registry = r = registry if registry is not None else CollectorRegistry()
        self.written = Counter("qa_store_writes", "Ended calls written to the store", registry=r)
        self.dropped = Counter(
            "qa_store_dropped",
            "Ended calls not written to the store, by reason (queue_full, rejected, shutdown)",
            ["reason"],
            registry=r,
        )
        for reason in DROP_REASONS:  # at 0 from the start: the first drop is an increase
            self.dropped.labels(reason)
        self.errors = Counter(
            "qa_store_write_errors",
            "Failed store write attempts (retried with backoff), by exception type",
            ["reason"],
            registry=r,
        )
        self.queue = Gauge("qa_store_queue", "Ended calls waiting for the store", registry=r)
        self.capacity = Gauge(
            "qa_store_queue_capacity",
            "Ended calls the queue holds before drops (store_queue)",
            registry=r,
        )
        self.capacity.set(queue_max)
        self.up = Gauge("qa_store_up", "1 when the last store write succeeded", registry=r)
        self.up.set(1)


@dataclass(frozen=True)
class _Record:
    call_id: str
    doc: dict[str, Any]
    card: Scorecard
    ended_at: float


class StoreWriter:
    """The bounded queue and the writer thread (see the module docstring). ``target``: a
    SQLite path / ``sqlite:///path`` or a ``postgresql://`` URL; ``settings``: what the
    transcripts were made with (their ``settings`` row); ``redactor``: applied to each
    document before it is stored (what reaches the store is redacted whatever the producer
    did; masks already there are kept); ``registry``: where the ``qa_store_*`` metrics go."""

    def __init__(
        self,
        target: str,
        run: LiveRun,
        *,
        settings: dict[str, Any] | None = None,
        redactor: Redactor | None = None,
        queue_max: int = QUEUE_MAX,
        batch_max: int = BATCH_MAX,
        backoff_s: tuple[float, float] = BACKOFF_S,
        registry: Any = None,
    ) -> None:
        if queue_max < 1 or batch_max < 1:
            raise ValueError("queue_max and batch_max must be >= 1")
        self.target = str(target)
        self.label = store_label(self.target)  # raises for a value that is not a store
        self.run = run
        self.settings = settings or {}
        self.redactor = redactor
        self.batch_max = batch_max
        self.backoff_s = backoff_s
        self.counts = WriterCounts()
        self.metrics = _Metrics(registry, queue_max)
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_max)
        self._lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._outstanding = 0  # calls accepted, not yet written or dropped
        self._stop = threading.Event()
        self._give_up_at: float | None = None  # close(): past it, what is left is dropped
        self._store: Store | None = None
        self._settings_hash: str | None = None
        self.down_since: float | None = None
        self._last_warn = float("-inf")
        self._thread = threading.Thread(target=self._loop, name="store-writer", daemon=True)
        self._started = False

    # -- the caller's side ------------------------------------------------------------------

    def start(self) -> StoreWriter:
        if not self._started:
            self._started = True
            self._thread.start()
        return self

    @property
    def up(self) -> bool:
        """Whether the store took the last write (or none failed yet)."""
        return self.down_since is None

    @property
    def pending(self) -> int:
        """Calls accepted and not yet written or dropped."""
        with self._lock:
            return self._outstanding

    def submit(self, doc: dict[str, Any], card: Scorecard) -> bool:
        """Queue an ended call (never blocks). False: the queue was full and the call is
        dropped (counted, logged)."""
        rec = _Record(str(doc["call"]["call_id"]), doc, card, time.time())
        with self._lock:
            self.counts.submitted += 1
            try:
                self._queue.put_nowait(rec)
            except queue.Full:
                self._drop("queue_full", 1, f"{self._queue.maxsize} calls waiting")
                return False
            self._outstanding += 1
        self.metrics.queue.set(self._queue.qsize())
        return True

    def flush(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` until everything accepted is written (or dropped). Returns
        at once, False, while the store is down (the calls stay queued and are retried):
        a caller that flushes on a schedule is not held up by a database outage."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._idle:
            while self._outstanding:
                if self.down_since is not None:
                    return False
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._idle.wait(0.05 if left is None else min(0.05, left))
            return True

    def close(self, timeout: float = 10.0) -> WriterCounts:
        """Write what is queued (within ``timeout``), then stop; what is left is counted as
        dropped (``shutdown``)."""
        if self._started:
            self._give_up_at = time.monotonic() + timeout
            self._stop.set()
            self._thread.join(timeout + 5.0)
        left = self._drain_queue()
        if left:
            self._drop("shutdown", len(left), "not written before the writer stopped")
            self._done(len(left))
        if self._store is not None and not self._thread.is_alive():
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None
        return self.counts

    # -- the writer thread ------------------------------------------------------------------

    def _drain_queue(self) -> list[Any]:
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def _take(self) -> list[_Record]:
        """The next batch (waits a moment for the first call; empty: none came)."""
        try:
            batch = [self._queue.get(timeout=0.1)]
        except queue.Empty:
            return []
        while len(batch) < self.batch_max:
            try:
                batch.append(self._queue.get_nowait())
            except queue.Empty:
                break
        self.metrics.queue.set(self._queue.qsize())
        return batch

    def _loop(self) -> None:
        while True:
            if self._giving_up():  # close() timed out: what is queued is close()'s to count
                return
            batch = self._take()
            if batch:
                self._write_batch(batch)
            elif self._stop.is_set():
                return

    def _done(self, n: int) -> None:
        with self._idle:
            self._outstanding -= n
            self._idle.notify_all()

    def _write_batch(self, batch: list[_Record]) -> None:
        delay = self.backoff_s[0]
        while batch:
            try:
                self._write(batch)
            except Exception as exc:
                self._failed(exc)
                if not self._unreachable(exc) and self._reachable():
                    # the store answers and refused the batch: find the call it refuses
                    batch = self._one_by_one(batch)
                    if not batch:
                        return
                if self._giving_up():
                    self._drop("shutdown", len(batch), "the store is down")
                    self._done(len(batch))
                    return
                if self._stop.is_set():  # closing: keep trying until the close timeout
                    time.sleep(min(delay, 0.5))
                else:
                    self._stop.wait(delay)
                delay = min(delay * 2, self.backoff_s[1])
                continue
            self._recovered()
            self._written(len(batch))
            self._done(len(batch))
            return

    def _written(self, n: int) -> None:
        self.counts.written += n
        self.counts.batches += 1
        self.metrics.written.inc(n)

    def _one_by_one(self, batch: list[_Record]) -> list[_Record]:
        """Each call alone: one the store refuses is dropped (``rejected``, logged). Returns
        what is left when the store stops answering meanwhile (to be retried)."""
        for i, rec in enumerate(batch):
            try:
                self._write([rec])
            except Exception as exc:
                if self._unreachable(exc):
                    self._failed(exc)
                    return batch[i:]
                log.error(
                    "store %s refused call %s: %s: %s; not stored",
                    self.label,
                    rec.call_id,
                    type(exc).__name__,
                    exc,
                    exc_info=not self._is_db_error(exc),
                )
                self._drop("rejected", 1, f"call {rec.call_id}")
            else:
                self._recovered()
                self._written(1)
            self._done(1)
        return []

    def _giving_up(self) -> bool:
        return self._give_up_at is not None and time.monotonic() >= self._give_up_at

    @staticmethod
    def _is_db_error(exc: Exception) -> bool:
        return isinstance(exc, database_errors())

    @staticmethod
    def _unreachable(exc: Exception) -> bool:
        """The store did not answer (connection refused or lost, locked, cannot open the
        file): retried with backoff. Other errors are the store refusing what it got."""
        if isinstance(exc, (QAError, OSError, sqlite3.OperationalError)):
            return True
        try:
            import psycopg
        except ImportError:  # pragma: no cover
            return False
        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store(self.target)
            self._settings_hash = None
        return self._store

    def _close_store(self) -> None:
        if self._store is not None:
            with contextlib.suppress(Exception):
                self._store.close()
            self._store = None

    def _reachable(self) -> bool:
        try:
            self._open().execute("SELECT 1").fetchall()
        except Exception:
            self._close_store()
            return False
        return True

    def _write(self, batch: list[_Record]) -> None:
        store = self._open()
        try:
            if self._settings_hash is None:
                self._settings_hash = store.put_settings(self.settings)
            r = self.run
            store.execute(
                "INSERT INTO runs (run_id, pack_name, pack_version, role, inputs, args, "
                "started, finished) VALUES (?, ?, ?, 'active', 'live', ?, ?, NULL) "
                "ON CONFLICT DO NOTHING",
                (r.run_id, r.pack_name, r.pack_version, compact_json({"producer": r.producer}),
                 time.time()),
            )  # fmt: skip
            rows = []
            # one row per call (the last one handed in: a replay), in a fixed order: two
            # writers' batches lock the same calls in the same order
            latest = {rec.call_id: rec for rec in batch}
            for rec in sorted(latest.values(), key=lambda x: x.call_id):
                doc = rec.doc
                if self.redactor is not None:
                    redact_json(doc, self.redactor)
                stored = store.put_transcript(
                    doc, audio_sha=doc_key(doc), settings_hash_=self._settings_hash, commit=False
                )
                rows.append(
                    result_row(
                        r.run_id, stored.call_id, stored.transcript_key, rec.card, rec.ended_at
                    )
                )
            store.put_results(rows, commit=False)
            store.commit()
        except BaseException:
            with contextlib.suppress(Exception):
                store.rollback()
            self._close_store()
            raise

    def _failed(self, exc: Exception) -> None:
        reason = type(exc).__name__
        self.counts.failed_attempts += 1
        self.metrics.errors.labels(reason).inc()
        self.metrics.up.set(0)
        now = time.monotonic()
        first = self.down_since is None
        if first:
            self.down_since = now
        if first or now - self._last_warn >= WARN_EVERY_S:
            self._last_warn = now
            log.warning(
                "store %s: cannot write %d ended call(s) (%s: %s); kept and retried with "
                "backoff, calls past %d waiting are dropped",
                self.label,
                self.pending,
                reason,
                str(exc).strip().splitlines()[0] if str(exc).strip() else "",
                self._queue.maxsize,
            )
        with self._idle:
            self._idle.notify_all()  # a flush waiting returns: the store is down

    def _recovered(self) -> None:
        if self.down_since is not None:
            log.warning(
                "store %s: writing again after %.1f s",
                self.label,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
        self.metrics.up.set(1)

    def _drop(self, reason: str, n: int, detail: str) -> None:
        with self._count_lock:
            self.counts.dropped[reason] += n
        self.metrics.dropped.labels(reason).inc(n)
        DROP_LOG.dropped(f"store {self.label}", reason, n, detail)


class StoreSink:
    """The writer as a sink (the evaluator's fan-out): a call's ``scorecard`` event and its
    ``transcript`` event (the evaluator emits both when the call ends, the transcript
    last) make one :meth:`StoreWriter.submit`; other events are ignored. ``flush`` waits
    for the store (see :meth:`StoreWriter.flush`), so the stage commits its offsets after
    the calls are in the store whenever the store is up."""

    def __init__(self, writer: StoreWriter) -> None:
        self.writer = writer.start()
        self._cards: dict[str, Scorecard] = {}

    def emit(self, event: Event) -> None:
        if event.kind is EventKind.SCORECARD:
            self._cards[event.session_id or event.call_id] = from_dict(event.payload, Scorecard)
        elif event.kind is EventKind.TRANSCRIPT:
            card = self._cards.pop(event.session_id or event.call_id, None)
            if card is None:  # its scorecard went out before (a replay): written then
                return
            doc = dict(event.payload)
            doc["call"] = dict(doc["call"])
            if not self.writer.submit(doc, card):
                raise EventDropped("store_queue_full", f"call {event.call_id}")

    def flush(self, timeout: float | None = None) -> None:
        self.writer.flush(timeout)

    def close(self) -> None:
        self.writer.close()

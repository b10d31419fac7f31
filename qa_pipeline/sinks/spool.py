"""A durable, bounded, ordered on-disk queue of events waiting for a remote sink.

Storage is one SQLite database (stdlib ``sqlite3``) in WAL mode, not hand-rolled segment
files: a commit is atomic, a torn write after a crash is rolled back by SQLite itself (no
recovery code of our own to get wrong), ``INTEGER PRIMARY KEY AUTOINCREMENT`` gives a
strictly increasing id that is never reused (ordered replay across restarts), and
"delete everything delivered up to id N" is one statement. Appends are one small
transaction each (~20 µs with ``sync="normal"``, ~0.5 ms with ``sync="full"`` on this
machine's disk); at a call centre's event rate (a few per second per line) either is noise.

``sync`` policy: ``full`` fsyncs every commit (survives power loss); ``normal`` fsyncs at
WAL checkpoints only (survives a killed process — SIGKILL, OOM — but the last commits can
be lost if the machine itself goes down).

Bounds: ``max_events`` and ``max_bytes``. When full, ``overflow`` decides and every loss is
counted (``dropped``, the observer's ``on_event_dropped(name, reason)`` — the metric
``qa_events_dropped_total{sink=<name>,reason}`` — and a rate-limited warning):

* ``drop_oldest`` — the oldest spooled events are deleted to make room (fresh events, such
  as live alerts, win);
* ``reject_new`` — the new event is refused (history wins).

Retention (:meth:`Spool.purge`): events whose envelope was produced before their kind's
cut-off are deleted (an event the broker never took, kept past the retention period, is
personal data kept too long). Like an overflow, every one is counted — ``dropped``,
``qa_events_dropped_total{sink,reason="retention"}`` — and logged.

One process owns a spool directory at a time (an ``flock`` on ``spool.lock``, released by
the kernel when the owner dies), so replay order is never shared between writers.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import QAError
from .base import DROP_LOG, NullObserver, SinkObserver

OverflowPolicy = Literal["drop_oldest", "reject_new"]
SyncPolicy = Literal["full", "normal"]


class SpoolError(QAError):
    """The spool cannot be opened (locked by another process, unreadable...)."""


class SpoolInUse(SpoolError):
    """Another process holds the spool (its lock)."""


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    """One spooled event: ``id`` orders replay; ``key`` is the call id."""

    id: int
    kind: str
    key: str
    value: bytes

    @property
    def size(self) -> int:
        return len(self.value) + len(self.key)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    value BLOB NOT NULL
)
"""


def _size(rec: tuple[str, str, bytes]) -> int:
    return len(rec[2]) + len(rec[1])


class Spool:
    """Thread-safe: producers ``append``; one consumer ``peek``\\s and ``ack``\\s in order."""

    def __init__(
        self,
        directory: str | Path,
        *,
        max_events: int = 1_000_000,
        max_bytes: int = 512 * 1024 * 1024,
        overflow: OverflowPolicy = "drop_oldest",
        sync: SyncPolicy = "full",
        name: str = "spool",
        observer: SinkObserver | None = None,
    ) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("spool bounds must be positive")
        self.directory = Path(directory)
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.overflow: OverflowPolicy = overflow
        self.name = name
        self._observer: SinkObserver = observer or NullObserver()
        self._lock = threading.Lock()
        self.dropped: dict[str, int] = {}
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = self._take_lock()
        try:
            self._db = sqlite3.connect(
                self.directory / "spool.sqlite3", isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"PRAGMA synchronous={'FULL' if sync == 'full' else 'NORMAL'}")
            self._db.execute(_SCHEMA)
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(value) + LENGTH(key)), 0) FROM events"
            ).fetchone()
        except sqlite3.Error as e:
            os.close(self._lock_fd)
            raise SpoolError(f"{self.directory}: cannot open spool: {e}") from e
        self._count = int(row[0])
        self._bytes = int(row[1])
        self._closed = False
        self._report()

    def _take_lock(self) -> int:
        fd = os.open(self.directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise SpoolInUse(f"{self.directory}: spool is in use by another process") from e
        return fd

    # -- state ---------------------------------------------------------------------------

    def __len__(self) -> int:
        return self._count

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def _report(self) -> None:
        self._observer.on_spool(self.name, self._count, self._bytes)

    def _count_drop(self, reason: str, n: int) -> None:
        if n:
            self.dropped[reason] = self.dropped.get(reason, 0) + n
            self._observer.on_event_dropped(self.name, reason, n)
            DROP_LOG.dropped(self.name, reason, n, f"spool {self.directory} is full")

    # -- writing -------------------------------------------------------------------------

    def append(self, kind: str, key: str, value: bytes) -> bool:
        """Store one event durably; ``False`` when ``reject_new`` refused it."""
        return self.append_many([(kind, key, value)]) == 1

    def append_many(self, records: Iterable[tuple[str, str, bytes]]) -> int:
        """Store several events in one transaction (one fsync); returns how many were kept."""
        batch = list(records)
        with self._lock:
            self._check_open()
            accepted = self._make_room(batch)
            if accepted:
                with self._db:
                    self._db.executemany(
                        "INSERT INTO events (kind, key, value) VALUES (?, ?, ?)", accepted
                    )
                self._count += len(accepted)
                self._bytes += sum(len(v) + len(k) for _, k, v in accepted)
            self._report()
            return len(accepted)

    def _make_room(self, batch: list[tuple[str, str, bytes]]) -> list[tuple[str, str, bytes]]:
        """Apply the bounds to ``batch``; returns the records to insert (lock held)."""
        new_bytes = sum(len(v) + len(k) for _, k, v in batch)
        over_events = self._count + len(batch) - self.max_events
        over_bytes = self._bytes + new_bytes - self.max_bytes
        if over_events <= 0 and over_bytes <= 0:
            return batch
        if self.overflow == "reject_new":
            kept: list[tuple[str, str, bytes]] = []
            count, size = self._count, self._bytes
            for rec in batch:
                rec_size = len(rec[2]) + len(rec[1])
                if count + 1 <= self.max_events and size + rec_size <= self.max_bytes:
                    kept.append(rec)
                    count += 1
                    size += rec_size
            self._count_drop("overflow_reject_new", len(batch) - len(kept))
            return kept
        # drop_oldest: a record bigger than the whole spool can never fit ('too_large');
        # a batch bigger than the spool keeps its newest part; then delete from the head.
        fitting = [r for r in batch if _size(r) <= self.max_bytes]
        self._count_drop("too_large", len(batch) - len(fitting))
        cut = 0
        total = sum(_size(r) for r in fitting)
        while fitting[cut:] and (len(fitting) - cut > self.max_events or total > self.max_bytes):
            total -= _size(fitting[cut])
            cut += 1
        self._count_drop("overflow_drop_oldest", cut)
        fitting = fitting[cut:]
        need_events = self._count + len(fitting) - self.max_events
        need_bytes = self._bytes + sum(len(v) + len(k) for _, k, v in fitting) - self.max_bytes
        removed = 0
        while (need_events > 0 or need_bytes > 0) and self._count > 0:
            rows = self._db.execute(
                "SELECT id, LENGTH(value) + LENGTH(key) FROM events ORDER BY id LIMIT 256"
            ).fetchall()
            last_id = None
            for row_id, size in rows:
                if need_events <= 0 and need_bytes <= 0:
                    break
                last_id = row_id
                need_events -= 1
                need_bytes -= size
                self._count -= 1
                self._bytes -= size
                removed += 1
            if last_id is None:
                break
            with self._db:
                self._db.execute("DELETE FROM events WHERE id <= ?", (last_id,))
        self._count_drop("overflow_drop_oldest", removed)
        return fitting

    # -- retention -----------------------------------------------------------------------

    def purge(self, before: Mapping[str, str], *, dry_run: bool = False) -> dict[str, int]:
        """Delete the events of each kind in ``before`` (event kind -> ISO UTC time in the
        envelope's ``produced_at`` form) produced before that time; returns how many per
        kind. Events of other kinds, or without a readable ``produced_at``, stay. Counted as
        drops with reason ``retention`` (unless ``dry_run``, which only counts)."""
        counts: dict[str, int] = {}
        with self._lock:
            self._check_open()
            for kind, cutoff in sorted(before.items()):
                where = (
                    "kind = ? AND json_valid(CAST(value AS TEXT)) AND "
                    "json_extract(CAST(value AS TEXT), '$.produced_at') < ?"
                )
                n, size = self._db.execute(
                    "SELECT COUNT(*), COALESCE(SUM(LENGTH(value) + LENGTH(key)), 0) "
                    f"FROM events WHERE {where}",
                    (kind, cutoff),
                ).fetchone()
                if n and not dry_run:
                    secure = int(self._db.execute("PRAGMA secure_delete").fetchone()[0])
                    self._db.execute("PRAGMA secure_delete = ON")  # no copy in free pages
                    try:
                        with self._db:
                            self._db.execute(f"DELETE FROM events WHERE {where}", (kind, cutoff))
                    finally:
                        self._db.execute(f"PRAGMA secure_delete = {secure}")
                    self._count -= int(n)
                    self._bytes -= int(size)
                    self.dropped["retention"] = self.dropped.get("retention", 0) + int(n)
                    self._observer.on_event_dropped(self.name, "retention", int(n))
                    DROP_LOG.dropped(
                        self.name,
                        "retention",
                        int(n),
                        f"spool {self.directory}: {kind} events produced before {cutoff}",
                    )
                if n:
                    counts[kind] = int(n)
            if not dry_run and counts:
                self._report()
        return counts

    # -- reading -------------------------------------------------------------------------

    def peek(self, limit: int = 500) -> list[SpoolRecord]:
        """The oldest ``limit`` events, oldest first (they stay until :meth:`ack`)."""
        with self._lock:
            self._check_open()
            rows = self._db.execute(
                "SELECT id, kind, key, value FROM events ORDER BY id LIMIT ?", (limit,)
            ).fetchall()
        return [SpoolRecord(int(r[0]), str(r[1]), str(r[2]), bytes(r[3])) for r in rows]

    def ack(self, up_to_id: int) -> int:
        """Forget every event with ``id <= up_to_id`` (delivered); returns how many."""
        with self._lock:
            self._check_open()
            row = self._db.execute(
                "SELECT COUNT(*), COALESCE(SUM(LENGTH(value) + LENGTH(key)), 0) "
                "FROM events WHERE id <= ?",
                (up_to_id,),
            ).fetchone()
            with self._db:
                self._db.execute("DELETE FROM events WHERE id <= ?", (up_to_id,))
            n, size = int(row[0]), int(row[1])
            self._count -= n
            self._bytes -= size
            self._report()
            return n

    def _check_open(self) -> None:
        if self._closed:
            raise SpoolError(f"{self.directory}: spool is closed")

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            finally:
                self._db.close()
                os.close(self._lock_fd)

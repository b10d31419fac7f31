"""Alert acknowledgements: who acknowledged which alert, and when, kept across restarts.

A supervisor acknowledging an alert on the dashboard says "seen, being handled"; every other
page shows it as acknowledged by that person at that time. :class:`AckStore` is what the
server needs of wherever they are kept; :class:`FileAckStore` keeps them in memory, keyed by
the alert's event id, and appends each one to a JSONL file (beside the audit log) that it
reads back at start::

    {"event_id": "call-7:4", "user": "wang", "at": 1796636520.123,
     "time": "2026-12-07T09:42:00.123+00:00"}

The file is appended to (``O_APPEND``, one ``write`` per record, ``0600``); a line that is
not a record (a torn last line after a crash) is skipped when read. With a store, the
dashboard keeps them in its ``alert_acks`` table instead (:class:`.history.StoreAckStore`).

**Bounded.** An acknowledgement matters while its alert can still be shown, so the file
keeps (as the dashboard's memory does) the first acknowledgement of each alert, none older
than ``keep_days`` (the dashboard passes the scorecards' retention, which alerts belong to:
an alert is older than its acknowledgement, so it has been purged everywhere else by then)
and at most ``max_acks`` of them, the newest (what :class:`~.state.DashboardState`
remembers, its ``dedupe_window``). It is compacted to that when opened and again whenever
``max_acks`` records have been appended since (so it holds at most twice that many lines):
rewritten beside itself and renamed over, in the same format, so a reader of the old code
reads it as before. What compaction left out is counted (:attr:`FileAckStore.dropped`) and
logged. The file belongs to one dashboard process: a second one appending to it while the
first compacts may lose an acknowledgement.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ..errors import QAError
from ..retention import RetentionConfig

log = logging.getLogger("qa_pipeline.dashboard")

DEFAULT_ACKS_LOG = "dashboard-acks.jsonl"
#: acknowledgements kept at most (the newest): what the dashboard's state remembers
MAX_ACKS = 100_000
#: days an acknowledgement is kept unless told: the scorecards' retention (alerts are
#: scorecard data, ``retention.scorecards``) by default
DEFAULT_KEEP_DAYS: int | None = RetentionConfig.model_fields["scorecards"].default


class AckError(QAError):
    """The acknowledgements file cannot be read or written where it is configured."""


@dataclass(frozen=True)
class Ack:
    """``user`` acknowledged the alert ``event_id`` at ``at`` (Unix time)."""

    event_id: str
    user: str
    at: float

    def view(self) -> dict[str, object]:
        """As an alert carries it (``alert["ack"]``)."""
        return {"user": self.user, "at": self.at}


class AckStore(Protocol):
    """Where acknowledgements are kept. The first acknowledgement of an alert stands."""

    def ack(self, event_id: str, user: str, at: float) -> Ack:
        """Record one; returns the acknowledgement that stands (an earlier one, if any)."""
        ...

    def acks(self) -> Mapping[str, Ack]:
        """Every acknowledgement, by event id."""
        ...


def acks_path_beside(audit_log: Path) -> Path:
    """The acknowledgements file kept beside an audit log."""
    return audit_log.with_name(DEFAULT_ACKS_LOG)


class FileAckStore:
    """Acknowledgements in memory, appended to ``path`` (``None``: memory only, gone at a
    restart). Thread-safe. Whether ``path`` can be written is checked here, so a dashboard
    that could not keep them fails at start rather than at a supervisor's click.

    ``keep_days``: acknowledgements older than this are dropped (``None``: kept however
    old); ``max_acks``: at most this many are kept, the newest (module docstring).
    ``dropped``: how many compaction left out, by why (``expired``, ``over_cap``,
    ``repeated``: a later acknowledgement of an alert already acknowledged, ``unreadable``:
    a line that is no record)."""

    def __init__(
        self,
        path: Path | None,
        *,
        keep_days: float | None = None,
        max_acks: int = MAX_ACKS,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_acks < 1:
            raise ValueError(f"max_acks={max_acks}: keep at least one acknowledgement")
        self.path = path
        self.keep_days = keep_days
        self.max_acks = max_acks
        self._clock = clock
        self._lock = threading.Lock()
        self._acks: dict[str, Ack] = {}
        self._appended = 0  # records appended since the last compaction
        self.dropped: dict[str, int] = {
            "expired": 0,
            "over_cap": 0,
            "repeated": 0,
            "unreadable": 0,
        }
        if path is None:
            return
        if path.exists():
            ok = path.is_file() and os.access(path, os.R_OK | os.W_OK)
        else:
            ok = path.parent.is_dir() and os.access(path.parent, os.W_OK | os.X_OK)
        if not ok:
            raise AckError(f"acknowledgements file {path}: cannot write there")
        if path.exists():
            with self._lock:
                self._compact()

    def ack(self, event_id: str, user: str, at: float) -> Ack:
        with self._lock:
            standing = self._acks.get(event_id)
            if standing is not None:
                return standing
            new = Ack(event_id, user, at)
            if self.path is not None:
                self._append(new)  # kept on disk before anyone is told
                self._appended += 1
            self._acks[event_id] = new
            while len(self._acks) > self.max_acks:  # the oldest (kept in time order) go
                del self._acks[next(iter(self._acks))]
                if self.path is None:
                    self.dropped["over_cap"] += 1
            if self.path is not None and self._appended >= self.max_acks:
                self._compact()
            return new

    def acks(self) -> Mapping[str, Ack]:
        with self._lock:
            return dict(self._acks)

    def _compact(self) -> None:
        """Read the file back, keep what the bounds allow, rewrite it when that is less
        than it holds (under the lock)."""
        assert self.path is not None
        lines, records = _read_records(self.path)
        first: dict[str, Ack] = {}
        for a in records:
            first.setdefault(a.event_id, a)
        dropped = {"unreadable": lines - len(records), "repeated": len(records) - len(first)}
        kept = list(first.values())
        if self.keep_days is not None:
            cutoff = self._clock() - self.keep_days * 86400.0
            young = [a for a in kept if a.at >= cutoff]
            dropped["expired"] = len(kept) - len(young)
            kept = young
        if len(kept) > self.max_acks:
            dropped["over_cap"] = len(kept) - self.max_acks
        self._acks = _newest(kept, self.max_acks)
        self._appended = 0
        if len(self._acks) == lines:
            return  # nothing to leave out: the file stays as it is
        self._rewrite(self._acks.values())
        for why, n in dropped.items():
            self.dropped[why] = self.dropped.get(why, 0) + n
        log.info(
            "dashboard: acknowledgements file %s compacted to %d (left out: %s)",
            self.path,
            len(self._acks),
            ", ".join(f"{n} {why}" for why, n in dropped.items() if n) or "nothing",
        )

    def _rewrite(self, acks: Iterable[Ack]) -> None:
        """The file holding ``acks`` only: written beside it (``0600``), synced, renamed
        over it (a crash leaves the old file or the new one, never half of one)."""
        assert self.path is not None
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"".join(_record(a) for a in acks))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _append(self, a: Ack) -> None:
        assert self.path is not None
        data = _record(a)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def _record(a: Ack) -> bytes:
    """One line of the file."""
    time_ = datetime.fromtimestamp(a.at, UTC).isoformat(timespec="milliseconds")
    line = json.dumps(
        {"event_id": a.event_id, "user": a.user, "at": a.at, "time": time_},
        ensure_ascii=False,
    )
    return (line + "\n").encode()


def _newest(acks: Iterable[Ack], n: int) -> dict[str, Ack]:
    """The ``n`` newest of ``acks`` (by time; oldest first, as written), by event id."""
    return {a.event_id: a for a in sorted(acks, key=lambda a: a.at)[-n:]}


def _read_records(path: Path) -> tuple[int, list[Ack]]:
    """The non-blank lines of ``path`` and the records among them, in file order."""
    lines = 0
    out: list[Ack] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            lines += 1
            try:
                rec = json.loads(line)
                a = Ack(str(rec["event_id"]), str(rec["user"]), float(rec["at"]))
            except (ValueError, KeyError, TypeError):
                continue
            if math.isfinite(a.at):
                out.append(a)
    return lines, out


def read_acks(path: Path) -> dict[str, Ack]:
    """The acknowledgements in ``path`` by event id (the first of each stands); lines that
    are not records are skipped."""
    out: dict[str, Ack] = {}
    for a in _read_records(path)[1]:
        out.setdefault(a.event_id, a)
    return out

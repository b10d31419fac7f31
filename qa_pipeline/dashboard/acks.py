"""Alert acknowledgements: who acknowledged which alert, and when, kept across restarts.

A supervisor acknowledging an alert on the dashboard says "seen, being handled"; every other
page shows it as acknowledged by that person at that time. :class:`AckStore` is what the
server needs of wherever they are kept; :class:`FileAckStore` keeps them in memory, keyed by
the alert's event id, and appends each one to a JSONL file (beside the audit log) that it
reads back at start::

    {"event_id": "call-7:4", "user": "wang", "at": 1796636520.123,
     "time": "2026-12-07T09:42:00.123+00:00"}

The file is only ever appended to (``O_APPEND``, one ``write`` per record, ``0600``); a line
that is not a record (a torn last line after a crash) is skipped when read. The store will
move into the transcript store's database later (its migrations 0300-0399); that is one
class implementing :class:`AckStore`.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ..errors import QAError

DEFAULT_ACKS_LOG = "dashboard-acks.jsonl"


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
    that could not keep them fails at start rather than at a supervisor's click."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._acks: dict[str, Ack] = {}
        if path is None:
            return
        if path.exists():
            ok = path.is_file() and os.access(path, os.R_OK | os.W_OK)
        else:
            ok = path.parent.is_dir() and os.access(path.parent, os.W_OK | os.X_OK)
        if not ok:
            raise AckError(f"acknowledgements file {path}: cannot write there")
        if path.exists():
            self._acks = read_acks(path)

    def ack(self, event_id: str, user: str, at: float) -> Ack:
        with self._lock:
            standing = self._acks.get(event_id)
            if standing is not None:
                return standing
            new = Ack(event_id, user, at)
            if self.path is not None:
                self._append(new)  # kept on disk before anyone is told
            self._acks[event_id] = new
            return new

    def acks(self) -> Mapping[str, Ack]:
        with self._lock:
            return dict(self._acks)

    def _append(self, a: Ack) -> None:
        assert self.path is not None
        time = datetime.fromtimestamp(a.at, UTC).isoformat(timespec="milliseconds")
        line = json.dumps(
            {"event_id": a.event_id, "user": a.user, "at": a.at, "time": time},
            ensure_ascii=False,
        )
        data = (line + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)


def read_acks(path: Path) -> dict[str, Ack]:
    """The acknowledgements in ``path`` by event id (the first of each stands); lines that
    are not records are skipped."""
    out: dict[str, Ack] = {}
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                rec = json.loads(line)
                a = Ack(str(rec["event_id"]), str(rec["user"]), float(rec["at"]))
            except (ValueError, KeyError, TypeError):
                continue
            out.setdefault(a.event_id, a)
    return out

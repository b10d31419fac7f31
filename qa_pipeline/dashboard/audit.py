"""The transcript audit log: who opened which call's transcript, as append-only JSONL.

One record (one line) per call whose transcript text the dashboard sent to someone::

    {"time": "2026-12-07T09:30:00.123+00:00", "user": "wang", "role": "supervisor",
     "call_id": "c-17", "route": "/api/calls/c-17", "client": "10.0.0.5"}

``route`` is ``/api/calls/<id>`` (one call opened), ``/api/state`` or ``/api/events`` (a
page's snapshot: every call with text in it; then, on the stream, each further call the
first time text of it is pushed). Roles without transcript text (viewer) leave no record.

An alert acknowledged on the dashboard is recorded too, with ``"action": "ack"`` and the
alert's ``event_id``, route ``/api/alerts/ack`` (the acknowledgement itself is kept by
:mod:`.acks`; this is the trail of who did what).
The file is opened ``O_APPEND`` and each batch is one ``write``; nothing in the dashboard
rewrites or truncates it. Rotation by renaming (logrotate without ``copytruncate``) is
noticed at the next record, which starts a new file at the path. Read it with ``qa-pipeline dashboard audit`` or ``jq``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import QAError

if TYPE_CHECKING:
    from .auth import Principal

log = logging.getLogger("qa_pipeline.dashboard")

DEFAULT_AUDIT_LOG = "dashboard-audit.jsonl"


class AuditError(QAError):
    """The audit log cannot be written where it is configured."""


class AuditLog:
    """Appends records to ``path``, created ``0600`` at the first record (a dashboard that
    never sends a transcript leaves no file). Whether it can be created is checked here."""

    def __init__(self, path: Path) -> None:
        self.path = path
        folder = path.parent
        if path.exists():
            ok = os.access(path, os.W_OK) and path.is_file()
        else:
            ok = folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
        if not ok:
            raise AuditError(f"audit log {path}: cannot write there")
        self._fd = -1
        self._lock = threading.Lock()

    def record(
        self,
        *,
        user: str,
        role: str,
        call_ids: Iterable[str],
        route: str,
        client: str | None,
        extra: Mapping[str, Any] | None = None,
    ) -> int:
        """Append one line per call id (``extra``: more fields of each, e.g. an action);
        returns how many."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        lines = [
            json.dumps(
                {
                    "time": now,
                    "user": user,
                    "role": role,
                    "call_id": cid,
                    "route": route,
                    "client": client,
                    **(extra or {}),
                },
                ensure_ascii=False,
            )
            + "\n"
            for cid in call_ids
        ]
        if not lines:
            return 0
        data = "".join(lines).encode()
        with self._lock:
            if self._fd >= 0 and self._rotated():
                os.close(self._fd)
                self._fd = -1
            if self._fd < 0:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            view = memoryview(data)
            while view:
                n = os.write(self._fd, view)
                view = view[n:]
        return len(lines)

    def _rotated(self) -> bool:
        """The path no longer names the open file (moved away by log rotation)."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return True
        own = os.fstat(self._fd)
        return (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1


def audit_opened(
    audit: AuditLog | None,
    p: Principal,
    call_ids: Iterable[str],
    route: str,
    client: str | None,
    extra: Mapping[str, Any] | None = None,
) -> None:
    """The dashboard's one audit line per call: ``p`` was sent ``call_ids`` (transcript,
    audio, an export, a review action) on ``route``. Nothing without a log; a log that
    cannot be written is logged as an error and the response still goes out."""
    if audit is None:
        return
    try:
        audit.record(
            user=p.name,
            role=p.role.value,
            call_ids=call_ids,
            route=route,
            client=client,
            extra=extra,
        )
    except OSError as e:
        log.error("dashboard: cannot write the audit log %s: %s", audit.path, e)


def read_audit(
    path: Path,
    *,
    user: str | None = None,
    call_id: str | None = None,
    since: str | None = None,
) -> Iterator[dict[str, Any]]:
    """The records of ``path``, optionally only one user's / one call's / from ``since`` (an
    ISO time; compared as UTC). A line that is not JSON is skipped."""
    since_t = datetime.fromisoformat(since.replace("Z", "+00:00")) if since else None
    if since_t is not None and since_t.tzinfo is None:
        since_t = since_t.replace(tzinfo=UTC)
    with path.open(encoding="utf-8") as f:
        for line in f:
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if not isinstance(rec, dict):
                continue
            if user is not None and rec.get("user") != user:
                continue
            if call_id is not None and rec.get("call_id") != call_id:
                continue
            if since_t is not None:
                try:
                    if datetime.fromisoformat(str(rec.get("time"))) < since_t:
                        continue
                except ValueError:
                    continue
            yield rec

"""Recorded calls' audio in the store (migration 0350): one ``recordings`` row per call
saying where its audio file is, its rate, channels and length, and whether the personal
data in it was beeped or silenced (``redacted``).

``serve`` writes a row when it keeps a call's recording (always redacted: the raw file never
outlives the call's end); ``score --store`` writes one for the input audio it scored (the
file as given: ``redacted = 0`` unless it is known to be redacted). The dashboard plays
evidence clips only from redacted recordings. The retention purge's ``audio`` kind removes
rows older than its cut-off together with their files (:func:`purge_recordings`).
"""

from __future__ import annotations

import hashlib
import re
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ..retention import as_epoch
from .base import Store

_SAFE = re.compile(r"[^A-Za-z0-9._-]")


def file_stem(call_id: str) -> str:
    """A file name for a call id: the id itself when it is a plain name, else the id with
    other characters replaced and a short hash (two ids never share a file)."""
    safe = _SAFE.sub("_", call_id).lstrip(".")[:80]
    if safe == call_id and safe:
        return safe
    return f"{safe or 'call'}-{hashlib.sha256(call_id.encode()).hexdigest()[:10]}"


def recording_path(directory: str | Path, call_id: str, fmt: str) -> Path:
    """Where ``serve`` keeps a call's (redacted) recording: ``<dir>/<call>.<fmt>``."""
    return Path(directory) / f"{file_stem(call_id)}.{fmt}"


_UPSERT = (
    "INSERT INTO recordings (call_id, path, sample_rate, channels, duration_s, redacted, "
    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE SET "
    "path = excluded.path, sample_rate = excluded.sample_rate, "
    "channels = excluded.channels, duration_s = excluded.duration_s, "
    "redacted = excluded.redacted, created_at = excluded.created_at"
)


@dataclass(frozen=True, slots=True)
class Recording:
    """Where a call's audio is and what it is."""

    call_id: str
    path: str
    sample_rate: int
    channels: int
    duration_s: float
    redacted: bool
    created_at: float


def put_recording(
    store: Store,
    call_id: str,
    path: str | Path,
    *,
    sample_rate: int,
    channels: int,
    duration_s: float,
    redacted: bool,
    created_at: float | None = None,
    commit: bool = True,
) -> Recording:
    """Keep (or replace) a call's recording row; the path is stored absolute."""
    rec = Recording(
        call_id,
        str(Path(path).absolute()),
        int(sample_rate),
        int(channels),
        round(float(duration_s), 3),
        bool(redacted),
        time.time() if created_at is None else float(created_at),
    )
    store.execute(
        _UPSERT,
        (
            rec.call_id,
            rec.path,
            rec.sample_rate,
            rec.channels,
            rec.duration_s,
            int(rec.redacted),
            rec.created_at,
        ),
    )
    if commit:
        store.commit()
    return rec


def get_recording(store: Store, call_id: str) -> Recording | None:
    """A call's recording row, or None (none kept, or a store before migration 0350)."""
    if not store.has_table("recordings"):
        return None
    row = store.execute(
        "SELECT call_id, path, sample_rate, channels, duration_s, redacted, created_at "
        "FROM recordings WHERE call_id = ?",
        (call_id,),
    ).fetchone()
    if row is None:
        return None
    return Recording(
        row[0], row[1], int(row[2]), int(row[3]), float(row[4]), bool(row[5]), float(row[6])
    )


def purge_recordings(store: Store, before: datetime, *, dry_run: bool = False) -> int:
    """Delete recordings older than ``before`` (a naive time is local): each row and its
    file (a file already gone is no error). A recording's age is its call's start time when
    the store knows it (``calls.started_epoch``, as the retention rules say), else when the
    row was written. Returns how many rows went (or would go)."""
    if not store.has_table("recordings"):
        return 0
    cut = as_epoch(before)
    rows = store.execute(
        "SELECT call_id, path FROM recordings WHERE COALESCE((SELECT c.started_epoch "
        "FROM calls c WHERE c.call_id = recordings.call_id), created_at) < ?",
        (cut,),
    ).fetchall()
    if dry_run or not rows:
        return len(rows)
    for _cid, path in rows:
        Path(path).unlink(missing_ok=True)
    store.executemany("DELETE FROM recordings WHERE call_id = ?", [(r[0],) for r in rows])
    store.commit()
    return len(rows)

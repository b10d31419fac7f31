"""JSONL files (and stdout): the embedded default sink, no server needed.

Layout ``per_kind`` (default) writes one file per event kind in ``directory``:
``transcript.jsonl``, ``utterance.jsonl``, ``finding.jsonl``, ``alert.jsonl``,
``scorecard.jsonl`` — so a consumer of scorecards never parses utterances. Layout ``single``
writes everything to ``events.jsonl`` in emission order. Each line is one
:class:`~qa_pipeline.sinks.base.Event` envelope as JSON (UTF-8, Chinese not escaped).
Files are opened in append mode, so re-runs add lines (dedupe by ``event_id``).

Durability: each event is one ``write(2)`` of its whole line on an unbuffered
``O_APPEND`` descriptor, so a line is in the OS as soon as ``emit`` returns (a tailing
reader sees it; a killed process loses nothing it emitted). ``fsync`` decides when the
OS is made to put it on disk (what a machine crash can lose): ``interval`` (default, a
background thread fsyncs the files written to, every ``fsync_interval_s``),
``every_event``, or ``never``. A write that fails (disk full, a file-size limit, an I/O
error) is cut back to the last whole line and the event is dropped with that reason
(:class:`~qa_pipeline.sinks.base.EventDropped`: counted in
``qa_events_dropped_total{sink="jsonl",reason}``, logged); the next event tries again.

Rotation: before a write, a file is rotated when the write would take it past
``rotate_max_bytes`` or when its day (local time; from the file's mtime at start) is not
today (``rotate_daily``). The current file keeps its name; the old one becomes
``<name>.<YYYY-MM-DD>.<NNN>.jsonl`` (its day, then a sequence number), and only the newest
``keep_rotated`` of those are kept per name.

Why not ``logging.handlers.RotatingFileHandler`` / ``TimedRotatingFileHandler``: they
rotate by size *or* by time, not both; they swallow write errors into ``handleError``
(so a lost event cannot be counted with its reason, and a short write leaves a torn
line); they have no fsync policy; and size rotation renames every backup on each
rotation (``.1`` -> ``.2`` ...), which moves files under a reader's feet.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import (
    DROP_LOG,
    Event,
    EventDropped,
    EventKind,
    NullObserver,
    SinkObserver,
    drop_reason_for_os_error,
)

log = logging.getLogger("qa_pipeline.sinks.jsonl")

SINK_NAME = "jsonl"

FsyncPolicy = Literal["every_event", "interval", "never"]


class JsonlSinkConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    directory: str | None = Field(
        default="out/events", description="where the .jsonl files go; None = no files"
    )
    layout: Literal["per_kind", "single"] = Field(
        default="per_kind", description="one file per event kind, or one events.jsonl"
    )
    stdout: bool = Field(default=False, description="also write each event line to stdout")
    kinds: tuple[EventKind, ...] = Field(
        default=tuple(EventKind), description="event kinds written (others are skipped)"
    )
    fsync: FsyncPolicy = Field(
        default="interval",
        description="when lines are forced to disk: every event, every fsync_interval_s, never",
    )
    fsync_interval_s: float = Field(default=1.0, gt=0, le=3600)
    rotate_max_bytes: int | None = Field(
        default=256 * 1024 * 1024, ge=1024, description="rotate a file before it passes this"
    )
    rotate_daily: bool = Field(default=True, description="rotate at the first write of a day")
    keep_rotated: int | None = Field(
        default=30, ge=1, description="rotated files kept per file name (None = all)"
    )


def _rotated_re(stem: str) -> re.Pattern[str]:
    return re.compile(rf"^{re.escape(stem)}\.(\d{{4}}-\d{{2}}-\d{{2}})\.(\d+)\.jsonl$")


class _File:
    """One open .jsonl file: size and day tracked for rotation; writes whole lines."""

    def __init__(self, path: Path, today: date) -> None:
        self.path = path
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        st = os.fstat(self.fd)
        self.size = st.st_size
        self.day = datetime.fromtimestamp(st.st_mtime).date() if self.size else today
        self.dirty = False

    def write(self, data: bytes) -> None:
        """All of ``data`` or nothing (a partial line is truncated away, then re-raised)."""
        start = self.size
        done = 0
        try:
            while done < len(data):
                done += os.write(self.fd, data[done:])
        except OSError:
            if done:
                try:
                    os.ftruncate(self.fd, start)
                except OSError as exc:  # the file now ends in a torn line: say so
                    log.error("jsonl: cannot cut torn line from %s: %r", self.path, exc)
                    self.size = os.fstat(self.fd).st_size
            raise
        self.size += done
        self.dirty = True

    def close(self) -> None:
        os.close(self.fd)


class JsonlSink:
    """Appends each event as a JSON line (see the module docstring for durability,
    rotation and losses). ``written`` counts lines written, ``skipped`` events of kinds
    not configured, ``dropped`` events refused by reason: offered = the sum of the three.
    """

    def __init__(
        self,
        config: JsonlSinkConfig,
        stdout: IO[str] | None = None,
        *,
        observer: SinkObserver | None = None,
        name: str = SINK_NAME,
        clock: Callable[[], datetime] = datetime.now,
    ) -> None:
        self.config = config
        self.name = name
        self._observer: SinkObserver = observer or NullObserver()
        self._clock = clock
        self._kinds = frozenset(config.kinds)
        self._dir = Path(config.directory) if config.directory else None
        self._files: dict[str, _File] = {}
        self._stdout = (stdout or sys.stdout) if config.stdout else None
        self._lock = threading.Lock()
        self._closed = False
        self.written = 0
        self.skipped = 0
        self.dropped: dict[str, int] = {}
        self.rotations = 0
        self._stop = threading.Event()
        self._syncer: threading.Thread | None = None
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)
            if config.fsync == "interval":
                self._syncer = threading.Thread(
                    target=self._sync_loop, name=f"{name}-fsync", daemon=True
                )
                self._syncer.start()

    def path_for(self, kind: EventKind) -> Path | None:
        if self._dir is None:
            return None
        name = "events" if self.config.layout == "single" else kind.value
        return self._dir / f"{name}.jsonl"

    # -- writing ---------------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if event.kind not in self._kinds:
            self.skipped += 1
            return
        data = event.to_json() + b"\n"
        with self._lock:
            if self._closed:
                raise RuntimeError("JsonlSink is closed")
            path = self.path_for(event.kind)
            if path is not None:
                try:
                    f = self._file_for(path, len(data))
                    f.write(data)
                    if self.config.fsync == "every_event":
                        os.fsync(f.fd)
                        f.dirty = False
                except OSError as exc:
                    reason = drop_reason_for_os_error(exc)
                    self.dropped[reason] = self.dropped.get(reason, 0) + 1
                    raise EventDropped(reason, f"{path}: {exc.strerror or exc}") from exc
            self.written += 1
            if self._stdout is not None:
                self._write_stdout(data.decode())

    def _write_stdout(self, line: str) -> None:
        try:
            self._stdout.write(line)  # type: ignore[union-attr]
            self._stdout.flush()  # type: ignore[union-attr]
        except (OSError, ValueError) as exc:  # a closed pipe: the files still have it
            self._observer.on_sink_error(self.name, "stdout")
            DROP_LOG.dropped(f"{self.name}.stdout", "stdout_error", 1, repr(exc))

    def _file_for(self, path: Path, incoming: int) -> _File:
        today = self._clock().date()
        f = self._files.get(path.name)
        if f is None:
            f = self._files[path.name] = _File(path, today)
        if f.size and (
            (self.config.rotate_daily and f.day != today)
            or (
                self.config.rotate_max_bytes is not None
                and f.size + incoming > self.config.rotate_max_bytes
            )
        ):
            self._rotate(f)
            f = self._files[path.name] = _File(path, today)
        return f

    def _rotate(self, f: _File) -> None:
        """Close ``f``, rename it to ``<stem>.<day>.<NNN>.jsonl``, apply retention."""
        del self._files[f.path.name]
        try:
            if self.config.fsync != "never":
                os.fsync(f.fd)
        finally:
            f.close()
        stem = f.path.name[: -len(".jsonl")]
        pattern = _rotated_re(stem)
        assert self._dir is not None
        existing = sorted(
            (m.group(1), int(m.group(2)), p)
            for p in self._dir.iterdir()
            if (m := pattern.match(p.name))
        )
        day = f.day.isoformat()
        n = max((k for d, k, _ in existing if d == day), default=0) + 1
        target = self._dir / f"{stem}.{day}.{n:03d}.jsonl"
        os.rename(f.path, target)
        self.rotations += 1
        log.info("jsonl: rotated %s to %s", f.path, target.name)
        existing.append((day, n, target))
        keep = self.config.keep_rotated
        if keep is not None and len(existing) > keep:
            for _, _, old in sorted(existing)[: len(existing) - keep]:
                try:
                    old.unlink()
                except OSError as exc:
                    log.warning("jsonl: cannot remove old %s: %r", old, exc)

    # -- durability ------------------------------------------------------------------------

    def _sync_dirty(self) -> None:
        """fsync the files written since the last call, outside the write lock."""
        with self._lock:
            fds = []
            for f in self._files.values():
                if f.dirty:
                    fds.append((f.path, os.dup(f.fd)))
                    f.dirty = False
        for path, fd in fds:
            try:
                os.fsync(fd)
            except OSError as exc:  # the data may not be on disk: count, log
                self._observer.on_sink_error(self.name, "fsync")
                log.error("jsonl: fsync of %s failed: %r", path, exc)
            finally:
                os.close(fd)

    def _sync_loop(self) -> None:
        while not self._stop.wait(self.config.fsync_interval_s):
            self._sync_dirty()

    def flush(self, timeout: float | None = None) -> None:
        """Lines are in the OS already; this also forces them to disk (unless ``never``)."""
        if self.config.fsync != "never":
            self._sync_dirty()
        if self._stdout is not None:
            with self._lock:
                self._stdout.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._stop.set()
        if self._syncer is not None:
            self._syncer.join(timeout=5.0)
        if self.config.fsync != "never":
            self._sync_dirty()
        with self._lock:
            for f in self._files.values():
                f.close()
            self._files.clear()
            if self._stdout is not None:
                self._stdout.flush()

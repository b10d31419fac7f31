"""JSONL files (and stdout): the embedded default sink, no server needed.

Layout ``per_kind`` (default) writes one file per event kind in ``directory``:
``transcript.jsonl``, ``utterance.jsonl``, ``finding.jsonl``, ``alert.jsonl``,
``scorecard.jsonl`` — so a consumer of scorecards never parses utterances. Layout ``single``
writes everything to ``events.jsonl`` in emission order. Each line is one
:class:`~qa_pipeline.sinks.base.Event` envelope as JSON (UTF-8, Chinese not escaped).
Files are opened in append mode, so re-runs add lines (dedupe by ``event_id``).
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import IO, Literal

from pydantic import BaseModel, ConfigDict, Field

from .base import Event, EventKind


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


class JsonlSink:
    """Appends each event as a JSON line; ``flush`` pushes buffered lines to the OS."""

    def __init__(self, config: JsonlSinkConfig, stdout: IO[str] | None = None) -> None:
        self.config = config
        self._kinds = frozenset(config.kinds)
        self._dir = Path(config.directory) if config.directory else None
        self._files: dict[str, IO[str]] = {}
        self._stdout = (stdout or sys.stdout) if config.stdout else None
        self._lock = threading.Lock()
        self._closed = False
        if self._dir is not None:
            self._dir.mkdir(parents=True, exist_ok=True)

    def path_for(self, kind: EventKind) -> Path | None:
        if self._dir is None:
            return None
        name = "events" if self.config.layout == "single" else kind.value
        return self._dir / f"{name}.jsonl"

    def _file(self, kind: EventKind) -> IO[str] | None:
        path = self.path_for(kind)
        if path is None:
            return None
        f = self._files.get(path.name)
        if f is None:
            f = path.open("a", encoding="utf-8")
            self._files[path.name] = f
        return f

    def emit(self, event: Event) -> None:
        if event.kind not in self._kinds:
            return
        line = event.to_json().decode() + "\n"
        with self._lock:
            if self._closed:
                raise RuntimeError("JsonlSink is closed")
            f = self._file(event.kind)
            if f is not None:
                f.write(line)
            if self._stdout is not None:
                self._stdout.write(line)

    def flush(self, timeout: float | None = None) -> None:
        with self._lock:
            for f in self._files.values():
                f.flush()
            if self._stdout is not None:
                self._stdout.flush()

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for f in self._files.values():
                f.close()
            self._files.clear()
            if self._stdout is not None:
                self._stdout.flush()

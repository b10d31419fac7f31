"""One recording stand-in for whatever a stage hands its output to.

:class:`Recorder` is both a source's call handler (``call_started`` / ``audio`` /
``call_error`` / ``call_ended``, see :mod:`qa_pipeline.sources.base`) and an event sink
(``emit`` / ``flush`` / ``close``, see :mod:`qa_pipeline.sinks.base`): it keeps everything it
is given, with the monotonic time it came and the thread it came on.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from qa_pipeline.messages import AudioChunk, CallInfo
    from qa_pipeline.sources.base import EndReason

__all__ = ["Recorder"]


class Recorder:
    """Keeps what it is handed. ``strict``: a ``call_error`` raises ``AssertionError``
    instead of being kept (for tests where no error may happen)."""

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self._lock = threading.Lock()
        # as a source's call handler
        self.started: list[CallInfo] = []
        self.chunks: list[AudioChunk] = []
        self.chunk_times: list[float] = []
        self.threads: set[int] = set()  # idents of the threads audio was handed on
        self.errors: list[tuple[str | None, str, str]] = []
        self.ended: list[tuple[str, EndReason]] = []
        # as an event sink: (monotonic time, event)
        self.events: list[tuple[float, Any]] = []
        self.flushes = 0
        self.closed = False

    # -- call handler -----------------------------------------------------------------
    def call_started(
        self, call: CallInfo, sample_rate: int | None = None, *, source: str = ""
    ) -> bool:
        """A source's call start (with its rate and name), or the live service telling
        its sinks a call started (the call alone, as the dashboard sink is told)."""
        self.started.append(call)
        return True

    def audio(self, chunk: AudioChunk) -> None:
        self.threads.add(threading.get_ident())
        self.chunk_times.append(time.monotonic())
        self.chunks.append(chunk)

    def call_error(
        self, call_id: str | None, reason: str, detail: str = "", *, source: str
    ) -> None:
        if self.strict:
            raise AssertionError(f"{reason}: {detail}")
        self.errors.append((call_id, reason, detail))

    def call_ended(self, call_id: str, reason: EndReason) -> None:
        self.ended.append((call_id, reason))

    def reasons(self) -> list[str]:
        """The reasons of the call errors, in order."""
        return [r for _, r, _ in self.errors]

    # -- event sink -------------------------------------------------------------------
    def emit(self, event: Any) -> None:
        with self._lock:
            self.events.append((time.monotonic(), event))

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1

    def close(self) -> None:
        self.closed = True

    @property
    def emitted(self) -> list[Any]:
        """The events, without their times."""
        return [e for _, e in self.events]

    def of(self, kind: str, call_id: str | None = None) -> list[tuple[float, Any]]:
        """``(time, event)`` of the events of one kind (``"scorecard"``, ...), of one call."""
        return [
            (t, e)
            for t, e in self.events
            if e.kind.value == kind and (call_id is None or e.call_id == call_id)
        ]

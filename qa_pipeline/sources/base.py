"""What every source reports, and the contract of a source."""

from __future__ import annotations

import enum
from typing import Protocol

from ..errors import QAError
from ..messages import AudioChunk, CallInfo


class EndReason(enum.StrEnum):
    """Why a call ended (a label of ``qa_live_calls_ended_total``)."""

    STOP = "stop"  # the platform said the call is over (Twilio stop, AudioSocket hangup)
    DISCONNECT = "disconnect"  # the connection dropped without a stop
    ERROR = "error"  # a protocol error closed the call
    SHUTDOWN = "shutdown"  # the service is stopping
    TIMEOUT = "timeout"  # idle or too long
    EOF = "eof"  # a replayed file or a device stream ran out


def shown(value: object, limit: int = 80) -> str:
    """Wire text for a log line: every unprintable character (newline, other controls,
    format and separator characters) escaped, so none can forge or disguise a line, and cut
    to ``limit`` characters with the full length said."""
    s = value if isinstance(value, str) else str(value)
    r = "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in s[:limit])
    return r + (f"...({len(s)} chars)" if len(s) > limit else "")


class SourceError(QAError):
    """A problem with one call's stream. ``reason`` is a short, countable class
    (``malformed_json``, ``unknown_event``, ``bad_codec``, ...); ``detail`` is for the log
    (it may quote the wire, so it is escaped and cut to 300 characters here)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        detail = shown(detail, 300)
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class CallHandler(Protocol):
    """Where a source sends a call's events. Called on the event loop; never blocks."""

    def call_started(self, call: CallInfo, sample_rate: int, *, source: str) -> bool:
        """A call begins. False: refused (e.g. a duplicate call id); the source drops it."""
        ...

    def audio(self, chunk: AudioChunk) -> None:
        """Audio of one channel, float32 at the call's rate, ``start`` on the call clock."""
        ...

    def call_error(
        self, call_id: str | None, reason: str, detail: str = "", *, source: str
    ) -> None:
        """A counted, logged problem with one call (or a connection not yet a call)."""
        ...

    def call_ended(self, call_id: str, reason: EndReason) -> None:
        """The call is over: it is scored with what arrived."""
        ...


class Source(Protocol):
    """A running source: ``start`` binds / opens, ``stop`` stops accepting and ends its
    open calls (each with ``call_ended(..., SHUTDOWN)``)."""

    name: str

    async def start(self, handler: CallHandler) -> None: ...

    async def stop(self) -> None: ...

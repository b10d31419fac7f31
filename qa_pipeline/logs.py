"""Logging for every command: ``--log-level`` and ``--log-format text|json``.

The standard library's :mod:`logging` with a small JSON formatter (no extra dependency):
one JSON object per line on stderr with ``ts`` (ISO 8601 UTC), ``level``, ``logger``,
``msg``, and, when known, ``call_id``, ``peer`` (the remote ``host:port`` of the connection
the line is about) and ``exc`` (a traceback, as one string). The text format is
``LEVEL logger: message`` with ``[call=… peer=…]`` appended when known.

Which call and peer a line is about comes from the record's ``extra`` (``call_id=``,
``peer=``) or, failing that, from the context: a source sets :data:`LOG_PEER` at the start
of each connection's task, the service sets :data:`LOG_CALL` when that connection's call
starts, and every log line of that task (and of the tasks it creates) carries them.

Both settings can also come from the environment (``QA_LOG_LEVEL``, ``QA_LOG_FORMAT``).
"""

from __future__ import annotations

import json
import logging
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO, Literal

LOG_CALL: ContextVar[str | None] = ContextVar("qa_log_call", default=None)
LOG_PEER: ContextVar[str | None] = ContextVar("qa_log_peer", default=None)

LEVELS = ("debug", "info", "warning", "error", "critical")
LogFormat = Literal["text", "json"]

_configured: dict[str, object] = {}


class ContextFilter(logging.Filter):
    """Gives every record ``call_id`` and ``peer`` (its ``extra``, else the context)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = LOG_CALL.get()
        if getattr(record, "peer", None) is None:
            record.peer = LOG_PEER.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per record (UTF-8 text, not ASCII-escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in ("call_id", "peer", "source"):
            value = getattr(record, key, None)
            if value is not None:
                doc[key] = str(value)
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``LEVEL logger: message [call=… peer=…]``."""

    def __init__(self) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ctx = [
            f"{name}={value}"
            for name, value in (
                ("call", getattr(record, "call_id", None)),
                ("peer", getattr(record, "peer", None)),
            )
            if value is not None
        ]
        if not ctx:
            return line
        head, sep, rest = line.partition("\n")  # after the message, before a traceback
        return f"{head} [{' '.join(ctx)}]{sep}{rest}"


class _StderrHandler(logging.StreamHandler):
    """Writes to ``stream``, else to whatever ``sys.stderr`` is at the time (a test
    runner may swap it)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        super().__init__(stream)
        self._fixed = stream

    @property
    def stream(self) -> IO[str]:
        return self._fixed or sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._fixed = value


def setup_logging(
    level: str | None = None, fmt: str | None = None, stream: IO[str] | None = None
) -> None:
    """(Re)configure the root logger: one handler on ``stream`` (stderr). ``None`` keeps
    what an earlier call chose (default ``warning``, ``text``)."""
    lvl = (level or str(_configured.get("level", "warning"))).lower()
    form = (fmt or str(_configured.get("format", "text"))).lower()
    if lvl not in LEVELS:
        raise ValueError(f"log level must be one of {', '.join(LEVELS)}, not {level!r}")
    if form not in ("text", "json"):
        raise ValueError(f"log format must be text or json, not {fmt!r}")
    _configured.update(level=lvl, format=form)
    handler = _StderrHandler(stream)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if form == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):  # ours, from an earlier call; others are left alone
        if isinstance(old, _StderrHandler):
            root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(lvl.upper())


def level_chosen() -> bool:
    """Whether the user chose a level (``--log-level`` or ``QA_LOG_LEVEL``)."""
    return bool(_configured.get("chosen"))


def choose(level: str | None, fmt: str | None) -> None:
    """The command line's choice (``None`` = not given); applied at once."""
    _configured["chosen"] = level is not None
    setup_logging(level, fmt)


def default_level(level: str) -> None:
    """A command's own default (``serve``: info), unless the user chose one."""
    if not level_chosen():
        setup_logging(level)

"""Event envelopes, the ``Sink`` contract, and a fan-out that isolates failing sinks.

Every message a sink sees is wrapped in an :class:`Event`: a versioned envelope with a
stable ``event_id`` so that consumers can de-duplicate (delivery to Kafka is at least once).

Session ids: a call's id comes from outside (an AudioSocket UUID, a file name, a test) and
can recur. So every run of a call gets a *session id* when it starts
(:func:`new_session_id`, kept in ``CallInfo.session_id`` and in each envelope), and the
event id is uuid5 of (session id, kind, emission sequence): the same call id seen again
gets new ids, while a producer retry or a replay of the same session (same stored
transcript document, same spool) gives the same ids, so downstream de-duplication works.

Losses: an event a sink cannot keep is *dropped with a reason*, never only "an error". A
sink's ``emit`` raises :class:`EventDropped` (the reason) or the sink reports a later loss
(spool overflow, broker rejection) through ``SinkObserver.on_event_dropped``; either way
it becomes ``qa_events_dropped_total{sink,reason}`` and a rate-limited warning.
"""

from __future__ import annotations

import enum
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

from ..callinfo import new_session_id
from ..errors import QAError
from ..messages import (
    SCHEMA_VERSION,
    CallInfo,
    Finding,
    Scorecard,
    Severity,
    Utterance,
    replace,
    to_dict,
)
from ..transcript import Transcript, transcript_to_dict

log = logging.getLogger("qa_pipeline.sinks")

#: Namespace of the deterministic event ids (uuid5).
EVENT_NAMESPACE = uuid.UUID("6f1c1e0a-5a0b-4f4e-9a53-7a0c2f6f9b10")


class EventKind(enum.StrEnum):
    """What an event carries. ``alert`` duplicates a critical finding for live paging."""

    TRANSCRIPT = "transcript"
    UTTERANCE = "utterance"
    FINDING = "finding"
    ALERT = "alert"
    SCORECARD = "scorecard"


@dataclass(frozen=True, slots=True)
class Event:
    """The envelope every sink writes (JSON object with these keys, ``payload`` last).

    ``seq`` is the event's position in its session's stream (0, 1, 2, ...): consumers can
    restore a call's order and detect gaps. ``produced_at`` is ISO 8601 UTC.
    ``session_id`` names the run of the call (see the module docstring); ``""`` only in
    envelopes written before it existed.
    """

    event_id: str
    kind: EventKind
    call_id: str
    seq: int
    schema_version: str
    produced_at: str
    payload: dict[str, Any]
    session_id: str = ""

    def to_json_dict(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "kind": self.kind.value,
            "call_id": self.call_id,
            "session_id": self.session_id,
            "seq": self.seq,
            "schema_version": self.schema_version,
            "produced_at": self.produced_at,
            "payload": self.payload,
        }

    def to_json(self) -> bytes:
        """Compact UTF-8 JSON (Chinese text kept as is, not \\u-escaped)."""
        return json.dumps(self.to_json_dict(), ensure_ascii=False, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes | str) -> Event:
        d = json.loads(data)
        return cls(
            event_id=str(d["event_id"]),
            kind=EventKind(d["kind"]),
            call_id=str(d["call_id"]),
            seq=int(d["seq"]),
            schema_version=str(d["schema_version"]),
            produced_at=str(d["produced_at"]),
            payload=dict(d["payload"]),
            session_id=str(d.get("session_id") or ""),
        )


def with_session(call: CallInfo) -> CallInfo:
    """``call`` with a session id: its own if it has one, else a new one."""
    return call if call.session_id else replace(call, session_id=new_session_id())


def event_id_for(session_id: str, kind: EventKind, seq: int) -> str:
    """Deterministic within a session (retries and replays of it dedupe), unique across
    sessions (a recurring call id gets new ids)."""
    return uuid.uuid5(EVENT_NAMESPACE, f"{session_id}\x1f{kind.value}\x1f{seq}").hex


def utc_now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class EventFactory:
    """Builds the envelopes of one call's session, numbering them in emission order.

    One factory per session (per-call state stays in the call's own object). Without a
    ``session_id`` a new one is minted here. A critical finding yields two events: the
    ``finding`` and an ``alert``.
    """

    def __init__(self, call_id: str, *, session_id: str = "", first_seq: int = 0) -> None:
        self.call_id = call_id
        self.session_id = session_id or new_session_id()
        self._seq = first_seq

    @classmethod
    def for_call(cls, call: CallInfo) -> EventFactory:
        """The factory of ``call``'s session (``call.session_id``, or a new one)."""
        return cls(call.call_id, session_id=call.session_id)

    def _make(self, kind: EventKind, payload: dict[str, Any]) -> Event:
        seq = self._seq
        self._seq += 1
        return Event(
            event_id=event_id_for(self.session_id, kind, seq),
            kind=kind,
            call_id=self.call_id,
            seq=seq,
            schema_version=SCHEMA_VERSION,
            produced_at=utc_now_iso(),
            payload=payload,
            session_id=self.session_id,
        )

    def utterance(self, utt: Utterance) -> Event:
        return self._make(EventKind.UTTERANCE, to_dict(utt))

    def finding(self, finding: Finding) -> list[Event]:
        payload = to_dict(finding)
        events = [self._make(EventKind.FINDING, payload)]
        if finding.severity is Severity.CRITICAL:
            events.append(self._make(EventKind.ALERT, payload))
        return events

    def scorecard(self, scorecard: Scorecard) -> Event:
        return self._make(EventKind.SCORECARD, to_dict(scorecard))

    def transcript(self, transcript: Transcript) -> Event:
        payload = transcript_to_dict(transcript)
        payload["call"]["session_id"] = self.session_id  # a replay of it keeps the session
        return self._make(EventKind.TRANSCRIPT, payload)


CallMessage = Utterance | Finding | Scorecard | Transcript


def call_timeline(
    transcript: Transcript,
    findings: Sequence[Finding] = (),
    scorecard: Scorecard | None = None,
) -> Iterator[CallMessage]:
    """A finished call's messages in live order.

    Utterances in order of their end; each finding right after the utterance during which
    it was decided (``decided_at`` <= utterance end); then the scorecard and the whole
    transcript. This is the order a live pipeline emits them in.
    """
    pending = sorted(findings, key=lambda f: f.decided_at)
    i = 0
    for utt in sorted(transcript.utterances, key=lambda u: (u.end, u.index)):
        yield utt
        while i < len(pending) and pending[i].decided_at <= utt.end:
            yield pending[i]
            i += 1
    yield from pending[i:]
    if scorecard is not None:
        yield scorecard
    yield transcript


def events_for_message(factory: EventFactory, msg: CallMessage) -> list[Event]:
    """The envelopes of one message (a critical finding gives a finding and an alert)."""
    if isinstance(msg, Utterance):
        return [factory.utterance(msg)]
    if isinstance(msg, Finding):
        return factory.finding(msg)
    if isinstance(msg, Scorecard):
        return [factory.scorecard(msg)]
    return [factory.transcript(msg)]


def events_for_call(
    transcript: Transcript,
    findings: Sequence[Finding] = (),
    scorecard: Scorecard | None = None,
) -> list[Event]:
    """All events of a finished call, in :func:`call_timeline` order. Ids are stable for a
    transcript that carries a session id; without one each call of this is a new session."""
    factory = EventFactory.for_call(transcript.call)
    return [
        e
        for msg in call_timeline(transcript, findings, scorecard)
        for e in events_for_message(factory, msg)
    ]


class EventDropped(QAError):
    """Raised by a sink's ``emit``: this event was not kept, for ``reason`` (a short
    metric label such as ``disk_full``, ``spool_full``, ``queue_full``)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def drop_reason_for_os_error(exc: OSError) -> str:
    """The drop reason of a failed write: ``disk_full`` (ENOSPC, EDQUOT),
    ``file_too_large`` (EFBIG: a file-size limit), ``read_only`` (EROFS), else ``io_error``."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "disk_full"
    if exc.errno == errno.EFBIG:
        return "file_too_large"
    if exc.errno == errno.EROFS:
        return "read_only"
    return "io_error"


class DropLog:
    """Rate-limited warnings about dropped events: the first drop of each (sink, reason) is
    logged at once, later ones at most once per ``every_s`` with the count since."""

    def __init__(self, logger: logging.Logger = log, every_s: float = 10.0) -> None:
        self._log = logger
        self.every_s = every_s
        self._lock = threading.Lock()
        self._state: dict[tuple[str, str], tuple[float, int]] = {}  # last log, unlogged

    def reset(self) -> None:
        """Forget what was logged (the next drop of each kind is logged at once)."""
        with self._lock:
            self._state.clear()

    def dropped(self, sink: str, reason: str, count: int = 1, detail: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            last, pending = self._state.get((sink, reason), (float("-inf"), 0))
            pending += count
            if now - last < self.every_s:
                self._state[(sink, reason)] = (last, pending)
                return
            self._state[(sink, reason)] = (now, 0)
        self._log.warning(
            "sink %s dropped %d event(s): %s%s",
            sink,
            pending,
            reason,
            f" ({detail})" if detail else "",
        )


#: the process-wide rate limiter for drop warnings
DROP_LOG = DropLog()


@runtime_checkable
class Sink(Protocol):
    """Where events go. ``emit`` must not block on a remote system (spool instead)."""

    def emit(self, event: Event) -> None: ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait up to ``timeout`` seconds until what was emitted is delivered."""
        ...

    def close(self) -> None: ...


class SinkObserver(Protocol):
    """What sinks report; :class:`qa_pipeline.metrics.PipelineMetrics` implements it."""

    def on_sink_error(self, sink: str, reason: str) -> None: ...

    def on_sink_delivered(self, sink: str, count: int) -> None: ...

    def on_drop(self, stage: str, reason: str, count: int = 1) -> None: ...

    def on_event_dropped(self, sink: str, reason: str, count: int = 1) -> None:
        """Events ``sink`` could not keep (``qa_events_dropped_total{sink,reason}``)."""
        ...

    def on_spool(self, sink: str, events: int, size_bytes: int) -> None: ...


class NullObserver:
    """Observer that records nothing (the default when no metrics are wanted)."""

    def on_sink_error(self, sink: str, reason: str) -> None:
        pass

    def on_sink_delivered(self, sink: str, count: int) -> None:
        pass

    def on_drop(self, stage: str, reason: str, count: int = 1) -> None:
        pass

    def on_event_dropped(self, sink: str, reason: str, count: int = 1) -> None:
        pass

    def on_spool(self, sink: str, events: int, size_bytes: int) -> None:
        pass


class FanOut:
    """Sends every event to several named sinks; one sink failing never stops the others.

    Each sink's exception is caught at this boundary and the next sink still gets the
    event. :class:`EventDropped` from ``emit`` is a loss with a reason:
    ``on_event_dropped(name, reason)`` and a rate-limited warning. Any other exception is
    counted as ``on_sink_error(name, ExceptionType)``, logged (first time, then every
    100th), and, from ``emit``, also as a drop with reason ``sink_error``: the event was
    not kept. There is no retry here: retrying belongs to the sink (the Kafka sink retries
    from its spool with a bounded back-off).

    ``accepted[name]`` counts the events offered to each sink and ``dropped[name]`` those it
    refused at ``emit``, by reason.
    """

    def __init__(
        self, sinks: Iterable[tuple[str, Sink]], observer: SinkObserver | None = None
    ) -> None:
        self.sinks: list[tuple[str, Sink]] = list(sinks)
        self._observer: SinkObserver = observer or NullObserver()
        self.errors: dict[str, int] = {name: 0 for name, _ in self.sinks}
        self.accepted: dict[str, int] = {name: 0 for name, _ in self.sinks}
        self.dropped: dict[str, dict[str, int]] = {name: {} for name, _ in self.sinks}

    def _failed(self, name: str, op: str, exc: Exception) -> None:
        self.errors[name] = self.errors.get(name, 0) + 1
        self._observer.on_sink_error(name, type(exc).__name__)
        n = self.errors[name]
        if n == 1 or n % 100 == 0:
            log.error("sink %s: %s failed (%d errors so far): %r", name, op, n, exc)

    def _dropped(self, name: str, reason: str, detail: str) -> None:
        counts = self.dropped.setdefault(name, {})
        counts[reason] = counts.get(reason, 0) + 1
        self._observer.on_event_dropped(name, reason, 1)
        DROP_LOG.dropped(name, reason, 1, detail)

    def emit(self, event: Event) -> None:
        for name, sink in self.sinks:
            self.accepted[name] = self.accepted.get(name, 0) + 1
            try:
                sink.emit(event)
            except EventDropped as exc:
                self._dropped(name, exc.reason, exc.detail)
            except Exception as exc:  # isolation boundary: count, log, go on
                self._failed(name, "emit", exc)
                self._dropped(name, "sink_error", type(exc).__name__)

    def emit_all(self, events: Iterable[Event]) -> None:
        for event in events:
            self.emit(event)

    def flush(self, timeout: float | None = None) -> None:
        """Flush each sink in turn; ``timeout`` bounds the whole call, not each sink."""
        deadline = None if timeout is None else time.monotonic() + timeout
        for name, sink in self.sinks:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            try:
                sink.flush(left)
            except Exception as exc:
                self._failed(name, "flush", exc)

    def close(self) -> None:
        for name, sink in self.sinks:
            try:
                sink.close()
            except Exception as exc:
                self._failed(name, "close", exc)

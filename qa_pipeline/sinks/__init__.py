"""Where results go: JSONL files (embedded default), Kafka (durable spool), fan-out.

kafka-python is imported only when a Kafka sink is built (``qa_pipeline.sinks.kafka``).
"""

from .base import (
    Event,
    EventDropped,
    EventFactory,
    EventKind,
    FanOut,
    NullObserver,
    Sink,
    SinkObserver,
    call_timeline,
    event_id_for,
    events_for_call,
    events_for_message,
    new_session_id,
    with_session,
)
from .config import SinksConfig, build_sinks
from .jsonl import JsonlSink, JsonlSinkConfig
from .spool import Spool, SpoolError, SpoolRecord

__all__ = [
    "Event",
    "EventDropped",
    "EventFactory",
    "EventKind",
    "FanOut",
    "JsonlSink",
    "JsonlSinkConfig",
    "NullObserver",
    "Sink",
    "SinkObserver",
    "SinksConfig",
    "Spool",
    "SpoolError",
    "SpoolRecord",
    "build_sinks",
    "call_timeline",
    "event_id_for",
    "events_for_call",
    "events_for_message",
    "new_session_id",
    "with_session",
]

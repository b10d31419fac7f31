"""A whole call's transcript, and its versioned JSON document.

The JSON written by ``qa-pipeline transcribe --json`` / ``score --json`` (see README,
"JSON output") is also the stored-transcript format that rules-only re-scoring reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .messages import (
    SCHEMA_VERSION,
    CallEnded,
    CallInfo,
    Direction,
    Role,
    Utterance,
    to_dict,
)


@dataclass(frozen=True, slots=True)
class Transcript:
    """Everything the rules need about one call: who, when, what was said, when it ended."""

    call: CallInfo
    utterances: tuple[Utterance, ...]
    ended: CallEnded
    asr: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    @property
    def duration(self) -> float:
        return self.ended.end


def call_to_dict(call: CallInfo, duration: float | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "call_id": call.call_id,
        "started_at": call.started_at.isoformat() if call.started_at else None,
        "direction": call.direction.value,
        "agent_id": call.agent_id,
        "channels": [r.value for r in call.channels],
        "source": call.source,
        "metadata": dict(call.metadata),
    }
    if call.session_id:
        out["session_id"] = call.session_id
    if duration is not None:
        out["duration"] = round(duration, 3)
    return out


def utterance_to_dict(u: Utterance) -> dict[str, Any]:
    d = to_dict(u)
    d.pop("call_id", None)
    if not d.get("verified"):
        d.pop("verified", None)  # documents without verification stay as they were
    return dict(d)


def transcript_to_dict(t: Transcript) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "call": call_to_dict(t.call, t.duration),
        "asr": dict(t.asr),
        "channel_ends": [round(x, 3) for x in t.ended.channel_ends],
        "utterances": [utterance_to_dict(u) for u in t.utterances],
    }


def call_from_dict(d: dict[str, Any]) -> CallInfo:
    started = d.get("started_at")
    return CallInfo(
        call_id=str(d["call_id"]),
        started_at=datetime.fromisoformat(started) if started else None,
        direction=Direction(d.get("direction", "inbound")),
        agent_id=d.get("agent_id"),
        channels=tuple(Role(r) for r in d.get("channels", ["agent", "customer"])),
        source=d.get("source"),
        metadata=tuple(sorted((str(k), str(v)) for k, v in (d.get("metadata") or {}).items())),
        session_id=str(d.get("session_id") or ""),
    )


def transcript_from_dict(d: dict[str, Any]) -> Transcript:
    """Read a transcript document (as written by :func:`transcript_to_dict`)."""
    call = call_from_dict(d["call"])
    utts = tuple(
        Utterance(
            call_id=call.call_id,
            index=int(u.get("index", i)),
            channel=int(u.get("channel", 0)),
            role=Role(u["role"]),
            start=float(u["start"]),
            end=float(u["end"]),
            text=str(u["text"]),
            raw_text=str(u.get("raw_text", u["text"])),
            confidence=float(u.get("confidence", 1.0)),
            no_speech_prob=float(u.get("no_speech_prob", 0.0)),
            level_dbfs=u.get("level_dbfs"),
            language=u.get("language"),
            verified=tuple(str(p) for p in u.get("verified") or ()),
        )
        for i, u in enumerate(d["utterances"])
    )
    last = max((u.end for u in utts), default=0.0)
    duration = float(d["call"].get("duration") or last)
    ends = tuple(float(x) for x in d.get("channel_ends") or ())
    return Transcript(
        call=call,
        utterances=utts,
        ended=CallEnded(call_id=call.call_id, end=duration, channel_ends=ends),
        asr=tuple(sorted((d.get("asr") or {}).items())),
    )

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
    Utterance,
    from_dict,
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
    """The document's ``call`` object: the message's fields, metadata as an object,
    ``session_id`` only once minted, and the call's ``duration`` (3 places)."""
    out: dict[str, Any] = to_dict(call)
    out["metadata"] = dict(call.metadata)
    if not call.session_id:
        del out["session_id"]
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
    """The inverse of :func:`call_to_dict` (start time as ``datetime.fromisoformat`` reads
    it, metadata sorted by key)."""
    c = dict(d)
    started = c.get("started_at")
    c["started_at"] = datetime.fromisoformat(started) if started else None
    c["metadata"] = sorted((str(k), str(v)) for k, v in (c.get("metadata") or {}).items())
    if c.get("session_id") is None:
        c.pop("session_id", None)
    return from_dict(c, CallInfo)


def transcript_from_dict(d: dict[str, Any]) -> Transcript:
    """Read a transcript document (as written by :func:`transcript_to_dict`). An utterance
    leaves out its call id (the call's); ``index`` defaults to its position and
    ``raw_text`` to its text."""
    call = call_from_dict(d["call"])
    cid = call.call_id
    utts = from_dict(
        [
            dict(u, call_id=cid)
            if "index" in u and "raw_text" in u
            else {"index": i, "raw_text": u["text"], **u, "call_id": cid}
            for i, u in enumerate(d["utterances"])
        ],
        tuple[Utterance, ...],
    )
    last = max((u.end for u in utts), default=0.0)
    duration = float(d["call"].get("duration") or last)
    ends = from_dict(d.get("channel_ends") or (), tuple[float, ...])
    return Transcript(
        call=call,
        utterances=utts,
        ended=CallEnded(call_id=cid, end=duration, channel_ends=ends),
        asr=tuple(sorted((d.get("asr") or {}).items())),
    )

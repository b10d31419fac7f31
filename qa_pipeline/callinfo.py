"""A call's metadata before any stage sees it: the session id minted for each run of a call,
and the ``<stem>.json`` sidecar read next to a recorded file (used by the recorded pipeline,
``rescore`` and the live replay source alike).
"""

from __future__ import annotations

import json
import secrets
import time
from pathlib import Path
from typing import Any

from .errors import AudioError
from .messages import CallInfo
from .transcript import call_from_dict


def new_session_id() -> str:
    """A fresh session id: 32 hex digits, the first 12 the Unix time in ms (ids sort by
    start time, like a ULID or UUIDv7), then 80 random bits."""
    return f"{time.time_ns() // 1_000_000:012x}{secrets.token_hex(10)}"


def sidecar_path(audio_path: Path) -> Path:
    return audio_path.with_suffix(".json")


def read_call_info(audio_path: Path, call_id: str | None = None) -> CallInfo:
    """Call metadata from ``<stem>.json`` next to the audio (its ``call`` object), if any."""
    side = sidecar_path(audio_path)
    data: dict[str, Any] = {}
    if side.is_file() and side != audio_path:
        try:
            doc = json.loads(side.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise AudioError(str(side), f"call metadata is not valid JSON: {e}") from e
        if isinstance(doc, dict) and isinstance(doc.get("call"), dict):
            data = dict(doc["call"])
    data.setdefault("call_id", call_id or audio_path.stem)
    if call_id:
        data["call_id"] = call_id
    data.setdefault("source", str(audio_path))
    data.setdefault("session_id", new_session_id())  # this run of the call
    try:
        return call_from_dict(data)
    except (ValueError, KeyError) as e:
        raise AudioError(str(side), f"invalid call metadata: {e}") from e

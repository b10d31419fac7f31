"""Twilio Media Streams messages: parse and produce, no I/O.

One WebSocket connection carries one call (a "stream"): ``connected``, ``start`` (stream and
call ids, tracks, media format, custom parameters), many ``media`` messages (base64 μ-law
8 kHz mono, per ``track``), ``stop``. ``mark`` and ``dtmf`` are known and ignored.

Track -> channel: ``outbound`` (what the platform plays to the caller: the agent) is
channel 0 / agent, ``inbound`` (the caller) is channel 1 / customer, the same layout as a
recorded call. ``media.timestamp`` (ms since the stream started) is the chunk's place on
the call clock.

Custom parameters of ``start`` (``<Parameter>`` of the TwiML ``<Stream>``) fill the
:class:`~qa_pipeline.messages.CallInfo`: ``call_id`` (default: the call SID), ``agent_id``,
``direction`` (inbound/outbound), ``started_at`` (ISO 8601); the others become metadata.
Ids (call id, agent id, stream and call SIDs, parameter names) must pass
:func:`~.ids.check_id`, other parameter values :func:`~.ids.check_value`, at most
:data:`~.ids.MAX_PARAMETERS` of them; otherwise ``start`` is refused (``bad_id``).

Authenticity: Twilio signs the WebSocket upgrade request of a stream like every webhook
(``X-Twilio-Signature`` = base64 of HMAC-SHA1, keyed with the account's auth token, of the
full URL Twilio requested, query string included, followed by the POST parameters sorted by
name, each name then its value; an upgrade is a GET, so there are none).
:func:`twilio_signature` computes it, :func:`check_twilio_signature` checks one in constant
time, trying the URL with and without the scheme's default port as Twilio's own helper
libraries do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..messages import CallInfo, Direction, Role
from .base import SourceError
from .ids import MAX_KEY_LEN, MAX_PARAMETERS, check_id, check_value

MULAW = "audio/x-mulaw"
SAMPLE_RATE = 8000
TRACK_CHANNEL: Mapping[str, int] = {"outbound": 0, "inbound": 1}
CHANNEL_ROLES: tuple[Role, Role] = (Role.AGENT, Role.CUSTOMER)
IGNORED_EVENTS = frozenset({"mark", "dtmf"})


@dataclass(frozen=True, slots=True)
class Connected:
    protocol: str
    version: str


@dataclass(frozen=True, slots=True)
class Start:
    stream_sid: str
    call_sid: str
    tracks: tuple[str, ...]
    encoding: str
    sample_rate: int
    channels: int
    custom: tuple[tuple[str, str], ...] = ()

    def call_info(self, source: str = "twilio") -> CallInfo:
        """The call as the pipeline sees it (custom parameters fill the metadata). Every id
        is checked (:mod:`.ids`); a bad one raises ``SourceError("bad_id")``."""
        if len(self.custom) > MAX_PARAMETERS:
            raise SourceError(
                "bad_id", f"{len(self.custom)} custom parameters (max {MAX_PARAMETERS})"
            )
        for k, v in self.custom:
            check_id(k, "parameter name", MAX_KEY_LEN)
            check_value(v, f"parameter {k}")
        if self.stream_sid:
            check_id(self.stream_sid, "streamSid")
        if self.call_sid:
            check_id(self.call_sid, "callSid")
        custom = dict(self.custom)
        call_id = check_id(custom.pop("call_id", "") or self.call_sid or self.stream_sid, "call_id")
        direction = custom.pop("direction", "inbound")
        try:
            d = Direction(direction)
        except ValueError as e:
            raise SourceError("bad_parameter", f"direction {direction!r}") from e
        started = custom.pop("started_at", "")
        try:
            started_at = datetime.fromisoformat(started) if started else None
        except ValueError as e:
            raise SourceError("bad_parameter", f"started_at {started!r}") from e
        agent = custom.pop("agent_id", "") or None
        if agent is not None:
            check_id(agent, "agent_id")
        meta = {"stream_sid": self.stream_sid, "call_sid": self.call_sid, **custom}
        return CallInfo(
            call_id=call_id,
            started_at=started_at,
            direction=d,
            agent_id=agent,
            channels=CHANNEL_ROLES,
            source=source,
            metadata=tuple(sorted(meta.items())),
        )


@dataclass(frozen=True, slots=True)
class Media:
    track: str
    channel: int
    chunk: int
    timestamp_ms: int
    payload: bytes  # μ-law bytes

    @property
    def start(self) -> float:
        return self.timestamp_ms / 1000.0


@dataclass(frozen=True, slots=True)
class Stop:
    call_sid: str


@dataclass(frozen=True, slots=True)
class Ignored:
    event: str


TwilioMessage = Connected | Start | Media | Stop | Ignored

SIGNATURE_HEADER = "X-Twilio-Signature"
_DEFAULT_PORTS = {"https": 443, "wss": 443, "http": 80, "ws": 80}


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str] | None = None) -> str:
    """What Twilio puts in ``X-Twilio-Signature`` for a request to ``url`` with the POST
    parameters ``params`` (none for a WebSocket upgrade)."""
    p = params or {}
    data = url + "".join(k + p[k] for k in sorted(p))
    digest = hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def url_variants(url: str) -> tuple[str, ...]:
    """``url`` as given, without its scheme's default port and with it (Twilio's helper
    libraries accept a signature made for any of these)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    host = parts.hostname or ""
    if default is None or not host:
        return (url,)
    try:
        port = parts.port
    except ValueError:
        return (url,)
    if port not in (None, default):
        return (url,)
    auth = parts.netloc.rpartition("@")[0]
    shown_host = f"[{host}]" if ":" in host else host
    bare = (auth + "@" if auth else "") + shown_host
    out = [url]
    for netloc in (bare, f"{bare}:{default}"):
        v = urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
        if v not in out:
            out.append(v)
    return tuple(out)


def check_twilio_signature(
    auth_token: str, signature: str, url: str, params: Mapping[str, str] | None = None
) -> bool:
    """True when ``signature`` is Twilio's for ``url`` (compared in constant time)."""
    if not signature or not auth_token:
        return False
    got = signature.encode("utf-8", "replace")
    ok = False
    for u in url_variants(url):
        ok |= hmac.compare_digest(got, twilio_signature(auth_token, u, params).encode())
    return ok


def _obj(d: Any, key: str) -> dict[str, Any]:
    v = d.get(key)
    if not isinstance(v, dict):
        raise SourceError("missing_field", f"'{key}' object missing")
    return v


def _int(v: Any, what: str) -> int:
    try:
        return int(v)
    except (TypeError, ValueError) as e:
        raise SourceError("bad_field", f"{what} is not an integer: {v!r}") from e


def parse_message(data: str | bytes) -> TwilioMessage:
    """One WebSocket text message -> a typed message. Raises :class:`SourceError` with
    reason ``malformed_json``, ``unknown_event``, ``missing_field``, ``bad_field``,
    ``bad_codec``, ``bad_track`` or ``bad_payload``."""
    try:
        d = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise SourceError("malformed_json", str(e)[:200]) from e
    if not isinstance(d, dict):
        raise SourceError("malformed_json", "message is not a JSON object")
    event = d.get("event")
    if event == "media":
        m = _obj(d, "media")
        track = m.get("track", "inbound")
        if track not in TRACK_CHANNEL:
            raise SourceError("bad_track", f"track {track!r}")
        try:
            payload = base64.b64decode(m.get("payload", ""), validate=True)
        except (binascii.Error, TypeError, ValueError) as e:
            raise SourceError("bad_payload", "payload is not base64") from e
        return Media(
            track=track,
            channel=TRACK_CHANNEL[track],
            chunk=_int(m.get("chunk", 0), "media.chunk"),
            timestamp_ms=_int(m.get("timestamp", 0), "media.timestamp"),
            payload=payload,
        )
    if event == "start":
        s = _obj(d, "start")
        fmt = _obj(s, "mediaFormat")
        encoding = str(fmt.get("encoding", ""))
        rate = _int(fmt.get("sampleRate", 0), "mediaFormat.sampleRate")
        channels = _int(fmt.get("channels", 1), "mediaFormat.channels")
        if encoding != MULAW or rate != SAMPLE_RATE or channels != 1:
            raise SourceError(
                "bad_codec", f"{encoding} {rate} Hz x{channels} (want {MULAW} 8000 Hz mono)"
            )
        tracks = s.get("tracks", ["inbound"])
        if not isinstance(tracks, list) or any(t not in TRACK_CHANNEL for t in tracks):
            raise SourceError("bad_track", f"tracks {tracks!r}")
        custom = s.get("customParameters") or {}
        if not isinstance(custom, dict):
            raise SourceError("bad_field", "customParameters is not an object")
        return Start(
            stream_sid=str(d.get("streamSid") or s.get("streamSid") or ""),
            call_sid=str(s.get("callSid") or ""),
            tracks=tuple(tracks),
            encoding=encoding,
            sample_rate=rate,
            channels=channels,
            custom=tuple(sorted((str(k), str(v)) for k, v in custom.items())),
        )
    if event == "stop":
        st = d.get("stop")
        return Stop(call_sid=str(st.get("callSid", "")) if isinstance(st, dict) else "")
    if event == "connected":
        return Connected(protocol=str(d.get("protocol", "")), version=str(d.get("version", "")))
    if event in IGNORED_EVENTS:
        return Ignored(str(event))
    raise SourceError("unknown_event", f"event {event!r}")


class TwilioSerializer:
    """Produces the messages a Twilio stream sends (test clients, the benchmark)."""

    def __init__(self, stream_sid: str, call_sid: str) -> None:
        self.stream_sid = stream_sid
        self.call_sid = call_sid
        self._seq = 0
        self._chunks = dict.fromkeys(TRACK_CHANNEL, 0)

    def _msg(self, event: str, body: dict[str, Any] | None = None, key: str = "") -> str:
        self._seq += 1
        d: dict[str, Any] = {"event": event, "sequenceNumber": str(self._seq)}
        if body is not None:
            d[key or event] = body
        d["streamSid"] = self.stream_sid
        return json.dumps(d, separators=(",", ":"))

    def connected(self) -> str:
        return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})

    def start(
        self,
        custom: Mapping[str, str] | None = None,
        *,
        tracks: tuple[str, ...] = ("inbound", "outbound"),
        encoding: str = MULAW,
        sample_rate: int = SAMPLE_RATE,
    ) -> str:
        return self._msg(
            "start",
            {
                "accountSid": "AC00000000000000000000000000000000",
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": list(tracks),
                "customParameters": dict(custom or {}),
                "mediaFormat": {"encoding": encoding, "sampleRate": sample_rate, "channels": 1},
            },
        )

    def media(self, track: str, timestamp_ms: int, ulaw: bytes) -> str:
        self._chunks[track] = self._chunks.get(track, 0) + 1
        return self._msg(
            "media",
            {
                "track": track,
                "chunk": str(self._chunks[track]),
                "timestamp": str(timestamp_ms),
                "payload": base64.b64encode(ulaw).decode("ascii"),
            },
        )

    def stop(self) -> str:
        return self._msg(
            "stop", {"accountSid": "AC00000000000000000000000000000000", "callSid": self.call_sid}
        )

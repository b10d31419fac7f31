"""WebSocket transport for Twilio Media Streams (``websockets`` asyncio server).

One connection = one call. The wire format is :mod:`.twilio`; this module only moves
messages. A protocol error (malformed JSON, unknown event, wrong codec, media before
``start``, ...) is counted for that call, the call is closed and scored with what arrived,
and the connection is closed with code 1008 (policy) / 1003 (unsupported data). A
connection that drops without ``stop`` is counted (``disconnect``) and its call scored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from ..messages import AudioChunk
from .base import CallHandler, EndReason, SourceError
from .codec import ulaw_decode
from .twilio import (
    CHANNEL_ROLES,
    SAMPLE_RATE,
    Connected,
    Ignored,
    Media,
    Start,
    Stop,
    parse_message,
)

log = logging.getLogger("qa_pipeline.sources.websocket")


def _import_websockets() -> Any:
    try:
        import websockets.asyncio.server as server
    except ImportError as e:  # pragma: no cover - a dependency of the live extra
        raise ImportError(
            "the WebSocket source needs 'websockets': pip install 'qa-pipeline[live]'"
        ) from e
    return server


class WebSocketSource:
    """Accepts Twilio Media Streams connections on ``ws://host:port/path``."""

    def __init__(
        self,
        *,
        name: str = "websocket",
        host: str = "127.0.0.1",
        port: int = 8765,
        path: str = "/media",
        max_message_bytes: int = 1 << 20,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.path = path
        self.max_message_bytes = max_message_bytes
        self._server: Any = None
        self._handler: CallHandler | None = None
        self._stopping = False

    @property
    def bound_port(self) -> int:
        assert self._server is not None
        return int(next(iter(self._server.sockets)).getsockname()[1])

    async def start(self, handler: CallHandler) -> None:
        ws = _import_websockets()
        self._handler = handler
        self._server = await ws.serve(
            self._connection,
            self.host,
            self.port,
            max_size=self.max_message_bytes,
            compression=None,
            ping_interval=20,
            ping_timeout=20,
        )
        log.info(
            "websocket (Twilio media streams) on ws://%s:%d%s",
            self.host,
            self.bound_port,
            self.path,
        )

    async def stop(self) -> None:
        """Stop accepting; open connections end with ``SHUTDOWN`` (close code 1001)."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    async def _connection(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        h = self._handler
        assert h is not None
        req_path = conn.request.path.split("?", 1)[0] if conn.request is not None else ""
        if self.path and req_path != self.path:
            h.call_error(None, "bad_path", req_path, source=self.name)
            await conn.close(1008, "unknown path")
            return
        call_id: str | None = None
        reason = EndReason.DISCONNECT
        try:
            async for raw in conn:
                msg = parse_message(raw)
                if isinstance(msg, Media):
                    if call_id is None:
                        raise SourceError("media_before_start", "")
                    h.audio(
                        AudioChunk(
                            call_id,
                            msg.channel,
                            CHANNEL_ROLES[msg.channel],
                            msg.start,
                            SAMPLE_RATE,
                            ulaw_decode(msg.payload),
                        )
                    )
                elif isinstance(msg, Start):
                    if call_id is not None:
                        raise SourceError("duplicate_start", "")
                    info = msg.call_info(self.name)
                    if not h.call_started(info, SAMPLE_RATE, source=self.name):
                        await conn.close(1008, "call refused")
                        return
                    call_id = info.call_id
                elif isinstance(msg, Stop):
                    reason = EndReason.STOP
                    break
                elif isinstance(msg, (Connected, Ignored)):
                    continue
            else:
                if self._stopping:
                    reason = EndReason.SHUTDOWN
                else:
                    h.call_error(call_id, "disconnect", "closed without stop", source=self.name)
        except SourceError as e:
            if call_id is None and e.reason == "bad_codec":
                call_id = self._start_for_error(raw)
            h.call_error(call_id, e.reason, e.detail, source=self.name)
            reason = EndReason.ERROR
            code = 1003 if e.reason == "bad_codec" else 1008
            await conn.close(code, e.reason)
        except ConnectionClosed as e:
            if self._stopping:
                reason = EndReason.SHUTDOWN
            else:
                h.call_error(
                    call_id,
                    "disconnect",
                    f"code {e.rcvd.code if e.rcvd else '-'}",
                    source=self.name,
                )
        except asyncio.CancelledError:
            reason = EndReason.SHUTDOWN
            raise
        finally:
            if call_id is not None:
                h.call_ended(call_id, reason)
        if reason is EndReason.STOP:
            await conn.close(1000, "stopped")

    def _start_for_error(self, raw: Any) -> str | None:
        """A ``start`` refused for its codec still names (and opens, then closes) its call,
        so the error is counted against the call and a scorecard says what happened."""
        import json

        try:
            s = json.loads(raw)["start"]
            call_id = str((s.get("customParameters") or {}).get("call_id") or s.get("callSid"))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
        from ..messages import CallInfo

        h = self._handler
        assert h is not None
        info = CallInfo(call_id=call_id, channels=CHANNEL_ROLES, source=self.name)
        return call_id if h.call_started(info, SAMPLE_RATE, source=self.name) else None

"""WebSocket transport for Twilio Media Streams (``websockets`` asyncio server).

One connection = one call. The wire format is :mod:`.twilio`; this module only moves
messages. A protocol error (malformed JSON, unknown event, wrong codec, media before
``start``, ...) is counted for that call, the call is closed and scored with what arrived,
and the connection is closed with code 1008 (policy) / 1003 (unsupported data). A
connection that drops without ``stop`` is counted (``disconnect``) and its call scored.

Before the upgrade (``process_request``), each request is checked, and refused with a plain
HTTP answer and no WebSocket:

* not a WebSocket upgrade (a load balancer's HTTP/1.1 probe, a browser): ``426 Upgrade
  Required``, logged at debug level only (probes come every few seconds);
* another path than ``path``: ``404``, counted (``bad_path``);
* not authenticated: ``403``, counted (``unauthorized``) with one log line naming the peer.
  ``auth="twilio"``: the ``X-Twilio-Signature`` header must be Twilio's signature of the
  URL (``public_url`` + the request's query string; by default ``wss://`` + the request's
  ``Host`` + its path and query) with the account's auth token (:mod:`.twilio`).
  ``auth="token"``: the client presents the shared token as ``Authorization: Bearer TOKEN``
  (preferred) or, for clients that cannot set headers, as the query parameter ``token``;
  compared in constant time. ``auth="none"``: anyone who reaches the port can start calls
  (warned about at start).

A request the WebSocket library cannot parse at all (an HTTP/1.0 probe, garbage, a TLS
hello, a request cut short) gets no answer: the connection is closed and one debug line
names the peer and the problem, without a traceback.
"""

from __future__ import annotations

import asyncio
import hmac
import http
import logging
from typing import Any, Literal
from urllib.parse import parse_qsl

from ..logs import LOG_PEER
from ..messages import AudioChunk
from .base import CallHandler, EndReason, SourceError, shown
from .codec import ulaw_decode
from .ids import is_valid_id
from .twilio import (
    CHANNEL_ROLES,
    SAMPLE_RATE,
    SIGNATURE_HEADER,
    Connected,
    Ignored,
    Media,
    Start,
    Stop,
    check_twilio_signature,
    parse_message,
)

log = logging.getLogger("qa_pipeline.sources.websocket")

AuthMode = Literal["twilio", "token", "none"]
TOKEN_PARAMETER = "token"


class _HandshakeLog(logging.Filter):
    """The WebSocket library logs each connection's opening and rejection at info level, and
    a request it cannot parse (an HTTP/1.0 probe, a TLS hello, garbage, a request cut short)
    as "opening handshake failed" with a traceback. Neither is a problem of the service: one
    debug line, the latter naming the peer and what was wrong, no traceback."""

    QUIET = frozenset({"connection open", "connection closed", "connection rejected (%d %s)"})
    #: the library's wire trace at debug level ("< Authorization: Bearer ...", frames): it
    #: would write the shared token and every signature into the log; never kept
    TRACE = ("< ", "> ", "= ", "x ", "! ", "% ", "- ")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(self.TRACE):
            return False
        if record.exc_info and record.msg == "opening handshake failed":
            from websockets.exceptions import InvalidHandshake, InvalidMessage

            exc = record.exc_info[1]
            if not isinstance(exc, (InvalidMessage, InvalidHandshake)):
                return True  # e.g. a bug in _check_request: keep the traceback
            cause = exc.__cause__ if exc is not None else None
            why = f"{exc}" + (f" ({cause})" if cause is not None else "")
            record.msg = "not a WebSocket handshake from %s: %s"
            record.args = (_peer(getattr(record, "websocket", None)), shown(why, 200))
            record.exc_info = None
            record.exc_text = None
        elif record.msg not in self.QUIET:
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return _wire_log.isEnabledFor(logging.DEBUG)


_wire_log = logging.getLogger("qa_pipeline.sources.websocket.wire")
_wire_log.addFilter(_HandshakeLog())


def _header(headers: Any, name: str) -> str | None:
    """The one value of a header; None when absent; '' when sent more than once."""
    values = headers.get_all(name)
    if not values:
        return None
    return str(values[0]) if len(values) == 1 else ""


def _peer(conn: Any) -> str:
    addr = getattr(conn, "remote_address", None)
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = str(addr[0])
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return "?"


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
        auth: AuthMode = "token",
        secret: str | None = None,
        public_url: str | None = None,
    ) -> None:
        """``secret``: the Twilio account's auth token (``auth="twilio"``) or the shared
        token (``auth="token"``); required unless ``auth="none"``."""
        if auth not in ("twilio", "token", "none"):
            raise ValueError(f"auth must be twilio, token or none, not {auth!r}")
        if auth != "none" and not secret:
            raise ValueError(f"websocket source {name}: auth={auth} needs a secret")
        self.name = name
        self.host = host
        self.port = port
        self.path = path
        self.max_message_bytes = max_message_bytes
        self.auth: AuthMode = auth
        self._secret = (secret or "").encode()
        self.public_url = public_url.rstrip("?") if public_url else None
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
            process_request=self._check_request,
            logger=_wire_log,
        )
        log.info(
            "websocket %s (Twilio media streams) on ws://%s:%d%s, auth: %s",
            self.name,
            self.host,
            self.bound_port,
            self.path,
            self.auth,
        )
        if self.auth == "none":
            log.warning(
                "websocket %s: authentication is OFF (auth: none): anyone who can reach "
                "%s:%d can start a call as any agent",
                self.name,
                self.host,
                self.bound_port,
            )

    async def stop(self) -> None:
        """Stop accepting; open connections end with ``SHUTDOWN`` (close code 1001)."""
        self._stopping = True
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()

    # -- before the upgrade ---------------------------------------------------------------

    def _check_request(self, conn: Any, request: Any) -> Any:
        """None = go on with the upgrade; else the plain HTTP answer that refuses it."""
        LOG_PEER.set(_peer(conn))  # this connection's log lines name its peer
        h = self._handler
        assert h is not None
        headers = request.headers
        if "websocket" not in ",".join(headers.get_all("Upgrade")).lower():
            log.debug("websocket %s: plain HTTP request from %s: 426", self.name, _peer(conn))
            r = conn.respond(http.HTTPStatus.UPGRADE_REQUIRED, "WebSocket upgrade required\n")
            r.headers["Upgrade"] = "websocket"
            return r
        target = str(request.path)
        req_path, _, query = target.partition("?")
        if self.path and req_path != self.path:
            h.call_error(
                None, "bad_path", f"{shown(req_path)} from {_peer(conn)}", source=self.name
            )
            return conn.respond(http.HTTPStatus.NOT_FOUND, "Not found\n")
        why = self._unauthorized(headers, target, query)
        if why:
            h.call_error(None, "unauthorized", f"{why} from {_peer(conn)}", source=self.name)
            return conn.respond(http.HTTPStatus.FORBIDDEN, "Forbidden\n")
        return None

    def signed_url(self, headers: Any, target: str) -> str:
        """The URL Twilio signed for this request: ``public_url`` + the query string, or
        ``wss://`` + the ``Host`` header + the request target."""
        if self.public_url:
            _, sep, query = target.partition("?")
            return self.public_url + (sep + query if query else "")
        return f"wss://{_header(headers, 'Host') or ''}{target}"

    def _unauthorized(self, headers: Any, target: str, query: str) -> str:
        """Why the request is not authenticated ('' = it is)."""
        if self.auth == "none":
            return ""
        if self.auth == "twilio":
            sig = _header(headers, SIGNATURE_HEADER)
            if not sig:
                return f"no {SIGNATURE_HEADER} header"
            url = self.signed_url(headers, target)
            if not check_twilio_signature(self._secret.decode(), sig, url):
                return f"bad {SIGNATURE_HEADER} for {shown(url, 200)}"
            return ""
        presented = ""
        authz = _header(headers, "Authorization")
        if authz is not None:
            scheme, _, value = authz.strip().partition(" ")
            if scheme.lower() != "bearer":
                return "Authorization is not a Bearer token"
            presented = value.strip()
        else:
            presented = next((v for k, v in parse_qsl(query) if k == TOKEN_PARAMETER), "")
        if not presented:
            return "no token (Authorization: Bearer, or ?token=)"
        if not hmac.compare_digest(presented.encode("utf-8", "replace"), self._secret):
            return "wrong token"
        return ""

    # -- the call ---------------------------------------------------------------------------

    async def _connection(self, conn: Any) -> None:
        from websockets.exceptions import ConnectionClosed

        LOG_PEER.set(_peer(conn))
        h = self._handler
        assert h is not None
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
        if not is_valid_id(call_id):
            return None
        from ..messages import CallInfo

        h = self._handler
        assert h is not None
        info = CallInfo(call_id=call_id, channels=CHANNEL_ROLES, source=self.name)
        return call_id if h.call_started(info, SAMPLE_RATE, source=self.name) else None

"""Asterisk AudioSocket: the frame codec (pure) and an asyncio TCP server (transport).

A frame is 1 byte kind + 2 bytes big-endian payload length + payload. Kinds: ``0x00``
hangup, ``0x01`` the call's UUID (16 bytes, first frame), ``0x10`` audio (16-bit signed
linear little-endian, 8 kHz mono), ``0xff`` error (1-byte code from Asterisk).

AudioSocket carries one direction per connection. Legs map to calls by UUID: the first
connection with a UUID is channel 0 (``first_role``, default agent), a second connection
with the same UUID is channel 1 (the other role). A call ends when every connected leg has
hung up or dropped; a call whose only leg ended waits ``leg_wait_s`` for a second leg
before it is scored. A third leg, a missing or malformed UUID frame, an unknown kind, an odd
audio length, an error frame or silence for ``idle_timeout_s`` is a counted error of that
call; the call is closed and scored with what arrived. Each leg's clock starts when it
connected, relative to the first leg.

AudioSocket has no authentication of its own: whoever can open a TCP connection to the port
can start a call under any UUID. The server therefore binds to localhost by default and
accepts only peers whose address is in ``allow`` (networks, ``ipaddress`` notation: default
loopback only, ``127.0.0.1/32`` and ``::1/128``); any other peer is refused at once (the
connection closed before a byte is read), counted (``peer_not_allowed``) and logged with
its address. An IPv4 peer seen on a dual-stack socket (``::ffff:10.0.0.5``) is matched as
its IPv4 address.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import ipaddress
import logging
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from ..logs import LOG_PEER
from ..messages import AudioChunk, CallInfo, Role
from .base import CallHandler, EndReason, SourceError
from .codec import slin16_decode

log = logging.getLogger("qa_pipeline.sources.audiosocket")

SAMPLE_RATE = 8000
HEADER = 3
MAX_PAYLOAD = 0xFFFF


class Kind(enum.IntEnum):
    HANGUP = 0x00
    UUID = 0x01
    AUDIO = 0x10
    ERROR = 0xFF


@dataclass(frozen=True, slots=True)
class Frame:
    kind: Kind
    payload: bytes = b""


def encode_frame(kind: int, payload: bytes = b"") -> bytes:
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds {MAX_PAYLOAD}")
    return bytes([kind]) + len(payload).to_bytes(2, "big") + payload


def uuid_frame(call_uuid: uuid.UUID | str) -> bytes:
    u = call_uuid if isinstance(call_uuid, uuid.UUID) else uuid.UUID(str(call_uuid))
    return encode_frame(Kind.UUID, u.bytes)


def audio_frame(pcm: bytes) -> bytes:
    return encode_frame(Kind.AUDIO, pcm)


def hangup_frame() -> bytes:
    return encode_frame(Kind.HANGUP)


def _check(kind_byte: int, payload: bytes) -> Frame:
    try:
        kind = Kind(kind_byte)
    except ValueError as e:
        raise SourceError("unknown_kind", f"frame kind 0x{kind_byte:02x}") from e
    if kind is Kind.UUID and len(payload) != 16:
        raise SourceError("bad_uuid", f"UUID frame of {len(payload)} bytes")
    if kind is Kind.AUDIO and len(payload) % 2:
        raise SourceError("bad_payload", f"audio frame of odd length {len(payload)}")
    return Frame(kind, payload)


class FrameDecoder:
    """Incremental decoder: ``feed`` bytes as they arrive, get whole frames back."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> Iterator[Frame]:
        self._buf += data
        while len(self._buf) >= HEADER:
            n = int.from_bytes(self._buf[1:3], "big")
            if len(self._buf) < HEADER + n:
                return
            kind, payload = self._buf[0], bytes(self._buf[HEADER : HEADER + n])
            del self._buf[: HEADER + n]
            yield _check(kind, payload)

    @property
    def pending(self) -> int:
        return len(self._buf)


async def read_frame(reader: asyncio.StreamReader) -> Frame | None:
    """One frame from a stream; None at a clean end of stream between frames."""
    try:
        head = await reader.readexactly(HEADER)
    except asyncio.IncompleteReadError as e:
        if e.partial:
            raise SourceError("truncated", "connection closed inside a frame header") from e
        return None
    n = int.from_bytes(head[1:3], "big")
    try:
        payload = await reader.readexactly(n) if n else b""
    except asyncio.IncompleteReadError as e:
        raise SourceError("truncated", f"connection closed inside a {n}-byte payload") from e
    return _check(head[0], payload)


Network = ipaddress.IPv4Network | ipaddress.IPv6Network

LOCALHOST: tuple[str, ...] = ("127.0.0.1/32", "::1/128")


def parse_networks(items: Iterable[str | Network]) -> tuple[Network, ...]:
    """Networks from ``"10.0.0.0/8"`` / ``"192.0.2.7"`` strings. Host bits set in a network
    (``10.0.0.1/8``) are an error: it is usually a typo for something narrower."""
    out: list[Network] = []
    for item in items:
        out.append(item if not isinstance(item, str) else ipaddress.ip_network(item.strip()))
    return tuple(out)


def peer_allowed(address: str, allow: Iterable[Network]) -> bool:
    """Whether a peer address (as ``getpeername`` gives it) lies in one of ``allow``."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in allow)


@dataclass(eq=False)
class _Call:
    call_id: str
    t0: float  # monotonic time the first leg connected
    legs: int = 0
    open_legs: int = 0
    channel_samples: list[int] = field(default_factory=lambda: [0, 0])
    ended: bool = False
    waiter: asyncio.TimerHandle | None = None


class AudioSocketSource:
    """Asyncio TCP server speaking AudioSocket."""

    def __init__(
        self,
        *,
        name: str = "audiosocket",
        host: str = "127.0.0.1",
        port: int = 9092,
        first_role: Role = Role.AGENT,
        leg_wait_s: float = 2.0,
        idle_timeout_s: float = 30.0,
        allow: Iterable[str | Network] = LOCALHOST,
    ) -> None:
        self.name = name
        self.allow = parse_networks(allow)
        self.host = host
        self.port = port
        other = Role.CUSTOMER if first_role is Role.AGENT else Role.AGENT
        self.roles: tuple[Role, Role] = (first_role, other)
        self.leg_wait_s = leg_wait_s
        self.idle_timeout_s = idle_timeout_s
        self._server: asyncio.Server | None = None
        self._handler: CallHandler | None = None
        self._calls: dict[str, _Call] = {}
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def bound_port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self, handler: CallHandler) -> None:
        self._handler = handler
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        allowed = ", ".join(str(n) for n in self.allow) or "nobody"
        log.info(
            "audiosocket %s listening on %s:%d, peers allowed: %s (AudioSocket has no "
            "authentication of its own)",
            self.name,
            self.host,
            self.bound_port,
            allowed,
        )
        if any(n.prefixlen == 0 for n in self.allow):
            log.warning(
                "audiosocket %s: allow includes %s: any host that reaches the port can start "
                "a call (AudioSocket has no authentication)",
                self.name,
                ", ".join(str(n) for n in self.allow if n.prefixlen == 0),
            )

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        for t in list(self._conns):
            t.cancel()
        if self._conns:
            await asyncio.wait(self._conns, timeout=5)
        for call in list(self._calls.values()):
            self._end(call, EndReason.SHUTDOWN)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = str(peer[0]) if isinstance(peer, tuple) and peer else ""
        if isinstance(peer, tuple) and len(peer) > 1:  # this connection's log lines name it
            LOG_PEER.set(f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}")
        if not peer_allowed(host, self.allow):
            assert self._handler is not None
            port = peer[1] if isinstance(peer, tuple) and len(peer) > 1 else "?"
            self._handler.call_error(
                None, "peer_not_allowed", f"connection from {host}:{port} refused", source=self.name
            )
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            return
        task = asyncio.current_task()
        if task is not None:
            self._conns.add(task)
        try:
            await self._leg(reader)
        except asyncio.CancelledError:
            pass
        finally:
            if task is not None:
                self._conns.discard(task)
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()

    def _end(self, call: _Call, reason: EndReason) -> None:
        if call.ended:
            return
        call.ended = True
        if call.waiter is not None:
            call.waiter.cancel()
        self._calls.pop(call.call_id, None)
        assert self._handler is not None
        self._handler.call_ended(call.call_id, reason)

    async def _leg(self, reader: asyncio.StreamReader) -> None:
        h = self._handler
        assert h is not None
        call: _Call | None = None
        channel = 0
        joined = False
        reason = EndReason.DISCONNECT
        try:
            first = await asyncio.wait_for(read_frame(reader), self.idle_timeout_s)
            if first is None:
                return
            if first.kind is not Kind.UUID:
                raise SourceError("no_uuid", f"first frame is {first.kind.name}, not UUID")
            call_id = str(uuid.UUID(bytes=first.payload))
            call = self._calls.get(call_id)
            if call is None:
                call = _Call(call_id, time.monotonic())
                info = CallInfo(call_id=call_id, channels=self.roles, source=self.name)
                if not h.call_started(info, SAMPLE_RATE, source=self.name):
                    call = None
                    return
                self._calls[call_id] = call
            elif call.legs >= 2:
                h.call_error(call_id, "extra_leg", "a third connection", source=self.name)
                return  # the call itself goes on
            if call.waiter is not None:
                call.waiter.cancel()
                call.waiter = None
            channel = call.legs
            call.legs += 1
            call.open_legs += 1
            joined = True
            offset = int(round((time.monotonic() - call.t0) * SAMPLE_RATE)) if channel else 0
            call.channel_samples[channel] = offset
            while True:
                frame = await asyncio.wait_for(read_frame(reader), self.idle_timeout_s)
                if frame is None:
                    reason = EndReason.DISCONNECT
                    h.call_error(
                        call_id, "disconnect", "connection closed without hangup", source=self.name
                    )
                    break
                if frame.kind is Kind.AUDIO:
                    if call.ended:
                        break
                    samples = slin16_decode(frame.payload)
                    pos = call.channel_samples[channel]
                    call.channel_samples[channel] = pos + len(samples)
                    h.audio(
                        AudioChunk(
                            call_id,
                            channel,
                            self.roles[channel],
                            pos / SAMPLE_RATE,
                            SAMPLE_RATE,
                            samples,
                        )
                    )
                elif frame.kind is Kind.HANGUP:
                    reason = EndReason.STOP
                    break
                elif frame.kind is Kind.ERROR:
                    code = frame.payload.hex() or "?"
                    raise SourceError("peer_error", f"AudioSocket error frame, code {code}")
                else:
                    raise SourceError("bad_frame", "a second UUID frame")
        except SourceError as e:
            h.call_error(call.call_id if call else None, e.reason, e.detail, source=self.name)
            reason = EndReason.ERROR
        except TimeoutError:
            h.call_error(call.call_id if call else None, "idle_timeout", "", source=self.name)
            reason = EndReason.TIMEOUT
        except (ConnectionError, OSError) as e:
            h.call_error(call.call_id if call else None, "disconnect", repr(e), source=self.name)
            reason = EndReason.DISCONNECT
        finally:
            if call is not None and joined and not call.ended:
                call.open_legs -= 1
                if reason is EndReason.ERROR or reason is EndReason.TIMEOUT:
                    self._end(call, reason)
                elif call.open_legs <= 0:
                    if call.legs >= 2 or self.leg_wait_s <= 0:
                        self._end(call, reason)
                    else:
                        loop = asyncio.get_running_loop()
                        c, r = call, reason
                        call.waiter = loop.call_later(self.leg_wait_s, lambda: self._end(c, r))

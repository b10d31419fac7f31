"""Who may send media, and what may come with it: real listeners on 127.0.0.1 (ephemeral
ports), real clients, no model. Twilio signatures on the WebSocket upgrade, bearer tokens,
the AudioSocket peer allowlist, plain HTTP on the WebSocket port, and hostile ids from the
wire (newline, 10 KB, markdown) that must never reach a log line. Every test is bounded in
time (``run``)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from qa_pipeline.errors import ConfigError
from qa_pipeline.live.config import load_serve_config
from qa_pipeline.sources.audiosocket import (
    AudioSocketSource,
    audio_frame,
    hangup_frame,
    parse_networks,
    peer_allowed,
    uuid_frame,
)
from qa_pipeline.sources.base import EndReason, SourceError
from qa_pipeline.sources.ids import check_id
from qa_pipeline.sources.twilio import (
    SIGNATURE_HEADER,
    TwilioSerializer,
    check_twilio_signature,
    twilio_signature,
    url_variants,
)
from qa_pipeline.sources.websocket import WebSocketSource
from qa_pipeline.testing import FakeDecoder, Recorder

AUTH_TOKEN = "0123456789abcdef0123456789abcdef"  # a Twilio account's auth token (made up)
MEDIA_TOKEN = "media-token-7c1e"


def run(coro: Coroutine[Any, Any, Any], limit_s: float = 20.0) -> Any:
    return asyncio.run(asyncio.wait_for(coro, limit_s))


def service_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the service logged (the test's own client logs its headers at debug level)."""
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("qa_pipeline")]
    assert lines
    return "\n".join(lines)


async def send_call(ws: Any, call_id: str, agent_id: str = "A-1") -> None:
    ser = TwilioSerializer("MZ" + "0" * 32, "CA" + "1" * 32)
    await ws.send(ser.connected())
    await ws.send(ser.start({"call_id": call_id, "agent_id": agent_id}))
    for k in range(5):
        await ws.send(ser.media("outbound", 20 * k, b"\xff" * 160))
    await ws.send(ser.stop())
    await ws.wait_closed()


async def refused_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The HTTP status that refused the upgrade (fails if it was accepted)."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(url, additional_headers=headers or {}, open_timeout=5):
            pass
    except InvalidStatus as e:
        return int(e.response.status_code)
    raise AssertionError(f"upgrade to {url} was accepted")


async def raw_http(port: int, request: bytes, eof: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(request)
    if eof:
        writer.write_eof()
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


# -- the signature itself ---------------------------------------------------------------------


def test_signature_matches_twilio_reference_values() -> None:
    # the request-validation example of Twilio's helper libraries (token, URL, POST params)
    uri = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = {
        "CallSid": "CA1234567890ABCDE",
        "Digits": "1234",
        "From": "+14158675309",
        "To": "+18005551212",
        "Caller": "+14158675309",
    }
    assert twilio_signature("12345", uri, params) == "RSOYDt4T1cUTdK1PDd93/VVr8B8="
    assert check_twilio_signature("12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", uri, params)
    # signed with the default port written out: still that URL
    assert check_twilio_signature("12345", "kvajT1Ptam85bY51eRf/AJRuM3w=", uri, params)
    assert not check_twilio_signature("12345", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", uri, {})
    assert not check_twilio_signature("54321", "RSOYDt4T1cUTdK1PDd93/VVr8B8=", uri, params)
    assert not check_twilio_signature("12345", "", uri, params)


def test_url_variants_only_touch_the_default_port() -> None:
    assert url_variants("wss://h.example/media?x=1") == (
        "wss://h.example/media?x=1",
        "wss://h.example:443/media?x=1",
    )
    assert url_variants("wss://h.example:443/m") == ("wss://h.example:443/m", "wss://h.example/m")
    assert url_variants("wss://h.example:8443/m") == ("wss://h.example:8443/m",)


# -- Twilio streams -------------------------------------------------------------------------


def test_signed_twilio_upgrade_accepted_others_refused(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recorder()

    async def main() -> None:
        from websockets.asyncio.client import connect

        src = WebSocketSource(port=0, auth="twilio", secret=AUTH_TOKEN)
        await src.start(rec)
        port = src.bound_port
        local = f"ws://127.0.0.1:{port}/media?tenant=a"
        signed = f"wss://127.0.0.1:{port}/media?tenant=a"  # as Twilio requested it (TLS in front)
        good = {SIGNATURE_HEADER: twilio_signature(AUTH_TOKEN, signed)}
        async with connect(local, additional_headers=good, open_timeout=5) as ws:
            await send_call(ws, "signed-1")
        sig = good[SIGNATURE_HEADER]
        # one character changed (the old "last two characters -> A=" left a signature
        # that already ended in A= as it was: 1 run in 64 accepted it)
        tampered = ("B" if sig[0] != "B" else "C") + sig[1:]
        bad = [
            {},  # unsigned
            {SIGNATURE_HEADER: twilio_signature("another-account-token", signed)},
            {SIGNATURE_HEADER: twilio_signature(AUTH_TOKEN, signed.replace("a", "b"))},  # URL
            {SIGNATURE_HEADER: twilio_signature(AUTH_TOKEN, f"wss://evil.example:{port}/media")},
            {SIGNATURE_HEADER: tampered},
        ]
        for headers in bad:
            assert await refused_status(local, headers) == 403
        # another query string is another URL: the signature no longer fits
        assert await refused_status(local.replace("tenant=a", "tenant=b"), good) == 403
        await src.stop()

    run(main())
    assert [c.call_id for c in rec.started] == ["signed-1"]
    assert len(rec.chunks) == 5 and rec.ended == [("signed-1", EndReason.STOP)]
    refusals = [d for _, r, d in rec.errors if r == "unauthorized"]
    assert len(refusals) == 6 and rec.reasons() == ["unauthorized"] * 6
    assert all("from 127.0.0.1:" in d for d in refusals)  # the peer is named
    assert refusals[0].startswith("no X-Twilio-Signature")
    assert all(r.exc_info is None for r in caplog.records)
    assert "X-Twilio-Signature: " not in service_log(caplog)  # no header trace


def test_public_url_is_what_twilio_signed() -> None:
    rec = Recorder()

    async def main() -> None:
        from websockets.asyncio.client import connect

        src = WebSocketSource(
            port=0, auth="twilio", secret=AUTH_TOKEN, public_url="wss://qa.example.com/twilio"
        )
        await src.start(rec)
        local = f"ws://127.0.0.1:{src.bound_port}/media?k=v"
        sig = twilio_signature(AUTH_TOKEN, "wss://qa.example.com/twilio?k=v")
        async with connect(local, additional_headers={SIGNATURE_HEADER: sig}) as ws:
            await send_call(ws, "proxied-1")
        own = twilio_signature(AUTH_TOKEN, f"wss://127.0.0.1:{src.bound_port}/media?k=v")
        assert await refused_status(local, {SIGNATURE_HEADER: own}) == 403
        await src.stop()

    run(main())
    assert [c.call_id for c in rec.started] == ["proxied-1"]


# -- other WebSocket clients: a token ----------------------------------------------------------


def test_token_in_header_or_query_compared_exactly(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recorder()

    async def main() -> None:
        from websockets.asyncio.client import connect

        src = WebSocketSource(port=0, auth="token", secret=MEDIA_TOKEN)
        await src.start(rec)
        url = f"ws://127.0.0.1:{src.bound_port}/media"
        bearer = {"Authorization": f"Bearer {MEDIA_TOKEN}"}
        async with connect(url, additional_headers=bearer) as ws:
            await send_call(ws, "tok-header")
        async with connect(f"{url}?token={MEDIA_TOKEN}") as ws:
            await send_call(ws, "tok-query")
        for u, h in [
            (url, {}),
            (url, {"Authorization": "Bearer wrong"}),
            (url, {"Authorization": f"Bearer {MEDIA_TOKEN}x"}),
            (url, {"Authorization": f"Basic {MEDIA_TOKEN}"}),
            (f"{url}?token={MEDIA_TOKEN[:-1]}", {}),
            (f"{url}?tok={MEDIA_TOKEN}", {}),
        ]:
            assert await refused_status(u, h) == 403
        await src.stop()

    run(main())
    assert [c.call_id for c in rec.started] == ["tok-header", "tok-query"]
    assert rec.reasons() == ["unauthorized"] * 6
    assert MEDIA_TOKEN not in service_log(caplog)  # not even at debug level


def test_plain_http_and_garbage_get_a_quiet_answer(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    rec = Recorder()

    async def main() -> list[bytes]:
        src = WebSocketSource(port=0, auth="token", secret=MEDIA_TOKEN)
        await src.start(rec)
        port = src.bound_port
        probe = b"GET /media HTTP/1.1\r\nHost: lb\r\nUser-Agent: ELB-HealthChecker/2.0\r\n\r\n"
        answers = [await raw_http(port, probe) for _ in range(3)]
        answers.append(await raw_http(port, b"HEAD / HTTP/1.0\r\n\r\n"))
        answers.append(await raw_http(port, b"\x16\x03\x01\x02\x00garbage, not HTTP\r\n\r\n"))
        answers.append(await raw_http(port, b"GET / HTTP/1.1\r\n", eof=True))  # cut short
        upgrade = (
            b"GET /other HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        answers.append(await raw_http(port, upgrade))
        await src.stop()
        return answers

    answers = run(main())
    assert all(a.startswith(b"HTTP/1.1 426 Upgrade Required\r\n") for a in answers[:3])
    assert answers[3:6] == [b"", b"", b""]  # not HTTP/1.1: closed without an answer
    assert answers[6].startswith(b"HTTP/1.1 404 ")
    assert "Traceback" not in caplog.text
    assert all(r.exc_info is None for r in caplog.records)
    # one debug line per unparsable request, naming the peer; nothing at info or above
    handshake = [r for r in caplog.records if "not a WebSocket handshake" in r.getMessage()]
    assert len(handshake) == 3 and all("from 127.0.0.1:" in r.getMessage() for r in handshake)
    loud = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    assert not any("handshake" in m or "rejected" in m or "426" in m for m in loud), loud
    assert rec.reasons() == ["bad_path"] and rec.started == []


# -- config ---------------------------------------------------------------------------------


def test_config_needs_the_secret_or_an_explicit_opt_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("TWILIO_AUTH_TOKEN", raising=False)
    monkeypatch.delenv("QA_MEDIA_TOKEN", raising=False)
    p = tmp_path / "serve.yaml"
    p.write_text("sources: [{type: websocket, auth: twilio}, {type: websocket, name: b}]\n")
    with pytest.raises(ConfigError) as e:
        load_serve_config(p)
    assert "$TWILIO_AUTH_TOKEN" in str(e.value) and "$QA_MEDIA_TOKEN" in str(e.value)
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    monkeypatch.setenv("QA_MEDIA_TOKEN", MEDIA_TOKEN)
    cfg = load_serve_config(p)
    assert [s.secret() for s in cfg.sources] == [AUTH_TOKEN, MEDIA_TOKEN]  # type: ignore[union-attr]
    assert AUTH_TOKEN not in repr(cfg)  # secrets are not shown
    off = load_serve_config(None, {"sources": [{"type": "websocket", "auth": "none", "port": 0}]})
    assert off.sources[0].secret() is None  # type: ignore[union-attr]

    async def start_open() -> None:
        src = WebSocketSource(port=0, auth="none")
        await src.start(Recorder())
        await src.stop()

    caplog.set_level(logging.WARNING)
    run(start_open())
    assert any("authentication is OFF" in r.getMessage() for r in caplog.records)
    with pytest.raises(ConfigError, match="allow"):
        load_serve_config(None, {"sources": [{"type": "audiosocket", "allow": ["10.0.0.1/8"]}]})


def test_example_config_binds_nothing_open(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWILIO_AUTH_TOKEN", AUTH_TOKEN)
    cfg = load_serve_config(Path(__file__).resolve().parents[2] / "configs/serve.example.yaml")
    for s in cfg.sources:
        if getattr(s, "host", "127.0.0.1") in ("0.0.0.0", "::"):
            auth = getattr(s, "auth", None)
            allow = getattr(s, "allow", ())
            assert auth in ("twilio", "token") or (
                allow and all(not n.endswith("/0") for n in allow)
            ), s


# -- AudioSocket: peers ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "allowed"),
    [
        ("127.0.0.1", True),
        ("10.20.30.40", True),
        ("::ffff:10.20.30.40", True),  # IPv4 on a dual-stack socket
        ("::1", False),
        ("192.168.1.7", False),
        ("11.0.0.1", False),
        ("fe80::1%eth0", False),
        ("not-an-address", False),
        ("", False),
    ],
)
def test_peer_allowlist(address: str, allowed: bool) -> None:
    nets = parse_networks(["127.0.0.1/32", "10.0.0.0/8"])
    assert peer_allowed(address, nets) is allowed


def test_audiosocket_refuses_peers_outside_the_allowlist() -> None:
    call = uuid.uuid4()

    async def leg(port: int) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            writer.write(uuid_frame(call) + audio_frame(b"\x00\x01" * 160) + hangup_frame())
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 5)
        except ConnectionError:  # refused: closed with our frames unread, so a reset
            data = b""
        writer.close()
        return data

    async def main(allow: list[str]) -> Recorder:
        rec = Recorder()
        src = AudioSocketSource(port=0, allow=allow, leg_wait_s=0)
        await src.start(rec)
        await leg(src.bound_port)
        for _ in range(100):  # the server sees the hangup (or refused) just after
            if rec.ended or rec.errors:
                break
            await asyncio.sleep(0.02)
        await src.stop()
        return rec

    listed = run(main(["127.0.0.1/32"]))
    assert [c.call_id for c in listed.started] == [str(call)]
    assert listed.ended == [(str(call), EndReason.STOP)] and listed.errors == []
    excluded = run(main(["10.0.0.0/8"]))
    assert excluded.started == [] and excluded.chunks == []
    ((cid, reason, detail),) = excluded.errors
    assert cid is None and reason == "peer_not_allowed" and "127.0.0.1:" in detail


# -- ids from the wire ---------------------------------------------------------------------------

HOSTILE = {
    "newline": "call-1\n2026-01-01 00:00:00 INFO call admin ended: score 100",
    "10 KB": "x" * 10240,
    "markdown": "[x](http://evil.example)",
    "html": '<font color="warning">a</font>',
    "bidi": "call\u202e1-lacigol",
    "space": "call 1",
}


@pytest.mark.parametrize("text", [*HOSTILE.values(), ""], ids=[*HOSTILE, "empty"])
def test_bad_ids_are_refused(text: str) -> None:
    with pytest.raises(SourceError) as e:
        check_id(text, "call_id")
    assert e.value.reason == "bad_id"
    assert "\n" not in str(e.value) and "\u202e" not in str(e.value) and len(str(e.value)) < 400


@pytest.mark.parametrize("text", ["CA" + "f" * 32, "call-7_b.2:x@pbx", "张三", "坐席-1024"])
def test_good_ids_pass(text: str) -> None:
    assert check_id(text, "id") == text


def test_hostile_ids_never_reach_a_log_line_and_signed_calls_are_scored(
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    pack_path: Path,
    speech_dir: Path,
) -> None:
    """A real service (a stub decoder instead of Whisper): a signed Twilio call is accepted
    and scored; starts carrying hostile ids (call id, agent id, parameter name and value,
    SIDs) are refused with ``bad_id`` and nothing of them reaches a log line raw."""
    from prometheus_client import CollectorRegistry

    import qa_pipeline.live.service as service_mod
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.sinks import FanOut
    from qa_pipeline.sources.codec import ulaw_encode

    from .conftest import BAN_CLIP, clip8k

    # every utterance is heard as the banned word: scoring without a model
    monkeypatch.setattr(
        service_mod, "LiveDecoder", FakeDecoder("甚至出现交易", confidence=0.9, tokens=6)
    )
    caplog.set_level(logging.DEBUG)
    speech = ulaw_encode(clip8k(speech_dir, BAN_CLIP))
    cfg = load_serve_config(
        None,
        {
            "sources": [
                {"type": "websocket", "port": 0, "auth": "twilio", "twilio_auth_token": AUTH_TOKEN}
            ],
            "live": {"warmup": False},
            "rules": {"pack": str(pack_path)},
            "metrics": {"enabled": False},
        },
    )
    sink = Recorder()
    engine = type("Engine", (), {"config": type("C", (), {"workers": 1})()})()
    svc: Any = service_mod.LiveService(
        cfg,
        engine=engine,
        sinks=FanOut([("memory", sink)]),
        metrics=LiveMetrics(CollectorRegistry()),
    )
    starts = [({"call_id": v}, "MZ1", "CA1") for v in HOSTILE.values()] + [
        ({"call_id": "ok-id", "agent_id": HOSTILE["newline"]}, "MZ2", "CA2"),
        ({"call_id": "ok-id", "x\ny": "1"}, "MZ3", "CA3"),
        ({"call_id": "ok-id", "queue": "vip\nforged"}, "MZ4", "CA4"),
        ({}, "MZ5", HOSTILE["markdown"]),  # the call id falls back to the call SID
        ({"call_id": "ok-id"}, HOSTILE["10 KB"], "CA6"),
    ]

    async def main() -> list[int | None]:
        from websockets.asyncio.client import connect

        await svc.start()
        port = svc.sources[0].bound_port
        url = f"ws://127.0.0.1:{port}/media"
        headers = {SIGNATURE_HEADER: twilio_signature(AUTH_TOKEN, f"wss://127.0.0.1:{port}/media")}
        codes = []
        for custom, stream_sid, call_sid in starts:
            ser = TwilioSerializer(stream_sid, call_sid)
            async with connect(url, additional_headers=headers) as ws:
                await ws.send(ser.start(custom))
                await ws.wait_closed()
                codes.append(ws.close_code)
        ser = TwilioSerializer("MZ" + "9" * 32, "CA" + "9" * 32)
        async with connect(url, additional_headers=headers) as ws:
            await ws.send(ser.start({"call_id": "signed-ok", "agent_id": "张三"}))
            t0 = asyncio.get_running_loop().time()
            for k, i in enumerate(range(0, len(speech) - 160 + 1, 160)):  # at real time
                await ws.send(ser.media("outbound", i // 8, speech[i : i + 160]))
                if k % 5 == 4:
                    await asyncio.sleep(
                        max(0.0, t0 + (k + 1) * 0.02 - asyncio.get_running_loop().time())
                    )
            await ws.send(ser.stop())
            await ws.wait_closed()
        for _ in range(200):
            if sink.of("scorecard", "signed-ok"):
                break
            await asyncio.sleep(0.05)
        await svc.shutdown(5)
        return codes

    codes = run(main(), 60)
    assert codes == [1008] * len(starts)
    g = svc.metrics.registry.get_sample_value
    assert g("qa_live_call_errors_total", {"source": "websocket", "reason": "bad_id"}) == len(
        starts
    )
    # the signed call was accepted and scored by the rules (the stub "heard" the banned word)
    ((_, card),) = sink.of("scorecard", "signed-ok")
    assert card.payload["failed"] is True
    assert [e.payload["rule_id"] for _, e in sink.of("alert", "signed-ok")] == ["LIVE-BAN"]
    assert {e.call_id for _, e in sink.events} == {"signed-ok"}
    for r in caplog.records:
        msg = r.getMessage()
        assert "\n" not in msg and "\u202e" not in msg and len(msg) < 1000, msg

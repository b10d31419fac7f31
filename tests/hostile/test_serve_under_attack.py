"""Hostile clients against one real ``qa-pipeline serve`` process on 127.0.0.1.

The service runs from a real config file: the WebSocket source with a media token, an
AudioSocket source that allows only a network the test is not in, the dashboard with a
token, metrics and health on an ephemeral port, a JSONL sink in a temporary directory, the
real embedded Whisper model (beam 1; the CLI has no stub decoder) and a rule pack with a
regex that backtracks catastrophically on Python's engine (``^(.|.|.|.)*QQQ$``, linear on
RE2). A well-behaved call (the real clips, read in place) is streamed at real time alone,
then again while hostile clients run beside it: a flooder faster than real time,
timestamps that jump, upgrades without or with a wrong token, hostile ids (newline, 10 KB,
markdown), plain HTTP on the WebSocket port, malformed JSON / base64 / frames, abrupt
resets, idle connections, AudioSocket from a peer not allowed, dashboard abuse (a huge
Content-Length, event streams that never read). Asserted: the call's verdicts and score
are those it gets alone, ``/healthz`` answers 200 within a bound throughout, ``/readyz``
200, every refusal is counted in ``/metrics`` with its reason, the log has no traceback and
no forged line, SIGTERM drains in time and the JSONL holds every event the sink accepted.
A pack with a backreference is refused at start with one line. Bounded: about a minute.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.sources.codec import ulaw_encode
from qa_pipeline.sources.twilio import TwilioSerializer

from .helpers import TOKEN, ban_call_audio, send_twilio_call

pytestmark = [pytest.mark.hostile, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
DASH_TOKEN = "hostile-suite-dashboard-token"
SHUTDOWN_S = 20
PACK = """\
name: hostile
version: "1"
rules:
  - id: LIVE-BAN
    description: 坐席不说“交易”
    severity: critical
    weight: 20
    scope: {role: agent}
    forbid: {keyword: [交易]}
  - id: BACKTRACK
    description: a pattern that backtracks catastrophically on Python's re
    severity: minor
    weight: 1
    forbid: {regex: '^(.|.|.|.)*QQQ$'}
"""
FORGED = "ERROR qa_pipeline.live: forged line"


def get(url: str, timeout: float = 5) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metric_samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    out = {}
    for line in text.splitlines():
        m = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if m:
            labels = tuple(sorted(re.findall(r'(\w+)="([^"]*)"', m.group(1))))
            out[labels] = float(m.group(2))
    return out


def errors_by_reason(metrics: str) -> dict[str, float]:
    by: dict[str, float] = {}
    for labels, v in metric_samples(metrics, "qa_live_call_errors_total").items():
        reason = dict(labels)["reason"]
        by[reason] = by.get(reason, 0.0) + v
    return by


class HealthProbe(threading.Thread):
    """GET /healthz every 100 ms; keeps each answer's status and latency."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base = base
        self.answers: list[tuple[int, float]] = []
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                status, _ = get(f"{self.base}/healthz", timeout=5)
            except OSError:
                status = 0
            self.answers.append((status, time.monotonic() - t))
            self.stop.wait(0.1)


# -- the hostile clients ----------------------------------------------------------------------


async def ws_refused(url: str, headers: dict[str, str]) -> int:
    from websockets.asyncio.client import connect
    from websockets.exceptions import InvalidStatus

    try:
        async with connect(url, additional_headers=headers, open_timeout=10):
            return 101
    except InvalidStatus as e:
        return int(e.response.status_code)


async def ws_messages(url: str, messages: list[Any]) -> tuple[int | None, str]:
    """Send ``messages`` (str or bytes) with the right token; the close code and reason."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    ws = await connect(url, additional_headers={"Authorization": f"Bearer {TOKEN}"})
    try:
        for m in messages:
            await ws.send(m)
        await asyncio.wait_for(ws.wait_closed(), 15)
    except ConnectionClosed:
        pass
    return ws.close_code, ws.close_reason or ""


def start_msg(call_id: str, agent_id: str = "7") -> str:
    return TwilioSerializer(f"MZ{abs(hash(call_id))}", "CA1").start(
        {"call_id": call_id, "agent_id": agent_id}
    )


async def timestamps_jump(url: str) -> tuple[int | None, str]:
    ser = TwilioSerializer("MZjump", "CAjump")
    frame = ulaw_encode(np.zeros(160, dtype=np.float32))
    msgs: list[Any] = [ser.connected(), ser.start({"call_id": "jumper", "agent_id": "7"})]
    msgs += [ser.media("outbound", k * 30_000, frame) for k in range(200)]  # 30 s apart
    return await ws_messages(url, msgs)


async def reset_mid_call(port: int, ws_path: str) -> None:
    """Upgrade, start a call, send a little media, then reset the TCP connection."""
    from websockets.asyncio.client import connect

    ws = await connect(
        f"ws://127.0.0.1:{port}{ws_path}", additional_headers={"Authorization": f"Bearer {TOKEN}"}
    )
    ser = TwilioSerializer("MZreset", "CAreset")
    await ws.send(ser.start({"call_id": "resetter", "agent_id": "7"}))
    frame = ulaw_encode(np.zeros(160, dtype=np.float32))
    for k in range(10):
        await ws.send(ser.media("outbound", 20 * k, frame))
    sock = ws.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.transport.abort()  # RST, no close frame


async def raw(port: int, data: bytes, read: bool = True) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    out = await asyncio.wait_for(reader.read(4096), 10) if read else b""
    writer.close()
    return out


async def attack(
    ws_port: int, as_port: int, dash_port: int, idle: list[Any], dash_streams: list[Any]
) -> dict[str, Any]:
    url = f"ws://127.0.0.1:{ws_port}/media"
    results: dict[str, Any] = {}
    # a flooder: 60 s of audio as fast as the socket takes it
    flood = np.random.default_rng(7).standard_normal((2, 60 * 8000)).astype(np.float32) * 0.05
    tasks = {
        "flood": send_twilio_call(url, "flooder", flood, speed=None),
        "jump": timestamps_jump(url),
        "no_token": ws_refused(url, {}),
        "wrong_token": ws_refused(url, {"Authorization": "Bearer nope"}),
        "twilio_sig_only": ws_refused(url, {"X-Twilio-Signature": "AAAA"}),
        "id_newline": ws_messages(url, [start_msg("x\n" + FORGED)]),
        "id_10kb": ws_messages(url, [start_msg("A" * 10_000)]),
        "id_markdown": ws_messages(url, [start_msg("[click](http://evil.example)")]),
        "agent_markdown": ws_messages(url, [start_msg("md-agent", "**boss**\n" + FORGED)]),
        "bad_json": ws_messages(url, ["{not json"]),
        "bad_base64": ws_messages(
            url,
            [
                start_msg("b64"),
                json.dumps({"event": "media", "media": {"track": "outbound", "payload": "!!!"}}),
            ],
        ),
        "binary_frame": ws_messages(url, [b"\x00\xff" * 100]),
        "plain_get": raw(ws_port, b"GET /media HTTP/1.1\r\nHost: x\r\n\r\n"),
        "garbage_http": raw(ws_port, b"\x16\x03\x01\x02\x00garbage\r\n\r\n"),
        "reset": reset_mid_call(ws_port, "/media"),
        "audiosocket_not_allowed": raw(as_port, b"\x01\x00\x10" + b"\x11" * 16),
        "dash_huge_body": raw(
            dash_port,
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\n"
            + b"x" * 10,
        ),
        "dash_negative_length": raw(
            dash_port, b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nxx"
        ),
    }
    for _ in range(20):  # idle TCP connections on every listener, sending nothing
        for port in (ws_port, dash_port):
            idle.append(await asyncio.open_connection("127.0.0.1", port))
    for _ in range(5):  # event streams that never read
        r, w = await asyncio.open_connection("127.0.0.1", dash_port)
        w.write(
            f"GET /events HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {DASH_TOKEN}\r\n\r\n".encode()
        )
        await w.drain()
        dash_streams.append((r, w))
    names = list(tasks)
    done = await asyncio.gather(*tasks.values(), return_exceptions=True)
    results.update(zip(names, done, strict=True))
    return results


# -- the test ----------------------------------------------------------------------------------


def write_config(tmp_path: Path, pack: Path, events: Path) -> Path:
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        "sources:\n"
        "  - {type: websocket, port: 0, path: /media, auth: token, token: '${QA_HOSTILE_TOKEN}'}\n"
        "  - {type: audiosocket, port: 0, allow: [192.0.2.0/24]}\n"
        f"rules: {{pack: {pack}}}\n"
        f"sinks: {{jsonl: {{directory: {events}}}}}\n"
        "metrics: {port: 0}\n"
        f"dashboard: {{port: 0, token: {DASH_TOKEN}}}\n"
        "live: {beam_size: 1, max_speed: 1.0, burst_s: 5.0}\n"
        f"shutdown_timeout_s: {SHUTDOWN_S}\n",
        encoding="utf-8",
    )
    return cfg


def test_backreference_pack_refused_at_start(tmp_path: Path) -> None:
    pack = tmp_path / "backref.yaml"
    pack.write_text(PACK.replace("^(.|.|.|.)*QQQ$", r"(\w+)\s+\1"), encoding="utf-8")
    cfg = write_config(tmp_path, pack, tmp_path / "events")
    t = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "qa_pipeline.cli", "serve", "-c", str(cfg)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "QA_HOSTILE_TOKEN": TOKEN},
    )
    lines = [x for x in proc.stderr.splitlines() if x.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "backref.yaml" in lines[0], lines[0]
    assert "backreference" in lines[0].lower(), lines[0]
    assert time.monotonic() - t < 30


def test_serve_under_attack(tmp_path: Path, speech_dir: Path) -> None:
    pack = tmp_path / "pack.yaml"
    pack.write_text(PACK, encoding="utf-8")
    events = tmp_path / "events"
    cfg = write_config(tmp_path, pack, events)
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa_pipeline.cli", "serve", "-c", str(cfg)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "QA_HOSTILE_TOKEN": TOKEN},
        )
    probe: HealthProbe | None = None
    try:
        assert proc.stdout is not None
        ready = proc.stdout.readline()
        assert ready.startswith("ready"), ready + log_path.read_text()
        ports = dict(x.split("=") for x in ready.split()[1:])
        ws_port, as_port = int(ports["websocket"]), int(ports["audiosocket"])
        text = log_path.read_text()
        m_port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        d_port = int(re.search(r"dashboard on http://127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{m_port}"
        assert get(f"{base}/readyz")[0] == 200
        url = f"ws://127.0.0.1:{ws_port}/media"
        audio = ban_call_audio(speech_dir)

        def card(call_id: str, limit_s: float = 60) -> dict[str, Any]:
            deadline = time.monotonic() + limit_s
            path = events / "scorecard.jsonl"
            while time.monotonic() < deadline:
                if path.exists():
                    for line in path.read_text().splitlines():
                        doc = json.loads(line)
                        if doc["call_id"] == call_id:
                            return dict(doc["payload"])
                time.sleep(0.1)
            raise TimeoutError(f"no scorecard for {call_id}")

        # the well-behaved call alone, at real time
        assert asyncio.run(send_twilio_call(url, "good-alone", audio, speed=1.0))[0] == 1000
        alone = card("good-alone")

        # ... and again with the hostile clients beside it
        probe = HealthProbe(base)
        probe.start()
        idle: list[Any] = []
        streams: list[Any] = []

        async def both() -> tuple[Any, dict[str, Any]]:
            good = asyncio.create_task(send_twilio_call(url, "good-attacked", audio, speed=1.0))
            await asyncio.sleep(0.5)
            hostile = await attack(ws_port, as_port, d_port, idle, streams)
            closed = await good
            for _, w in idle + streams:
                w.close()
            return closed, hostile

        closed, hostile = asyncio.run(asyncio.wait_for(both(), 90))
        assert closed[0] == 1000, closed
        attacked = card("good-attacked")
        ready_status = get(f"{base}/readyz")
        probe.stop.set()
        probe.join(10)
        metrics = get(f"{base}/metrics")[1]

        # the good call: the same verdicts and score as alone, complete
        def verdicts(c: dict[str, Any]) -> list[tuple[str, str]]:
            return sorted((v["rule_id"], v["verdict"]) for v in c["verdicts"])

        assert attacked["complete"] is True and alone["complete"] is True
        assert verdicts(attacked) == verdicts(alone)
        assert attacked["score"] == alone["score"]
        assert "LIVE-BAN" in {f["rule_id"] for f in alone["findings"]}

        # what the hostile clients got
        assert hostile["flood"][1] == "faster_than_real_time", hostile["flood"]
        assert hostile["jump"][1] in {"faster_than_real_time", "duration_cap"}, hostile["jump"]
        assert hostile["no_token"] == hostile["wrong_token"] == 403
        assert hostile["twilio_sig_only"] == 403
        for k in ("id_newline", "id_10kb", "id_markdown", "agent_markdown"):
            assert hostile[k] == (1008, "bad_id"), (k, hostile[k])
        assert hostile["bad_json"] == (1008, "malformed_json")
        assert hostile["bad_base64"] == (1008, "bad_payload")
        assert hostile["binary_frame"][0] in {1003, 1008}, hostile["binary_frame"]
        assert hostile["plain_get"].startswith(b"HTTP/1.1 426"), hostile["plain_get"][:80]
        assert hostile["garbage_http"][:12] in {b"", b"HTTP/1.1 400"}, hostile["garbage_http"]
        assert hostile["reset"] is None
        # closed without an answer (a reset when our bytes were still unread)
        refused = hostile["audiosocket_not_allowed"]
        assert refused == b"" or isinstance(refused, ConnectionResetError), refused
        # refused before any body is read
        assert re.match(rb"HTTP/1\.[01] (413|400) ", hostile["dash_huge_body"]), hostile[
            "dash_huge_body"
        ][:80]
        assert re.match(rb"HTTP/1\.[01] 400 ", hostile["dash_negative_length"])

        # health throughout: 200 and quick; ready after
        assert probe.answers and all(s == 200 for s, _ in probe.answers), probe.answers
        worst = max(t for _, t in probe.answers)
        assert worst < 1.0, f"/healthz took {worst:.2f} s during the attack"
        assert ready_status[0] == 200, ready_status

        # every refusal counted with its reason
        by = errors_by_reason(metrics)
        assert by.get("unauthorized", 0) >= 3, by
        assert by.get("bad_id", 0) >= 4, by
        assert by.get("faster_than_real_time", 0) + by.get("duration_cap", 0) >= 2, by
        assert by.get("malformed_json", 0) >= 1 and by.get("bad_payload", 0) >= 1, by
        assert by.get("disconnect", 0) >= 1, by  # the reset
        assert by.get("peer_not_allowed", 0) >= 1, by
        assert "good" not in metrics  # no call id in a label
        # what the service counted as made (each one an event to the sinks)
        counted = {
            kind: sum(metric_samples(metrics, name).values())
            for kind, name in (
                ("utterance", "qa_utterances_total"),
                ("finding", "qa_findings_total"),
            )
        }
        dropped = metric_samples(metrics, "qa_events_dropped_total")
        assert not any(dropped.values()), dropped

        # SIGTERM drains in time
        t = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=SHUTDOWN_S + 15) == 0
        print(  # noqa: T201
            f"\n/healthz worst {worst * 1000:.0f} ms over {len(probe.answers)} probes; "
            f"drained in {time.monotonic() - t:.1f} s; refusals {by}"
        )
    finally:
        if probe is not None:
            probe.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    # the JSONL holds every event counted, each once, and a scorecard per call
    docs = [
        json.loads(line)
        for f in sorted(events.glob("*.jsonl"))
        for line in f.read_text().splitlines()
    ]
    for kind, n in counted.items():
        assert n > 0 and sum(d["kind"] == kind for d in docs) >= n, (kind, n)
    assert len({d["event_id"] for d in docs}) == len(docs)
    log_text = log_path.read_text()
    started = set(re.findall(r"call (\S+) started", log_text))
    scored = {d["call_id"] for d in docs if d["kind"] == "scorecard"}
    assert started == scored and {"good-alone", "good-attacked", "flooder"} <= started
    # the log: no traceback, no line an id forged, nothing longer than an id may be
    assert "Traceback" not in log_text
    for line in log_text.splitlines():
        assert not line.startswith(FORGED), line
        assert "A" * 200 not in line, line[:200]
    assert not any("evil.example" in json.dumps(d) for d in docs)  # refused calls left nothing

"""Ops: ``/healthz`` and ``/readyz`` of a real ``serve`` process on 127.0.0.1, JSON log lines
naming the call and the peer, and the readiness checks of unwritable sinks."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qa_pipeline.sources.codec import ulaw_encode
from qa_pipeline.sources.twilio import TwilioSerializer

REPO = Path(__file__).resolve().parents[2]
TOKEN = "ops-test-media-token"


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


async def one_call(port: int, call_id: str) -> None:
    """A 2 s Twilio call (line noise on both tracks) with the shared token."""
    from websockets.asyncio.client import connect

    ser = TwilioSerializer(f"MZ{call_id}", f"CA{call_id}")
    noise = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.01
    ulaw = ulaw_encode(noise)
    async with connect(
        f"ws://127.0.0.1:{port}/media", additional_headers={"Authorization": f"Bearer {TOKEN}"}
    ) as ws:
        await ws.send(ser.connected())
        await ws.send(ser.start({"call_id": call_id, "agent_id": "7"}))
        for i in range(0, len(ulaw), 160):
            await ws.send(ser.media("outbound", i // 8, ulaw[i : i + 160]))
            await ws.send(ser.media("inbound", i // 8, ulaw[i : i + 160]))
        await ws.send(ser.stop())
        await ws.wait_closed()


def wait_until(pred: Any, limit_s: float, what: str) -> Any:
    deadline = time.monotonic() + limit_s
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


@pytest.mark.slow
def test_serve_health_readiness_and_json_logs(tmp_path: Path) -> None:
    events = tmp_path / "events"
    events.mkdir()
    # the scorecard file points at /dev/full: no sink can write there
    (events / "scorecard.jsonl").symlink_to("/dev/full")
    cfg = tmp_path / "serve.yaml"
    cfg.write_text(
        "sources: [{type: websocket, port: 0, auth: token, token: '${QA_OPS_TEST_TOKEN}'}]\n"
        f"sinks: {{jsonl: {{directory: {events}}}}}\n"
        "metrics: {port: 0}\n"
        "live: {beam_size: 1}\n"
        "shutdown_timeout_s: 30\n",
        encoding="utf-8",
    )
    stderr_path = tmp_path / "stderr.log"
    with stderr_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, "-m", "qa_pipeline.cli", "--log-format", "json", "serve"]
            + ["-c", str(cfg)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1", "QA_OPS_TEST_TOKEN": TOKEN},
        )
    try:

        def metrics_port() -> int | None:
            for line in stderr_path.read_text().splitlines():
                doc = json.loads(line)
                if doc["msg"].startswith("metrics on http://127.0.0.1:"):
                    return int(doc["msg"].split("127.0.0.1:")[1].split("/")[0])
            return None

        port = wait_until(metrics_port, 60, "metrics listener")
        base = f"http://127.0.0.1:{port}"
        # up at once, but not ready while the model loads
        assert get(f"{base}/healthz") == (200, "ok\n")
        status, body = get(f"{base}/readyz")
        assert status == 503, body
        first = json.loads(body)
        assert first["ready"] is False and first["checks"]["model"] == "loading"

        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("ready"), line + stderr_path.read_text()
        ws_port = int(line.split("websocket=")[1].split()[0])
        # loaded and listening, but the sink cannot write: still 503, saying why
        status, body = get(f"{base}/readyz")
        doc = json.loads(body)
        assert status == 503, body
        assert doc["checks"]["model"] == "ok" and doc["checks"]["sources"] == {"websocket": "ok"}
        assert "scorecard.jsonl: not a regular file" in doc["checks"]["sinks"]["jsonl"]

        (events / "scorecard.jsonl").unlink()  # the operator fixes it
        status, body = get(f"{base}/readyz")
        assert status == 200, body
        assert json.loads(body)["ready"] is True
        assert get(f"{base}/metrics")[0] == 200  # the metrics still answer beside them

        asyncio.run(one_call(ws_port, "ops-1"))
        wait_until(
            lambda: (
                (events / "scorecard.jsonl").exists() and (events / "scorecard.jsonl").read_text()
            ),
            60,
            "scorecard",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    lines = [x for x in stderr_path.read_text().splitlines() if x.strip()]
    docs = [json.loads(x) for x in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "msg"} <= set(d) for d in docs)
    about = [d for d in docs if d.get("call_id") == "ops-1"]
    started = next(d for d in about if d["msg"].startswith("call ops-1 started"))
    ended = next(d for d in about if d["msg"].startswith("call ops-1 ended"))
    for d in (started, ended):
        host, _, peer_port = d["peer"].rpartition(":")
        assert host == "127.0.0.1" and int(peer_port) > 0, d
    assert started["peer"] == ended["peer"]
    assert started["level"] == "info" and started["source"] == "websocket"


def _service(directory: Path) -> Any:
    """A service (not started) with a JSONL sink in ``directory``."""
    from prometheus_client import CollectorRegistry

    from qa_pipeline.live.config import load_serve_config
    from qa_pipeline.live.metrics import LiveMetrics
    from qa_pipeline.live.service import LiveService
    from qa_pipeline.sinks import build_sinks

    cfg = load_serve_config(
        None,
        {
            "sources": [{"type": "websocket", "port": 0, "auth": "none"}],
            "sinks": {"jsonl": {"directory": str(directory), "fsync": "never"}},
        },
    )
    metrics = LiveMetrics(CollectorRegistry())
    return LiveService(cfg, engine=object(), metrics=metrics, sinks=build_sinks(cfg.sinks, metrics))  # type: ignore[arg-type]


def test_sink_refusing_every_event_is_not_ready(tmp_path: Path) -> None:
    """A sink whose writes fail (the disk is full: /dev/full) is reported until it keeps an
    event again, even once its directory looks fine."""
    from qa_pipeline.live.health import Health
    from qa_pipeline.sinks.base import Event, EventKind

    events = tmp_path / "events"
    events.mkdir()
    service = _service(events)
    health = Health(service)
    try:
        ok, checks = health.ready()
        assert checks["sinks"] == {"jsonl": "ok"} and checks["model"] == "loading" and not ok

        def event(seq: int, kind: EventKind = EventKind.SCORECARD) -> Event:
            return Event(f"e{seq}", kind, "c1", seq, "1.0", "2026-01-01T00:00:00Z", {})

        (events / "scorecard.jsonl").symlink_to("/dev/full")
        assert "not a regular file" in health.ready()[1]["sinks"]["jsonl"]
        service.sinks.emit(event(0))  # opens /dev/full: ENOSPC, dropped
        service.sinks.emit(event(1))
        assert service.sinks.dropped["jsonl"] == {"disk_full": 2}
        (events / "scorecard.jsonl").unlink()  # the path looks fine again ...
        why = health.ready()[1]["sinks"]["jsonl"]
        assert why == "the last 2 event(s) were dropped (disk_full)"  # ... the sink is not
        service.sinks.emit(event(2))  # still the open /dev/full descriptor
        assert health.ready()[1]["sinks"]["jsonl"].startswith("the last 1 event(s)")
        service.sinks.emit(event(3, EventKind.FINDING))  # another file: kept
        assert health.ready()[1]["sinks"]["jsonl"] == "ok"
    finally:
        service.sinks.close()


@pytest.mark.skipif(
    os.geteuid() == 0, reason="root writes into read-only directories: nothing to refuse"
)
def test_read_only_directory_is_not_ready(tmp_path: Path) -> None:
    from qa_pipeline.live.health import Health

    events = tmp_path / "events"
    events.mkdir()
    service = _service(events)
    try:
        events.chmod(0o500)
        why = Health(service).ready()[1]["sinks"]["jsonl"]
        assert str(events) in why and "ermission denied" in why
        events.chmod(0o700)
        assert Health(service).ready()[1]["sinks"]["jsonl"] == "ok"
    finally:
        events.chmod(0o700)
        service.sinks.close()
